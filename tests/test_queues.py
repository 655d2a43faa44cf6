"""Queues against real LMDB and real files, with an injected clock."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import queue_conformance
from helpers import FakeClock

import tidelog
from tidelog.queues import AttributeValue, md5_of_attributes, send_in, typed_attributes


class LibraryHarness:
    def __init__(self, store: tidelog.Store, clock: FakeClock) -> None:
        self.store = store
        self.clock = clock

    def create(self, name: str, **attributes: Any) -> tidelog.Queue:
        return self.store.create_queue(name, **attributes)

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)


@pytest.fixture
def cstore(tmp_path: Path, clock: FakeClock) -> Iterator[tidelog.Store]:
    with tidelog.open(tmp_path / "data", sync="never", clock=clock) as opened:
        yield opened
        assert opened.check() == []


@pytest.mark.parametrize("check", queue_conformance.CHECKS, ids=lambda c: c.__name__)
def test_conformance(check: Callable[..., None], cstore: tidelog.Store, clock: FakeClock) -> None:
    harness = LibraryHarness(cstore, clock)
    if check is queue_conformance.check_stale_receipt_does_not_delete:
        check(harness, tidelog.StaleReceipt)
    else:
        check(harness)


# -- names, attributes, limits ------------------------------------------------------


def test_names_and_limits(cstore: tidelog.Store) -> None:
    for bad in ("", "a" * 81, "has space", "dot.name"):
        with pytest.raises(tidelog.InvalidArgument, match="queue name"):
            cstore.create_queue(bad)
    with pytest.raises(tidelog.InvalidArgument, match="fifo"):
        cstore.create_queue("plain", fifo=True)
    with pytest.raises(tidelog.InvalidArgument, match="fifo"):
        cstore.create_queue("x.fifo")
    cases = {
        "visibility_timeout": 43201,
        "delay": 901,
        "retention": 59,
        "max_message_size": 1023,
        "receive_wait": 21,
    }
    for attribute, value in cases.items():
        with pytest.raises(tidelog.InvalidArgument, match=attribute):
            cstore.create_queue("q", **{attribute: value})
    cstore.create_queue("a" * 80)
    cstore.create_queue("b" * 75 + ".fifo", fifo=True)


def test_attributes_get_set_list_delete(cstore: tidelog.Store) -> None:
    q = cstore.create_queue("orders", visibility_timeout=10)
    cstore.create_queue("orders-dlq")
    cstore.create_queue("other")
    assert q.attributes()["visibility_timeout"] == 10
    q.set_attributes(visibility_timeout=60, dead_letter=("orders-dlq", 3))
    attrs = cstore.queue("orders").attributes()
    assert attrs["visibility_timeout"] == 60 and attrs["dead_letter"] == ("orders-dlq", 3)
    with pytest.raises(tidelog.InvalidArgument, match="fifo"):
        q.set_attributes(fifo=True)
    assert [x.name for x in cstore.queues("orders")] == ["orders", "orders-dlq"]
    assert [x.name for x in cstore.dead_letter_source_queues("orders-dlq")] == ["orders"]
    with pytest.raises(tidelog.AlreadyExists):
        cstore.create_queue("other", visibility_timeout=5)
    assert cstore.create_queue("other", exist_ok=True).name == "other"
    cstore.delete_queue("other")
    with pytest.raises(tidelog.NotFound):
        cstore.queue("other")
    with pytest.raises(tidelog.NotFound):
        cstore.delete_queue("other")


def test_message_size_limit_names_it(cstore: tidelog.Store) -> None:
    q = cstore.create_queue("small", max_message_size=1024)
    q.send(b"x" * 1024)
    with pytest.raises(tidelog.InvalidArgument, match="max_message_size"):
        q.send(b"x" * 1025)
    with pytest.raises(tidelog.InvalidArgument, match="over the batch limit"):
        q.send_many([b"x"] * 11)
    big = cstore.create_queue("big")
    with pytest.raises(tidelog.InvalidArgument, match="BatchRequestTooLong"):
        big.send_many([b"x" * 200_000] * 6)


def test_attribute_types_and_md5() -> None:
    typed = typed_attributes(
        {
            "s": "text",
            "i": 42,
            "f": 1.5,
            "b": b"\x01",
            "custom": ("Number.float", "2.50"),
            "boto": {"DataType": "String.json", "StringValue": "{}"},
        }
    )
    assert typed["s"] == AttributeValue("String", "text")
    assert typed["i"] == AttributeValue("Number", "42")
    assert typed["b"] == AttributeValue("Binary", b"\x01")
    assert typed["custom"].python == 2.5
    # A published reference value (localstack's SQS test) for this digest.
    one = {"timestamp": AttributeValue("Number", "1493147359900")}
    assert md5_of_attributes(one) == "235c5c510d26fb653d073faed50ae77c"
    assert md5_of_attributes({}) == ""
    for bad in ({"AWS.x": "v"}, {"a..b": "v"}, {"x": True}, {"x": ("Date", "1")}):
        with pytest.raises(tidelog.InvalidArgument):
            typed_attributes(bad)
    with pytest.raises(tidelog.InvalidArgument, match="over SQS's 10"):
        typed_attributes({f"a{i}": "v" for i in range(11)})


def test_md5_of_attributes_matches_reference_algorithm() -> None:
    # SQS's algorithm as the AWS SDKs implement it, written out independently.
    import struct

    def reference(attrs: dict[str, tuple[str, Any]]) -> str:
        out = b""
        for name in sorted(attrs):
            data_type, value = attrs[name]
            raw = value if isinstance(value, bytes) else value.encode()
            out += struct.pack(">I", len(name)) + name.encode()
            out += struct.pack(">I", len(data_type)) + data_type.encode()
            out += b"\x02" if data_type.startswith("Binary") else b"\x01"
            out += struct.pack(">I", len(raw)) + raw
        return hashlib.md5(out).hexdigest()

    attrs = {"z": ("String", "é"), "a": ("Binary.png", b"\x00\xff"), "n": ("Number", "-1.5")}
    typed = {k: AttributeValue(*v) for k, v in attrs.items()}
    assert md5_of_attributes(typed) == reference(attrs)


def test_attribute_selection(cstore: tidelog.Store) -> None:
    q = cstore.create_queue("sel")
    q.send(b"x", attributes={"a.1": "1", "a.2": "2", "b": "3"})
    [m] = q.receive(attribute_names=["a.*"])
    assert set(m.attributes) == {"a.1", "a.2"}
    q.change_visibility(m.receipt, 0)
    [m] = q.receive(attribute_names=["b"])
    assert m.attributes == {"b": "3"}


def test_str_body_is_utf8(cstore: tidelog.Store) -> None:
    q = cstore.create_queue("text")
    q.send("héllo")
    [m] = q.receive()
    assert m.body == "héllo".encode() and m.text == "héllo"


# -- timing rules (all with the injected clock) --------------------------------------


def test_retention_expires_messages_and_reclaims_segments(tmp_path: Path, clock: FakeClock) -> None:
    with tidelog.open(tmp_path / "d", sync="never", clock=clock) as store:
        q = store.create_queue("ret", retention=60, segment_bytes_max=4096)
        for _ in range(10):
            q.send_many([b"x" * 100] * 10)
        log_dir = tmp_path / "d" / "logs" / str(q.log_id)
        before = len(os.listdir(log_dir))
        assert before > 3
        clock.advance(61)
        q.send(b"fresh")
        assert [m.body for m in q.receive(max_messages=10)] == [b"fresh"]
        assert len(os.listdir(log_dir)) < before  # head passed them: reclaimed
        assert store.check() == []


def test_replay_window_keeps_history_and_replay_redelivers(
    tmp_path: Path, clock: FakeClock
) -> None:
    with tidelog.open(tmp_path / "d", sync="never", clock=clock) as store:
        q = store.create_queue("hist", replay_window=3600, segment_bytes_max=4096)
        other = store.create_queue("copy")
        start = clock()
        for i in range(60):
            q.send(f"m{i}".encode() * 20, attributes={"i": i})
        while batch := q.receive(max_messages=10):
            q.delete_many([m.receipt for m in batch])
        assert len(q) == 0
        clock.advance(10)
        assert q.replay(from_time=start, into=other) == 60
        got = []
        while batch := other.receive(max_messages=10):
            got += batch
        assert sorted(m.attributes["i"] for m in got) == list(range(60))  # type: ignore[type-var]
        assert q.replay(from_offset=55) == 5
        assert len(q.receive(max_messages=10)) == 5


def test_dead_letter_moves_in_the_receive(cstore: tidelog.Store, clock: FakeClock) -> None:
    dlq = cstore.create_queue("dlq")
    q = cstore.create_queue("work", visibility_timeout=10, dead_letter=("dlq", 2))
    sent = q.send(b"poison", attributes={"k": "v"})
    for expected in (1, 2):
        [m] = q.receive()
        assert m.receive_count == expected
        clock.advance(11)
    assert q.receive() == []  # the third receive moved it instead
    [dead] = dlq.receive()
    assert (dead.id, dead.body, dead.attributes) == (sent.id, b"poison", {"k": "v"})
    assert len(q) == 0
    with pytest.raises(tidelog.InvalidArgument, match="same type"):
        cstore.create_queue("f.fifo", fifo=True, dead_letter=("dlq", 2))


def test_redrive_and_cancel(cstore: tidelog.Store, clock: FakeClock) -> None:
    dlq = cstore.create_queue("r-dlq")
    q = cstore.create_queue("r-src", visibility_timeout=1, dead_letter=("r-dlq", 1))
    q.send_many([f"m{i}".encode() for i in range(5)])
    q.receive(max_messages=10)
    clock.advance(2)
    assert q.receive(max_messages=10) == []
    assert len(dlq) == 5
    task = cstore.start_message_move_task("r-dlq")
    assert task.wait(5) and task.status == "COMPLETED" and task.moved == 5
    assert sorted(m.body for m in q.receive(max_messages=10)) == [
        f"m{i}".encode() for i in range(5)
    ]
    # A slow task can be cancelled part way.
    for i in range(30):
        dlq.send(f"x{i}".encode())
    slow = cstore.start_message_move_task("r-dlq", "r-src", max_messages_per_second=20)
    deadline = time.monotonic() + 10
    while slow.refresh().moved == 0 and time.monotonic() < deadline:
        cstore._logs.wait_for_append(0.05)  # the worker's first batch (10), then 0.5 s pause
    cstore.cancel_message_move_task(slow.handle)
    assert slow.wait(5) and slow.status == "CANCELLED"
    assert 0 < slow.moved < 30
    assert len(dlq) + slow.moved == 30


def test_fifo_dedup_by_content_and_scope(cstore: tidelog.Store, clock: FakeClock) -> None:
    q = cstore.create_queue("d.fifo", fifo=True, content_based_dedup=True)
    a = q.send(b"same", group_id="g1")
    b = q.send(b"same", group_id="g2")
    assert b.duplicate and b.id == a.id and b.sequence_number == a.sequence_number
    clock.advance(299)
    assert q.send(b"same", group_id="g1").duplicate
    clock.advance(2)
    assert not q.send(b"same", group_id="g1").duplicate
    scoped = cstore.create_queue(
        "s.fifo",
        fifo=True,
        content_based_dedup=True,
        dedup_scope="messageGroup",
        fifo_throughput_limit="perMessageGroupId",
    )
    assert not scoped.send(b"same", group_id="g1").duplicate
    assert not scoped.send(b"same", group_id="g2").duplicate
    with pytest.raises(tidelog.InvalidArgument, match="per-message delay"):
        q.send(b"x", group_id="g", delay=5)
    with pytest.raises(tidelog.InvalidArgument, match="group"):
        q.send(b"x")


def test_send_in_lands_with_other_writes_atomically(cstore: tidelog.Store) -> None:
    a = cstore.create_queue("fan-a")
    b = cstore.create_queue("fan-b")
    ma, mb = a.prepare(b"to a"), b.prepare(b"to b")

    def op(ctx: Any) -> None:
        send_in(ctx, a, [ma])
        send_in(ctx, b, [mb])
        raise tidelog.InvalidArgument("abort")

    with pytest.raises(tidelog.InvalidArgument):
        cstore._logs.submit(op)
    assert a.receive() == [] and b.receive() == []
    cstore._logs.submit(lambda ctx: (send_in(ctx, a, [ma]), send_in(ctx, b, [mb])))
    assert [m.body for m in a.receive()] == [b"to a"]
    assert [m.body for m in b.receive()] == [b"to b"]


def test_state_stays_proportional_to_in_flight(cstore: tidelog.Store) -> None:
    q = cstore.create_queue("flat")
    for _ in range(50):
        q.send_many([b"x"] * 10)
        q.delete_many([m.receipt for m in q.receive(max_messages=10)])
    with cstore._logs.env.begin() as txn:
        entries = txn.stat(cstore._logs.database(b"queue_entries"))["entries"]
        due = txn.stat(cstore._logs.database(b"queue_due"))["entries"]
    assert entries == 0 and due == 0


# -- long polling ------------------------------------------------------------------------


def test_long_poll_wakes_within_50ms_of_a_send_from_another_thread(tmp_path: Path) -> None:
    with tidelog.open(tmp_path / "d", sync="never") as store:
        q = store.create_queue("lp")
        # The best of up to five rounds: a loaded machine can delay one wake-up,
        # a poller that is not woken by the send misses every round.
        delays = []
        for _ in range(5):
            sent_at: list[float] = []

            def sender(sent_at: list[float]) -> None:
                time.sleep(0.2)
                sent_at.append(time.monotonic())
                q.send(b"wake")

            thread = threading.Thread(target=sender, args=(sent_at,))
            thread.start()
            got = q.receive(wait=5)
            woke = time.monotonic()
            thread.join()
            assert [m.body for m in got] == [b"wake"]
            q.delete(got[0].receipt)
            delays.append(woke - sent_at[0])
            if delays[-1] < 0.05:
                break
        assert min(delays) < 0.05, delays
        # An empty long poll returns after its wait.
        started = time.monotonic()
        assert q.receive(wait=0.2) == []
        assert 0.15 < time.monotonic() - started < 1.0


def test_receive_looks_past_dead_lettered_entries(cstore: tidelog.Store, clock: FakeClock) -> None:
    """Due entries moved to the DLQ do not use up a receive: it returns every
    available message it was asked for (found by the topic-views state machine)."""
    cstore.create_queue("dlq")
    queue = cstore.create_queue("q", visibility_timeout=10, dead_letter=("dlq", 2))
    for i in range(6):
        queue.send(f"m{i}")
    first = queue.receive(10)
    assert [m.text for m in first] == [f"m{i}" for i in range(6)]
    clock.advance(11)
    assert [m.text for m in queue.receive(3)] == ["m0", "m1", "m2"]  # received twice now
    for message in first[3:]:
        queue.change_visibility(message, 15)  # due after m0-m2
    clock.advance(20)
    assert sorted(m.text for m in queue.receive(3)) == ["m3", "m4", "m5"]
    assert sorted(m.body for m in cstore.queue("dlq").peek()) == [b"m0", b"m1", b"m2"]
