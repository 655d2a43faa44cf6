"""Streaming reads of a log: by offset or by time, never past the committed end.

Reads use `pread` in bounded chunks (scan.READ_CHUNK_BYTES), so memory stays flat
however long the log. LMDB is touched only in short read transactions at
segment and chunk boundaries; no read transaction is held while the caller
consumes records.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import chain, count, repeat
from typing import TYPE_CHECKING, NamedTuple

from . import format as fmt
from . import keys
from .errors import Corruption
from .format import ATTR_GAP, Batch, Record
from .keys import Ends, SegmentRow
from .scan import FIRST_CHUNK_BYTES, scan_batches, segment_salt

if TYPE_CHECKING:
    from .logstore import LogInfo, LogStore


def locate(store: LogStore, info: LogInfo, offset: int) -> tuple[int, int, int]:
    """(segment base, byte position, offset there) of the index entry at or below `offset`."""
    prefix = keys.log_key(info.id)
    with store.env.begin() as txn:
        cursor = txn.cursor(db=store.dbs[keys.DB_INDEX])
        target = keys.log_offset_key(info.id, offset)
        found = cursor.set_range(target)
        if not found or cursor.key() != target:
            found = cursor.prev() if found else cursor.last()
        if found and cursor.key().startswith(prefix):
            entry_offset = keys.U64_PAIR.unpack(cursor.key())[1]
            base, position, _ts = keys.INDEX_ROW.unpack(cursor.value())
            return base, position, entry_offset
        raw = txn.get(prefix, db=store.dbs[keys.DB_ENDS])
    if raw is None:
        return 0, fmt.SEGMENT_HEADER_BYTES, 0
    ends = Ends.unpack(raw)
    return ends.active_base, fmt.SEGMENT_HEADER_BYTES, ends.active_base


def offset_for_time(store: LogStore, info: LogInfo, timestamp_ms: int) -> int:
    """The first offset whose timestamp is >= `timestamp_ms` (the end if none)."""
    prefix = keys.log_key(info.id)
    start = None
    with store.env.begin() as txn:
        cursor = txn.cursor(db=store.dbs[keys.DB_TIMEINDEX])
        found = cursor.set_range(keys.time_key(info.id, max(timestamp_ms, 0), 0))
        found = cursor.prev() if found else cursor.last()
        if found and cursor.key().startswith(prefix):
            start = keys.U64_TRIPLE.unpack(cursor.key())[2]
    ends = store.ends(info)
    if start is None or start < ends.start_offset:
        start = ends.start_offset
    for record in read_records(store, info, start):
        if record.timestamp_ms >= timestamp_ms:
            return record.offset
    return store.ends(info).next_offset


def _limits(
    store: LogStore, info: LogInfo, base: int, stop_offset: int | None = None
) -> tuple[Ends | None, SegmentRow | None, int | None]:
    """The log's ends, segment `base`'s row, and a byte position in that
    segment at or before which every record below `stop_offset` ends (from
    the first index entry at or past it; None when it is in a later segment)."""
    stop_position = None
    with store.env.begin() as txn:
        raw_ends = txn.get(keys.log_key(info.id), db=store.dbs[keys.DB_ENDS])
        raw_row = txn.get(keys.log_offset_key(info.id, base), db=store.dbs[keys.DB_SEGMENTS])
        if stop_offset is not None:
            cursor = txn.cursor(db=store.dbs[keys.DB_INDEX])
            found = cursor.set_range(keys.log_offset_key(info.id, stop_offset))
            if found and cursor.key().startswith(keys.log_key(info.id)):
                entry_base, position, _ts = keys.INDEX_ROW.unpack(cursor.value())
                if entry_base == base:
                    stop_position = position
    return (
        Ends.unpack(raw_ends) if raw_ends else None,
        SegmentRow.unpack(raw_row) if raw_row else None,
        stop_position,
    )


def read_records(
    store: LogStore,
    info: LogInfo,
    start_offset: int = 0,
    stop_offset: int | None = None,
    first_chunk_bytes: int = FIRST_CHUNK_BYTES,
) -> Iterator[Record]:
    """Yield committed records from `start_offset` (clamped to the log's start).

    Stops at `stop_offset` (exclusive) or at the committed end seen when the
    reader reaches it. Each Record is made as it is taken (one CRC check a
    batch). Offsets lost to a repaired damage (gap batches) are skipped.
    Raises Corruption (with log, path, offset and byte position) on a
    damaged batch; never skips one.
    """
    # chain, not `yield from`: records pass from batch to caller in C.
    batches = read_batches(store, info, start_offset, stop_offset, first_chunk_bytes)
    return chain.from_iterable(batch.records(low, high) for batch, low, high in batches)


def read_chunks(
    store: LogStore, info: LogInfo, start_offset: int = 0, stop_offset: int | None = None
) -> Iterator[list[Record]]:
    """`read_records`, a batch's records (a non-empty list, in offset order) at a time."""
    for batch, low, high in read_batches(store, info, start_offset, stop_offset):
        yield list(batch.records(low, high))


class Columns(NamedTuple):
    """The records of one batch as columns: offsets are `first_offset` onwards."""

    first_offset: int
    timestamp_ms: int
    values: list[bytes]


def read_columns(
    store: LogStore, info: LogInfo, start_offset: int = 0, stop_offset: int | None = None
) -> Iterator[Columns]:
    """The values-only read: each batch's values, one list a batch, no Record made.

    For columnar readers (SQL scans, delivery streams): a record costs one
    bytes slice and nothing else. The same checks and bounds as read_records.
    """
    for batch, low, high in read_batches(store, info, start_offset, stop_offset):
        yield Columns(batch.base_offset + low, batch.timestamp_ms, batch.values(low, high))


def read_value_chunks(
    store: LogStore, info: LogInfo, start_offset: int = 0, stop_offset: int | None = None
) -> Iterator[list[fmt.ValueRow]]:
    """`read_chunks` of (offset, timestamp_ms, value) rows, one list a batch."""
    for first, ts, values in read_columns(store, info, start_offset, stop_offset):
        yield list(zip(count(first), repeat(ts), values))


def read_batches(
    store: LogStore,
    info: LogInfo,
    start_offset: int = 0,
    stop_offset: int | None = None,
    first_chunk_bytes: int = FIRST_CHUNK_BYTES,
) -> Iterator[tuple[Batch, int, int]]:
    """(batch, low, high) for each batch holding records in [start, stop).

    `low` and `high` index the batch's records wanted; gap batches are
    stepped over. The engine of every read above.
    """
    fs = store.fs
    offset = start_offset
    ends, _, _ = _limits(store, info, 0)
    if ends is None:
        return
    if offset < ends.start_offset:
        offset = ends.start_offset
    base, position, expected = locate(store, info, offset)
    fd = -1  # no segment open yet
    fd_base = -1
    salt = 0
    try:
        while stop_offset is None or expected < stop_offset:
            ends, row, stop_position = _limits(store, info, base, stop_offset)
            if ends is None or expected >= ends.next_offset:
                return
            if base < ends.start_offset or (base != ends.active_base and row is None):
                # Retention removed this segment while we read: skip to the start.
                if offset < ends.start_offset:
                    offset = ends.start_offset
                base, position, expected = locate(store, info, max(offset, expected))
                continue
            sealed = base != ends.active_base
            limit = row.size if sealed and row is not None else ends.active_position
            if stop_position is not None and position < stop_position < limit:
                # Read no further than the records asked for need (the index is
                # sparse: at most one index interval more), not a whole chunk.
                limit = stop_position
            path = store.segment_path(info.id, base)
            if fd_base != base:
                if fd >= 0:
                    fs.close(fd)
                    fd = -1
                try:
                    fd = fs.open_read(path)
                except FileNotFoundError:
                    if store.ends(info).start_offset > base:
                        continue  # deleted by retention between the two looks
                    raise Corruption(
                        "segment file missing", log=info.name, path=path, offset=expected
                    ) from None
                fd_base = base
                salt = segment_salt(fs, fd, base, log=info.name, path=path)
            progressed = False
            batches = scan_batches(
                fs,
                fd,
                position,
                limit,
                expected,
                salt,
                log=info.name,
                path=path,
                first_chunk_bytes=first_chunk_bytes,
            )
            for batch in batches:
                position = batch.position + batch.size
                first = batch.base_offset
                expected = first + batch.count
                progressed = True
                if batch.attributes & ATTR_GAP or expected <= offset:
                    continue
                low = offset - first if offset > first else 0
                high = batch.count
                if stop_offset is not None and expected >= stop_offset:
                    high = stop_offset - first
                    if low < high:
                        yield batch, low, high
                    return
                yield batch, low, high
            if sealed:
                if row is not None and row.end_offset != expected:
                    raise Corruption(
                        f"sealed segment ends at offset {expected}, index says {row.end_offset}",
                        log=info.name,
                        path=path,
                        offset=expected,
                        position=position,
                    )
                base = expected
                position = fmt.SEGMENT_HEADER_BYTES
            elif not progressed:
                return
    finally:
        if fd >= 0:
            fs.close(fd)
