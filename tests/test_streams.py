"""Streams: the Kinesis model. Real LMDB, real segment files, an injected clock."""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from helpers import FakeClock

import tidelog
from tidelog.streams import (
    HASH_KEY_MAX,
    even_ranges,
    parse_sequence_number,
    sequence_number,
    shard_id_for,
)

HOUR = 3600.0


@pytest.fixture
def cstore(tmp_path: Path, clock: FakeClock) -> Iterator[tidelog.Store]:
    """A store on the fake clock, with small segments so retention has whole ones to drop."""
    with tidelog.open(tmp_path / "data", sync="never", clock=clock, segment_bytes_max=4096) as s:
        yield s
        assert s.check() == []


def records_of(stream: tidelog.Stream, shard: str, start: object = "TRIM_HORIZON") -> list[bytes]:
    return [r.data for r in stream.read(shard, start)]  # type: ignore[arg-type]


# -- create, look up, list, describe, delete -------------------------------------------------


def test_create_lookup_list_describe_delete(store: tidelog.Store) -> None:
    s = store.create_stream("clicks", shards=3)
    assert store.stream("clicks") == s
    assert [x.name for x in store.streams()] == ["clicks"]
    d = s.describe()
    assert d.status == "ACTIVE" and d.retention_hours == 24 and d.open_shard_count == 3
    assert [sh.shard_id for sh in d.shards] == [
        "shardId-000000000000",
        "shardId-000000000001",
        "shardId-000000000002",
    ]
    # The values AWS gives a 3-shard stream.
    assert d.shards[0].ending_hash_key == 113427455640312821154458202477256070484
    assert d.shards[1].starting_hash_key == 113427455640312821154458202477256070485
    assert d.shards[2].ending_hash_key == HASH_KEY_MAX
    assert all(sh.ending_sequence_number is None and not sh.closed for sh in d.shards)
    with pytest.raises(tidelog.AlreadyExists):
        store.create_stream("clicks", shards=3)
    assert store.create_stream("clicks", shards=5, exist_ok=True).describe().open_shard_count == 3
    s.put(b"x", "k")
    store.delete_stream("clicks")
    with pytest.raises(tidelog.NotFound):
        store.stream("clicks")
    with pytest.raises(tidelog.NotFound):
        s.put(b"x", "k")
    assert store.streams() == []
    assert not [log for log in store.logs() if log.name.startswith("stream/")]
    # A new stream of the same name starts empty.
    again = store.create_stream("clicks", shards=1)
    assert records_of(again, "shardId-000000000000") == []


# -- limits: one test each, each message names the limit ---------------------------------


@pytest.mark.parametrize("name", ["", "a" * 129, "has space", "slash/no", "ünï"])
def test_limit_stream_name(store: tidelog.Store, name: str) -> None:
    with pytest.raises(tidelog.InvalidArgument, match="1-128"):
        store.create_stream(name)


def test_limit_stream_name_longest_ok(store: tidelog.Store) -> None:
    assert store.create_stream("a._-Z9" + "x" * 122).name.endswith("x")


@pytest.mark.parametrize("count", [0, 501, -1])
def test_limit_shard_count(store: tidelog.Store, count: int) -> None:
    with pytest.raises(tidelog.InvalidArgument, match="1-500"):
        store.create_stream("s", shards=count)


@pytest.mark.parametrize("hours", [23, 8761])
def test_limit_retention(store: tidelog.Store, hours: int) -> None:
    with pytest.raises(tidelog.InvalidArgument, match="24-8760"):
        store.create_stream("s", retention_hours=hours)
    s = store.create_stream("ok", retention_hours=8760)
    with pytest.raises(tidelog.InvalidArgument, match="24-8760"):
        s.set_retention_hours(hours)
    assert s.retention_hours == 8760


@pytest.mark.parametrize("size", [1024 * 1024 - 1, 10 * 1024 * 1024 + 1])
def test_limit_max_record_bytes_setting(store: tidelog.Store, size: int) -> None:
    with pytest.raises(tidelog.InvalidArgument, match="1 MiB-10 MiB"):
        store.create_stream("s", max_record_bytes=size)


def test_limit_record_size_default_and_raised(store: tidelog.Store) -> None:
    s = store.create_stream("s")
    key = "k"
    s.put(b"x" * (1024 * 1024 - len(key)), key)  # exactly 1 MiB with the key
    with pytest.raises(tidelog.InvalidArgument, match="max_record_bytes 1048576"):
        s.put(b"x" * (1024 * 1024), key)
    big = store.create_stream("big", max_record_bytes=10 * 1024 * 1024)
    r = big.put(b"y" * (3 * 1024 * 1024), key)
    assert next(big.read(r.shard_id)).data == b"y" * (3 * 1024 * 1024)


@pytest.mark.parametrize("key", ["", "k" * 257])
def test_limit_partition_key(store: tidelog.Store, key: str) -> None:
    s = store.create_stream("s")
    with pytest.raises(tidelog.InvalidArgument, match="1-256 characters"):
        s.put(b"x", key)
    s.put(b"x", "é" * 256)  # characters, not bytes


@pytest.mark.parametrize("bad", ["-1", str(1 << 128), "12a", 1 << 128])
def test_limit_explicit_hash_key(store: tidelog.Store, bad: object) -> None:
    s = store.create_stream("s", shards=2)
    with pytest.raises(tidelog.InvalidArgument, match="explicit_hash_key"):
        s.put(b"x", "k", bad)  # type: ignore[arg-type]
    assert s.put(b"x", "k", str(HASH_KEY_MAX)).shard_id == "shardId-000000000001"
    assert s.put(b"x", "k", 0).shard_id == "shardId-000000000000"


def test_limit_put_many_count(store: tidelog.Store) -> None:
    s = store.create_stream("s")
    with pytest.raises(tidelog.InvalidArgument, match="1-500"):
        s.put_many([(b"x", "k")] * 501)
    with pytest.raises(tidelog.InvalidArgument, match="1-500"):
        s.put_many([])
    assert len(records_of(s, "shardId-000000000000")) == 0
    assert s.put_many([(b"x", "k")] * 500).failed_record_count == 0


def test_limit_put_many_bytes(store: tidelog.Store) -> None:
    s = store.create_stream("s")
    chunk = b"x" * (1024 * 1024 - 1)
    with pytest.raises(tidelog.InvalidArgument, match="5242880-byte request limit"):
        s.put_many([(chunk, "k")] * 5 + [(b"xx", "k")])
    assert records_of(s, "shardId-000000000000") == []  # nothing written
    assert s.put_many([(chunk, "k")] * 5).failed_record_count == 0


@pytest.mark.parametrize("limit", [0, 10_001])
def test_limit_get_records(store: tidelog.Store, limit: int) -> None:
    s = store.create_stream("s")
    it = s.get_shard_iterator("shardId-000000000000")
    with pytest.raises(tidelog.InvalidArgument, match="1-10000"):
        s.get_records(it, limit=limit)


def test_get_records_returns_at_most_limit(store: tidelog.Store) -> None:
    s = store.create_stream("s")
    s.put_many([(str(i).encode(), "k") for i in range(500)])
    for _ in range(24):
        s.put_many([(b"x", "k")] * 500)
    it = s.get_shard_iterator("shardId-000000000000")
    first = s.get_records(it)  # the default limit is the maximum, 10,000
    assert len(first.records) == 10_000
    assert [r.data for r in first.records[:3]] == [b"0", b"1", b"2"]
    small = s.get_records(it, limit=7)
    assert len(small.records) == 7
    rest = s.get_records(first.next_shard_iterator, limit=10_000)  # type: ignore[arg-type]
    last = s.get_records(rest.next_shard_iterator)  # type: ignore[arg-type]
    assert len(rest.records) == 2_500 and last.records == []


def test_put_many_per_record_errors(store: tidelog.Store) -> None:
    s = store.create_stream("s", shards=2)
    result = s.put_many(
        [
            (b"ok-1", "a"),
            (b"bad", ""),
            {"data": b"ok-2", "partition_key": "b"},
            (b"x" * (1024 * 1024), "big"),
            (b"bad-hash", "c", "not-a-number"),
            (b"ok-3", "a", 5),
        ]
    )
    assert result.failed_record_count == 3
    assert [r.ok for r in result] == [True, False, True, False, False, True]
    assert result[1].error_code == "InvalidArgument" and "partition_key" in str(
        result[1].error_message
    )
    assert "max_record_bytes" in str(result[3].error_message)
    assert result[5].shard_id == "shardId-000000000000"  # explicit hash key 5
    written = {
        r.data for sh in ("shardId-000000000000", "shardId-000000000001") for r in s.read(sh)
    }
    assert written == {b"ok-1", b"ok-2", b"ok-3"}


# -- routing: MD5 over the 128-bit space, as Kinesis ---------------------------------------


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5, 7, 8, 13, 16, 25])
def test_md5_routing_matches_hashlib(tmp_path: Path, count: int) -> None:
    rng = random.Random(count)
    keys = [f"user-{rng.getrandbits(40)}" for _ in range(400)] + ["", "ü", "a" * 256][1:]
    with tidelog.open(tmp_path / "d", sync="never") as store:
        s = store.create_stream("s", shards=count)
        step = (1 << 128) // count
        result = s.put_many([(b"v", k) for k in keys])
        for key, r in zip(keys, result, strict=True):
            h = int.from_bytes(hashlib.md5(key.encode("utf-8")).digest(), "big")
            assert r.shard_id == shard_id_for(min(h // step, count - 1)), key
        ranges = [(sh.starting_hash_key, sh.ending_hash_key) for sh in s.shards()]
        assert ranges == even_ranges(count)
        assert ranges[0][0] == 0 and ranges[-1][1] == HASH_KEY_MAX
        assert all(a[1] + 1 == b[0] for a, b in zip(ranges, ranges[1:], strict=False))


# -- sequence numbers ----------------------------------------------------------------------


def test_sequence_numbers_unique_increasing_fixed_width(store: tidelog.Store) -> None:
    s = store.create_stream("s", shards=4)
    results = s.put_many([(b"v", f"k{i}") for i in range(200)])
    seqs = [r.sequence_number for r in results]
    assert len(set(seqs)) == 200
    assert all(len(q) == 39 and q.isdigit() for q in seqs if q)
    by_shard: dict[str, list[int]] = defaultdict(list)
    for r in results:
        by_shard[str(r.shard_id)].append(int(str(r.sequence_number)))
    for values in by_shard.values():
        assert values == sorted(values) and len(set(values)) == len(values)
    assert parse_sequence_number(sequence_number(7, 12)) == (7, 12)
    for bad in ["12", "abc", str(1 << 128), ""]:
        with pytest.raises(tidelog.InvalidArgument):
            parse_sequence_number(bad)


# -- iterators: one test per type ----------------------------------------------------------


@pytest.fixture
def filled(cstore: tidelog.Store, clock: FakeClock) -> tuple[tidelog.Stream, list[str]]:
    s = cstore.create_stream("s")
    seqs = []
    for i in range(10):
        seqs.append(str(s.put(f"r{i}".encode(), "k").sequence_number))
        clock.advance(1)
    return s, seqs


SHARD0 = "shardId-000000000000"


def test_iterator_trim_horizon(filled: tuple[tidelog.Stream, list[str]]) -> None:
    s, _ = filled
    got = s.get_records(s.get_shard_iterator(SHARD0, "TRIM_HORIZON"))
    assert [r.data for r in got.records] == [f"r{i}".encode() for i in range(10)]
    assert got.millis_behind_latest == 0
    assert [r.data for r in s.read(SHARD0, "TRIM_HORIZON")][0] == b"r0"


def test_iterator_latest(filled: tuple[tidelog.Stream, list[str]]) -> None:
    s, _ = filled
    it = s.get_shard_iterator(SHARD0, "LATEST")
    empty = s.get_records(it)
    assert empty.records == [] and empty.next_shard_iterator is not None
    s.put(b"new", "k")
    assert [r.data for r in s.get_records(it).records] == [b"new"]
    assert [r.data for r in s.get_records(empty.next_shard_iterator).records] == [b"new"]
    assert records_of(s, SHARD0, "LATEST") == []


def test_iterator_at_sequence_number(filled: tuple[tidelog.Stream, list[str]]) -> None:
    s, seqs = filled
    it = s.get_shard_iterator(SHARD0, "AT_SEQUENCE_NUMBER", sequence_number=seqs[4])
    assert [r.data for r in s.get_records(it).records][0] == b"r4"
    assert records_of(s, SHARD0, ("AT_SEQUENCE_NUMBER", seqs[9])) == [b"r9"]
    with pytest.raises(tidelog.InvalidArgument, match="needs a sequence number"):
        s.get_shard_iterator(SHARD0, "AT_SEQUENCE_NUMBER")
    with pytest.raises(tidelog.InvalidArgument, match="belongs to shardId-000000000003"):
        s.get_shard_iterator(SHARD0, "AT_SEQUENCE_NUMBER", sequence_number=sequence_number(3, 0))
    with pytest.raises(tidelog.InvalidArgument, match="not been assigned"):
        s.get_shard_iterator(SHARD0, "AT_SEQUENCE_NUMBER", sequence_number=sequence_number(0, 10))


def test_iterator_after_sequence_number(filled: tuple[tidelog.Stream, list[str]]) -> None:
    s, seqs = filled
    it = s.get_shard_iterator(SHARD0, "AFTER_SEQUENCE_NUMBER", sequence_number=seqs[4])
    assert [r.data for r in s.get_records(it).records] == [f"r{i}".encode() for i in range(5, 10)]
    assert records_of(s, SHARD0, ("AFTER_SEQUENCE_NUMBER", seqs[9])) == []


def test_iterator_at_timestamp(filled: tuple[tidelog.Stream, list[str]], clock: FakeClock) -> None:
    s, _ = filled
    base = clock.now - 10  # r0 arrived at base, r1 at base + 1, ...
    it = s.get_shard_iterator(SHARD0, "AT_TIMESTAMP", timestamp=base + 3)
    assert [r.data for r in s.get_records(it).records][0] == b"r3"
    at = datetime.fromtimestamp(base + 7.5, tz=UTC)
    assert records_of(s, SHARD0, at) == [b"r8", b"r9"]
    assert records_of(s, SHARD0, ("AT_TIMESTAMP", base + 100)) == []
    assert s.get_records(s.get_shard_iterator(SHARD0, "AT_TIMESTAMP", timestamp=0)).records


def test_iterator_bad_type_and_forgery(filled: tuple[tidelog.Stream, list[str]]) -> None:
    s, _ = filled
    with pytest.raises(tidelog.InvalidArgument, match="TRIM_HORIZON"):
        s.get_shard_iterator(SHARD0, "OLDEST")
    it = s.get_shard_iterator(SHARD0)
    forged = it[:-3] + ("A" if it[-3] != "A" else "B") + it[-2:]
    with pytest.raises(tidelog.InvalidArgument):
        s.get_records(forged)
    with pytest.raises(tidelog.InvalidArgument):
        s.get_records("garbage")
    other = s._store.create_stream("other")
    with pytest.raises(tidelog.InvalidArgument, match="not an iterator of stream 'other'"):
        other.get_records(it)


def test_iterator_expires_after_five_minutes(
    filled: tuple[tidelog.Stream, list[str]], clock: FakeClock
) -> None:
    s, _ = filled
    it = s.get_shard_iterator(SHARD0)
    clock.advance(299)
    nxt = s.get_records(it, limit=1).next_shard_iterator
    clock.advance(2)
    with pytest.raises(tidelog.ExpiredIterator):
        s.get_records(it)
    assert s.get_records(nxt).records[0].data == b"r1"  # type: ignore[arg-type]


def test_millis_behind_latest(filled: tuple[tidelog.Stream, list[str]], clock: FakeClock) -> None:
    s, _ = filled
    got = s.get_records(s.get_shard_iterator(SHARD0), limit=2)
    assert got.millis_behind_latest == int((clock.now - (clock.now - 10 + 1)) * 1000)
    assert s.get_records(got.next_shard_iterator).millis_behind_latest == 0  # type: ignore[arg-type]


# -- follow ----------------------------------------------------------------------------------


def test_read_follow_wakes_on_append(store: tidelog.Store) -> None:
    s = store.create_stream("s")
    got: list[tuple[bytes, float]] = []

    def follow() -> None:
        for record in s.read(SHARD0, "LATEST", follow=True, timeout=10):
            got.append((record.data, time.monotonic()))
            if len(got) == 2:
                return

    reader = threading.Thread(target=follow)
    reader.start()
    time.sleep(0.2)
    sent = time.monotonic()
    s.put(b"one", "k")
    s.put(b"two", "k")
    reader.join(10)
    assert [d for d, _ in got] == [b"one", b"two"]
    assert got[0][1] - sent < 0.5


def test_read_follow_times_out_and_ends_at_closed_shard(store: tidelog.Store) -> None:
    s = store.create_stream("s")
    s.put(b"a", "k")
    started = time.monotonic()
    assert [r.data for r in s.read(SHARD0, follow=True, timeout=0.2)] == [b"a"]
    assert 0.15 < time.monotonic() - started < 2
    s.split_shard(SHARD0, 1 << 127)
    started = time.monotonic()
    assert [r.data for r in s.read(SHARD0, follow=True)] == [b"a"]  # closed: no wait
    assert time.monotonic() - started < 1


# -- resharding -------------------------------------------------------------------------------


def test_split_merge_lineage_and_sequence_order(store: tidelog.Store) -> None:
    s = store.create_stream("s", shards=2)
    before = s.put(b"before", "key-a")
    left, right = s.split_shard(str(before.shard_id), even_ranges(2)[1][0] + (1 << 125))
    d = {sh.shard_id: sh for sh in s.shards()}
    parent = d[str(before.shard_id)]
    assert parent.closed and parent.ending_sequence_number == before.sequence_number
    assert d[left].parent_shard_id == parent.shard_id == d[right].parent_shard_id
    assert (d[left].starting_hash_key, d[right].ending_hash_key) == (
        parent.starting_hash_key,
        parent.ending_hash_key,
    )
    assert d[left].ending_hash_key + 1 == d[right].starting_hash_key
    after = s.put(b"after", "key-a")
    assert after.shard_id in (left, right)
    assert int(str(after.sequence_number)) > int(str(before.sequence_number))
    # The closed parent ends: no next iterator, and it names its children.
    got = s.get_records(s.get_shard_iterator(parent.shard_id))
    assert [r.data for r in got.records] == [b"before"] and got.next_shard_iterator is None
    assert set(got.child_shards) == {left, right}
    with pytest.raises(tidelog.InvalidArgument, match="is closed"):
        s.split_shard(parent.shard_id, parent.starting_hash_key + 5)
    with pytest.raises(tidelog.InvalidArgument, match="not adjacent"):
        s.merge_shards("shardId-000000000000", right)
    merged = s.merge_shards(left, right)
    m = {sh.shard_id: sh for sh in s.shards()}[merged]
    assert (m.parent_shard_id, m.adjacent_parent_shard_id) == (left, right)
    assert (m.starting_hash_key, m.ending_hash_key) == (
        parent.starting_hash_key,
        parent.ending_hash_key,
    )
    last = s.put(b"merged", "key-a")
    assert last.shard_id == merged
    assert int(str(last.sequence_number)) > int(str(after.sequence_number))


def test_split_key_limits(store: tidelog.Store) -> None:
    s = store.create_stream("s")
    for key in [0, 1, HASH_KEY_MAX, HASH_KEY_MAX + 1]:
        with pytest.raises(tidelog.InvalidArgument):
            s.split_shard(SHARD0, key)
    s.split_shard(SHARD0, 2)
    assert [sh.ending_hash_key for sh in s.shards(open_only=True)] == [1, HASH_KEY_MAX]


def test_update_shard_count_limits_and_ranges(store: tidelog.Store) -> None:
    s = store.create_stream("s", shards=4)
    with pytest.raises(tidelog.InvalidArgument, match="2-8"):
        s.update_shard_count(9)
    with pytest.raises(tidelog.InvalidArgument, match="2-8"):
        s.update_shard_count(1)
    before = s.shards(open_only=True)
    assert [x.shard_id for x in before] == [sh.shard_id for sh in before]
    assert s.update_shard_count(4) == [sh.shard_id for sh in before]  # already uniform
    new = s.update_shard_count(7)
    opened = s.shards(open_only=True)
    assert [sh.shard_id for sh in opened] == new
    assert [(sh.starting_hash_key, sh.ending_hash_key) for sh in opened] == even_ranges(7)
    for sh in opened:
        for p in sh.parent_shard_ids:
            old = next(b for b in before if b.shard_id == p)
            assert old.starting_hash_key <= sh.ending_hash_key
            assert sh.starting_hash_key <= old.ending_hash_key
    assert len(s.describe().shards) == 11


def test_lineage_reader_keeps_key_order_across_resharding(tmp_path: Path) -> None:
    rng = random.Random(7)
    with tidelog.open(tmp_path / "d", sync="never") as store:
        s = store.create_stream("s", shards=2)
        sent: dict[str, list[bytes]] = defaultdict(list)
        counter = 0

        def burst() -> None:
            nonlocal counter
            batch = []
            for _ in range(60):
                key = f"key-{rng.randrange(12)}"
                value = f"{key}:{counter}".encode()
                counter += 1
                sent[key].append(value)
                batch.append((value, key))
            s.put_many(batch)

        burst()
        open_ids = [sh.shard_id for sh in s.shards(open_only=True)]
        s.split_shard(open_ids[0], (1 << 125) + 12345)
        burst()
        a, b, c = [sh.shard_id for sh in s.shards(open_only=True)]
        s.merge_shards(b, c)
        burst()
        s.update_shard_count(4)
        burst()
        seen: dict[str, list[bytes]] = defaultdict(list)
        order: list[tuple[str, str]] = []
        for record in s.consumer("app").read():
            seen[record.partition_key].append(record.data)
            order.append((record.shard_id, record.sequence_number))
        assert seen == sent
        # Every record of a parent comes before any of its children's.
        position = {sid: i for i, (sid, _) in reversed(list(enumerate(order)))}
        last = {sid: i for i, (sid, _) in enumerate(order)}
        for sh in s.shards():
            for p in sh.parent_shard_ids:
                if p in last and sh.shard_id in position:
                    assert last[p] < position[sh.shard_id]


# -- retention (injected clock, no sleeping) --------------------------------------------------


def test_retention_never_returns_expired_records(cstore: tidelog.Store, clock: FakeClock) -> None:
    s = cstore.create_stream("s")
    s.put_many([(b"old-%d" % i, "k") for i in range(50)])
    clock.advance(23 * HOUR)
    s.put(b"recent", "k")
    assert len(records_of(s, SHARD0)) == 51
    clock.advance(1.5 * HOUR)  # "old-*" are now 24.5 h old; "recent" 1.5 h
    assert records_of(s, SHARD0) == [b"recent"]
    got = s.get_records(s.get_shard_iterator(SHARD0, "TRIM_HORIZON"))
    assert [r.data for r in got.records] == [b"recent"]
    old_seq = sequence_number(0, 3)
    assert records_of(s, SHARD0, ("AT_SEQUENCE_NUMBER", old_seq)) == [b"recent"]
    assert records_of(s, SHARD0, ("AT_TIMESTAMP", 0)) == [b"recent"]


def test_retention_deletes_whole_segments(cstore: tidelog.Store, clock: FakeClock) -> None:
    s = cstore.create_stream("s")
    for _ in range(10):
        s.put_many([(b"x" * 200, "k")] * 20)  # 4 KiB segments: several roll
    log = cstore.log("stream/s/" + SHARD0)
    seg_dir = Path(cstore.path) / "logs" / str(log.info.id)
    files_before = len(list(seg_dir.glob("*.seg")))
    assert files_before > 3
    clock.advance(25 * HOUR)
    assert s.enforce_retention() == files_before - 1  # every sealed one; the active stays
    assert len(list(seg_dir.glob("*.seg"))) == 1
    assert log.start_offset > 0
    s.put(b"fresh", "k")
    assert records_of(s, SHARD0) == [b"fresh"]


def test_puts_apply_retention_by_themselves(cstore: tidelog.Store, clock: FakeClock) -> None:
    s = cstore.create_stream("s")
    for _ in range(10):
        s.put_many([(b"x" * 200, "k")] * 20)
    log = cstore.log("stream/s/" + SHARD0)
    clock.advance(25 * HOUR)
    s.put(b"fresh", "k")  # more than a minute since the last pass: this put runs one
    assert log.start_offset > 150


def test_retention_period_change(cstore: tidelog.Store, clock: FakeClock) -> None:
    s = cstore.create_stream("s", retention_hours=48)
    s.put(b"a", "k")
    clock.advance(30 * HOUR)
    assert records_of(s, SHARD0) == [b"a"]
    s.set_retention_hours(24)
    assert s.describe().retention_hours == 24
    assert records_of(s, SHARD0) == []


def test_closed_shards_disappear_after_retention(cstore: tidelog.Store, clock: FakeClock) -> None:
    s = cstore.create_stream("s")
    s.put_many([(b"p", "k")] * 30)
    left, right = s.split_shard(SHARD0, 1 << 127)
    clock.advance(12 * HOUR)
    s.put(b"child", "k")
    assert cstore.enforce_retention() == 0
    assert SHARD0 in [sh.shard_id for sh in s.shards()]
    clock.advance(12.5 * HOUR)
    assert cstore.enforce_retention() >= 1  # the store-wide pass covers streams
    ids = [sh.shard_id for sh in s.shards()]
    assert ids == [left, right]
    assert all(not log.name.endswith(SHARD0) for log in cstore.logs())
    assert [r.data for r in s.consumer("c").read()] == [b"child"]  # gone parent: no wait


# -- consumers and checkpoints ----------------------------------------------------------------


def test_checkpoints_survive_restart(tmp_path: Path) -> None:
    path = tmp_path / "d"
    with tidelog.open(path) as store:
        s = store.create_stream("s", shards=2)
        s.put_many([(f"v{i}".encode(), f"k{i}") for i in range(40)])
        c = s.consumer("app")
        done = []
        for record in c.read():
            done.append(record.data)
            c.checkpoint(record)
            if len(done) == 25:
                break
    with tidelog.open(path) as store:
        s = store.stream("s")
        assert s.consumers() == ["app"]
        c = s.consumer("app")
        assert len(c.checkpoints()) >= 1
        rest = [r.data for r in c.read()]
        assert sorted(done + rest) == sorted(f"v{i}".encode() for i in range(40))
        assert not set(done) & set(rest)
        assert [r.data for r in s.consumer("fresh").read(initial_position="LATEST")] == []
        s.delete_consumer("app")
        assert s.consumers() == ["fresh"]
        with pytest.raises(tidelog.NotFound):
            c.checkpoint(SHARD0, sequence_number(0, 0))


def test_checkpoint_validation(store: tidelog.Store) -> None:
    s = store.create_stream("s", shards=2)
    c = s.consumer("app")
    with pytest.raises(tidelog.InvalidArgument, match="belongs to shardId-000000000001"):
        c.checkpoint(SHARD0, sequence_number(1, 0))
    with pytest.raises(tidelog.InvalidArgument):
        c.checkpoint(SHARD0, "42")
    with pytest.raises(tidelog.InvalidArgument, match="1-128"):
        s.consumer("bad name")


def test_consumer_resumes_child_after_checkpointed_parent(tmp_path: Path) -> None:
    path = tmp_path / "d"
    with tidelog.open(path, sync="never") as store:
        s = store.create_stream("s")
        s.put_many([(b"p%d" % i, "k") for i in range(5)])
        s.split_shard(SHARD0, 1 << 127)
        s.put_many([(b"c%d" % i, "k") for i in range(3)])
        c = s.consumer("app")
        for record in c.read():
            c.checkpoint(record)
            if record.data == b"p4":
                break
    with tidelog.open(path, sync="never") as store:
        got = [r.data for r in store.stream("s").consumer("app").read()]
        assert got == [b"c0", b"c1", b"c2"]


def test_stream_in_env_with_other_logs(store: tidelog.Store) -> None:
    """Streams and plain logs share a store without touching each other."""
    log = store.create_log("plain")
    log.append(b"x")
    s = store.create_stream("s")
    s.put(b"y", "k")
    assert [r.value for r in log.read()] == [b"x"]
    assert os.path.isdir(store.path)
