"""The background workers of `tidelog serve`: delivery streams, SQL applications,
topics' HTTP/S subscriptions and triggers (event source mappings).

    with Workers(store):   # or workers.start() ... workers.stop()
        ...

A supervisor thread looks at the store's catalog every `poll_interval`
seconds and keeps one worker for each delivery stream (a `Deliverer` of that
one stream, which flushes it as its buffering hints fall due) and one for
each SQL application whose state is running (an `ApplicationWorker`). What
is created, started, stopped or deleted while the server runs, by this
process or another (the library, the CLI, the wire API), is picked up at the
next look.

One worker per delivery stream and per application, not one for all, so
that one failing destination (a failed write is retried with backoff for the
stream's `retry_duration`, 300 s by default) or one failing query holds up
no other. Each worker is safe beside other runners of the same delivery
stream or application, in any process (`tidelog deliver`, `tidelog
run-app`, a library call): every batch and every window is committed
exactly once (engine/delivery.py, engine/sql.py).

Triggers run in a `TriggerRunner` (engine/trigger_runner.py), which has
its own supervisor with the same half-second look at the definitions.

Errors are logged to the logger "tidelog.server" (a repeat of the same
error is logged once) and stop no other worker. A delivery stream's failed
batch is retried at its next poll. An application that fails (its query on
real data, a deleted destination) is stopped by Application.run_once with
the error in `describe().error`; one whose worker ends with an error while
it is still marked running is restarted after a backoff that doubles from
1 s to 60 s. SQL applications need the optional duckdb and pyarrow packages
(`tidelog[sql]`); without them applications are not run and one warning
says so.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from typing import Self

import tidelog
from tidelog.delivery import Deliverer, DeliveryStream, FlushResult, list_delivery_streams
from tidelog.server.service import Service
from tidelog.sql import ApplicationWorker, SqlError, list_applications
from tidelog.topics import DeliveryWorker
from tidelog.trigger_runner import TriggerRunner

log = logging.getLogger("tidelog.server")

POLL_SECONDS = 0.5  # how often the catalog is looked at: changes are picked up within this
WORKER_POLL_SECONDS = 0.2  # how often each worker looks for a due batch or window
STOP_SECONDS = 10.0  # how long stop() waits for the workers, all together
RESTART_SECONDS_FIRST, RESTART_SECONDS_MAX = 1.0, 60.0


def sql_missing() -> str | None:
    """Why SQL applications cannot run here (the optional packages they need), or None."""
    for name in ("duckdb", "pyarrow"):
        try:
            importlib.import_module(name)
        except ImportError as exc:  # not installed, or installed but broken
            return f"{name}: {exc}"
    return None


class Workers(Service):
    """Runs every delivery stream and every running SQL application of `store`.

    The caller owns the store and closes it after `stop()`. `start()`
    looks at the catalog once, starts the workers it finds and the
    supervisor thread, and returns; `stop()` stops the supervisor and every
    worker (a batch or window being written is finished first) and joins
    them, waiting `stop_timeout` seconds at most in all. `poll()` is one
    look, for tests that drive it by hand. `run_applications` False runs no
    SQL application; None (the default) runs them if duckdb and pyarrow import,
    else logs one warning. Thread-safe.
    """

    def __init__(
        self,
        store: tidelog.Store,
        *,
        poll_interval: float = POLL_SECONDS,
        worker_poll_interval: float = WORKER_POLL_SECONDS,
        stop_timeout: float = STOP_SECONDS,
        run_applications: bool | None = None,
        run_triggers: bool = True,
    ) -> None:
        self.store = store
        self.poll_interval = poll_interval
        self.worker_poll_interval = worker_poll_interval
        self.stop_timeout = stop_timeout
        # None: run applications if duckdb and pyarrow import (tried when one is running).
        self.run_applications = run_applications
        self.deliverers: dict[str, Deliverer] = {}
        self.applications: dict[str, ApplicationWorker] = {}
        self._logged: dict[tuple[str, str], str] = {}  # (kind, name) -> the last error logged
        self._seen: dict[str, BaseException] = {}  # delivery stream -> its last error seen
        # application -> (not restarted before, failures in a row, when last started)
        self._restart: dict[str, tuple[float, int, float]] = {}
        self._lock = threading.Lock()  # one poll at a time, and none after stop()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self.topic_delivery: DeliveryWorker | None = None
        self.triggers: TriggerRunner | None = TriggerRunner(store) if run_triggers else None

    def __repr__(self) -> str:
        return (
            f"<tidelog Workers: {len(self.deliverers)} delivery streams, "
            f"{len(self.applications)} applications>"
        )

    def start(self) -> Self:
        # HTTP/S subscriptions' pending messages (confirmations, retries due)
        # are delivered from their durable queues, also those left by a
        # process that stopped before delivering them.
        self.topic_delivery = self.store.start_topic_delivery()
        if self.triggers is not None:
            self.triggers.start()
        self.poll()
        self._thread = threading.Thread(target=self._run, name="tidelog-workers", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        deadline = time.monotonic() + self.stop_timeout
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(self.stop_timeout)
        with self._lock:
            deliverers, self.deliverers = list(self.deliverers.values()), {}
            applications, self.applications = list(self.applications.values()), {}
            # Ask every worker to stop first, then wait: they finish in parallel.
            if self.topic_delivery is not None:
                self.topic_delivery.stop(timeout=0)
            for deliverer in deliverers:
                deliverer.stop(timeout=0)
            for worker in applications:
                worker.close(timeout=0)
            for deliverer in deliverers:
                deliverer.stop(timeout=max(0.0, deadline - time.monotonic()))
            for worker in applications:
                worker.close(timeout=max(0.0, deadline - time.monotonic()))
            if self.topic_delivery is not None:
                self.topic_delivery.stop(timeout=max(0.0, deadline - time.monotonic()))
        if self.triggers is not None:
            self.triggers.stop_timeout = max(0.0, deadline - time.monotonic())
            self.triggers.stop()

    def _run(self) -> None:
        while not self._stopped.wait(self.poll_interval):
            try:
                self.poll()
            except Exception as exc:  # the store failed or closed: say so, look again later
                self._log_error("workers", "", exc)

    def poll(self) -> None:
        """Start workers for new delivery streams and running applications, retire the rest."""
        with self._lock:
            if self._stopped.is_set():
                return
            self._poll_deliveries()
            self._poll_applications()

    # -- delivery streams --------------------------------------------------------------

    def _poll_deliveries(self) -> None:
        names = {ds.name for ds in list_delivery_streams(self.store)}
        for name in sorted(names - self.deliverers.keys()):
            self.deliverers[name] = Deliverer(
                self.store,
                [name],
                poll_interval=self.worker_poll_interval,
                on_batch=self._delivered,
            ).start()
            log.info("delivery stream %r: delivering", name)
        for name in sorted(self.deliverers.keys() - names):  # deleted
            self.deliverers.pop(name).stop(self.stop_timeout)
            self._seen.pop(name, None)
            self._logged.pop(("delivery stream", name), None)
        for name, deliverer in self.deliverers.items():
            errors = deliverer.errors  # replaced, never changed in place: safe to read
            if not errors or errors[-1][1] is self._seen.get(name):
                continue
            self._seen[name] = errors[-1][1]
            # A failed batch stays planned and is retried at the next poll.
            self._log_error("delivery stream", name, errors[-1][1])

    def _delivered(self, ds: DeliveryStream, result: FlushResult) -> None:
        """A batch landed (in the deliverer's thread): a later failure is news again."""
        self._logged.pop(("delivery stream", ds.name), None)

    # -- applications ------------------------------------------------------------------

    def _poll_applications(self) -> None:
        running: set[str] = set()
        try:
            for app in list_applications(self.store):
                if app.running:
                    running.add(app.name)
        except tidelog.NotFound:
            return  # one was deleted while we looked: look again next time
        for name, worker in list(self.applications.items()):
            if worker.error is None:
                continue
            del self.applications[name]  # its thread ended with this error
            if isinstance(worker.error, SqlError) or not _still_running(self.store, name):
                # run_once stopped the application and recorded the error in describe().error.
                self._log_error("application", name, worker.error, "stopped")
                continue
            _, failures, started = self._restart.get(name, (0.0, 0, 0.0))
            if time.monotonic() - started > RESTART_SECONDS_MAX:
                failures = 0  # it ran well for a while: start the backoff over
            delay = min(RESTART_SECONDS_FIRST * 2**failures, RESTART_SECONDS_MAX)
            self._restart[name] = (time.monotonic() + delay, failures + 1, started)
            self._log_error("application", name, worker.error, f"restarting in {delay:g} s")
        for name in sorted(self.applications.keys() - running):  # stopped or deleted
            self.applications.pop(name).close(self.stop_timeout)
            log.info("application %r: no longer running", name)
        for name in [name for name in self._restart if name not in running]:
            del self._restart[name]
        for key in [key for key in self._logged if key[0] == "application"]:
            if key[1] not in running:
                del self._logged[key]  # a new failure after a start is logged again
        if not running:
            return
        if self.run_applications is None:
            missing = sql_missing()
            self.run_applications = missing is None
            if missing is not None:
                log.warning(
                    "SQL applications are not run: they need duckdb and pyarrow "
                    "(pip install 'tidelog[sql]'; %s); marked running: %s",
                    missing,
                    ", ".join(sorted(running)),
                )
        if not self.run_applications:
            return
        for name in sorted(running - self.applications.keys()):
            not_before, failures, _ = self._restart.get(name, (0.0, 0, 0.0))
            if time.monotonic() < not_before:
                continue
            try:
                app = tidelog.Application(self.store, name)
            except tidelog.NotFound:
                continue
            self.applications[name] = app.run_in_background(poll_interval=self.worker_poll_interval)
            if failures:
                self._restart[name] = (not_before, failures, time.monotonic())
            log.info("application %r: running", name)

    # -- errors ------------------------------------------------------------------------

    def _log_error(self, kind: str, name: str, exc: BaseException, then: str = "") -> None:
        message = f"{type(exc).__name__}: {exc}"
        if self._logged.get((kind, name)) == message:
            return  # the same failure again: said already
        self._logged[(kind, name)] = message
        what = f"{kind} {name!r}" if name else kind
        log.error("%s: %s%s", what, message, f" ({then})" if then else "")


def _still_running(store: tidelog.Store, name: str) -> bool:
    try:
        return tidelog.Application(store, name).running
    except tidelog.NotFound:
        return False
