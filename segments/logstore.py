"""LogStore: a directory of named logs with LMDB as the commit point.

Thread-safety: one LogStore may be shared by any number of threads. Writes
are group-committed: concurrent `submit` calls run in one LMDB transaction,
with one sync of each segment written and one LMDB commit. Several processes
may open the same directory; LMDB's writer lock serialises their commits.
Do not use a LogStore in a child after fork(): open a new one there.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import lmdb

from . import format as fmt
from . import keys
from .errors import (
    AlreadyExists,
    Error,
    InvalidArgument,
    NotFound,
    ReadOnly,
    StoreBusy,
    StoreFailed,
    UnsupportedFormat,
)
from .fs import OsFileSystem
from .keys import Ends, Txn
from .writer import NO_INDEX, WriteContext

SyncMode = Literal["always", "interval", "never"]
SYNC_MODES = ("always", "interval", "never")
T = TypeVar("T")

MAP_SIZE_INITIAL = 1 << 40  # sparse: LMDB only grows the file as pages are used
MAX_DBS = 128
MAX_READERS = 2048
WRITER_FDS_MAX = 64
SYNC_THREADS = 8
SYNC_INTERVAL_MS_DEFAULT = 10
WRITE_LOCK_NAME = "write.lock"  # in index.lmdb/: taken around every write transaction
OPEN_LOCK_NAME = "open.lock"  # in index.lmdb/: shared by every writing handle while open
LOG_NAME_BYTES_MAX = 512


@dataclass(frozen=True)
class LogInfo:
    """A log's identity and configuration, as the catalog stores it."""

    id: int
    name: str
    segment_bytes_max: int = fmt.SEGMENT_BYTES_DEFAULT
    retention_ms: int | None = None
    retention_bytes: int | None = None
    created_ms: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "name": self.name,
                "segment_bytes_max": self.segment_bytes_max,
                "retention_ms": self.retention_ms,
                "retention_bytes": self.retention_bytes,
                "created_ms": self.created_ms,
                "meta": self.meta,
            },
            sort_keys=True,
        ).encode()

    @classmethod
    def from_json(cls, log_id: int, data: bytes) -> LogInfo:
        """Parse a catalog row; parsed once per distinct row (a fan-out reads
        the same rows on every publish). The result is shared: never mutate it."""
        return _parse_log_info(log_id, bytes(data))


@functools.lru_cache(maxsize=4096)
def _parse_log_info(log_id: int, data: bytes) -> LogInfo:
    raw = json.loads(data)
    return LogInfo(
        id=log_id,
        name=raw["name"],
        segment_bytes_max=raw["segment_bytes_max"],
        retention_ms=raw["retention_ms"],
        retention_bytes=raw["retention_bytes"],
        created_ms=raw["created_ms"],
        meta=raw.get("meta", {}),
    )


class _Request:
    __slots__ = ("op", "done", "result", "error")

    def __init__(self, op: Callable[[WriteContext], Any]) -> None:
        self.op = op
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None


class LogStore:
    """The log layer of one data directory. See the module docstring."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        sync: SyncMode = "always",
        readonly: bool = False,
        clock: Callable[[], float] = time.time,
        fs: OsFileSystem | None = None,
        sync_interval_ms: int = SYNC_INTERVAL_MS_DEFAULT,
        segment_bytes_default: int = fmt.SEGMENT_BYTES_DEFAULT,
    ) -> None:
        if sync not in SYNC_MODES:
            raise InvalidArgument(f"sync: {sync!r} is not one of {', '.join(SYNC_MODES)}")
        if sync_interval_ms <= 0:
            raise InvalidArgument("sync_interval_ms: must be positive")
        _check_segment_bytes(segment_bytes_default)
        self.path = os.fspath(path)
        self.sync_mode: SyncMode = sync
        self.clock = clock
        self.fs = fs or OsFileSystem()
        self.segment_bytes_default = segment_bytes_default
        self.logs_path = os.path.join(self.path, "logs")
        self._readonly = readonly
        self._failed: BaseException | None = None
        self._closed = False
        if readonly:
            if not os.path.isdir(os.path.join(self.path, "index.lmdb")):
                raise NotFound(f"store {self.path!r}: no tidelog store here")
        else:
            self.fs.makedirs(self.logs_path)
        self.env: Any = _acquire_env(self.path, readonly=readonly, sync=(sync == "always"))
        self.dbs: dict[bytes, Any] = {}
        self._db_lock = threading.Lock()
        self._lock_fd: int | None = None
        self._open_fd: int | None = None
        try:
            if not readonly:
                self._lock_fd = os.open(
                    os.path.join(self.path, "index.lmdb", WRITE_LOCK_NAME),
                    os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                    0o644,
                )
                # Held shared while open, so repair can tell it is alone (exclusive()).
                self._open_fd = os.open(
                    os.path.join(self.path, "index.lmdb", OPEN_LOCK_NAME),
                    os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                    0o644,
                )
                fcntl.flock(self._open_fd, fcntl.LOCK_SH)
            for name in keys.LOG_DATABASES:
                try:
                    self.dbs[name] = self.env.open_db(name, create=not readonly)
                except lmdb.NotFoundError:
                    raise NotFound(f"store {self.path!r}: incomplete (no {name!r})") from None
            self._check_format()
        except BaseException:
            self._close_lock()
            _release_env(self.env)
            raise
        self._cond = threading.Condition(threading.Lock())
        self._queue: list[_Request] = []
        self._leader_active = False
        # Counters for tests and `tidelog stats`: commits made by this handle
        # and the operations they carried (ops / commits = group size).
        self.commit_count = 0
        self.op_count = 0
        self.commit_observers: list[Callable[[float, int], None]] = []  # Store.observe_commits
        self._writer_fds: OrderedDict[int, tuple[int, int]] = OrderedDict()  # log id -> base, fd
        self._sync_pool: ThreadPoolExecutor | None = None
        self._unsynced: set[tuple[int, int]] = set()
        self._unsynced_lock = threading.Lock()
        self._info_cache: dict[str, LogInfo] = {}
        self.segment_salts: dict[tuple[int, int], int] = {}  # (log id, base) -> salt
        self._appended = threading.Condition(threading.Lock())
        self.recovery_report: Any = None
        if not readonly:
            from .recovery import recover

            try:
                with self.write_lock():
                    self.recovery_report = recover(self)
            except BaseException:
                self._close_lock()
                _release_env(self.env)
                raise
        self._syncer: threading.Thread | None = None
        self._stop_syncer = threading.Event()
        self._sync_interval_s = sync_interval_ms / 1000
        if sync == "interval" and not readonly:
            self._syncer = threading.Thread(
                target=self._sync_loop, name="tidelog-syncer", daemon=True
            )
            self._syncer.start()

    # -- format and state --------------------------------------------------

    def _close_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        if self._open_fd is not None:
            os.close(self._open_fd)
            self._open_fd = None

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Have the store to this handle alone (for repair), without waiting.

        Every writing handle holds a shared flock on `index.lmdb/open.lock`
        while open; this converts this handle's to exclusive, and raises
        StoreBusy if any other handle (another process, or another handle in
        this one) has the store open for writing. New writers wait for it.
        """
        self.check_writable()
        fd = self._open_fd
        if fd is None:
            raise ReadOnly(f"store {self.path!r}: opened read-only")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            # A failed conversion has dropped the shared lock: take it back.
            fcntl.flock(fd, fcntl.LOCK_SH)
            raise StoreBusy(
                f"store {self.path!r}: another process has it open for writing "
                "(stop its servers and writers, then run again)"
            ) from None
        try:
            with self.write_lock():
                yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_SH)

    def _check_format(self) -> None:
        with self.write_lock(), self.env.begin(write=not self._readonly) as txn:
            raw = txn.get(keys.META_FORMAT, db=self.dbs[keys.DB_META])
            if raw is None:
                if self._readonly:
                    raise NotFound(f"store {self.path!r}: not initialised")
                txn.put(
                    keys.META_FORMAT,
                    bytes([fmt.READ_VERSION, fmt.WRITE_VERSION]),
                    db=self.dbs[keys.DB_META],
                )
                return
        read_version, write_version = raw[0], raw[1]
        if read_version < fmt.READ_VERSION:
            raise UnsupportedFormat(
                f"store {self.path!r}: format {read_version}, this build reads format "
                f"{fmt.READ_VERSION} (run `tidelog migrate {self.path} NEW_DIR`, "
                'docs/format.md, "Format 1 stores")'
            )
        if read_version > fmt.READ_VERSION:
            raise UnsupportedFormat(
                f"store {self.path!r}: format read version {read_version} is newer than "
                f"this build's {fmt.READ_VERSION} (upgrade tidelog)"
            )
        if write_version > fmt.WRITE_VERSION:
            self._readonly = True

    @property
    def readonly(self) -> bool:
        return self._readonly

    def check_writable(self) -> None:
        if self._closed:
            raise Error("store: closed")
        if self._readonly:
            raise ReadOnly(f"store {self.path!r}: opened read-only")
        if self._failed is not None:
            raise StoreFailed(
                f"store {self.path!r}: writes stopped after an I/O failure: "
                f"{self._failed} (close and reopen the store)"
            )

    def open_databases(self, names: Iterable[bytes]) -> None:
        """Open (creating unless read-only) engine-owned named databases.

        Call once at open, outside any write transaction: a database handle
        created inside a transaction that later aborts would be invalid, and
        the group commit may abort and re-run a transaction.
        """
        with self._db_lock:
            for name in names:
                if name in self.dbs:
                    continue
                try:
                    self.dbs[name] = self.env.open_db(name, create=not self._readonly)
                except lmdb.NotFoundError:
                    # Read-only and never created: nothing of that kind exists yet.
                    self.dbs[name] = None

    def database(self, name: bytes) -> Any:
        """An engine-owned database opened by open_databases (None: never created)."""
        try:
            return self.dbs[name]
        except KeyError:
            raise Error(f"database {name!r}: not opened (add it to open_databases)") from None

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # -- paths and file handles ------------------------------------------------

    def log_dir(self, log_id: int) -> str:
        return os.path.join(self.logs_path, str(log_id))

    def segment_path(self, log_id: int, base: int) -> str:
        return os.path.join(self.logs_path, str(log_id), fmt.segment_name(base))

    def writer_fd(self, log_id: int, base: int, create: bool = False) -> int:
        """An open fd for the log's active segment (cached; commit leader only)."""
        cached = self._writer_fds.get(log_id)
        if cached is not None:
            if cached[0] == base and not create:
                self._writer_fds.move_to_end(log_id)
                return cached[1]
            self.fs.close(cached[1])
            del self._writer_fds[log_id]
        path = self.segment_path(log_id, base)
        if create:
            try:
                fd = self.fs.create(path)
            except FileExistsError:
                # Left by a roll that died before its commit: not committed data.
                fd = self.fs.open_append(path)
                self.fs.truncate(fd, 0)
        else:
            fd = self.fs.open_append(path)
        self._writer_fds[log_id] = (base, fd)
        while len(self._writer_fds) > WRITER_FDS_MAX:
            _, (_, old) = self._writer_fds.popitem(last=False)
            self._sync_before_close(old)
            self.fs.close(old)
        return fd

    def close_writer_fd(self, log_id: int, base: int) -> None:
        cached = self._writer_fds.get(log_id)
        if cached is not None and cached[0] == base:
            del self._writer_fds[log_id]
            self.fs.close(cached[1])

    def _sync_before_close(self, fd: int) -> None:
        if self.sync_mode == "interval":
            self.fs.fdatasync(fd)

    def fdatasync_all(self, fds: list[int]) -> None:
        """fdatasync every fd, in parallel when there are several; raises the first error.

        Flushes issued together let the file system share one journal commit,
        so a commit that wrote ten logs waits about as long as one that wrote one.
        """
        if len(fds) == 1:
            self.fs.fdatasync(fds[0])
            return
        if self._sync_pool is None:
            self._sync_pool = ThreadPoolExecutor(
                max_workers=SYNC_THREADS, thread_name_prefix="tidelog-fsync"
            )
        for _ in self._sync_pool.map(self.fs.fdatasync, fds):
            pass

    def mark_unsynced(self, log_id: int, base: int) -> None:
        # "never" too: store.sync() must find what it has to flush.
        if self.sync_mode != "always":
            with self._unsynced_lock:
                self._unsynced.add((log_id, base))

    def _sync_loop(self) -> None:
        while not self._stop_syncer.wait(self._sync_interval_s):
            try:
                self.sync()
            except Exception as exc:  # noqa: BLE001 - fail-stop, reported on next write
                self._failed = exc

    def sync(self) -> None:
        """Flush every unsynced segment, then LMDB, to stable storage."""
        with self._unsynced_lock:
            pending, self._unsynced = self._unsynced, set()
        for log_id, base in pending:
            try:
                fd = self.fs.open_read(self.segment_path(log_id, base))
            except FileNotFoundError:
                continue  # deleted by retention since
            try:
                self.fs.fdatasync(fd)
            finally:
                self.fs.close(fd)
        if not self._readonly:
            self.env.sync(True)

    # -- catalog ----------------------------------------------------------------

    def create_log(
        self,
        name: str,
        *,
        segment_bytes_max: int | None = None,
        retention_ms: int | None = None,
        retention_bytes: int | None = None,
        meta: dict[str, Any] | None = None,
        exist_ok: bool = False,
    ) -> LogInfo:
        """Create a named log (atomic; visible to other processes once it returns)."""
        _check_log_name(name)
        segment_bytes = (
            self.segment_bytes_default if segment_bytes_max is None else segment_bytes_max
        )
        _check_segment_bytes(segment_bytes)
        if retention_ms is not None and retention_ms < 0:
            raise InvalidArgument("retention_ms: must be >= 0 or None")
        if retention_bytes is not None and retention_bytes < 0:
            raise InvalidArgument("retention_bytes: must be >= 0 or None")

        def op(ctx: WriteContext) -> LogInfo:
            return self.create_log_in(
                ctx,
                name,
                segment_bytes_max=segment_bytes,
                retention_ms=retention_ms,
                retention_bytes=retention_bytes,
                meta=meta or {},
                exist_ok=exist_ok,
            )

        info = self.submit(op)
        self._info_cache[name] = info
        return info

    def create_log_in(
        self,
        ctx: WriteContext,
        name: str,
        *,
        segment_bytes_max: int,
        retention_ms: int | None,
        retention_bytes: int | None,
        meta: dict[str, Any],
        exist_ok: bool,
    ) -> LogInfo:
        """Create a log inside an engine transaction (see create_log)."""
        txn = ctx.txn
        encoded = name.encode()
        existing = txn.get(encoded, db=self.dbs[keys.DB_NAMES])
        if existing is not None:
            if not exist_ok:
                raise AlreadyExists(f"log {name!r}: already exists")
            return self._load_info(txn, keys.U64.unpack(existing)[0])
        raw_next = txn.get(keys.META_NEXT_LOG_ID, db=self.dbs[keys.DB_META])
        log_id = keys.U64.unpack(raw_next)[0] if raw_next else 1
        txn.put(keys.META_NEXT_LOG_ID, keys.U64.pack(log_id + 1), db=self.dbs[keys.DB_META])
        info = LogInfo(
            log_id, name, segment_bytes_max, retention_ms, retention_bytes, ctx.now_ms, meta
        )
        txn.put(encoded, keys.U64.pack(log_id), db=self.dbs[keys.DB_NAMES])
        txn.put(keys.log_key(log_id), info.to_json(), db=self.dbs[keys.DB_LOGS])
        base = 0
        txn.put(
            keys.log_key(log_id),
            Ends(0, 0, base, fmt.SEGMENT_HEADER_BYTES, 0, NO_INDEX).pack(),
            db=self.dbs[keys.DB_ENDS],
        )
        txn.put(
            keys.log_offset_key(log_id, base),
            keys.SegmentRow(0, 0, 0, 0, 0).pack(),
            db=self.dbs[keys.DB_SEGMENTS],
        )
        # The first segment file exists before the commit that names it.
        directory = self.log_dir(log_id)
        self.fs.makedirs(directory)
        fd = self.writer_fd(log_id, base, create=True)
        salt = fmt.new_salt()
        self.fs.pwrite(fd, fmt.encode_segment_header(base, salt), 0)
        self.segment_salts[(log_id, base)] = salt
        # In every mode, as a roll does: store.sync() flushes segment data but
        # not directories, so an unsynced new file could vanish in a power cut.
        self.fs.fdatasync(fd)
        self.fs.fsync_dir(directory)
        self.fs.fsync_dir(self.logs_path)
        return info

    def _load_info(self, txn: Txn, log_id: int) -> LogInfo:
        raw = txn.get(keys.log_key(log_id), db=self.dbs[keys.DB_LOGS])
        if raw is None:
            raise NotFound(f"log id {log_id}: not found")
        return LogInfo.from_json(log_id, raw)

    def get_log(self, name: str) -> LogInfo:
        """Look a log up by name; raises NotFound."""
        with self.env.begin() as txn:
            raw = txn.get(name.encode(), db=self.dbs[keys.DB_NAMES])
            if raw is None:
                raise NotFound(f"log {name!r}: not found")
            return self._load_info(txn, keys.U64.unpack(raw)[0])

    def list_logs(self) -> list[LogInfo]:
        with self.env.begin() as txn:
            return [
                LogInfo.from_json(keys.U64.unpack(k)[0], v)
                for k, v in txn.cursor(db=self.dbs[keys.DB_LOGS])
            ]

    def delete_log(self, name: str) -> None:
        """Delete a log and its files (atomic in the catalog; files go after)."""
        self.submit(lambda ctx: self.delete_log_in(ctx, name))
        self._info_cache.pop(name, None)

    def delete_log_in(self, ctx: WriteContext, name: str) -> None:
        txn = ctx.txn
        raw = txn.get(name.encode(), db=self.dbs[keys.DB_NAMES])
        if raw is None:
            raise NotFound(f"log {name!r}: not found")
        log_id = keys.U64.unpack(raw)[0]
        txn.delete(name.encode(), db=self.dbs[keys.DB_NAMES])
        txn.delete(keys.log_key(log_id), db=self.dbs[keys.DB_LOGS])
        txn.delete(keys.log_key(log_id), db=self.dbs[keys.DB_ENDS])
        for db_name in (keys.DB_SEGMENTS, keys.DB_INDEX, keys.DB_TIMEINDEX):
            delete_prefix(txn, self.dbs[db_name], keys.log_key(log_id))
        directory = self.log_dir(log_id)

        def remove() -> None:
            cached = self._writer_fds.pop(log_id, None)
            if cached is not None:
                self.fs.close(cached[1])
            self.fs.rmtree(directory)

        ctx.after_commit(remove)

    def ends(self, info: LogInfo) -> Ends:
        """The log's committed end, read in a short read transaction."""
        with self.env.begin() as txn:
            raw = txn.get(keys.log_key(info.id), db=self.dbs[keys.DB_ENDS])
        if raw is None:
            raise NotFound(f"log {info.name!r}: not found (deleted?)")
        return Ends.unpack(raw)

    # -- group commit -------------------------------------------------------------

    def submit(self, op: Callable[[WriteContext], T]) -> T:
        """Run `op` in a write transaction and commit it; returns op's result.

        Blocks until the commit is durable as the sync mode promises.
        Concurrent calls from other threads share one transaction and one
        sync (group commit). If `op` raises, the other operations of its group
        are re-run in a fresh transaction without it, so an op must only act
        through the context it is given. Ops must not call submit themselves.
        """
        self.check_writable()
        request = _Request(op)
        cond = self._cond
        with cond:
            self._queue.append(request)
            while not request.done and self._leader_active:
                cond.wait()
            if not request.done:
                self._leader_active = True
                batch, self._queue = self._queue, []
            else:
                batch = []
        if batch:
            try:
                self._run_group(batch)
            finally:
                with cond:
                    self._leader_active = False
                    cond.notify_all()
        if request.error is not None:
            raise request.error
        return request.result  # type: ignore[no-any-return]

    @contextlib.contextmanager
    def write_lock(self) -> Iterator[None]:
        """Hold the store's write lock file (flock) around an LMDB write transaction.

        LMDB's writer mutex is a robust pthread mutex: a writer killed while
        holding it is recovered by the next locker. But with two or more
        processes waiting on it, a waiter could sleep for ever after such a
        death (3 stalls in 150 rounds of three py-lmdb writers, one SIGKILLed;
        tests/test_concurrency.py met it too). A flock is released by the
        kernel when its holder dies, and with it at most one process at a
        time waits on LMDB's mutex, where recovery works (0 stalls in 150).
        Each handle has its own open file, so handles in one process take
        turns as well. Read-only handles never write and hold none.
        """
        fd = self._lock_fd
        if fd is None:
            yield
            return
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _run_group(self, batch: list[_Request]) -> None:
        pending = batch
        while pending:
            try:
                self.check_writable()
            except Error as exc:
                for request in pending:
                    request.error, request.done = exc, True
                return
            failed: _Request | None = None
            with self.write_lock():  # see write_lock: before LMDB's own
                started = time.perf_counter()
                txn = self.env.begin(write=True)
                try:
                    ctx = WriteContext(self, txn, self.now_ms())
                    results: list[Any] = []
                    for request in pending:
                        try:
                            results.append(request.op(ctx))
                        except Error as exc:
                            request.error = exc
                            failed = request
                            break
                        except (lmdb.MapFullError, OSError):
                            # An op's own I/O (create_log's fsyncs) fails the store
                            # like the commit's does: handled below.
                            raise
                        except Exception as exc:  # noqa: BLE001 - a bug in one op
                            request.error = exc
                            failed = request
                            break
                    if failed is not None:
                        txn.abort()
                        failed.done = True
                        pending = [r for r in pending if r is not failed]
                        continue
                    ctx.commit()
                except lmdb.MapFullError:
                    txn.abort()
                    self._grow_map()
                    continue
                except BaseException as exc:
                    txn.abort()
                    if isinstance(exc, OSError | lmdb.Error):
                        self._fail(exc)
                        exc = StoreFailed(f"store {self.path!r}: write failed: {exc}")
                    for request in pending:
                        request.error, request.done = exc, True
                    return
            self.commit_count += 1
            self.op_count += len(pending)
            for observe in self.commit_observers:
                observe(time.perf_counter() - started, len(pending))
            for request, result in zip(pending, results, strict=True):
                request.result, request.done = result, True
            self._notify_appended()
            return

    def _fail(self, exc: BaseException) -> None:
        self._failed = exc
        # The cached fds may point at pages in an unknown state: drop them.
        for _, fd in self._writer_fds.values():
            with contextlib.suppress(OSError):
                self.fs.close(fd)
        self._writer_fds.clear()

    def _grow_map(self) -> None:
        info = self.env.info()
        self.env.set_mapsize(info["map_size"] * 2)

    # -- waiting for appends ------------------------------------------------------

    def _notify_appended(self) -> None:
        with self._appended:
            self._appended.notify_all()

    def wait_for_append(self, timeout: float) -> None:
        """Block until this process commits an append, or `timeout` seconds."""
        with self._appended:
            self._appended.wait(timeout)

    # -- reads ------------------------------------------------------------------------

    def read(
        self, info: LogInfo, start_offset: int = 0, stop_offset: int | None = None
    ) -> Iterator[fmt.Record]:
        from .reader import read_records

        return read_records(self, info, start_offset, stop_offset)

    # -- lifecycle --------------------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        self._stop_syncer.set()
        if self._syncer is not None:
            self._syncer.join()
        with self._cond:
            while self._leader_active:
                self._cond.wait()
            if self.sync_mode == "interval" and self._failed is None and not self._readonly:
                with contextlib.suppress(OSError):
                    self.sync()
            for _, fd in self._writer_fds.values():
                self.fs.close(fd)
            self._writer_fds.clear()
            self._closed = True
        if self._sync_pool is not None:
            self._sync_pool.shutdown()
        self._close_lock()
        _release_env(self.env)


class _SharedEnv:
    __slots__ = ("env", "users", "sync", "readonly")

    def __init__(self, env: Any, sync: bool, readonly: bool) -> None:
        self.env, self.users, self.sync, self.readonly = env, 1, sync, readonly


# LMDB forbids opening one environment twice in a process (its locks are
# fcntl locks, owned by the process, so a second open shares them and closing
# it drops them), and py-lmdb refuses. Handles on one directory in one process
# therefore share one Environment; the last close closes it. Keyed by process
# (a child after fork opens its own) and by the data file's identity, as
# py-lmdb does, so a store deleted and re-created at the same path is new.
_shared_envs: dict[tuple[int, int, int], _SharedEnv] = {}
_shared_envs_lock = threading.Lock()


def _env_identity(env_path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(os.path.join(env_path, "data.mdb"))
    except FileNotFoundError:
        return None
    return os.getpid(), st.st_dev, st.st_ino


def _acquire_env(path: str, *, readonly: bool, sync: bool) -> Any:
    """The store's LMDB environment, shared with this process's other handles on it."""
    env_path = os.path.join(path, "index.lmdb")
    with _shared_envs_lock:
        identity = _env_identity(env_path)
        shared = _shared_envs.get(identity) if identity is not None else None
        if shared is not None:
            # A shared environment keeps the settings of the handle that opened it.
            if not readonly and (shared.readonly or (sync and not shared.sync)):
                held = "read-only" if shared.readonly else "without sync='always'"
                raise InvalidArgument(
                    f"store {path!r}: already open in this process {held} (open it with "
                    "the same settings, or close the other handle first)"
                )
            shared.users += 1
            return shared.env
        env = lmdb.open(
            env_path,
            map_size=MAP_SIZE_INITIAL,
            max_dbs=MAX_DBS,
            max_readers=MAX_READERS,
            subdir=True,
            readonly=readonly,
            sync=sync,
            metasync=sync,
            readahead=False,
            lock=True,
        )
        identity = _env_identity(env_path)
        if identity is not None:
            _shared_envs[identity] = _SharedEnv(env, sync, readonly)
        return env


def _release_env(env: Any) -> None:
    with _shared_envs_lock:
        for identity, shared in _shared_envs.items():
            if shared.env is env:
                shared.users -= 1
                if shared.users:
                    return
                del _shared_envs[identity]
                break
        env.close()


def delete_prefix(txn: Txn, db: Any, prefix: bytes) -> None:
    cursor = txn.cursor(db=db)
    if not cursor.set_range(prefix):
        return
    while cursor.key().startswith(prefix):
        if not cursor.delete():
            break


def _check_log_name(name: str) -> None:
    if not isinstance(name, str) or not name:
        raise InvalidArgument("log name: must be a non-empty string")
    if len(name.encode()) > LOG_NAME_BYTES_MAX:
        raise InvalidArgument(f"log name: over {LOG_NAME_BYTES_MAX} bytes")


def _check_segment_bytes(value: int) -> None:
    if not isinstance(value, int) or value < fmt.SEGMENT_BYTES_MIN or value > (1 << 32):
        raise InvalidArgument(
            f"segment_bytes_max: {value!r} is outside {fmt.SEGMENT_BYTES_MIN}..{1 << 32}"
        )
