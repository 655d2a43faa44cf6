"""The console's JSON actions: each one a thin call of the public engine API.

Every function takes the open store and the request's parameters (query
string for reads, JSON body for writes, as a dict of plain values) and
returns a JSON-ready dict. Nothing here keeps state or knows HTTP: web.py
routes, authorizes and encodes. Browsing never changes what it shows:
queues are read with `Queue.peek`, topics with `Topic.messages`, streams
with `Stream.read` (none of which writes). Bodies travel as base64
(`body_b64`), so binary messages survive; the page decodes them for its
text, JSON and hex views.

Searching (`text`, `attribute`, `value`) scans at most SEARCH_SCAN_MAX
messages per request and says where to go on (`next_start`), so a search
of a large backlog is many bounded requests, never one unbounded one.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import decimal
import json
import math
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import tidelog
from tidelog.topic_filters import policy_matches
from tidelog.trigger_runner import status as trigger_status

Params = Mapping[str, Any]
Result = dict[str, Any]

_WHOLE = re.compile(r"-?[0-9]{1,19}")  # ASCII digits only: int() also takes "²" and "1_0"
PAGE_DEFAULT = 50
PAGE_MAX = 500
SEARCH_SCAN_MAX = 10_000
SQL_ROWS_MAX = 1000
SQL_SCAN_BYTES_MAX = 1024 * 1024 * 1024  # a console query reads at most 1 GiB of segments
SQL_MEMORY_LIMIT = "1GB"


class BadRequest(tidelog.InvalidArgument):
    """A console request with a missing or malformed parameter."""


# -- parameters ---------------------------------------------------------------------------------


def text(params: Params, name: str, default: str | None = None) -> str:
    value = params.get(name, default)
    if value is None:
        raise BadRequest(f"{name}: missing")
    if not isinstance(value, str):
        raise BadRequest(f"{name}: must be text")
    return value


def optional_text(params: Params, name: str) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{name}: must be text")
    return value


def integer(params: Params, name: str, default: int | None = None, low: int = 0) -> int:
    value = params.get(name, default)
    if value is None or value == "":
        if default is None:
            raise BadRequest(f"{name}: missing")
        value = default
    if isinstance(value, bool):
        raise BadRequest(f"{name}: must be a whole number")
    if isinstance(value, str):
        if not _WHOLE.fullmatch(value.strip()):
            raise BadRequest(f"{name}: {value!r} is not a whole number")
        value = int(value)
    if not isinstance(value, int) or value < low:
        raise BadRequest(f"{name}: {value!r} must be a whole number of at least {low}")
    return value


def optional_integer(params: Params, name: str, low: int = 0) -> int | None:
    if params.get(name) in (None, ""):
        return None
    return integer(params, name, low=low)


def flag(params: Params, name: str) -> bool:
    value = params.get(name, False)
    if isinstance(value, str):
        return value.lower() in ("1", "true", "on", "yes")
    return bool(value)


def page_size(params: Params) -> int:
    return min(integer(params, "limit", PAGE_DEFAULT, low=1), PAGE_MAX)


def body_bytes(params: Params, name: str = "body") -> bytes:
    """A message body: `body` as UTF-8 text, or `body_b64` in base64."""
    if params.get(f"{name}_b64") not in (None, ""):
        try:
            return base64.b64decode(text(params, f"{name}_b64"), validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest(f"{name}_b64: not base64") from None
    return text(params, name, "").encode()


def typed_attributes(params: Params) -> dict[str, tuple[str, str | bytes]]:
    """`attributes`: a list of {name, type, value} (Binary values in base64)."""
    raw = params.get("attributes") or []
    if not isinstance(raw, list):
        raise BadRequest("attributes: must be a list of {name, type, value}")
    out: dict[str, tuple[str, str | bytes]] = {}
    for item in raw:
        if not isinstance(item, Mapping):
            raise BadRequest("attributes: must be a list of {name, type, value}")
        name = text(item, "name").strip()
        if not name:
            continue
        data_type = text(item, "type", "String").strip() or "String"
        value = text(item, "value", "")
        if data_type.split(".", 1)[0] == "Binary":
            try:
                out[name] = (data_type, base64.b64decode(value, validate=True))
            except (binascii.Error, ValueError):
                raise BadRequest(f"attribute {name!r}: a Binary value must be base64") from None
        else:
            out[name] = (data_type, value)
    return out


def engine_attributes(params: Params) -> dict[str, tidelog.AttributeValue]:
    return {name: tidelog.AttributeValue(t, v) for name, (t, v) in typed_attributes(params).items()}


# -- encoding ---------------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def attributes_out(typed: Mapping[str, tidelog.AttributeValue]) -> list[dict[str, str]]:
    return [
        {
            "name": name,
            "type": value.data_type,
            "value": b64(value.value) if isinstance(value.value, bytes) else value.value,
        }
        for name, value in typed.items()
    ]


def jsonable(value: Any) -> Any:
    """A SQL result cell as JSON can carry it."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID | dt.timedelta):
        return str(value)
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return str(value)


# -- searching ----------------------------------------------------------------------------------


class Search:
    """A record filter: body text (case-insensitive) and/or an attribute's value."""

    def __init__(self, params: Params) -> None:
        self.text = (optional_text(params, "text") or "").lower()
        self.attribute = optional_text(params, "attribute")
        self.value = optional_text(params, "value")

    @property
    def active(self) -> bool:
        return bool(self.text or self.attribute)

    def matches(self, body: bytes, attributes: Mapping[str, tidelog.AttributeValue]) -> bool:
        if self.text and self.text not in body.decode("utf-8", "replace").lower():
            return False
        if self.attribute:
            found = attributes.get(self.attribute)
            if found is None:
                return False
            if self.value is not None:
                shown = b64(found.value) if isinstance(found.value, bytes) else found.value
                if shown != self.value:
                    return False
        return True


def _scan(
    pages: Callable[[int, int], list[Any]],
    start: int,
    limit: int,
    search: Search,
    pick: Callable[[Any], tuple[bytes, Mapping[str, tidelog.AttributeValue]]],
    offset_of: Callable[[Any], int],
) -> tuple[list[Any], int | None, int]:
    """Matches from `pages(start, size)` up to `limit`, scanning at most
    SEARCH_SCAN_MAX; returns (matches, where to go on or None at the end, scanned)."""
    found: list[Any] = []
    scanned = 0
    position = start
    while True:
        size = 1000 if search.active else limit - len(found)
        page = pages(position, size)
        if not page:
            return found, None, scanned
        for item in page:
            scanned += 1
            position = offset_of(item) + 1
            if not search.active or search.matches(*pick(item)):
                found.append(item)
                if len(found) >= limit:
                    return found, position, scanned
        if scanned >= SEARCH_SCAN_MAX:
            return found, position, scanned


# -- overview ---------------------------------------------------------------------------------


def _destination(description: Any) -> str:
    dest = description.destination
    if isinstance(dest, Mapping):
        if dest.get("bucket"):
            return f"s3://{dest['bucket']}/{description.prefix}"
        if dest.get("path"):
            return str(dest["path"])
    return json.dumps(dest, default=str)


def queue_row(queue: tidelog.Queue, disk: Mapping[tuple[str, str], int]) -> Result:
    stats = queue.stats()
    dead_letter = queue.dead_letter
    return {
        "name": queue.name,
        "fifo": queue.fifo,
        "visible": stats.visible,
        "in_flight": stats.in_flight,
        "delayed": stats.delayed,
        "sent_total": stats.sent_total,
        "received_total": stats.received_total,
        "deleted_total": stats.deleted_total,
        "dead_letter": dead_letter[0] if dead_letter else None,
        "disk_bytes": disk.get(("queue", queue.name), 0),
    }


def topic_row(
    store: tidelog.Store, topic: tidelog.Topic, disk: Mapping[tuple[str, str], int]
) -> Result:
    log = store.log(topic.info.name)
    return {
        "name": topic.name,
        "fifo": topic.fifo,
        "subscriptions": len(topic.subscriptions()),
        "published_total": log.end_offset,
        "disk_bytes": disk.get(("topic", topic.name), 0),
    }


def stream_row(stream: tidelog.Stream, disk: Mapping[tuple[str, str], int]) -> Result:
    stats = stream.stats()
    return {
        "name": stream.name,
        "shards_open": stats.shards_open,
        "shards_closed": stats.shards_closed,
        "records_total": stats.records_total,
        "records": stats.records,
        "consumers": len(stream.consumers()),
        "disk_bytes": disk.get(("stream", stream.name), 0),
    }


def delivery_row(ds: tidelog.DeliveryStream, disk: Mapping[tuple[str, str], int]) -> Result:
    stats = ds.stats()
    description = ds.describe()
    return {
        "name": ds.name,
        "source": description.source,
        "destination": _destination(description),
        "buffered_records": stats.buffered_records,
        "buffered_bytes": stats.buffered_bytes,
        "records_delivered": stats.records_delivered,
        "records_failed": stats.records_failed,
        "batches": stats.batches,
        "last_delivery_ms": stats.last_delivery_ms,
        "disk_bytes": disk.get(("delivery", ds.name), 0),
    }


def application_row(app: tidelog.Application) -> Result:
    d = app.describe()
    return {
        "name": d.name,
        "source": d.source,
        "destination": ":".join(d.destination),
        "window": d.window,
        "running": d.running,
        "windows_emitted": d.windows_emitted,
        "rows_emitted": d.rows_emitted,
        "late_records": d.late_records,
        "lag_records": d.lag_records,
        "error": d.error,
    }


def trigger_row(store: tidelog.Store, trigger: tidelog.Trigger) -> Result:
    """A trigger's state, lag and counters, as its runner last wrote them."""
    row = trigger_status(store, trigger)
    row["name"] = trigger.uuid
    return row


def _rows(items: Iterable[Any], row: Callable[[Any], Result]) -> list[Result]:
    out = []
    for item in items:
        try:
            out.append(row(item))
        except tidelog.NotFound:
            continue  # deleted while we listed
    return out


def overview(store: tidelog.Store, params: Params) -> Result:
    disk = store.disk_usage()
    status = store.status()
    channels = disk.channels
    return {
        "store": {
            "path": status.path,
            "state": status.state,
            "sync_mode": status.sync_mode,
            "error": status.error,
            "disk_bytes": disk.total_bytes,
            "index_bytes": disk.index_bytes,
            "version": tidelog.__version__,
        },
        "queues": _rows(store.queues(), lambda q: queue_row(q, channels)),
        "topics": _rows(store.topics(), lambda t: topic_row(store, t, channels)),
        "streams": _rows(store.streams(), lambda s: stream_row(s, channels)),
        "delivery_streams": _rows(store.delivery_streams(), lambda d: delivery_row(d, channels)),
        "applications": _rows(store.applications(), application_row),
        "triggers": _rows(tidelog.Triggers(store).triggers(), lambda t: trigger_row(store, t)),
    }


# -- queues -----------------------------------------------------------------------------------


def _task(task: tidelog.MoveTask) -> Result:
    return {
        "handle": task.handle,
        "source": task.source,
        "destination": task.destination,
        "rate": task.max_messages_per_second,
        "status": task.status,
        "moved": task.moved,
        "to_move": task.to_move,
        "error": task.error,
        "started_ms": task.started_ms,
    }


def queue_detail(store: tidelog.Store, params: Params) -> Result:
    queue = store.queue(text(params, "name"))
    attributes = queue.attributes()
    shown = {
        k: v for k, v in attributes.items() if not k.startswith("approximate_") and k != "name"
    }
    disk = store.disk_usage().channels
    return {
        "queue": queue_row(queue, disk),
        "attributes": jsonable(shown),
        "dead_letter_sources": [q.name for q in store.dead_letter_source_queues(queue.name)],
        "move_tasks": [_task(t) for t in store.list_message_move_tasks(queue.name)],
    }


def _peeked(message: tidelog.PeekedMessage) -> Result:
    return {
        "offset": message.offset,
        "id": message.id,
        "body_b64": b64(message.body),
        "size": len(message.body),
        "attributes": attributes_out(message.typed_attributes),
        "state": message.state,
        "receive_count": message.receive_count,
        "sent_at_ms": message.sent_at_ms,
        "visible_at_ms": message.visible_at_ms,
        "first_received_at_ms": message.first_received_at_ms,
        "group_id": message.group_id,
        "dedup_id": message.dedup_id,
        "sequence_number": message.sequence_number,
    }


def queue_messages(store: tidelog.Store, params: Params) -> Result:
    queue = store.queue(text(params, "name"))
    search = Search(params)

    def pages(start: int, size: int) -> list[tidelog.PeekedMessage]:
        return queue.peek(min(size, 1000), start_offset=start)

    found, next_start, scanned = _scan(
        pages,
        integer(params, "start", 0),
        page_size(params),
        search,
        lambda m: (m.body, m.typed_attributes),
        lambda m: m.offset,
    )
    return {"messages": [_peeked(m) for m in found], "next_start": next_start, "scanned": scanned}


def queue_send(store: tidelog.Store, params: Params) -> Result:
    queue = store.queue(text(params, "name"))
    result = queue.send(
        body_bytes(params),
        engine_attributes(params) or None,
        delay=optional_integer(params, "delay"),
        group_id=optional_text(params, "group_id"),
        dedup_id=optional_text(params, "dedup_id"),
    )
    return {
        "id": result.id,
        "md5_of_body": result.md5_of_body,
        "sequence_number": result.sequence_number,
        "duplicate": result.duplicate,
    }


def queue_purge(store: tidelog.Store, params: Params) -> Result:
    store.queue(text(params, "name")).purge()
    return {}


def queue_delete_message(store: tidelog.Store, params: Params) -> Result:
    deleted = store.queue(text(params, "name")).delete_at(integer(params, "offset"))
    return {"deleted": deleted}


def queue_create(store: tidelog.Store, params: Params) -> Result:
    name = text(params, "name").strip()
    options: dict[str, Any] = {"fifo": name.endswith(".fifo")}
    for key in ("visibility_timeout", "delay", "retention", "max_message_size", "receive_wait"):
        value = optional_integer(params, key)
        if value is not None:
            options[key] = value
    dead_letter = optional_text(params, "dead_letter")
    if dead_letter:
        options["dead_letter"] = (dead_letter, integer(params, "max_receive_count", 5, low=1))
    if options["fifo"] and flag(params, "content_based_dedup"):
        options["content_based_dedup"] = True
    store.create_queue(name, **options)
    return {"name": name}


def queue_delete(store: tidelog.Store, params: Params) -> Result:
    store.delete_queue(text(params, "name"))
    return {}


def redrive_start(store: tidelog.Store, params: Params) -> Result:
    task = store.start_message_move_task(
        text(params, "source"),
        optional_text(params, "destination"),
        max_messages_per_second=optional_integer(params, "rate", low=1),
    )
    return _task(task)


def redrive_cancel(store: tidelog.Store, params: Params) -> Result:
    return _task(store.cancel_message_move_task(text(params, "handle")))


# -- topics -----------------------------------------------------------------------------------


def _subscription(sub: tidelog.Subscription) -> Result:
    return {
        "id": sub.id,
        "arn": sub.arn,
        "protocol": sub.protocol,
        "endpoint": sub.endpoint,
        "filter_policy": sub.filter_policy,
        "filter_scope": sub.filter_scope,
        "raw": sub.raw,
        "status": sub.status,
    }


def topic_detail(store: tidelog.Store, params: Params) -> Result:
    topic = store.topic(text(params, "name"))
    disk = store.disk_usage().channels
    return {
        "topic": topic_row(store, topic, disk),
        "attributes": jsonable(topic.attributes()),
        "subscriptions": [_subscription(s) for s in topic.subscriptions()],
    }


def _published(message: tidelog.PublishedMessage) -> Result:
    return {
        "offset": message.offset,
        "id": message.id,
        "body_b64": b64(message.body),
        "size": len(message.body),
        "attributes": attributes_out(message.typed_attributes),
        "subject": message.subject,
        "group_id": message.group_id,
        "sequence_number": message.sequence_number,
        "published_at_ms": message.published_at_ms,
    }


def topic_messages(store: tidelog.Store, params: Params) -> Result:
    topic = store.topic(text(params, "name"))
    from_ms = optional_integer(params, "from_ms")
    start = integer(params, "start", 0)
    search = Search(params)

    def pages(position: int, size: int) -> list[tidelog.PublishedMessage]:
        from_time = from_ms / 1000 if from_ms is not None and position == start else None
        return topic.messages(min(size, 1000), start_offset=position, from_time=from_time)

    found, next_start, scanned = _scan(
        pages,
        start,
        page_size(params),
        search,
        lambda m: (m.body, m.typed_attributes),
        lambda m: m.offset,
    )
    return {
        "messages": [_published(m) for m in found],
        "next_start": next_start,
        "scanned": scanned,
    }


def topic_publish(store: tidelog.Store, params: Params) -> Result:
    topic = store.topic(text(params, "name"))
    result = topic.publish(
        body_bytes(params),
        engine_attributes(params) or None,
        subject=optional_text(params, "subject"),
        group_id=optional_text(params, "group_id"),
        dedup_id=optional_text(params, "dedup_id"),
    )
    return {"id": result.id, "delivered": result.delivered}


def topic_create(store: tidelog.Store, params: Params) -> Result:
    name = text(params, "name").strip()
    fifo = name.endswith(".fifo")
    store.create_topic(
        name, fifo=fifo, content_based_dedup=fifo and flag(params, "content_based_dedup")
    )
    return {"name": name}


def topic_delete(store: tidelog.Store, params: Params) -> Result:
    store.delete_topic(text(params, "name"))
    return {}


def _policy(params: Params) -> str | None:
    policy = optional_text(params, "filter_policy")
    return policy.strip() or None if policy else None


def topic_subscribe(store: tidelog.Store, params: Params) -> Result:
    topic = store.topic(text(params, "name"))
    queue = store.queue(text(params, "queue"))
    policy = _policy(params)
    sub = topic.subscribe(
        queue,
        filter_policy=json.loads(policy) if policy else None,
        filter_scope=text(params, "filter_scope", "attributes"),  # type: ignore[arg-type]
        raw=flag(params, "raw"),
    )
    return _subscription(sub)


def topic_unsubscribe(store: tidelog.Store, params: Params) -> Result:
    store.topic(text(params, "name")).unsubscribe(text(params, "subscription"))
    return {}


def filter_test(store: tidelog.Store, params: Params) -> Result:
    policy = _policy(params)
    if policy is None:
        raise BadRequest("filter_policy: missing")
    try:
        json.loads(policy)
    except ValueError as exc:
        raise BadRequest(f"filter_policy: not JSON ({exc})") from None
    scope = text(params, "filter_scope", "attributes")
    if scope not in ("attributes", "body"):
        raise BadRequest(f"filter_scope: {scope!r} is not attributes or body")
    matched = policy_matches(
        policy,
        body=body_bytes(params),
        attributes=typed_attributes(params),
        scope=scope,  # type: ignore[arg-type]
    )
    return {"matches": matched}


# -- streams ----------------------------------------------------------------------------------


def stream_detail(store: tidelog.Store, params: Params) -> Result:
    stream = store.stream(text(params, "name"))
    description = stream.describe()
    disk = store.disk_usage().channels
    consumers = []
    for name in stream.consumers():
        try:
            lag = tidelog.Consumer(stream, name).lag()
        except tidelog.NotFound:
            continue
        consumers.append(
            {
                "name": name,
                "records_behind": sum(x.records_behind for x in lag),
                "millis_behind": max((x.millis_behind or 0 for x in lag), default=0),
                "shards": [
                    {
                        "shard_id": x.shard_id,
                        "checkpoint": x.checkpoint,
                        "records_behind": x.records_behind,
                        "millis_behind": x.millis_behind,
                    }
                    for x in lag
                ],
            }
        )
    return {
        "stream": stream_row(stream, disk),
        "retention_hours": description.retention_hours,
        "shards": [
            {
                "shard_id": shard.shard_id,
                "closed": shard.closed,
                "parents": list(shard.parent_shard_ids),
                "starting_hash_key": str(shard.starting_hash_key),
                "ending_hash_key": str(shard.ending_hash_key),
                "starting_sequence_number": shard.starting_sequence_number,
                "ending_sequence_number": shard.ending_sequence_number,
            }
            for shard in description.shards
        ],
        "consumers": consumers,
    }


def stream_records(store: tidelog.Store, params: Params) -> Result:
    stream = store.stream(text(params, "name"))
    shard = text(params, "shard")
    kind = text(params, "type", "TRIM_HORIZON")
    start: Any
    if kind == "TRIM_HORIZON":
        start = kind
    elif kind in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"):
        start = (kind, text(params, "value").strip())
    elif kind == "AT_TIMESTAMP":
        start = (kind, integer(params, "value") / 1000)
    else:
        raise BadRequest(
            f"type: {kind!r} is not TRIM_HORIZON, AT_/AFTER_SEQUENCE_NUMBER or AT_TIMESTAMP"
        )
    limit = page_size(params)
    search = Search(params)
    found: list[tidelog.StreamRecord] = []
    scanned = 0
    last: str | None = None
    for record in stream.read(shard, start):
        scanned += 1
        last = record.sequence_number
        if not search.active or search.matches(record.data, {}):
            found.append(record)
        if len(found) >= limit or scanned >= SEARCH_SCAN_MAX:
            break
    else:
        last = None  # the end of the shard: nothing to go on with
    return {
        "records": [
            {
                "sequence_number": r.sequence_number,
                "partition_key": r.partition_key,
                "body_b64": b64(r.data),
                "size": len(r.data),
                "arrival_ms": r.arrival_timestamp_ms,
            }
            for r in found
        ],
        "next_after": last,
        "scanned": scanned,
    }


def stream_put(store: tidelog.Store, params: Params) -> Result:
    result = store.stream(text(params, "name")).put(
        body_bytes(params, "data"), text(params, "partition_key")
    )
    return {"shard_id": result.shard_id, "sequence_number": result.sequence_number}


def stream_create(store: tidelog.Store, params: Params) -> Result:
    name = text(params, "name").strip()
    store.create_stream(name, integer(params, "shards", 1, low=1))
    return {"name": name}


def stream_delete(store: tidelog.Store, params: Params) -> Result:
    store.delete_stream(text(params, "name"))
    return {}


def consumer_reset(store: tidelog.Store, params: Params) -> Result:
    stream = store.stream(text(params, "name"))
    consumer = text(params, "consumer")
    if consumer not in stream.consumers():
        raise tidelog.NotFound(f"consumer {consumer!r} of stream {stream.name!r}: not found")
    shard = optional_text(params, "shard")
    tidelog.Consumer(stream, consumer).reset(text(params, "position", "TRIM_HORIZON"), shard)
    return {}


# -- delivery streams, applications, SQL ---------------------------------------------------


def delivery_detail(store: tidelog.Store, params: Params) -> Result:
    ds = store.delivery_stream(text(params, "name"))
    disk = store.disk_usage().channels
    description = ds.describe()
    settings = {
        key: getattr(description, key)
        for key in (
            "source",
            "prefix",
            "error_output_prefix",
            "buffering_size_mib",
            "buffering_interval",
            "compression",
            "record_format",
            "newline_delimiter",
            "processor",
            "retry_duration",
            "version",
        )
    }
    stats = ds.stats()
    return {
        "delivery_stream": delivery_row(ds, disk),
        "settings": jsonable(settings),
        "stats": {
            "objects": stats.objects,
            "bytes_delivered": stats.bytes_delivered,
            "records_dropped": stats.records_dropped,
            "last_key": stats.last_key,
            "oldest_buffered_ms": stats.oldest_buffered_ms,
        },
    }


def application_detail(store: tidelog.Store, params: Params) -> Result:
    app = store.application(text(params, "name"))
    return {"application": application_row(app), "sql": app.describe().sql}


def sql(store: tidelog.Store, params: Params) -> Result:
    query = text(params, "query")
    result = store.sql(
        query, scan_bytes_max=SQL_SCAN_BYTES_MAX, memory_limit=SQL_MEMORY_LIMIT, files=False
    )
    rows = result.rows[:SQL_ROWS_MAX]
    return {
        "columns": list(result.columns),
        "types": [str(t) for t in result.types],
        "rows": [[jsonable(v) for v in row] for row in rows],
        "row_count": len(result.rows),
        "truncated": len(result.rows) > SQL_ROWS_MAX,
    }


Action = Callable[[tidelog.Store, Params], Result]

READS: dict[str, Action] = {
    "overview": overview,
    "queue": queue_detail,
    "queue/messages": queue_messages,
    "topic": topic_detail,
    "topic/messages": topic_messages,
    "stream": stream_detail,
    "stream/records": stream_records,
    "delivery": delivery_detail,
    "application": application_detail,
}
# Actions that change nothing but need a request body (filter tests, SQL) are
# POSTs too, so every POST is checked the same way.
WRITES: dict[str, Action] = {
    "queue/send": queue_send,
    "queue/purge": queue_purge,
    "queue/delete-message": queue_delete_message,
    "queue/create": queue_create,
    "queue/delete": queue_delete,
    "queue/redrive": redrive_start,
    "queue/redrive-cancel": redrive_cancel,
    "topic/publish": topic_publish,
    "topic/create": topic_create,
    "topic/delete": topic_delete,
    "topic/subscribe": topic_subscribe,
    "topic/unsubscribe": topic_unsubscribe,
    "filter/test": filter_test,
    "stream/put": stream_put,
    "stream/create": stream_create,
    "stream/delete": stream_delete,
    "stream/consumer-reset": consumer_reset,
    "sql": sql,
}
