"""Rebuild a log's derived LMDB state (segments, index, timeindex) from its files.

The offset and time indexes and the per-segment rows are derived data
(docs/format.md, "LMDB"): this one function recreates them from the segment
files, with the same sparse-index rule the writer uses. The primary state
(catalog and `ends`, the commit point) is read, never rewritten, except for
the active segment's last index position, which is derived too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import format as fmt
from . import keys
from .errors import Corruption
from .keys import SegmentRow
from .logstore import delete_prefix
from .scan import scan_batches, segment_salt
from .writer import NO_INDEX, WriteContext

if TYPE_CHECKING:
    from .logstore import LogInfo


def rebuild_indexes(ctx: WriteContext, info: LogInfo) -> int:
    """Recreate the log's derived rows inside `ctx`; returns index entries written.

    Raises Corruption if a segment cannot be read to its committed end.
    """
    store = ctx.store
    txn = ctx.txn
    dbs = store.dbs
    ends = ctx.ends(info)
    for name in (keys.DB_SEGMENTS, keys.DB_INDEX, keys.DB_TIMEINDEX):
        delete_prefix(txn, dbs[name], keys.log_key(info.id))
    bases = sorted(
        base
        for name in store.fs.listdir(store.log_dir(info.id))
        if (base := fmt.parse_segment_name(name)) is not None
        and ends.start_offset <= base <= ends.active_base
    )
    entries = 0
    last_index_position = NO_INDEX
    expected = bases[0] if bases else ends.active_base
    for base in bases:
        path = store.segment_path(info.id, base)
        if base != expected:
            raise Corruption(
                f"segment gap: expected a segment at offset {expected}",
                log=info.name,
                path=path,
                offset=expected,
            )
        fd = store.fs.open_read(path)
        try:
            active = base == ends.active_base
            limit = ends.active_position if active else store.fs.size(fd)
            salt = segment_salt(store.fs, fd, base, log=info.name, path=path)
            next_index_at = fmt.SEGMENT_HEADER_BYTES
            first_ts = last_ts = 0
            for batch in scan_batches(
                store.fs,
                fd,
                fmt.SEGMENT_HEADER_BYTES,
                limit,
                expected,
                salt,
                log=info.name,
                path=path,
            ):
                position = batch.position
                if not batch.gap:
                    if not first_ts:
                        first_ts = batch.timestamp_ms
                    last_ts = batch.timestamp_ms
                if position >= next_index_at:
                    txn.put(
                        keys.log_offset_key(info.id, batch.base_offset),
                        keys.INDEX_ROW.pack(base, position, batch.timestamp_ms),
                        db=dbs[keys.DB_INDEX],
                    )
                    txn.put(
                        keys.time_key(info.id, batch.timestamp_ms, batch.base_offset),
                        b"",
                        db=dbs[keys.DB_TIMEINDEX],
                    )
                    entries += 1
                    if active:
                        last_index_position = position
                    next_index_at = position + fmt.INDEX_INTERVAL_BYTES
                expected = batch.base_offset + batch.count
        finally:
            store.fs.close(fd)
        row = (
            SegmentRow(0, 0, 0, 0, 0)
            if active
            else SegmentRow(expected, limit, first_ts, last_ts, 1)
        )
        txn.put(keys.log_offset_key(info.id, base), row.pack(), db=dbs[keys.DB_SEGMENTS])
    if expected != ends.next_offset:
        raise Corruption(
            f"segments end at offset {expected}, the commit point says {ends.next_offset}",
            log=info.name,
            offset=expected,
        )
    txn.put(
        keys.log_key(info.id),
        ends._replace(last_index_position=last_index_position).pack(),
        db=dbs[keys.DB_ENDS],
    )
    return entries
