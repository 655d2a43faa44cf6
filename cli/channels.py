"""Channels as the CLI sees them: streams, queues, topics and plain logs, with their logs.

The library's models each own logs named `<kind>/<name>[/<shard>]`
(tidelog.catalog.log_name); a log with any other name is a plain log
(`store.create_log`). This module maps a NAME on the command line to a
channel and its logs, and reads, read-only, what `tidelog info` shows about
segments and why each is still kept. That last part looks at LMDB rows the
library keeps for itself (segment rows, a queue's head); it only reads them,
in short read transactions, so it never blocks a writer.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import click

import tidelog
from tidelog.catalog import log_name
from tidelog.segments import format as fmt
from tidelog.segments import keys
from tidelog.segments.keys import SegmentRow

KINDS = ("stream", "queue", "topic", "log")
MODEL_KINDS = ("stream", "queue", "topic")
# Logs owned by a model the CLI shows under its own command (`tidelog video`).
OWNED_PREFIXES = (*MODEL_KINDS, "video")


@dataclass
class Part:
    """One log of a channel: a stream's shard, or the channel's only log."""

    label: str  # shard id, or "" for single-log channels
    log: tidelog.Log
    shard_index: int | None = None


class ViewLog:
    """A queue's view over a topic log, read as a log of the queue's messages.

    Offsets are the view's public ones (number << 48 | topic offset, as
    Queue.peek shows them); records are the messages as the queue delivers
    them (tidelog.queues.view_records). What `tail` and `dump` need of a Log.
    """

    def __init__(self, topic_log: tidelog.Log, view: Any) -> None:
        from tidelog.queues import VIEW_OFFSET_SHIFT

        self.topic_log = topic_log
        self.view = view
        self.name = f"{topic_log.name} (view {view.number})"
        self.base = int(view.number) << VIEW_OFFSET_SHIFT

    @property
    def start_offset(self) -> int:
        start: int = self.view.start
        return self.base | max(start, self.topic_log.start_offset)

    @property
    def end_offset(self) -> int:
        end = self.topic_log.end_offset
        until: int | None = self.view.until
        return self.base | (end if until is None else min(end, until))

    def __len__(self) -> int:
        return self.end_offset - self.start_offset

    def read(self, start: int = 0, stop: int | None = None) -> Iterator[tidelog.Record]:
        from tidelog.queues import view_records

        low = max(start, self.start_offset) - self.base
        high = (self.end_offset if stop is None else min(stop, self.end_offset)) - self.base
        for record in self.topic_log.read(low, high):
            for message in view_records(self.view, [record]):
                yield message._replace(offset=self.base | message.offset)

    def wait(self, offset: int, timeout: float) -> bool:
        return self.topic_log.wait(offset - self.base, timeout)


@dataclass
class Channel:
    kind: str
    name: str
    parts: list[Part] = field(default_factory=list)
    handle: Any = None  # Stream, Queue, Topic or Log
    # A queue's views over topic logs (label "view-N", log a ViewLog): read
    # by `tail` and `dump` beside the parts; their bytes are the topic's.
    views: list[Any] = field(default_factory=list)

    def readable_parts(self) -> list[Any]:
        """The parts, then the views: everything a reader of messages reads."""
        return [*self.parts, *self.views]

    @property
    def title(self) -> str:
        return f"{self.kind} {self.name}"


def split_kind(name: str, kind: str | None) -> tuple[str, str | None]:
    """`queue:jobs` names the queue `jobs`; a plain name leaves the kind open."""
    head, sep, rest = name.partition(":")
    if sep and head in KINDS and kind is None:
        return rest, head
    return name, kind


def channel_of(store: tidelog.Store, kind: str, name: str) -> Channel:
    """The channel of `kind` called `name`; raises tidelog.NotFound."""
    if kind == "stream":
        stream = store.stream(name)
        parts = []
        for shard in stream.describe().shards:
            try:
                log = store.log(log_name("stream", name, shard.shard_id))
            except tidelog.NotFound:
                continue  # removed by retention between the two reads
            index = int(shard.shard_id.rsplit("-", 1)[1])
            parts.append(Part(shard.shard_id, log, index))
        return Channel("stream", name, parts, stream)
    if kind == "queue":
        from tidelog.queues import queue_views

        queue = store.queue(name)
        views = [
            Part(f"view-{view.number}", ViewLog(store.log(log_name("topic", view.topic)), view))  # type: ignore[arg-type]
            for view in queue_views(store._logs, name)
        ]
        return Channel(
            "queue", name, [Part("", store.log(log_name("queue", name)))], queue, views=views
        )
    if kind == "topic":
        topic = store.topic(name)
        return Channel("topic", name, [Part("", store.log(log_name("topic", name)))], topic)
    if "/" in name and name.split("/", 1)[0] in OWNED_PREFIXES:
        raise tidelog.NotFound(f"log {name!r}: belongs to a channel; name the channel")
    log = store.log(name)
    return Channel("log", name, [Part("", log)], log)


def resolve(store: tidelog.Store, name: str, kind: str | None = None) -> Channel:
    """The one channel called `name` (of `kind` if given, or `kind:name`).

    Raises click.UsageError when a bare name is taken by several kinds,
    tidelog.NotFound when it names nothing.
    """
    name, kind = split_kind(name, kind)
    if kind is not None:
        return channel_of(store, kind, name)
    found = []
    for candidate in KINDS:
        try:
            found.append(channel_of(store, candidate, name))
        except tidelog.NotFound:
            continue
    if not found:
        raise tidelog.NotFound(f"{name!r}: no stream, queue, topic or log has this name")
    if len(found) > 1:
        kinds = ", ".join(f"{c.kind}:{name}" for c in found)
        raise click.UsageError(f"{name!r} names several channels; say which: {kinds}")
    return found[0]


def all_channels(store: tidelog.Store, kind: str | None = None) -> list[Channel]:
    """Every channel (of `kind`), streams, queues, topics, then plain logs."""
    out: list[Channel] = []
    if kind in (None, "stream"):
        out += [channel_of(store, "stream", s.name) for s in store.streams()]
    if kind in (None, "queue"):
        out += [channel_of(store, "queue", q.name) for q in store.queues()]
    if kind in (None, "topic"):
        out += [channel_of(store, "topic", t.name) for t in store.topics()]
    if kind in (None, "log"):
        for log in store.logs():
            if log.name.split("/", 1)[0] not in OWNED_PREFIXES:
                out.append(Channel("log", log.name, [Part("", log)], log))
    return out


# -- segments ----------------------------------------------------------------------------------


@dataclass
class Segment:
    base: int
    path: str
    size_bytes: int
    end_offset: int | None  # None while active
    first_timestamp_ms: int | None
    last_timestamp_ms: int | None
    active: bool
    why_kept: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "base_offset": self.base,
            "end_offset": self.end_offset,
            "path": self.path,
            "size_bytes": self.size_bytes,
            "first_timestamp_ms": self.first_timestamp_ms,
            "last_timestamp_ms": self.last_timestamp_ms,
            "active": self.active,
            "why_kept": self.why_kept,
        }


def _logstore(store: tidelog.Store) -> Any:
    return store._logs


def segments(store: tidelog.Store, log: tidelog.Log) -> list[Segment]:
    """The log's segment files, oldest first, with LMDB's row for each sealed one."""
    logs = _logstore(store)
    ends = log.ends()
    directory = logs.log_dir(log.info.id)
    rows: dict[int, SegmentRow] = {}
    with logs.env.begin() as txn:
        cursor = txn.cursor(db=logs.dbs[keys.DB_SEGMENTS])
        prefix = keys.log_key(log.info.id)
        if cursor.set_range(prefix):
            for key, value in cursor:
                if not key.startswith(prefix):
                    break
                rows[keys.U64_PAIR.unpack(key)[1]] = SegmentRow.unpack(value)
    out = []
    for name in sorted(os.listdir(directory) if os.path.isdir(directory) else []):
        base = fmt.parse_segment_name(name)
        if base is None or not ends.start_offset <= base <= ends.active_base:
            continue
        path = os.path.join(directory, name)
        active = base == ends.active_base
        row = rows.get(base)
        size = ends.active_position if active else (row.size if row else os.path.getsize(path))
        out.append(
            Segment(
                base=base,
                path=path,
                size_bytes=size,
                end_offset=None if active else (row.end_offset if row else None),
                first_timestamp_ms=row.first_timestamp_ms if row and not active else None,
                last_timestamp_ms=(
                    ends.last_timestamp_ms if active else (row.last_timestamp_ms if row else None)
                ),
                active=active,
            )
        )
    return out


def bytes_on_disk(store: tidelog.Store, log: tidelog.Log) -> int:
    return sum(segment.size_bytes for segment in segments(store, log))


QUEUE_STATE = struct.Struct(">QQQqqqq")  # tidelog.queues.STATE: head, frontier, ...


def queue_position(store: tidelog.Store, queue: tidelog.Queue) -> tuple[int, int]:
    """(head, frontier) of a queue: the oldest undeleted offset, the next never received."""
    from tidelog import queues

    logs = _logstore(store)
    db = logs.database(queues.STATE_DB)
    if db is None:
        return 0, 0
    with logs.env.begin() as txn:
        raw = txn.get(struct.pack(">Q", queue.log_id), db=db)
    if raw is None:
        return 0, 0
    head, frontier = QUEUE_STATE.unpack(raw)[:2]
    return head, frontier


def _age(now_ms: int, then_ms: int | None) -> str:
    if then_ms is None:
        return "?"
    seconds = max(0, now_ms - then_ms) / 1000
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def explain_segments(
    store: tidelog.Store,
    channel: Channel,
    part: Part,
    segs: list[Segment],
    stream_checkpoints: dict[str, dict[str, int]] | None = None,
) -> None:
    """Fill in `why_kept` for each segment: the question `tidelog info` answers."""
    now = _logstore(store).now_ms()
    for seg in segs:
        if seg.active:
            seg.why_kept = "active segment: appends go here"
            continue
        reasons: list[str] = []
        end = seg.end_offset if seg.end_offset is not None else seg.base
        if channel.kind == "queue":
            head, _ = queue_position(store, channel.handle)
            attrs = channel.handle.attributes()
            window = attrs.get("replay_window")
            if end > head:
                reasons.append(
                    f"unacked message: the queue head (oldest undeleted message, offset {head}) "
                    f"is {'in' if head >= seg.base else 'before'} this segment"
                )
            elif (
                window
                and seg.last_timestamp_ms is not None
                and (seg.last_timestamp_ms >= now - window * 1000)
            ):
                reasons.append(
                    f"replay window: newest record {_age(now, seg.last_timestamp_ms)} old, "
                    f"queue keeps passed history {window} s"
                )
            else:
                reasons.append("passed by the head: reclaimed at the next delete")
        elif channel.kind == "stream":
            hours = channel.handle.retention_hours
            if (
                seg.last_timestamp_ms is not None
                and seg.last_timestamp_ms >= now - hours * 3600_000
            ):
                reasons.append(
                    f"retention: newest record {_age(now, seg.last_timestamp_ms)} old, "
                    f"stream keeps {hours} h"
                )
            else:
                reasons.append("past retention: removed at the next retention pass")
            for consumer, checkpoints in (stream_checkpoints or {}).items():
                done = checkpoints.get(part.label, -1)
                if done + 1 < end:
                    reasons.append(
                        f"consumer {consumer!r} has not checkpointed past it "
                        f"(checkpoint offset {done if done >= 0 else 'none'}; "
                        "retention does not wait for it)"
                    )
        else:
            info = part.log.info
            retention_ms = info.retention_ms
            if channel.kind == "topic" and retention_ms is None:
                retention_ms = int(channel.handle.attributes()["retention"]) * 1000
            if retention_ms is not None:
                if seg.last_timestamp_ms is not None and (
                    seg.last_timestamp_ms >= now - retention_ms
                ):
                    reasons.append(
                        f"retention: newest record {_age(now, seg.last_timestamp_ms)} old, "
                        f"kept {retention_ms / 1000:.0f} s"
                    )
                else:
                    reasons.append("past retention: removed at the next retention pass")
            if info.retention_bytes is not None:
                reasons.append(f"retention_bytes: the log keeps up to {info.retention_bytes} bytes")
            if not reasons:
                reasons.append("no retention set: the log keeps every segment")
        seg.why_kept = "; ".join(reasons)


def stream_checkpoint_offsets(stream: tidelog.Stream) -> dict[str, dict[str, int]]:
    """{consumer: {shard id: checkpointed offset}} (read-only)."""
    from tidelog.streams import parse_sequence_number

    out: dict[str, dict[str, int]] = {}
    for name in stream.consumers():
        consumer = tidelog.Consumer(stream, name)
        out[name] = {
            shard: parse_sequence_number(seq)[1] for shard, seq in consumer.checkpoints().items()
        }
    return out


def queue_meta(headers: bytes) -> dict[str, Any]:
    """A queue record's metadata (docs/format.md, "Queue messages"): JSON or empty."""
    if not headers:
        return {}
    try:
        meta = json.loads(headers)
    except ValueError:
        return {}
    return meta if isinstance(meta, dict) else {}
