"""STOMP under bad input and lost peers (issue 14): numbers that are not numbers,
selectors nested deep, names with newlines, unknown commands, several brokers on
one store, and connections or brokers that die holding unacknowledged messages."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import stomp
from server_harness import free_port, start_serve
from stomp_harness import Collector, Raw, broker, connect, refused

import tidelog
from tidelog.server.stomp import SelectorError, StompServerThread, compile_selector

NOT_NUMBERS = ["²", "١", "--1", "-1", "NaN", "Infinity", "1e308", " 5", "1_0", "9" * 30, ""]


def _kept(server: StompServerThread) -> None:
    """The broker still answers, and the message stored before is there."""
    conn, got = connect(server)
    conn.subscribe("/queue/keep", id="s", ack="client-individual")
    (frame,) = got.take(1)
    assert frame.body == b"kept"
    conn.disconnect()  # unacked: it stays for the next check


@pytest.fixture
def server(tmp_path: Path) -> object:
    with broker(tmp_path / "d") as started:
        conn, _ = connect(started)
        conn.send("/queue/keep", b"kept", receipt="r")
        conn.disconnect()
        yield started
        _kept(started)


@pytest.mark.parametrize("value", NOT_NUMBERS)
def test_numeric_headers_that_are_not_numbers_get_an_error_frame(
    server: StompServerThread, value: str
) -> None:
    send = b"SEND\ndestination:/queue/n\nreceipt:r7\n"
    cases = [
        (send + b"content-length:%s\n\nbody\0", b"content-length"),
        (send + b"AMQ_SCHEDULED_DELAY:%s\n\nbody\0", b"AMQ_SCHEDULED_DELAY"),
        (send + b"priority:%s\n\nbody\0", b"priority"),
        (
            b"SUBSCRIBE\nid:s\ndestination:/queue/n\nreceipt:r7\nactivemq.prefetchSize:%s\n\n\0",
            b"prefetchSize",
        ),
    ]
    for template, reason in cases:
        reply = refused(server, template % value.encode(), reason)
        assert b"receipt-id:r7" in reply
    if value != " 5":  # heart-beat values are trimmed, as ActiveMQ trims them
        connect_frame = b"CONNECT\naccept-version:1.2\nhost:x\nheart-beat:%s,0\n\n\0"
        refused(server, connect_frame % value.encode(), b"heart-beat", connected=False)
    assert [len(q) for q in server.broker.store.queues() if q.name == "n"] in ([], [0])


def test_numbers_at_their_bounds_are_taken(server: StompServerThread) -> None:
    conn, got = connect(server, heartbeats=(0, 0))
    big = str(10**17)  # no body this long exists, but the number is a number
    conn.subscribe("/queue/b", id="s", headers={"activemq.prefetchSize": big})
    conn.send("/queue/b", b"p9", headers={"priority": "9", "AMQ_SCHEDULED_DELAY": "0"})
    (frame,) = got.take(1)
    assert frame.body == b"p9" and frame.headers["priority"] == "9"
    conn.disconnect()
    raw = Raw(server)
    raw.send(b"SEND\ndestination:/queue/b\ncontent-length:" + big.encode() + b"\n\nx\0")
    assert b"over the limit" in raw.frame()
    raw.close()


@pytest.mark.parametrize(
    "selector",
    ["(" * 300 + "a = 1" + ")" * 300, "NOT " * 1000 + "a = 1", "- " * 1000 + "1 = 1"],
)
def test_a_deeply_nested_selector_gets_an_error_frame(
    server: StompServerThread, selector: str
) -> None:
    frame = f"SUBSCRIBE\nid:s\ndestination:/queue/sel\nreceipt:r3\nselector:{selector}\n\n\0"
    reply = refused(server, frame.encode(), b"nested deeper than")
    assert b"receipt-id:r3" in reply


def test_long_selector_chains_compile_and_select(server: StompServerThread) -> None:
    # Chains cost no depth: 400 ORs and a 1,500-term sum evaluate in a loop.
    ors = " OR ".join(["c='b'"] * 399 + ["color='blue'"])
    assert compile_selector(ors)({"color": "blue"})
    total = "1" + "+1" * 1499 + "=1500"
    assert compile_selector(total)({})
    assert compile_selector("(" * 50 + "a = 1" + ")" * 50)({"a": "1"})
    with pytest.raises(SelectorError, match="nested deeper than 50"):
        compile_selector("(" * 51 + "a = 1" + ")" * 51)
    # Numbers beyond a float: compared exactly, arithmetic overflow is unknown.
    huge = "1" + "0" * 400
    assert compile_selector(f"size < {huge}")({"size": "5"})
    assert not compile_selector(f"{huge} + 0.5 > 1")({})
    conn, got = connect(server)
    conn.subscribe("/queue/chain", id="s", headers={"selector": ors})
    conn.send("/queue/chain", b"red", headers={"color": "red"})
    conn.send("/queue/chain", b"blue", headers={"color": "blue"})
    (frame,) = got.take(1)
    assert frame.body == b"blue"
    conn.disconnect()


def test_destination_names_are_matched_whole(server: StompServerThread) -> None:
    refused(server, b"SEND\ndestination:/queue/abc\\n\n\nx\0", b"destination name")
    refused(server, b"SUBSCRIBE\nid:s\ndestination:/queue/abc\\n\n\n\0", b"destination name")
    reply = refused(server, b"SEND\ndestination:/queue/..\n\nx\0", b"dot")
    assert b"'..'" in reply
    refused(server, b"SEND\ndestination:/queue/.a\n\nx\0", b"dot")
    reply = refused(server, b"SEND\ndestination:/topic/a/b\n\nx\0", b"topic name")
    assert b"queue name" not in reply
    names = {q.name for q in server.broker.store.queues()}
    assert not {"--", "abc", "-a"} & names
    assert not [t.name for t in server.broker.store.topics() if t.name.startswith("a")]


def test_an_unknown_command_is_refused_with_its_receipt_id(server: StompServerThread) -> None:
    reply = refused(server, b"BOGUS\nreceipt:r9\n\nbody\0", b"unknown command")
    assert b"receipt-id:r9" in reply
    reply = refused(server, b"MESSAGE\nreceipt:r10\n\n\0", b"unknown command")
    assert b"receipt-id:r10" in reply
    # Found by tests/test_fuzz_stomp.py: a second STOMP frame dropped the connection.
    for command in (b"STOMP", b"CONNECT"):
        frame = command + b"\naccept-version:1.2\nreceipt:r11\n\n\0"
        reply = refused(server, frame, b"already connected")
        assert b"receipt-id:r11" in reply


def test_two_brokers_on_one_store_keep_each_others_topic_subscriptions(tmp_path: Path) -> None:
    with tidelog.open(tmp_path / "d", sync="never") as store:
        with broker(tmp_path, store=store) as first:
            listener, heard = connect(first)
            listener.subscribe("/topic/news", id="s", receipt="sub")
            heard.receipt("sub")
            listener.send("/topic/news", b"one", receipt="r1")
            assert [f.body for f in heard.take(1)] == [b"one"]
            with broker(tmp_path, store=store) as second:
                # The second broker's start left the first's temporary queue alone.
                talker, _ = connect(second)
                talker.send("/topic/news", b"two", receipt="r2")
                heard_too, got_too = connect(second)
                heard_too.subscribe("/topic/news", id="s", receipt="sub")
                got_too.receipt("sub")
                talker.send("/topic/news", b"three", receipt="r3")
                assert [f.body for f in heard.take(2)] == [b"two", b"three"]
                assert [f.body for f in got_too.take(1)] == [b"three"]
                heard_too.disconnect()
                talker.disconnect()
            listener.send("/topic/news", b"four", receipt="r4")
            assert [f.body for f in heard.take(1)] == [b"four"]
            listener.disconnect()
        assert [q.name for q in store.queues("stomp-tmp-")] == []


CLIENT = textwrap.dedent(
    """
    import socket, sys, time
    sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    sock.sendall(b"CONNECT\\naccept-version:1.2\\nhost:x\\n\\n\\0")
    sock.sendall(b"SUBSCRIBE\\nid:s\\ndestination:/queue/work\\nack:client-individual\\n\\n\\0")
    seen = b""
    while seen.count(b"MESSAGE") < int(sys.argv[2]):
        seen += sock.recv(65536)
    print("holding", flush=True)
    time.sleep(600)
    """
)


def _holder(port: int, count: int) -> subprocess.Popen[str]:
    """A client process that takes `count` messages without acking them, then waits."""
    process = subprocess.Popen(
        [sys.executable, "-c", CLIENT, str(port), str(count)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "holding"
    return process


def _drain(host: str, port: int, count: int, timeout: float = 30) -> list[stomp.utils.Frame]:
    conn = stomp.Connection12([(host, port)], auto_decode=False)
    got = Collector()
    conn.set_listener("", got)
    conn.connect(wait=True)
    conn.subscribe("/queue/work", id="s", ack="client-individual")
    frames = got.take(count, timeout=timeout)
    for frame in frames:
        conn.ack(frame.headers["ack"])
    conn.disconnect()
    return frames


def test_messages_of_a_killed_client_go_to_the_next_subscriber_at_once(tmp_path: Path) -> None:
    with broker(tmp_path / "d") as server:
        conn, _ = connect(server)
        for n in range(3):
            conn.send("/queue/work", b"job %d" % n, receipt=f"r{n}")
        conn.disconnect()
        holder = _holder(server.port, 3)
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
        # The lease is 300 s; the next subscriber gets them long before.
        frames = _drain(server.host, server.port, 3)
        assert sorted(f.body for f in frames) == [b"job 0", b"job 1", b"job 2"]
        assert {f.headers.get("redelivered") for f in frames} == {"true"}


def _serve(data: Path) -> tuple[subprocess.Popen[str], int]:
    stomp_port = free_port()
    process = start_serve(data, free_port(), "--stomp-port", str(stomp_port), "--sync", "never")
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", stomp_port), timeout=0.5).close()
            return process, stomp_port
        except OSError:
            assert time.monotonic() < deadline, "the STOMP listener never came up"
            time.sleep(0.05)


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        process.wait(30)
    if process.stderr is not None:
        process.stderr.close()


JOBS = [b"job 0", b"job 1", b"job 2"]


def _held_by_a_killed_broker(process: subprocess.Popen[str], port: int) -> None:
    """Send JOBS through the broker `process`, have a client take them unacked, SIGKILL both."""
    conn = stomp.Connection12([("127.0.0.1", port)], auto_decode=False)
    conn.connect(wait=True)
    for n, body in enumerate(JOBS):
        conn.send("/queue/work", body, receipt=f"r{n}")
    conn.disconnect()
    holder = _holder(port, len(JOBS))
    try:
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    finally:
        holder.kill()
        holder.wait(30)


def test_messages_held_when_the_broker_is_killed_are_redelivered_at_once(tmp_path: Path) -> None:
    first, port = _serve(tmp_path / "d")
    try:
        _held_by_a_killed_broker(first, port)
    finally:
        _stop(first)
    second, port = _serve(tmp_path / "d")
    try:
        frames = _drain("127.0.0.1", port, len(JOBS))  # the lease is 300 s
        assert sorted(f.body for f in frames) == JOBS
        assert {f.headers.get("redelivered") for f in frames} == {"true"}
    finally:
        _stop(second)


def test_a_running_broker_releases_what_a_killed_peer_held(tmp_path: Path) -> None:
    first, first_port = _serve(tmp_path / "d")
    second, second_port = _serve(tmp_path / "d")
    try:
        _held_by_a_killed_broker(first, first_port)
        frames = _drain("127.0.0.1", second_port, len(JOBS))
        assert sorted(f.body for f in frames) == JOBS
    finally:
        _stop(first)
        _stop(second)


JOURNAL = textwrap.dedent(
    """
    import sys, time
    from tidelog.server.stomp.leases import LeaseJournal
    journal = LeaseJournal(sys.argv[1], "dead0session")
    journal.open()
    for n in range(3000):
        journal.add("work", [f"r{n}"])
        if n >= 5:
            journal.discard("work", [f"r{n}"])
    print("ready", flush=True)
    time.sleep(600)
    """
)


def test_a_killed_brokers_journal_is_compacted_and_reclaimed_once(tmp_path: Path) -> None:
    from tidelog.server.stomp.leases import reclaim_dead, session_alive

    process = subprocess.Popen(
        [sys.executable, "-c", JOURNAL, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    journal = tmp_path / "stomp" / "dead0session.leases"
    # 3,000 leases taken, all but 5 settled: compacted, not 3,000 lines.
    assert len(journal.read_text().splitlines()) <= 2 * 5 + 1000
    assert session_alive(tmp_path, "dead0session")
    assert reclaim_dead(tmp_path, lambda q, r: None, lambda s: None) == []  # alive: untouched
    process.kill()
    process.wait(30)
    process.stdout.close()
    assert not session_alive(tmp_path, "dead0session")
    released: dict[str, list[str]] = {}
    forgotten: list[str] = []
    reclaimed = reclaim_dead(tmp_path, released.__setitem__, forgotten.append)
    assert reclaimed == forgotten == ["dead0session"]
    assert {f"r{n}" for n in range(5)} <= set(released["work"])
    assert list((tmp_path / "stomp").iterdir()) == []  # its files are gone
    assert reclaim_dead(tmp_path, released.__setitem__, forgotten.append) == []
