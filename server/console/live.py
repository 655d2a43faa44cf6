"""Live figures for the console's charts, pushed as server-sent events.

A `Sampler` measures the store once a second while at least one page
watches (nothing runs otherwise): the running totals of every queue, topic
and stream (`Queue.stats`, the topic log's end, `Stream.stats`) and the
consumers' records behind (`Consumer.lag(ages=False)`), all from counters
and log ends, none of it reading a record or writing. Rates are the
differences of totals between two samples, per channel, so a channel
created or deleted between samples does not make a spike.

Sampling gets at most SAMPLE_SHARE_MAX of a core: when one pass takes
longer than that share of SAMPLE_SECONDS (thousands of channels on a slow
machine) the interval grows instead. The last HISTORY_SECONDS of samples
are kept in memory (store-wide, and per channel for the channels pages
have asked about), so a page that opens, or widens its time window, gets
the history at once.

An event stream lasts at most STREAM_SECONDS and then ends; the browser's
EventSource reconnects at once (`retry:`) and resumes after the last event
id it saw. So a graceful shutdown never waits long for a watching page:
uvicorn lets in-flight responses finish, and an endless stream never would.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import tidelog

SAMPLE_SECONDS = 1.0
SAMPLE_SHARE_MAX = 0.05
HISTORY_SECONDS = 3600
CHANNEL_HISTORIES_MAX = 32
STREAM_SECONDS = 5.0
RETRY_MS = 250


@dataclass
class Totals:
    """One pass over the store: totals by channel, and when it was taken."""

    at: float
    queues: dict[str, tidelog.QueueStats] = field(default_factory=dict)
    published: dict[str, int] = field(default_factory=dict)  # topic -> messages published
    put: dict[str, int] = field(default_factory=dict)  # stream -> records put
    lag: dict[str, int] = field(default_factory=dict)  # stream -> records behind, all consumers


def measure(store: tidelog.Store) -> Totals:
    """Read every channel's totals (thread: the console's executor)."""
    totals = Totals(time.time())
    for queue in store.queues():
        try:
            totals.queues[queue.name] = queue.stats()
        except tidelog.NotFound:
            continue
    for topic in store.topics():
        try:
            totals.published[topic.name] = store.log(topic.info.name).end_offset
        except tidelog.NotFound:
            continue
    for stream in store.streams():
        try:
            totals.put[stream.name] = stream.stats().records_total
            behind = 0
            for name in stream.consumers():
                behind += sum(
                    x.records_behind for x in tidelog.Consumer(stream, name).lag(ages=False)
                )
            totals.lag[stream.name] = behind
        except tidelog.NotFound:
            continue
    return totals


def _rate(now: Mapping[str, int], before: Mapping[str, int], seconds: float) -> float:
    """Sum of per-channel increases per second (channels in both samples only)."""
    grown = sum(max(0, value - before[name]) for name, value in now.items() if name in before)
    return round(grown / seconds, 3) if seconds > 0 else 0.0


def _queue_field(totals: Totals, name: str) -> dict[str, int]:
    return {q: getattr(stats, name) for q, stats in totals.queues.items()}


def store_sample(now: Totals, before: Totals | None) -> dict[str, Any]:
    """The store-wide figures of one sample (rates need the previous one)."""
    seconds = now.at - before.at if before is not None else 0.0
    previous = before or now

    def rate(kind: str) -> float:
        if kind in ("published", "put"):
            return _rate(getattr(now, kind), getattr(previous, kind), seconds)
        return _rate(_queue_field(now, kind), _queue_field(previous, kind), seconds)

    queues = now.queues.values()
    return {
        "t": int(now.at * 1000),
        "sent": rate("sent_total"),
        "received": rate("received_total"),
        "deleted": rate("deleted_total"),
        "published": rate("published"),
        "put": rate("put"),
        "visible": sum(q.visible for q in queues),
        "in_flight": sum(q.in_flight for q in queues),
        "delayed": sum(q.delayed for q in queues),
        "lag": sum(now.lag.values()),
    }


def channel_sample(channel: str, now: Totals, before: Totals | None) -> dict[str, Any] | None:
    """The figures of one channel ("queue:NAME", "topic:NAME", "stream:NAME"), or None."""
    kind, _, name = channel.partition(":")
    seconds = now.at - before.at if before is not None else 0.0
    previous = before or now
    out: dict[str, Any] = {"t": int(now.at * 1000)}
    if kind == "queue" and name in now.queues:
        stats = now.queues[name]
        for field_name, key in (
            ("sent_total", "sent"),
            ("received_total", "received"),
            ("deleted_total", "deleted"),
        ):
            out[key] = _rate(
                {name: getattr(stats, field_name)},
                _queue_field(previous, field_name),
                seconds,
            )
        out.update(visible=stats.visible, in_flight=stats.in_flight, delayed=stats.delayed)
        return out
    if kind == "topic" and name in now.published:
        out["published"] = _rate({name: now.published[name]}, previous.published, seconds)
        return out
    if kind == "stream" and name in now.put:
        out["put"] = _rate({name: now.put[name]}, previous.put, seconds)
        out["lag"] = now.lag.get(name, 0)
        return out
    return None


class Sampler:
    """Samples the store while pages watch; serves event streams. One per console."""

    def __init__(self, store: tidelog.Store, executor: Executor) -> None:
        self.store = store
        self.executor = executor
        self.samples: deque[tuple[int, dict[str, Any]]] = deque(maxlen=int(HISTORY_SECONDS))
        self.channels: OrderedDict[str, deque[tuple[int, dict[str, Any]]]] = OrderedDict()
        self.sequence = 0
        self.watchers = 0
        self.interval = SAMPLE_SECONDS
        self._previous: Totals | None = None
        self._task: asyncio.Task[None] | None = None
        self._tick: asyncio.Event | None = None
        self._closed = False

    def _channel_history(self, channel: str) -> deque[tuple[int, dict[str, Any]]]:
        history = self.channels.get(channel)
        if history is None:
            history = self.channels[channel] = deque(maxlen=int(HISTORY_SECONDS))
            while len(self.channels) > CHANNEL_HISTORIES_MAX:
                self.channels.popitem(last=False)
        self.channels.move_to_end(channel)
        return history

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self.watchers > 0 and not self._closed:
            started = time.perf_counter()
            try:
                totals = await loop.run_in_executor(self.executor, measure, self.store)
            except tidelog.Error:
                totals = None  # a closed or failed store: /health says why; try again
            took = time.perf_counter() - started
            if totals is not None:
                self._record(totals)
            self.interval = max(SAMPLE_SECONDS, took / SAMPLE_SHARE_MAX)
            await asyncio.sleep(max(0.0, self.interval - took))

    def _record(self, totals: Totals) -> None:
        self.sequence += 1
        self.samples.append((self.sequence, store_sample(totals, self._previous)))
        for channel, history in self.channels.items():
            sample = channel_sample(channel, totals, self._previous)
            if sample is not None:
                history.append((self.sequence, sample))
        self._previous = totals
        tick, self._tick = self._tick, asyncio.Event()
        if tick is not None:
            tick.set()

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def close(self) -> None:
        self._closed = True
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def events(
        self,
        channel: str | None,
        window_seconds: int,
        last_id: int | None,
        stop: asyncio.Event,
    ) -> AsyncIterator[str]:
        """Server-sent event text: a history of up to `window_seconds` (or what came
        after event `last_id`), then each new sample, for STREAM_SECONDS or until `stop`."""
        self.watchers += 1
        if self._tick is None:
            self._tick = asyncio.Event()
        self._start()
        history = self._channel_history(channel) if channel else None
        try:
            yield f"retry: {RETRY_MS}\n\n"
            newest_ms = self.samples[-1][1]["t"] if self.samples else 0
            if last_id is None:
                since_ms = newest_ms - window_seconds * 1000
                first = [s for s in self.samples if s[1]["t"] > since_ms]
                mine = [s for s in history if s[1]["t"] > since_ms] if history is not None else []
                seen = self.sequence
                yield _event("history", seen, {"store": first, "channel": mine})
            else:
                seen = last_id
            loop = asyncio.get_running_loop()
            deadline = loop.time() + STREAM_SECONDS
            while not stop.is_set() and not self._closed:
                fresh = [s for s in self.samples if s[0] > seen]
                if fresh:
                    mine = [s for s in history if s[0] > seen] if history is not None else []
                    seen = fresh[-1][0]
                    yield _event("samples", seen, {"store": fresh, "channel": mine})
                left = deadline - loop.time()
                if left <= 0:
                    break
                tick = self._tick
                waiters = [asyncio.ensure_future(tick.wait()), asyncio.ensure_future(stop.wait())]
                _, pending = await asyncio.wait(
                    waiters, timeout=left, return_when=asyncio.FIRST_COMPLETED
                )
                for waiter in pending:
                    waiter.cancel()
        finally:
            self.watchers -= 1


def _event(name: str, sequence: int, data: Mapping[str, list[tuple[int, dict[str, Any]]]]) -> str:
    payload = {key: [sample for _, sample in items] for key, items in data.items()}
    return f"id: {sequence}\nevent: {name}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n"
