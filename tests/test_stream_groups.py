"""Consumer groups: shard leases, takeover, hand-off, fenced checkpoints, resharding.

In one process with an injected clock: workers are driven round by round
with `step()`, so lease expiry is the clock's doing and no test sleeps.
(tests/test_stream_groups_procs.py runs workers in real processes.)
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import FakeClock

import tidelog

LEASE_MS = 10_000


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Iterator[tidelog.Store]:
    with tidelog.open(tmp_path / "data", sync="never", clock=clock) as s:
        yield s
        assert s.check() == []


class Log:
    """What every processor of a test saw, in order: (worker, call, shard, detail)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, object]] = []
        self.processed: dict[str, list[str]] = defaultdict(list)  # shard -> sequence numbers

    def of(self, call: str) -> list[tuple[str, str, object]]:
        return [(w, s, d) for w, c, s, d in self.calls if c == call]


class Recorder(tidelog.RecordProcessor):
    """Checkpoints after every batch (unless told not to), and records every call."""

    def __init__(self, worker: str, log: Log, checkpoint: bool = True) -> None:
        self.worker = worker
        self.log = log
        self.checkpoint_batches = checkpoint
        self.shard = ""

    def initialize(self, shard_id: str, checkpoint: str | None) -> None:
        self.shard = shard_id
        self.log.calls.append((self.worker, "initialize", shard_id, checkpoint))

    def process_records(
        self, records: list[tidelog.StreamRecord], checkpointer: tidelog.Checkpointer
    ) -> None:
        for record in records:
            assert record.shard_id == self.shard
            self.log.processed[self.shard].append(record.sequence_number)
        self.log.calls.append((self.worker, "process", self.shard, len(records)))
        if self.checkpoint_batches:
            checkpointer.checkpoint()

    def lease_lost(self) -> None:
        self.log.calls.append((self.worker, "lease_lost", self.shard, None))

    def shard_ended(self, checkpointer: tidelog.Checkpointer) -> None:
        self.log.calls.append((self.worker, "shard_ended", self.shard, None))
        checkpointer.checkpoint()

    def shutdown_requested(self, checkpointer: tidelog.Checkpointer) -> None:
        self.log.calls.append((self.worker, "shutdown_requested", self.shard, None))
        checkpointer.checkpoint()


def worker(
    group: tidelog.ConsumerGroup, name: str, log: Log, checkpoint: bool = True
) -> tidelog.Worker:
    return group.worker(
        lambda: Recorder(name, log, checkpoint), worker_id=name, lease_ms=LEASE_MS, batch=100
    )


def put_keys(stream: tidelog.Stream, count: int, tag: str = "r") -> dict[str, list[str]]:
    """Put `count` records over 16 keys; returns each shard's sequence numbers in order."""
    out: dict[str, list[str]] = defaultdict(list)
    for i in range(count):
        result = stream.put(f"{tag}{i}".encode(), f"key-{i % 16}")
        assert result.shard_id is not None and result.sequence_number is not None
        out[result.shard_id].append(result.sequence_number)
    return out


def owners(group: tidelog.ConsumerGroup) -> dict[str, str | None]:
    return {lease.shard_id: lease.owner for lease in group.leases()}


def test_one_worker_processes_every_shard_in_order(store: tidelog.Store) -> None:
    stream = store.create_stream("s", shards=4)
    put = put_keys(stream, 200)
    group = stream.consumer_group("app")
    log = Log()
    w = worker(group, "w1", log)
    while w.step():
        pass
    assert dict(log.processed) == put
    assert sorted(w.owned()) == sorted(put)
    assert set(owners(group).values()) == {"w1"}
    # The group's checkpoints are the consumer's.
    assert group.consumer.checkpoints() == {shard: seqs[-1] for shard, seqs in put.items()}
    assert all(lag.records_behind == 0 for lag in group.consumer.lag())
    assert [c for _, c, _, _ in log.calls].count("initialize") == 4


def test_a_second_worker_gets_its_share_by_hand_off(store: tidelog.Store) -> None:
    stream = store.create_stream("s", shards=4)
    put = put_keys(stream, 100)
    group = stream.consumer_group("app")
    log = Log()
    w1, w2 = worker(group, "w1", log), worker(group, "w2", log)
    w1.step()
    assert len(w1.owned()) == 4
    for _ in range(6):  # each round w2 asks for one lease; w1 hands it over on its next
        w2.step()
        w1.step()
    assert len(w1.owned()) == 2 and len(w2.owned()) == 2
    assert set(owners(group).values()) == {"w1", "w2"}
    more = put_keys(stream, 100, "s")
    for _ in range(3):
        w1.step()
        w2.step()
    # Each hand-off: shutdown_requested (which checkpointed), then the new owner
    # starts after that checkpoint: nothing processed twice, nothing missed.
    assert len(log.of("shutdown_requested")) == 2
    for shard in put:
        assert log.processed[shard] == put[shard] + more[shard]
    # Epochs rise at every change of owner.
    epochs = {lease.shard_id: lease.epoch for lease in group.leases()}
    handed = {s for _, s, _ in log.of("shutdown_requested")}
    assert all(epochs[s] == 2 for s in handed) and all(
        epochs[s] == 1 for s in epochs if s not in handed
    )


def test_dead_workers_leases_are_taken_after_they_expire(
    store: tidelog.Store, clock: FakeClock
) -> None:
    stream = store.create_stream("s", shards=2)
    put = put_keys(stream, 40)
    group = stream.consumer_group("app")
    log = Log()
    w1 = worker(group, "w1", log, checkpoint=False)  # never checkpoints: all redone
    w1.step()
    assert sorted(w1.owned()) == sorted(put)
    w2 = worker(group, "w2", log)
    clock.advance(LEASE_MS / 1000 / 2)
    w2.step()  # w1's leases are live: w2 only asks for one
    assert w2.owned() == []
    clock.advance(LEASE_MS / 1000)  # w1 made no round for 1.5 lease periods: expired
    w2.step()
    assert sorted(w2.owned()) == sorted(put)
    assert set(owners(group).values()) == {"w2"}
    # w1 did not checkpoint, so w2 processes everything again (at least once).
    for shard, seqs in put.items():
        assert log.processed[shard] == seqs + seqs
    # w1 comes back: its round finds the leases gone, and its processors are told.
    w1.step()
    assert w1.owned() == []
    assert sorted(s for w, s, _ in log.of("lease_lost") if w == "w1") == sorted(put)


def test_a_worker_that_lost_its_lease_cannot_checkpoint(
    store: tidelog.Store, clock: FakeClock
) -> None:
    stream = store.create_stream("s", shards=1)
    put = stream.put(b"a", "k")
    group = stream.consumer_group("app")
    kept: list[tidelog.Checkpointer] = []

    class Keeper(tidelog.RecordProcessor):
        def process_records(
            self, records: list[tidelog.StreamRecord], checkpointer: tidelog.Checkpointer
        ) -> None:
            kept.append(checkpointer)

    w1 = group.worker(Keeper, worker_id="w1", lease_ms=LEASE_MS)
    w1.step()
    assert len(kept) == 1
    clock.advance(2 * LEASE_MS / 1000)
    w2 = group.worker(Keeper, worker_id="w2", lease_ms=LEASE_MS)
    w2.step()
    assert group.leases()[0].owner == "w2" and group.leases()[0].epoch == 2
    with pytest.raises(tidelog.LeaseLost):
        kept[0].checkpoint()
    assert group.consumer.checkpoints() == {}  # nothing was written
    kept[1].checkpoint()
    assert group.consumer.checkpoints() == {"shardId-000000000000": put.sequence_number}


def test_graceful_shutdown_frees_leases_at_once(store: tidelog.Store) -> None:
    stream = store.create_stream("s", shards=3)
    put = put_keys(stream, 30)
    group = stream.consumer_group("app")
    log = Log()
    w1 = worker(group, "w1", log)
    w1.step()
    w1.shutdown()
    assert len(log.of("shutdown_requested")) == 3
    assert set(owners(group).values()) == {None}
    w2 = worker(group, "w2", log)
    w2.step()  # no waiting for expiry: the clock has not moved
    assert len(w2.owned()) == 3
    for shard, seqs in put.items():
        assert log.processed[shard] == seqs  # w1 checkpointed on shutdown


def test_split_and_merge_children_start_after_their_parents_end(store: tidelog.Store) -> None:
    stream = store.create_stream("s", shards=2)
    before = put_keys(stream, 50, "a")
    group = stream.consumer_group("app")
    log = Log()
    w1, w2 = worker(group, "w1", log), worker(group, "w2", log)
    w1.step()
    left, right = stream.split_shard("shardId-000000000000", str(2**126))
    middle = put_keys(stream, 50, "b")
    merged = stream.merge_shards(right, "shardId-000000000001")
    after = put_keys(stream, 50, "c")
    for _ in range(12):
        w1.step()
        w2.step()
    everything: dict[str, list[str]] = defaultdict(list)
    for part in (before, middle, after):
        for shard, seqs in part.items():
            everything[shard] += seqs
    assert dict(log.processed) == dict(everything)
    # Parent before child: a child's first delivery comes after each parent's end.
    order = [(c, s) for _, c, s, _ in log.calls]
    ended = {s: order.index(("shard_ended", s)) for c, s in order if c == "shard_ended"}
    first = {}
    for position, (call, shard) in enumerate(order):
        if call == "process" and shard not in first:
            first[shard] = position
    lineage = {
        left: ["shardId-000000000000"],
        right: ["shardId-000000000000"],
        merged: [right, "shardId-000000000001"],
    }
    for child, parents in lineage.items():
        for parent in parents:
            assert ended[parent] < first[child], (child, parent)
    leases = {lease.shard_id: lease for lease in group.leases()}
    assert leases["shardId-000000000000"].ended and leases[right].ended
    assert not leases[merged].ended and leases[merged].owner in ("w1", "w2")


def test_a_child_waits_while_shard_ended_does_not_checkpoint(store: tidelog.Store) -> None:
    stream = store.create_stream("s", shards=1)
    stream.put(b"a", "k")
    calls: list[str] = []

    class Stubborn(tidelog.RecordProcessor):
        def shard_ended(self, checkpointer: tidelog.Checkpointer) -> None:
            calls.append("shard_ended")
            if len(calls) >= 3:
                checkpointer.checkpoint()

    group = stream.consumer_group("app")
    w = group.worker(Stubborn, worker_id="w", lease_ms=LEASE_MS)
    w.step()
    a, b = stream.split_shard(0, str(2**127))
    w.step()  # the parent's end is found
    w.step()
    w.step()  # first and second calls of shard_ended: no checkpoint
    assert calls == ["shard_ended"] * 2
    assert w.owned() == ["shardId-000000000000"]  # the children wait for SHARD_END
    w.step()  # the third call checkpoints: SHARD_END
    assert calls == ["shard_ended"] * 3
    w.step()  # the next round takes the children
    assert sorted(w.owned()) == [a, b]


def test_latest_starts_after_what_is_there(store: tidelog.Store) -> None:
    stream = store.create_stream("s", shards=2)
    put_keys(stream, 20, "old")
    stream.split_shard(0, str(2**126))  # a closed shard: LATEST skips it
    group = stream.consumer_group("app", initial_position="LATEST")
    log = Log()
    w = worker(group, "w", log)
    w.step()
    assert log.processed == {}
    new = put_keys(stream, 20, "new")
    w.step()
    w.step()
    assert dict(log.processed) == dict(new)


def test_a_failing_batch_is_delivered_again(store: tidelog.Store) -> None:
    stream = store.create_stream("s", shards=1)
    for i in range(5):
        stream.put(b"%d" % i, "k")
    seen: list[list[bytes]] = []

    class Flaky(tidelog.RecordProcessor):
        def process_records(
            self, records: list[tidelog.StreamRecord], checkpointer: tidelog.Checkpointer
        ) -> None:
            seen.append([r.data for r in records])
            if len(seen) == 1:
                raise RuntimeError("boom")
            checkpointer.checkpoint()

    w = stream.consumer_group("app").worker(Flaky, worker_id="w", lease_ms=LEASE_MS)
    w.step()
    w.step()
    assert seen == [[b"0", b"1", b"2", b"3", b"4"]] * 2


def test_max_leases_and_arguments(store: tidelog.Store) -> None:
    stream = store.create_stream("s", shards=4)
    group = stream.consumer_group("app")
    log = Log()
    w = group.worker(lambda: Recorder("w", log), worker_id="w", max_leases=1)
    w.step()
    assert len(w.owned()) == 1
    for bad in (
        {"lease_ms": 50},
        {"batch": 0},
        {"batch": 10_001},
        {"max_leases": 0},
        {"worker_id": ""},
    ):
        with pytest.raises(tidelog.InvalidArgument):
            group.worker(Recorder, **bad)  # type: ignore[arg-type]
    with pytest.raises(tidelog.InvalidArgument):
        stream.consumer_group("app", initial_position="AT_TIMESTAMP")
    with pytest.raises(tidelog.InvalidArgument):
        stream.consumer_group("bad name!")
    with pytest.raises(tidelog.InvalidArgument):
        group.worker().step()  # no processor: use records()


def test_deleting_the_consumer_or_stream_forgets_its_leases(store: tidelog.Store) -> None:
    stream = store.create_stream("s", shards=2)
    group = stream.consumer_group("app")
    worker(group, "w", Log()).step()
    assert len(group.leases()) == 2
    stream.delete_consumer("app")
    assert stream.consumer_group("app").leases() == []
    worker(stream.consumer_group("app"), "w", Log()).step()
    store.delete_stream("s")
    again = store.create_stream("s", shards=2)
    assert again.consumer_group("app").leases() == []


def test_records_iterator_in_threads_shares_the_shards(tmp_path: Path) -> None:
    """Two workers in threads on the real clock, in the iterator form: each record
    once (both checkpoint every record), all shards covered, stopped by an event."""
    with tidelog.open(tmp_path / "data", sync="never") as store:
        stream = store.create_stream("s", shards=4)
        put = put_keys(stream, 400)
        group = stream.consumer_group("app")
        got: dict[str, list[str]] = defaultdict(list)
        lock = threading.Lock()
        done = threading.Event()
        workers = [group.worker(worker_id=f"w{i}", lease_ms=2000) for i in range(2)]

        def run(w: tidelog.Worker) -> None:
            for record in w.records():
                with lock:
                    got[record.shard_id].append(record.sequence_number)
                    if sum(map(len, got.values())) == 400:
                        done.set()
                with contextlib.suppress(tidelog.LeaseLost):  # lapsed on a slow machine
                    w.checkpoint(record)

        threads = [threading.Thread(target=run, args=(w,)) for w in workers]
        for thread in threads:
            thread.start()
        assert done.wait(60)
        for w in workers:
            w.stop()
        for thread in threads:
            thread.join(30)
        # A hand-off may repeat records after the giver's last checkpoint, never skip.
        for shard, seqs in put.items():
            assert sorted(set(got[shard])) == seqs
            firsts = list(dict.fromkeys(got[shard]))
            assert firsts == seqs  # first deliveries in shard order
        # Released on stop (a lease handed to a worker as it stopped lapses instead):
        # a new worker gets every shard and finds nothing left to process.
        log = Log()
        last = group.worker(lambda: Recorder("w3", log), worker_id="w3", lease_ms=300)
        deadline = time.monotonic() + 30
        while len(last.owned()) < 4 and time.monotonic() < deadline:
            last.step()
            store._logs.wait_for_append(0.05)
        assert len(last.owned()) == 4
        last.step()
        assert sum(map(len, log.processed.values())) <= 4  # at most the last of each shard
