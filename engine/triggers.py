"""Triggers: functions and the event source mappings that feed them (docs/triggers.md).

A *function* is a Python handler ("package.module:function", or Lambda's
"module.function") with Lambda's settings (timeout, memory size,
environment). Its code is one of: a zip (Lambda's ZipFile), unpacked under
`DATA/functions/<name>/<sha256>/`; a directory of the user's, used in place
(hot reload: a change there restarts the function's workers); or nothing, when
the handler is importable where the trigger runner runs. An *event source
mapping* (a trigger) ties a function to a queue, a stream or a topic, with
Lambda's batching and failure settings.

Definitions are primary state kept in one plain log of the store,
`tidelog-triggers`: each change appends the whole new definition (or a
deletion) as JSON, and the newest entry for a name or UUID wins. So they are
durable and atomic as any append, survive restarts, are seen by every process
that opens the store (the runner rereads when the log grows), and need
nothing but the public Log API. Positions are the sources' own state: a queue's
leases and deletes, a stream consumer group's checkpoints (named
`tidelog-trigger-<uuid>`), and for a topic an internal queue subscribed to it
(`tidelog-trigger-<uuid hex>`) whose messages are the SNS envelopes.

Running them is engine/trigger_runner.py; handlers run in worker processes
(engine/trigger_pool.py, engine/trigger_worker.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import time
import uuid
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tidelog.errors import AlreadyExists, InvalidArgument, NotFound
from tidelog.trigger_events import (
    REGION,
    compile_filters,
    function_arn,
    queue_arn,
    stream_arn,
    topic_arn,
)

if TYPE_CHECKING:
    from tidelog.log import Log
    from tidelog.queues import Queue
    from tidelog.store import Store
    from tidelog.streams import Stream
    from tidelog.topics import Topic
    from tidelog.trigger_pool import Invocation

DEFINITIONS_LOG = "tidelog-triggers"
FUNCTIONS_DIR = "functions"
TRIGGER_QUEUE_PREFIX = "tidelog-trigger-"  # a topic trigger's internal queue
ASYNC_QUEUE_PREFIX = "tidelog-async-"  # a function's queue of Event invocations
CONSUMER_PREFIX = "tidelog-trigger-"  # a stream trigger's consumer group

# Lambda's limits.
FUNCTION_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
HANDLER_RE = re.compile(r"[^\s]{1,128}")
RUNTIMES = ("python3.9", "python3.10", "python3.11", "python3.12", "python3.13")
TIMEOUT_MAX = 900
MEMORY_MIN, MEMORY_MAX = 128, 10240
ZIP_BYTES_MAX = 50 * 1024 * 1024  # a direct upload
UNZIPPED_BYTES_MAX = 250 * 1024 * 1024
ENVIRONMENT_BYTES_MAX = 4096
BATCH_MAX = 10000
SQS_BATCH_NO_WINDOW_MAX = 10
WINDOW_MAX = 300
RETRY_MAX = 10000
RECORD_AGE_MIN, RECORD_AGE_MAX = 60, 604800
PARALLELIZATION_MAX = 10
CONCURRENCY_MIN, CONCURRENCY_MAX = 2, 1000
STARTING_POSITIONS = ("TRIM_HORIZON", "LATEST", "AT_TIMESTAMP")
ASYNC_RETRIES = 2  # Lambda retries an asynchronous invocation twice


@dataclass(frozen=True, slots=True)
class Function:
    """A function's configuration (Lambda's FunctionConfiguration).

    `code` is "zip" (unpacked in `code_dir`), "directory" (the user's
    `code_dir`, hot-reloaded) or "module" (the handler is importable as it
    is). `python` is the interpreter its workers run (None: the runner's).
    `dead_letter` is a queue name for asynchronous invocations that fail
    every attempt (Lambda's DeadLetterConfig).
    """

    name: str
    handler: str
    runtime: str = "python3.12"
    timeout: int = 3
    memory_size: int = 128
    environment: dict[str, str] = field(default_factory=dict)
    code: str = "module"
    code_dir: str | None = None
    code_sha256: str = ""
    code_size: int = 0
    python: str | None = None
    description: str = ""
    dead_letter: str | None = None
    last_modified_ms: int = 0
    revision_id: str = ""

    @property
    def arn(self) -> str:
        return function_arn(self.name)


@dataclass(frozen=True, slots=True)
class Trigger:
    """An event source mapping (Lambda's EventSourceMappingConfiguration).

    `source_kind` is "queue", "stream" or "topic". Times in seconds.
    `maximum_retry_attempts` and `maximum_record_age` are -1 for "forever"
    (streams only). `on_failure` is ("queue" | "topic", name) or None.
    `report_batch_item_failures` is FunctionResponseTypes
    ["ReportBatchItemFailures"]. For a topic trigger, `queue` is its
    internal queue and `subscription` its subscription's id.
    """

    uuid: str
    function: str
    source_kind: str
    source: str
    batch_size: int
    batching_window: int = 0
    maximum_concurrency: int | None = None
    enabled: bool = True
    starting_position: str | None = None
    starting_position_timestamp: float | None = None
    maximum_retry_attempts: int = -1
    maximum_record_age: int = -1
    bisect_on_error: bool = False
    parallelization_factor: int = 1
    on_failure: tuple[str, str] | None = None
    filter_criteria: dict[str, Any] | None = None
    report_batch_item_failures: bool = False
    queue: str | None = None
    subscription: str | None = None
    created_ms: int = 0
    last_modified_ms: int = 0
    # The region of the EventSourceArn it was made with: events and ARNs name it
    # (channels are shared by every region; docs/triggers.md).
    region: str = REGION

    @property
    def source_arn(self) -> str:
        return {"queue": queue_arn, "stream": stream_arn, "topic": topic_arn}[self.source_kind](
            self.source, self.region
        )

    @property
    def consumer(self) -> str:
        """A stream trigger's consumer group name."""
        return CONSUMER_PREFIX + self.uuid

    @property
    def state(self) -> str:
        return "Enabled" if self.enabled else "Disabled"


def _function_from(data: Mapping[str, Any]) -> Function:
    known = {f.name for f in fields(Function)}
    return Function(**{k: v for k, v in data.items() if k in known})


def _trigger_from(data: Mapping[str, Any]) -> Trigger:
    known = {f.name for f in fields(Trigger)}
    values = {k: v for k, v in data.items() if k in known}
    if values.get("on_failure") is not None:
        values["on_failure"] = tuple(values["on_failure"])
    return Trigger(**values)


def _check_int(what: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidArgument(f"{what}: {value!r} is outside {low}-{high}")
    return value


def _check_bool(what: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidArgument(f"{what}: must be true or false")
    return value


def check_function_name(name: object) -> str:
    if not isinstance(name, str) or not FUNCTION_NAME_RE.fullmatch(name):
        raise InvalidArgument(f"function name {name!r}: must be 1-64 characters of A-Z a-z 0-9 _ -")
    return name


def _check_environment(environment: object) -> dict[str, str]:
    if environment is None:
        return {}
    if not isinstance(environment, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in environment.items()
    ):
        raise InvalidArgument("environment: must map str names to str values")
    for key in environment:
        if not re.fullmatch(r"[a-zA-Z]([a-zA-Z0-9_])+", key):
            raise InvalidArgument(f"environment: {key!r} is not a valid variable name")
    if len(json.dumps(dict(environment))) > ENVIRONMENT_BYTES_MAX:
        raise InvalidArgument(f"environment: over Lambda's {ENVIRONMENT_BYTES_MAX} bytes")
    return dict(environment)


class Triggers:
    """The store's functions and event source mappings. `tidelog.Triggers(store)`.

    Every change is one append to the definitions log (atomic, durable as
    the store's sync mode); reads replay the log (cached until it grows).
    Thread- and process-safe as the log is; two processes changing the same
    definition at once: the later append wins. Running the mappings is
    `TriggerRunner` (tidelog serve and tidelog run-triggers start one).
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._cache: tuple[int, dict[str, Function], dict[str, Trigger]] | None = None

    # -- the definitions log ----------------------------------------------------------

    def _log(self) -> Log:
        try:
            return self.store.log(DEFINITIONS_LOG)
        except NotFound:
            return self.store.create_log(DEFINITIONS_LOG, exist_ok=True)

    def _state(self) -> tuple[dict[str, Function], dict[str, Trigger]]:
        try:
            log = self.store.log(DEFINITIONS_LOG)
        except NotFound:
            return {}, {}
        end = log.end_offset
        cached = self._cache
        if cached is not None and cached[0] == end:
            return cached[1], cached[2]
        functions: dict[str, Function] = {}
        mappings: dict[str, Trigger] = {}
        for record in log.read(0, end):
            entry = json.loads(record.value)
            kind, key, data = entry["kind"], entry["key"], entry["data"]
            table: dict[str, Any] = functions if kind == "function" else mappings
            if data is None:
                table.pop(key, None)
            else:
                table[key] = _function_from(data) if kind == "function" else _trigger_from(data)
        self._cache = (end, functions, mappings)
        return functions, mappings

    def _put(self, kind: str, key: str, data: dict[str, Any] | None) -> None:
        self._log().append(json.dumps({"kind": kind, "key": key, "data": data}).encode())

    @property
    def version(self) -> int:
        """Grows with every change (the definitions log's end offset)."""
        try:
            return self.store.log(DEFINITIONS_LOG).end_offset
        except NotFound:
            return 0

    # -- functions ----------------------------------------------------------------------

    def functions(self) -> list[Function]:
        return sorted(self._state()[0].values(), key=lambda f: f.name)

    def function(self, name: str) -> Function:
        """Look a function up by name or ARN. Raises NotFound."""
        name = _function_name(name)
        found = self._state()[0].get(name)
        if found is None:
            raise NotFound(f"Function not found: {function_arn(name)}")
        return found

    def function_dir(self, name: str) -> Path:
        return Path(self.store.path) / FUNCTIONS_DIR / name

    def log_path(self, name: str) -> str:
        """The file the function's workers write stdout, stderr and START/END/REPORT to."""
        return str(self.function_dir(name) / "log.txt")

    def create_function(
        self,
        name: str,
        handler: str,
        *,
        zip_file: bytes | None = None,
        code_dir: str | os.PathLike[str] | None = None,
        runtime: str = "python3.12",
        timeout: int = 3,
        memory_size: int = 128,
        environment: Mapping[str, str] | None = None,
        python: str | None = None,
        description: str = "",
        dead_letter: str | None = None,
    ) -> Function:
        """Create a function (Lambda's CreateFunction). Give `zip_file` (a zip of
        the code), `code_dir` (a directory used in place, hot-reloaded) or
        neither (the handler is importable where the runner runs).

        Raises AlreadyExists, InvalidArgument (a name, handler or setting
        outside Lambda's limits; a zip that does not unzip).
        """
        name = check_function_name(name)
        if name in self._state()[0]:
            raise AlreadyExists(f"Function already exist: {name}")
        now = _now_ms()
        function = Function(
            name=name,
            handler=_check_handler(handler),
            runtime=_check_runtime(runtime),
            timeout=_check_int("timeout", timeout, 1, TIMEOUT_MAX),
            memory_size=_check_int("memory_size", memory_size, MEMORY_MIN, MEMORY_MAX),
            environment=_check_environment(environment),
            python=_check_python(python),
            description=_check_description(description),
            dead_letter=self._check_queue(dead_letter),
            last_modified_ms=now,
            revision_id=str(uuid.uuid4()),
        )
        function = self._with_code(function, zip_file, code_dir)
        self._put("function", name, asdict(function))
        return function

    def update_function_code(
        self,
        name: str,
        *,
        zip_file: bytes | None = None,
        code_dir: str | os.PathLike[str] | None = None,
    ) -> Function:
        """Replace the function's code (Lambda's UpdateFunctionCode); running
        workers finish their invocation and are replaced. Raises NotFound,
        InvalidArgument."""
        current = self.function(name)
        if zip_file is None and code_dir is None:
            raise InvalidArgument("update_function_code: give zip_file or code_dir")
        function = self._with_code(current, zip_file, code_dir)
        function = replace(function, last_modified_ms=_now_ms(), revision_id=str(uuid.uuid4()))
        self._put("function", function.name, asdict(function))
        return function

    def update_function_configuration(self, name: str, **changes: Any) -> Function:
        """Change handler, runtime, timeout, memory_size, environment, python,
        description or dead_letter (Lambda's UpdateFunctionConfiguration).
        Raises NotFound, InvalidArgument."""
        current = self.function(name)
        checks: dict[str, Callable[[Any], Any]] = {
            "handler": _check_handler,
            "runtime": _check_runtime,
            "timeout": lambda v: _check_int("timeout", v, 1, TIMEOUT_MAX),
            "memory_size": lambda v: _check_int("memory_size", v, MEMORY_MIN, MEMORY_MAX),
            "environment": _check_environment,
            "python": _check_python,
            "description": _check_description,
            "dead_letter": self._check_queue,
        }
        checked: dict[str, Any] = {}
        for key, value in changes.items():
            check = checks.get(key)
            if check is None:
                raise InvalidArgument(f"update_function_configuration: unknown setting {key!r}")
            checked[key] = check(value)
        function = replace(
            current, **checked, last_modified_ms=_now_ms(), revision_id=str(uuid.uuid4())
        )
        self._put("function", function.name, asdict(function))
        return function

    def delete_function(self, name: str) -> None:
        """Delete a function, its unpacked code and its log. Its mappings stay, as
        on Lambda, and fail until a function of that name exists again. Raises NotFound."""
        function = self.function(name)
        self._put("function", function.name, None)
        shutil.rmtree(self.function_dir(function.name), ignore_errors=True)

    def _with_code(
        self,
        function: Function,
        zip_file: bytes | None,
        code_dir: str | os.PathLike[str] | None,
    ) -> Function:
        if zip_file is not None and code_dir is not None:
            raise InvalidArgument("code: give zip_file or code_dir, not both")
        if code_dir is not None:
            path = Path(code_dir).resolve()
            if not path.is_dir():
                raise InvalidArgument(f"code_dir {str(code_dir)!r}: not a directory")
            return replace(
                function, code="directory", code_dir=str(path), code_sha256="", code_size=0
            )
        if zip_file is None:
            return function
        if not isinstance(zip_file, bytes | bytearray):
            raise InvalidArgument("zip_file: must be bytes")
        if len(zip_file) > ZIP_BYTES_MAX:
            raise InvalidArgument(
                f"Unzipped size must be smaller than {UNZIPPED_BYTES_MAX} bytes; zip over "
                f"{ZIP_BYTES_MAX} bytes"
            )
        sha = hashlib.sha256(zip_file).digest()
        digest = sha.hex()
        target = self.function_dir(function.name) / digest
        if not target.is_dir():
            try:
                archive = zipfile.ZipFile(io.BytesIO(zip_file))
                total = sum(info.file_size for info in archive.infolist())
                if total > UNZIPPED_BYTES_MAX:
                    raise InvalidArgument(
                        f"Unzipped size must be smaller than {UNZIPPED_BYTES_MAX} bytes"
                    )
                staging = target.with_name(f".{digest}.{uuid.uuid4().hex}")
                staging.mkdir(parents=True)
                archive.extractall(staging)  # zipfile drops absolute and .. parts of names
            except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
                raise InvalidArgument(f"Could not unzip uploaded file ({exc})") from None
            try:
                staging.rename(target)
            except OSError:
                shutil.rmtree(staging, ignore_errors=True)  # another process unpacked it first
        import base64

        return replace(
            function,
            code="zip",
            code_dir=str(target),
            code_sha256=base64.b64encode(sha).decode(),
            code_size=len(zip_file),
        )

    def _check_queue(self, name: object) -> str | None:
        if name is None:
            return None
        if not isinstance(name, str):
            raise InvalidArgument("dead_letter: a queue name")
        self.store.queue(name)  # NotFound
        return name

    # -- invoking ---------------------------------------------------------------------------

    def invoke(self, name: str, event: Any) -> Invocation:
        """Run the function on `event` now, in a worker process of this handle, and
        wait (Lambda's RequestResponse). Never raises for what the handler does
        (see Invocation.error). Raises NotFound."""
        from tidelog.trigger_runner import pools

        return pools(self.store).invoke(self.function(name), event)

    def invoke_async(self, name: str, event: Any) -> str:
        """Queue an asynchronous invocation (Lambda's Event type); returns its
        request id. The runner invokes it, retrying twice on failure (then the
        function's dead_letter queue, if any). Durable on return. Raises NotFound."""
        function = self.function(name)
        request_id = str(uuid.uuid4())
        queue = self.async_queue(function.name)
        body = json.dumps({"request_id": request_id, "event": event})
        queue.send(body.encode())
        return request_id

    def async_queue(self, name: str) -> Queue:
        """The function's queue of Event invocations (made on first use)."""
        queue_name = ASYNC_QUEUE_PREFIX + name
        return self.store.create_queue(
            queue_name,
            visibility_timeout=max(30, self.function(name).timeout + 30),
            retention=6 * 3600,  # Lambda keeps an event for 6 hours at most
            exist_ok=True,
        )

    # -- event source mappings ----------------------------------------------------------

    def triggers(
        self, *, function: str | None = None, source: tuple[str, str] | None = None
    ) -> list[Trigger]:
        """Every mapping (of `function`, of `source` = (kind, name)), oldest first."""
        found = list(self._state()[1].values())
        if function is not None:
            name = _function_name(function)
            found = [t for t in found if t.function == name]
        if source is not None:
            found = [t for t in found if (t.source_kind, t.source) == source]
        return sorted(found, key=lambda t: (t.created_ms, t.uuid))

    def trigger(self, trigger_uuid: str) -> Trigger:
        """Look a mapping up by UUID. Raises NotFound."""
        found = self._state()[1].get(trigger_uuid) if isinstance(trigger_uuid, str) else None
        if found is None:
            raise NotFound(f"The resource you requested does not exist. (mapping {trigger_uuid})")
        return found

    def create_trigger(
        self,
        function: str,
        source: Queue | Stream | Topic | tuple[str, str],
        *,
        batch_size: int | None = None,
        batching_window: int = 0,
        maximum_concurrency: int | None = None,
        enabled: bool = True,
        starting_position: str | None = None,
        starting_position_timestamp: float | None = None,
        maximum_retry_attempts: int = -1,
        maximum_record_age: int = -1,
        bisect_on_error: bool = False,
        parallelization_factor: int = 1,
        on_failure: tuple[str, str] | None = None,
        filter_criteria: Mapping[str, Any] | None = None,
        report_batch_item_failures: bool = False,
        filter_policy: Mapping[str, Any] | None = None,
        region: str = REGION,
    ) -> Trigger:
        """Map a queue, stream or topic to a function (Lambda's CreateEventSourceMapping,
        or for a topic SNS's Subscribe with protocol "lambda").

        `source` is a Queue, Stream or Topic, or ("queue" | "stream" | "topic", name).
        Settings and defaults are Lambda's (docs/triggers.md has the table);
        streams need `starting_position`. A stream trigger's position starts
        here: LATEST and AT_TIMESTAMP are applied now, not when a runner first
        looks. A topic trigger subscribes an internal queue now (with
        `filter_policy`, SNS's, if given). Raises InvalidArgument (Lambda's
        limits; a queue whose visibility timeout is under the function's
        timeout), NotFound (function or source).
        """
        kind, name = _source_of(source)
        fn = self.function(function)
        now = _now_ms()
        trigger_uuid = str(uuid.uuid4())
        settings = _check_settings(
            kind,
            batch_size=batch_size,
            batching_window=batching_window,
            maximum_concurrency=maximum_concurrency,
            starting_position=starting_position,
            starting_position_timestamp=starting_position_timestamp,
            maximum_retry_attempts=maximum_retry_attempts,
            maximum_record_age=maximum_record_age,
            bisect_on_error=bisect_on_error,
            parallelization_factor=parallelization_factor,
            report_batch_item_failures=report_batch_item_failures,
            filter_criteria=filter_criteria,
        )
        _check_bool("enabled", enabled)
        failure = self._check_destination(on_failure, kind)
        trigger = Trigger(
            uuid=trigger_uuid,
            function=fn.name,
            source_kind=kind,
            source=name,
            enabled=enabled,
            on_failure=failure,
            created_ms=now,
            last_modified_ms=now,
            region=region,
            **settings,
        )
        if kind == "queue":
            queue = self.store.queue(name)
            visibility = int(queue.attributes()["visibility_timeout"])
            if visibility < fn.timeout:
                raise InvalidArgument(
                    f"Queue visibility timeout: {visibility} seconds is less than Function "
                    f"timeout: {fn.timeout} seconds"
                )
            _check_fifo(queue.fifo, trigger.batching_window)
        elif kind == "stream":
            self._start_stream_position(trigger)
        else:
            trigger = self._subscribe_topic(trigger, fn, filter_policy)
        self._put("trigger", trigger.uuid, _trigger_data(trigger))
        return trigger

    def update_trigger(self, trigger_uuid: str, **changes: Any) -> Trigger:
        """Change a mapping's function, enabled, batch_size, batching_window,
        maximum_concurrency, maximum_retry_attempts, maximum_record_age,
        bisect_on_error, parallelization_factor, on_failure, filter_criteria or
        report_batch_item_failures (Lambda's UpdateEventSourceMapping). Its
        position is kept. Raises NotFound, InvalidArgument."""
        current = self.trigger(trigger_uuid)
        allowed = {
            "function",
            "enabled",
            "batch_size",
            "batching_window",
            "maximum_concurrency",
            "maximum_retry_attempts",
            "maximum_record_age",
            "bisect_on_error",
            "parallelization_factor",
            "on_failure",
            "filter_criteria",
            "report_batch_item_failures",
        }
        unknown = set(changes) - allowed
        if unknown:
            raise InvalidArgument(f"update_trigger: cannot change {', '.join(sorted(unknown))}")
        merged = {k: getattr(current, k) for k in allowed - {"function", "enabled", "on_failure"}}
        merged.update({k: v for k, v in changes.items() if k in merged})
        settings = _check_settings(
            current.source_kind,
            starting_position=current.starting_position,
            starting_position_timestamp=current.starting_position_timestamp,
            **merged,
        )
        settings.pop("starting_position")
        settings.pop("starting_position_timestamp")
        if current.source_kind == "queue":
            try:
                fifo = self.store.queue(current.source).fifo
            except NotFound:
                fifo = False
            _check_fifo(fifo, settings["batching_window"])
        extra: dict[str, Any] = {}
        if "function" in changes:
            extra["function"] = self.function(changes["function"]).name
        if "enabled" in changes:
            extra["enabled"] = _check_bool("enabled", changes["enabled"])
        if "on_failure" in changes:
            extra["on_failure"] = self._check_destination(
                changes["on_failure"], current.source_kind
            )
        trigger = replace(current, **settings, **extra, last_modified_ms=_now_ms())
        self._put("trigger", trigger.uuid, _trigger_data(trigger))
        return trigger

    def delete_trigger(self, trigger_uuid: str) -> Trigger:
        """Delete a mapping (a stream's consumer group and a topic's internal
        subscription and queue go with it). Returns it. Raises NotFound."""
        trigger = self.trigger(trigger_uuid)
        self._put("trigger", trigger.uuid, None)
        if trigger.source_kind == "topic":
            try:
                topic = self.store.topic(trigger.source)
                if trigger.subscription is not None:
                    topic.unsubscribe(trigger.subscription)
            except NotFound:
                pass
            if trigger.queue is not None:
                with contextlib.suppress(NotFound):
                    self.store.delete_queue(trigger.queue)
        elif trigger.source_kind == "stream":
            with contextlib.suppress(NotFound):
                self.store.stream(trigger.source).delete_consumer(trigger.consumer)
        return trigger

    def _check_destination(self, value: object, kind: str) -> tuple[str, str] | None:
        if value is None:
            return None
        if kind != "stream":
            raise InvalidArgument(
                "DestinationConfig: an on-failure destination is for stream sources; a queue's "
                "failed messages go to its dead-letter queue"
            )
        if (
            not isinstance(value, tuple | list)
            or len(value) != 2
            or value[0] not in ("queue", "topic")
            or not isinstance(value[1], str)
        ):
            raise InvalidArgument('on_failure: ("queue" | "topic", name)')
        if value[0] == "queue":
            self.store.queue(value[1])
        else:
            self.store.topic(value[1])
        return (value[0], value[1])

    def _start_stream_position(self, trigger: Trigger) -> None:
        """Fix a new stream trigger's start in its consumer's checkpoints."""
        stream = self.store.stream(trigger.source)
        consumer = stream.consumer(trigger.consumer)  # registers it
        if trigger.starting_position == "LATEST":
            consumer.reset("LATEST")
        elif trigger.starting_position == "AT_TIMESTAMP":
            from datetime import UTC, datetime

            assert trigger.starting_position_timestamp is not None
            at = datetime.fromtimestamp(trigger.starting_position_timestamp, UTC)
            for shard in stream.shards():
                iterator = stream.get_shard_iterator(shard.shard_id, "AT_TIMESTAMP", timestamp=at)
                got = stream.get_records(iterator, 1)
                if got.records:
                    from tidelog.streams import parse_sequence_number

                    offset = parse_sequence_number(got.records[0].sequence_number)[1]
                    consumer.seek(shard.shard_id, offset)
                else:
                    consumer.reset("LATEST", shard.shard_id)

    def _subscribe_topic(
        self, trigger: Trigger, function: Function, filter_policy: Mapping[str, Any] | None
    ) -> Trigger:
        topic = self.store.topic(trigger.source)
        if topic.fifo:
            raise InvalidArgument(
                "a FIFO topic delivers to FIFO queues only: subscribe a FIFO queue and map it"
            )
        queue_name = TRIGGER_QUEUE_PREFIX + trigger.uuid.replace("-", "")
        queue = self.store.create_queue(
            queue_name,
            visibility_timeout=max(30, function.timeout + 30),
            retention=14 * 24 * 3600,
            exist_ok=True,
        )
        subscription = topic.subscribe(queue, filter_policy=filter_policy)
        return replace(trigger, queue=queue_name, subscription=subscription.id)


def _trigger_data(trigger: Trigger) -> dict[str, Any]:
    data = asdict(trigger)
    if data["on_failure"] is not None:
        data["on_failure"] = list(data["on_failure"])
    return data


def _check_settings(kind: str, **s: Any) -> dict[str, Any]:
    """Lambda's rules for a mapping's settings on a source of `kind`."""
    stream = kind == "stream"
    batch = s["batch_size"]
    window = _check_int("batching_window", s["batching_window"], 0, WINDOW_MAX)
    if batch is None:
        batch = 100 if stream else 10 if kind == "queue" else 1
    if kind == "topic":
        _check_int("batch_size", batch, 1, 1)
    else:
        _check_int("batch_size", batch, 1, BATCH_MAX)
    if kind == "queue" and batch > SQS_BATCH_NO_WINDOW_MAX and window < 1:
        raise InvalidArgument(
            "Maximum batch window in seconds must be greater than 0 if maximum batch size is "
            "greater than 10"
        )
    concurrency = s["maximum_concurrency"]
    if concurrency is not None:
        if kind != "queue":
            raise InvalidArgument("ScalingConfig.MaximumConcurrency: for queue sources only")
        _check_int("maximum_concurrency", concurrency, CONCURRENCY_MIN, CONCURRENCY_MAX)
    position, timestamp = s["starting_position"], s["starting_position_timestamp"]
    if stream:
        if position not in STARTING_POSITIONS:
            raise InvalidArgument(
                f"StartingPosition: {position!r} is not TRIM_HORIZON, LATEST or AT_TIMESTAMP "
                "(required for stream sources)"
            )
        if (position == "AT_TIMESTAMP") != (timestamp is not None):
            raise InvalidArgument("StartingPositionTimestamp: given exactly with AT_TIMESTAMP")
        if timestamp is not None and (
            isinstance(timestamp, bool) or not isinstance(timestamp, int | float)
        ):
            raise InvalidArgument("StartingPositionTimestamp: seconds since the epoch")
    elif position is not None:
        raise InvalidArgument("StartingPosition: for stream sources only")
    retries = s["maximum_retry_attempts"]
    age = s["maximum_record_age"]
    parallel = s["parallelization_factor"]
    bisect = _check_bool("bisect_on_error", s["bisect_on_error"])
    if stream:
        if retries != -1:
            _check_int("maximum_retry_attempts", retries, 0, RETRY_MAX)
        if age != -1:
            _check_int("maximum_record_age", age, RECORD_AGE_MIN, RECORD_AGE_MAX)
        _check_int("parallelization_factor", parallel, 1, PARALLELIZATION_MAX)
    elif (retries, age, parallel, bisect) != (-1, -1, 1, False):
        raise InvalidArgument(
            "MaximumRetryAttempts, MaximumRecordAgeInSeconds, ParallelizationFactor and "
            "BisectBatchOnFunctionError are for stream sources only"
        )
    report = _check_bool("report_batch_item_failures", s["report_batch_item_failures"])
    if kind == "topic" and report:
        raise InvalidArgument("ReportBatchItemFailures: for queue and stream sources")
    criteria = s["filter_criteria"]
    if kind == "topic" and criteria:
        raise InvalidArgument("FilterCriteria: a topic trigger filters with its filter_policy")
    compile_filters(criteria)
    return {
        "batch_size": batch,
        "batching_window": window,
        "maximum_concurrency": concurrency,
        "starting_position": position,
        "starting_position_timestamp": None if timestamp is None else float(timestamp),
        "maximum_retry_attempts": retries,
        "maximum_record_age": age,
        "bisect_on_error": bisect,
        "parallelization_factor": parallel,
        "filter_criteria": dict(criteria) if criteria else None,
        "report_batch_item_failures": report,
    }


def _check_fifo(fifo: bool, batching_window: int) -> None:
    """Lambda's extra rule for FIFO queues: no batching window (so, with the rule for
    all queues, batches of at most 10)."""
    if fifo and batching_window:
        raise InvalidArgument("Batching window is not supported for FIFO queues")


def _source_of(source: object) -> tuple[str, str]:
    from tidelog.queues import Queue
    from tidelog.streams import Stream
    from tidelog.topics import Topic

    if isinstance(source, Queue):
        return "queue", source.name
    if isinstance(source, Stream):
        return "stream", source.name
    if isinstance(source, Topic):
        return "topic", source.name
    if (
        isinstance(source, tuple)
        and len(source) == 2
        and source[0] in ("queue", "stream", "topic")
        and isinstance(source[1], str)
    ):
        return source[0], source[1]
    raise InvalidArgument('source: a Queue, Stream or Topic, or ("queue"|"stream"|"topic", name)')


def _function_name(name: object) -> str:
    if isinstance(name, str) and name.startswith("arn:aws:lambda:"):
        parts = name.split(":")
        if len(parts) >= 7 and parts[5] == "function":
            return parts[6]
    if not isinstance(name, str):
        raise InvalidArgument("function: a name or ARN")
    return name


def _check_handler(handler: object) -> str:
    if (
        not isinstance(handler, str)
        or not HANDLER_RE.fullmatch(handler)
        or (":" not in handler and "." not in handler)
    ):
        raise InvalidArgument(
            f"handler {handler!r}: module.function or package.module:function (1-128 characters)"
        )
    return handler


def _check_runtime(runtime: object) -> str:
    if runtime not in RUNTIMES:
        raise InvalidArgument(
            f"Value {runtime!r} at 'runtime' failed to satisfy constraint: Member must satisfy "
            f"enum value set: [{', '.join(RUNTIMES)}] (tidelog runs Python handlers)"
        )
    return str(runtime)


def _check_python(python: object) -> str | None:
    if python is None:
        return None
    if not isinstance(python, str) or not os.access(python, os.X_OK):
        raise InvalidArgument(f"python {python!r}: not an executable interpreter")
    return python


def _check_description(text: object) -> str:
    if not isinstance(text, str) or len(text) > 256:
        raise InvalidArgument("description: at most 256 characters")
    return text


def _now_ms() -> int:
    return int(time.time() * 1000)


def is_internal_queue(name: str) -> bool:
    """Queues tidelog made for triggers (a topic trigger's, a function's async queue)."""
    return name.startswith((TRIGGER_QUEUE_PREFIX, ASYNC_QUEUE_PREFIX))


__all__ = ["Function", "Trigger", "Triggers", "is_internal_queue"]
