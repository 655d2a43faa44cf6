"""Repair a log damaged in the middle: cut it back to the last good record.

Recovery on open (recovery.py) only looks at the active segment's committed
tail. A damaged record elsewhere (a bit flip in a sealed segment, a sealed
file cut short, a missing segment) is raised as Corruption when read and is
never skipped silently (docs/format.md, "Recovery rules"). `repair_log` is
the explicit, operator-run answer (`tidelog repair`): as etcd's WAL repair,
it keeps every record before the first damage and drops the rest.

The order of the steps follows the commit protocol, so a crash at any point
leaves a store that the next open recovers:

1. every file that will change is first copied aside to `<file>.broken`
   and the copy fsynced (nothing has changed yet);
2. one LMDB commit moves the log's committed end back to the last good
   record (the damaged segment becomes the active one) and rebuilds the
   derived index rows (rebuild.py);
3. only then is the damaged segment truncated and the later segments
   unlinked. Bytes past the committed end and segments above the active base
   are exactly what recovery removes on open, so a crash between 2 and 3 is
   finished by the next open.

Stop the writers of other processes before repairing: a writer holding the
old active segment open would append past the new end.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from . import format as fmt
from .errors import Corruption
from .keys import Ends
from .rebuild import rebuild_indexes
from .scan import scan

if TYPE_CHECKING:
    from .logstore import LogInfo, LogStore
    from .writer import WriteContext


@dataclass(frozen=True)
class Damage:
    """The first damaged place of a log, in log order."""

    reason: str
    path: str
    base: int  # the segment that holds it
    offset: int  # the first record lost
    position: int  # the byte where the good records end
    last_timestamp_ms: int  # of the last good record before it (0: none seen)
    rewrite_header: bool  # the segment's header is damaged or the file is missing


@dataclass
class LogRepair:
    """What `repair_log` did to one log (a report for the CLI to print)."""

    log: str
    damage: str | None = None
    path: str | None = None
    offset: int | None = None
    position: int | None = None
    records_dropped: int = 0
    bytes_dropped: int = 0
    files_changed: list[str] = field(default_factory=list)
    files_removed: list[str] = field(default_factory=list)
    broken_copies: list[str] = field(default_factory=list)
    index_entries: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _segment_bases(store: LogStore, info: LogInfo, ends: Ends) -> list[int]:
    return sorted(
        base
        for name in store.fs.listdir(store.log_dir(info.id))
        if (base := fmt.parse_segment_name(name)) is not None
        and ends.start_offset <= base <= ends.active_base
    )


def _committed_size(store: LogStore, info: LogInfo, base: int, ends: Ends, fd: int) -> int:
    """The bytes a segment must hold: LMDB's row for sealed ones, else the file's size."""
    if base == ends.active_base:
        return ends.active_position
    from . import keys

    with store.env.begin() as txn:
        raw = txn.get(keys.log_offset_key(info.id, base), db=store.dbs[keys.DB_SEGMENTS])
    if raw is not None:
        row = keys.SegmentRow.unpack(raw)
        if row.sealed and row.size:
            return int(row.size)
    return store.fs.size(fd)


def find_damage(store: LogStore, info: LogInfo) -> Damage | None:
    """The first damaged record, header or missing segment of the log; None if sound.

    Read-only; reads every committed byte once (bounded chunks).
    """
    ends = store.ends(info)
    expected = ends.start_offset
    last_ts = 0
    for base in [*_segment_bases(store, info, ends), None]:
        if base is None or base != expected:
            if expected > ends.active_base or (expected == ends.next_offset and base is None):
                return None
            # No segment holds `expected`: the file is missing.
            path = store.segment_path(info.id, expected)
            return Damage(
                "segment file missing",
                path,
                expected,
                expected,
                fmt.SEGMENT_HEADER_BYTES,
                last_ts,
                True,
            )
        path = store.segment_path(info.id, base)
        fd = store.fs.open_read(path)
        try:
            header = fmt.decode_segment_header(store.fs.pread(fd, fmt.SEGMENT_HEADER_BYTES, 0))
            if header is None or header.base_offset != base:
                return Damage(
                    "segment header damaged",
                    path,
                    base,
                    base,
                    fmt.SEGMENT_HEADER_BYTES,
                    last_ts,
                    True,
                )
            limit = _committed_size(store, info, base, ends, fd)
            position = fmt.SEGMENT_HEADER_BYTES
            try:
                for chunk_end, records in scan(
                    store.fs, fd, position, limit, expected, log=info.name, path=path
                ):
                    position = chunk_end
                    expected += len(records)
                    last_ts = records[-1].timestamp_ms
            except Corruption as exc:
                return Damage(
                    exc.reason,
                    path,
                    base,
                    exc.offset if exc.offset is not None else expected,
                    exc.position if exc.position is not None else position,
                    last_ts,
                    False,
                )
        finally:
            store.fs.close(fd)
        if base == ends.active_base:
            if expected != ends.next_offset:
                return Damage(
                    f"active segment ends at offset {expected}, the commit point says "
                    f"{ends.next_offset}",
                    path,
                    base,
                    expected,
                    position,
                    last_ts,
                    False,
                )
            return None
    return None


def _aside(store: LogStore, path: str) -> str:
    """Copy `path` to a free `<path>.broken[.N]` name, fsynced; returns the copy's path."""
    dest = path + fmt.BROKEN_SUFFIX
    number = 1
    while os.path.exists(dest):
        dest = f"{path}{fmt.BROKEN_SUFFIX}.{number}"
        number += 1
    store.fs.copy_aside(path, dest)
    return dest


def repair_log(store: LogStore, info: LogInfo) -> LogRepair:
    """Cut the log back to the record before its first damage; rebuild its indexes.

    Keeps a fsynced `.broken` copy of every file it truncates or removes,
    and reports the records and bytes dropped. A sound log only gets its
    derived indexes rebuilt. Takes the store's write lock for the commit.
    Raises ReadOnly on a read-only store, Corruption if the damage cannot be
    placed (it always can for the damage `find_damage` knows).
    """
    store.check_writable()
    report = LogRepair(info.name)
    damage = find_damage(store, info)
    if damage is None:
        report.index_entries = store.submit(lambda ctx: rebuild_indexes(ctx, info))
        return report
    ends = store.ends(info)
    report.damage = damage.reason
    report.path = damage.path
    report.offset = damage.offset
    report.position = damage.position
    report.records_dropped = ends.next_offset - damage.offset
    later = [b for b in _segment_bases(store, info, ends) if b > damage.base]
    later_paths = [store.segment_path(info.id, b) for b in later]
    dropped = 0
    if os.path.exists(damage.path):
        dropped += max(0, os.path.getsize(damage.path) - damage.position)
        report.broken_copies.append(_aside(store, damage.path))
        report.files_changed.append(damage.path)
    for path in later_paths:
        dropped += os.path.getsize(path)
        report.broken_copies.append(_aside(store, path))
        report.files_removed.append(path)
    report.bytes_dropped = dropped
    new_ends = Ends(
        start_offset=min(ends.start_offset, damage.offset),
        next_offset=damage.offset,
        active_base=damage.base,
        active_position=damage.position,
        last_timestamp_ms=damage.last_timestamp_ms or ends.last_timestamp_ms,
        last_index_position=0,
    )

    def op(ctx: WriteContext) -> int:
        from . import keys

        ctx.txn.put(keys.log_key(info.id), new_ends.pack(), db=ctx.store.dbs[keys.DB_ENDS])
        return rebuild_indexes(ctx, info)

    # The commit moves the end back first; the files change only after it
    # (see the module docstring for why this order survives a crash).
    report.index_entries = store.submit(op)
    fs = store.fs
    if damage.rewrite_header:
        fd = fs.create(damage.path) if not os.path.exists(damage.path) else None
        if fd is None:
            fd = fs.open_append(damage.path)
        try:
            fs.truncate(fd, 0)
            fs.pwrite(fd, fmt.encode_segment_header(damage.base), 0)
            fs.fdatasync(fd)
        finally:
            fs.close(fd)
        fs.fsync_dir(store.log_dir(info.id))
    else:
        fd = fs.open_append(damage.path)
        try:
            fs.truncate(fd, damage.position)
            fs.fdatasync(fd)
        finally:
            fs.close(fd)
    for path in later_paths:
        fs.unlink(path)
    if later_paths:
        fs.fsync_dir(store.log_dir(info.id))
    return report
