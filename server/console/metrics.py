"""`/metrics` in Prometheus' text format and `/health`, over the public engine API.

prometheus_client (Prometheus' own Python client) writes the exposition
format and owns the histogram; a custom collector reads the store at each
scrape, so every figure is the store's own (shared by every process that
has it open), not a count kept by this server. What each family means:

The families and what each means are listed in docs/console.md, "Metrics".
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

import tidelog

# Commit latencies here run from ~100 us (a cheap fsync) to seconds (a stalled disk).
COMMIT_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)


class StoreCollector:
    """Reads the store at each scrape (prometheus_client's custom collector protocol)."""

    def __init__(self, store: tidelog.Store) -> None:
        self.store = store

    def describe(self) -> list[Metric]:
        return []  # no fixed set: families depend on what the store holds

    def collect(self) -> Iterator[Metric]:
        store = self.store
        status = store.status()
        up = GaugeMetricFamily("tidelog_store_up", "1 while the store accepts reads and writes")
        up.add_metric([], 1.0 if status.state == "ok" else 0.0)
        yield up
        if status.state == "closed":
            return
        yield from self._store_families()
        yield from self._queue_families()
        yield from self._topic_families()
        yield from self._stream_families()
        yield from self._delivery_families()
        yield from self._application_families()
        yield from self._trigger_families()

    def _store_families(self) -> Iterator[Metric]:
        usage = self.store.disk_usage()
        total = GaugeMetricFamily("tidelog_store_disk_bytes", "Bytes on disk: logs and index")
        total.add_metric([], usage.total_bytes)
        index = GaugeMetricFamily("tidelog_store_index_bytes", "Bytes of the LMDB index")
        index.add_metric([], usage.index_bytes)
        channel = GaugeMetricFamily(
            "tidelog_channel_disk_bytes",
            "Bytes on disk of a channel's logs",
            labels=["kind", "name"],
        )
        for (kind, name), size in sorted(usage.channels.items()):
            channel.add_metric([kind, name], size)
        commits = self.store.commit_stats()
        made = CounterMetricFamily("tidelog_commits", "Group commits made by this server's handle")
        made.add_metric([], commits.commits)
        operations = CounterMetricFamily(
            "tidelog_commit_operations", "Operations carried by this server's commits"
        )
        operations.add_metric([], commits.operations)
        flushes = CounterMetricFamily(
            "tidelog_fsyncs",
            "fdatasync/fsync calls on segments and directories by this server's handle "
            "(LMDB's own commit flush not included)",
        )
        flushes.add_metric([], commits.flushes)
        yield from (total, index, channel, made, operations, flushes)

    def _queue_families(self) -> Iterator[Metric]:
        messages = GaugeMetricFamily(
            "tidelog_queue_messages", "Messages in a queue by state", labels=["queue", "state"]
        )
        sent = CounterMetricFamily("tidelog_queue_messages_sent", "Messages sent", labels=["queue"])
        received = CounterMetricFamily(
            "tidelog_queue_messages_received", "Receives (leases taken)", labels=["queue"]
        )
        deleted = CounterMetricFamily(
            "tidelog_queue_messages_deleted",
            "Messages gone: deleted, purged, expired or moved",
            labels=["queue"],
        )
        for queue in self.store.queues():
            try:
                stats = queue.stats()
            except tidelog.NotFound:
                continue
            messages.add_metric([queue.name, "visible"], stats.visible)
            messages.add_metric([queue.name, "in_flight"], stats.in_flight)
            messages.add_metric([queue.name, "delayed"], stats.delayed)
            sent.add_metric([queue.name], stats.sent_total)
            received.add_metric([queue.name], stats.received_total)
            deleted.add_metric([queue.name], stats.deleted_total)
        yield from (messages, sent, received, deleted)

    def _topic_families(self) -> Iterator[Metric]:
        published = CounterMetricFamily(
            "tidelog_topic_messages_published", "Messages published", labels=["topic"]
        )
        subscriptions = GaugeMetricFamily(
            "tidelog_topic_subscriptions", "Subscriptions of a topic", labels=["topic"]
        )
        for topic in self.store.topics():
            try:
                published.add_metric([topic.name], self.store.log(topic.info.name).end_offset)
                subscriptions.add_metric([topic.name], len(topic.subscriptions()))
            except tidelog.NotFound:
                continue
        yield from (published, subscriptions)

    def _stream_families(self) -> Iterator[Metric]:
        records = CounterMetricFamily("tidelog_stream_records", "Records put", labels=["stream"])
        shards = GaugeMetricFamily(
            "tidelog_stream_shards", "Shards by state", labels=["stream", "state"]
        )
        lag = GaugeMetricFamily(
            "tidelog_stream_consumer_lag_records",
            "Records after a consumer's checkpoint",
            labels=["stream", "consumer", "shard"],
        )
        age = GaugeMetricFamily(
            "tidelog_stream_consumer_lag_seconds",
            "Age of the oldest record after a consumer's checkpoint (0: caught up)",
            labels=["stream", "consumer", "shard"],
        )
        for stream in self.store.streams():
            try:
                stats = stream.stats()
                consumers = stream.consumers()
                lags = [(name, tidelog.Consumer(stream, name).lag()) for name in consumers]
            except tidelog.NotFound:
                continue
            records.add_metric([stream.name], stats.records_total)
            shards.add_metric([stream.name, "open"], stats.shards_open)
            shards.add_metric([stream.name, "closed"], stats.shards_closed)
            for name, per_shard in lags:
                for x in per_shard:
                    lag.add_metric([stream.name, name, x.shard_id], x.records_behind)
                    age.add_metric([stream.name, name, x.shard_id], (x.millis_behind or 0) / 1000)
        yield from (records, shards, lag, age)

    def _delivery_families(self) -> Iterator[Metric]:
        labels = ["delivery_stream"]
        buffered = GaugeMetricFamily(
            "tidelog_delivery_buffered_records", "Records waiting for delivery", labels=labels
        )
        buffered_bytes = GaugeMetricFamily(
            "tidelog_delivery_buffered_bytes", "Bytes waiting for delivery", labels=labels
        )
        delivered = CounterMetricFamily(
            "tidelog_delivery_records_delivered", "Records delivered", labels=labels
        )
        failed = CounterMetricFamily(
            "tidelog_delivery_records_failed", "Records sent to the error output", labels=labels
        )
        delivered_bytes = CounterMetricFamily(
            "tidelog_delivery_bytes_delivered", "Bytes written to the destination", labels=labels
        )
        for ds in self.store.delivery_streams():
            try:
                stats = ds.stats()
            except tidelog.NotFound:
                continue
            buffered.add_metric([ds.name], stats.buffered_records)
            buffered_bytes.add_metric([ds.name], stats.buffered_bytes)
            delivered.add_metric([ds.name], stats.records_delivered)
            failed.add_metric([ds.name], stats.records_failed)
            delivered_bytes.add_metric([ds.name], stats.bytes_delivered)
        yield from (buffered, buffered_bytes, delivered, failed, delivered_bytes)

    def _application_families(self) -> Iterator[Metric]:
        labels = ["application"]
        running = GaugeMetricFamily(
            "tidelog_sql_application_running", "1 while the application runs", labels=labels
        )
        lag = GaugeMetricFamily(
            "tidelog_sql_application_lag_records",
            "Source records after the application's checkpoint",
            labels=labels,
        )
        windows = CounterMetricFamily(
            "tidelog_sql_application_windows_emitted", "Windows computed", labels=labels
        )
        for app in self.store.applications():
            try:
                d = app.describe()
            except tidelog.NotFound:
                continue
            running.add_metric([d.name], 1.0 if d.running else 0.0)
            lag.add_metric([d.name], d.lag_records)
            windows.add_metric([d.name], d.windows_emitted)
        yield from (running, lag, windows)

    def _trigger_families(self) -> Iterator[Metric]:
        from tidelog.trigger_runner import status

        labels = ["trigger", "function", "source"]
        enabled = GaugeMetricFamily(
            "tidelog_trigger_enabled", "1 while the mapping is enabled", labels=labels
        )
        lag = GaugeMetricFamily(
            "tidelog_trigger_lag", "Messages or records waiting for the trigger", labels=labels
        )
        invocations = CounterMetricFamily(
            "tidelog_trigger_invocations", "Handler invocations (by its runner)", labels=labels
        )
        errors = CounterMetricFamily(
            "tidelog_trigger_errors", "Failed invocations (by its runner)", labels=labels
        )
        for trigger in tidelog.Triggers(self.store).triggers():
            row = status(self.store, trigger)
            values = [trigger.uuid, trigger.function, row["source"]]
            enabled.add_metric(values, 1.0 if trigger.enabled else 0.0)
            if row["lag"] is not None:
                lag.add_metric(values, row["lag"])
            invocations.add_metric(values, row["invocations"])
            errors.add_metric(values, row["errors"])
        yield from (enabled, lag, invocations, errors)


class Metrics:
    """The registry behind /metrics: the store collector, the commit histogram
    and the process's own figures. One per console; `close` stops observing."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, store: tidelog.Store) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(StoreCollector(store))
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.commit_seconds = Histogram(
            "tidelog_commit_duration_seconds",
            "Commit duration: write transaction start to durable end",
            buckets=COMMIT_BUCKETS,
            registry=self.registry,
        )
        self._stop = store.observe_commits(
            lambda seconds, _ops: self.commit_seconds.observe(seconds)
        )

    def render(self) -> bytes:
        """The exposition text (blocking: call from a worker thread)."""
        data: bytes = generate_latest(self.registry)
        return data

    def close(self) -> None:
        self._stop()


def health(store: tidelog.Store, started: float) -> tuple[int, dict[str, Any]]:
    """/health's status code and document: 200 while the store serves, else 503."""
    status = store.status()
    serving = status.state in ("ok", "readonly")
    running = "running" if serving else "error"
    return (200 if serving else 503), {
        "status": "ok" if serving else status.state,
        "version": tidelog.__version__,
        "uptime_seconds": round(time.time() - started, 3),
        "store": {
            "path": status.path,
            "state": status.state,
            "sync_mode": status.sync_mode,
            "error": status.error,
        },
        "services": {name: running for name in ("sqs", "sns", "kinesis", "firehose", "console")},
    }
