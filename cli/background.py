"""What `tidelog info` shows of the things that run in the background: delivery
streams and SQL applications (their configuration and their progress).

Both are read from the store as any process left them (the deliverer or
runner may be `tidelog serve` in another process): their configuration and
counters are primary state in LMDB, and what is still buffered is read from
the source logs. Nothing here writes.
"""

from __future__ import annotations

from typing import Any

import tidelog
from tidelog.delivery import DELIVERY_STREAMS_DB
from tidelog.sql import APPLICATIONS_DB

from .channels import _logstore
from .output import iso_ms

DELIVERY_STREAM = "delivery-stream"
APPLICATION = "application"
TRIGGER = "trigger"  # cli/triggers.py: an event source mapping, by UUID
FUNCTION = "function"
BACKGROUND_KINDS = (DELIVERY_STREAM, APPLICATION, TRIGGER, FUNCTION)


def find(store: tidelog.Store, kind: str, name: str) -> Any:
    """The delivery stream or application `name`; raises tidelog.NotFound."""
    if kind in (TRIGGER, FUNCTION):
        from . import triggers

        return triggers.find(store, kind, name)
    logs = _logstore(store)
    if kind == DELIVERY_STREAM:
        if logs.database(DELIVERY_STREAMS_DB) is None:  # read-only, and none ever made
            raise tidelog.NotFound(f"delivery stream {name!r}: not found")
        return store.delivery_stream(name)
    if logs.database(APPLICATIONS_DB) is None:
        raise tidelog.NotFound(f"application {name!r}: not found")
    return store.application(name)


def info_doc(store: tidelog.Store, kind: str, handle: Any) -> dict[str, Any]:
    """`tidelog info`'s document: kind, name, config and progress."""
    if kind == DELIVERY_STREAM:
        return delivery_doc(store, handle)
    if kind in (TRIGGER, FUNCTION):
        from . import triggers

        return triggers.info_doc(store, kind, handle)
    return application_doc(handle)


def delivery_doc(store: tidelog.Store, ds: tidelog.DeliveryStream) -> dict[str, Any]:
    """A delivery stream's configuration, what it has delivered and what waits.

    `lag_seconds` is the age of the oldest record not yet delivered (by the
    store's clock; 0 when nothing waits), `lag_records` how many records
    wait: together they say how far delivery is behind.
    """
    d = ds.describe()
    doc: dict[str, Any] = {
        "kind": DELIVERY_STREAM,
        "name": d.name,
        "config": {
            "source": d.source,
            "destination": d.destination,
            "prefix": d.prefix,
            "error_output_prefix": d.error_output_prefix,
            "buffering_size_mib": d.buffering_size_mib,
            "buffering_interval": d.buffering_interval,
            "compression": d.compression,
            "record_format": d.record_format,
            "newline_delimiter": d.newline_delimiter,
            "processor": d.processor,
            "retry_duration": d.retry_duration,
            "version": d.version,
            "created": iso_ms(d.created_ms),
            "tags": ds.tags(),
        },
    }
    try:
        stats = ds.stats()
    except tidelog.NotFound as exc:  # its source stream was deleted
        doc["progress"] = {"error": str(exc)}
        return doc
    now_ms = _logstore(store).now_ms()
    oldest = stats.oldest_buffered_ms
    doc["progress"] = {
        "buffered_records": stats.buffered_records,
        "buffered_bytes": stats.buffered_bytes,
        "oldest_buffered": iso_ms(oldest),
        "lag_seconds": 0.0 if oldest is None else max(0.0, (now_ms - oldest) / 1000),
        "lag_records": stats.buffered_records,
        "last_delivery": iso_ms(stats.last_delivery_ms),
        "last_key": stats.last_key,
        "batches": stats.batches,
        "records_delivered": stats.records_delivered,
        "records_dropped": stats.records_dropped,
        "records_failed": stats.records_failed,
        # The destination's newest failure, from its first failed attempt on
        # (a batch is retried for retry_duration before its records fail).
        "failing": stats.failing,
        "last_error": stats.last_error,
        "last_error_at": iso_ms(stats.last_error_ms),
        "objects": stats.objects,
        "bytes_delivered": stats.bytes_delivered,
    }
    return doc


def application_doc(app: tidelog.Application) -> dict[str, Any]:
    """An application's configuration, state and progress.

    `lag_records` counts the source's records after the application's
    checkpoint (None when the source cannot be read, e.g. it was deleted).
    """
    d = app.describe()
    window: dict[str, Any] = {"type": d.window}
    if d.window == "session":
        window["gap_seconds"] = d.gap_ms / 1000
    else:
        window["size_seconds"] = d.size_ms / 1000
    if d.window == "sliding":
        window["slide_seconds"] = d.slide_ms / 1000
    last = d.last_window
    return {
        "kind": APPLICATION,
        "name": d.name,
        "config": {
            "source": d.source,
            "destination": ":".join(d.destination),
            "window": window,
            "allowed_lateness_seconds": d.allowed_lateness_ms / 1000,
            "sql": d.sql,
        },
        "progress": {
            "state": "running" if d.running else "stopped",
            "last_window": None
            if last is None
            else {"start": iso_ms(last[0]), "end": iso_ms(last[1])},
            "lag_records": None if d.lag_records < 0 else d.lag_records,
            "windows_emitted": d.windows_emitted,
            "rows_emitted": d.rows_emitted,
            "late_records": d.late_records,
            "error": d.error,
        },
    }


def info_lines(doc: dict[str, Any]) -> list[str]:
    """The document for people: configuration, then progress."""
    title = doc["kind"].replace("-", " ")
    lines = [f"{title} {doc['name']}", "", "configuration:"]
    lines += [f"  {k}: {_text(v)}" for k, v in doc["config"].items()]
    lines += ["", "progress:"]
    lines += [f"  {k}: {_text(v)}" for k, v in doc["progress"].items()]
    return lines


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        if set(value) == {"start", "end"}:
            return f"{value['start']} .. {value['end']}"
        return ", ".join(f"{k}={v}" for k, v in value.items() if v is not None)
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


__all__ = [
    "APPLICATION",
    "BACKGROUND_KINDS",
    "DELIVERY_STREAM",
    "application_doc",
    "delivery_doc",
    "find",
    "info_doc",
    "info_lines",
]
