"""Long polls (ReceiveMessage with WaitTimeSeconds) that wait on the event loop.

A long poll used to block a pool thread for up to 20 s, so a few hundred of
them exhausted the pool and every other request waited. Now the handler
looks once (`Context.long_poll`) and, finding nothing, raises `WouldWait`;
the request then waits here as an asyncio future, holding no thread, and is
made again when its queue may have something (or once more, as the final
look, when its wait is over).

One watcher thread per app decides when: it sleeps in `Store.wait_for_commit`
(woken at once by this process's commits) for at most 50 ms (how soon other
processes' sends are seen), then takes `Queue.receive_state()` (one read
transaction) of each queue that has waiters. When a queue says it may have
something and its signature changed since the last look (or a second
passed: a lease deep in the due index may expire without changing it), the
oldest waiter is woken. Its retry is itself a commit, which wakes the
watcher again, so a backlog drains one waiter after another, and a single
message wakes one waiter rather than a thousand.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import time

import tidelog

CROSS_PROCESS_POLL_SECONDS = 0.05  # as the engine's own long poll
RETRY_ANYWAY_SECONDS = 1.0


class _Waiters:
    __slots__ = ("queue", "futures", "signature", "woken_at")

    def __init__(self, queue: tidelog.Queue) -> None:
        self.queue = queue
        self.futures: collections.deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]
        self.futures = collections.deque()
        self.signature: object = None
        self.woken_at = 0.0


class LongPolls:
    """The waiting long polls of one app (thread-safe; see the module docstring)."""

    def __init__(self, store: tidelog.Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._queues: dict[str, _Waiters] = {}
        self._waiting = threading.Event()  # set while any poll waits
        self._closed = False
        self._thread = threading.Thread(target=self._watch, name="tidelog-long-polls", daemon=True)
        self._thread.start()

    @property
    def waiting(self) -> int:
        """How many polls wait now."""
        with self._lock:
            return sum(len(w.futures) for w in self._queues.values())

    async def wait(self, queue: tidelog.Queue, seconds: float) -> None:
        """Return when `queue` may have a message for this poll, or after `seconds`."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            waiters = self._queues.get(queue.name)
            if waiters is None:
                waiters = self._queues[queue.name] = _Waiters(queue)
            waiters.futures.append((loop, future))
            self._waiting.set()
        try:
            await asyncio.wait_for(asyncio.shield(future), seconds)
        except TimeoutError:
            pass
        finally:
            with self._lock:
                current = self._queues.get(queue.name)
                if current is not None:
                    with contextlib.suppress(ValueError):  # woken: the watcher took it out
                        current.futures.remove((loop, future))
                    if not current.futures:
                        del self._queues[queue.name]

    def release_all(self) -> None:
        """Wake every waiting poll now (the server is stopping: they answer)."""
        with self._lock:
            wake = [pair for w in self._queues.values() for pair in w.futures]
            for waiters in self._queues.values():
                waiters.futures.clear()
        for loop, future in wake:
            _resolve(loop, future)

    def close(self) -> None:
        """Stop the watcher and wake every waiting poll."""
        self.release_all()
        self._closed = True
        self._waiting.set()
        self._thread.join(5)

    # -- the watcher thread ------------------------------------------------------------

    def _watch(self) -> None:
        while not self._closed:
            if not self._waiting.wait(1.0):
                continue
            self.store.wait_for_commit(CROSS_PROCESS_POLL_SECONDS)
            with self._lock:
                queues = list(self._queues.values())
                if not queues:
                    self._waiting.clear()
                    continue
            for waiters in queues:
                self._look(waiters)

    def _look(self, waiters: _Waiters) -> None:
        try:
            available, signature = waiters.queue.receive_state()
        except tidelog.Error:
            available, signature = True, None  # deleted (or failing): let the retry say so
            with self._lock:
                wake = list(waiters.futures)
                waiters.futures.clear()
            for loop, future in wake:
                _resolve(loop, future)
            return
        now = time.monotonic()
        if not available:
            waiters.signature = signature
            return
        if signature == waiters.signature and now - waiters.woken_at < RETRY_ANYWAY_SECONDS:
            return
        with self._lock:
            while waiters.futures:
                loop, future = waiters.futures.popleft()
                if not future.done():
                    break
            else:
                return
        waiters.signature, waiters.woken_at = signature, now
        _resolve(loop, future)


def _resolve(loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
    def settle() -> None:
        if not future.done():
            future.set_result(None)

    with contextlib.suppress(RuntimeError):  # the loop is closed: the server stopped
        loop.call_soon_threadsafe(settle)
