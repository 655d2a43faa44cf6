"""The `tidelog` command: inspect, operate and replay a store from the shell.

A thin layer over the library (as sqlite-utils' CLI is over its library):
each command opens the store, calls the public API and prints the answer,
as a table for people or as JSON with --json. Inspection commands (ls,
info, tail, dump, verify, stats) open the store read-only: they never
create it, never recover it and never block writers in other processes.
Exit codes: 0 ok, 1 error, 2 usage, 3 corruption found.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any, TextIO

import click

import tidelog
from tidelog.segments.migrate import migrate
from tidelog.segments.repair import repair_log
from tidelog.topic_filters import FilterPolicy, attribute_view, body_view

from . import background, ops
from .background import BACKGROUND_KINDS
from .channels import (
    KINDS,
    Channel,
    Part,
    all_channels,
    bytes_on_disk,
    explain_segments,
    queue_meta,
    queue_position,
    resolve,
    segments,
    stream_checkpoint_offsets,
)
from .deliver import deliver
from .output import (
    EXIT_CORRUPTION,
    CommandError,
    Group,
    Output,
    common_options,
    data_path,
    iso_ms,
    open_store,
    printable,
    progress_file,
    show,
    silent_option,
    table,
    text_or_base64,
)
from .records import (
    DUMP_VERSION,
    attributes_doc,
    attributes_of,
    dump_line,
    message_id,
    parse_attributes,
    parse_time_ms,
    record_doc,
    record_hex,
    record_text,
    start_offsets,
)
from .sql import apps, run_app, sql
from .triggers import run_triggers, triggers
from .video import video, video_rows

kind_option = click.option(
    "--kind",
    type=click.Choice(KINDS),
    default=None,
    help="Which kind NAME is, when several kinds share it (or write kind:NAME).",
)


@click.group(cls=Group)
@click.version_option(tidelog.__version__, prog_name="tidelog")
@click.option(
    "--json", "as_json", is_flag=True, help="Machine-readable JSON output (for every command)."
)
@click.pass_context
def main(ctx: click.Context, as_json: bool) -> None:
    """Inspect, operate and replay a tidelog store.

    Every command takes --data DIR (default $TIDELOG_DATA, else ./tidelog-data)
    and --json (before or after the command's name). Under --json, errors are
    one JSON line on stderr: {"error": {"code", "message", "exit_code"}}.
    Exit codes: 0 ok, 1 error, 2 usage, 3 corruption found.

    Example:

    \b
        tidelog create queue jobs && echo hello | tidelog send jobs && tidelog ls
    """
    ctx.obj = {"json": as_json}


# -- ls ------------------------------------------------------------------------------------------


def _oldest_ms(log: tidelog.Log) -> int | None:
    for record in log.read(log.start_offset, log.start_offset + 1):
        return record.timestamp_ms
    return None


def _channel_summary(store: tidelog.Store, channel: Channel) -> dict[str, Any]:
    records = sum(p.log.end_offset - p.log.start_offset for p in channel.parts)
    oldest = [t for p in channel.parts if len(p.log) and (t := _oldest_ms(p.log)) is not None]
    newest = [p.log.ends().last_timestamp_ms for p in channel.parts if len(p.log)]
    row: dict[str, Any] = {
        "kind": channel.kind,
        "name": channel.name,
        "messages": records,
        "records": records,
        "bytes": sum(bytes_on_disk(store, p.log) for p in channel.parts),
        "oldest": iso_ms(min(oldest)) if oldest else None,
        "newest": iso_ms(max(newest)) if newest else None,
        "visible": None,
        "in_flight": None,
        "delayed": None,
    }
    if channel.kind == "queue":
        counts = channel.handle.approximate_counts()
        row.update(visible=counts.visible, in_flight=counts.in_flight, delayed=counts.delayed)
        # What a user calls a queue's messages: those not deleted yet.
        row["messages"] = counts.visible + counts.in_flight + counts.delayed
    if channel.kind == "stream":
        row["shards"] = len(channel.parts)
    return row


@main.command("ls")
@kind_option
@common_options
def ls(kind: str | None, out: Output) -> None:
    """List channels: messages, bytes on disk, oldest and newest record, queue counts.

    Opens the store read-only. For a queue, `messages` counts the messages
    not deleted yet (visible + in flight + delayed, SQS's approximate
    counts); for a stream, topic or log, the records retained. `records`
    counts the records still on disk (a queue's deleted messages that its
    segments or replay window still hold included).

    Example:

    \b
        tidelog ls --kind queue --json
    """
    with open_store(out, readonly=True) as store:
        rows = [_channel_summary(store, c) for c in all_channels(store, kind)]
        if kind is None:
            rows += video_rows(store)  # cli/video.py: `tidelog video info` shows more
    columns = ["kind", "name", "messages", "records", "bytes", "oldest", "newest"]
    columns += ["visible", "in_flight", "delayed"]
    out.emit(
        {"data": data_path(out.data), "channels": rows},
        rows=rows,
        columns=columns,
        lines=[f"store {data_path(out.data)}: {len(rows)} channels"],
    )


# -- info ----------------------------------------------------------------------------------------


@main.command("info")
@click.argument("name")
@click.option(
    "--kind",
    type=click.Choice(KINDS + BACKGROUND_KINDS),
    default=None,
    help="Which kind NAME is, when several kinds share it (or write kind:NAME).",
)
@common_options
def info(name: str, kind: str | None, out: Output) -> None:
    """Configuration, shards or segments, subscriptions, consumers, and why segments stay;
    for a delivery stream, SQL application, trigger or function, its configuration and progress.

    For each segment: its offsets, size and why it is still on disk (the
    active segment, retention, an unacked message at the queue's head, a
    replay window, a consumer that has not checkpointed past it). For a
    delivery stream: records and bytes buffered (not yet delivered), the
    last delivery, and the lag (age of the oldest buffered record, records
    behind). For an application: running or stopped, source, destination,
    window, the last window computed, lag in records, windows and rows
    emitted, late records and the last error. For a trigger (by UUID): its
    settings, state, lag, invocations, errors, mean duration and last error.

    Example:

    \b
        tidelog info jobs            # or: tidelog info queue:jobs --json
        tidelog info delivery-stream:clicks-to-s3
    """
    with open_store(out, readonly=True) as store:
        found = _info_find(store, name, kind)
        if isinstance(found, Channel):
            channel = found
            doc = _info_doc(store, channel)
        else:
            doc = background.info_doc(store, *found)
    if not isinstance(found, Channel):
        out.emit(doc, lines=background.info_lines(doc))
        return
    lines = [f"{channel.title}", "", "configuration:"]
    lines += [f"  {k}: {show(v)}" for k, v in doc["config"].items()]
    if doc.get("shards"):
        lines += ["", "shards:", table(doc["shards"])]
    if doc.get("queue"):
        lines += ["", "queue position:"]
        lines += [f"  {k}: {show(v)}" for k, v in doc["queue"].items()]
    if doc.get("consumers"):
        lines += ["", "consumers:", table(doc["consumers"])]
    if doc.get("subscriptions") is not None:
        lines += ["", "subscriptions:", table(doc["subscriptions"])]
    for part in doc["logs"]:
        title = f"log {part['log']}" + (f" ({part['shard_id']})" if part["shard_id"] else "")
        lines += [
            "",
            f"{title}: offsets {part['start_offset']}..{part['end_offset']}, "
            f"{part['records']} records, {part['bytes']} bytes",
        ]
        rows = [
            {
                "base": s["base_offset"],
                "end": s["end_offset"] if s["end_offset"] is not None else "(active)",
                "bytes": s["size_bytes"],
                "newest": iso_ms(s["last_timestamp_ms"]),
                "why kept": s["why_kept"],
            }
            for s in part["segments"]
        ]
        lines.append(table(rows))
    out.emit(doc, lines=lines)


def _info_find(store: tidelog.Store, name: str, kind: str | None) -> Channel | tuple[str, Any]:
    """The channel, or (kind, handle) of the delivery stream or application, called `name`.

    As `resolve`, with delivery streams and applications among the kinds:
    raises click.UsageError when a bare name is taken by several, NotFound
    when it names nothing.
    """
    head, sep, rest = name.partition(":")
    if sep and head in BACKGROUND_KINDS and kind is None:
        name, kind = rest, head
    if kind in BACKGROUND_KINDS:
        return kind, background.find(store, kind, name)
    if kind is not None or name.partition(":")[0] in KINDS:
        return resolve(store, name, kind)
    found: list[Channel | tuple[str, Any]] = []
    with contextlib.suppress(tidelog.NotFound):
        found.append(resolve(store, name))
    for candidate in BACKGROUND_KINDS:
        try:
            found.append((candidate, background.find(store, candidate, name)))
        except tidelog.NotFound:
            continue
    if not found:
        raise tidelog.NotFound(
            f"{name!r}: no stream, queue, topic, log, delivery stream or application has this name"
        )
    if len(found) > 1:
        kinds = ", ".join(f"{f.kind if isinstance(f, Channel) else f[0]}:{name}" for f in found)
        raise click.UsageError(f"{name!r} names several things; say which: {kinds}")
    return found[0]


def _info_doc(store: tidelog.Store, channel: Channel) -> dict[str, Any]:
    doc: dict[str, Any] = {"kind": channel.kind, "name": channel.name}
    checkpoints: dict[str, dict[str, int]] | None = None
    if channel.kind == "stream":
        stream: tidelog.Stream = channel.handle
        description = stream.describe()
        doc["config"] = {
            "status": description.status,
            "retention_hours": description.retention_hours,
            "max_record_bytes": description.max_record_bytes,
            "created": iso_ms(description.created_ms),
            "open_shards": description.open_shard_count,
        }
        doc["shards"] = [
            {
                "shard_id": s.shard_id,
                "starting_hash_key": str(s.starting_hash_key),
                "ending_hash_key": str(s.ending_hash_key),
                "parents": ",".join(s.parent_shard_ids) or None,
                "closed": s.closed,
            }
            for s in description.shards
        ]
        checkpoints = stream_checkpoint_offsets(stream)
        consumers = []
        for consumer, done in checkpoints.items():
            for part in channel.parts:
                at = done.get(part.label)
                end = part.log.end_offset
                consumers.append(
                    {
                        "consumer": consumer,
                        "shard_id": part.label,
                        "checkpoint_offset": at,
                        "lag": end - (at + 1 if at is not None else part.log.start_offset),
                    }
                )
        doc["consumers"] = consumers
    elif channel.kind == "queue":
        queue: tidelog.Queue = channel.handle
        attributes = queue.attributes()
        doc["config"] = {k: v for k, v in attributes.items() if not k.startswith("approximate_")}
        head, frontier = queue_position(store, queue)
        end = channel.parts[0].log.end_offset
        counts = queue.approximate_counts()
        doc["queue"] = {
            "head": head,
            "frontier": frontier,
            "end": end,
            "backlog": end - head,
            "visible": counts.visible,
            "in_flight": counts.in_flight,
            "delayed": counts.delayed,
        }
        doc["views"] = [
            {
                "topic": view.log.view.topic,
                "subscription": view.log.view.subscription,
                "from_offset": view.log.view.start,
                "until_offset": view.log.view.until,
            }
            for view in channel.views
        ]
        doc["dead_letter_sources"] = [q.name for q in store.dead_letter_source_queues(queue.name)]
        doc["consumers"] = [
            {
                "consumer": "(the queue's shared cursor)",
                "head": head,
                "frontier": frontier,
                "lag": end - head,
            }
        ]
    elif channel.kind == "topic":
        topic: tidelog.Topic = channel.handle
        doc["config"] = topic.attributes()
        doc["subscriptions"] = [_subscription_doc(s) for s in topic.subscriptions()]
    else:
        log_info = channel.handle.info
        doc["config"] = {
            "segment_bytes_max": log_info.segment_bytes_max,
            "retention_ms": log_info.retention_ms,
            "retention_bytes": log_info.retention_bytes,
            "created": iso_ms(log_info.created_ms),
        }
    doc["config"] = json.loads(json.dumps(doc["config"], default=str))
    parts = []
    for part in channel.parts:
        segs = segments(store, part.log)
        explain_segments(store, channel, part, segs, checkpoints)
        ends = part.log.ends()
        parts.append(
            {
                "shard_id": part.label or None,
                "log": part.log.name,
                "start_offset": ends.start_offset,
                "end_offset": ends.next_offset,
                "records": ends.next_offset - ends.start_offset,
                "bytes": sum(s.size_bytes for s in segs),
                "segments": [s.to_dict() for s in segs],
            }
        )
    doc["logs"] = parts
    return doc


# -- create / delete -----------------------------------------------------------------------------


@main.group("create")
def create() -> None:
    """Create a stream, queue, topic, delivery stream or SQL application.

    Example:

    \b
        tidelog create stream clicks --shards 4
    """


@create.command("stream")
@click.argument("name")
@click.option("--shards", type=click.IntRange(1, 500), default=1, show_default=True)
@click.option("--retention-hours", type=click.IntRange(24, 8760), default=24, show_default=True)
@click.option("--max-record-bytes", type=int, default=1024 * 1024, show_default=True)
@click.option("--exist-ok", is_flag=True, help="Succeed if it exists already.")
@common_options
def create_stream(
    name: str,
    shards: int,
    retention_hours: int,
    max_record_bytes: int,
    exist_ok: bool,
    out: Output,
) -> None:
    """Create a stream (Kinesis's model) of SHARDS shards.

    Example:

    \b
        tidelog create stream clicks --shards 4 --retention-hours 48
    """
    with open_store(out, readonly=False) as store:
        stream = store.create_stream(
            name,
            shards,
            retention_hours=retention_hours,
            max_record_bytes=max_record_bytes,
            exist_ok=exist_ok,
        )
        shard_ids = [s.shard_id for s in stream.shards()]
    out.emit(
        {"kind": "stream", "name": name, "shards": shard_ids},
        lines=[f"created stream {name} ({len(shard_ids)} shards)"],
    )


@create.command("queue")
@click.argument("name")
@click.option("--visibility-timeout", type=int, default=30, show_default=True, help="Seconds.")
@click.option("--delay", type=int, default=0, show_default=True, help="Seconds.")
@click.option("--retention", type=int, default=4 * 24 * 3600, show_default=True, help="Seconds.")
@click.option("--max-message-size", type=int, default=1024 * 1024, show_default=True)
@click.option("--receive-wait", type=int, default=0, show_default=True, help="Seconds.")
@click.option("--dead-letter", metavar="QUEUE:N", help="Dead-letter queue after N receives.")
@click.option("--fifo", is_flag=True, help="FIFO queue (the name must end in .fifo).")
@click.option("--content-based-dedup", is_flag=True)
@click.option("--replay-window", type=int, default=None, help="Keep passed history (seconds).")
@click.option("--exist-ok", is_flag=True, help="Succeed if it exists with these attributes.")
@common_options
def create_queue(
    name: str,
    visibility_timeout: int,
    delay: int,
    retention: int,
    max_message_size: int,
    receive_wait: int,
    dead_letter: str | None,
    fifo: bool,
    content_based_dedup: bool,
    replay_window: int | None,
    exist_ok: bool,
    out: Output,
) -> None:
    """Create a queue (SQS's model; times in seconds, limits as SQS's).

    Example:

    \b
        tidelog create queue jobs --visibility-timeout 60 --dead-letter jobs-dlq:5
    """
    dlq: tuple[str, int] | None = None
    if dead_letter:
        target, sep, count = dead_letter.rpartition(":")
        if not sep or not count.isdigit():
            raise click.BadParameter("expected QUEUE:N", param_hint="--dead-letter")
        dlq = (target, int(count))
    with open_store(out, readonly=False) as store:
        queue = store.create_queue(
            name,
            visibility_timeout=visibility_timeout,
            delay=delay,
            retention=retention,
            max_message_size=max_message_size,
            receive_wait=receive_wait,
            dead_letter=dlq,
            fifo=fifo,
            content_based_dedup=content_based_dedup,
            replay_window=replay_window,
            exist_ok=exist_ok,
        )
        attributes = json.loads(json.dumps(queue.attributes(), default=str))
    out.emit(
        {"kind": "queue", "name": name, "attributes": attributes}, lines=[f"created queue {name}"]
    )


@create.command("topic")
@click.argument("name")
@click.option(
    "--retention", type=int, default=24 * 3600, show_default=True, help="Seconds of history."
)
@click.option("--fifo", is_flag=True, help="FIFO topic (the name must end in .fifo).")
@click.option("--content-based-dedup", is_flag=True)
@click.option("--display-name", default="")
@click.option("--exist-ok", is_flag=True, help="Succeed if it exists with these attributes.")
@common_options
def create_topic(
    name: str,
    retention: int,
    fifo: bool,
    content_based_dedup: bool,
    display_name: str,
    exist_ok: bool,
    out: Output,
) -> None:
    """Create a topic (SNS's model): publish fans out to subscribed queues.

    Example:

    \b
        tidelog create topic orders --retention 3600
    """
    with open_store(out, readonly=False) as store:
        topic = store.create_topic(
            name,
            fifo=fifo,
            retention=retention,
            content_based_dedup=content_based_dedup,
            display_name=display_name,
            exist_ok=exist_ok,
        )
        attributes = json.loads(json.dumps(topic.attributes(), default=str))
    out.emit(
        {"kind": "topic", "name": name, "attributes": attributes},
        lines=[f"created topic {name}"],
    )


@main.command("delete")
@click.argument("name")
@kind_option
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@common_options
def delete(name: str, kind: str | None, yes: bool, out: Output) -> None:
    """Delete a channel and all its messages (atomic; files go after the commit).

    Asks for confirmation, saying how many records go, unless --yes (with
    no terminal to ask, it refuses without --yes).

    Example:

    \b
        tidelog delete queue:jobs --yes
    """
    with open_store(out, readonly=False) as store:
        channel = resolve(store, name, kind)
        if not yes:
            records = sum(p.log.end_offset - p.log.start_offset for p in channel.parts)
            click.confirm(
                f"delete {channel.title} and its {records} records?", abort=True, err=True
            )
        if channel.kind == "stream":
            store.delete_stream(channel.name)
        elif channel.kind == "queue":
            store.delete_queue(channel.name)
        elif channel.kind == "topic":
            store.delete_topic(channel.name)
        else:
            store.delete_log(channel.name)
    out.emit(
        {"deleted": {"kind": channel.kind, "name": channel.name}},
        lines=[f"deleted {channel.title}"],
    )


# -- subscriptions -------------------------------------------------------------------------------


@main.command("subscribe")
@click.argument("topic")
@click.argument("queue")
@click.option("--filter", "filter_policy", metavar="JSON", help="SNS filter policy.")
@click.option(
    "--filter-scope",
    type=click.Choice(["attributes", "body"]),
    default="attributes",
    show_default=True,
    help="Filter on message attributes or on the JSON body.",
)
@click.option("--raw", is_flag=True, help="Raw message delivery (no SNS JSON envelope).")
@common_options
def subscribe(
    topic: str,
    queue: str,
    filter_policy: str | None,
    filter_scope: str,
    raw: bool,
    out: Output,
) -> None:
    """Subscribe QUEUE to TOPIC, optionally filtered (SNS's filter policy language).

    Example:

    \b
        tidelog subscribe orders video-jobs --filter '{"kind": ["video"]}' --raw
    """
    policy = _json_option(filter_policy, "--filter")
    with open_store(out, readonly=False) as store:
        sub = store.topic(topic).subscribe(
            store.queue(queue),
            filter_policy=policy,
            filter_scope="body" if filter_scope == "body" else "attributes",
            raw=raw,
        )
        doc = _subscription_doc(sub)
    out.emit(doc, lines=[f"subscribed queue {queue} to topic {topic} ({sub.id})"])


@main.command("unsubscribe")
@click.argument("topic")
@click.argument("queue")
@common_options
def unsubscribe(topic: str, queue: str, out: Output) -> None:
    """Remove QUEUE's subscription to TOPIC (QUEUE may also be a subscription id).

    Example:

    \b
        tidelog unsubscribe orders video-jobs
    """
    with open_store(out, readonly=False) as store:
        handle = store.topic(topic)
        subs = [
            s
            for s in handle.subscriptions()
            if s.id == queue or s.arn == queue or (s.protocol == "sqs" and s.endpoint == queue)
        ]
        if not subs:
            raise click.ClickException(f"unsubscribe: {queue!r} is not subscribed to {topic!r}")
        for sub in subs:
            handle.unsubscribe(sub)
    out.emit(
        {"topic": topic, "unsubscribed": [s.id for s in subs]},
        lines=[f"unsubscribed {queue} from {topic}"],
    )


def _subscription_doc(sub: Any) -> dict[str, Any]:
    return {
        "id": sub.id,
        "arn": sub.arn,
        "topic": sub.topic,
        "protocol": sub.protocol,
        "endpoint": sub.endpoint,
        "filter_policy": sub.filter_policy,
        "filter_scope": sub.filter_scope,
        "raw": sub.raw,
        "status": sub.status,
        "effective_offset": sub.effective_offset,
    }


def _json_option(text: str | None, hint: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint=hint) from None


# -- put / send / publish ------------------------------------------------------------------------


def _messages(message: str | None, stdin: TextIO) -> Iterator[str]:
    """The message argument, or one message per line of stdin."""
    if message is not None:
        yield message
        return
    for line in stdin:
        line = line.rstrip("\n").rstrip("\r")
        if line:
            yield line


def _batches(items: Iterator[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


attr_option = click.option(
    "--attr",
    "attrs",
    multiple=True,
    metavar="NAME[:TYPE]=VALUE",
    help="Message attribute (repeatable); TYPE String (default), Number or Binary (base64).",
)


@main.command("put")
@click.argument("stream")
@click.argument("message", required=False)
@click.option("--key", help="Partition key (default: a random one per record).")
@common_options
def put(stream: str, message: str | None, key: str | None, out: Output) -> None:
    """Put records into STREAM: MESSAGE, or one per line of stdin.

    Example:

    \b
        seq 3 | tidelog put clicks --key user-42
    """
    results = []
    with open_store(out, readonly=False) as store:
        handle = store.stream(stream)
        for batch in _batches(_messages(message, sys.stdin), 500):
            entries = [(m.encode(), key or uuid.uuid4().hex) for m in batch]
            got = handle.put_many(entries)
            for result in got:
                if not result.ok:
                    raise click.ClickException(f"put: {result.error_message}")
                results.append(
                    {"shard_id": result.shard_id, "sequence_number": result.sequence_number}
                )
    out.emit(
        {"stream": stream, "records": results},
        lines=[f"{r['shard_id']} {r['sequence_number']}" for r in results],
    )


@main.command("send")
@click.argument("queue")
@click.argument("message", required=False)
@attr_option
@click.option("--key", "group", help="Message group id (FIFO queues).")
@click.option("--dedup-id", help="Deduplication id (FIFO queues).")
@click.option("--delay", type=click.IntRange(0, 900), default=None, help="Seconds.")
@common_options
def send(
    queue: str,
    message: str | None,
    attrs: tuple[str, ...],
    group: str | None,
    dedup_id: str | None,
    delay: int | None,
    out: Output,
) -> None:
    """Send messages to QUEUE: MESSAGE, or one per line of stdin.

    Example:

    \b
        tidelog send jobs 'resize 7.jpg' --attr kind=image --attr size:Number=7
    """
    attributes = parse_attributes(attrs)
    results = []
    with open_store(out, readonly=False) as store:
        handle = store.queue(queue)
        for batch in _batches(_messages(message, sys.stdin), 10):
            entries = [
                tidelog.SendEntry(
                    body=m, attributes=attributes, delay=delay, group_id=group, dedup_id=dedup_id
                )
                for m in batch
            ]
            got = handle.send_many(entries)
            if got.failed:
                raise click.ClickException(f"send: {got.failed[0].message}")
            for _entry_id, result in got.successful:
                results.append({"id": result.id, "sequence_number": result.sequence_number})
    out.emit({"queue": queue, "messages": results}, lines=[r["id"] for r in results])


@main.command("publish")
@click.argument("topic")
@click.argument("message", required=False)
@attr_option
@click.option("--key", "group", help="Message group id (FIFO topics).")
@click.option("--dedup-id", help="Deduplication id (FIFO topics).")
@click.option("--subject", help="SNS subject.")
@common_options
def publish(
    topic: str,
    message: str | None,
    attrs: tuple[str, ...],
    group: str | None,
    dedup_id: str | None,
    subject: str | None,
    out: Output,
) -> None:
    """Publish messages to TOPIC: MESSAGE, or one per line of stdin.

    Example:

    \b
        tidelog publish orders 'order 7' --attr kind=video
    """
    attributes = parse_attributes(attrs)
    results = []
    with open_store(out, readonly=False) as store:
        handle = store.topic(topic)
        for body in _messages(message, sys.stdin):
            options: dict[str, Any] = {"attributes": attributes, "subject": subject}
            if group is not None:
                options["group_id"] = group
            if dedup_id is not None:
                options["dedup_id"] = dedup_id
            result = handle.publish(body.encode(), **options)
            results.append(
                {
                    "id": result.id,
                    "sequence_number": result.sequence_number,
                    "delivered": result.delivered,
                    "duplicate": result.duplicate,
                }
            )
    out.emit(
        {"topic": topic, "messages": results},
        lines=[f"{r['id']} (delivered to {r['delivered']})" for r in results],
    )


# -- tail ----------------------------------------------------------------------------------------


@main.command("tail")
@click.argument("name")
@kind_option
@click.option("-f", "--follow", is_flag=True, help="Keep printing new records (Ctrl-C stops).")
@click.option(
    "--from",
    "start",
    default=None,
    metavar="trim-horizon|latest|TIME|SEQ",
    help="Where to start (default trim-horizon): TIME is ISO 8601 or an age (-5m, 2h); "
    "SEQ a sequence number or offset.",
)
@click.option("--shard", help="Only this shard (id or number) of a stream.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "hex"]),
    default="text",
    show_default=True,
)
@click.option(
    "-n",
    "--lines",
    "newest",
    type=click.IntRange(min=0),
    help="Print only the newest N records (of all shards, by arrival time), as tail -n.",
)
@click.option("--max", "limit", type=click.IntRange(min=1), help="Stop after printing N records.")
@common_options
def tail(
    name: str,
    kind: str | None,
    follow: bool,
    start: str | None,
    shard: str | None,
    fmt: str,
    newest: int | None,
    limit: int | None,
    out: Output,
) -> None:
    """Print a channel's records; -n N the newest N; with -f, follow new ones as `tail -f`.

    Without -n it prints every retained record from --from (default the
    oldest). With -n N it prints the newest N of them, oldest first (a
    stream's shards merged by arrival time), as Unix tail and redis-cli do;
    with -f it then keeps printing new records. --max stops after N records
    in all. Opens the store read-only. Following wakes within 50 ms of
    appends made by any process, and stops cleanly on Ctrl-C. --json prints
    JSON lines (as --format json).

    Example:

    \b
        tidelog tail jobs -n 10 -f        # the newest 10, then follow
        tidelog tail clicks --from -10m --format json
    """
    if out.json:
        fmt = "json"
    with open_store(out, readonly=True) as store:
        channel = resolve(store, name, kind)
        if shard is not None:
            wanted = shard if not shard.isdigit() else f"shardId-{int(shard):012d}"
            channel.parts = [p for p in channel.parts if p.label == wanted]
            if not channel.parts:
                raise click.BadParameter(
                    f"{channel.title} has no shard {shard}", param_hint="--shard"
                )
        channel.parts = channel.readable_parts()  # a queue's views too
        positions = start_offsets(channel, start or "trim-horizon")
        printed = 0
        try:
            if newest is not None:
                for part, record in _newest(channel, positions, newest):
                    _print_record(channel, part, record, fmt)
                    printed += 1
                    if limit is not None and printed >= limit:
                        return
            while True:
                progressed = False
                for part in channel.parts:
                    for record in part.log.read(positions[part.label]):
                        positions[part.label] = record.offset + 1
                        progressed = True
                        _print_record(channel, part, record, fmt)
                        printed += 1
                        if limit is not None and printed >= limit:
                            return
                if not follow:
                    return
                if not progressed and channel.parts:
                    first = channel.parts[0]
                    first.log.wait(positions[first.label], 0.05)
        except KeyboardInterrupt:
            return
        except BrokenPipeError:
            sys.stderr.close()  # the reader went away (tail ... | head): stop quietly
            return


def _newest(
    channel: Channel, positions: dict[str, int], count: int
) -> list[tuple[Part, tidelog.Record]]:
    """The newest `count` records at or after `positions`, oldest first.

    Reads at most `count` records of each part; moves each position past
    what it read, so following goes on from there.
    """
    found: list[tuple[int, int, int, Part, tidelog.Record]] = []
    for index, part in enumerate(channel.parts):
        begin = max(positions[part.label], part.log.end_offset - count)
        positions[part.label] = begin
        for record in part.log.read(begin):
            positions[part.label] = record.offset + 1
            found.append((record.timestamp_ms, index, record.offset, part, record))
    found.sort(key=lambda item: item[:3])
    return [(part, record) for *_, part, record in found[-count:]] if count else []


def _print_record(channel: Channel, part: Part, record: tidelog.Record, fmt: str) -> None:
    if fmt == "json":
        text = json.dumps(record_doc(channel, part, record))
    elif fmt == "hex":
        text = record_hex(channel, part, record)
    else:
        text = record_text(channel, part, record)
    click.echo(text)
    sys.stdout.flush()


# -- receive -------------------------------------------------------------------------------------


@main.command("receive")
@click.argument("queue")
@click.option("--max", "max_messages", type=click.IntRange(1, 10), default=1, show_default=True)
@click.option("--wait", type=click.FloatRange(0, 20), default=0, show_default=True, help="Seconds.")
@click.option("--visibility-timeout", type=click.IntRange(0, 43200), default=None)
@click.option("--delete", "delete_after", is_flag=True, help="Delete (acknowledge) what it prints.")
@common_options
def receive(
    queue: str,
    max_messages: int,
    wait: float,
    visibility_timeout: int | None,
    delete_after: bool,
    out: Output,
) -> None:
    """Receive up to --max messages from QUEUE, long-polling up to --wait seconds.

    Without --delete the messages stay leased until their visibility
    timeout passes, then come back (print the receipt to delete them later).

    Example:

    \b
        tidelog receive jobs --max 10 --wait 20 --delete
    """
    with open_store(out, readonly=False) as store:
        handle = store.queue(queue)
        messages = handle.receive(max_messages, wait=wait, visibility_timeout=visibility_timeout)
        docs = []
        for m in messages:
            docs.append(
                {
                    "id": m.id,
                    "body": text_or_base64(m.body),
                    "attributes": attributes_doc(m.typed_attributes),
                    "receipt": m.receipt,
                    "receive_count": m.receive_count,
                    "sent_at": iso_ms(m.sent_at_ms),
                    "group_id": m.group_id,
                }
            )
        if delete_after and messages:
            result = handle.delete_many([(str(i), m.receipt) for i, m in enumerate(messages)])
            if result.failed:
                raise click.ClickException(f"delete: {result.failed[0].message}")
    lines = []
    for m, doc in zip(messages, docs, strict=True):
        shown = " ".join(
            f"{k}={v if not isinstance(v, bytes) else '<binary>'}" for k, v in m.attributes.items()
        )
        lines.append(f"{m.id} {printable(m.body)}" + (f"  {{{shown}}}" if shown else ""))
        if not delete_after:
            lines.append(f"  receipt {doc['receipt']}")
    out.emit({"queue": queue, "messages": docs, "deleted": delete_after}, lines=lines)


# -- dump / load ---------------------------------------------------------------------------------


def _channel_config(store: tidelog.Store, channel: Channel) -> dict[str, Any]:
    if channel.kind == "stream":
        d = channel.handle.describe()
        return {
            "shards": len(d.shards),
            "retention_hours": d.retention_hours,
            "max_record_bytes": d.max_record_bytes,
            "lineage": any(s.parent_shard_ids for s in d.shards),
        }
    if channel.kind == "queue":
        attrs = channel.handle.attributes()
        keep = (
            "visibility_timeout",
            "delay",
            "retention",
            "max_message_size",
            "receive_wait",
            "fifo",
            "content_based_dedup",
            "replay_window",
        )
        return {k: attrs[k] for k in keep if k in attrs}
    if channel.kind == "topic":
        attrs = channel.handle.attributes()
        topic_keys = ("fifo", "retention", "content_based_dedup", "display_name")
        return {k: attrs[k] for k in topic_keys if k in attrs}
    log_info = channel.handle.info
    return {
        "segment_bytes_max": log_info.segment_bytes_max,
        "retention_ms": log_info.retention_ms,
        "retention_bytes": log_info.retention_bytes,
    }


@main.command("dump")
@click.argument("name")
@kind_option
@click.option(
    "--format", "fmt", type=click.Choice(["jsonl", "hex"]), default="jsonl", show_default=True
)
@silent_option
@common_options
def dump(name: str, kind: str | None, fmt: str, silent: bool, out: Output) -> None:
    """Export a channel's records: JSON lines that `tidelog load` reads back, or hex.

    The first line describes the channel (and how many records follow);
    each further line is one record with its part (shard), offset,
    timestamp, flags, key, headers and value (UTF-8 text where they are,
    else base64). Opens the store read-only. A progress bar goes to stderr
    (--silent hides it); the records go to stdout.

    Example:

    \b
        tidelog dump jobs > jobs.jsonl && tidelog load jobs --data ./copy < jobs.jsonl
    """
    with open_store(out, readonly=True) as store:
        channel = resolve(store, name, kind)
        # The end of each part when the dump starts: a snapshot, however
        # many records writers append meanwhile.
        parts = channel.readable_parts()  # a queue's views too
        ranges = [(p, p.log.start_offset, p.log.end_offset) for p in parts]
        # A view's offsets cover the topic's other records too: count what it holds.
        total = sum(
            end - begin if p.label[:5] != "view-" else sum(1 for _ in p.log.read(begin, end))
            for p, begin, end in ranges
        )
        header = {
            "tidelog_dump": DUMP_VERSION,
            "kind": channel.kind,
            "name": channel.name,
            "config": _channel_config(store, channel),
            "parts": [p.label for p in parts],
            "records": total,
        }
        if fmt == "jsonl":
            click.echo(json.dumps(header))
        with click.progressbar(
            length=total, label=f"dumping {channel.title}", file=progress_file(silent)
        ) as bar:
            for part, begin, end in ranges:
                for record in part.log.read(begin, end):
                    if fmt == "jsonl":
                        click.echo(json.dumps(dump_line(part, record)))
                    else:
                        click.echo(record_hex(channel, part, record))
                    bar.update(1)


@main.command("load")
@click.argument("name")
@click.option("--input", "source", type=click.File("r"), default="-", help="Dump file (stdin).")
@silent_option
@common_options
def load(name: str, source: TextIO, silent: bool, out: Output) -> None:
    """Import a `tidelog dump` into a new channel NAME, byte for byte.

    Creates the channel with the dumped configuration and appends every
    record with its original timestamp, key, headers and value. Offsets
    start again at 0. A stream keeps its shard count (not resharding lineage).
    A progress bar goes to stderr (--silent hides it).

    Example:

    \b
        tidelog load jobs-copy < jobs.jsonl
    """
    from .output import from_text_or_base64

    first = source.readline()
    try:
        header = json.loads(first)
    except ValueError:
        raise click.ClickException("load: the first line is not a tidelog dump header") from None
    if not isinstance(header, dict) or header.get("tidelog_dump") != DUMP_VERSION:
        raise click.ClickException("load: not a tidelog dump (version 1) header")
    kind = header["kind"]
    config = header.get("config", {})
    loaded = 0
    total = header.get("records")
    with (
        open_store(out, readonly=False) as store,
        # An older dump's header has no count: the bar then counts lines.
        click.progressbar(
            source,
            length=total if isinstance(total, int) else None,
            label=f"loading {kind} {name}",
            file=progress_file(silent),
        ) as lines,
    ):
        logs = _create_for_load(store, kind, name, config, header.get("parts", [""]))
        pending: list[dict[str, Any]] = []

        def flush() -> None:
            if not pending:
                return
            log = logs.get(pending[0]["part"])
            if log is None:
                raise click.ClickException(f"load: unknown part {pending[0]['part']!r}")
            log.append_many(
                [from_text_or_base64(r["value"]) for r in pending],
                [from_text_or_base64(r["key"]) for r in pending],
                [from_text_or_base64(r["headers"]) for r in pending],
                flags=pending[0].get("flags", 0),
                timestamp_ms=pending[0]["timestamp_ms"],
            )
            pending.clear()

        for line_number, line in enumerate(lines, start=2):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                raise click.ClickException(f"load: line {line_number} is not JSON") from None
            if pending and (
                row["part"] != pending[0]["part"]
                or row["timestamp_ms"] != pending[0]["timestamp_ms"]
                or row.get("flags", 0) != pending[0].get("flags", 0)
                or len(pending) >= 1000
            ):
                flush()
            pending.append(row)
            loaded += 1
        flush()
    out.emit(
        {"kind": kind, "name": name, "records": loaded},
        lines=[f"loaded {loaded} records into {kind} {name}"],
    )


def _create_for_load(
    store: tidelog.Store, kind: str, name: str, config: dict[str, Any], parts: list[str]
) -> dict[str, tidelog.Log]:
    from tidelog.catalog import log_name

    if kind == "stream":
        stream = store.create_stream(
            name,
            max(1, len(parts)),
            retention_hours=config.get("retention_hours", 24),
            max_record_bytes=config.get("max_record_bytes", 1024 * 1024),
        )
        new_ids = [s.shard_id for s in stream.shards()]
        return {
            old: store.log(log_name("stream", name, new))
            for old, new in zip(parts, new_ids, strict=True)
        }
    if kind == "queue":
        store.create_queue(name, **config)
        log = store.log(log_name("queue", name))
        # A dumped queue's views ("view-N") load into the new queue's own log.
        return {label: log for label in [*parts, ""]}
    if kind == "topic":
        store.create_topic(name, **config)
        return {"": store.log(log_name("topic", name))}
    if kind == "log":
        return {
            "": store.create_log(
                name,
                segment_bytes_max=config.get("segment_bytes_max"),
                retention_ms=config.get("retention_ms"),
                retention_bytes=config.get("retention_bytes"),
            )
        }
    raise click.ClickException(f"load: unknown kind {kind!r}")


# -- replay --------------------------------------------------------------------------------------


@main.command("replay")
@click.argument("source")
@click.option("--to", "dest", required=True, help="Destination queue or stream (kind:NAME ok).")
@click.option("--since", help="From this time (ISO 8601, or an age like -1h).")
@click.option("--from", "from_seq", help="From this sequence number or offset.")
@click.option("--filter", "filter_policy", metavar="JSON", help="SNS filter policy.")
@click.option(
    "--filter-scope",
    type=click.Choice(["attributes", "body"]),
    default="attributes",
    show_default=True,
)
@silent_option
@common_options
def replay(
    source: str,
    dest: str,
    since: str | None,
    from_seq: str | None,
    filter_policy: str | None,
    filter_scope: str,
    silent: bool,
    out: Output,
) -> None:
    """Replay SOURCE's retained history into a queue or stream, with a progress bar.

    Reads up to SOURCE's end when the command starts. Queue messages keep
    their body and attributes; stream records keep data and partition key.
    The bar goes to stderr (--silent hides it).

    Example:

    \b
        tidelog replay clicks --to queue:reprocess --since 2024-05-01T00:00:00Z
    """
    if since and from_seq:
        raise click.UsageError("give --since or --from, not both")
    policy = None
    if filter_policy is not None:
        try:
            policy = FilterPolicy(filter_policy, "body" if filter_scope == "body" else "attributes")
        except tidelog.InvalidArgument as exc:
            raise click.BadParameter(str(exc), param_hint="--filter") from None
    start = from_seq or "trim-horizon"
    if since:
        if parse_time_ms(since) is None:
            raise click.BadParameter(f"{since!r} is not a time", param_hint="--since")
        start = since
    sent = skipped = 0
    with open_store(out, readonly=False) as store:
        src = resolve(store, source)
        target = resolve(store, dest)
        if target.kind not in ("queue", "stream"):
            raise click.UsageError(f"--to: {target.title} is not a queue or stream")
        positions = start_offsets(src, start)
        ends = {p.label: p.log.end_offset for p in src.parts}
        total = sum(max(0, ends[p.label] - positions[p.label]) for p in src.parts)
        with click.progressbar(
            length=total, label=f"replaying {src.title}", file=progress_file(silent)
        ) as bar:
            batch: list[tuple[bytes, dict[str, tidelog.AttributeValue], str, dict[str, Any]]] = []
            for part in src.parts:
                for record in part.log.read(positions[part.label], ends[part.label]):
                    bar.update(1)
                    body, attributes, key, meta = _as_message(src, record)
                    if policy is not None and not policy.matches(
                        attribute_view(attributes)
                        if policy.scope == "attributes"
                        else body_view(body)
                    ):
                        skipped += 1
                        continue
                    batch.append((body, attributes, key, meta))
                    if len(batch) >= (10 if target.kind == "queue" else 500):
                        sent += _deliver(target, batch)
                        batch = []
            if batch:
                sent += _deliver(target, batch)
    out.emit(
        {"source": src.title, "to": target.title, "sent": sent, "filtered_out": skipped},
        lines=[f"replayed {sent} records from {src.title} into {target.title}"]
        + ([f"{skipped} did not match the filter"] if skipped else []),
    )


def _as_message(
    channel: Channel, record: tidelog.Record
) -> tuple[bytes, dict[str, tidelog.AttributeValue], str, dict[str, Any]]:
    if channel.kind in ("queue", "topic"):
        meta = queue_meta(record.headers)
        return record.value, attributes_of(meta), message_id(record.key), meta
    return record.value, {}, record.key.decode(errors="replace") or "replay", {}


def _deliver(
    target: Channel,
    batch: list[tuple[bytes, dict[str, tidelog.AttributeValue], str, dict[str, Any]]],
) -> int:
    if target.kind == "stream":
        result = target.handle.put_many(
            [(body, key[:256] or "replay") for body, _, key, _ in batch]
        )
        return len(batch) - int(result.failed_record_count)
    queue: tidelog.Queue = target.handle
    entries = []
    for body, attributes, key, meta in batch:
        group = meta.get("g") or ("replay" if queue.fifo else None)
        dedup = (meta.get("dd") or key[:128]) if queue.fifo else None
        entries.append(
            tidelog.SendEntry(body=body, attributes=attributes, group_id=group, dedup_id=dedup)
        )
    result = queue.send_many(entries)
    if result.failed:
        raise click.ClickException(f"replay: {result.failed[0].message}")
    return len(result.successful)


# -- verify / repair -----------------------------------------------------------------------------


def _problem_doc(problem: tidelog.Corruption) -> dict[str, Any]:
    return {
        "log": problem.log,
        "path": problem.path,
        "offset": problem.offset,
        "position": problem.position,
        "reason": problem.reason,
    }


def _problem_text(problem: tidelog.Corruption) -> str:
    where = problem.path or "(no file)"
    at = f"byte {problem.position}" if problem.position is not None else "byte ?"
    offset = f", offset {problem.offset}" if problem.offset is not None else ""
    return f"{where}: {at}{offset}: {problem.reason} (log {problem.log})"


@main.command("verify")
@click.argument("name", required=False)
@kind_option
@silent_option
@common_options
def verify(name: str | None, kind: str | None, silent: bool, out: Output) -> None:
    """Check every record's CRC, the framing and the LMDB index; exit 3 on corruption.

    Read-only. Prints each problem with its segment path and byte position,
    then "N problems found" or "OK". A progress bar goes to stderr (--silent
    hides it).

    Example:

    \b
        tidelog verify --data ./tidelog-data || echo "damaged: see tidelog repair"
    """
    with open_store(out, readonly=True) as store:
        scope = None if name is None else resolve(store, name, kind)
        logs = store.logs() if scope is None else [p.log for p in scope.parts]
        problems: list[tidelog.Corruption] = []
        with click.progressbar(logs, label="verifying", file=progress_file(silent)) as bar:
            for log in bar:
                problems += log.verify()
    docs = [_problem_doc(p) for p in problems]
    summary = f"{len(problems)} problems found" if problems else "OK"
    out.emit(
        {"ok": not problems, "logs_checked": len(logs), "problems": docs, "summary": summary},
        lines=[_problem_text(p) for p in problems] + [summary],
    )
    if problems:
        sys.exit(EXIT_CORRUPTION)


@main.command("repair")
@common_options
def repair(out: Output) -> None:
    """Salvage damaged logs: keep every intact batch, mark what was lost.

    Refuses while another process has the store open for writing (stop
    servers and writers first). Runs recovery (as any read-write open does),
    then, for every log, finds each damaged batch, header or missing
    segment, resynchronises on the next valid batch after it, keeps a
    fsynced `.broken` copy of each file it changes, overwrites the damaged
    bytes with a gap that names the lost offsets, and rebuilds the log's
    indexes. Every record after the damage is kept with its offset. Prints
    exactly which offsets were lost.

    Example:

    \b
        tidelog verify || tidelog repair && tidelog verify
    """
    with open_store(out, readonly=False) as store:
        recovery = store.recovery_report
        reports = [repair_log(store._logs, log.info) for log in store.logs()]
    recovered = recovery.to_dict() if recovery is not None else None
    damaged = [r for r in reports if r.damage]
    lines = []
    if recovery is not None:
        for item in recovery.logs:
            for problem in item.problems:
                lines.append(f"recovered {item.log}: {problem}")
    for r in damaged:
        for loss in r.losses:
            last = loss.first_offset + loss.records - 1
            lines.append(
                f"{r.log}: {loss.reason} in {loss.path} at byte {loss.position}: "
                f"lost offsets {loss.first_offset}-{last} ({loss.records} records, "
                f"{loss.size} bytes)"
            )
        lines.append(f"{r.log}: copies kept: {', '.join(r.broken_copies) or '-'}")
    dropped = sum(r.records_dropped for r in damaged)
    if recovery is not None:
        dropped += recovery.records_dropped
    lines.append(
        f"repaired {len(damaged)} logs, dropped {dropped} records; "
        f"rebuilt indexes of {len(reports)} logs"
        if damaged or dropped
        else f"nothing to repair; rebuilt indexes of {len(reports)} logs"
    )
    out.emit(
        {
            "recovery": recovered,
            "logs": [r.to_dict() for r in reports],
            "records_dropped": dropped,
        },
        lines=lines,
    )


@main.command("migrate")
@click.argument("source", type=click.Path(file_okay=False))
@click.argument("dest", type=click.Path(file_okay=False))
@silent_option
@common_options
def migrate_command(source: str, dest: str, silent: bool, out: Output) -> None:
    """Copy a format 1 store (tidelog before log v2) into a new format 2 store.

    SOURCE is only read, under its write lock; DEST must not exist or be
    empty. Queues, leases, checkpoints and every record keep their offsets
    and values. Stop the old store's writers first; afterwards, point them
    at DEST (or swap the directories). docs/format.md, "Format 1 stores".

    Example:

    \b
        tidelog migrate ./tidelog-data ./tidelog-data.v2 && tidelog verify --data ./tidelog-data.v2
    """
    quiet = silent or out.json

    def progress(name: str) -> None:
        if not quiet:
            click.echo(f"migrating {name}", err=True)

    report = migrate(source, dest, progress)
    out.emit(
        report.to_dict(),
        lines=[
            f"migrated {report.logs} logs, {report.segments} segments, {report.records} "
            f"records: {report.bytes_before} bytes of format 1, {report.bytes_after} of "
            f"format 2, into {report.dest}"
        ],
    )


# -- stats ---------------------------------------------------------------------------------------


def _sample(store: tidelog.Store, kind: str | None) -> dict[tuple[str, str], dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for channel in all_channels(store, kind):
        end = sum(p.log.end_offset for p in channel.parts)
        backlog: int | None = None
        if channel.kind == "queue":
            counts = channel.handle.approximate_counts()
            backlog = counts.visible + counts.in_flight + counts.delayed
        elif channel.kind == "stream":
            lags = []
            for done in stream_checkpoint_offsets(channel.handle).values():
                lags.append(
                    sum(
                        p.log.end_offset
                        - (done[p.label] + 1 if p.label in done else p.log.start_offset)
                        for p in channel.parts
                    )
                )
            backlog = max(lags) if lags else None
        out[(channel.kind, channel.name)] = {"end": end, "backlog": backlog}
    return out


@main.command("stats")
@click.option("-f", "--follow", is_flag=True, help="Refresh until Ctrl-C.")
@click.option("--interval", type=click.FloatRange(0.05, 3600), default=1.0, show_default=True)
@click.option("--count", type=click.IntRange(min=1), help="Stop after N refreshes.")
@kind_option
@common_options
def stats(follow: bool, interval: float, count: int | None, kind: str | None, out: Output) -> None:
    """Per-channel append rates and backlog, measured over --interval seconds.

    Backlog is a queue's undeleted messages, or a stream's largest consumer
    lag (records). Read-only. With -f it refreshes every --interval until
    Ctrl-C (JSON: one line per refresh).

    Example:

    \b
        tidelog stats -f --interval 2
    """
    refreshes = count if count is not None else (None if follow else 1)
    done = 0
    try:
        with open_store(out, readonly=True) as store:
            before = _sample(store, kind)
            started = time.monotonic()
            while refreshes is None or done < refreshes:
                time.sleep(interval)
                after = _sample(store, kind)
                now = time.monotonic()
                elapsed = max(now - started, 1e-9)
                rows = []
                for (k, n), current in after.items():
                    previous = before.get((k, n), current)
                    rows.append(
                        {
                            "kind": k,
                            "name": n,
                            "messages_per_second": round(
                                (current["end"] - previous["end"]) / elapsed, 1
                            ),
                            "records": current["end"],
                            "backlog": current["backlog"],
                        }
                    )
                before, started = after, now
                done += 1
                if follow and not out.json and sys.stdout.isatty():
                    click.clear()
                out.emit({"interval": interval, "channels": rows}, rows=rows)
                sys.stdout.flush()
    except KeyboardInterrupt:
        return


# -- serve ---------------------------------------------------------------------------------------


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=4566, show_default=True)
@click.option(
    "--sync",
    type=click.Choice(["always", "interval", "never"]),
    default="always",
    show_default=True,
)
@click.option(
    "--stomp-port",
    type=click.IntRange(0, 65535),
    default=61613,
    show_default=True,
    help="STOMP listener port (ActiveMQ conventions); --no-stomp turns it off.",
)
@click.option("--no-stomp", is_flag=True, help="Serve no STOMP listener.")
@click.option(
    "--stomp-users",
    type=click.Path(exists=True, dir_okay=False),
    help="File of login:passcode lines that STOMP CONNECT must match.",
)
@click.option(
    "--auth",
    "auth_file",
    type=click.Path(exists=True, dir_okay=False),
    help="File of 'ACCESS_KEY_ID SECRET' lines: AWS requests must be SigV4-signed by one.",
)
@click.option(
    "--no-workers",
    is_flag=True,
    help="Run no delivery streams or SQL applications in the background.",
)
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    default="warning",
    show_default=True,
    help="What the server logs to stderr.",
)
@click.option(
    "--access-log", is_flag=True, help="Log one line per HTTP request (on stdout, as uvicorn)."
)
@click.option(
    "--reset-api",
    is_flag=True,
    help="Answer POST /moto-api/reset and /_localstack/state/reset by dropping every "
    "channel (for test suites; off by default).",
)
@click.option(
    "--account-id",
    default="000000000000",
    show_default=True,
    help="The account in queue URLs and ARNs (a 12-digit access key id acts as its own).",
)
@common_options
def serve(
    host: str,
    port: int,
    sync: str,
    stomp_port: int,
    no_stomp: bool,
    stomp_users: str | None,
    auth_file: str | None,
    no_workers: bool,
    log_level: str,
    access_log: bool,
    reset_api: bool,
    account_id: str,
    out: Output,
) -> None:
    """Serve the store over the wire: SQS, SNS, Kinesis, Firehose and S3 for boto3 and
    the AWS CLI (one endpoint), and STOMP for ActiveMQ clients (docs/stomp.md).

    S3 serves buckets and objects kept in the store (docs/server.md, "S3"):
    `aws s3 ls/cp/sync` work against the same endpoint, and a Firehose
    delivery stream whose bucket is here delivers into it.

    Also runs the background workers: every delivery stream is delivered as
    its buffering hints fall due, and every running SQL application computes
    its windows (those created, started or stopped meanwhile, by any
    process, are picked up within a second); --no-workers leaves them to
    `tidelog deliver` and `tidelog run-app`. Blocks until SIGINT or SIGTERM,
    then finishes in-flight requests and prints a line saying it stopped.

    Example:

    \b
        tidelog serve --port 4566 &  aws --endpoint-url http://127.0.0.1:4566 sqs list-queues
        aws --endpoint-url http://127.0.0.1:4566 s3 mb s3://landing
    """
    from tidelog import server

    def banner(url: str, bound_stomp_port: int | None) -> None:
        """Printed once every listener is bound (so a port in use prints none)."""
        if out.json:
            return
        stomp = "" if bound_stomp_port is None else f", STOMP on {host}:{bound_stomp_port}"
        workers = "" if no_workers else "; delivery streams and SQL applications run here"
        click.echo(
            f"serving {data_path(out.data)}: AWS on {url}{stomp}, console at {url}/console/"
            f"{workers} (Ctrl-C stops)",
            err=True,
        )
        if reset_api:
            click.echo(
                "reset API on: POST /moto-api/reset or /_localstack/state/reset deletes "
                "every channel",
                err=True,
            )

    hints = {"AWS": "pass --port (0 picks a free one)", "STOMP": "pass --stomp-port or --no-stomp"}
    # uvicorn stops cleanly on SIGINT, then re-raises the signal it handled.
    with contextlib.suppress(KeyboardInterrupt):
        try:
            server.serve(
                out.data,
                host,
                port,
                sync,
                stomp_port=None if no_stomp else stomp_port,
                stomp_users=stomp_users,
                auth_file=auth_file,
                workers=not no_workers,
                log_level=log_level,
                access_log=access_log,
                reset_api=reset_api,
                account_id=account_id,
                on_ready=banner,
            )
        except server.PortInUse as exc:
            raise CommandError(f"{exc.strerror}: {hints[exc.listener]}", "PortInUse") from exc
    if not out.json:
        click.echo(f"stopped serving {data_path(out.data)}", err=True)


# -- bench ---------------------------------------------------------------------------------------


def _fdatasync_rate(directory: str, seconds: float) -> float:
    path = os.path.join(directory, "fsync-probe")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        count = 0
        block = b"\0" * 4096
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            os.pwrite(fd, block, 0)
            os.fdatasync(fd)
            count += 1
        return count / (time.perf_counter() - started)
    finally:
        os.close(fd)
        os.unlink(path)


@main.command("bench")
@click.option("--records", type=click.IntRange(10), default=20000, show_default=True)
@click.option("--size", type=click.IntRange(1, 1024 * 1024), default=100, show_default=True)
@click.option(
    "--seconds",
    type=click.FloatRange(0.05, 60),
    default=0.5,
    show_default=True,
    help="Time for each timed loop (fdatasync, single appends).",
)
@common_options
def bench(records: int, size: int, seconds: float, out: Output) -> None:
    """A quick self-benchmark of this machine: append, replay, queue cycle, fdatasync.

    Runs in a scratch store beside --data (on the same file system), which it
    removes afterwards; sync="always" throughout, so the numbers are durable
    ones. Single appends are bounded by the fdatasync rate printed beside them.

    Example:

    \b
        tidelog bench --records 50000 --json
    """
    parent = os.path.dirname(data_path(out.data)) or "."
    os.makedirs(parent, exist_ok=True)
    results: list[dict[str, Any]] = []

    def add(name: str, count: float, elapsed: float, unit: str = "ops/s") -> None:
        results.append(
            {
                "benchmark": name,
                "count": count,
                "seconds": round(elapsed, 4),
                "rate": round(count / max(elapsed, 1e-9), 1),
                "unit": unit,
            }
        )

    with tempfile.TemporaryDirectory(prefix="tidelog-bench-", dir=parent) as scratch:
        rate = _fdatasync_rate(scratch, seconds)
        results.append(
            {
                "benchmark": "fdatasync (4 KiB)",
                "count": None,
                "seconds": seconds,
                "rate": round(rate, 1),
                "unit": "syncs/s",
            }
        )
        value = os.urandom(size)
        with tidelog.open(os.path.join(scratch, "store")) as store:
            log = store.create_log("bench")
            started = time.perf_counter()
            singles = 0
            while time.perf_counter() - started < seconds:
                log.append(value)
                singles += 1
            add(
                "append, one record per commit", singles, time.perf_counter() - started, "records/s"
            )
            batch = 1000
            started = time.perf_counter()
            for first in range(0, records, batch):
                log.append_many([value] * min(batch, records - first))
            add(
                f"append, {batch} records per commit",
                records,
                time.perf_counter() - started,
                "records/s",
            )
            started = time.perf_counter()
            total = sum(1 for _ in log.read())
            add("replay (read every record)", total, time.perf_counter() - started, "records/s")
            queue = store.create_queue("bench")
            messages = min(records, 2000)
            started = time.perf_counter()
            for first in range(0, messages, 10):
                queue.send_many([value] * min(10, messages - first))
            cycled = 0
            while cycled < messages:
                got = queue.receive(10, wait=0)
                if not got:
                    break
                queue.delete_many([(str(i), m.receipt) for i, m in enumerate(got)])
                cycled += len(got)
            add(
                "queue cycle (send, receive, delete; batches of 10)",
                cycled,
                time.perf_counter() - started,
                "messages/s",
            )
    out.emit(
        {"record_bytes": size, "results": results},
        rows=results,
        columns=["benchmark", "rate", "unit", "count", "seconds"],
        lines=[f"tidelog bench: {size}-byte records, sync=always, beside {data_path(out.data)}"],
    )


main.add_command(deliver)  # cli/deliver.py
main.add_command(ops.delete_message)  # cli/ops.py
main.add_command(ops.purge)
main.add_command(ops.checkpoint)
main.add_command(ops.config)
create.add_command(ops.create_delivery_stream)
create.add_command(ops.create_app)
main.add_command(sql)  # cli/sql.py
main.add_command(video)  # cli/video.py
main.add_command(apps)
main.add_command(run_app)
main.add_command(run_triggers)  # cli/triggers.py
main.add_command(triggers)


if __name__ == "__main__":
    main()
