"""Repair a log damaged in the middle: keep every intact batch, fill the damage with gaps.

Recovery on open (recovery.py) only looks at the active segment's committed
tail. A damaged batch elsewhere (a bit flip in a sealed segment, a sealed
file cut short, a missing segment) is raised as Corruption when read and is
never skipped silently (docs/format.md, "Recovery rules"). `repair_log` is
the explicit, operator-run answer (`tidelog repair`), specified in
docs/format.md, "Repair": at each damaged place it resynchronises on the
next valid batch (the segment's salt is the search key), overwrites the
damaged bytes with a gap batch naming exactly the offsets lost, and keeps
everything after with its offsets. As LevelDB's log reader and Kafka's
recovery do, it reports what it dropped.

Order of the steps, so a crash leaves a store that repair can finish:

1. every file that will change is first copied aside to `<file>.broken`
   and the copy fsynced (nothing has changed yet);
2. the gap batches and headers are written in place and each file fsynced;
3. one LMDB commit rebuilds the derived index rows (rebuild.py) and, when
   the active segment changed size, its committed position.

It refuses while another process has the store open for writing
(`LogStore.exclusive`), so no writer appends past an end it moves.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from . import format as fmt
from . import keys
from .errors import Corruption
from .keys import Ends
from .rebuild import rebuild_indexes
from .scan import READ_CHUNK_BYTES, scan_batches

if TYPE_CHECKING:
    from .logstore import LogInfo, LogStore
    from .writer import WriteContext


@dataclass
class Loss:
    """One damaged place and exactly what it cost."""

    reason: str
    path: str
    position: int  # first damaged byte
    size: int  # damaged bytes, now one gap batch
    first_offset: int  # first record lost
    records: int  # records lost: first_offset .. first_offset + records - 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LogRepair:
    """What `repair_log` did to one log (a report for the CLI to print)."""

    log: str
    damage: str | None = None  # the first damage's reason
    path: str | None = None
    offset: int | None = None
    position: int | None = None
    records_dropped: int = 0
    bytes_dropped: int = 0
    losses: list[Loss] = field(default_factory=list)
    header_rewritten: list[str] = field(default_factory=list)  # headers damaged, salt restored
    files_changed: list[str] = field(default_factory=list)
    files_removed: list[str] = field(default_factory=list)
    broken_copies: list[str] = field(default_factory=list)
    index_entries: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Edit:
    """Bytes to write into one segment file."""

    path: str
    base: int
    create: bool = False
    header_salt: int | None = None  # rewrite the header with this salt
    writes: list[tuple[int, bytes]] = field(default_factory=list)
    size: int | None = None  # the file's new size, when it changes


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
    with store.env.begin() as txn:
        raw = txn.get(keys.log_offset_key(info.id, base), db=store.dbs[keys.DB_SEGMENTS])
    if raw is not None:
        row = keys.SegmentRow.unpack(raw)
        if row.sealed and row.size:
            return int(row.size)
    return store.fs.size(fd)


def _read(store: LogStore, fd: int, position: int, limit: int) -> bytes:
    parts = []
    while position < limit:
        data = store.fs.pread(fd, min(READ_CHUNK_BYTES, limit - position), position)
        if not data:
            break
        parts.append(data)
        position += len(data)
    return b"".join(parts)


def _valid_at(data: bytes, at: int, salt: int, low: int, high: int) -> fmt.Batch | None:
    """The batch at data[at:], if it passes every check with a base in [low, high)."""
    if at + fmt.BATCH_HEADER_BYTES > len(data):
        return None
    base = fmt.BATCH_HEADER.unpack_from(data, at)[4]
    if not low <= base < high:
        return None
    batches, _used, _error = fmt.decode_batches(data, at, len(data), salt, base)
    return batches[0] if batches else None


def _resync(data: bytes, start: int, salt: int, low: int, high: int) -> fmt.Batch | None:
    """The first whole valid batch starting at or after `start` (indexes into data)."""
    key = salt.to_bytes(4, "little")
    at = data.find(key, start + fmt.BATCH_PREFIX_BYTES)
    while at >= 0:
        found = _valid_at(data, at - fmt.BATCH_PREFIX_BYTES, salt, low, high)
        if found is not None:
            return found
        at = data.find(key, at + 1)
    return None


def _recover_salt(data: bytes, low: int, high: int) -> int | None:
    """The salt of a segment whose header is damaged: that of its first valid batch.

    Candidates are every byte position in the first READ_CHUNK_BYTES whose
    base offset field lies in [low, high); each must pass every check.
    """
    stop = min(len(data), fmt.SEGMENT_HEADER_BYTES + READ_CHUNK_BYTES)
    for at in range(fmt.SEGMENT_HEADER_BYTES, stop - fmt.BATCH_HEADER_BYTES + 1):
        salt = fmt.BATCH_HEADER.unpack_from(data, at)[2]
        if salt and _valid_at(data, at, salt, low, high) is not None:
            return int(salt)
    return None


def _plan_segment(
    store: LogStore,
    info: LogInfo,
    base: int,
    end_offset: int,
    limit: int,
    last_ts: int,
    report: LogRepair,
) -> tuple[_Edit | None, int]:
    """Find the damage of the segment holding [base, end_offset) in its first
    `limit` bytes and plan its gap batches. Returns (edit or None, the last
    good timestamp)."""
    path = store.segment_path(info.id, base)
    fs = store.fs
    fd = fs.open_read(path)
    try:
        edit = _Edit(path, base)
        data: bytes | None = None
        header = fmt.decode_segment_header(fs.pread(fd, fmt.SEGMENT_HEADER_BYTES, 0))
        if header is None or header.base_offset != base or header.read_version != fmt.READ_VERSION:
            data = _read(store, fd, 0, limit)
            found_salt = _recover_salt(data, base, max(end_offset, base + 1))
            salt = found_salt if found_salt is not None else fmt.new_salt()
            edit.header_salt = salt
            report.header_rewritten.append(path)
        else:
            salt = header.salt
        position, expected = fmt.SEGMENT_HEADER_BYTES, base
        while True:
            try:
                for batch in scan_batches(
                    fs, fd, position, limit, expected, salt, log=info.name, path=path
                ):
                    position, expected = batch.position + batch.size, batch.end_offset
                    if not batch.gap:
                        last_ts = batch.timestamp_ms
            except Corruption as exc:
                reason = exc.reason
                bad_at = exc.position if exc.position is not None else position
            else:
                if expected >= end_offset:
                    break
                # A file cut at a batch boundary, or later segment files missing.
                reason, bad_at = "records missing at the end of the segment", position
            if data is None:
                data = _read(store, fd, 0, limit)
            found = _resync(data, bad_at + fmt.BATCH_HEADER_BYTES, salt, expected + 1, end_offset)
            stop_at = found.position if found is not None else limit
            next_offset = found.base_offset if found is not None else end_offset
            size = max(stop_at - bad_at, fmt.BATCH_HEADER_BYTES)
            if next_offset > expected:
                lost = next_offset - expected
                gap = fmt.encode_gap(salt, expected, lost, size, last_ts)
                edit.writes.append((bad_at, gap))
                report.losses.append(Loss(reason, path, bad_at, size, expected, lost))
                if bad_at + size > limit:
                    edit.size = bad_at + size
            if found is None:
                break
            position, expected = found.position, found.base_offset
        return (edit if edit.writes or edit.header_salt is not None else None), last_ts
    finally:
        fs.close(fd)


def _aside(store: LogStore, path: str) -> str:
    """Copy `path` to a free `<path>.broken[.N]` name, fsynced; returns the copy's path."""
    dest = path + fmt.BROKEN_SUFFIX
    number = 1
    while os.path.exists(dest):
        dest = f"{path}{fmt.BROKEN_SUFFIX}.{number}"
        number += 1
    store.fs.copy_aside(path, dest)
    return dest


def plan_repair(store: LogStore, info: LogInfo) -> tuple[LogRepair, list[_Edit]]:
    """Find every damaged place of the log and plan its gaps (reads only).

    A segment file missing in the middle shows as records missing at the end
    of the one before it (its range runs to the next file), and gets its gap
    there; a missing first segment is recreated as a header and one gap.
    """
    report = LogRepair(info.name)
    ends = store.ends(info)
    bases = _segment_bases(store, info, ends)
    edits: list[_Edit] = []
    last_ts = 0
    first = bases[0] if bases else ends.next_offset
    if first > ends.start_offset:
        path = store.segment_path(info.id, ends.start_offset)
        salt = fmt.new_salt()
        lost = first - ends.start_offset
        gap = fmt.encode_gap(salt, ends.start_offset, lost, fmt.BATCH_HEADER_BYTES, 0)
        edit = _Edit(path, ends.start_offset, create=True, header_salt=salt)
        edit.writes.append((fmt.SEGMENT_HEADER_BYTES, gap))
        edit.size = fmt.SEGMENT_HEADER_BYTES + len(gap)
        edits.append(edit)
        where = fmt.SEGMENT_HEADER_BYTES
        report.losses.append(
            Loss("segment file missing", path, where, len(gap), ends.start_offset, lost)
        )
    for index, base in enumerate(bases):
        end_offset = bases[index + 1] if index + 1 < len(bases) else ends.next_offset
        fd = store.fs.open_read(store.segment_path(info.id, base))
        try:
            limit = _committed_size(store, info, base, ends, fd)
        finally:
            store.fs.close(fd)
        edit_or_none, last_ts = _plan_segment(store, info, base, end_offset, limit, last_ts, report)
        if edit_or_none is not None:
            edits.append(edit_or_none)
    if report.header_rewritten and not report.losses:
        report.damage, report.path = "segment header damaged", report.header_rewritten[0]
        report.position = 0
    if report.losses:
        loss = report.losses[0]
        report.damage, report.path = loss.reason, loss.path
        report.offset, report.position = loss.first_offset, loss.position
        report.records_dropped = sum(item.records for item in report.losses)
        report.bytes_dropped = sum(item.size for item in report.losses)
    return report, edits


def repair_log(store: LogStore, info: LogInfo) -> LogRepair:
    """Fill every damaged place of the log with a gap batch; rebuild its indexes.

    Keeps every intact batch, before and after each damage, with its
    offsets; reports each loss exactly (LogRepair.losses). Keeps a fsynced
    `.broken` copy of every file it changes. Raises StoreBusy while another
    process has the store open for writing, ReadOnly on a read-only store.
    """
    store.check_writable()
    with store.exclusive():
        report, edits = plan_repair(store, info)
        fs = store.fs
        for edit in edits:
            if not edit.create:
                report.broken_copies.append(_aside(store, edit.path))
        new_active_size: int | None = None
        ends = store.ends(info)
        for edit in edits:
            fd = fs.create(edit.path) if edit.create else fs.open_append(edit.path)
            try:
                if edit.header_salt is not None:
                    fs.pwrite(fd, fmt.encode_segment_header(edit.base, edit.header_salt), 0)
                for position, data in edit.writes:
                    fs.pwrite(fd, data, position)
                if edit.size is not None and edit.base != ends.active_base:
                    fs.truncate(fd, edit.size)
                fs.fdatasync(fd)
            finally:
                fs.close(fd)
            if edit.create:
                fs.fsync_dir(store.log_dir(info.id))
            if edit.base == ends.active_base and edit.size is not None:
                new_active_size = edit.size
            report.files_changed.append(edit.path)
        for key in [k for k in store.segment_salts if k[0] == info.id]:
            del store.segment_salts[key]

        def op(ctx: WriteContext) -> int:
            if new_active_size is not None:
                current = ctx.ends(info)
                ctx.txn.put(
                    keys.log_key(info.id),
                    current._replace(active_position=new_active_size).pack(),
                    db=ctx.store.dbs[keys.DB_ENDS],
                )
            return rebuild_indexes(ctx, info)

        report.index_entries = store.submit(op)
    return report
