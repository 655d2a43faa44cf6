"""LogStore: a directory of named logs, committed through one store-wide journal.

Thread-safety: one LogStore may be shared by any number of threads. Writes
are group-committed: concurrent `submit` calls (and `submit_async` calls
from event loops) run in one LMDB transaction, written as one journal entry
with one flush. Several processes may open the same directory; the write
lock serialises their commits. docs/guarantees.md, "The commit point", is
the protocol. Do not use a LogStore in a child after fork(): open a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import json
import os
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import lmdb

from . import format as fmt
from . import journal as jnl
from . import keys
from .errors import (
    AlreadyExists,
    Error,
    InvalidArgument,
    NotFound,
    PermissionDenied,
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
    __slots__ = ("op", "done", "result", "error", "future")

    def __init__(
        self, op: Callable[[WriteContext], Any], future: asyncio.Future[Any] | None = None
    ) -> None:
        self.op = op
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None
        self.future = future  # set by submit_async: the awaiting coroutine's


class _JournalFull(Exception):
    """A commit's entry does not fit in the journal's free space (see _commit_group)."""


CHECKPOINT_AT = 4  # a background checkpoint once the journal is 1/4 full
CHECKPOINT_INLINE_AT = 4 / 3  # and one before the next commit at 3/4
CHECKPOINT_POLL_S = 0.05


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
        try:
            if readonly:
                if not _is_directory(os.path.join(self.path, "index.lmdb")):
                    raise NotFound(f"store {self.path!r}: no tidelog store here")
            else:
                self.fs.makedirs(self.logs_path)
            # Every handle holds live.lock shared; the one that gets it exclusively is
            # the only handle, and recovers (guarantees.md, "After kill -9 ...").
            self._live_fd, first = _take_live_lock(self.path, readonly)
        except (PermissionError, lmdb.ReadonlyError) as exc:
            raise _access_error(self.path, readonly, exc) from None
        self.journal: jnl.Journal | None = None
        if first and not readonly:
            try:
                _restore_checkpoint(self.fs, self.path)
            except BaseException:
                os.close(self._live_fd)
                raise
        try:
            self.env: Any = _acquire_env(self.path, readonly=readonly, sync=False)
        except (PermissionError, lmdb.ReadonlyError) as exc:
            os.close(self._live_fd)
            raise _access_error(self.path, readonly, exc) from None
        # False when the store is read where this user cannot write LMDB's lock
        # file (a read-only copy): reads then take no reader lock (_acquire_env).
        self.reader_lock = _env_locked(self.env)
        if not readonly:
            self.fs.unflushed(os.path.join(self.path, "index.lmdb", "data.mdb"))
        self.dbs: dict[bytes, Any] = {}
        self._db_names: dict[Any, bytes] = {}
        self._db_lock = threading.Lock()
        self._lock_fd: int | None = None
        self._open_fd: int | None = None
        try:
            if not readonly:
                try:
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
                except PermissionError as exc:
                    raise _access_error(self.path, readonly, exc) from None
                fcntl.flock(self._open_fd, fcntl.LOCK_SH)
            for name in keys.LOG_DATABASES:
                try:
                    self.dbs[name] = self.env.open_db(name, create=not readonly)
                except lmdb.NotFoundError:
                    raise NotFound(f"store {self.path!r}: incomplete (no {name!r})") from None
                self._db_names[self.dbs[name]] = name
            self._check_format()
        except BaseException:
            self._close_lock()
            _release_env(self.env)
            os.close(self._live_fd)
            raise
        self._cond = threading.Condition(threading.Lock())
        self._queue: list[_Request] = []
        self._leader_active = False
        self._kick_pending = False  # submit_async: a _kick is scheduled on an event loop
        # Counters for tests and `tidelog stats`: commits made by this handle
        # and the operations they carried (ops / commits = group size).
        self.commit_count = 0
        self.op_count = 0
        self.commit_observers: list[Callable[[float, int], None]] = []  # Store.observe_commits
        self._writer_fds: OrderedDict[int, tuple[int, int]] = OrderedDict()  # log id -> base, fd
        self._sync_pool: ThreadPoolExecutor | None = None
        self._commit_pool: ThreadPoolExecutor | None = None
        self._info_cache: dict[str, LogInfo] = {}
        self.segment_salts: dict[tuple[int, int], int] = {}  # (log id, base) -> salt
        self._appended = threading.Condition(threading.Lock())
        self.recovery_report: Any = None
        self.checkpoint_count = 0
        self.journal_entries_replayed = 0  # by this handle's recovery
        self._journal_dirty = False  # "interval"/"never": entries not yet flushed
        if not readonly:
            from .recovery import recover

            try:
                self.journal = jnl.Journal(self.fs, self.path)
                with self.write_lock():
                    replayed = self._replay_journal() if first else 0
                    before = self.env.info()["last_txnid"]
                    self.recovery_report = recover(self)
                    self.journal_entries_replayed = replayed
                    changed = self.env.info()["last_txnid"] != before
                    if first or changed or not os.path.exists(self._checkpoint_path()):
                        self._checkpoint_locked()
            except BaseException:
                if self.journal is not None:
                    self.journal.close()
                self._close_lock()
                _release_env(self.env)
                os.close(self._live_fd)
                raise
        if first:
            fcntl.flock(self._live_fd, fcntl.LOCK_SH)  # recovered: let other handles in
        self._syncer: threading.Thread | None = None
        self._stop_syncer = threading.Event()
        self._sync_interval_s = sync_interval_ms / 1000
        if sync == "interval" and not readonly:
            self._syncer = threading.Thread(
                target=self._sync_loop, name="tidelog-syncer", daemon=True
            )
            self._syncer.start()
        self._checkpointer: threading.Thread | None = None
        if not readonly:
            self._checkpointer = threading.Thread(
                target=self._checkpoint_loop, name="tidelog-checkpointer", daemon=True
            )
            self._checkpointer.start()

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
                else:
                    self._db_names[self.dbs[name]] = name

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
            self.fs.close(old)
        return fd

    def close_writer_fd(self, log_id: int, base: int) -> None:
        cached = self._writer_fds.get(log_id)
        if cached is not None and cached[0] == base:
            del self._writer_fds[log_id]
            self.fs.close(cached[1])

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

    def _sync_loop(self) -> None:
        while not self._stop_syncer.wait(self._sync_interval_s):
            try:
                self.sync()
            except Exception as exc:  # noqa: BLE001 - fail-stop, reported on next write
                self._failed = exc

    def sync(self) -> None:
        """Flush the journal: every commit made so far survives a power cut."""
        if self._readonly or self.journal is None:
            return
        if self._journal_dirty:
            self._journal_dirty = False
            self.journal.flush()

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
        ctx.flush_always = True  # catalog changes are durable in every mode
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
        ctx.flush_always = True  # the directory goes right after the commit
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
        Concurrent calls from other threads share one transaction, one journal
        entry and one flush (group commit: the first caller to find no commit
        running leads one for everything queued). If `op` raises, the other
        operations of its group are re-run in a fresh transaction without it,
        so an op must only act through the context it is given. Ops must not
        call submit themselves.
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
                    # Coroutines queued meanwhile have no thread to lead for them:
                    # the committer takes over (it also serves queued threads).
                    hand_over = any(r.future is not None for r in self._queue)
                    self._leader_active = hand_over
                    cond.notify_all()
                if hand_over:
                    self._committer().submit(self._lead)
        if request.error is not None:
            raise request.error
        return request.result  # type: ignore[no-any-return]

    async def submit_async(self, op: Callable[[WriteContext], T]) -> T:
        """`submit` for coroutines: the commit runs on a committer thread.

        Operations submitted by many tasks of one event loop (and by threads)
        join the same groups; the event loop is never blocked by a flush.
        Thread-safe like submit; the result or error is the same.
        """
        self.check_writable()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        request = _Request(op, future)
        with self._cond:
            self._queue.append(request)
            kick = not self._leader_active and not self._kick_pending
            if kick:
                self._kick_pending = True
        if kick:
            # Start the committer after the tasks already runnable in this turn of
            # the loop have queued their requests too: one group for all of them.
            loop.call_soon(self._kick)
        await future
        if request.error is not None:
            raise request.error
        return request.result  # type: ignore[no-any-return]

    def _kick(self) -> None:
        with self._cond:
            self._kick_pending = False
            if self._leader_active or not self._queue:
                return  # a leader is running: it takes the queue when its group ends
            self._leader_active = True
        self._committer().submit(self._lead)

    def _committer(self) -> ThreadPoolExecutor:
        if self._commit_pool is None:
            with self._db_lock:
                if self._commit_pool is None:
                    self._commit_pool = ThreadPoolExecutor(
                        max_workers=1, thread_name_prefix="tidelog-committer"
                    )
        return self._commit_pool

    def _lead(self) -> None:
        """Lead commits on the committer thread while requests keep arriving."""
        cond = self._cond
        while True:
            with cond:
                batch, self._queue = self._queue, []
                if not batch:
                    self._leader_active = False
                    cond.notify_all()
                    return
            try:
                self._run_group(batch)
            except BaseException as exc:  # noqa: BLE001 - never leave a coroutine waiting
                for request in batch:
                    if not request.done:
                        request.error, request.done = exc, True
                _wake_coroutines(batch)
            with cond:
                cond.notify_all()  # threads whose requests this group carried

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
        try:
            self._run_group_inner(batch)
        finally:
            _wake_coroutines(batch)

    def _run_group_inner(self, batch: list[_Request]) -> None:
        pending = batch
        journal_reset = False
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
                try:
                    row = self._journal_row()
                    if row.position * CHECKPOINT_INLINE_AT > self._journal().capacity:
                        self._checkpoint_locked()
                except BaseException as exc:
                    self._fail_requests(pending, exc)
                    return
                raw = self.env.begin(write=True)
                try:
                    txn = jnl.RecordingTxn(raw, self._db_names, [])
                    ctx = WriteContext(self, txn, self.now_ms())
                    ctx.slow_commit = journal_reset
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
                        raw.abort()
                        failed.done = True
                        pending = [r for r in pending if r is not failed]
                        continue
                    ctx.commit()
                except _JournalFull:
                    # Too big for what is left of this cycle: checkpoint (the journal
                    # restarts empty) and run the group again; a second time it takes
                    # the slow path (WriteContext.slow_commit).
                    raw.abort()
                    try:
                        self._checkpoint_locked()
                    except BaseException as exc:
                        self._fail_requests(pending, exc)
                        return
                    journal_reset = True
                    continue
                except lmdb.MapFullError:
                    raw.abort()
                    self._grow_map()
                    continue
                except BaseException as exc:
                    raw.abort()
                    self._fail_requests(pending, exc)
                    return
            self.commit_count += 1
            self.op_count += len(pending)
            for observe in self.commit_observers:
                observe(time.perf_counter() - started, len(pending))
            for request, result in zip(pending, results, strict=True):
                request.result, request.done = result, True
            self._notify_appended()
            return

    def _fail_requests(self, pending: list[_Request], exc: BaseException) -> None:
        if isinstance(exc, OSError | lmdb.Error):
            self._fail(exc)
            exc = StoreFailed(f"store {self.path!r}: write failed: {exc}")
        for request in pending:
            request.error, request.done = exc, True

    # -- the journal (docs/guarantees.md, "The commit point") ---------------------

    def _journal(self) -> jnl.Journal:
        if self.journal is None:
            raise ReadOnly(f"store {self.path!r}: opened read-only")
        return self.journal

    def _journal_row(self, txn: Txn | None = None) -> jnl.JournalRow:
        if txn is None:
            with self.env.begin() as read:
                raw = read.get(jnl.META_JOURNAL, db=self.dbs[keys.DB_META])
        else:
            raw = txn.get(jnl.META_JOURNAL, db=self.dbs[keys.DB_META])
        if raw is None:
            return jnl.JournalRow(1, 1, 0, 0)
        return jnl.JournalRow.unpack(raw)

    def commit_writes(
        self, ctx: WriteContext, writes: list[tuple[int, int, int, bytes, bool]]
    ) -> None:
        """Commit a WriteContext: one journal entry, one flush, then segments and LMDB.

        `writes` are (log id, base, position, bytes, new file) for each segment
        write of the commit; its LMDB writes were recorded by ctx.txn.
        Called by WriteContext.commit with the write lock held.
        """
        txn: jnl.RecordingTxn = ctx.txn
        raw = txn.raw
        if not writes and not txn.ops:
            raw.commit()  # nothing changed: no entry, no flush
            return
        journal = self._journal()
        row = self._journal_row(raw)
        parts = [jnl.segment_op(log_id, base, pos, data) for log_id, base, pos, data, _ in writes]
        parts.extend(txn.ops)
        payload = b"".join(parts)
        if not journal.fits(row, len(payload)):
            if not ctx.slow_commit:
                raise _JournalFull
            self._commit_in_place(raw, writes)
            return
        end = journal.write(row, payload)
        try:
            if self.sync_mode == "always" or ctx.flush_always or any(w[4] for w in writes):
                # The one device flush of the commit. In the other modes a commit that
                # rolls a segment flushes too: sealed segments are durable in every mode.
                journal.flush()
                self._journal_dirty = False
            else:
                self._journal_dirty = True
        except BaseException:
            # The call fails: unmake its entry, so that no recovery without a power
            # cut commits it (after one, it may or may not be there; guarantees.md).
            with contextlib.suppress(OSError):
                journal.erase(row)
            raise
        self._write_segments(writes)
        row.next_lsn += 1
        row.position = end
        raw.put(jnl.META_JOURNAL, row.pack(), db=self.dbs[keys.DB_META])
        raw.commit()

    def _write_segments(self, writes: list[tuple[int, int, int, bytes, bool]]) -> None:
        fs = self.fs
        for log_id, base, position, data, new in writes:
            fd = self.writer_fd(log_id, base, create=new)
            if data:
                # Over the zeros or a dead writer's garbage past the committed end.
                fs.pwrite(fd, data, position)
            elif fs.size(fd) > position:
                fs.truncate(fd, position)  # a seal (Writer.commit)

    def _commit_in_place(self, raw: Txn, writes: list[tuple[int, int, int, bytes, bool]]) -> None:
        """The slow path for a commit bigger than the journal: flush in place, checkpoint."""
        self._write_segments(writes)
        for log_id, base in dict.fromkeys((w[0], w[1]) for w in writes):
            fd = self.fs.open_read(self.segment_path(log_id, base))
            try:
                self.fs.fdatasync(fd)
            finally:
                self.fs.close(fd)
        for log_id in {w[0] for w in writes if w[4]}:
            self.fs.fsync_dir(self.log_dir(log_id))
        raw.commit()
        self._checkpoint_locked()

    def _checkpoint_path(self) -> str:
        return os.path.join(self.path, jnl.CHECKPOINT_NAME)

    def checkpoint(self) -> None:
        """Flush what the journal covers, copy LMDB to checkpoint.mdb, restart the journal.

        Runs off the acknowledgement path (a background thread calls it when
        the journal is a quarter full). Blocks this store's commits meanwhile.
        """
        self.check_writable()
        cond = self._cond
        with cond:
            while self._leader_active:
                cond.wait()
            self._leader_active = True
        try:
            with self.write_lock():
                self._checkpoint_locked()
        finally:
            with cond:
                self._leader_active = False
                cond.notify_all()

    def _checkpoint_locked(self) -> None:
        journal = self._journal()
        fs = self.fs
        row = self._journal_row()
        dirs: set[str] = set()
        for log_id, base in sorted(jnl.segment_files(journal, row)):
            try:
                fd = fs.open_read(self.segment_path(log_id, base))
            except FileNotFoundError:
                continue  # deleted since (retention, delete_log)
            try:
                fs.fdatasync(fd)
            finally:
                fs.close(fd)
            dirs.add(self.log_dir(log_id))
        for directory in sorted(dirs):
            with contextlib.suppress(FileNotFoundError):
                fs.fsync_dir(directory)
        if dirs:
            fs.fsync_dir(self.logs_path)
        # The next cycle starts at position 0 with a new salt; set it before the
        # copy so that the copy names where replay starts.
        fresh = jnl.JournalRow(row.next_lsn, row.next_lsn, 0, jnl.new_salt())
        with self.env.begin(write=True) as txn:
            txn.put(jnl.META_JOURNAL, fresh.pack(), db=self.dbs[keys.DB_META])
        final = self._checkpoint_path()
        temp = final + ".tmp"
        fs.unlink(temp)
        fd = fs.create(temp)
        try:
            self.env.copyfd(fd)
            fs.fdatasync(fd)
        finally:
            fs.close(fd)
        fs.rename(temp, final)
        fs.fsync_dir(self.path)
        self.checkpoint_count += 1

    def _checkpoint_if_last(self) -> None:
        """At close, the last handle on the store checkpoints: the next open replays nothing.

        Not in "never" mode, which flushes only when asked (store.sync()).
        """
        if self._readonly or self._failed is not None or self.journal is None:
            return
        if self.sync_mode == "never":
            return
        try:
            fcntl.flock(self._live_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # other handles live on (the failed conversion dropped ours: closing)
        with contextlib.suppress(OSError, Error), self.write_lock():
            if self._journal_row().position > 0:
                self._checkpoint_locked()

    def _checkpoint_loop(self) -> None:
        while not self._stop_syncer.wait(CHECKPOINT_POLL_S):
            if self._failed is not None or self.journal is None:
                continue
            try:
                if self._journal_row().position * CHECKPOINT_AT > self.journal.capacity:
                    self.checkpoint()
            except Error:
                continue  # closed or failed: the next write reports it
            except Exception as exc:  # noqa: BLE001 - fail-stop, reported on next write
                self._fail(exc)

    def _replay_journal(self) -> int:
        """Apply the journal's entries past the restored checkpoint; returns how many.

        Idempotent: bytes to fixed positions, seals cut at fixed sizes,
        absolute puts and deletes.
        """
        journal = self._journal()
        fs = self.fs
        count_ = 0
        with self.env.begin(write=True) as txn:
            row = self._journal_row(txn)
            dbs: dict[bytes, Any] = {b"": None}
            fds: dict[tuple[int, int], int] = {}
            try:
                for _lsn, payload, end in journal.entries(row, row.position):
                    for tag, target, key, value in jnl.decode_ops(payload):
                        if tag == jnl.OP_SEGMENT:
                            fd = fds.get(target)
                            if fd is None:
                                path = self.segment_path(*target)
                                fs.makedirs(os.path.dirname(path))
                                try:
                                    fd = fs.create(path)
                                except FileExistsError:
                                    fd = fs.open_append(path)
                                fds[target] = fd
                            if value:
                                fs.pwrite(fd, bytes(value), key)
                            elif fs.size(fd) > key:
                                # A seal, as _write_segments cut it: the journal's flush
                                # does not carry a truncation, a power cut may undo it.
                                fs.truncate(fd, key)
                            continue
                        db = dbs.get(target)
                        if target not in dbs:
                            db = dbs[target] = self.env.open_db(target, txn=txn, create=True)
                        if tag == jnl.OP_PUT:
                            txn.put(key, value, db=db)
                        else:
                            txn.delete(key, db=db)
                    row.next_lsn += 1
                    row.position = end
                    count_ += 1
            finally:
                for fd in fds.values():
                    fs.close(fd)
            if count_:
                txn.put(jnl.META_JOURNAL, row.pack(), db=self.dbs[keys.DB_META])
        return count_

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
        if self._checkpointer is not None:
            self._checkpointer.join()
        with self._cond:
            while self._leader_active:
                self._cond.wait()
            if self.sync_mode == "interval" and self._failed is None and not self._readonly:
                with contextlib.suppress(OSError):
                    self.sync()  # "interval" promises the last interval at close too
            self._checkpoint_if_last()
            for _, fd in self._writer_fds.values():
                self.fs.close(fd)
            self._writer_fds.clear()
            self._closed = True
        if self._sync_pool is not None:
            self._sync_pool.shutdown()
        if self._commit_pool is not None:
            self._commit_pool.shutdown()
        if self.journal is not None:
            self.journal.close()
        self._close_lock()
        _release_env(self.env)
        os.close(self._live_fd)


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


def _access_error(path: str, readonly: bool, exc: BaseException) -> Error:
    """What a permission failure opening the store means, and what to do."""
    where = getattr(exc, "filename", None) or os.path.join(path, "index.lmdb")
    index = os.path.join(path, "index.lmdb")
    readable = os.access(path, os.R_OK | os.X_OK) and (
        not os.path.exists(index) or os.access(index, os.R_OK | os.X_OK)
    )
    if readonly or not readable:
        return PermissionDenied(
            f"store {path!r}: this user may not read it (permission denied on {where}; "
            f"run as a user who may, or grant read access: chmod -R u+rX {path})"
        )
    return ReadOnly(
        f"store {path!r}: this user may not write to it (permission denied on {where}; "
        "commands that only read, such as ls, info, tail and dump, work; to write, run as "
        f"a user who may, or make it writable: chmod -R u+w {path})"
    )


def _is_directory(path: str) -> bool:
    """os.path.isdir, except that a parent this user may not search raises
    PermissionError (isdir says False, which reads as "no store here")."""
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except FileNotFoundError:
        return False


_unlocked_envs: set[int] = set()  # id() of environments opened with lock=False


def _env_locked(env: Any) -> bool:
    return id(env) not in _unlocked_envs


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
            if not readonly and shared.readonly:
                raise InvalidArgument(
                    f"store {path!r}: already open in this process read-only (open it "
                    "read-only too, or close the other handle first)"
                )
            shared.users += 1
            return shared.env
        options: dict[str, Any] = {
            "map_size": MAP_SIZE_INITIAL,
            "max_dbs": MAX_DBS,
            "max_readers": MAX_READERS,
            "subdir": True,
            "readonly": readonly,
            "sync": sync,
            "metasync": sync,
            "readahead": False,
        }
        try:
            env = lmdb.open(env_path, lock=True, **options)
        except lmdb.ReadonlyError:
            if not readonly:
                raise
            # LMDB's reader table (lock.mdb) must be writable, even to read. A
            # store this user may only read (a read-only copy or mount) is read
            # without it: consistent unless someone who may write does so meanwhile.
            env = lmdb.open(env_path, lock=False, **options)
            _unlocked_envs.add(id(env))
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
        _unlocked_envs.discard(id(env))
        env.close()


def _wake_coroutines(batch: list[_Request]) -> None:
    """Settle the futures of a group's finished async requests: one wake-up per loop,
    so that all of its tasks run again in one turn and queue their next commit together."""
    by_loop: dict[Any, list[asyncio.Future[Any]]] = {}
    for request in batch:
        future = request.future
        if future is not None and request.done:
            request.future = None
            by_loop.setdefault(future.get_loop(), []).append(future)
    for loop, futures in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop was closed meanwhile
            loop.call_soon_threadsafe(_settle, futures)


def _settle(futures: list[asyncio.Future[Any]]) -> None:
    for future in futures:
        if not future.done():
            future.set_result(None)


def _take_live_lock(path: str, readonly: bool) -> tuple[int, bool]:
    """Hold DATA/live.lock shared; True when this handle got it exclusively first.

    The exclusive holder is the only handle open on the store, so it may
    restore LMDB from the checkpoint and replay the journal; it downgrades to
    shared once recovered.
    """
    lock_path = os.path.join(path, jnl.LIVE_LOCK_NAME)
    if readonly:
        try:
            # Created if missing (a store from before the journal), so that a writer
            # opening later sees this handle and never restores LMDB under it.
            fd = os.open(lock_path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError:
            # A directory we may not write: no writer can open it either.
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(fd, fcntl.LOCK_SH)
        return fd, False
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fcntl.flock(fd, fcntl.LOCK_SH)  # waits while a first handle recovers
        return fd, False
    return fd, True


def _restore_checkpoint(fs: OsFileSystem, path: str) -> None:
    """Replace the LMDB file a dead writer left with the last checkpoint (flushed).

    No checkpoint yet: a new store, or one written before the journal (whose
    LMDB was synced at every commit); its LMDB file is kept.
    """
    checkpoint = os.path.join(path, jnl.CHECKPOINT_NAME)
    if not os.path.exists(checkpoint):
        return
    env_dir = os.path.join(path, "index.lmdb")
    fs.makedirs(env_dir)
    data = os.path.join(env_dir, "data.mdb")
    temp = data + ".restore"
    fs.unlink(temp)
    fs.copy_aside(checkpoint, temp)
    fs.rename(temp, data)
    fs.fsync_dir(env_dir)


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
