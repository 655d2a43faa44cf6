"""Subscribed queues as views over the topic log (docs/format.md, "Topic records
and subscription views"): every queue operation on view-fed messages, retention,
unsubscribe and deletes, several processes, SIGKILL."""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import FakeClock, complete_lines

import tidelog


def text_of(message: tidelog.Message | tidelog.PeekedMessage) -> str:
    """The published text, whether the queue got it raw or in SNS's envelope."""
    body = message.body.decode()
    if body.startswith("{"):
        return str(json.loads(body)["Message"])
    return body


def drain(queue: tidelog.Queue) -> list[tidelog.Message]:
    out: list[tidelog.Message] = []
    while True:
        got = queue.receive(10, visibility_timeout=600)
        if not got:
            return out
        out.extend(got)
        queue.delete_many([m.receipt for m in got])


@pytest.fixture
def clocked(tmp_path: Path) -> Iterator[tuple[tidelog.Store, FakeClock]]:
    clock = FakeClock()
    with tidelog.open(tmp_path / "data", clock=clock) as store:
        yield store, clock
        assert store.check() == []


def topic_segments(data: Path, store: tidelog.Store, topic: str) -> int:
    log_id = store.topic(topic).log_id
    return len(list((data / "logs" / str(log_id)).glob("*.seg")))


def test_publish_appends_once_and_queues_read_it(store: tidelog.Store) -> None:
    topic = store.create_topic("t")
    queues = [store.create_queue(f"q{i}") for i in range(10)]
    for queue in queues:
        topic.subscribe(queue, raw=True)
    result = topic.publish("hello", {"k": "v"})
    assert result.delivered == 10
    # One record in the topic log, nothing in the queues' own logs.
    assert store.log("topic/t").end_offset == 1
    assert all(q.info.id and store.log(f"queue/q{i}").end_offset == 0 for i, q in enumerate(queues))
    for queue in queues:
        (message,) = queue.receive(10)
        assert message.body == b"hello" and message.attributes == {"k": "v"}
        assert message.md5_of_body == tidelog.queues.md5_of_body(b"hello")
        queue.delete(message)
        assert len(queue) == 0


def test_direct_sends_and_view_messages_share_the_queue(store: tidelog.Store) -> None:
    topic = store.create_topic("t")
    queue = store.create_queue("q", visibility_timeout=30)
    topic.subscribe(queue)  # envelope
    queue.send("direct-1")
    topic.publish("published-1", subject="hi")
    queue.send("direct-2")
    assert queue.approximate_counts() == tidelog.QueueCounts(visible=3, in_flight=0, delayed=0)
    peeked = queue.peek()
    assert sorted(text_of(m) for m in peeked) == ["direct-1", "direct-2", "published-1"]
    offsets = [m.offset for m in peeked]
    assert len(set(offsets)) == 3
    view_message = next(m for m in peeked if text_of(m) == "published-1")
    assert view_message.offset >= 1 << 48  # a view's offsets sit above the queue's own
    envelope = json.loads(view_message.body)
    assert envelope["Type"] == "Notification" and envelope["Subject"] == "hi"
    assert envelope["UnsubscribeURL"].endswith(topic.subscriptions()[0].arn)
    got = queue.receive(10)
    assert sorted(text_of(m) for m in got) == ["direct-1", "direct-2", "published-1"]
    # The same message id on every read of a view message.
    assert {m.id for m in got} >= {view_message.id}
    assert queue.stats().in_flight == 3
    for message in got:
        queue.delete(message)
    assert queue.stats().deleted_total == 3 and queue.stats().sent_total == 3
    assert queue.receive(10) == []


def test_leases_visibility_and_receive_counts_are_per_view(
    clocked: tuple[tidelog.Store, FakeClock],
) -> None:
    store, clock = clocked
    topic = store.create_topic("t")
    a = store.create_queue("a", visibility_timeout=10)
    b = store.create_queue("b", visibility_timeout=10)
    topic.subscribe(a, raw=True)
    topic.subscribe(b, raw=True)
    topic.publish("m")
    (first,) = a.receive()
    assert a.receive() == []  # leased in a
    (other,) = b.receive()  # b has its own cursor and lease
    assert other.receive_count == 1
    clock.advance(11)
    (again,) = a.receive()
    assert again.receive_count == 2 and again.id == first.id
    with pytest.raises(tidelog.StaleReceipt):
        a.delete(first)
    a.change_visibility(again, 0)
    (third,) = a.receive()
    assert third.receive_count == 3
    a.delete(third)
    assert len(a) == 0 and b.approximate_counts().visible == 1  # its lease lapsed too


def test_dead_letter_and_redrive_of_view_messages(
    clocked: tuple[tidelog.Store, FakeClock],
) -> None:
    store, clock = clocked
    topic = store.create_topic("t")
    dlq = store.create_queue("dlq")
    queue = store.create_queue("q", visibility_timeout=5, dead_letter=("dlq", 2))
    topic.subscribe(queue, raw=True)
    topic.publish("poison", {"n": 1})
    for _ in range(2):
        assert [m.text for m in queue.receive()] == ["poison"]
        clock.advance(6)
    assert queue.receive() == []  # the third receive moved it
    (dead,) = dlq.peek()
    assert dead.body == b"poison" and dead.attributes == {"n": 1}
    task = store.start_message_move_task("dlq")
    assert task.wait(30)
    (back,) = queue.receive()
    assert back.text == "poison" and back.receive_count == 1
    queue.delete(back)
    assert len(queue) == 0 and len(dlq) == 0


def test_purge_delete_at_and_retention_on_views(
    clocked: tuple[tidelog.Store, FakeClock],
) -> None:
    store, clock = clocked
    topic = store.create_topic("t")
    queue = store.create_queue("q", retention=60)
    topic.subscribe(queue, raw=True)
    for i in range(5):
        topic.publish(f"m{i}")
    target = next(m for m in queue.peek() if m.body == b"m3")
    assert queue.delete_at(target.offset) is True
    assert queue.delete_at(target.offset) is False
    assert [m.body for m in queue.peek()] == [b"m0", b"m1", b"m2", b"m4"]
    queue.purge()
    assert queue.peek() == [] and len(queue) == 0
    topic.publish("late")
    clock.advance(61)
    store.enforce_retention()
    assert queue.peek() == [] and queue.receive() == [] and len(queue) == 0


def test_topic_log_is_kept_for_a_lagging_subscription(tmp_path: Path) -> None:
    clock = FakeClock()
    data = tmp_path / "data"
    with tidelog.open(data, clock=clock, segment_bytes_max=4096, sync="never") as store:
        topic = store.create_topic("t", retention=0)
        slow = store.create_queue("slow")
        topic.subscribe(slow, raw=True)
        for i in range(200):
            topic.publish(f"message {i:04d} " + "x" * 100)
        segments = topic_segments(data, store, "t")
        assert segments > 3
        clock.advance(10)
        store.enforce_retention()
        # Retention 0, but the subscription has read nothing: every segment stays.
        assert topic_segments(data, store, "t") == segments
        bodies = [m.body for m in drain(slow)]
        assert len(bodies) == 200 and bodies[0].startswith(b"message 0000")
        store.enforce_retention()
        assert topic_segments(data, store, "t") < segments
        assert store.check() == []


def test_unsubscribe_keeps_what_was_published(store: tidelog.Store) -> None:
    topic = store.create_topic("t")
    queue = store.create_queue("q")
    sub = topic.subscribe(queue, raw=True)
    topic.publish("before")
    topic.unsubscribe(sub)
    topic.publish("after")
    assert [m.body for m in queue.peek()] == [b"before"]
    (message,) = queue.receive()
    queue.delete(message)
    store.enforce_retention()  # the drained view is dropped
    assert store.queue("q").attributes().get("views") is None
    topic.subscribe(queue, raw=True)
    topic.publish("again")
    assert [m.body for m in drain(queue)] == [b"again"]


def test_unsubscribe_of_an_empty_view_drops_it_at_once(store: tidelog.Store) -> None:
    from tidelog.queues import queue_views

    topic = store.create_topic("t")
    queue = store.create_queue("q")
    sub = topic.subscribe(queue)
    assert len(queue_views(store._logs, "q")) == 1
    topic.unsubscribe(sub)
    assert queue_views(store._logs, "q") == ()


def test_deleted_and_recreated_queue(store: tidelog.Store) -> None:
    topic = store.create_topic("t")
    queue = store.create_queue("q")
    topic.subscribe(queue, raw=True)
    topic.publish("one")
    store.delete_queue("q")
    assert topic.publish("lost").delivered == 0
    again = store.create_queue("q")
    assert topic.publish("two").delivered == 1  # a fresh view from here
    assert [m.body for m in drain(again)] == [b"two"]


def test_deleting_the_topic_moves_undelivered_messages_into_the_queue(
    store: tidelog.Store,
) -> None:
    topic = store.create_topic("t")
    queue = store.create_queue("q")
    topic.subscribe(queue, raw=True)
    for body in ("a", "b", "c"):
        topic.publish(body)
    (leased,) = queue.receive()
    queue.delete(leased)
    (held,) = queue.receive()
    store.delete_topic("t")
    queue.delete(held)  # a receipt of the gone view deletes nothing, and does not fail
    bodies = sorted(m.body for m in drain(queue))
    assert bodies == sorted({b"a", b"b", b"c"} - {leased.body})
    assert store.log("queue/q").end_offset == 2


def test_fifo_topic_keeps_order_and_dedup_through_views(store: tidelog.Store) -> None:
    topic = store.create_topic("t.fifo", fifo=True)
    queue = store.create_queue("q.fifo", fifo=True)
    topic.subscribe(queue, raw=True)
    for i in range(6):
        topic.publish(f"g{i % 2}-{i}", group_id=f"g{i % 2}", dedup_id=f"d{i}")
    assert topic.publish("dup", group_id="g0", dedup_id="d0").duplicate
    got = queue.receive(10)
    order: dict[str, list[str]] = {"g0": [], "g1": []}
    for message in got:
        order[message.group_id or ""].append(message.text)
    assert order == {"g0": ["g0-0", "g0-2", "g0-4"], "g1": ["g1-1", "g1-3", "g1-5"]}
    assert all(m.sequence_number is not None for m in got)
    assert queue.receive(10) == []  # both groups locked while their messages are in flight
    g0 = [m for m in got if m.group_id == "g0"]
    for message in g0:
        queue.change_visibility(message, 0)
    again = queue.receive(10)
    assert [m.text for m in again] == ["g0-0", "g0-2", "g0-4"]  # in order, once released
    for message in again + [m for m in got if m.group_id == "g1"]:
        queue.delete(message)
    assert len(queue) == 0


def test_filters_decide_per_subscription(store: tidelog.Store) -> None:
    topic = store.create_topic("t")
    even = store.create_queue("even")
    every = store.create_queue("every")
    topic.subscribe(even, filter_policy={"parity": ["even"]}, raw=True)
    topic.subscribe(every, raw=True)
    for i in range(10):
        topic.publish(f"m{i}", {"parity": ("even", "odd")[i % 2]})
    assert [m.text for m in drain(even)] == [f"m{i}" for i in range(0, 10, 2)]
    assert sorted(m.text for m in drain(every)) == sorted(f"m{i}" for i in range(10))
    assert even.stats().sent_total == 5


def test_sql_reads_view_messages(store: tidelog.Store) -> None:
    topic = store.create_topic("t")
    queue = store.create_queue("q")
    topic.subscribe(queue, raw=True)
    queue.send("direct")
    topic.publish("published", {"k": "v"})
    result = store.sql("SELECT data, attributes FROM q ORDER BY sequence_number")
    assert result.rows == [("direct", None), ("published", '{"k": "v"}')]
    (message,) = [m for m in queue.receive(10) if m.text == "published"]
    queue.delete(message)
    assert store.sql("SELECT data FROM q").rows == [("direct",)]


# -- several processes ------------------------------------------------------------------------

PUBLISHER = r"""
import sys, tidelog
store = tidelog.open(sys.argv[1])
topic = store.topic("t")
for i in range(int(sys.argv[3])):
    topic.publish(f"{sys.argv[2]}-{i}", {"parity": ("even", "odd")[i % 2]})
"""

CONSUMER = r"""
import json, sys, time, tidelog
store = tidelog.open(sys.argv[1])
queue = store.queue(sys.argv[2])
deadline = time.monotonic() + float(sys.argv[3])
idle_until = None
while time.monotonic() < deadline:
    got = queue.receive(10, wait=1, visibility_timeout=120)
    for message in got:
        text = message.text
        print(json.loads(text)["Message"] if text.startswith("{") else text, flush=True)
    if got:
        queue.delete_many([m.receipt for m in got])
    if open(sys.argv[4]).read() == "done" and not got and len(queue) == 0:
        break
"""


def test_processes_publish_and_consume_through_views(tmp_path: Path) -> None:
    path = tmp_path / "data"
    flag = tmp_path / "flag"
    flag.write_text("")
    with tidelog.open(path) as store:
        topic = store.create_topic("t")
        for name in ("all", "even"):
            store.create_queue(name)
        topic.subscribe(store.queue("all"), raw=True)
        topic.subscribe(store.queue("even"), filter_policy={"parity": ["even"]})
    count = 60
    consumers = [
        subprocess.Popen(
            [sys.executable, "-c", CONSUMER, str(path), name, "240", str(flag)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in ("all", "all", "even")
    ]
    publishers = [
        subprocess.Popen([sys.executable, "-c", PUBLISHER, str(path), f"p{n}", str(count)])
        for n in range(3)
    ]
    for publisher in publishers:
        assert publisher.wait(240) == 0
    flag.write_text("done")
    outputs = [c.communicate(timeout=240)[0].split() for c in consumers]
    published = {f"p{n}-{i}" for n in range(3) for i in range(count)}
    got_all = outputs[0] + outputs[1]
    # Every message once per subscription (a lease of 120 s never lapses here).
    assert sorted(got_all) == sorted(published)
    assert sorted(outputs[2]) == sorted(m for m in published if int(m.split("-")[1]) % 2 == 0)
    with tidelog.open(path) as store:
        assert len(store.queue("all")) == 0 and len(store.queue("even")) == 0
        assert store.check() == []


# -- SIGKILL mid-publish ---------------------------------------------------------------------

KILLED = r"""
import sys, tidelog
store = tidelog.open(sys.argv[1])
topic = store.topic("t")
q0 = store.queue("q0")
print("ready", flush=True)
i = 0
while True:
    if i % 5 == 4:
        for message in q0.receive(3, visibility_timeout=600):
            print("received", message.text, flush=True)
            q0.delete(message)
            print("deleted", message.text, flush=True)
    elif i % 3 == 2:
        topic.publish_many([
            tidelog.PublishEntry(f"{sys.argv[2]}-{i}-{k}", {"parity": ("even", "odd")[k % 2]})
            for k in range(4)
        ])
    else:
        q0.send(f"direct-{sys.argv[2]}-{i}")
        topic.publish(f"{sys.argv[2]}-{i}-0", {"parity": "even"})
    i += 1
"""


def _peek_all(queue: tidelog.Queue) -> list[tidelog.PeekedMessage]:
    """Every undeleted message, paging through peek's 1,000 a call."""
    out: list[tidelog.PeekedMessage] = []
    while page := queue.peek(1000, start_offset=out[-1].offset + 1 if out else 0):
        out += page
    return out


def test_sigkill_mid_publish_reaches_all_subscriptions_or_none(tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    path = tmp_path / "data"
    with tidelog.open(path) as store:
        topic = store.create_topic("t")
        for i in range(4):
            store.create_queue(f"q{i}")
            policy = {"parity": ["even"]} if i >= 2 else None
            topic.subscribe(store.queue(f"q{i}"), filter_policy=policy, raw=i != 1)
    deleted: set[str] = set()
    received: set[str] = set()
    for round_ in range(6):
        child = subprocess.Popen(
            [sys.executable, "-c", KILLED, str(path), f"r{round_}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.1, 0.6))
        os.kill(child.pid, signal.SIGKILL)
        out, _ = child.communicate()
        lines = complete_lines(out)  # the child may be killed while it writes one
        deleted |= {line.split()[1] for line in lines if line.startswith("deleted")}
        received |= {line.split()[1] for line in lines if line.startswith("received")}
    with tidelog.open(path) as store:
        published = [json_text(r.value) for r in store.log("topic/t").read()]
        assert len(published) > 5, f"seed {seed}: the children published too little"
        even = {t for t in published if int(t.rsplit("-", 1)[1]) % 2 == 0}
        for i in range(4):
            queue = store.queue(f"q{i}")
            peeked = _peek_all(queue)
            # The view's counters were committed with the records they count.
            assert len(queue) == len(peeked), f"seed {seed}: q{i} counts differ from its messages"
            texts = [text_of(m) for m in peeked]
            assert len(texts) == len(set(texts)), f"seed {seed}: q{i} holds a duplicate"
            here = {t for t in texts if not t.startswith("direct-")}
            wanted = set(published) if i < 2 else even
            if i == 0:
                assert not here & deleted, f"seed {seed}: an acknowledged delete came back"
                # A delete that committed as the child was killed: received, not acknowledged.
                unacknowledged = received - deleted
                assert wanted - here - deleted <= unacknowledged, f"seed {seed}: q0 lost messages"
                assert here <= wanted, f"seed {seed}: q0 holds what was not published"
            else:
                assert here == wanted, f"seed {seed}: q{i} differs from the topic"
        assert store.check() == []


def json_text(value: bytes) -> str:
    return value.decode()


# -- over the wire: boto3 (SQS and SNS) and the console's browse -------------------------------


def test_wire_and_console_browse_view_messages(tmp_path: Path) -> None:
    import http.client

    from server_harness import client

    from tidelog.server import ServerThread

    with tidelog.open(tmp_path / "data") as store, ServerThread(store) as server:
        sqs, sns = client("sqs", server.url), client("sns", server.url)
        url = sqs.create_queue(QueueName="jobs")["QueueUrl"]
        arn = sns.create_topic(Name="news")["TopicArn"]
        sns.subscribe(
            TopicArn=arn, Protocol="sqs", Endpoint="arn:aws:sqs:us-east-1:000000000000:jobs"
        )
        sqs.send_message(QueueUrl=url, MessageBody="direct")
        for i in range(3):
            sns.publish(TopicArn=arn, Message=f"news {i}")

        def get(path: str) -> Any:
            connection = http.client.HTTPConnection(server.host, server.port, timeout=30)
            try:
                connection.request("GET", path)
                response = connection.getresponse()
                assert response.status == 200
                return json.loads(response.read())
            finally:
                connection.close()

        page = get("/console/api/queue/messages?name=jobs&limit=2")
        rest = get(f"/console/api/queue/messages?name=jobs&limit=10&start={page['next_start']}")
        browsed = page["messages"] + rest["messages"]
        bodies = [base64.b64decode(m["body_b64"]).decode() for m in browsed]
        texts = [json.loads(b)["Message"] if b.startswith("{") else b for b in bodies]
        assert texts == ["direct", "news 0", "news 1", "news 2"]
        # The console's delete of one view message, by its offset.
        assert store.queue("jobs").delete_at(browsed[2]["offset"]) is True
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60)
        bodies = sorted(m["Body"] for m in got["Messages"])
        assert len(bodies) == 3 and "direct" in bodies
        assert sorted(json.loads(b)["Message"] for b in bodies if b != "direct") == [
            "news 0",
            "news 2",
        ]
        for message in got["Messages"]:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert attributes["ApproximateNumberOfMessages"] == "0"
        assert "views" not in attributes
        assert store.check() == []


def test_a_delayed_queue_delays_view_messages(clocked: tuple[tidelog.Store, FakeClock]) -> None:
    store, clock = clocked
    topic = store.create_topic("t")
    slow = store.create_queue("slow", delay=5)
    fast = store.create_queue("fast")
    topic.subscribe(slow, raw=True)
    topic.subscribe(fast, raw=True)
    topic.publish("m")
    assert slow.approximate_counts() == tidelog.QueueCounts(visible=0, in_flight=0, delayed=1)
    assert slow.receive() == [] and [m.state for m in slow.peek()] == ["delayed"]
    assert [m.text for m in fast.receive()] == ["m"]  # the delay is the queue's, not the topic's
    slow.set_attributes(delay=0)  # fixed at publish: the message keeps its 5 s
    clock.advance(4)
    assert slow.receive() == []
    clock.advance(2)
    assert slow.approximate_counts().visible == 1
    assert [m.text for m in slow.receive()] == ["m"]


def test_a_continuous_query_reads_a_queues_view(tmp_path: Path) -> None:
    clock = FakeClock(1_700_000_040.0)  # a whole minute: windows of 10 s start here
    with tidelog.open(tmp_path / "data", sync="never", clock=clock) as store:
        topic = store.create_topic("t")
        orders = store.create_queue("orders")
        topic.subscribe(orders, filter_policy={"kind": ["order"]}, raw=True)
        out = store.create_queue("out")
        app = store.create_application(
            "counts",
            "queue.orders",
            "SELECT epoch_ms(window_start) AS start_ms, count(*) AS n, "
            "sum((data->>'v')::INT) AS total FROM orders GROUP BY window_start",
            window="tumbling",
            size=10,
            destination="queue:out",
        )
        for second in range(12):
            kind = "order" if second % 2 == 0 else "other"
            topic.publish(json.dumps({"v": second}), {"kind": kind})
            if second == 5:
                orders.send(json.dumps({"v": 100}))  # a direct send is in the table too
            clock.advance(1)
        assert app.run_once() == 1
        (row,) = [json.loads(m.body) for m in out.receive(10)]
        assert row["n"] == 6 and row["total"] == 0 + 2 + 4 + 6 + 8 + 100


def test_cli_tail_dump_load_and_info_show_view_messages(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from tidelog.cli.main import main

    data = tmp_path / "data"
    with tidelog.open(data) as store:
        topic = store.create_topic("t")
        queue = store.create_queue("q")
        topic.subscribe(queue, raw=True)
        queue.send("direct")
        topic.publish("published", {"k": "v"})

    def run(*args: str, input: str | None = None) -> str:
        result = CliRunner().invoke(main, [*args, "--data", str(data)], input=input)
        assert result.exit_code == 0, (result.output, result.exception)
        return result.stdout

    lines = [json.loads(line) for line in run("tail", "q", "--format", "json").splitlines()]
    assert [line["body"]["text"] for line in lines] == ["direct", "published"]
    assert lines[1]["offset"] == 1 << 48 and lines[1]["attributes"]
    dump = run("dump", "queue:q", "--silent")
    assert json.loads(dump.splitlines()[0])["records"] == 2
    run("load", "copy", "--silent", input=dump)
    info = json.loads(run("info", "queue:q", "--json"))
    assert [v["topic"] for v in info["views"]] == ["t"]
    assert info["queue"]["visible"] == 2
    with tidelog.open(data) as store:
        copied = store.queue("copy").receive(10)
        assert sorted(m.text for m in copied) == ["direct", "published"]
        assert next(m for m in copied if m.text == "published").attributes == {"k": "v"}
