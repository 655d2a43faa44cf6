"""Hypothesis state machine: streams against a small model (puts, reads, reshards, reopen)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import tidelog
from tidelog.streams import hash_key_for, parse_sequence_number

KEYS = [f"key-{i}" for i in range(8)]


class StreamMachine(RuleBasedStateMachine):
    """The model: per shard, the list of (sequence number, data, key) and its hash range."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="tidelog-streams-"))
        self.store = tidelog.open(self.dir / "d", sync="never")
        self.stream = self.store.create_stream("m", shards=2)
        self.shards: dict[str, list[tuple[str, bytes, str]]] = {}
        self.ranges: dict[str, tuple[int, int]] = {}
        self.closed: set[str] = set()
        self.parents: dict[str, tuple[str, ...]] = {}
        for sh in self.stream.shards():
            self.shards[sh.shard_id] = []
            self.ranges[sh.shard_id] = (sh.starting_hash_key, sh.ending_hash_key)
            self.parents[sh.shard_id] = ()
        self.sent: dict[str, list[bytes]] = {k: [] for k in KEYS}
        self.counter = 0

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def open_shards(self) -> list[str]:
        return sorted(
            (s for s in self.shards if s not in self.closed), key=lambda s: self.ranges[s]
        )

    def home(self, key: str) -> str:
        h = hash_key_for(key)
        return next(s for s in self.open_shards() if self.ranges[s][0] <= h <= self.ranges[s][1])

    def record(self, shard: str | None, seq: str | None, data: bytes, key: str) -> None:
        assert shard == self.home(key)
        assert seq is not None
        log = self.shards[shard]
        if log:
            assert int(seq) > int(log[-1][0])
        for parent in self.parents[shard]:
            if self.shards[parent]:
                assert int(seq) > int(self.shards[parent][-1][0])
        log.append((seq, data, key))
        self.sent[key].append(data)

    def next_data(self, key: str) -> bytes:
        self.counter += 1
        return f"{key}:{self.counter}".encode()

    @rule(key=st.sampled_from(KEYS))
    def put(self, key: str) -> None:
        data = self.next_data(key)
        r = self.stream.put(data, key)
        self.record(r.shard_id, r.sequence_number, data, key)

    @rule(keys=st.lists(st.sampled_from(KEYS), min_size=1, max_size=20))
    def put_many(self, keys: list[str]) -> None:
        batch = [(self.next_data(k), k) for k in keys]
        result = self.stream.put_many(batch)
        assert result.failed_record_count == 0
        for (data, key), r in zip(batch, result, strict=True):
            self.record(r.shard_id, r.sequence_number, data, key)

    @rule(data=st.data())
    def read_from_random_iterator(self, data: st.DataObject) -> None:
        shard = data.draw(st.sampled_from(sorted(self.shards)))
        log = self.shards[shard]
        kind = data.draw(st.sampled_from(["TRIM_HORIZON", "LATEST", "AT", "AFTER"]))
        if kind in ("AT", "AFTER") and not log:
            kind = "TRIM_HORIZON"
        if kind == "TRIM_HORIZON":
            expected, it = log, self.stream.get_shard_iterator(shard)
        elif kind == "LATEST":
            expected, it = [], self.stream.get_shard_iterator(shard, "LATEST")
        else:
            i = data.draw(st.integers(0, len(log) - 1))
            it = self.stream.get_shard_iterator(
                shard, f"{kind}_SEQUENCE_NUMBER", sequence_number=log[i][0]
            )
            expected = log[i:] if kind == "AT" else log[i + 1 :]
        limit = data.draw(st.integers(1, 50))
        got: list[tuple[str, bytes, str]] = []
        while it is not None:
            result = self.stream.get_records(it, limit=limit)
            assert len(result.records) <= limit
            got += [(r.sequence_number, r.data, r.partition_key) for r in result.records]
            if not result.records:
                break
            it = result.next_shard_iterator
        assert got == expected
        if shard in self.closed and it is not None:
            assert self.stream.get_records(it).next_shard_iterator is None

    @precondition(lambda self: len(self.open_shards()) < 6)
    @rule(data=st.data())
    def split(self, data: st.DataObject) -> None:
        shard = data.draw(st.sampled_from(self.open_shards()))
        start, end = self.ranges[shard]
        if end - start < 4:
            return
        key = data.draw(st.integers(start + 2, end - 1))
        left, right = self.stream.split_shard(shard, key)
        self.closed.add(shard)
        for child, rng in ((left, (start, key - 1)), (right, (key, end))):
            self.shards[child] = []
            self.ranges[child] = rng
            self.parents[child] = (shard,)

    @precondition(lambda self: len(self.open_shards()) > 1)
    @rule(data=st.data())
    def merge(self, data: st.DataObject) -> None:
        opened = self.open_shards()
        i = data.draw(st.integers(0, len(opened) - 2))
        a, b = opened[i], opened[i + 1]
        child = self.stream.merge_shards(a, b)
        self.closed |= {a, b}
        self.shards[child] = []
        self.ranges[child] = (self.ranges[a][0], self.ranges[b][1])
        self.parents[child] = (a, b)

    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.store = tidelog.open(self.dir / "d", sync="never")
        self.stream = self.store.stream("m")

    @invariant()
    def describe_matches_model(self) -> None:
        described = {sh.shard_id: sh for sh in self.stream.shards()}
        assert set(described) == set(self.shards)
        for sid, sh in described.items():
            assert (sh.starting_hash_key, sh.ending_hash_key) == self.ranges[sid]
            assert sh.closed == (sid in self.closed)
            assert sh.parent_shard_ids == self.parents[sid]
            if sh.closed and self.shards[sid]:
                assert sh.ending_sequence_number == self.shards[sid][-1][0]

    @rule()
    def lineage_read_sees_every_key_in_order(self) -> None:
        seen: dict[str, list[bytes]] = {k: [] for k in KEYS}
        for record in self.stream.consumer("model").read():
            seen[record.partition_key].append(record.data)
            index, _ = parse_sequence_number(record.sequence_number)
            assert record.shard_id.endswith(f"{index:012d}")
        assert seen == self.sent


StreamMachine.TestCase.settings = settings(
    max_examples=20,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestStreamMachine = StreamMachine.TestCase
