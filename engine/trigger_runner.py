"""Running event source mappings: `TriggerRunner` (docs/triggers.md, "Running").

    with tidelog.TriggerRunner(store):   # or runner.start() ... runner.stop()
        ...

A supervisor thread rereads the definitions (engine/triggers.py) every
`poll_interval` seconds and keeps one *run* per enabled mapping whose
function exists, restarting it when the mapping or function changes, plus
one per function with queued asynchronous invocations. A run holds only
the public engine API:

- a queue mapping: pollers (threads; MaximumConcurrency of them, default 5)
  long-poll `Queue.receive` (woken at once by sends in this process), gather a
  batch (BatchSize, MaximumBatchingWindowInSeconds), invoke, then
  `delete_many` what succeeded. Failed messages keep their lease, come back
  when the visibility timeout ends and go to the queue's dead-letter queue by
  its maxReceiveCount, as on Lambda;
- a stream mapping: a consumer group (engine/stream_groups.py) of up to one
  worker thread per shard; each batch is retried by Lambda's rules and the
  shard is checkpointed only after it is settled (succeeded, or discarded
  to the on-failure destination);
- a topic mapping and a function's asynchronous invocations: pollers of an
  internal queue, one message an invocation, two retries, then the
  function's dead-letter queue.

All of it is at-least-once: nothing is deleted or checkpointed before the
handler returned, so a runner killed at any point redelivers what it had
in hand. Several runners (in any processes) may run the same mappings:
queue leases and stream leases share the work.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from tidelog.errors import Error, InvalidArgument, NotFound, StaleReceipt
from tidelog.queues import Message, Queue
from tidelog.stream_groups import Checkpointer, LeaseLost, RecordProcessor
from tidelog.streams import StreamRecord
from tidelog.trigger_events import (
    compile_filters,
    kinesis_failure,
    kinesis_filter_document,
    kinesis_record,
    passes,
    sns_record,
    sqs_filter_document,
    sqs_record,
    topic_arn,
)
from tidelog.trigger_pool import Invocation, Pool, Spec
from tidelog.triggers import ASYNC_QUEUE_PREFIX, ASYNC_RETRIES, Function, Trigger, Triggers

if TYPE_CHECKING:
    from tidelog.store import Store

log = logging.getLogger("tidelog.triggers")

POLL_SECONDS = 0.5  # definitions are reread this often: changes are picked up within it
RECEIVE_WAIT_SECONDS = 1.0  # one long-poll slice; a stop is noticed within it
QUEUE_POLLERS_DEFAULT = 5
ASYNC_POLLERS = 2
STREAM_WORKERS_MAX = 8
STREAM_LEASE_MS = 5000  # a dead runner's shards are taken over within about 7 s
STATS_SECONDS = 1.0  # how often a run's counters are written for `tidelog info`
RELOAD_CHECK_SECONDS = 1.0  # how often a directory function's files are looked at
ASYNC_RETRY_SECONDS = (60, 120)  # Lambda's waits before the second and third attempts
RETRY_BACKOFF_MAX_SECONDS = 2.0  # between a stream batch's retries
STATS_DIR = ".stats"


# -- worker pools of one store handle ----------------------------------------------------------


class Pools:
    """The warm worker processes of every function, for one Store handle."""

    def __init__(self, triggers: Triggers) -> None:
        self.triggers = triggers
        self._pools: dict[str, Pool] = {}
        self._reload: dict[str, tuple[float, str]] = {}  # name -> (checked at, signature)
        self._lock = threading.Lock()

    def _code_version(self, function: Function) -> str:
        if function.code != "directory" or function.code_dir is None:
            return function.code_sha256
        now = time.monotonic()
        checked = self._reload.get(function.name)
        if checked is not None and now - checked[0] < RELOAD_CHECK_SECONDS:
            return checked[1]
        newest = 0
        for root, dirs, files in os.walk(function.code_dir):
            dirs[:] = [d for d in dirs if d != "__pycache__" and not d.startswith(".")]
            for name in files:
                with contextlib.suppress(OSError):
                    newest = max(newest, os.stat(os.path.join(root, name)).st_mtime_ns)
        signature = str(newest)
        self._reload[function.name] = (now, signature)
        return signature

    def spec(self, function: Function) -> Spec:
        path = self.triggers.log_path(function.name)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return Spec(
            name=function.name,
            handler=function.handler,
            timeout=function.timeout,
            memory_size=function.memory_size,
            environment=tuple(sorted(function.environment.items())),
            code_dir=function.code_dir,
            python=function.python,
            log_path=path,
            version=function.revision_id + ":" + self._code_version(function),
        )

    def pool(self, function: Function) -> Pool:
        spec = self.spec(function)
        with self._lock:
            current = self._pools.get(function.name)
            if current is not None and current.spec == spec:
                return current
            self._pools[function.name] = pool = Pool(spec)
        if current is not None:
            current.close()  # busy workers finish their invocation, then stop
        return pool

    def invoke(self, function: Function, event: Any, request_id: str | None = None) -> Invocation:
        return self.pool(function).invoke(event, request_id=request_id)

    def close(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()


_pools: weakref.WeakKeyDictionary[Store, Pools] = weakref.WeakKeyDictionary()
_pools_lock = threading.Lock()


def pools(store: Store) -> Pools:
    """The store handle's pools (made on first use; their workers end with the process)."""
    with _pools_lock:
        found = _pools.get(store)
        if found is None:
            found = _pools[store] = Pools(Triggers(store))
        return found


# -- statistics --------------------------------------------------------------------------------


@dataclass
class TriggerStats:
    """What a run has done since it started (in this runner)."""

    uuid: str
    state: str = "Enabled"
    invocations: int = 0
    errors: int = 0
    records: int = 0
    filtered: int = 0
    discarded: int = 0
    duration_ms_total: float = 0.0
    last_error: str | None = None
    last_error_ms: int | None = None
    last_invoked_ms: int | None = None
    last_processing_result: str = "No records processed"
    updated_ms: int = 0

    @property
    def duration_ms_mean(self) -> float:
        return self.duration_ms_total / self.invocations if self.invocations else 0.0


def _error_text(invocation: Invocation) -> str:
    error = invocation.error or {}
    return f"{error.get('errorType', 'Error')}: {error.get('errorMessage', '')}"


# -- runs --------------------------------------------------------------------------------------


class _Run:
    """One mapping's (or one function's async queue's) threads."""

    def __init__(self, runner: TriggerRunner, key: str, trigger: Trigger | None) -> None:
        self.runner = runner
        self.key = key
        self.trigger = trigger
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []
        self.stats = TriggerStats(key)
        self.lock = threading.Lock()
        self.failed: BaseException | None = None

    @property
    def store(self) -> Store:
        return self.runner.store

    def function(self, name: str) -> Function:
        return self.runner.triggers.function(name)

    def invoke(self, function: Function, event: Any, records: int, rid: str | None = None) -> Any:
        invocation = self.runner.pools.invoke(function, event, rid)
        now = int(time.time() * 1000)
        with self.lock:
            stats = self.stats
            stats.invocations += 1
            stats.duration_ms_total += invocation.duration_ms
            stats.last_invoked_ms = now
            if invocation.ok:
                stats.records += records
                stats.last_processing_result = "OK"
            else:
                stats.errors += 1
                stats.last_error = _error_text(invocation)
                stats.last_error_ms = now
                stats.last_processing_result = "PROBLEM: Function call failed"
        return invocation

    def spawn(self, target: Callable[[], None], name: str) -> None:
        def guarded() -> None:
            try:
                target()
            except NotFound as exc:  # the source or function went away: say so, stop
                self.fail(exc)
            except Exception as exc:
                log.exception("trigger %s: %s failed", self.key, name)
                self.fail(exc)

        thread = threading.Thread(target=guarded, name=f"tidelog-trigger-{name}", daemon=True)
        self.threads.append(thread)
        thread.start()

    def fail(self, exc: BaseException) -> None:
        with self.lock:
            self.failed = exc
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            self.stats.last_error_ms = int(time.time() * 1000)
            self.stats.last_processing_result = f"PROBLEM: {exc}"
        self.stop_event.set()

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self.stop_event.set()

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def sleep(self, seconds: float) -> bool:
        """Wait; True if the run is stopping."""
        return self.stop_event.wait(seconds)


def _delete(queue: Queue, messages: Sequence[Message]) -> None:
    """Delete received messages, ten a commit; a lease that expired meanwhile
    (the message is someone else's now) is left alone."""
    for start in range(0, len(messages), 10):
        chunk = messages[start : start + 10]
        with contextlib.suppress(StaleReceipt):
            queue.delete_many([m.receipt for m in chunk])


def item_failures(result: Any, known: set[str]) -> set[str] | None:
    """The failed item ids of a partial batch response (ReportBatchItemFailures),
    or None when the response makes the whole batch a failure (Lambda's rules:
    a null or empty response or list is success; an item without an
    itemIdentifier, an empty one or one not in the batch is complete failure)."""
    if result is None or result == "" or result == {}:
        return set()
    if not isinstance(result, dict):
        return None
    failures = result.get("batchItemFailures")
    if failures is None:
        return set()
    if not isinstance(failures, list):
        return None
    out = set()
    for item in failures:
        if not isinstance(item, dict):
            return None
        identifier = item.get("itemIdentifier")
        if not isinstance(identifier, str) or not identifier or identifier not in known:
            return None
        out.add(identifier)
    return out


class _QueueRun(_Run):
    """A queue mapping: pollers that receive, invoke and delete (module docstring)."""

    trigger: Trigger

    def start(self) -> None:
        trigger = self.trigger
        pollers = trigger.maximum_concurrency or QUEUE_POLLERS_DEFAULT
        self.filters = compile_filters(trigger.filter_criteria)
        for index in range(min(pollers, 64)):
            self.spawn(self._poll, f"{trigger.uuid[:8]}-{index}")

    def _poll(self) -> None:
        trigger = self.trigger
        queue = self.store.queue(trigger.source)
        fifo = queue.fifo
        while not self.stop_event.is_set():
            messages = self._collect(queue)
            if messages:
                self._handle(queue, fifo, messages)

    def _collect(self, queue: Queue) -> list[Message]:
        trigger = self.trigger
        first = queue.receive(min(10, trigger.batch_size), wait=RECEIVE_WAIT_SECONDS)
        if not first or trigger.batching_window == 0 or len(first) >= trigger.batch_size:
            return first
        messages = list(first)
        deadline = time.monotonic() + trigger.batching_window
        while len(messages) < trigger.batch_size and not self.stop_event.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            want = min(10, trigger.batch_size - len(messages))
            messages += queue.receive(want, wait=min(left, RECEIVE_WAIT_SECONDS))
        return messages

    def _handle(self, queue: Queue, fifo: bool, messages: list[Message]) -> None:
        trigger = self.trigger
        records = [sqs_record(m, queue.name, fifo, self.trigger.region) for m in messages]
        if self.filters:
            kept, dropped = [], []
            for message, record in zip(messages, records, strict=True):
                if passes(self.filters, sqs_filter_document(record)):
                    kept.append((message, record))
                else:
                    dropped.append(message)
            _delete(queue, dropped)  # Lambda deletes what no filter matches
            with self.lock:
                self.stats.filtered += len(dropped)
            if not kept:
                return
            messages = [m for m, _ in kept]
            records = [r for _, r in kept]
        function = self.function(trigger.function)
        invocation = self.invoke(function, {"Records": records}, len(records))
        if not invocation.ok:
            return  # every message comes back after its visibility timeout
        failed: set[str] | None = set()
        if trigger.report_batch_item_failures:
            failed = item_failures(invocation.result, {m.id for m in messages})
        if failed is None:
            with self.lock:
                self.stats.errors += 1
                self.stats.last_error = "the partial batch response is invalid: whole batch failed"
            return
        if failed and fifo:
            # A group's later messages must not pass its failed one: keep them too.
            groups = set()
            for message in messages:
                if message.id in failed:
                    groups.add(message.group_id)
                elif message.group_id in groups:
                    failed.add(message.id)
        _delete(queue, [m for m in messages if m.id not in failed])


class _Stopping(LeaseLost):
    """Raised out of process_records when the run stops mid-batch: nothing is checkpointed."""


class _ShardProcessor(RecordProcessor):
    def __init__(self, run: _StreamRun) -> None:
        self.run = run
        self.shard_id = ""

    def initialize(self, shard_id: str, checkpoint: str | None) -> None:
        self.shard_id = shard_id

    def process_records(self, records: list[StreamRecord], checkpointer: Checkpointer) -> None:
        run = self.run
        kept = [
            r
            for r in records
            if not run.filters
            or passes(
                run.filters,
                kinesis_filter_document(
                    kinesis_record(r, run.trigger.source, run.trigger.region), r.data
                ),
            )
        ]
        with run.lock:
            run.stats.filtered += len(records) - len(kept)
        factor = run.trigger.parallelization_factor
        if kept and factor == 1:
            run.deliver(self.shard_id, kept, checkpointer)
        elif kept:
            # Records of one partition key stay in one part, in order; parts run at once.
            parts: dict[int, list[StreamRecord]] = {}
            for record in kept:
                parts.setdefault(hash(record.partition_key) % factor, []).append(record)
            errors: list[BaseException] = []

            def part_run(part: list[StreamRecord]) -> None:
                try:
                    run.deliver(self.shard_id, part, None)
                except BaseException as exc:
                    errors.append(exc)

            threads = [threading.Thread(target=part_run, args=(p,)) for p in parts.values()]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if errors:
                raise errors[0]
        if run.stop_event.is_set():
            raise _Stopping("stopping")
        checkpointer.checkpoint()

    def shutdown_requested(self, checkpointer: Checkpointer) -> None:
        pass  # what is settled is checkpointed already; the rest is redelivered


class _StreamRun(_Run):
    """A stream mapping: a consumer group's workers, Lambda's retry rules per batch."""

    trigger: Trigger

    def start(self) -> None:
        trigger = self.trigger
        stream = self.store.stream(trigger.source)
        self.filters = compile_filters(trigger.filter_criteria)
        group = stream.consumer_group(trigger.consumer, initial_position="TRIM_HORIZON")
        count = max(1, min(len(stream.shards(open_only=True)), STREAM_WORKERS_MAX))
        self.workers = [
            group.worker(
                lambda: _ShardProcessor(self),
                batch=trigger.batch_size,
                lease_ms=STREAM_LEASE_MS,
            )
            for _ in range(count)
        ]
        for index, worker in enumerate(self.workers):
            self.spawn(worker.run, f"{trigger.uuid[:8]}-{index}")

    def stop(self) -> None:
        super().stop()
        for worker in getattr(self, "workers", []):
            worker.stop()

    def deliver(
        self, shard_id: str, batch: list[StreamRecord], checkpointer: Checkpointer | None
    ) -> None:
        """Invoke on `batch` until each record succeeded or was discarded (Lambda's rules:
        ReportBatchItemFailures, BisectBatchOnFunctionError, MaximumRetryAttempts,
        MaximumRecordAgeInSeconds). Raises _Stopping when the run stops first."""
        trigger = self.trigger
        source = trigger.source
        pending: deque[tuple[list[StreamRecord], int]] = deque([(batch, 0)])
        while pending:
            if self.stop_event.is_set():
                raise _Stopping("stopping")
            part, retries = pending[0]
            if trigger.maximum_record_age != -1:
                oldest_ms = int(time.time() * 1000) - trigger.maximum_record_age * 1000
                expired = [r for r in part if r.arrival_timestamp_ms < oldest_ms]
                if expired:
                    self.discard(shard_id, expired, "RecordAgeExceeded", retries, None)
                    part = [r for r in part if r.arrival_timestamp_ms >= oldest_ms]
                    if not part:
                        pending.popleft()
                        continue
                    pending[0] = (part, retries)
            function = self.function(trigger.function)
            event = {"Records": [kinesis_record(r, source, trigger.region) for r in part]}
            invocation = self.invoke(function, event, len(part))
            failed_at = None
            if invocation.ok:
                if not trigger.report_batch_item_failures:
                    pending.popleft()
                    if checkpointer is not None:
                        checkpointer.checkpoint(part[-1])
                    continue
                sequence = {r.sequence_number: i for i, r in enumerate(part)}
                failed = item_failures(invocation.result, set(sequence))
                if failed is not None and not failed:
                    pending.popleft()
                    if checkpointer is not None:
                        checkpointer.checkpoint(part[-1])
                    continue
                if failed is not None:
                    failed_at = min(sequence[s] for s in failed)
            if failed_at is not None:
                # Lambda checkpoints before the first failed record and retries from it.
                if failed_at > 0 and checkpointer is not None:
                    checkpointer.checkpoint(part[failed_at - 1])
                part = part[failed_at:]
            elif trigger.bisect_on_error and len(part) > 1:
                pending.popleft()
                half = len(part) // 2
                pending.appendleft((part[half:], retries))
                pending.appendleft((part[:half], retries))
                continue
            retries += 1
            if trigger.maximum_retry_attempts != -1 and retries > trigger.maximum_retry_attempts:
                pending.popleft()
                self.discard(shard_id, part, "RetryAttemptsExhausted", retries, invocation)
                if checkpointer is not None:
                    checkpointer.checkpoint(part[-1])
                continue
            pending[0] = (part, retries)
            if self.sleep(min(RETRY_BACKOFF_MAX_SECONDS, 0.05 * 2**retries)):
                raise _Stopping("stopping")

    def discard(
        self,
        shard_id: str,
        records: list[StreamRecord],
        condition: str,
        retries: int,
        invocation: Invocation | None,
    ) -> None:
        trigger = self.trigger
        with self.lock:
            self.stats.discarded += len(records)
        destination = trigger.on_failure
        if destination is None:
            return
        document = kinesis_failure(
            request_id=invocation.request_id if invocation else "",
            function_name=trigger.function,
            condition=condition,
            invoke_count=retries,
            function_error=invocation.function_error if invocation else None,
            shard_id=shard_id,
            records=records,
            stream_name=trigger.source,
            now_ms=int(time.time() * 1000),
        )
        body = json.dumps(document)
        kind, name = destination
        if kind == "queue":
            self.store.queue(name).send(body.encode())
        else:
            self.store.topic(name).publish(body.encode())


class _OneByOneRun(_Run):
    """A queue of single events with Lambda's asynchronous retry rules: a topic
    mapping's internal queue, or a function's queue of Event invocations."""

    def __init__(
        self,
        runner: TriggerRunner,
        key: str,
        trigger: Trigger | None,
        queue_name: str,
        function_name: str,
    ) -> None:
        super().__init__(runner, key, trigger)
        self.queue_name = queue_name
        self.function_name = function_name

    def start(self) -> None:
        for index in range(ASYNC_POLLERS):
            self.spawn(self._poll, f"{self.key[:16]}-{index}")

    def _event(self, message: Message) -> tuple[Any, str | None]:
        trigger = self.trigger
        if trigger is None:
            body = json.loads(message.body)
            return body["event"], body.get("request_id")
        subscription_arn = f"{topic_arn(trigger.source)}:{trigger.subscription}"
        return {"Records": [sns_record(json.loads(message.body), subscription_arn)]}, None

    def _poll(self) -> None:
        queue = self.store.queue(self.queue_name)
        delays = self.runner.async_retry_seconds
        while not self.stop_event.is_set():
            for message in queue.receive(1, wait=RECEIVE_WAIT_SECONDS):
                try:
                    event, request_id = self._event(message)
                except (ValueError, KeyError):
                    queue.delete(message.receipt)  # not an event of ours: nothing to run
                    continue
                function = self.function(self.function_name)
                invocation = self.invoke(function, event, 1, request_id)
                with contextlib.suppress(StaleReceipt):
                    if invocation.ok:
                        queue.delete(message.receipt)
                    elif message.receive_count <= ASYNC_RETRIES:
                        delay = delays[min(message.receive_count, len(delays)) - 1]
                        queue.change_visibility(message.receipt, delay)
                    else:
                        self._dead_letter(function, event, invocation)
                        queue.delete(message.receipt)

    def _dead_letter(self, function: Function, event: Any, invocation: Invocation) -> None:
        with self.lock:
            self.stats.discarded += 1
        if function.dead_letter is None:
            return
        error = invocation.error or {}
        self.store.queue(function.dead_letter).send(
            json.dumps(event).encode(),
            attributes={
                "RequestID": invocation.request_id,
                "ErrorCode": "200",
                "ErrorMessage": str(error.get("errorMessage", ""))[:1024] or "Unhandled",
            },
        )


# -- the runner --------------------------------------------------------------------------------


class TriggerRunner:
    """Runs every enabled event source mapping of `store` (see the module docstring).

    The caller owns the store and closes it after `stop()`. `start()` reads
    the definitions once, starts the runs and the supervisor, and returns;
    `stop()` stops them (a batch being invoked is finished first, up to
    `stop_timeout` seconds) and the worker processes. `poll()` is one look,
    for tests. `async_retry_seconds` are the waits before the retries of an
    asynchronous invocation (Lambda's: 60 and 120 s). Thread-safe.
    """

    def __init__(
        self,
        store: Store,
        *,
        poll_interval: float = POLL_SECONDS,
        stop_timeout: float = 10.0,
        async_retry_seconds: tuple[int, ...] = ASYNC_RETRY_SECONDS,
    ) -> None:
        if not async_retry_seconds or not all(
            isinstance(s, int) and 0 <= s <= 43200 for s in async_retry_seconds
        ):
            raise InvalidArgument("async_retry_seconds: whole seconds 0-43200")
        self.store = store
        self.triggers = Triggers(store)
        self.pools = pools(store)
        self.poll_interval = poll_interval
        self.stop_timeout = stop_timeout
        self.async_retry_seconds = async_retry_seconds
        self.runs: dict[str, _Run] = {}
        self._signatures: dict[str, Any] = {}
        self._version = -1
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._stats_written = 0.0

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> Self:
        self.poll()
        self._thread = threading.Thread(target=self._loop, name="tidelog-triggers", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(self.stop_timeout)
        with self._lock:
            runs, self.runs = list(self.runs.values()), {}
        for run in runs:
            run.stop()
        deadline = time.monotonic() + self.stop_timeout
        for run in runs:
            run.join(max(0.0, deadline - time.monotonic()))
        self._write_stats(runs)
        self.pools.close()

    def _loop(self) -> None:
        while not self._stopped.wait(self.poll_interval):
            try:
                self.poll()
            except Exception:
                log.exception("triggers: looking at the definitions failed")

    def poll(self) -> None:
        """Start runs for new or changed mappings, stop those gone or disabled."""
        with self._lock:
            if self._stopped.is_set():
                return
            wanted: dict[str, tuple[Any, Callable[[], _Run]]] = {}
            functions = {f.name: f for f in self.triggers.functions()}
            for trigger in self.triggers.triggers():
                function = functions.get(trigger.function)
                if not trigger.enabled or function is None:
                    continue
                signature = (trigger, function.revision_id)
                wanted[trigger.uuid] = (signature, self._maker(trigger))
            for function in functions.values():
                queue_name = ASYNC_QUEUE_PREFIX + function.name
                with contextlib.suppress(NotFound):
                    self.store.queue(queue_name)
                    key = "async:" + function.name
                    wanted[key] = ((queue_name, function.revision_id), self._async_maker(function))
            for key in list(self.runs):
                run = self.runs[key]
                if key not in wanted or self._signatures.get(key) != wanted[key][0]:
                    run.stop()
                    run.join(self.stop_timeout)
                    del self.runs[key]
                    self._signatures.pop(key, None)
                elif run.failed is not None and run.stop_event.is_set():
                    # Its source went away or it broke: try again at the next look.
                    del self.runs[key]
                    self._signatures.pop(key, None)
                    self._write_stats([run])
            for key, (signature, make) in wanted.items():
                if key in self.runs:
                    continue
                run = make()
                self.runs[key] = run
                self._signatures[key] = signature
                try:
                    run.start()
                except NotFound as exc:
                    run.fail(exc)
            if time.monotonic() - self._stats_written >= STATS_SECONDS:
                self._write_stats(list(self.runs.values()))

    def _async_maker(self, function: Function) -> Callable[[], _Run]:
        key, queue = "async:" + function.name, ASYNC_QUEUE_PREFIX + function.name
        return lambda: _OneByOneRun(self, key, None, queue, function.name)

    def _maker(self, trigger: Trigger) -> Callable[[], _Run]:
        if trigger.source_kind == "queue":
            return lambda: _QueueRun(self, trigger.uuid, trigger)
        if trigger.source_kind == "stream":
            return lambda: _StreamRun(self, trigger.uuid, trigger)
        assert trigger.queue is not None
        queue = trigger.queue
        return lambda: _OneByOneRun(self, trigger.uuid, trigger, queue, trigger.function)

    def stats(self) -> dict[str, TriggerStats]:
        """Each run's counters (mappings by UUID, async queues as "async:<function>")."""
        with self._lock:
            runs = list(self.runs.values())
        out = {}
        for run in runs:
            with run.lock:
                out[run.key] = TriggerStats(**asdict(run.stats))
        return out

    def _write_stats(self, runs: Sequence[_Run]) -> None:
        self._stats_written = time.monotonic()
        if not runs:
            return  # a store without triggers gets no folder for them
        folder = Path(self.store.path) / "functions" / STATS_DIR
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for run in runs:
                with run.lock:
                    run.stats.updated_ms = int(time.time() * 1000)
                    data = asdict(run.stats)
                name = base64.urlsafe_b64encode(run.key.encode()).decode()
                target = folder / f"{name}.json"
                staging = folder / f".{name}.{os.getpid()}.tmp"
                staging.write_text(json.dumps(data))
                os.replace(staging, target)
        except OSError as exc:
            log.warning("triggers: writing statistics failed: %s", exc)


def read_stats(store: Store, key: str) -> TriggerStats | None:
    """The counters a runner last wrote for `key` (any process), or None."""
    name = base64.urlsafe_b64encode(key.encode()).decode()
    path = Path(store.path) / "functions" / STATS_DIR / f"{name}.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return TriggerStats(**data)


def lag(store: Store, trigger: Trigger) -> int | None:
    """Messages or records waiting for the trigger (None if its source is gone)."""
    try:
        if trigger.source_kind == "stream":
            stream = store.stream(trigger.source)
            return sum(s.records_behind for s in stream.consumer(trigger.consumer).lag(ages=False))
        name = trigger.source if trigger.source_kind == "queue" else trigger.queue
        assert name is not None
        counts = store.queue(name).approximate_counts()
        return counts.visible + counts.in_flight
    except (NotFound, Error):
        return None


def status(store: Store, trigger: Trigger) -> dict[str, Any]:
    """A mapping's state, lag and counters (as a runner last wrote them) for
    `tidelog info`, `tidelog triggers` and the console. Reads only."""
    stats = read_stats(store, trigger.uuid)
    doc: dict[str, Any] = {
        "uuid": trigger.uuid,
        "function": trigger.function,
        "source": f"{trigger.source_kind}:{trigger.source}",
        "state": trigger.state,
        "lag": lag(store, trigger),
        "invocations": stats.invocations if stats else 0,
        "errors": stats.errors if stats else 0,
        "records": stats.records if stats else 0,
        "duration_ms_mean": round(stats.duration_ms_mean, 3) if stats else None,
        "last_error": stats.last_error if stats else None,
        "last_processing_result": (
            stats.last_processing_result if stats else "No records processed"
        ),
        "stats_updated_ms": stats.updated_ms if stats else None,
    }
    return doc


__all__ = [
    "Pools",
    "TriggerRunner",
    "TriggerStats",
    "item_failures",
    "lag",
    "pools",
    "read_stats",
    "status",
]
