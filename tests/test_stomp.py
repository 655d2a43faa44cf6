"""The STOMP broker through the real client stomp.py: ack modes, NACK, transactions,
selectors, durable subscriptions, heart-beats, bodies, and crossing to SQS/SNS."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import stomp
from server_harness import client
from stomp_harness import FAST, Collector, Raw, broker, connect

import tidelog
from tidelog.server import ServerThread
from tidelog.server.stomp import BrokerConfig, StompServerThread


def test_binary_body_with_nul_bytes_round_trips(tmp_path: Path) -> None:
    body = bytes(range(256)) * 4 + b"\0\0end"
    with broker(tmp_path / "d") as server:
        conn, got = connect(server)
        conn.subscribe("/queue/bin", id="s1")
        conn.send("/queue/bin", body, headers={"content-type": "application/octet-stream"})
        (frame,) = got.take(1)
        assert frame.body == body
        assert frame.headers["content-type"] == "application/octet-stream"
        assert frame.headers["destination"] == "/queue/bin"
        conn.disconnect()


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
def test_each_version_connects_and_escapes_headers(tmp_path: Path, version: str) -> None:
    with broker(tmp_path / "d") as server:
        conn, got = connect(server, version)
        conn.subscribe("/queue/v", id="s1")
        value = "a:b" if version == "1.0" else "a:b\\c\nd"
        conn.send("/queue/v", b"x", headers={"weird": value})
        (frame,) = got.take(1)
        assert frame.headers["weird"] == value
        conn.disconnect()


def test_competing_consumers_share_a_queue_without_duplicates(tmp_path: Path) -> None:
    with broker(tmp_path / "d") as server:
        consumers = [connect(server) for _ in range(3)]
        for index, (conn, _) in enumerate(consumers):
            conn.subscribe(
                "/queue/work",
                id=f"s{index}",
                ack="client-individual",
                headers={"activemq.prefetchSize": "1"},
            )
        producer, _ = connect(server)
        for n in range(30):
            producer.send("/queue/work", f"m{n}".encode(), receipt=f"r{n}")
        seen: list[bytes] = []
        counts = []
        deadline = time.monotonic() + 10
        while len(seen) < 30 and time.monotonic() < deadline:
            for conn, got in consumers:
                while not got.messages.empty():
                    frame = got.messages.get()
                    seen.append(frame.body)
                    conn.ack(frame.headers["ack"])
            time.sleep(0.01)
        for _, got in consumers:
            counts.append(got.messages.qsize())
        assert sorted(seen) == sorted(f"m{n}".encode() for n in range(30))
        for conn, _ in [*consumers, (producer, None)]:
            conn.disconnect()


def test_prefetch_limits_what_one_slow_consumer_holds(tmp_path: Path) -> None:
    with broker(tmp_path / "d") as server:
        slow, slow_got = connect(server)
        slow.subscribe("/queue/pf", id="s", ack="client", headers={"activemq.prefetchSize": "2"})
        for n in range(6):
            slow.send("/queue/pf", f"{n}".encode())
        slow_got.take(2)
        assert slow_got.none(0.5)  # holds two unacked, gets no more
        fast, fast_got = connect(server)
        fast.subscribe("/queue/pf", id="f", ack="auto")
        assert len(fast_got.take(4)) == 4
        slow.disconnect()
        fast.disconnect()


def test_auto_ack_deletes_on_delivery(tmp_path: Path) -> None:
    with tidelog.open(tmp_path / "d", sync="never") as store:
        with broker(tmp_path, store=store) as server:
            conn, got = connect(server)
            conn.subscribe("/queue/auto", id="s", ack="auto")
            conn.send("/queue/auto", b"1")
            got.take(1)
            time.sleep(0.2)
            conn.disconnect()
        counts = store.queue("auto").approximate_counts()
        assert (counts.visible, counts.in_flight) == (0, 0)


def test_client_ack_is_cumulative_and_the_rest_is_redelivered(tmp_path: Path) -> None:
    with broker(tmp_path / "d") as server:
        conn, got = connect(server)
        conn.subscribe("/queue/c", id="s", ack="client")
        for n in range(3):
            conn.send("/queue/c", f"{n}".encode())
        frames = got.take(3)
        assert "redelivered" not in frames[0].headers
        conn.ack(frames[1].headers["ack"])  # acks 0 and 1
        conn.disconnect()
        again, again_got = connect(server)
        again.subscribe("/queue/c", id="s", ack="client")
        (frame,) = again_got.take(1)
        assert frame.body == b"2"
        assert frame.headers["redelivered"] == "true"
        assert again_got.none(0.5)
        again.disconnect()


def test_client_individual_ack_acks_one(tmp_path: Path) -> None:
    with broker(tmp_path / "d") as server:
        conn, got = connect(server)
        conn.subscribe("/queue/ci", id="s", ack="client-individual")
        for n in range(3):
            conn.send("/queue/ci", f"{n}".encode())
        frames = got.take(3)
        conn.ack(frames[1].headers["ack"])
        conn.disconnect()
        again, again_got = connect(server)
        again.subscribe("/queue/ci", id="s", ack="client-individual")
        bodies = sorted(f.body for f in again_got.take(2))
        assert bodies == [b"0", b"2"]
        again.disconnect()


def test_stomp_11_acks_by_message_id(tmp_path: Path) -> None:
    with broker(tmp_path / "d") as server:
        conn, got = connect(server, "1.1")
        conn.subscribe("/queue/v11", id="s", ack="client-individual")
        conn.send("/queue/v11", b"x")
        (frame,) = got.take(1)
        conn.ack(frame.headers["message-id"], "s")
        conn.disconnect()
        again, again_got = connect(server, "1.1")
        again.subscribe("/queue/v11", id="s", ack="client-individual")
        assert again_got.none(0.7)
        again.disconnect()


def test_nack_sends_the_message_to_the_dead_letter_queue(tmp_path: Path) -> None:
    with broker(tmp_path / "d") as server:
        conn, got = connect(server)
        conn.subscribe("/queue/orders.new", id="s", ack="client-individual")
        conn.send("/queue/orders.new", b"poison", headers={"kind": "bad"})
        (frame,) = got.take(1)
        conn.nack(frame.headers["ack"])
        assert got.none(0.7)  # not redelivered: ActiveMQ's poison ack
        conn.subscribe("/queue/ActiveMQ.DLQ", id="dlq")
        (dead,) = got.take(1)
        assert dead.body == b"poison"
        assert dead.headers["original-destination"] == "/queue/orders.new"
        assert dead.headers["kind"] == "bad"
        assert dead.headers["message-id"] == frame.headers["message-id"]
        assert dead.headers["originalExpiration"] == "0"
        assert dead.headers["destination"] == "/queue/ActiveMQ.DLQ"
        conn.disconnect()


def test_transaction_commit_applies_sends_and_acks_together(tmp_path: Path) -> None:
    with tidelog.open(tmp_path / "d", sync="never") as store:
        store.create_queue("out")
        with broker(tmp_path, store=store) as server:
            conn, got = connect(server)
            conn.send("/queue/in", b"job")
            conn.subscribe("/queue/in", id="s", ack="client-individual")
            (job,) = got.take(1)
            conn.begin("tx1")
            conn.send("/queue/out", b"result-1", transaction="tx1")
            conn.send("/queue/out", b"result-2", transaction="tx1")
            conn.ack(job.headers["ack"], transaction="tx1")
            time.sleep(0.2)
            assert store.queue("out").approximate_counts().visible == 0
            conn.commit("tx1", receipt="c1")
            time.sleep(0.3)
            assert store.queue("out").approximate_counts().visible == 2
            counts = store.queue("in").approximate_counts()
            assert (counts.visible, counts.in_flight) == (0, 0)
            conn.disconnect()


def test_transaction_abort_and_disconnect_discard(tmp_path: Path) -> None:
    with tidelog.open(tmp_path / "d", sync="never") as store:
        store.create_queue("out")
        with broker(tmp_path, store=store) as server:
            conn, got = connect(server)
            conn.send("/queue/in", b"job")
            conn.subscribe("/queue/in", id="s", ack="client-individual")
            (job,) = got.take(1)
            conn.begin("tx1")
            conn.send("/queue/out", b"never", transaction="tx1")
            conn.ack(job.headers["ack"], transaction="tx1")
            conn.abort("tx1")
            (again,) = got.take(1)  # the aborted ack: redelivered
            assert again.body == b"job"
            assert again.headers["redelivered"] == "true"
            conn.begin("tx2")
            conn.send("/queue/out", b"never-either", transaction="tx2")
            conn.disconnect()  # an open transaction is aborted
            time.sleep(0.3)
            assert store.queue("out").approximate_counts().visible == 0


def test_selectors_on_queues_and_topics(tmp_path: Path) -> None:
    with broker(tmp_path / "d") as server:
        conn, got = connect(server)
        conn.subscribe(
            "/queue/sel",
            id="reds",
            headers={"selector": "color = 'red' AND JMSPriority > 3"},
        )
        conn.subscribe("/topic/news", id="sport", headers={"selector": "kind IN ('sport')"})
        time.sleep(0.2)
        conn.send("/queue/sel", b"blue", headers={"color": "blue"})
        conn.send("/queue/sel", b"low", headers={"color": "red", "priority": "1"})
        conn.send("/queue/sel", b"red", headers={"color": "red", "priority": "7"})
        conn.send("/topic/news", b"weather", headers={"kind": "weather"})
        conn.send("/topic/news", b"goal", headers={"kind": "sport"})
        bodies = sorted(f.body for f in got.take(2))
        assert bodies == [b"goal", b"red"]
        assert got.none(0.5)
        conn.disconnect()
        other, other_got = connect(server)
        other.subscribe("/queue/sel", id="all")
        assert sorted(f.body for f in other_got.take(2)) == [b"blue", b"low"]
        other.disconnect()


def test_a_bad_selector_gets_an_error_naming_the_position(tmp_path: Path) -> None:
    with broker(tmp_path / "d") as server:
        conn, got = connect(server)
        conn.subscribe("/queue/sel", id="s", headers={"selector": "color = "})
        deadline = time.monotonic() + 5
        while not got.errors and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "at 8" in got.errors[0].headers["message"]


def test_topics_copy_to_current_subscribers_only(tmp_path: Path) -> None:
    with broker(tmp_path / "d") as server:
        first, first_got = connect(server)
        second, second_got = connect(server)
        first.subscribe("/topic/t", id="a")
        first.send("/topic/t", b"before", receipt="r")
        first_got.receipt("r")
        second.subscribe("/topic/t", id="b", receipt="s")
        second_got.receipt("s")  # subscribed before "after" is sent, however loaded the machine
        first.send("/topic/t", b"after", receipt="r2")
        assert [f.body for f in first_got.take(2)] == [b"before", b"after"]
        assert [f.body for f in second_got.take(1)] == [b"after"]
        first.disconnect()
        second.disconnect()


def test_durable_subscription_survives_reconnect_and_restart(tmp_path: Path) -> None:
    durable = {"activemq.subscriptionName": "audit"}
    path = tmp_path / "d"
    with broker(path) as server:
        conn, got = connect(server, headers={"client-id": "app-1"})
        conn.subscribe("/topic/events", id="s", ack="client-individual", headers=durable)
        conn.send("/topic/events", b"1")
        (first,) = got.take(1)
        conn.ack(first.headers["ack"])
        conn.disconnect()  # deactivates; messages are kept
        producer, _ = connect(server)
        producer.send("/topic/events", b"2", receipt="r")
        producer.disconnect()
    with broker(path) as server:  # a new broker over the reopened store
        producer, producer_got = connect(server)
        producer.send("/topic/events", b"3", receipt="r")
        conn, got = connect(server, headers={"client-id": "app-1"})
        conn.subscribe("/topic/events", id="s", ack="auto", headers=durable)
        assert [f.body for f in got.take(2)] == [b"2", b"3"]
        # Unsubscribing by name deletes it: later messages are not kept. (Two
        # connections: each step waits for its RECEIPT so the order is sure.)
        conn.unsubscribe("s", headers={**durable, "receipt": "u"})
        got.receipt("u")
        producer.send("/topic/events", b"4", receipt="r4")
        producer_got.receipt("r4")
        conn.subscribe("/topic/events", id="s2", ack="auto", headers=durable)
        assert got.none(0.6)
        conn.disconnect()
        producer.disconnect()


def test_a_client_id_in_use_is_refused(tmp_path: Path) -> None:
    with broker(tmp_path / "d") as server:
        conn, _ = connect(server, headers={"client-id": "dup"})
        raw = Raw(server)
        reply = raw.connect("accept-version:1.2\nhost:x\nclient-id:dup\n")
        assert reply.startswith(b"ERROR\n") and b"dup" in reply
        assert raw.closed()
        raw.close()
        conn.disconnect()


def test_heart_beats_both_ways(tmp_path: Path) -> None:
    with broker(tmp_path / "d") as server:
        conn, got = connect(server, heartbeats=(200, 200))
        deadline = time.monotonic() + 30
        while got.heartbeats < 3:  # the broker beats as the client asked
            assert time.monotonic() < deadline, got.heartbeats
            time.sleep(0.05)
        assert conn.is_connected()  # the client's beats keep it alive
        conn.disconnect()


def test_connected_answers_the_clients_heart_beat_as_activemq_does(tmp_path: Path) -> None:
    with broker(tmp_path / "d") as server:
        # cx,cy in, cy,cx out: beats every 500 ms as asked, none expected.
        raw = Raw(server)
        reply = raw.connect("accept-version:1.2\nhost:x\nheart-beat:0,500\n")
        assert b"heart-beat:500,0" in reply
        started = time.monotonic()
        raw.sock.settimeout(10)
        beats = 0
        while beats < 3:
            chunk = raw.sock.recv(16)
            assert chunk.strip(b"\n") == b"", chunk
            beats += chunk.count(b"\n")
        assert time.monotonic() - started >= 1.0  # three beats, 500 ms apart
        time.sleep(1)
        # Promised nothing, sent nothing for a while: still connected.
        raw.send(b"SEND\ndestination:/queue/hb\nreceipt:r1\n\nx\0")
        assert raw.frame().startswith(b"RECEIPT\nreceipt-id:r1")
        raw.close()
        # No header: no heart-beats either way.
        raw = Raw(server)
        assert b"heart-beat:0,0" in raw.connect()
        assert not raw.closed(1.5)
        raw.close()


def test_a_client_that_promises_beats_and_goes_silent_is_dropped(tmp_path: Path) -> None:
    with broker(tmp_path / "d") as server:
        conn, _ = connect(server)
        conn.send("/queue/hb", b"held", receipt="r")
        conn.disconnect()
        raw = Raw(server)
        reply = raw.connect("accept-version:1.2\nhost:x\nheart-beat:500,0\n")
        assert b"heart-beat:0,500" in reply
        raw.send(b"SUBSCRIBE\nid:s\ndestination:/queue/hb\nack:client\n\n\0")
        assert raw.frame().startswith(b"MESSAGE\n")
        started = time.monotonic()
        raw.sock.settimeout(30)
        reply = raw.frame()  # an ERROR saying why, then the close
        assert reply.startswith(b"ERROR\n") and b"heart-beat" in reply, reply
        assert raw.closed(30)  # promised a beat every 500 ms, then sent nothing
        assert time.monotonic() - started < 8  # 1.5 x 500 ms, and slack for a loaded machine
        raw.close()
        # Its unacked message went back at once, to the next subscriber.
        conn, got = connect(server)
        conn.subscribe("/queue/hb", id="s", ack="client")
        (frame,) = got.take(1, timeout=10)
        assert frame.body == b"held" and frame.headers.get("redelivered") == "true"
        conn.ack(frame.headers["ack"])
        conn.disconnect()


def test_expires_and_scheduled_delay(tmp_path: Path) -> None:
    with broker(tmp_path / "d") as server:
        conn, got = connect(server)
        past = str(int(time.time() * 1000) - 1000)
        conn.send("/queue/x", b"stale", headers={"expires": past})
        conn.send("/queue/x", b"later", headers={"AMQ_SCHEDULED_DELAY": "1000"})
        conn.send("/queue/x", b"now")
        started = time.monotonic()
        conn.subscribe("/queue/x", id="s")
        assert [f.body for f in got.take(1)] == [b"now"]
        assert [f.body for f in got.take(1)] == [b"later"]
        assert time.monotonic() - started >= 0.5
        assert got.none(0.3)
        conn.disconnect()


def test_correlation_id_reply_to_and_priority_are_kept(tmp_path: Path) -> None:
    with broker(tmp_path / "d") as server:
        conn, got = connect(server)
        conn.subscribe("/queue/rpc", id="s")
        headers = {"correlation-id": "c-7", "reply-to": "/queue/answers", "priority": "9"}
        conn.send("/queue/rpc", b"ask", headers={**headers, "persistent": "true"})
        (frame,) = got.take(1)
        for name, value in headers.items():
            assert frame.headers[name] == value
        assert frame.headers["message-id"].startswith("ID:")
        conn.disconnect()


def test_login_is_checked_against_the_users_file(tmp_path: Path) -> None:
    users = tmp_path / "users"
    users.write_text("# login:passcode\nadmin:s3cret\n")
    from tidelog.server.stomp import load_users

    config = BrokerConfig(poll_wait_seconds=0.3, users=load_users(users))
    with broker(tmp_path / "d", config) as server:
        conn, _ = connect(server, username="admin", passcode="s3cret")
        assert conn.is_connected()
        conn.disconnect()
        raw = Raw(server)
        reply = raw.connect("accept-version:1.2\nhost:x\nlogin:admin\npasscode:wrong\n")
        assert reply.startswith(b"ERROR\n")
        assert raw.closed()
        raw.close()


def test_stomp_in_sqs_out_and_sns_in_stomp_out(tmp_path: Path) -> None:
    with tidelog.open(tmp_path / "d", sync="never") as store:
        with ServerThread(store) as http, StompServerThread(store, config=FAST) as server:
            conn, got = connect(server)
            conn.send("/queue/bridge", b"from stomp", receipt="r1")
            time.sleep(0.1)
            sqs = client("sqs", http.url)
            url = sqs.get_queue_url(QueueName="bridge")["QueueUrl"]
            reply = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=2)
            assert reply["Messages"][0]["Body"] == "from stomp"
            sqs.delete_message(QueueUrl=url, ReceiptHandle=reply["Messages"][0]["ReceiptHandle"])

            sqs.send_message(
                QueueUrl=url,
                MessageBody="from sqs",
                MessageAttributes={"kind": {"DataType": "String", "StringValue": "k"}},
            )
            conn.subscribe("/queue/bridge", id="q")
            (frame,) = got.take(1)
            assert (frame.body, frame.headers["kind"]) == (b"from sqs", "k")

            conn.subscribe("/topic/alerts", id="t")
            time.sleep(0.2)
            sns = client("sns", http.url)
            arn = sns.create_topic(Name="alerts")["TopicArn"]
            sns.publish(
                TopicArn=arn,
                Message="from sns",
                MessageAttributes={"level": {"DataType": "String", "StringValue": "high"}},
            )
            (frame,) = got.take(1)
            assert (frame.body, frame.headers["level"]) == (b"from sns", "high")
            conn.disconnect()
        assert store.check() == []


def test_a_failed_fire_and_forget_send_reports_and_keeps_the_ones_before(tmp_path: Path) -> None:
    with tidelog.open(tmp_path / "d", sync="never") as store:
        store.create_queue("small", max_message_size=1024)
        with broker(tmp_path, store=store) as server:
            raw = Raw(server)
            raw.connect()
            ok = b"SEND\ndestination:/queue/small\n\nfits\0"
            too_big = b"SEND\ndestination:/queue/small\ncontent-length:2000\n\n" + b"x" * 2000
            raw.send(ok + too_big + b"\0")
            reply = raw.frame()
            assert reply.startswith(b"ERROR\n") and b"SEND" in reply
            assert raw.closed()
            raw.close()
            conn, got = connect(server)
            conn.subscribe("/queue/small", id="s")
            assert [f.body for f in got.take(1)] == [b"fits"]
            conn.disconnect()


def test_tidelog_serve_runs_the_stomp_listener(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    ports = []
    for _ in range(2):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
    command = [sys.executable, "-m", "tidelog.cli.main", "serve", "--data", str(tmp_path / "d")]
    command += ["--port", str(ports[0]), "--stomp-port", str(ports[1]), "--sync", "never"]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", ports[1]), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the STOMP listener never came up"
                time.sleep(0.1)
        conn = stomp.Connection12([("127.0.0.1", ports[1])], auto_decode=False)
        got = Collector()
        conn.set_listener("", got)
        conn.connect(wait=True)
        conn.subscribe("/queue/served", id="s")
        conn.send("/queue/served", b"hello")
        assert [f.body for f in got.take(1)] == [b"hello"]
        conn.disconnect()
    finally:
        proc.terminate()
        assert proc.wait(30) == 0
        if proc.stderr is not None:
            proc.stderr.close()


def test_leases_of_live_connections_are_renewed(tmp_path: Path) -> None:
    config = BrokerConfig(poll_wait_seconds=0.3, lease_seconds=2)
    with broker(tmp_path / "d", config) as server:
        holder, held = connect(server)
        holder.subscribe("/queue/lease", id="s", ack="client-individual")
        holder.send("/queue/lease", b"mine")
        (frame,) = held.take(1)
        other, other_got = connect(server)
        other.subscribe("/queue/lease", id="s", ack="client-individual")
        assert other_got.none(3.5)  # past the 2 s lease: renewed, not redelivered
        holder.ack(frame.headers["ack"])
        holder.disconnect()
        other.disconnect()
