"""Recovery on open, and the full verification of a log.

The rules are in docs/format.md, "Recovery rules". Recovery returns a
RecoveryReport: what was truncated or dropped is data, not a log line.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from . import format as fmt
from . import keys
from .errors import Corruption, UnsupportedFormat, check
from .keys import Ends, Txn
from .scan import READ_CHUNK_BYTES, scan_batches
from .writer import NO_INDEX

if TYPE_CHECKING:
    from .logstore import LogInfo, LogStore

META_VOLATILE_PREFIX = b"volatile-boot:"


@dataclass
class LogRecovery:
    """What recovery did to one log."""

    log: str
    uncommitted_bytes_truncated: int = 0
    records_dropped: int = 0
    bytes_dropped: int = 0
    problems: list[str] = field(default_factory=list)
    broken_copy: str | None = None


@dataclass
class RecoveryReport:
    """What the last open found and repaired, per log (only logs with news)."""

    logs: list[LogRecovery] = field(default_factory=list)
    files_removed: list[str] = field(default_factory=list)
    full_tail_scan: bool = False

    @property
    def records_dropped(self) -> int:
        return sum(item.records_dropped for item in self.logs)

    @property
    def bytes_dropped(self) -> int:
        return sum(item.bytes_dropped for item in self.logs)

    @property
    def clean(self) -> bool:
        return not any(item.records_dropped or item.problems for item in self.logs)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def boot_id() -> bytes:
    try:
        with open("/proc/sys/kernel/random/boot_id", "rb") as handle:
            return handle.read().strip()
    except OSError:
        return b"unknown"


def recover(store: LogStore) -> RecoveryReport:
    """Bring every log to a clean committed end. Runs under the write lock."""
    from .logstore import LogInfo

    report = RecoveryReport()
    current_boot = boot_id()
    removals: list[str] = []
    with store.env.begin(write=True) as txn:
        meta = store.dbs[keys.DB_META]
        cursor = txn.cursor(db=meta)
        volatile: list[bytes] = []
        if cursor.set_range(META_VOLATILE_PREFIX):
            for key in cursor.iternext(values=False):
                if not key.startswith(META_VOLATILE_PREFIX):
                    break
                volatile.append(key)
        # A session in "interval" or "never" mode on an earlier boot may have
        # lost unsynced pages anywhere in its last interval, not only at the
        # tail: scan whole active segments then.
        full_scan = any(key[len(META_VOLATILE_PREFIX) :] != current_boot for key in volatile)
        report.full_tail_scan = full_scan
        for key in volatile:
            if key[len(META_VOLATILE_PREFIX) :] != current_boot:
                txn.delete(key, db=meta)
        if store.sync_mode != "always":
            txn.put(META_VOLATILE_PREFIX + current_boot, b"", db=meta)
        known: set[str] = set()
        for raw_id, raw_info in txn.cursor(db=store.dbs[keys.DB_LOGS]):
            info = LogInfo.from_json(keys.U64.unpack(raw_id)[0], raw_info)
            known.add(str(info.id))
            item = _recover_log(store, txn, info, full_scan, removals)
            if item.uncommitted_bytes_truncated or item.records_dropped or item.problems:
                report.logs.append(item)
        for name in store.fs.listdir(store.logs_path):
            if name not in known and name.isdigit():
                removals.append(os.path.join(store.logs_path, name))
    for path in removals:
        if os.path.isdir(path):
            store.fs.rmtree(path)
        else:
            store.fs.unlink(path)
    report.files_removed = removals
    return report


def _last_index_entry(store: LogStore, txn: Txn, log_id: int) -> tuple[int, int, int] | None:
    """(offset, base, position) of the log's last index entry."""
    cursor = txn.cursor(db=store.dbs[keys.DB_INDEX])
    prefix = keys.log_key(log_id)
    found = cursor.set_range(keys.log_offset_key(log_id + 1, 0))
    found = cursor.prev() if found else cursor.last()
    if not found or not cursor.key().startswith(prefix):
        return None
    offset = keys.U64_PAIR.unpack(cursor.key())[1]
    base, position, _ts = keys.INDEX_ROW.unpack(cursor.value())
    return offset, base, position


def _recover_log(
    store: LogStore, txn: Txn, info: LogInfo, full_scan: bool, removals: list[str]
) -> LogRecovery:
    fs = store.fs
    item = LogRecovery(info.name)
    raw = txn.get(keys.log_key(info.id), db=store.dbs[keys.DB_ENDS])
    if raw is None:
        item.problems.append("catalog entry without an end row")
        return item
    ends = Ends.unpack(raw)
    directory = store.log_dir(info.id)
    fs.makedirs(directory)
    for name in fs.listdir(directory):
        base = fmt.parse_segment_name(name)
        if base is not None and (base < ends.start_offset or base > ends.active_base):
            removals.append(os.path.join(directory, name))
    path = store.segment_path(info.id, ends.active_base)
    try:
        fd = fs.open_append(path)
    except FileNotFoundError:
        fd = fs.create(path)
        salt = fmt.new_salt()
        fs.pwrite(fd, fmt.encode_segment_header(ends.active_base, salt), 0)
        store.segment_salts[(info.id, ends.active_base)] = salt
        fs.fdatasync(fd)
        fs.fsync_dir(directory)
        if ends.next_offset != ends.active_base:
            item.problems.append(f"active segment {path} was missing")
    try:
        item.uncommitted_bytes_truncated = _zero_tail(fs, fd, ends.active_position)
        header = fmt.decode_segment_header(fs.pread(fd, fmt.SEGMENT_HEADER_BYTES, 0))
        if header is not None and header.read_version > fmt.READ_VERSION:
            raise UnsupportedFormat(
                f"segment {path}: read version {header.read_version} is newer than "
                f"{fmt.READ_VERSION} (upgrade tidelog)"
            )
        scan_from, expected = fmt.SEGMENT_HEADER_BYTES, ends.active_base
        last = _last_index_entry(store, txn, info.id)
        if (
            not full_scan
            and last is not None
            and last[1] == ends.active_base
            and ends.last_index_position != NO_INDEX
        ):
            expected, _, scan_from = last
        header_damaged = (
            header is None
            or header.base_offset != ends.active_base
            or header.read_version != fmt.READ_VERSION
        )
        if header_damaged:
            good_end, good_next = fmt.SEGMENT_HEADER_BYTES, ends.active_base
            problem = "segment header damaged"
        else:
            assert header is not None
            store.segment_salts[(info.id, ends.active_base)] = header.salt
            good_end, good_next, problem = _scan(
                fs, fd, scan_from, ends.active_position, expected, header.salt, info.name, path
            )
        # A damaged header is repaired even with no record to drop (an empty
        # segment whose header was lost), or later appends would be dropped.
        if (
            not header_damaged
            and good_next == ends.next_offset
            and good_end == ends.active_position
        ):
            return item
        # Committed records are damaged or missing: keep a copy, then cut back.
        broken = path + fmt.BROKEN_SUFFIX
        fs.copy_aside(path, broken)
        item.broken_copy = broken
        item.records_dropped = ends.next_offset - good_next
        item.bytes_dropped = ends.active_position - good_end
        item.problems.append(
            f"{problem} in {path} at byte {good_end} (offset {good_next}); "
            f"dropped {item.records_dropped} records, {item.bytes_dropped} bytes"
        )
        if header_damaged:
            fs.truncate(fd, 0)
            salt = fmt.new_salt()
            fs.pwrite(fd, fmt.encode_segment_header(ends.active_base, salt), 0)
            store.segment_salts[(info.id, ends.active_base)] = salt
        else:
            fs.truncate(fd, good_end)
        fs.fdatasync(fd)
        _drop_index_from(store, txn, info.id, good_next)
        last = _last_index_entry(store, txn, info.id)
        last_index_position = (
            last[2] if last is not None and last[1] == ends.active_base else NO_INDEX
        )
        txn.put(
            keys.log_key(info.id),
            ends._replace(
                next_offset=good_next,
                active_position=good_end,
                last_index_position=last_index_position,
            ).pack(),
            db=store.dbs[keys.DB_ENDS],
        )
        return item
    finally:
        fs.close(fd)


def _zero_tail(fs: Any, fd: int, committed: int) -> int:
    """Zero whatever is not zero past the committed end; returns the bytes zeroed.

    The pre-written zeros stay (docs/format.md, "Recovery rules"): only the
    span from the committed end to the last non-zero byte is rewritten.
    """
    size = fs.size(fd)
    position = committed
    last_nonzero = committed
    while position < size:
        data = fs.pread(fd, min(READ_CHUNK_BYTES, size - position), position)
        if not data:
            break
        kept = len(data.rstrip(b"\x00"))
        if kept:
            last_nonzero = position + kept
        position += len(data)
    if last_nonzero == committed:
        return 0
    zeros = last_nonzero - committed
    for at in range(committed, last_nonzero, READ_CHUNK_BYTES):
        fs.pwrite(fd, bytes(min(READ_CHUNK_BYTES, last_nonzero - at)), at)
    fs.fdatasync(fd)
    return zeros


def _scan(
    fs: Any, fd: int, position: int, limit: int, expected: int, salt: int, log: str, path: str
) -> tuple[int, int, str]:
    """Check batches in [position, limit): (good end, next offset, problem)."""
    try:
        for batch in scan_batches(fs, fd, position, limit, expected, salt, log=log, path=path):
            position = batch.position + batch.size
            expected = batch.base_offset + batch.count
    except Corruption as exc:
        check(exc.position is not None and exc.offset is not None, "scan: unplaced damage")
        return exc.position or 0, exc.offset or 0, exc.reason
    return position, expected, ""


def _drop_index_from(store: LogStore, txn: Txn, log_id: int, offset: int) -> None:
    cursor = txn.cursor(db=store.dbs[keys.DB_INDEX])
    if cursor.set_range(keys.log_offset_key(log_id, offset)):
        prefix = keys.log_key(log_id)
        while cursor.key().startswith(prefix):
            if not cursor.delete():
                break
    cursor = txn.cursor(db=store.dbs[keys.DB_TIMEINDEX])
    prefix = keys.log_key(log_id)
    if cursor.set_range(prefix):
        while cursor.key().startswith(prefix):
            if keys.U64_TRIPLE.unpack(cursor.key())[2] >= offset:
                if not cursor.delete():
                    break
            elif not cursor.next():
                break


def verify_log(store: LogStore, info: LogInfo) -> list[Corruption]:
    """Read every record of the log and check framing, CRCs and the index.

    Read-only. Returns the problems found (empty when the log is sound).
    """
    problems: list[Corruption] = []
    ends = store.ends(info)
    for name in sorted(store.fs.listdir(store.log_dir(info.id))):
        base = fmt.parse_segment_name(name)
        if base is None or not ends.start_offset <= base <= ends.active_base:
            continue
        path = os.path.join(store.log_dir(info.id), name)
        fd = store.fs.open_read(path)
        try:
            header = fmt.decode_segment_header(store.fs.pread(fd, fmt.SEGMENT_HEADER_BYTES, 0))
        finally:
            store.fs.close(fd)
        if header is None or header.base_offset != base or header.read_version != fmt.READ_VERSION:
            problems.append(
                Corruption("segment header damaged", log=info.name, path=path, position=0)
            )
    count = 0
    try:
        for _ in store.read(info, 0):
            count += 1
    except Corruption as exc:
        # A damaged header stops the read at byte 0 of that file: found above.
        if not any((p.path, p.position) == (exc.path, exc.position) for p in problems):
            problems.append(exc)
    with store.env.begin() as txn:
        prefix = keys.log_key(info.id)
        cursor = txn.cursor(db=store.dbs[keys.DB_INDEX])
        entries = []
        if cursor.set_range(prefix):
            for key, value in cursor:
                if not key.startswith(prefix):
                    break
                entries.append((keys.U64_PAIR.unpack(key)[1], keys.INDEX_ROW.unpack(value)))
    for offset, (base, position, _ts) in entries:
        path = store.segment_path(info.id, base)
        try:
            fd = store.fs.open_read(path)
        except FileNotFoundError:
            problems.append(Corruption("index names a missing segment", log=info.name, path=path))
            continue
        try:
            data = store.fs.pread(fd, fmt.BATCH_HEADER_BYTES, position)
        finally:
            store.fs.close(fd)
        if len(data) < fmt.BATCH_HEADER_BYTES or fmt.BATCH_HEADER.unpack(data)[4] != offset:
            problems.append(
                Corruption(
                    "index entry does not point at its record",
                    log=info.name,
                    path=path,
                    offset=offset,
                    position=position,
                )
            )
    return problems
