"""Topics against real LMDB and real files: filters, fan-out, envelopes, FIFO, replay."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from filter_policy_cases import CASES, Case
from helpers import FakeClock

import tidelog
from tidelog.queues import AttributeValue, md5_of_attributes
from tidelog.topic_filters import FilterPolicy


@pytest.fixture
def cstore(tmp_path: Path, clock: FakeClock) -> Iterator[tidelog.Store]:
    with tidelog.open(tmp_path / "data", sync="never", clock=clock) as opened:
        yield opened
        assert opened.check() == []


def drain(queue: tidelog.Queue) -> list[tidelog.Message]:
    out: list[tidelog.Message] = []
    while True:
        got = queue.receive(10, visibility_timeout=600)
        if not got:
            return out
        out.extend(got)


def publish_args(case: Case) -> tuple[bytes, dict[str, Any] | None]:
    if case.scope == "body":
        return json.dumps(case.message).encode(), None
    return b"m", {name: AttributeValue(v["Type"], v["Value"]) for name, v in case.message.items()}


# -- the conformance table, end to end through a topic and a queue -----------------------


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_filter_policy_conformance(case: Case, cstore: tidelog.Store) -> None:
    topic = cstore.create_topic("t")
    queue = cstore.create_queue("q")
    topic.subscribe(queue, filter_policy=case.policy, filter_scope=case.scope)  # type: ignore[arg-type]
    body, attributes = publish_args(case)
    result = topic.publish(body, attributes)
    got = drain(queue)
    assert (len(got) == 1) is case.matches, case
    assert result.delivered == (1 if case.matches else 0)


def test_conformance_table_covers_every_operator_both_ways() -> None:
    seen: dict[str, set[bool]] = {}
    for case in CASES:
        seen.setdefault(case.operator, set()).add(case.matches)
    assert all(outcomes == {True, False} for outcomes in seen.values()), seen
    for needed in (
        "exact-string", "exact-number", "prefix", "suffix", "anything-but-list",
        "anything-but-prefix", "anything-but-suffix", "numeric-equals", "numeric-range",
        "exists-true", "exists-false", "equals-ignore-case", "cidr", "or-operator",
        "nested-body", "string-array",
    ):  # fmt: skip
        assert needed in seen


def test_policy_validation_messages() -> None:
    six = {f"k{i}": ["v"] for i in range(6)}
    with pytest.raises(tidelog.InvalidArgument, match="6 keys.*5"):
        FilterPolicy(six)
    wide = {"a": [str(i) for i in range(11)], "b": [str(i) for i in range(14)]}
    with pytest.raises(tidelog.InvalidArgument, match="154 combinations.*150"):
        FilterPolicy(wide)
    cases = {
        "unknown operator": {"a": [{"regex": "x"}]},
        "outside SNS's range": {"a": [{"numeric": [">", 1e10]}]},
        "5 decimal": {"a": [{"numeric": ["=", 0.123456]}]},
        "is empty": {"a": [{"numeric": [">", 5, "<", 1]}]},
        "nested keys need filter_scope='body'": {"a": {"b": ["c"]}},
        "non-empty list": {"a": []},
        "cidr": {"a": [{"cidr": "not-an-ip"}]},
        "exists takes true or false": {"a": [{"exists": "yes"}]},
    }
    for message, policy in cases.items():
        with pytest.raises(tidelog.InvalidArgument, match=message):
            FilterPolicy(policy)
    # $or paths each count their own keys and combinations (SNS's example: 14).
    policy = {
        "source": ["aws.cloudwatch", "aws.events"],
        "$or": [
            {"metricName": ["CPUUtilization", "ReadLatency"]},
            {"metricType": ["MetricType"], "$or": [{"metricId": [1234, 4321]},
                                                    {"spaceId": [1000, 2000, 3000]}]},
        ],
    }  # fmt: skip
    assert len(FilterPolicy(policy).conjunctions) == 3


def test_subscribe_rejects_bad_policy_and_wrong_queue_type(cstore: tidelog.Store) -> None:
    topic = cstore.create_topic("t")
    cstore.create_queue("q")
    cstore.create_queue("f.fifo", fifo=True)
    with pytest.raises(tidelog.InvalidArgument, match="filter_policy"):
        topic.subscribe("q", filter_policy={"a": "not a list"})
    with pytest.raises(tidelog.InvalidArgument, match="standard queues only"):
        topic.subscribe("f.fifo")
    with pytest.raises(tidelog.NotFound):
        topic.subscribe("missing")
    assert topic.subscriptions() == []


# -- names, attributes, lifecycle ----------------------------------------------------------


def test_names_attributes_list_delete(cstore: tidelog.Store) -> None:
    for bad in ("", "a" * 257, "has space", "dot.name"):
        with pytest.raises(tidelog.InvalidArgument, match="topic name"):
            cstore.create_topic(bad)
    with pytest.raises(tidelog.InvalidArgument, match="fifo"):
        cstore.create_topic("plain", fifo=True)
    cstore.create_topic("a" * 256)
    topic = cstore.create_topic("orders", retention=3600, display_name="Orders")
    cstore.create_topic("orders-x.fifo", fifo=True, content_based_dedup=True)
    with pytest.raises(tidelog.AlreadyExists):
        cstore.create_topic("orders")
    assert cstore.create_topic("orders", retention=3600, display_name="Orders", exist_ok=True) == (
        topic
    )
    assert [t.name for t in cstore.topics("orders")] == ["orders", "orders-x.fifo"]
    attrs = topic.attributes()
    assert attrs["arn"] == "arn:aws:sns:us-east-1:000000000000:orders"
    assert (attrs["retention"], attrs["display_name"], attrs["fifo"]) == (3600, "Orders", False)
    topic.set_attributes(retention=0, display_name="O")
    assert cstore.topic("orders").attributes()["retention"] == 0
    assert cstore.log("topic/orders").info.retention_ms == 0
    assert cstore.topic(topic.arn) == topic
    queue = cstore.create_queue("q")
    sub = topic.subscribe(queue)
    assert sub.arn.startswith(topic.arn + ":") and sub.endpoint_arn.endswith(":q")
    assert topic.subscribe(queue) == sub  # idempotent, as SNS
    with pytest.raises(tidelog.InvalidArgument, match="already subscribed"):
        topic.subscribe(queue, raw=True)
    cstore.delete_topic("orders")
    with pytest.raises(tidelog.NotFound):
        cstore.topic("orders")
    with pytest.raises(tidelog.NotFound):
        topic.publish(b"x")
    assert cstore.queue("q").receive() == []  # the queue outlives the topic


def test_publish_limits(cstore: tidelog.Store) -> None:
    topic = cstore.create_topic("t")
    with pytest.raises(tidelog.InvalidArgument, match="256"):
        topic.publish(b"x" * (256 * 1024 + 1))
    topic.publish(b"x" * (256 * 1024 - 10), {"k": "v"})
    with pytest.raises(tidelog.InvalidArgument, match="UTF-8"):
        topic.publish(b"\xff\xfe")
    with pytest.raises(tidelog.InvalidArgument, match="empty"):
        topic.publish(b"")
    with pytest.raises(tidelog.InvalidArgument, match="subject"):
        topic.publish(b"x", subject="s" * 101)
    with pytest.raises(tidelog.InvalidArgument, match="FIFO topics only"):
        topic.publish(b"x", group_id="g")
    with pytest.raises(tidelog.InvalidArgument, match="over the batch limit of 10"):
        topic.publish_many([b"x"] * 11)


# -- delivery formats ------------------------------------------------------------------------------


def test_envelope_is_sns_shaped_and_raw_passes_through(
    cstore: tidelog.Store, clock: FakeClock
) -> None:
    topic = cstore.create_topic("orders")
    wrapped = cstore.create_queue("wrapped")
    raw = cstore.create_queue("raw")
    sub = topic.subscribe(wrapped)
    topic.subscribe(raw, raw=True)
    attributes = {"store": "example_corp", "price_usd": 210.75, "tags": ["a", "b"], "bin": b"\x01"}
    result = topic.publish("hello ✓", attributes, subject="Order")
    (message,) = drain(wrapped)
    assert message.typed_attributes == {}
    text = message.body.decode()
    assert text.startswith('{\n  "Type" : "Notification",\n  "MessageId" : ')
    envelope = json.loads(text)
    assert list(envelope) == [
        "Type", "MessageId", "TopicArn", "Subject", "Message", "Timestamp", "SignatureVersion",
        "Signature", "SigningCertURL", "UnsubscribeURL", "MessageAttributes",
    ]  # fmt: skip
    assert envelope["MessageId"] == result.id
    assert envelope["TopicArn"] == topic.arn
    assert (envelope["Subject"], envelope["Message"]) == ("Order", "hello ✓")
    assert envelope["Timestamp"] == "2023-11-14T22:13:20.000Z"  # FakeClock's start
    assert envelope["SignatureVersion"] == "1"
    assert envelope["UnsubscribeURL"].endswith("SubscriptionArn=" + sub.arn)
    assert envelope["MessageAttributes"] == {
        "store": {"Type": "String", "Value": "example_corp"},
        "price_usd": {"Type": "Number", "Value": "210.75"},
        "tags": {"Type": "String.Array", "Value": '["a", "b"]'},
        "bin": {"Type": "Binary", "Value": "AQ=="},
    }
    (passed,) = drain(raw)
    assert passed.body == "hello ✓".encode()
    assert passed.typed_attributes["tags"] == AttributeValue("String.Array", '["a", "b"]')
    assert passed.attributes["price_usd"] == 210.75
    assert passed.md5_of_attributes == md5_of_attributes(passed.typed_attributes)


def test_publish_many_is_one_commit(cstore: tidelog.Store) -> None:
    topic = cstore.create_topic("t")
    queues = [cstore.create_queue(f"q{i}") for i in range(5)]
    for queue in queues:
        topic.subscribe(queue, filter_policy={"n": [{"numeric": [">=", 0]}]}, raw=True)
    commits = cstore._logs.commit_count
    batch = topic.publish_many(
        [tidelog.PublishEntry(f"m{i}", {"n": i}, id=f"e{i}") for i in range(9)]
        + [{"body": "", "id": "bad"}]
    )
    assert cstore._logs.commit_count == commits + 1
    assert [entry for entry, _ in batch.successful] == [f"e{i}" for i in range(9)]
    assert [f.entry_id for f in batch.failed] == ["bad"]
    assert all(result.delivered == 5 for _, result in batch.successful)
    for queue in queues:
        assert [m.body for m in drain(queue)] == [f"m{i}".encode() for i in range(9)]
    assert len(cstore.log("topic/t")) == 9


def test_deleted_or_small_queue_is_skipped_not_fatal(cstore: tidelog.Store) -> None:
    topic = cstore.create_topic("t")
    small = cstore.create_queue("small", max_message_size=1024)
    gone = cstore.create_queue("gone")
    ok = cstore.create_queue("ok")
    for queue in (small, gone, ok):
        topic.subscribe(queue, raw=True)
    cstore.delete_queue("gone")
    result = topic.publish(b"x" * 2000)
    assert result.delivered == 1
    assert len(drain(ok)) == 1 and drain(small) == []


# -- subscription changes take effect at a log position --------------------------------------------


def test_filter_change_takes_effect_at_effective_offset(cstore: tidelog.Store) -> None:
    topic = cstore.create_topic("t")
    queue = cstore.create_queue("q")
    sub = topic.subscribe(queue, filter_policy={"kind": ["a"]}, raw=True)
    assert sub.effective_offset == 0
    topic.publish(b"1", {"kind": "a"})
    topic.publish(b"2", {"kind": "b"})
    changed = topic.update_subscription(sub, filter_policy={"kind": ["b"]})
    assert changed.effective_offset == 2
    topic.publish(b"3", {"kind": "a"})
    topic.publish(b"4", {"kind": "b"})
    assert [m.body for m in drain(queue)] == [b"1", b"4"]
    wrapped = topic.update_subscription(sub, raw=False, filter_policy=None)
    assert (wrapped.raw, wrapped.filter_policy, wrapped.effective_offset) == (False, None, 4)
    topic.publish(b"5", {"kind": "zzz"})
    (message,) = drain(queue)
    assert json.loads(message.body)["Message"] == "5"
    topic.unsubscribe(sub)
    topic.publish(b"6")
    assert drain(queue) == [] and topic.subscriptions() == []


def test_subscription_changes_seen_by_other_handles(tmp_path: Path) -> None:
    with (
        tidelog.open(tmp_path / "d", sync="never") as one,
        tidelog.open(tmp_path / "d", sync="never") as two,
    ):
        topic_one = one.create_topic("t")
        queue = one.create_queue("q")
        topic_two = two.topic("t")
        topic_two.publish(b"before")  # caches the empty subscriber list
        topic_one.subscribe(queue, raw=True)
        topic_two.publish(b"after")
        assert [m.body for m in drain(queue)] == [b"after"]


# -- FIFO --------------------------------------------------------------------------------------


def test_fifo_topic_keeps_group_order_and_deduplicates(cstore: tidelog.Store) -> None:
    topic = cstore.create_topic("t.fifo", fifo=True)
    queues = [cstore.create_queue(f"q{i}.fifo", fifo=True) for i in range(2)]
    cstore.create_queue("std")
    with pytest.raises(tidelog.InvalidArgument, match="FIFO queues only"):
        topic.subscribe("std")
    for queue in queues:
        topic.subscribe(queue, raw=True)
    with pytest.raises(tidelog.InvalidArgument, match="group_id"):
        topic.publish(b"x")
    with pytest.raises(tidelog.InvalidArgument, match="dedup_id"):
        topic.publish(b"x", group_id="g")
    first = topic.publish(b"a1", group_id="a", dedup_id="1")
    topic.publish(b"b1", group_id="b", dedup_id="2")
    topic.publish(b"a2", group_id="a", dedup_id="3")
    again = topic.publish(b"a1 again", group_id="a", dedup_id="1")
    assert again.duplicate and again.id == first.id and again.delivered == 0
    assert first.sequence_number == "00000000000000000000"
    for queue in queues:
        got = queue.receive(10)
        assert [m.body for m in got] == [b"a1", b"b1", b"a2"]
        assert [m.group_id for m in got] == ["a", "b", "a"]
    assert len(cstore.log("topic/t.fifo")) == 3


# -- replay ---------------------------------------------------------------------------------------


def test_replay_from_a_time_applies_the_current_filter(
    cstore: tidelog.Store, clock: FakeClock
) -> None:
    topic = cstore.create_topic("t")
    start = clock.now
    for i in range(6):
        topic.publish(f"m{i}", {"n": i}, subject=f"s{i}")
        clock.advance(100)
    late = cstore.create_queue("late")
    sub = topic.subscribe(late, filter_policy={"n": [{"numeric": [">=", 1]}]})
    assert drain(late) == []
    # From t0+250: messages 3, 4, 5 (published at +300, +400, +500).
    assert topic.replay(sub, from_time=start + 250) == 3
    got = [json.loads(m.body) for m in drain(late)]
    assert [e["Message"] for e in got] == ["m3", "m4", "m5"]
    assert got[0]["Timestamp"] == "2023-11-14T22:18:20.000Z"  # the original time
    # The current filter applies: now only even n.
    topic.update_subscription(sub, filter_policy={"n": [0, 2, 4]}, raw=True)
    assert topic.replay(sub, from_time=start) == 3
    assert [m.body for m in drain(late)] == [b"m0", b"m2", b"m4"]
    assert topic.replay(sub, from_time=start, to_time=start + 150) == 1
    drain(late)
    # Retention bounds replay: with 200 s, only what is newer than now - 200 s.
    topic.set_attributes(retention=200)
    assert topic.replay(sub, from_time=start) == 1  # m4 (at +400, now is +600)
    drain(late)
    topic.set_attributes(retention=0)
    assert topic.replay(sub, from_time=start) == 0


def test_fifo_replay_is_not_dropped_as_duplicate(cstore: tidelog.Store) -> None:
    topic = cstore.create_topic("t.fifo", fifo=True, content_based_dedup=True)
    queue = cstore.create_queue("q.fifo", fifo=True)
    sub = topic.subscribe(queue, raw=True)
    for i in range(3):
        topic.publish(f"m{i}", group_id="g")
    assert len(queue.receive(10)) == 3
    assert topic.replay(sub, from_time=0) == 3
    queue.purge()
    assert topic.replay(sub, from_time=0) == 3
    assert [m.body for m in queue.receive(10)] == [b"m0", b"m1", b"m2"]
