"""Store: one data directory holding named logs (and, on them, the models)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from tidelog import monitor, queues
from tidelog.catalog import ENGINE_DATABASES
from tidelog.log import Log, as_bytes
from tidelog.monitor import CommitStats, DiskUsage, StoreStatus
from tidelog.objects import OBJECT_DATABASES, ObjectStore
from tidelog.queues import DedupScope, MoveTask, Queue, ThroughputLimit
from tidelog.segments.errors import Corruption, InvalidArgument
from tidelog.segments.fs import OsFileSystem
from tidelog.segments.logstore import LogInfo, LogStore, SyncMode
from tidelog.segments.recovery import RecoveryReport
from tidelog.segments.writer import WriteContext

if TYPE_CHECKING:
    from tidelog.delivery import DeliveryStream
    from tidelog.sql import Application, SqlResult
    from tidelog.stream_admin import StreamLimits
    from tidelog.streams import Stream
    from tidelog.topics import DeliveryWorker, Topic
    from tidelog.video import VideoStream


class Store:
    """An open data directory. Use `tidelog.open()`.

    Thread-safe; many processes may open the same directory at once.
    Close it (or use it as a context manager) to release files.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        sync: SyncMode = "always",
        readonly: bool = False,
        clock: Callable[[], float] = time.time,
        sync_interval_ms: int = 10,
        segment_bytes_max: int = 64 * 1024 * 1024,
        fs: OsFileSystem | None = None,
    ) -> None:
        self._logs = LogStore(
            path,
            sync=sync,
            readonly=readonly,
            clock=clock,
            fs=fs,
            sync_interval_ms=sync_interval_ms,
            segment_bytes_default=segment_bytes_max,
        )
        self.path = self._logs.path
        self._logs.open_databases(ENGINE_DATABASES + OBJECT_DATABASES)
        self._objects: ObjectStore | None = None
        queues.resume_move_tasks(self)  # a move task left running by a dead process

    # -- lifecycle -----------------------------------------------------------

    def close(self) -> None:
        """Finish pending commits, flush ("interval" mode) and release files."""
        from tidelog.topics import stop_delivery  # a topic delivery worker must not outlive us

        stop_delivery(self)
        queues.stop_worker(self)
        self._logs.close()

    def wait_for_commit(self, timeout: float) -> None:
        """Block until this handle's process commits a write through this
        store, or `timeout` seconds pass (other processes' commits do not
        wake it: look again after a short timeout). For waiters that look
        for changes themselves, such as the wire server's long polls."""
        self._logs.wait_for_append(timeout)

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<tidelog.Store {self.path!r} sync={self.sync_mode!r}>"

    @property
    def sync_mode(self) -> SyncMode:
        return self._logs.sync_mode

    @property
    def readonly(self) -> bool:
        return self._logs.readonly

    @property
    def recovery_report(self) -> RecoveryReport | None:
        """What recovery found and repaired when this handle opened (None if read-only)."""
        report: RecoveryReport | None = self._logs.recovery_report
        return report

    def sync(self) -> None:
        """Force everything written so far to stable storage (any sync mode)."""
        self._logs.sync()

    @property
    def objects(self) -> ObjectStore:
        """The store's S3 buckets and objects (engine/objects.py; served by `tidelog serve`)."""
        if self._objects is None:
            self._objects = ObjectStore(self)
        return self._objects

    # -- monitoring (engine/monitor.py) ------------------------------------------

    def status(self) -> StoreStatus:
        """The handle's state: ok, readonly, failed (an I/O failure stopped
        writes) or closed. Never raises; reads no file."""
        return monitor.status(self)

    def disk_usage(self) -> DiskUsage:
        """Allocated bytes per channel and for the LMDB index (see DiskUsage).

        Lists each log's directory once (no record is read); read-only.
        """
        return monitor.disk_usage(self)

    def commit_stats(self) -> CommitStats:
        """This handle's commits, the operations they carried and its file flushes."""
        return monitor.commit_stats(self)

    def observe_commits(self, observer: Callable[[float, int], None]) -> Callable[[], None]:
        """Call `observer(seconds, operations)` after each commit this handle makes.

        `seconds` runs from the commit's write transaction start to its
        durable end (waiting for the write lock excluded); `operations` is
        how many calls the group commit carried. The observer runs on the
        committing thread before the callers are woken: it must be quick
        (a histogram's observe) and must not call the store; an exception
        it raises is logged and dropped. Returns a function that removes it.
        """
        return monitor.observe_commits(self, observer)

    # -- logs ------------------------------------------------------------------

    def create_log(
        self,
        name: str,
        *,
        segment_bytes_max: int | None = None,
        retention_ms: int | None = None,
        retention_bytes: int | None = None,
        exist_ok: bool = False,
    ) -> Log:
        """Create a named log. Raises AlreadyExists unless exist_ok."""
        info = self._logs.create_log(
            name,
            segment_bytes_max=segment_bytes_max,
            retention_ms=retention_ms,
            retention_bytes=retention_bytes,
            exist_ok=exist_ok,
        )
        return Log(self, info)

    def log(self, name: str) -> Log:
        """Look up a log by name. Raises NotFound."""
        return Log(self, self._logs.get_log(name))

    def logs(self) -> list[Log]:
        return [Log(self, info) for info in self._logs.list_logs()]

    def delete_log(self, name: str) -> None:
        """Delete a log and its segment files."""
        self._logs.delete_log(name)

    # -- streams (engine/streams.py) ---------------------------------------------

    def create_stream(
        self,
        name: str,
        shards: int = 1,
        *,
        retention_hours: int = 24,
        max_record_bytes: int = 1024 * 1024,
        exist_ok: bool = False,
    ) -> Stream:
        """Create a stream of `shards` shards with even hash-key ranges (as Kinesis).

        Atomic. Raises AlreadyExists unless exist_ok (then the existing stream
        is returned as it is), InvalidArgument naming the limit for a bad name
        (1-128 of a-zA-Z0-9_.-), shard count (1-500), retention_hours
        (24-8760) or max_record_bytes (1-10 MiB).
        """
        from tidelog import streams

        return streams.create_stream(
            self,
            name,
            shards,
            retention_hours=retention_hours,
            max_record_bytes=max_record_bytes,
            exist_ok=exist_ok,
        )

    def stream_limits(self) -> StreamLimits:
        """Open shards and ON_DEMAND streams against the limits (Kinesis's DescribeLimits)."""
        from tidelog.stream_admin import describe_limits

        return describe_limits(self)

    def stream(self, name: str) -> Stream:
        """Look up a stream by name. Raises NotFound."""
        from tidelog.streams import Stream

        return Stream(self, name)

    def streams(self) -> list[Stream]:
        """Every stream, by name."""
        from tidelog.streams import list_streams

        return list_streams(self)

    def delete_stream(self, name: str) -> None:
        """Delete a stream, its shards' logs and its checkpoints. Atomic. Raises NotFound."""
        from tidelog.streams import delete_stream

        delete_stream(self, name)

    # -- video streams (engine/video.py) ------------------------------------------

    def create_video_stream(
        self,
        name: str,
        *,
        data_retention_hours: int = 0,
        media_type: str = "",
        device_name: str = "",
        kms_key_id: str = "",
        tags: dict[str, str] | None = None,
        exist_ok: bool = False,
    ) -> VideoStream:
        """Create a video stream (KVS's CreateStream). Raises InvalidArgument
        (a name or setting outside KVS's limits), AlreadyExists unless exist_ok.
        Retention in hours, 0-87600; 0 keeps no archive, as in KVS."""
        from tidelog import video

        return video.create_video_stream(
            self,
            name,
            data_retention_hours=data_retention_hours,
            media_type=media_type,
            device_name=device_name,
            kms_key_id=kms_key_id,
            tags=tags,
            exist_ok=exist_ok,
        )

    def video_stream(self, name: str) -> VideoStream:
        """Look a video stream up by name. Raises NotFound."""
        from tidelog.video import VideoStream

        stream = VideoStream(self, name)
        stream.describe()
        return stream

    def video_streams(self, prefix: str = "") -> list[VideoStream]:
        """Every video stream whose name starts with `prefix`, by name."""
        from tidelog import video

        return video.list_video_streams(self, prefix)

    def delete_video_stream(self, name: str, *, current_version: str | None = None) -> None:
        """Delete a video stream and its fragments. Raises NotFound, VersionMismatch."""
        from tidelog import video

        video.delete_video_stream(self, name, current_version)

    # -- queues (engine/queues.py) -----------------------------------------------

    def create_queue(
        self,
        name: str,
        *,
        visibility_timeout: int = 30,
        delay: int = 0,
        retention: int = queues.RETENTION_SECONDS_DEFAULT,
        max_message_size: int = queues.MESSAGE_BYTES_MAX,
        receive_wait: int = 0,
        dead_letter: tuple[str, int] | None = None,
        fifo: bool = False,
        content_based_dedup: bool = False,
        dedup_scope: DedupScope = "queue",
        fifo_throughput_limit: ThroughputLimit = "perQueue",
        replay_window: int | None = None,
        segment_bytes_max: int | None = None,
        exist_ok: bool = False,
    ) -> Queue:
        """Create a queue (SQS's CreateQueue; times in seconds). Atomic.

        Raises InvalidArgument (a name or attribute outside SQS's limits,
        naming the limit), AlreadyExists (unless exist_ok and the attributes
        match), NotFound (dead_letter names no queue). See docs/api.md, "Queues".
        """
        return queues.create_queue(
            self,
            name,
            visibility_timeout=visibility_timeout,
            delay=delay,
            retention=retention,
            max_message_size=max_message_size,
            receive_wait=receive_wait,
            dead_letter=dead_letter,
            fifo=fifo,
            content_based_dedup=content_based_dedup,
            dedup_scope=dedup_scope,
            fifo_throughput_limit=fifo_throughput_limit,
            replay_window=replay_window,
            segment_bytes_max=segment_bytes_max,
            exist_ok=exist_ok,
        )

    def queue(self, name: str) -> Queue:
        """Look a queue up by name. Raises NotFound."""
        return queues.get_queue(self, name)

    def queues(self, prefix: str = "") -> list[Queue]:
        """Every queue whose name starts with `prefix`, by name."""
        return queues.list_queues(self, prefix)

    def delete_queue(self, name: str) -> None:
        """Delete a queue, its messages and its state (atomic). Raises NotFound."""
        queues.delete_queue(self, name)

    def dead_letter_source_queues(self, name: str) -> list[Queue]:
        """Queues that use `name` as their dead-letter queue. Raises NotFound."""
        return queues.dead_letter_source_queues(self, name)

    def start_message_move_task(
        self,
        source: str,
        destination: str | None = None,
        *,
        max_messages_per_second: int | None = None,
    ) -> MoveTask:
        """Redrive a dead-letter queue (SQS's StartMessageMoveTask); see queues.py."""
        return queues.start_message_move_task(
            self, source, destination, max_messages_per_second=max_messages_per_second
        )

    def cancel_message_move_task(self, handle: str) -> MoveTask:
        """Cancel a move task (from any process; tasks are stored). Raises NotFound."""
        return queues.cancel_message_move_task(self, handle)

    def list_message_move_tasks(self, source: str) -> list[MoveTask]:
        """`source`'s move tasks, running and the last finished, oldest first."""
        return queues.list_message_move_tasks(self, source)

    # -- topics (engine/topics.py) -----------------------------------------------

    def create_topic(
        self,
        name: str,
        *,
        fifo: bool = False,
        retention: int = 24 * 3600,
        content_based_dedup: bool = False,
        display_name: str = "",
        exist_ok: bool = False,
    ) -> Topic:
        """Create a topic (SNS's CreateTopic); `retention` in seconds (0-365 days). Atomic.

        Raises InvalidArgument (a name outside 1-256 of A-Za-z0-9_-, .fifo
        exactly for FIFO; a limit broken), AlreadyExists (unless exist_ok
        and the attributes match). See docs/api.md, "Topics".
        """
        from tidelog import topics

        return topics.create_topic(
            self,
            name,
            fifo=fifo,
            retention=retention,
            content_based_dedup=content_based_dedup,
            display_name=display_name,
            exist_ok=exist_ok,
        )

    def topic(self, name: str) -> Topic:
        """Look a topic up by name (or ARN). Raises NotFound."""
        from tidelog import topics

        return topics.get_topic(self, name)

    def topics(self, prefix: str = "") -> list[Topic]:
        """Every topic whose name starts with `prefix`, by name."""
        from tidelog import topics

        return topics.list_topics(self, prefix)

    def delete_topic(self, name: str) -> None:
        """Delete a topic, its history and subscriptions (not the queues). Raises NotFound."""
        from tidelog import topics

        topics.delete_topic(self, name)

    def start_topic_delivery(
        self, *, poll_interval: float = 0.05, http_timeout: float = 15.0
    ) -> DeliveryWorker:
        """Start (or return) this handle's worker delivering callback and
        HTTP/S subscriptions' pending messages; see topics.DeliveryWorker."""
        from tidelog import topics

        return topics.start_delivery(self, poll_interval=poll_interval, http_timeout=http_timeout)

    # -- delivery streams (engine/delivery.py) ------------------------------------------

    def create_delivery_stream(
        self, name: str, *, destination: Any, source: str = "direct", **settings: Any
    ) -> DeliveryStream:
        """Create a delivery stream (Firehose's CreateDeliveryStream). Atomic.

        `source` is "direct" (put_record feeds it) or a stream's name;
        `destination` a directory path, DirectoryDestination or S3Destination;
        settings as delivery.create_delivery_stream. Raises InvalidArgument,
        AlreadyExists (unless exist_ok=True), NotFound (no such stream).
        """
        from tidelog import delivery

        return delivery.create_delivery_stream(
            self, name, source=source, destination=destination, **settings
        )

    def delivery_stream(self, name: str) -> DeliveryStream:
        """Look a delivery stream up by name. Raises NotFound."""
        from tidelog import delivery

        return delivery.get_delivery_stream(self, name)

    def delivery_streams(self) -> list[DeliveryStream]:
        """Every delivery stream, by name."""
        from tidelog import delivery

        return delivery.list_delivery_streams(self)

    def delete_delivery_stream(self, name: str) -> None:
        """Delete a delivery stream, its state and its direct log (atomic). Raises NotFound."""
        from tidelog import delivery

        delivery.delete_delivery_stream(self, name)

    # -- SQL (engine/sql.py) ------------------------------------------------------------

    def sql(
        self,
        query: str,
        *,
        scan_bytes_max: int | None = None,
        scan_workers: int | None = None,
        memory_limit: str | None = None,
        files: bool = True,
    ) -> SqlResult:
        """Run a SQL query (DuckDB) over the store's streams, queues and topics.

        Each channel is a table (see docs/api.md, "SQL"); filters on
        arrival_time, shard_id and sequence_number read only the matching
        segments. A large scan is read by worker processes (`scan_workers`:
        how many; default one a core, 1: none). `memory_limit` (e.g. "1GB")
        bounds DuckDB's memory; past it, it spills to a temporary directory.
        `files=False` turns DuckDB's file access off (COPY TO, read_csv, ATTACH).
        Raises SqlError, ScanLimitExceeded (over `scan_bytes_max`), Corruption.
        """
        from tidelog import sql

        return sql.run_sql(
            self,
            query,
            scan_bytes_max=scan_bytes_max,
            scan_workers=scan_workers,
            memory_limit=memory_limit,
            files=files,
        )

    def create_application(
        self, name: str, source: str, sql: str, *, destination: Any, **window: Any
    ) -> Application:
        """Create a continuous query (window=tumbling|sliding|session, size=seconds, ...).

        Atomic. Raises InvalidArgument, SqlError (bad SQL), NotFound, AlreadyExists.
        """
        from tidelog import sql as sql_module

        return sql_module.create_application(
            self, name, source, sql, destination=destination, **window
        )

    def application(self, name: str) -> Application:
        """Look an application up by name. Raises NotFound."""
        from tidelog.sql import Application

        return Application(self, name)

    def applications(self) -> list[Application]:
        """Every application, by name."""
        from tidelog import sql

        return sql.list_applications(self)

    def delete_application(self, name: str) -> None:
        """Delete an application and its checkpoints (not its output). Raises NotFound."""
        from tidelog import sql

        sql.delete_application(self, name)

    # -- store-wide -----------------------------------------------------------------

    def transaction(self) -> Transaction:
        """Appends to several logs committed atomically: all land or none.

        with store.transaction() as tx:
            tx.append(a, b"x")
            tx.append(b, b"y")
        tx.offsets  # [offset in a, offset in b]
        """
        return Transaction(self)

    def enforce_retention(self, now_ms: int | None = None) -> int:
        """Apply every log's retention; returns the number of segments deleted.

        Queues: drops expired messages from each queue's head and reclaims
        the segments behind it (queues.enforce_retention).
        """
        # Topic logs are trimmed by topics.enforce_retention: subscribed
        # queues read them as views, so their heads bound the trim too.
        infos = [info for info in self._logs.list_logs() if info.meta.get("kind") != "topic"]

        def op(ctx: WriteContext) -> int:
            return sum(ctx.enforce_retention(info, now_ms) for info in infos)

        deleted = self._logs.submit(op)
        from tidelog import topics
        from tidelog.streams import enforce_all_retention  # streams keep their own period

        queue_segments = queues.enforce_retention(self, now_ms)  # expired messages at heads
        topic_segments = topics.enforce_retention(self, now_ms)  # after the views' heads moved
        return deleted + enforce_all_retention(self, now_ms) + queue_segments + topic_segments

    def verify(self) -> dict[str, list[Corruption]]:
        """Check every record of every log; returns the problems by log name."""
        return {log.name: log.verify() for log in self.logs()}

    def check(self) -> list[Corruption]:
        """All problems `verify` finds, as one list (empty when sound)."""
        return [problem for problems in self.verify().values() for problem in problems]


class Transaction:
    """Collects appends to several logs and commits them as one (see Store.transaction)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._items: list[tuple[LogInfo, bytes, bytes, bytes]] = []
        self.offsets: list[int] = []
        self._done = False

    def append(self, log: Log, value: Any, key: Any = b"", headers: Any = b"") -> int:
        """Queue an append to a plain log; returns its index into `offsets` after the commit.

        Raises InvalidArgument for anything but a `Log` (`store.log(name)`):
        a queue's, stream's or topic's log holds messages in their model's
        format, which only their own calls (`send`, `put`, `publish`) write.
        """
        if self._done:
            raise InvalidArgument("transaction: already committed")
        if not isinstance(log, Log):
            what = type(log).__name__
            call = {"Queue": "send", "Stream": "put", "Topic": "publish"}.get(what)
            hint = f" (use {what.lower()}.{call}(...))" if call else ""
            raise InvalidArgument(
                f"transaction: append takes a Log from store.log() or store.create_log(), "
                f"not a {what}{hint}"
            )
        self._items.append(
            (log.info, as_bytes(value, "value"), as_bytes(key, "key"), as_bytes(headers, "headers"))
        )
        return len(self._items) - 1

    def commit(self) -> list[int]:
        items = self._items
        self._done = True

        def op(ctx: WriteContext) -> list[int]:
            return [ctx.append(info, [v], [k], [h]) for info, v, k, h in items]

        self.offsets = self._store._logs.submit(op) if items else []
        return self.offsets

    def __enter__(self) -> Transaction:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            self._done = True


def open(
    path: str | os.PathLike[str],
    sync: SyncMode = "always",
    *,
    readonly: bool = False,
    clock: Callable[[], float] = time.time,
    sync_interval_ms: int = 10,
    segment_bytes_max: int = 64 * 1024 * 1024,
    fs: OsFileSystem | None = None,
) -> Store:
    """Open (creating if needed) the store at `path`.

    sync: "always" (return after data and index are on stable storage),
    "interval" (flushed every `sync_interval_ms` in the background) or
    "never" (left to the OS). See docs/guarantees.md.
    """
    return Store(
        path,
        sync=sync,
        readonly=readonly,
        clock=clock,
        sync_interval_ms=sync_interval_ms,
        segment_bytes_max=segment_bytes_max,
        fs=fs,
    )
