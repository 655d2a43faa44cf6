"""Streams: the Kinesis Data Streams model on tidelog's logs.

A stream is a set of shards; each shard is one log, named
`catalog.log_name("stream", <stream>, <shard id>)`. The stream's
configuration (shards, hash-key ranges, lineage, retention) is one JSON
document in the channel catalog. Consumer checkpoints live in the LMDB
database `stream_checkpoints`.

Routing is Kinesis's: the MD5 of the partition key's UTF-8 bytes, read as a
128-bit big-endian integer, is a hash key; the open shard whose range holds
it gets the record. A stream created with N shards splits the space
evenly, shard i starting at i * (2**128 // N), as Kinesis does, so a key lands
on the same shard number as on AWS.

Sequence numbers (docs/guarantees.md, "Streams"): the decimal form of the
128-bit integer

    2**127 | shard_index << 64 | offset

where `shard_index` is the number in the shard id (shardId-000000000007 is 7)
and `offset` the record's offset in the shard's log. The top bit makes every
sequence number 39 digits long, so string order equals numeric order. Shard
indexes are handed out in creation order and children are created after
their parents, so every child sequence number exceeds every parent's.

Every write here is one `LogStore.submit` operation, so it is atomic and
serialised with the writers of every other process by LMDB's write lock.
Routing happens inside that operation, against the configuration the
transaction sees: a put never lands on a shard that a concurrent split closed.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import math
import os
import re
import struct
import time
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from itertools import accumulate, chain, repeat
from typing import TYPE_CHECKING, Any, NamedTuple

from tidelog.catalog import CHANNELS_DB, channel_key, delete_channel, log_name, put_channel
from tidelog.log import as_bytes
from tidelog.segments.errors import AlreadyExists, Error, InvalidArgument, NotFound
from tidelog.segments.logstore import LogInfo, LogStore, delete_prefix
from tidelog.segments.reader import offset_for_time, read_batches
from tidelog.segments.writer import WriteContext
from tidelog.tags import TAGS_MAX, check_tags, merged_tags, remaining_tags

if TYPE_CHECKING:
    from tidelog.store import Store
    from tidelog.stream_groups import ConsumerGroup
    from tidelog.stream_subscriptions import ShardSubscription

# -- limits (Kinesis's, see docs/api.md "Streams") -----------------------------

STREAM_NAME_RE = re.compile(r"[a-zA-Z0-9_.-]{1,128}")
CONSUMER_NAME_RE = STREAM_NAME_RE
SHARDS_MAX = 500  # open shards per stream (Kinesis's default shard quota)
STREAM_TAGS_MAX = TAGS_MAX
PARTITION_KEY_CHARS_MAX = 256
RECORD_BYTES_DEFAULT = 1024 * 1024
RECORD_BYTES_MAX = 10 * 1024 * 1024
PUT_MANY_RECORDS_MAX = 500
PUT_MANY_BYTES_MAX = 5 * 1024 * 1024
GET_RECORDS_LIMIT_MAX = 10_000
GET_RECORDS_BYTES_MAX = 10 * 1024 * 1024
RETENTION_HOURS_DEFAULT = 24
RETENTION_HOURS_MIN = 24
RETENTION_HOURS_MAX = 8760  # 365 days
ITERATOR_TTL_MS = 5 * 60 * 1000
HASH_KEY_SPACE = 1 << 128
HASH_KEY_MAX = HASH_KEY_SPACE - 1
RETENTION_CHECK_INTERVAL_MS = 60_000  # puts apply retention at most this often
FOLLOW_POLL_SECONDS = 0.05  # how soon a follower sees another process's append

CHECKPOINTS_DB = b"stream_checkpoints"
LEASES_DB = b"stream_leases"  # consumer groups' leases and subscriptions (stream_groups.py)

SEQUENCE_TOP = 1 << 127
_OFFSET_MASK = (1 << 64) - 1
_INDEX_MASK = (1 << 63) - 1

ITERATOR_TYPES = (
    "TRIM_HORIZON",
    "LATEST",
    "AT_SEQUENCE_NUMBER",
    "AFTER_SEQUENCE_NUMBER",
    "AT_TIMESTAMP",
)
_ITERATOR = struct.Struct(">B8sQQQ")  # version, stream uid, shard index, offset, expiry ms
_ITERATOR_VERSION = 1
_ITERATOR_MAC_BYTES = 12
_U64 = struct.Struct(">Q")


class ExpiredIterator(Error):
    """A shard iterator older than 5 minutes (Kinesis's ExpiredIteratorException)."""


# -- results ------------------------------------------------------------------------


class StreamRecord(NamedTuple):
    """One record read from a shard."""

    data: bytes
    partition_key: str
    sequence_number: str
    arrival_timestamp_ms: int  # when the store committed it (Kinesis's ApproximateArrivalTimestamp)
    shard_id: str


_new_record = partial(tuple.__new__, StreamRecord)


@dataclass(frozen=True)
class PutResult:
    """Where a put landed, or (in put_many results) why it did not.

    `error_code` is None on success; otherwise `shard_id` and
    `sequence_number` are None and `error_code`/`error_message` say why.
    """

    shard_id: str | None
    sequence_number: str | None
    error_code: str | None = None
    error_message: str | None = None

    @property
    def ok(self) -> bool:
        return self.error_code is None


@dataclass(frozen=True)
class PutManyResult:
    """put_many's answer, record by record in request order (as PutRecords)."""

    records: tuple[PutResult, ...]
    failed_record_count: int

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[PutResult]:
        return iter(self.records)

    def __getitem__(self, index: int) -> PutResult:
        return self.records[index]


@dataclass(frozen=True)
class GetRecordsResult:
    """get_records' answer.

    `next_shard_iterator` is None once a closed shard has been read to its
    end; then `child_shards` names the shards that took over its range.
    `millis_behind_latest` is 0 when the reader has caught up, else the age
    (by the store's clock) of the last record returned.
    """

    records: list[StreamRecord]
    next_shard_iterator: str | None
    millis_behind_latest: int
    child_shards: tuple[str, ...] = ()


@dataclass(frozen=True)
class ShardDescription:
    shard_id: str
    starting_hash_key: int
    ending_hash_key: int
    parent_shard_id: str | None
    adjacent_parent_shard_id: str | None
    parent_shard_ids: tuple[str, ...]  # all parents (update_shard_count may give more than 2)
    starting_sequence_number: str
    ending_sequence_number: str | None  # None while the shard is open
    closed: bool


@dataclass(frozen=True)
class StreamDescription:
    name: str
    status: str
    retention_hours: int
    max_record_bytes: int
    created_ms: int
    shards: tuple[ShardDescription, ...]

    @property
    def open_shard_count(self) -> int:
        return sum(1 for shard in self.shards if not shard.closed)


@dataclass(frozen=True)
class StreamStats:
    """A stream's record counts (`Stream.stats()`), from the shards' log ends.

    `records_total` counts every record ever put (it only grows while the
    stream exists); `records` those its shards still hold (retention
    deletes whole segments, so expired records may be counted until their
    segment goes).
    """

    records_total: int
    records: int
    shards_open: int
    shards_closed: int


@dataclass(frozen=True)
class ShardLag:
    """How far a consumer is behind in one shard (`Consumer.lag()`).

    `checkpoint` is the checkpointed sequence number (None: none yet, so
    the count starts at the oldest record kept). `records_behind` counts the
    committed records after it; `millis_behind` is the age of the oldest
    of them by the store's clock (0 when caught up), as Kinesis's
    MillisBehindLatest.
    """

    shard_id: str
    checkpoint: str | None
    records_behind: int
    millis_behind: int | None  # None: not asked for (lag(ages=False))


# -- pure helpers ---------------------------------------------------------------------


def shard_id_for(index: int) -> str:
    """The Kinesis-style id of shard number `index`: shardId-000000000007."""
    return f"shardId-{index:012d}"


_SHARD_ID_RE = re.compile(r"shardId-([0-9]{12})")


def shard_index_of(shard: str | int) -> int:
    """The shard number in a shard id (an int is taken as the number itself)."""
    if isinstance(shard, int) and not isinstance(shard, bool):
        if shard < 0:
            raise InvalidArgument(f"shard: {shard} is negative")
        return shard
    if isinstance(shard, str):
        match = _SHARD_ID_RE.fullmatch(shard)
        if match:
            return int(match.group(1))
    raise InvalidArgument(f"shard: {shard!r} is not a shard id like 'shardId-000000000000'")


def hash_key_for(partition_key: str) -> int:
    """The 128-bit hash key of a partition key: MD5 of its UTF-8 bytes, big-endian."""
    return int.from_bytes(hashlib.md5(partition_key.encode()).digest(), "big")


def even_ranges(count: int) -> list[tuple[int, int]]:
    """The hash-key ranges Kinesis gives `count` new shards (inclusive bounds)."""
    step = HASH_KEY_SPACE // count
    starts = [i * step for i in range(count)]
    ends = [s - 1 for s in starts[1:]] + [HASH_KEY_MAX]
    return list(zip(starts, ends, strict=True))


def sequence_number(shard_index: int, offset: int) -> str:
    """The sequence number of the record at `offset` in shard `shard_index`."""
    return str(SEQUENCE_TOP | shard_index << 64 | offset)


def parse_sequence_number(value: str) -> tuple[int, int]:
    """(shard index, offset) of a sequence number; InvalidArgument if malformed."""
    if not isinstance(value, str) or not value.isascii() or not value.isdigit() or len(value) > 39:
        raise InvalidArgument(f"sequence number: {value!r} is not a tidelog sequence number")
    number = int(value)
    if not SEQUENCE_TOP <= number < HASH_KEY_SPACE:
        raise InvalidArgument(f"sequence number: {value!r} is not a tidelog sequence number")
    return (number >> 64) & _INDEX_MASK, number & _OFFSET_MASK


def check_stream_name(name: object, what: str = "stream name") -> str:
    if not isinstance(name, str) or not STREAM_NAME_RE.fullmatch(name):
        raise InvalidArgument(
            f"{what}: {name!r} must be 1-128 characters of a-z, A-Z, 0-9, '_', '.', '-'"
        )
    return name


def _check_shard_count(count: object, what: str = "shards") -> int:
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= SHARDS_MAX:
        raise InvalidArgument(f"{what}: {count!r} is outside 1-{SHARDS_MAX} (the open-shard limit)")
    return count


def _check_retention_hours(hours: object) -> int:
    if (
        not isinstance(hours, int)
        or isinstance(hours, bool)
        or not RETENTION_HOURS_MIN <= hours <= RETENTION_HOURS_MAX
    ):
        raise InvalidArgument(
            f"retention_hours: {hours!r} is outside {RETENTION_HOURS_MIN}-{RETENTION_HOURS_MAX} "
            "(24 hours to 365 days)"
        )
    return hours


def _check_partition_key(key: object) -> str:
    if not isinstance(key, str) or not 1 <= len(key) <= PARTITION_KEY_CHARS_MAX:
        raise InvalidArgument(
            f"partition_key: must be a str of 1-{PARTITION_KEY_CHARS_MAX} characters, "
            f"got {key!r:.60}"
        )
    return key


def _parse_hash_key(value: object, what: str = "explicit_hash_key") -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 39:
        number = int(value)
    else:
        raise InvalidArgument(f"{what}: {value!r:.60} is not a decimal integer")
    if not 0 <= number <= HASH_KEY_MAX:
        raise InvalidArgument(f"{what}: {value!r:.60} is outside 0-2**128-1")
    return number


# Seconds since the epoch that a timestamp may be: years 1-9999, as datetime's.
TIMESTAMP_SECONDS_MIN, TIMESTAMP_SECONDS_MAX = -62135596800, 253402300799


def _to_ms(value: datetime | float | int) -> int:
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, int | float) and not isinstance(value, bool):
        # NaN fails both comparisons; infinities and 1e308 fail one.
        if not TIMESTAMP_SECONDS_MIN <= value <= TIMESTAMP_SECONDS_MAX:
            raise InvalidArgument(f"timestamp: {value!r:.40} is outside years 1-9999")
        return int(value * 1000)
    raise InvalidArgument(f"timestamp: {value!r} is not a datetime or seconds since the epoch")


def _require(condition: bool, message: str) -> None:
    """An invariant check that `python -O` does not strip."""
    if not condition:
        raise Error(f"stream invariant broken: {message}")


# -- the configuration, parsed ------------------------------------------------------


class _Shard:
    __slots__ = (
        "index",
        "shard_id",
        "info",
        "start",
        "end",
        "parents",
        "closed_ms",
        "end_offset",
        "sequence_base",
    )

    def __init__(self, raw: Mapping[str, Any], stream: str) -> None:
        self.index: int = raw["index"]
        self.shard_id = shard_id_for(self.index)
        self.info = LogInfo(
            id=raw["log_id"],
            name=log_name("stream", stream, self.shard_id),
            segment_bytes_max=raw["segment_bytes_max"],
        )
        self.start = int(raw["start"])
        self.end = int(raw["end"])
        self.parents: tuple[int, ...] = tuple(raw["parents"])
        self.closed_ms: int | None = raw["closed_ms"]
        self.end_offset: int | None = raw["end_offset"]
        self.sequence_base = SEQUENCE_TOP | self.index << 64

    @property
    def closed(self) -> bool:
        return self.end_offset is not None


class _View:
    """A stream's configuration, parsed once per version of its JSON."""

    def __init__(self, name: str, raw: bytes) -> None:
        cfg = json.loads(raw)
        self.raw = raw
        self.cfg: dict[str, Any] = cfg
        self.name = name
        self.uid = bytes.fromhex(cfg["uid"])
        self.secret = bytes.fromhex(cfg["secret"])
        self.retention_hours: int = cfg["retention_hours"]
        self.retention_ms = self.retention_hours * 3_600_000
        self.max_record_bytes: int = cfg["max_record_bytes"]
        self.created_ms: int = cfg["created_ms"]
        self.shards: dict[int, _Shard] = {s["index"]: _Shard(s, name) for s in cfg["shards"]}
        self.open = sorted((s for s in self.shards.values() if not s.closed), key=lambda s: s.start)
        self._starts = [s.start for s in self.open]
        # Open shards tile the hash-key space: every key has exactly one home.
        _require(bool(self.open) and self.open[0].start == 0, "no open shard at hash key 0")
        _require(self.open[-1].end == HASH_KEY_MAX, "open shards stop short of 2**128-1")
        for left, right in zip(self.open, self.open[1:], strict=False):
            _require(left.end + 1 == right.start, f"gap or overlap after {left.shard_id}")

    def route(self, hash_key: int) -> _Shard:
        return self.open[bisect_right(self._starts, hash_key) - 1]

    def shard(self, shard: str | int) -> _Shard:
        index = shard_index_of(shard)
        found = self.shards.get(index)
        if found is None:
            raise NotFound(f"stream {self.name!r}: no shard {shard_id_for(index)}")
        return found

    def children_of(self, index: int) -> tuple[str, ...]:
        return tuple(s.shard_id for s in self.shards.values() if index in s.parents)


def _new_shard_entry(
    logs: LogStore,
    ctx: WriteContext,
    stream: str,
    cfg: dict[str, Any],
    start: int,
    end: int,
    parents: Sequence[int],
) -> dict[str, Any]:
    index = cfg["next_shard_index"]
    cfg["next_shard_index"] = index + 1
    info = logs.create_log_in(
        ctx,
        log_name("stream", stream, shard_id_for(index)),
        segment_bytes_max=logs.segment_bytes_default,
        retention_ms=None,  # the stream applies its own retention (see _enforce_in)
        retention_bytes=None,
        meta={"stream": stream, "shard": index},
        exist_ok=False,
    )
    return {
        "index": index,
        "log_id": info.id,
        "segment_bytes_max": info.segment_bytes_max,
        "start": str(start),
        "end": str(end),
        "parents": list(parents),
        "created_ms": ctx.now_ms,
        "closed_ms": None,
        "end_offset": None,
    }


def _close_shard_in(ctx: WriteContext, entry: dict[str, Any], shard: _Shard) -> None:
    """Close a shard: its end is fixed and its active segment sealed (so retention can drop it)."""
    entry["end_offset"] = ctx.ends(shard.info).next_offset
    entry["closed_ms"] = ctx.now_ms
    ctx.roll(shard.info)


# -- store-level operations (called from Store) ---------------------------------------


def create_stream(
    store: Store,
    name: str,
    shards: int,
    *,
    retention_hours: int,
    max_record_bytes: int,
    exist_ok: bool,
) -> Stream:
    check_stream_name(name)
    _check_shard_count(shards)
    _check_retention_hours(retention_hours)
    if (
        not isinstance(max_record_bytes, int)
        or not RECORD_BYTES_DEFAULT <= max_record_bytes <= RECORD_BYTES_MAX
    ):
        raise InvalidArgument(
            f"max_record_bytes: {max_record_bytes!r} is outside 1 MiB-10 MiB "
            f"({RECORD_BYTES_DEFAULT}-{RECORD_BYTES_MAX})"
        )
    logs = store._logs
    uid = os.urandom(8).hex()
    secret = os.urandom(16).hex()

    def op(ctx: WriteContext) -> bool:
        if ctx.txn.get(channel_key("stream", name), db=ctx.db(CHANNELS_DB)) is not None:
            if exist_ok:
                return False
            raise AlreadyExists(f"stream {name!r}: already exists")
        cfg: dict[str, Any] = {
            "uid": uid,
            "secret": secret,
            "created_ms": ctx.now_ms,
            "retention_hours": retention_hours,
            "max_record_bytes": max_record_bytes,
            "next_shard_index": 0,
            "shards": [],
        }
        cfg["shards"] = [
            _new_shard_entry(logs, ctx, name, cfg, start, end, ())
            for start, end in even_ranges(shards)
        ]
        put_channel(ctx, "stream", name, cfg)
        return True

    logs.submit(op)
    return Stream(store, name)


def list_streams(store: Store) -> list[Stream]:
    from tidelog.catalog import list_channels

    return [Stream(store, name) for name, _ in list_channels(store._logs, "stream")]


def delete_stream(store: Store, name: str) -> None:
    logs = store._logs

    def op(ctx: WriteContext) -> None:
        raw = ctx.txn.get(channel_key("stream", name), db=ctx.db(CHANNELS_DB))
        if raw is None:
            raise NotFound(f"stream {name!r}: not found")
        view = _View(name, raw)
        for shard in view.shards.values():
            logs.delete_log_in(ctx, shard.info.name)
        delete_prefix(ctx.txn, ctx.db(CHECKPOINTS_DB), view.uid)
        delete_prefix(ctx.txn, ctx.db(LEASES_DB), view.uid)  # groups' leases, subscriptions
        delete_channel(ctx, "stream", name)

    logs.submit(op)


def enforce_all_retention(store: Store, now_ms: int | None = None) -> int:
    """Apply every stream's retention; returns the segments and shards deleted."""
    return sum(stream.enforce_retention(now_ms) for stream in list_streams(store))


# -- Stream ------------------------------------------------------------------------------


class Stream:
    """A handle on one stream. Get one from `store.create_stream` or `store.stream`.

    Thread- and process-safe: any number of handles in any threads and
    processes may put and read at once. Writes are atomic and durable as the
    store's sync mode promises when they return; reads never block writers.
    Every call raises NotFound if the stream has been deleted.
    """

    def __init__(self, store: Store, name: str) -> None:
        self._store = store
        self._logs: LogStore = store._logs
        self.name = name
        self._key = channel_key("stream", name)
        self._view_cache: _View | None = None
        self._next_retention_ms = 0
        self._view()  # NotFound now rather than at first use

    def __repr__(self) -> str:
        return f"<tidelog.Stream {self.name!r}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Stream) and other._store is self._store and other.name == self.name

    def __hash__(self) -> int:
        return hash(("stream", self.name))

    # -- configuration ----------------------------------------------------------

    def _view_of(self, raw: bytes | None) -> _View:
        if raw is None:
            raise NotFound(f"stream {self.name!r}: not found (deleted?)")
        cached = self._view_cache
        if cached is not None and cached.raw == raw:
            return cached
        view = _View(self.name, bytes(raw))
        self._view_cache = view
        return view

    def _view(self) -> _View:
        db = self._logs.database(CHANNELS_DB)
        with self._logs.env.begin() as txn:
            raw = txn.get(self._key, db=db)
        return self._view_of(raw)

    def _view_in(self, ctx: WriteContext) -> _View:
        return self._view_of(ctx.txn.get(self._key, db=ctx.db(CHANNELS_DB)))

    def describe(self) -> StreamDescription:
        """Status, retention and every shard (open and closed) with its lineage."""
        view = self._view()
        shards = []
        for shard in sorted(view.shards.values(), key=lambda s: s.index):
            parents = tuple(shard_id_for(p) for p in shard.parents)
            ending = None
            if shard.end_offset is not None:
                ending = sequence_number(shard.index, max(shard.end_offset - 1, 0))
            shards.append(
                ShardDescription(
                    shard_id=shard.shard_id,
                    starting_hash_key=shard.start,
                    ending_hash_key=shard.end,
                    parent_shard_id=parents[0] if parents else None,
                    adjacent_parent_shard_id=parents[1] if len(parents) > 1 else None,
                    parent_shard_ids=parents,
                    starting_sequence_number=sequence_number(shard.index, 0),
                    ending_sequence_number=ending,
                    closed=shard.closed,
                )
            )
        return StreamDescription(
            name=self.name,
            status="ACTIVE",
            retention_hours=view.retention_hours,
            max_record_bytes=view.max_record_bytes,
            created_ms=view.created_ms,
            shards=tuple(shards),
        )

    def shards(self, *, open_only: bool = False) -> list[ShardDescription]:
        """The stream's shards (as describe), optionally only the open ones."""
        return [s for s in self.describe().shards if not (open_only and s.closed)]

    def list_shards(
        self,
        filter_type: str = "FROM_TRIM_HORIZON",
        *,
        shard_id: str | None = None,
        timestamp: datetime | float | None = None,
    ) -> list[ShardDescription]:
        """The shards ListShards' ShardFilter selects (see stream_admin.list_shards):
        FROM_TRIM_HORIZON, AT_TRIM_HORIZON, AT_LATEST, AT_TIMESTAMP, FROM_TIMESTAMP
        (with `timestamp`), AFTER_SHARD_ID (with `shard_id`). Raises InvalidArgument."""
        from tidelog.stream_admin import list_shards

        return list_shards(self, filter_type, shard_id=shard_id, timestamp=timestamp)

    @property
    def mode(self) -> str:
        """The capacity mode: "PROVISIONED" or "ON_DEMAND" (stream_admin.py)."""
        from tidelog.stream_admin import stream_mode

        return stream_mode(self)

    def set_mode(self, mode: str) -> None:
        """Switch the capacity mode (Kinesis's UpdateStreamMode). Atomic. Raises
        InvalidArgument, LimitExceeded (two switches in 24 hours; 50 ON_DEMAND streams)."""
        from tidelog.stream_admin import set_stream_mode

        set_stream_mode(self, mode)

    def stats(self) -> StreamStats:
        """Record and shard counts from the shards' log ends (see StreamStats).

        One read of the configuration and of each shard's end; writes
        nothing. Raises NotFound.
        """
        view = self._view()
        total = kept = 0
        for shard in view.shards.values():
            ends = self._logs.ends(shard.info)
            total += ends.next_offset
            kept += max(0, ends.next_offset - ends.start_offset)
        closed = sum(1 for shard in view.shards.values() if shard.closed)
        return StreamStats(total, kept, len(view.shards) - closed, closed)

    @property
    def retention_hours(self) -> int:
        return self._view().retention_hours

    def set_retention_hours(self, hours: int) -> None:
        """Change the retention period (24-8760 hours). Atomic.

        A shorter period applies at once to reads; segments are deleted at the
        next retention pass. Raises InvalidArgument outside the limits.
        """
        _check_retention_hours(hours)
        self._update_config(lambda ctx, view, cfg: cfg.__setitem__("retention_hours", hours))

    def delete(self) -> None:
        """Delete the stream, its shard logs and its consumers' checkpoints. Atomic."""
        delete_stream(self._store, self.name)

    def _update_config(self, change: Callable[[WriteContext, _View, dict[str, Any]], Any]) -> Any:
        def op(ctx: WriteContext) -> Any:
            view = self._view_in(ctx)
            cfg = json.loads(view.raw)
            result = change(ctx, view, cfg)
            _View(self.name, json.dumps(cfg, sort_keys=True).encode())  # invariants hold
            put_channel(ctx, "stream", self.name, cfg)
            return result

        return self._logs.submit(op)

    # -- writes -----------------------------------------------------------------

    def put(
        self,
        data: bytes | bytearray | memoryview | str,
        partition_key: str,
        explicit_hash_key: str | int | None = None,
    ) -> PutResult:
        """Append one record to the shard its key hashes to; returns where it landed.

        Atomic; blocks until committed (group-committed with concurrent puts
        of this process). Raises InvalidArgument for a bad partition key,
        hash key, or a record (data + partition key) over max_record_bytes;
        NotFound if the stream was deleted; StoreFailed after an I/O failure.
        """
        value = as_bytes(data, "data")
        _check_partition_key(partition_key)
        key_bytes = partition_key.encode()
        hash_key = (
            _parse_hash_key(explicit_hash_key)
            if explicit_hash_key is not None
            else int.from_bytes(hashlib.md5(key_bytes).digest(), "big")
        )
        view = self._view_cache or self._view()
        size = len(value) + len(key_bytes)
        if size > view.max_record_bytes:
            raise InvalidArgument(
                f"put: record of {size} bytes (data + partition key) is over the stream's "
                f"max_record_bytes {view.max_record_bytes}"
            )

        def op(ctx: WriteContext) -> tuple[int, int]:
            current = self._view_in(ctx)
            shard = current.route(hash_key)
            offset = ctx.append(shard.info, [value], [key_bytes])
            self._maybe_enforce_in(ctx, current)
            return shard.index, offset

        index, offset = self._logs.submit(op)
        return PutResult(shard_id_for(index), sequence_number(index, offset))

    def put_many(
        self,
        records: Iterable[
            tuple[bytes | str, str] | tuple[bytes | str, str, str | int | None] | Mapping[str, Any]
        ],
    ) -> PutManyResult:
        """Put up to 500 records (5 MiB in all) in one commit, as PutRecords.

        Each record is `(data, partition_key)`, `(data, partition_key,
        explicit_hash_key)` or a mapping with those keys. The request is
        checked as a whole first: more than 500 records, none, or over 5 MiB
        (data + partition keys; or max_record_bytes if larger) raises
        InvalidArgument and writes nothing. A record that is bad on its own
        (partition key, hash key, size) gets `error_code="InvalidArgument"`
        in its result and the others are written. The written records are
        committed in one atomic commit, in request order within each shard.
        Blocks until committed. Raises NotFound, StoreFailed.
        """
        items = list(records)
        if not 1 <= len(items) <= PUT_MANY_RECORDS_MAX:
            raise InvalidArgument(
                f"put_many: {len(items)} records is outside 1-{PUT_MANY_RECORDS_MAX} "
                "(the PutRecords limit)"
            )
        view = self._view_cache or self._view()
        request_max = max(PUT_MANY_BYTES_MAX, view.max_record_bytes)
        record_max = view.max_record_bytes
        values: list[bytes] = []
        pkeys: list[bytes] = []
        hashes: list[int] = []
        errors: dict[int, str] = {}
        total = 0
        md5 = hashlib.md5
        from_bytes = int.from_bytes
        for position, item in enumerate(items):
            try:
                if isinstance(item, tuple):
                    data, pkey = item[0], item[1]
                    explicit = item[2] if len(item) > 2 else None
                elif isinstance(item, Mapping):
                    data, pkey = item["data"], item["partition_key"]
                    explicit = item.get("explicit_hash_key")
                else:
                    raise InvalidArgument(
                        f"record: expected (data, partition_key) or a mapping, got "
                        f"{type(item).__name__}"
                    )
                value = data if type(data) is bytes else as_bytes(data, "data")
                if type(pkey) is not str or not 0 < len(pkey) <= PARTITION_KEY_CHARS_MAX:
                    _check_partition_key(pkey)
                key_bytes = pkey.encode()
                size = len(value) + len(key_bytes)
                total += size
                if size > record_max:
                    raise InvalidArgument(
                        f"record of {size} bytes (data + partition key) is over the stream's "
                        f"max_record_bytes {record_max}"
                    )
                if explicit is None:
                    hash_key = from_bytes(md5(key_bytes).digest(), "big")
                else:
                    hash_key = _parse_hash_key(explicit)
            except (InvalidArgument, KeyError, IndexError, TypeError) as exc:
                errors[position] = str(exc) if isinstance(exc, InvalidArgument) else repr(exc)
                values.append(b"")
                pkeys.append(b"")
                hashes.append(-1)
                continue
            values.append(value)
            pkeys.append(key_bytes)
            hashes.append(hash_key)
        if total > request_max:
            raise InvalidArgument(
                f"put_many: {total} bytes (data + partition keys) is over the "
                f"{request_max}-byte request limit"
            )
        good = [i for i in range(len(items)) if i not in errors] if errors else range(len(items))

        def op(ctx: WriteContext) -> dict[int, tuple[int, int]]:
            current = self._view_in(ctx)
            route = current.route
            groups: dict[int, list[int]] = {}
            shards: dict[int, _Shard] = {}
            for i in good:
                shard = route(hashes[i])
                group = groups.get(shard.index)
                if group is None:
                    groups[shard.index] = group = []
                    shards[shard.index] = shard
                group.append(i)
            placed: dict[int, tuple[int, int]] = {}
            for index, members in groups.items():
                first = ctx.append(
                    shards[index].info, [values[i] for i in members], [pkeys[i] for i in members]
                )
                for n, i in enumerate(members):
                    placed[i] = (index, first + n)
            self._maybe_enforce_in(ctx, current)
            return placed

        placed = self._logs.submit(op) if len(good) else {}
        results: list[PutResult] = []
        for position in range(len(items)):
            where = placed.get(position)
            if where is None:
                message = errors.get(position, "record was not written")
                results.append(PutResult(None, None, "InvalidArgument", message))
            else:
                index, offset = where
                results.append(PutResult(shard_id_for(index), sequence_number(index, offset)))
        return PutManyResult(tuple(results), len(errors))

    # -- retention ----------------------------------------------------------------

    def _maybe_enforce_in(self, ctx: WriteContext, view: _View) -> None:
        if ctx.now_ms >= self._next_retention_ms:
            self._next_retention_ms = ctx.now_ms + RETENTION_CHECK_INTERVAL_MS
            self._enforce_in(ctx, view, ctx.now_ms)

    def _enforce_in(self, ctx: WriteContext, view: _View, now_ms: int) -> int:
        deleted = 0
        expired: list[int] = []
        for shard in view.shards.values():
            if shard.closed_ms is not None and shard.closed_ms < now_ms - view.retention_ms:
                expired.append(shard.index)  # every record is older than retention
                continue
            # The log layer's retention (whole sealed segments), with the
            # stream's period: the catalog's copy of the period stays None so
            # a change of retention needs no rewrite of every shard's log entry.
            info = dataclasses.replace(shard.info, retention_ms=view.retention_ms)
            deleted += ctx.enforce_retention(info, now_ms)
        if expired:
            cfg = json.loads(view.raw)
            cfg["shards"] = [s for s in cfg["shards"] if s["index"] not in expired]
            for index in expired:
                self._logs.delete_log_in(ctx, view.shards[index].info.name)
            put_channel(ctx, "stream", self.name, cfg)
            deleted += len(expired)
        return deleted

    def enforce_retention(self, now_ms: int | None = None) -> int:
        """Delete sealed segments, and closed shards, whose records are all past retention.

        Returns how many segments and shards were deleted. Atomic. Reads never
        return expired records whether or not this has run; puts run it at
        most once a minute per handle. Raises NotFound.
        """

        def op(ctx: WriteContext) -> int:
            return self._enforce_in(
                ctx, self._view_in(ctx), ctx.now_ms if now_ms is None else now_ms
            )

        return int(self._logs.submit(op))

    # -- resharding --------------------------------------------------------------

    def split_shard(self, shard: str | int, new_starting_hash_key: str | int) -> tuple[str, str]:
        """Close an open shard and open two children that split its range at a key.

        The children cover [start, key - 1] and [key, end] and record the
        parent. Atomic, and serialised with puts: a put commits either to the
        parent before the split or to a child after it. Returns the two new
        shard ids. Raises InvalidArgument if the shard is closed, the key is
        not inside the range (start + 1 < key < end, as Kinesis requires) or
        the open-shard limit would be passed; NotFound.
        """
        key = _parse_hash_key(new_starting_hash_key, "new_starting_hash_key")
        index = shard_index_of(shard)

        def change(ctx: WriteContext, view: _View, cfg: dict[str, Any]) -> tuple[str, str]:
            parent = view.shard(index)
            if parent.closed:
                raise InvalidArgument(f"split_shard: {parent.shard_id} is closed")
            if not parent.start + 1 < key < parent.end:
                raise InvalidArgument(
                    f"split_shard: new_starting_hash_key {key} must be greater than one plus the "
                    f"shard's starting hash key {parent.start} and less than its ending hash key "
                    f"{parent.end}"
                )
            if len(view.open) + 1 > SHARDS_MAX:
                raise InvalidArgument(f"split_shard: would pass {SHARDS_MAX} open shards")
            entry = next(s for s in cfg["shards"] if s["index"] == index)
            _close_shard_in(ctx, entry, parent)
            left = _new_shard_entry(self._logs, ctx, self.name, cfg, parent.start, key - 1, [index])
            right = _new_shard_entry(self._logs, ctx, self.name, cfg, key, parent.end, [index])
            cfg["shards"] += [left, right]
            return shard_id_for(left["index"]), shard_id_for(right["index"])

        result: tuple[str, str] = self._update_config(change)
        return result

    def merge_shards(self, shard: str | int, adjacent_shard: str | int) -> str:
        """Close two open shards with adjacent ranges and open one child covering both.

        The child's parent is `shard` and its adjacent parent `adjacent_shard`
        (as Kinesis's MergeShards). Atomic and serialised with puts. Returns
        the child's id. Raises InvalidArgument if either is closed or the
        ranges are not adjacent; NotFound.
        """
        first, second = shard_index_of(shard), shard_index_of(adjacent_shard)

        def change(ctx: WriteContext, view: _View, cfg: dict[str, Any]) -> str:
            a, b = view.shard(first), view.shard(second)
            if a.index == b.index:
                raise InvalidArgument("merge_shards: a shard cannot merge with itself")
            for s in (a, b):
                if s.closed:
                    raise InvalidArgument(f"merge_shards: {s.shard_id} is closed")
            if a.end + 1 != b.start and b.end + 1 != a.start:
                raise InvalidArgument(
                    f"merge_shards: {a.shard_id} and {b.shard_id} are not adjacent "
                    "(their hash-key ranges must touch)"
                )
            for s in (a, b):
                _close_shard_in(ctx, next(e for e in cfg["shards"] if e["index"] == s.index), s)
            start, end = min(a.start, b.start), max(a.end, b.end)
            child = _new_shard_entry(
                self._logs, ctx, self.name, cfg, start, end, [a.index, b.index]
            )
            cfg["shards"].append(child)
            return shard_id_for(child["index"])

        result: str = self._update_config(change)
        return result

    def update_shard_count(self, target: int) -> list[str]:
        """Reshard to `target` open shards with even ranges (UNIFORM_SCALING).

        Every open shard closes and `target` children open; each child's
        parents are the old shards its range overlaps. A no-op when the open
        shards already are the even split into `target`. Atomic and
        serialised with puts. Returns the open shard ids after. Raises
        InvalidArgument when `target` is outside 1-500, above twice the open
        count or below half of it (Kinesis's limits); NotFound.
        """
        _check_shard_count(target, "target")

        def change(ctx: WriteContext, view: _View, cfg: dict[str, Any]) -> list[str]:
            if cfg.get("mode") == "ON_DEMAND":  # stream_admin.py: as Kinesis
                raise InvalidArgument(
                    f"update_shard_count: stream {self.name!r} is ON_DEMAND; UpdateShardCount "
                    "is for PROVISIONED streams"
                )
            current = len(view.open)
            if target > 2 * current or target < math.ceil(current / 2):
                raise InvalidArgument(
                    f"update_shard_count: target {target} is outside half to double the "
                    f"{current} open shards ({math.ceil(current / 2)}-{2 * current})"
                )
            ranges = even_ranges(target)
            if [(s.start, s.end) for s in view.open] == ranges:
                return [s.shard_id for s in view.open]
            for s in view.open:
                _close_shard_in(ctx, next(e for e in cfg["shards"] if e["index"] == s.index), s)
            new = []
            for start, end in ranges:
                parents = [s.index for s in view.open if s.start <= end and start <= s.end]
                new.append(_new_shard_entry(self._logs, ctx, self.name, cfg, start, end, parents))
            cfg["shards"] += new
            return [shard_id_for(e["index"]) for e in new]

        result: list[str] = self._update_config(change)
        return result

    # -- iterators and get_records -------------------------------------------------

    def _make_iterator(self, view: _View, shard: _Shard, offset: int) -> str:
        body = _ITERATOR.pack(
            _ITERATOR_VERSION, view.uid, shard.index, offset, self._logs.now_ms() + ITERATOR_TTL_MS
        )
        mac = hmac.new(view.secret, body, hashlib.sha256).digest()[:_ITERATOR_MAC_BYTES]
        return base64.urlsafe_b64encode(body + mac).decode().rstrip("=")

    def _open_iterator(self, iterator: str) -> tuple[_View, _Shard, int]:
        view = self._view()
        try:
            raw = base64.urlsafe_b64decode(iterator + "=" * (-len(iterator) % 4))
        except (ValueError, TypeError):
            raw = b""
        if len(raw) != _ITERATOR.size + _ITERATOR_MAC_BYTES:
            raise InvalidArgument("shard iterator: not an iterator of this store")
        body, mac = raw[: _ITERATOR.size], raw[_ITERATOR.size :]
        version, uid, index, offset, expires_ms = _ITERATOR.unpack(body)
        if version != _ITERATOR_VERSION:
            raise InvalidArgument(f"shard iterator: unknown version {version}")
        if uid != view.uid:
            raise InvalidArgument(
                f"shard iterator: not an iterator of stream {self.name!r} (or the stream was "
                "deleted and created again)"
            )
        expected = hmac.new(view.secret, body, hashlib.sha256).digest()[:_ITERATOR_MAC_BYTES]
        if not hmac.compare_digest(mac, expected):
            raise InvalidArgument("shard iterator: damaged or forged")
        if self._logs.now_ms() > expires_ms:
            raise ExpiredIterator(
                f"shard iterator: expired at {expires_ms} ms (iterators last 5 minutes)"
            )
        shard = view.shards.get(index)
        if shard is None:
            raise NotFound(f"stream {self.name!r}: {shard_id_for(index)} no longer exists")
        return view, shard, offset

    def _start_offset(self, view: _View, shard: _Shard, start: Any) -> int:
        """Resolve a start position (an iterator type and its argument) to an offset."""
        if isinstance(start, datetime):
            start = ("AT_TIMESTAMP", start)
        if isinstance(start, str):
            kind, argument = start, None
        elif isinstance(start, tuple) and len(start) == 2:
            kind, argument = start
        else:
            raise InvalidArgument(
                f"start: {start!r} is not an iterator type, (type, argument) or datetime"
            )
        if kind not in ITERATOR_TYPES:
            raise InvalidArgument(
                f"iterator type: {kind!r} is not one of {', '.join(ITERATOR_TYPES)}"
            )
        if kind == "TRIM_HORIZON":
            return 0  # reads clamp to the oldest record within retention
        ends = self._logs.ends(shard.info)
        if kind == "LATEST":
            return ends.next_offset
        if kind == "AT_TIMESTAMP":
            if argument is None:
                raise InvalidArgument("AT_TIMESTAMP: needs a timestamp")
            return offset_for_time(self._logs, shard.info, max(_to_ms(argument), 0))
        if argument is None:
            raise InvalidArgument(f"{kind}: needs a sequence number")
        index, offset = parse_sequence_number(argument)
        if index != shard.index:
            raise InvalidArgument(
                f"{kind}: sequence number {argument} belongs to {shard_id_for(index)}, "
                f"not {shard.shard_id}"
            )
        if offset >= ends.next_offset:
            raise InvalidArgument(
                f"{kind}: sequence number {argument} has not been assigned in {shard.shard_id}"
            )
        return offset if kind == "AT_SEQUENCE_NUMBER" else offset + 1

    def get_shard_iterator(
        self,
        shard: str | int,
        iterator_type: str = "TRIM_HORIZON",
        *,
        sequence_number: str | None = None,
        timestamp: datetime | float | None = None,
    ) -> str:
        """An opaque iterator for get_records, valid for 5 minutes in any process.

        iterator_type: TRIM_HORIZON (the oldest record within retention),
        LATEST (after the newest record now), AT_SEQUENCE_NUMBER /
        AFTER_SEQUENCE_NUMBER (needs `sequence_number`), AT_TIMESTAMP
        (needs `timestamp`: a datetime or seconds since the epoch; the first
        record that arrived at or after it). Does not block. Raises
        InvalidArgument for an unknown type, a missing argument, or a
        sequence number of another shard or not yet assigned; NotFound.
        """
        view = self._view()
        found = view.shard(shard)
        argument: Any = sequence_number if "SEQUENCE" in iterator_type else timestamp
        start: Any = iterator_type if argument is None else (iterator_type, argument)
        return self._make_iterator(view, found, self._start_offset(view, found, start))

    def _fetch(
        self, view: _View, shard: _Shard, offset: int, limit: int, byte_limit: int
    ) -> tuple[list[StreamRecord], int]:
        """Records from `offset` (within retention), and the offset after them."""
        cutoff = self._logs.now_ms() - view.retention_ms
        stop = offset + limit
        if shard.end_offset is not None and stop > shard.end_offset:
            stop = shard.end_offset
        # Columns straight from each batch (reader.read_batches): no Record is
        # made, so a page of 10,000 records allocates one object a record.
        batches = read_batches(self._logs, shard.info, offset, stop)
        first = next(batches, None)
        if first is not None and first[0].timestamp_ms < cutoff:
            # Timestamps never decrease in a log: skip the expired prefix by time.
            offset = offset_for_time(self._logs, shard.info, cutoff)
            stop = offset + limit
            if shard.end_offset is not None and stop > shard.end_offset:
                stop = shard.end_offset
            batches = read_batches(self._logs, shard.info, offset, stop)
            first = next(batches, None)
        if first is None:
            ends = self._logs.ends(shard.info)
            return [], max(offset, ends.start_offset)
        values: list[bytes] = []
        keys: list[bytes] = []
        offsets: list[int] = []
        stamps: list[int] = []
        for batch, low, high in chain((first,), batches):
            values += batch.values(low, high)
            keys += batch.keys(low, high) or [b""] * (high - low)
            offsets += range(batch.base_offset + low, batch.base_offset + high)
            stamps += [batch.timestamp_ms] * (high - low)
        if len(values) > 1 and sum(map(len, values)) > byte_limit:
            cut = max(
                1,
                next(
                    i for i, total in enumerate(accumulate(map(len, values))) if total > byte_limit
                ),
            )
            del values[cut:], keys[cut:], offsets[cut:], stamps[cut:]
        # Offsets are dense except where `tidelog repair` left a gap: map each one.
        base = shard.sequence_base
        out = list(
            map(
                _new_record,
                zip(
                    values,
                    map(bytes.decode, keys),
                    map(str, map(base.__add__, offsets)),
                    stamps,
                    repeat(shard.shard_id),
                ),
            )
        )
        return out, offsets[-1] + 1

    def get_records(
        self, shard_iterator: str, limit: int = GET_RECORDS_LIMIT_MAX
    ) -> GetRecordsResult:
        """Up to `limit` (1-10,000) records, at most 10 MiB, from an iterator's position.

        Never blocks for new records (an empty list means none yet); use the
        returned `next_shard_iterator`. Records past retention are never
        returned. Raises InvalidArgument (bad limit or iterator),
        ExpiredIterator (older than 5 minutes), NotFound (stream or shard
        gone), Corruption (a damaged record).
        """
        if not isinstance(limit, int) or not 1 <= limit <= GET_RECORDS_LIMIT_MAX:
            raise InvalidArgument(f"limit: {limit!r} is outside 1-{GET_RECORDS_LIMIT_MAX}")
        view, shard, offset = self._open_iterator(shard_iterator)
        records, next_offset = self._fetch(view, shard, offset, limit, GET_RECORDS_BYTES_MAX)
        if shard.end_offset is not None and next_offset >= shard.end_offset:
            return GetRecordsResult(records, None, 0, view.children_of(shard.index))
        ends = self._logs.ends(shard.info)
        behind = 0
        if next_offset < ends.next_offset and records:
            behind = max(0, self._logs.now_ms() - records[-1].arrival_timestamp_ms)
        return GetRecordsResult(records, self._make_iterator(view, shard, next_offset), behind)

    # -- Pythonic reads ---------------------------------------------------------------

    def read(
        self,
        shard: str | int,
        start: str | tuple[str, Any] | datetime = "TRIM_HORIZON",
        *,
        follow: bool = False,
        timeout: float | None = None,
    ) -> Iterator[StreamRecord]:
        """Yield a shard's records from `start`, streaming (memory stays bounded).

        start: "TRIM_HORIZON", "LATEST", ("AT_SEQUENCE_NUMBER", seq),
        ("AFTER_SEQUENCE_NUMBER", seq), ("AT_TIMESTAMP", datetime or seconds),
        or a datetime. Without `follow` the generator ends at the end
        committed when it gets there. With `follow` it waits for new
        records: woken at once by appends of this process, within 50 ms by
        other processes' (no busy polling); it ends when a closed shard is
        exhausted, or after `timeout` seconds without a new record. Holds no
        LMDB transaction between records. Raises InvalidArgument, NotFound,
        Corruption.
        """
        view = self._view()
        found = view.shard(shard)
        offset = self._start_offset(view, found, start)
        return self._read(found.index, offset, follow, timeout)

    def _read(
        self, index: int, offset: int, follow: bool, timeout: float | None
    ) -> Iterator[StreamRecord]:
        logs = self._logs
        idle_since = time.monotonic()
        while True:
            view = self._view()
            shard = view.shard(index)
            records, offset = self._fetch(view, shard, offset, 1000, GET_RECORDS_BYTES_MAX)
            if records:
                yield from records
                idle_since = time.monotonic()
                continue
            if shard.end_offset is not None and offset >= shard.end_offset:
                return
            if not follow:
                return
            left = FOLLOW_POLL_SECONDS
            if timeout is not None:
                left = min(left, idle_since + timeout - time.monotonic())
                if left <= 0:
                    return
            if logs.ends(shard.info).next_offset <= offset:
                logs.wait_for_append(left)

    # -- consumers ---------------------------------------------------------------------

    def consumer(self, name: str) -> Consumer:
        """A named consumer with checkpoints kept in the store (registered if new)."""
        check_stream_name(name, "consumer name")
        consumer = Consumer(self, name)
        if consumer.name not in self.consumers():
            uid = self._view().uid
            key = uid + name.encode() + b"\0"

            def op(ctx: WriteContext) -> None:
                if self._view_in(ctx).uid != uid:
                    raise NotFound(f"stream {self.name!r}: not found (deleted?)")
                ctx.txn.put(key, _U64.pack(ctx.now_ms), db=ctx.db(CHECKPOINTS_DB), overwrite=False)

            self._logs.submit(op)
        return consumer

    def consumer_group(self, name: str, *, initial_position: str = "TRIM_HORIZON") -> ConsumerGroup:
        """A consumer group: workers in any threads and processes share the shards
        by leases, as the KCL's (engine/stream_groups.py). Its checkpoints are
        those of `consumer(name)`, registered if new. `initial_position`
        ("TRIM_HORIZON" or "LATEST") applies to the shards that have no
        checkpoint when the group's first worker runs. Raises InvalidArgument.
        """
        from tidelog.stream_groups import ConsumerGroup

        return ConsumerGroup(self, name, initial_position=initial_position)

    def consumers(self) -> list[str]:
        """Names of the stream's registered consumers."""
        uid = self._view().uid
        names = set()
        with self._logs.env.begin() as txn:
            cursor = txn.cursor(db=self._logs.database(CHECKPOINTS_DB))
            if cursor.set_range(uid):
                for key in cursor.iternext(keys=True, values=False):
                    if not key.startswith(uid):
                        break
                    names.add(key[len(uid) :].split(b"\0", 1)[0].decode())
        return sorted(names)

    def consumer_registered_ms(self, name: str) -> int:
        """When the consumer was registered (ms since the epoch). Raises NotFound."""
        key = self._view().uid + name.encode() + b"\0"
        with self._logs.env.begin() as txn:
            raw = txn.get(key, db=self._logs.database(CHECKPOINTS_DB))
        if raw is None:
            raise NotFound(f"consumer {name!r} of stream {self.name!r}: not found")
        registered: int = _U64.unpack(raw)[0]
        return registered

    # -- tags: kept in the stream's configuration ------------------------------------

    def tags(self) -> dict[str, str]:
        """The stream's tags (Kinesis' ListTagsForStream)."""
        return dict(self._view().cfg.get("tags") or {})

    def tag(self, tags: Mapping[str, str]) -> None:
        """Add or replace tags. Atomic. Raises InvalidArgument past Kinesis' limits
        (keys 1-128 and values up to 256 characters, 50 tags a stream)."""
        check_tags(tags)

        def change(ctx: WriteContext, view: _View, cfg: dict[str, Any]) -> None:
            too_many = f"tag: a stream has at most {STREAM_TAGS_MAX} tags"
            cfg["tags"] = merged_tags(cfg, tags, too_many)

        self._update_config(change)

    def untag(self, tag_keys: Sequence[str]) -> None:
        """Remove tags by key; missing keys are ignored. Atomic."""

        def change(ctx: WriteContext, view: _View, cfg: dict[str, Any]) -> None:
            cfg["tags"] = remaining_tags(cfg, tag_keys)

        self._update_config(change)

    def delete_consumer(self, name: str) -> None:
        """Forget a consumer and its checkpoints. Atomic. Raises NotFound."""
        prefix = self._view().uid + name.encode() + b"\0"

        def op(ctx: WriteContext) -> None:
            db = ctx.db(CHECKPOINTS_DB)
            if ctx.txn.get(prefix, db=db) is None:
                raise NotFound(f"consumer {name!r} of stream {self.name!r}: not found")
            delete_prefix(ctx.txn, db, prefix)
            delete_prefix(ctx.txn, ctx.db(LEASES_DB), prefix)  # its group's leases, subscriptions

        self._logs.submit(op)


class Consumer:
    """A named reader of a stream with a checkpoint per shard (as the KCL's lease table).

    Checkpoints are primary state in LMDB: they survive restarts and are
    shared by every process that opens the store. Thread- and process-safe;
    two processes reading as one consumer both get every record (there are
    no leases: split the shards between them yourself).
    """

    def __init__(self, stream: Stream, name: str) -> None:
        self.stream = stream
        self.name = name

    def __repr__(self) -> str:
        return f"<tidelog.Consumer {self.name!r} of {self.stream.name!r}>"

    def _key(self, uid: bytes, index: int) -> bytes:
        return uid + self.name.encode() + b"\0" + _U64.pack(index)

    def checkpoint(
        self, shard: str | int | StreamRecord, sequence_number: str | None = None
    ) -> None:
        """Record that everything up to `sequence_number` in `shard` is processed.

        `consumer.checkpoint(record)` checkpoints a record read from the
        stream. Atomic and durable as the store's sync mode; blocks until
        committed. A later checkpoint replaces an earlier one (it may move
        back). Raises InvalidArgument if the sequence number is malformed or
        of another shard; NotFound if the stream or consumer is gone.
        """
        if isinstance(shard, StreamRecord):
            record = shard
            shard, sequence_number = record.shard_id, record.sequence_number
        if sequence_number is None:
            raise InvalidArgument("checkpoint: needs a sequence number")
        index = shard_index_of(shard)
        seq_index, offset = parse_sequence_number(sequence_number)
        if seq_index != index:
            raise InvalidArgument(
                f"checkpoint: sequence number {sequence_number} belongs to "
                f"{shard_id_for(seq_index)}, not {shard_id_for(index)}"
            )
        stream = self.stream
        registration = self.name.encode() + b"\0"

        def op(ctx: WriteContext) -> None:
            view = stream._view_in(ctx)
            view.shard(index)
            db = ctx.db(CHECKPOINTS_DB)
            if ctx.txn.get(view.uid + registration, db=db) is None:
                raise NotFound(f"consumer {self.name!r} of stream {stream.name!r}: not found")
            ctx.txn.put(self._key(view.uid, index), _U64.pack(offset), db=db)

        stream._logs.submit(op)

    def seek(self, shard: str | int, offset: int) -> None:
        """Make the consumer's next read of `shard` start at record `offset`.

        The counterpart of kafka-consumer-groups --reset-offsets: `offset` is
        clamped to the shard's retained records (its start to its end, the end
        meaning "only new records"). The checkpoint becomes the record before
        `offset`; when no record precedes it (offset 0), the shard's
        checkpoint is removed, so `read` starts the shard at its
        `initial_position` (TRIM_HORIZON by default). Atomic and durable as
        the store's sync mode. Raises InvalidArgument for a bad shard or a
        negative offset, NotFound if the stream or consumer is gone.
        """
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise InvalidArgument(f"seek: offset {offset!r} must be an integer >= 0")
        index = shard_index_of(shard)
        stream = self.stream
        registration = self.name.encode() + b"\0"

        def op(ctx: WriteContext) -> None:
            view = stream._view_in(ctx)
            info = view.shard(index).info
            db = ctx.db(CHECKPOINTS_DB)
            if ctx.txn.get(view.uid + registration, db=db) is None:
                raise NotFound(f"consumer {self.name!r} of stream {stream.name!r}: not found")
            ends = ctx.ends(info)
            at = min(max(offset, ends.start_offset), ends.next_offset)
            if at == 0:
                ctx.txn.delete(self._key(view.uid, index), db=db)
            else:
                ctx.txn.put(self._key(view.uid, index), _U64.pack(at - 1), db=db)

        stream._logs.submit(op)

    def checkpoints(self) -> dict[str, str]:
        """{shard id: checkpointed sequence number} for the shards that have one."""
        logs = self.stream._logs
        uid = self.stream._view().uid
        prefix = uid + self.name.encode() + b"\0"
        out = {}
        with logs.env.begin() as txn:
            cursor = txn.cursor(db=logs.database(CHECKPOINTS_DB))
            if cursor.set_range(prefix):
                for key, value in cursor:
                    if not key.startswith(prefix):
                        break
                    if len(key) == len(prefix) + 8:
                        index = _U64.unpack(key[len(prefix) :])[0]
                        out[shard_id_for(index)] = sequence_number(index, _U64.unpack(value)[0])
        return out

    def subscribe(
        self, shard: str | int, start: str | tuple[str, Any] | datetime = "LATEST"
    ) -> ShardSubscription:
        """Push `shard`'s records to this consumer as they come (Kinesis's SubscribeToShard).

        `start` is as Stream.read's. Returns a ShardSubscription: iterate it
        (or call `next_event(timeout)`) for SubscriptionEvents, for up to 5
        minutes by the store's clock; resume with ("AFTER_SEQUENCE_NUMBER",
        event.continuation_sequence_number). One subscription per consumer
        and shard, in every process: a second within 5 s raises
        SubscriptionInUse, a later one takes over (and the old one raises
        SubscriptionInUse). Reading does not checkpoint. Raises
        InvalidArgument, NotFound (stream, shard, consumer), SubscriptionInUse.
        See engine/stream_subscriptions.py.
        """
        from tidelog.stream_subscriptions import subscribe

        return subscribe(self, shard, start)

    def lag(self, *, ages: bool = True) -> list[ShardLag]:
        """How far behind the consumer is in each shard, by shard index (see ShardLag).

        Reads the checkpoints, each shard's end and, where records are
        behind and `ages` is true, the oldest of them (for its age; with
        `ages=False` millis_behind is None and no record is read). Writes
        nothing. Raises NotFound, Corruption.
        """
        stream = self.stream
        logs = stream._logs
        view = stream._view()
        checkpoints = self.checkpoints()
        now = logs.now_ms()
        out = []
        for shard in sorted(view.shards.values(), key=lambda s: s.index):
            ends = logs.ends(shard.info)
            checkpoint = checkpoints.get(shard.shard_id)
            position = 0 if checkpoint is None else parse_sequence_number(checkpoint)[1] + 1
            end = ends.next_offset if shard.end_offset is None else shard.end_offset
            behind = max(0, end - max(position, ends.start_offset))
            millis: int | None = 0 if ages else None
            if behind and ages:
                records, _ = stream._fetch(view, shard, position, 1, GET_RECORDS_BYTES_MAX)
                if records:
                    millis = max(0, now - records[0].arrival_timestamp_ms)
            out.append(ShardLag(shard.shard_id, checkpoint, behind, millis))
        return out

    def reset(self, position: str = "TRIM_HORIZON", shard: str | int | None = None) -> None:
        """Move the consumer's checkpoint in `shard` (None: every shard), atomically.

        position: "TRIM_HORIZON" removes the checkpoint, so reading starts
        again at `read`'s initial_position (TRIM_HORIZON by default);
        "LATEST" checkpoints the shard's newest committed record (nothing
        before now is read again); a sequence number checkpoints that
        record, as `checkpoint(shard, sequence_number)` (then `shard` may be
        left out: the sequence number names it). Blocks until committed.
        Raises InvalidArgument (a bad position or shard), NotFound (stream,
        shard or consumer gone).
        """
        stream = self.stream
        registration = self.name.encode() + b"\0"
        target: int | None = None if shard is None else shard_index_of(shard)
        offset: int | None = None
        if position not in ("TRIM_HORIZON", "LATEST"):
            if not isinstance(position, str):
                raise InvalidArgument(f"reset: position {position!r} is not a str")
            index, offset = parse_sequence_number(position)
            if target is not None and target != index:
                raise InvalidArgument(
                    f"reset: sequence number {position} belongs to {shard_id_for(index)}, "
                    f"not {shard_id_for(target)}"
                )
            target = index

        def op(ctx: WriteContext) -> None:
            view = stream._view_in(ctx)
            db = ctx.db(CHECKPOINTS_DB)
            if ctx.txn.get(view.uid + registration, db=db) is None:
                raise NotFound(f"consumer {self.name!r} of stream {stream.name!r}: not found")
            shards = [view.shard(target)] if target is not None else list(view.shards.values())
            for found in shards:
                key = self._key(view.uid, found.index)
                if position == "TRIM_HORIZON":
                    ctx.txn.delete(key, db=db)
                    continue
                last = offset
                if last is None:  # LATEST: the newest committed record, if any
                    last = ctx.ends(found.info).next_offset - 1
                    if last < 0:
                        ctx.txn.delete(key, db=db)
                        continue
                ctx.txn.put(key, _U64.pack(last), db=db)

        stream._logs.submit(op)

    def read(
        self,
        *,
        initial_position: str = "TRIM_HORIZON",
        follow: bool = False,
        timeout: float | None = None,
        batch: int = 1000,
    ) -> Iterator[StreamRecord]:
        """Yield every shard's records after the checkpoints, parents before children.

        A shard is read only when all its parents (those retention has not
        removed) are exhausted, so every record of a partition key comes in
        put order across splits and merges. Shards without a checkpoint
        start at `initial_position` ("TRIM_HORIZON" or "LATEST"; with LATEST,
        closed shards count as exhausted). Independent shards are read in
        turns of up to `batch` records. Reading does not checkpoint: call
        `checkpoint(record)`; after a restart, reading resumes after the
        checkpoints (records read but not checkpointed come again).
        `follow` and `timeout` are as in Stream.read; new shards from
        resharding are picked up. Raises InvalidArgument, NotFound, Corruption.
        """
        if initial_position not in ("TRIM_HORIZON", "LATEST"):
            raise InvalidArgument(
                f"initial_position: {initial_position!r} is not TRIM_HORIZON or LATEST"
            )
        if not isinstance(batch, int) or not 1 <= batch <= GET_RECORDS_LIMIT_MAX:
            raise InvalidArgument(f"batch: {batch!r} is outside 1-{GET_RECORDS_LIMIT_MAX}")
        stream = self.stream
        logs = stream._logs
        positions: dict[int, int] = {}
        for shard_id, seq in self.checkpoints().items():
            positions[shard_index_of(shard_id)] = parse_sequence_number(seq)[1] + 1
        finished: set[int] = set()
        idle_since = time.monotonic()
        while True:
            view = stream._view()
            progressed = False
            waiting_on: list[_Shard] = []
            for shard in sorted(view.shards.values(), key=lambda s: s.index):
                if shard.index in finished:
                    continue
                if any(p in view.shards and p not in finished for p in shard.parents):
                    continue
                if shard.index not in positions:
                    if initial_position == "LATEST":
                        positions[shard.index] = (
                            shard.end_offset
                            if shard.end_offset is not None
                            else logs.ends(shard.info).next_offset
                        )
                    else:
                        positions[shard.index] = 0
                records, positions[shard.index] = stream._fetch(
                    view, shard, positions[shard.index], batch, GET_RECORDS_BYTES_MAX
                )
                if records:
                    progressed = True
                    yield from records
                if shard.end_offset is not None and positions[shard.index] >= shard.end_offset:
                    finished.add(shard.index)
                    progressed = True
                elif not records:
                    waiting_on.append(shard)
            if progressed:
                idle_since = time.monotonic()
                continue
            if not follow:
                return
            left = FOLLOW_POLL_SECONDS
            if timeout is not None:
                left = min(left, idle_since + timeout - time.monotonic())
                if left <= 0:
                    return
            if all(logs.ends(s.info).next_offset <= positions[s.index] for s in waiting_on):
                logs.wait_for_append(left)


__all__ = [
    "Consumer",
    "ShardLag",
    "StreamStats",
    "ExpiredIterator",
    "GetRecordsResult",
    "PutManyResult",
    "PutResult",
    "ShardDescription",
    "Stream",
    "StreamDescription",
    "StreamRecord",
    "create_stream",
    "delete_stream",
    "even_ranges",
    "hash_key_for",
    "list_streams",
    "parse_sequence_number",
    "sequence_number",
]
