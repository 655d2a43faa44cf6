"""The read-only engine calls a console or a metrics scrape makes (and the operator's delete).

Queue.peek / stats / delete_at, Topic.messages, Stream.stats, Consumer.lag /
reset, Store.status / disk_usage / commit_stats / observe_commits,
topic_filters.policy_matches and store.sql(files=False), each against a real store.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import FakeClock

import tidelog
from tidelog.topic_filters import policy_matches


@pytest.fixture
def timed(tmp_path: Path, clock: FakeClock) -> Iterator[tidelog.Store]:
    store = tidelog.open(tmp_path / "data", sync="never", clock=clock)
    yield store
    assert store.check() == []
    store.close()


def _receive_counts(queue: tidelog.Queue) -> dict[str, int]:
    return {m.id: m.receive_count for m in queue.peek(1000)}


# -- queues ---------------------------------------------------------------------------------------


def test_peek_shows_every_state_and_changes_nothing(timed: tidelog.Store, clock: FakeClock) -> None:
    q = timed.create_queue("jobs", visibility_timeout=30)
    first = q.send(b"one", {"kind": "a"}).id
    q.send(b"two")
    delayed = q.send(b"three", delay=60).id
    [leased] = q.receive()
    assert leased.id == first
    before_counts = q.approximate_counts()
    before_stats = q.stats()

    peeked = q.peek()
    again = q.peek()

    assert [m.body for m in peeked] == [b"one", b"two", b"three"]
    assert [m.state for m in peeked] == ["in_flight", "visible", "delayed"]
    assert [m.receive_count for m in peeked] == [1, 0, 0]
    assert peeked[0].attributes == {"kind": "a"}
    assert peeked[0].visible_at_ms == int(clock.now * 1000) + 30_000
    assert peeked[0].first_received_at_ms == int(clock.now * 1000)
    assert peeked[2].id == delayed and peeked[2].visible_at_ms == int(clock.now * 1000) + 60_000
    assert again == peeked
    assert q.approximate_counts() == before_counts
    assert q.stats() == before_stats
    # The receive after the peeks sees exactly what it would have seen.
    [next_message] = q.receive()
    assert next_message.body == b"two" and next_message.receive_count == 1
    clock.advance(31)
    [redelivered] = q.receive()
    assert redelivered.id == first and redelivered.receive_count == 2


def test_peek_pages_and_skips_deleted(timed: tidelog.Store) -> None:
    q = timed.create_queue("jobs")
    for i in range(25):
        q.send(f"m{i}")
    taken = q.receive(max_messages=10)
    for message in taken[::2]:
        q.delete(message)
    pages: list[bytes] = []
    start = 0
    while True:
        page = q.peek(4, start_offset=start)
        if not page:
            break
        pages += [m.body for m in page]
        start = page[-1].offset + 1
    assert pages == [f"m{i}".encode() for i in range(25) if not (i < 10 and i % 2 == 0)]
    with pytest.raises(tidelog.InvalidArgument, match="limit"):
        q.peek(0)
    with pytest.raises(tidelog.InvalidArgument, match="limit"):
        q.peek(1001)


def test_peek_marks_expired_messages(timed: tidelog.Store, clock: FakeClock) -> None:
    q = timed.create_queue("short", retention=60)
    q.send(b"old")
    clock.advance(61)
    q.send(b"new")
    assert [(m.body, m.state) for m in q.peek()] == [(b"old", "expired"), (b"new", "visible")]


def test_dead_letter_property_follows_the_configuration(timed: tidelog.Store) -> None:
    timed.create_queue("dlq")
    q = timed.create_queue("jobs")
    assert q.dead_letter is None
    q.set_attributes(dead_letter=("dlq", 3))
    assert timed.queue("jobs").dead_letter == ("dlq", 3) == q.dead_letter


def test_stats_totals_follow_sends_receives_and_deletes(timed: tidelog.Store) -> None:
    q = timed.create_queue("jobs")
    assert q.stats() == tidelog.QueueStats(0, 0, 0, 0, 0, 0)
    q.send_many([b"a", b"b", b"c", b"d"])
    got = q.receive(max_messages=3)
    q.delete(got[0])
    q.change_visibility(got[1], 0)
    [again] = q.receive()
    stats = q.stats()
    assert (stats.sent_total, stats.received_total, stats.deleted_total) == (4, 4, 1)
    assert (stats.visible, stats.in_flight, stats.delayed) == (1, 2, 0)
    q.purge()
    stats = q.stats()
    assert (stats.sent_total, stats.deleted_total, stats.visible + stats.in_flight) == (4, 4, 0)
    assert again.body in (b"b", b"d")


def test_delete_at_removes_one_message_in_any_state(timed: tidelog.Store, clock: FakeClock) -> None:
    q = timed.create_queue("jobs")
    q.send_many([b"a", b"b", b"c"])
    q.send(b"late", delay=30)
    [leased] = q.receive()
    offsets = {m.body: m.offset for m in q.peek()}

    assert q.delete_at(offsets[b"a"]) is True  # in flight
    assert q.delete_at(offsets[b"c"]) is True  # never looked at by a receive
    assert q.delete_at(offsets[b"late"]) is True  # delayed
    assert q.delete_at(offsets[b"a"]) is False  # already gone
    assert q.delete_at(10_000) is False

    assert [m.body for m in q.peek()] == [b"b"]
    assert q.approximate_counts() == tidelog.QueueCounts(visible=1, in_flight=0, delayed=0)
    q.delete(leased)  # the holder's delete of a message deleted under it succeeds
    with pytest.raises(tidelog.StaleReceipt):
        q.change_visibility(leased, 10)
    clock.advance(31)
    [last] = q.receive(max_messages=10)
    assert last.body == b"b" and last.receive_count == 1
    q.delete(last)
    assert len(q) == 0 and q.stats().deleted_total == 4


def test_delete_at_far_past_the_frontier_takes_several_commits(timed: tidelog.Store) -> None:
    from tidelog import queues

    q = timed.create_queue("deep")
    total = queues.MATERIALIZE_RECORDS_MAX * 2 + 10
    for start in range(0, total, 10):
        q.send_many([f"{i}" for i in range(start, min(total, start + 10))])
    commits = timed.commit_stats().commits
    assert q.delete_at(total - 1) is True
    assert timed.commit_stats().commits - commits == 3
    assert q.approximate_counts().visible == total - 1
    bodies = []
    while got := q.receive(max_messages=10):
        bodies += [int(m.body) for m in got]
        q.delete_many(got)
    assert sorted(bodies) == list(range(total - 1))


def test_delete_at_on_fifo_keeps_group_order(timed: tidelog.Store) -> None:
    q = timed.create_queue("orders.fifo", fifo=True, content_based_dedup=True)
    for i in range(6):
        q.send(f"m{i}", group_id="g")
    assert q.delete_at(2) is True
    bodies = []
    while got := q.receive(max_messages=10):
        bodies += [m.body for m in got]
        q.delete_many(got)
    assert bodies == [b"m0", b"m1", b"m3", b"m4", b"m5"]
    many = timed.create_queue("many.fifo", fifo=True, content_based_dedup=True)
    for start in range(0, 400, 10):
        many.send_many([tidelog.SendEntry(f"{i}", group_id="g") for i in range(start, start + 10)])
    with pytest.raises(tidelog.InvalidArgument, match="past the delivered frontier"):
        many.delete_at(399)


# -- topics and streams ---------------------------------------------------------------------------


def test_topic_messages_reads_history_without_delivering(
    timed: tidelog.Store, clock: FakeClock
) -> None:
    t = timed.create_topic("orders")
    q = timed.create_queue("sub")
    t.subscribe(q, raw=True)
    t.publish("first", {"kind": "x"}, subject="hello")
    clock.advance(10)
    t.publish("second")
    visible = q.approximate_counts().visible

    history = t.messages()
    assert [m.body for m in history] == [b"first", b"second"]
    assert history[0].attributes == {"kind": "x"} and history[0].subject == "hello"
    assert history[1].published_at_ms - history[0].published_at_ms == 10_000
    assert [m.body for m in t.messages(start_offset=1)] == [b"second"]
    assert [m.body for m in t.messages(from_time=clock.now)] == [b"second"]
    assert [m.body for m in t.messages(1)] == [b"first"]
    assert q.approximate_counts().visible == visible
    clock.advance(24 * 3600)
    assert [m.body for m in t.messages()] == [b"second"]  # retention of the history


def test_stream_stats_and_consumer_lag_and_reset(timed: tidelog.Store, clock: FakeClock) -> None:
    s = timed.create_stream("clicks", shards=2)
    results = [s.put(f"r{i}".encode(), f"key-{i}") for i in range(20)]
    assert s.stats() == tidelog.StreamStats(20, 20, 2, 0)
    c = s.consumer("app")
    clock.advance(5)
    lag = {x.shard_id: x for x in c.lag()}
    assert sum(x.records_behind for x in lag.values()) == 20
    assert all(x.checkpoint is None and x.millis_behind == 5000 for x in lag.values())

    by_shard: dict[str, list[str]] = {}
    for r in results:
        by_shard.setdefault(r.shard_id, []).append(r.sequence_number)
    shard, sequences = next(iter(by_shard.items()))
    c.checkpoint(shard, sequences[1])
    lag = {x.shard_id: x for x in c.lag()}
    assert lag[shard].checkpoint == sequences[1]
    assert lag[shard].records_behind == len(sequences) - 2

    assert [x.millis_behind for x in c.lag(ages=False)] == [None, None]
    c.reset("LATEST")
    assert all(x.records_behind == 0 and x.millis_behind == 0 for x in c.lag())
    assert list(c.read()) == []
    c.reset("TRIM_HORIZON", shard=shard)
    assert c.checkpoints().get(shard) is None
    assert sorted(r.sequence_number for r in c.read()) == sorted(sequences)
    c.reset(sequences[0])
    assert c.checkpoints()[shard] == sequences[0]
    with pytest.raises(tidelog.InvalidArgument):
        c.reset("not-a-number")
    with pytest.raises(tidelog.NotFound):
        tidelog.Consumer(s, "gone").reset()


# -- the store ------------------------------------------------------------------------------------


def test_status_disk_usage_and_commit_stats(tmp_path: Path) -> None:
    store = tidelog.open(tmp_path / "data")
    assert store.status() == tidelog.StoreStatus("ok", store.path, "always")
    q = store.create_queue("jobs")
    s = store.create_stream("clicks", shards=3)
    store.create_topic("news")
    before = store.commit_stats()
    seen: list[tuple[float, int]] = []
    remove = store.observe_commits(lambda seconds, ops: seen.append((seconds, ops)))
    q.send(b"x" * 5000)
    s.put(b"y" * 5000, "k")
    remove()
    q.send(b"z")
    after = store.commit_stats()
    assert after.commits - before.commits == 3
    assert after.operations - before.operations == 3
    assert after.flushes - before.flushes >= 3  # sync="always": a segment flush a commit
    assert len(seen) == 2 and all(seconds > 0 and ops == 1 for seconds, ops in seen)

    usage = store.disk_usage()
    assert usage.channels[("queue", "jobs")] >= 5000
    assert usage.channels[("stream", "clicks")] >= 5000
    assert ("topic", "news") in usage.channels
    assert usage.index_bytes > 0
    assert usage.total_bytes == usage.index_bytes + sum(usage.channels.values())
    store.close()
    assert store.status().state == "closed"
    readonly = tidelog.open(tmp_path / "data", readonly=True)
    assert readonly.status().state == "readonly"
    readonly.close()


def test_a_failing_commit_observer_does_not_break_commits(store: tidelog.Store) -> None:
    def broken(seconds: float, operations: int) -> None:
        raise RuntimeError("observer bug")

    store.observe_commits(broken)
    q = store.create_queue("jobs")
    q.send(b"still works")
    assert q.receive()[0].body == b"still works"


def test_policy_matches_attributes_and_body() -> None:
    policy = {"kind": ["video"], "size": [{"numeric": [">", 10]}]}
    assert policy_matches(
        policy, attributes={"kind": ("String", "video"), "size": ("Number", "11")}
    )
    assert not policy_matches(policy, attributes={"kind": ("String", "video")})
    assert policy_matches('{"a": {"b": ["x"]}}', body='{"a": {"b": "x"}}', scope="body")
    assert not policy_matches('{"a": ["x"]}', body="not json", scope="body")
    with pytest.raises(tidelog.InvalidArgument, match="numeric"):
        policy_matches({"n": [{"numeric": [">"]}]})


def test_sql_without_file_access(store: tidelog.Store, tmp_path: Path) -> None:
    q = store.create_queue("jobs")
    q.send(b"hello")
    assert store.sql("SELECT data FROM jobs", files=False).rows == [("hello",)]
    target = tmp_path / "out.csv"
    with pytest.raises(tidelog.SqlError, match="disabled"):
        store.sql(f"COPY (SELECT data FROM jobs) TO '{target}'", files=False)
    assert not target.exists()
    store.sql(f"COPY (SELECT data FROM jobs) TO '{target}'")
    assert target.exists()
