"""Shard subscriptions in the library (enhanced fan-out), on an injected clock.

The limits are Kinesis's: one subscription per consumer and shard; a second
within 5 s is refused, a later one takes over; 5 minutes of life.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import FakeClock

import tidelog
from tidelog.stream_subscriptions import HEARTBEAT_MS, SUBSCRIPTION_MS, TAKEOVER_MS

SHARD = "shardId-000000000000"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Iterator[tidelog.Store]:
    with tidelog.open(tmp_path / "data", sync="never", clock=clock) as s:
        yield s
        assert s.check() == []


def test_records_come_as_they_are_put_and_resume_after_the_continuation(
    store: tidelog.Store, clock: FakeClock
) -> None:
    stream = store.create_stream("s")
    consumer = stream.consumer("app")
    sub = consumer.subscribe(SHARD, "TRIM_HORIZON")
    assert sub.next_event(0) is None  # nothing yet, and no record to name in a heartbeat
    first = [stream.put(b"%d" % i, "k").sequence_number for i in range(3)]
    event = sub.next_event(1)
    assert event is not None
    assert [r.sequence_number for r in event.records] == first
    assert event.continuation_sequence_number == first[-1]
    assert event.millis_behind_latest == 0 and event.child_shards == ()
    # 5 minutes later the subscription ends; a new one resumes after the continuation.
    clock.advance(SUBSCRIPTION_MS / 1000)
    assert sub.next_event(0) is None and sub.ended
    second = [stream.put(b"more%d" % i, "k").sequence_number for i in range(2)]
    again = consumer.subscribe(SHARD, ("AFTER_SEQUENCE_NUMBER", event.continuation_sequence_number))
    resumed = again.next_event(1)
    assert resumed is not None and [r.sequence_number for r in resumed.records] == second


def test_heartbeat_without_records_names_the_position(
    store: tidelog.Store, clock: FakeClock
) -> None:
    stream = store.create_stream("s")
    last = stream.put(b"old", "k").sequence_number
    sub = stream.consumer("app").subscribe(SHARD, "LATEST")
    assert sub.next_event(0) is None
    clock.advance(HEARTBEAT_MS / 1000)
    beat = sub.next_event(0)
    assert beat is not None and beat.records == []
    assert beat.continuation_sequence_number == last  # resume AFTER it: nothing is lost


def test_a_second_subscription_within_5_s_is_refused_then_takes_over(
    store: tidelog.Store, clock: FakeClock
) -> None:
    stream = store.create_stream("s", shards=2)
    consumer = stream.consumer("app")
    first = consumer.subscribe(SHARD, "LATEST")
    with pytest.raises(tidelog.SubscriptionInUse):
        consumer.subscribe(SHARD, "LATEST")
    # Other shards and other consumers are not limited by it.
    consumer.subscribe("shardId-000000000001", "LATEST")
    stream.consumer("other").subscribe(SHARD, "LATEST")
    clock.advance(TAKEOVER_MS / 1000 - 0.001)
    with pytest.raises(tidelog.SubscriptionInUse):
        consumer.subscribe(SHARD, "LATEST")
    clock.advance(0.001)
    second = consumer.subscribe(SHARD, "LATEST")
    with pytest.raises(tidelog.SubscriptionInUse):
        first.next_event(0)
    assert first.ended
    stream.put(b"x", "k", explicit_hash_key=0)  # shard 0
    got = second.next_event(1)
    assert got is not None and [r.data for r in got.records] == [b"x"]


def test_the_last_event_of_a_closed_shard_names_its_children(store: tidelog.Store) -> None:
    stream = store.create_stream("s")
    sub = stream.consumer("app").subscribe(SHARD, "TRIM_HORIZON")
    stream.put(b"a", "k")
    left, right = stream.split_shard(SHARD, str(2**127))
    events = list(sub)
    assert [r.data for e in events for r in e.records] == [b"a"]
    last = events[-1]
    assert last.continuation_sequence_number is None
    assert [c.shard_id for c in last.child_shards] == [left, right]
    assert all(c.parent_shard_ids == (SHARD,) for c in last.child_shards)
    assert sub.ended and sub.next_event(0) is None


def test_deregistering_the_consumer_ends_its_subscription(store: tidelog.Store) -> None:
    stream = store.create_stream("s")
    sub = stream.consumer("app").subscribe(SHARD, "LATEST")
    stream.delete_consumer("app")
    with pytest.raises(tidelog.NotFound):
        sub.next_event(0)
    assert sub.ended


def test_bad_subscriptions_are_refused(store: tidelog.Store) -> None:
    stream = store.create_stream("s")
    consumer = stream.consumer("app")
    with pytest.raises(tidelog.NotFound):
        consumer.subscribe("shardId-000000000009")
    with pytest.raises(tidelog.InvalidArgument):
        consumer.subscribe(SHARD, "SOMEWHERE")
    with pytest.raises(tidelog.InvalidArgument):
        consumer.subscribe(SHARD, ("AT_SEQUENCE_NUMBER", "12"))
    stream.delete_consumer("app")
    with pytest.raises(tidelog.NotFound):
        consumer.subscribe(SHARD)
