"""`tidelog migrate SRC DEST`: copy a format 1 store into a new format 2 one.

docs/format.md, "Format 1 stores", is the decision. The source is only
read, under its write lock (so no format 1 writer commits meanwhile); the
destination is made from scratch:

1. LMDB is copied whole (`Environment.copy`, compacted): catalog, ends,
   queue leases, consumer checkpoints, dedup ids and every other engine row
   keep their values, since none of them names a byte position;
2. every segment is rewritten under the same base offset, runs of records
   with the same timestamp and flags becoming one batch each, and fsynced;
3. one LMDB commit sets each log's committed position in its new active
   segment, drops the derived rows and sets the format to 2; the store is
   then opened and its indexes rebuilt (rebuild.py);
4. other files of the data directory (stored objects) are copied as they are.

An interrupted migration leaves a destination whose format is still 1 or
whose indexes are missing: delete it and run again.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import lmdb

from . import format as fmt
from . import format_v1, keys
from .errors import Corruption, InvalidArgument, NotFound, StoreBusy
from .format import FrameError, Record
from .fs import OsFileSystem
from .keys import Ends
from .logstore import MAX_DBS, WRITE_LOCK_NAME, LogInfo, LogStore, delete_prefix
from .rebuild import rebuild_indexes

CHUNK_BYTES = 1 << 20
_FS = OsFileSystem()


@dataclass
class MigrateReport:
    """What `migrate` copied."""

    source: str
    dest: str
    logs: int = 0
    segments: int = 0
    records: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    other_files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _v1_records(path: str, limit: int, log: str) -> Iterator[Record]:
    """The records of a format 1 segment's first `limit` bytes, checked."""
    with open(path, "rb") as handle:
        header = fmt.decode_segment_header(handle.read(fmt.SEGMENT_HEADER_BYTES))
        if header is None or header.read_version != format_v1.FORMAT_VERSION:
            raise Corruption("format 1 segment header damaged", log=log, path=path, position=0)
        position = fmt.SEGMENT_HEADER_BYTES
        pending = b""
        while position < limit:
            data = pending + handle.read(min(CHUNK_BYTES, limit - position))
            if len(data) == len(pending):
                raise Corruption("segment shorter than its committed length", log=log, path=path)
            start = position - len(pending)
            try:
                records, used = format_v1.decode_records(data, 0, len(data), start)
            except FrameError as exc:
                raise Corruption(
                    f"damaged record: {exc.reason} (run format 1 `tidelog repair` first)",
                    log=log,
                    path=path,
                    position=exc.position,
                ) from None
            yield from records
            pending = data[used:]
            position = start + len(data)
        if pending:
            raise Corruption("segment ends inside a record", log=log, path=path, position=limit)


def _batches(records: Iterator[Record], salt: int) -> Iterator[tuple[bytes, int]]:
    """(encoded batch, records in it): runs of one timestamp and flags, cut at the target."""
    run: list[Record] = []
    size = 0

    def flush() -> tuple[bytes, int]:
        keys_ = [r.key for r in run] if any(r.key for r in run) else None
        headers = [r.headers for r in run] if any(r.headers for r in run) else None
        first = run[0]
        values = [r.value for r in run]
        batch = fmt.encode_batch(
            salt, first.offset, first.timestamp_ms, first.flags, values, keys_, headers
        )
        return batch, len(run)

    for record in records:
        bytes_ = len(record.key) + len(record.headers) + len(record.value) + 12
        if run and (
            record.timestamp_ms != run[0].timestamp_ms
            or record.flags != run[0].flags
            or size + bytes_ > fmt.BATCH_TARGET_BYTES
        ):
            yield flush()
            run, size = [], 0
        run.append(record)
        size += bytes_
    if run:
        yield flush()


def _check_source(env: Any, path: str) -> None:
    meta = env.open_db(keys.DB_META, create=False)
    with env.begin() as txn:
        raw = txn.get(keys.META_FORMAT, db=meta)
    if raw is None:
        raise NotFound(f"store {path!r}: not initialised")
    if raw[0] != format_v1.FORMAT_VERSION:
        raise InvalidArgument(
            f"store {path!r}: format {raw[0]}, not 1 (only format 1 stores are migrated)"
        )


def migrate(source: str, dest: str, progress: Callable[[str], None] | None = None) -> MigrateReport:
    """Copy the format 1 store at `source` into a new format 2 store at `dest`.

    Blocking; reads `source` only. Raises NotFound if `source` is no store,
    InvalidArgument if it is not of format 1 or `dest` exists and is not an
    empty directory, StoreBusy if a writer holds the source's write lock,
    Corruption if a source record is damaged (repair it with format 1 tidelog
    first, or copy what is readable with `dump`).
    """
    source, dest = os.path.abspath(source), os.path.abspath(dest)
    report = MigrateReport(source, dest)
    env_path = os.path.join(source, "index.lmdb")
    if not os.path.isdir(env_path):
        raise NotFound(f"store {source!r}: no tidelog store here")
    if os.path.exists(dest) and (not os.path.isdir(dest) or os.listdir(dest)):
        raise InvalidArgument(f"migrate: {dest!r} exists and is not an empty directory")
    lock_fd = os.open(os.path.join(env_path, WRITE_LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreBusy(
                f"store {source!r}: a writer is committing (stop its writers and run again)"
            ) from None
        env = lmdb.open(env_path, max_dbs=MAX_DBS, readonly=True, lock=True, subdir=True)
        try:
            _check_source(env, source)
            os.makedirs(os.path.join(dest, "index.lmdb"), exist_ok=True)
            env.copy(os.path.join(dest, "index.lmdb"), compact=True)
        finally:
            env.close()
        _copy_segments(source, dest, report, progress)
        for name in sorted(os.listdir(source)):
            if name not in ("index.lmdb", "logs"):
                src = os.path.join(source, name)
                (shutil.copytree if os.path.isdir(src) else shutil.copy2)(
                    src, os.path.join(dest, name)
                )
                report.other_files.append(name)
    finally:
        os.close(lock_fd)
    store = LogStore(dest)
    try:
        for info in store.list_logs():
            store.submit(partial(rebuild_indexes, info=info))
    finally:
        store.close()
    _FS.fsync_dir(dest)
    return report


def _copy_segments(
    source: str, dest: str, report: MigrateReport, progress: Callable[[str], None] | None
) -> None:
    """Rewrite every log's segments into `dest`, then commit the new ends and format."""
    env = lmdb.open(os.path.join(dest, "index.lmdb"), max_dbs=MAX_DBS, subdir=True)
    try:
        dbs = {name: env.open_db(name) for name in keys.LOG_DATABASES}
        with env.begin() as txn:
            logs = []
            for key, value in txn.cursor(db=dbs[keys.DB_LOGS]):
                info = LogInfo.from_json(keys.U64.unpack(key)[0], value)
                raw = txn.get(key, db=dbs[keys.DB_ENDS])
                if raw is None:
                    raise Corruption("catalog entry without an end row", log=info.name)
                logs.append((info, Ends.unpack(raw)))
            rows = {
                bytes(k): keys.SegmentRow.unpack(bytes(v))
                for k, v in txn.cursor(db=dbs[keys.DB_SEGMENTS])
            }
        new_ends: list[tuple[int, Ends]] = []
        for info, ends in logs:
            if progress is not None:
                progress(info.name)
            report.logs += 1
            src_dir = os.path.join(source, "logs", str(info.id))
            dst_dir = os.path.join(dest, "logs", str(info.id))
            os.makedirs(dst_dir, exist_ok=True)
            bases = sorted(
                base
                for name in os.listdir(src_dir)
                if (base := fmt.parse_segment_name(name)) is not None
                and ends.start_offset <= base <= ends.active_base
            )
            active_size = fmt.SEGMENT_HEADER_BYTES
            for base in bases:
                path = os.path.join(src_dir, fmt.segment_name(base))
                row = rows.get(keys.log_offset_key(info.id, base))
                if base == ends.active_base:
                    limit = ends.active_position
                elif row is not None and row.sealed and row.size:
                    limit = row.size
                else:
                    limit = os.path.getsize(path)
                salt = fmt.new_salt()
                out = os.path.join(dst_dir, fmt.segment_name(base))
                with open(out, "xb") as handle:
                    handle.write(fmt.encode_segment_header(base, salt))
                    size = fmt.SEGMENT_HEADER_BYTES
                    for batch, count in _batches(_v1_records(path, limit, info.name), salt):
                        handle.write(batch)
                        size += len(batch)
                        report.records += count
                    handle.flush()
                    os.fsync(handle.fileno())
                report.segments += 1
                report.bytes_before += limit
                report.bytes_after += size
                if base == ends.active_base:
                    active_size = size
            if ends.active_base not in bases:
                out = os.path.join(dst_dir, fmt.segment_name(ends.active_base))
                with open(out, "xb") as handle:
                    handle.write(fmt.encode_segment_header(ends.active_base, fmt.new_salt()))
                    os.fsync(handle.fileno())
            _FS.fsync_dir(dst_dir)
            new_ends.append(
                (info.id, ends._replace(active_position=active_size, last_index_position=0))
            )
        _FS.fsync_dir(os.path.join(dest, "logs"))
        with env.begin(write=True) as txn:
            for log_id, ends in new_ends:
                txn.put(keys.log_key(log_id), ends.pack(), db=dbs[keys.DB_ENDS])
                for name in (keys.DB_SEGMENTS, keys.DB_INDEX, keys.DB_TIMEINDEX):
                    delete_prefix(txn, dbs[name], keys.log_key(log_id))
            txn.put(
                keys.META_FORMAT, bytes([fmt.READ_VERSION, fmt.WRITE_VERSION]), db=dbs[keys.DB_META]
            )
        env.sync(True)
    finally:
        env.close()
