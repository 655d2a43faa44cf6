"""Operating commands: delete-message, purge, checkpoint, config, and `create` of
delivery streams and SQL applications.

Each is one library call (or one per item) on a store opened read-write, as
the rest of the CLI: `Queue.delete_many`, `Queue.purge`, `Consumer.reset`,
`Queue.set_attributes` / `Topic.set_attributes` /
`Stream.set_retention_hours`, `Store.create_delivery_stream` and
`Store.create_application`.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

import tidelog
from tidelog.streams import parse_sequence_number

from .channels import KINDS, resolve, stream_checkpoint_offsets
from .output import Output, common_options, open_store, show
from .records import parse_time_ms

# -- delete-message / purge -----------------------------------------------------------------------


@click.command("delete-message")
@click.argument("queue")
@click.argument("receipts", nargs=-1)
@common_options
def delete_message(queue: str, receipts: tuple[str, ...], out: Output) -> None:
    """Delete (acknowledge) messages of QUEUE by the receipts `tidelog receive` printed.

    RECEIPTS are arguments, or one a line of stdin. Deleting a message that
    is already deleted succeeds, as in SQS; a receipt that is stale (the
    message was received again since) or malformed fails, and the command
    then exits 1 after deleting the others. Ten receipts go per commit.

    Example:

    \b
        tidelog receive jobs --json | jq -r '.messages[].receipt' | tidelog delete-message jobs
    """
    given = list(receipts) or [line.strip() for line in sys.stdin if line.strip()]
    if not given:
        raise click.UsageError("give RECEIPTS as arguments or one a line on stdin")
    deleted: list[str] = []
    failed: list[dict[str, str]] = []
    with open_store(out, readonly=False) as store:
        handle = store.queue(queue)
        for first in range(0, len(given), 10):
            batch = given[first : first + 10]
            result = handle.delete_many([(str(i), r) for i, r in enumerate(batch)])
            deleted += [batch[int(entry_id)] for entry_id, _ in result.successful]
            failed += [
                {"receipt": batch[int(f.entry_id)], "code": f.code, "message": f.message}
                for f in result.failed
            ]
    lines = [f"deleted {len(deleted)} messages from {queue}"]
    lines += [f"failed {f['receipt']}: {f['code']}: {f['message']}" for f in failed]
    out.emit({"queue": queue, "deleted": deleted, "failed": failed}, lines=lines)
    if failed:
        sys.exit(1)


@click.command("purge")
@click.argument("queue")
@common_options
def purge(queue: str, out: Output) -> None:
    """Delete every message QUEUE holds now (SQS's PurgeQueue; atomic).

    Messages sent after the command starts stay. A replay window still
    reaches purged messages (`tidelog replay`).

    Example:

    \b
        tidelog purge jobs
    """
    with open_store(out, readonly=False) as store:
        handle = store.queue(queue)
        before = len(handle)
        handle.purge()
    out.emit({"queue": queue, "purged": before}, lines=[f"purged {before} messages from {queue}"])


# -- checkpoint -----------------------------------------------------------------------------------


@click.command("checkpoint")
@click.argument("stream")
@click.argument("consumer")
@click.option("--to-earliest", is_flag=True, help="Re-read from the oldest retained record.")
@click.option("--to-latest", is_flag=True, help="Skip to the end: only new records.")
@click.option("--to-datetime", metavar="TIME", help="The first record at or after TIME.")
@click.option("--to-offset", type=click.IntRange(0), help="Record offset N in each shard.")
@click.option("--to-sequence", metavar="SEQ", help="This sequence number (names its shard).")
@click.option("--shard", "shards", multiple=True, help="Only this shard (id or number).")
@click.option("--dry-run", is_flag=True, help="Show the new positions; change nothing.")
@common_options
def checkpoint(
    stream: str,
    consumer: str,
    to_earliest: bool,
    to_latest: bool,
    to_datetime: str | None,
    to_offset: int | None,
    to_sequence: str | None,
    shards: tuple[str, ...],
    dry_run: bool,
    out: Output,
) -> None:
    """Show or reset where CONSUMER of STREAM reads next, as kafka-consumer-groups
    --reset-offsets does.

    Without a --to-* option it shows each shard's checkpoint and next
    offset. --to-earliest, --to-latest, --to-datetime (ISO 8601 or an age
    like -1h), --to-offset (clamped to each shard's retained records) and
    --to-sequence (its shard only) set the position every shard (or each
    --shard) is read from next; the consumer is registered if new. Reading
    then resumes there (`Consumer.read`, delivery streams' consumers too).
    A shard with nothing before its new position has no checkpoint, and is
    read from the reader's initial position (TRIM_HORIZON by default).

    Example:

    \b
        tidelog checkpoint clicks billing --to-datetime 2024-05-01T00:00:00Z --dry-run
        tidelog checkpoint clicks billing --to-earliest
    """
    chosen = [to_earliest, to_latest, to_datetime is not None]
    chosen += [to_offset is not None, to_sequence is not None]
    if sum(chosen) > 1:
        raise click.UsageError("give one of --to-earliest, --to-latest, --to-datetime, ...")
    resetting = any(chosen)
    time_ms = None
    if to_datetime is not None:
        time_ms = parse_time_ms(to_datetime)
        if time_ms is None:
            raise click.BadParameter(f"{to_datetime!r} is not a time", param_hint="--to-datetime")
    sequence: tuple[int, int] | None = None
    if to_sequence is not None:
        try:
            sequence = parse_sequence_number(to_sequence)
        except tidelog.InvalidArgument as exc:
            raise click.BadParameter(str(exc), param_hint="--to-sequence") from None
    readonly = not resetting or dry_run
    with open_store(out, readonly=readonly) as store:
        channel = resolve(store, stream, "stream")
        handle: tidelog.Stream = channel.handle
        if not readonly:
            reader = handle.consumer(consumer)
        elif consumer not in handle.consumers() and not resetting:
            raise tidelog.NotFound(f"consumer {consumer!r} of stream {stream!r}: not found")
        wanted = {s if not s.isdigit() else f"shardId-{int(s):012d}" for s in shards}
        parts = [p for p in channel.parts if not wanted or p.label in wanted]
        if wanted - {p.label for p in parts}:
            raise click.BadParameter(f"no shard {sorted(wanted)}", param_hint="--shard")
        done = stream_checkpoint_offsets(handle).get(consumer, {})
        rows = []
        for part in parts:
            log = part.log
            current = done.get(part.label)
            row: dict[str, Any] = {
                "shard_id": part.label,
                "start_offset": log.start_offset,
                "end_offset": log.end_offset,
                "checkpoint_offset": current,
                "next_offset": current + 1 if current is not None else None,
            }
            new: int | None = None
            if to_earliest:
                new = log.start_offset
            elif to_latest:
                new = log.end_offset
            elif time_ms is not None:
                new = log.offset_for_time(time_ms)
            elif to_offset is not None:
                new = to_offset
            elif sequence is not None and part.shard_index == sequence[0]:
                new = sequence[1]
            if new is not None:
                new = min(max(new, log.start_offset), log.end_offset)
                row["new_next_offset"] = new
                if not readonly:
                    reader.seek(part.label, new)
            rows.append(row)
    action = "would reset" if dry_run else "reset"
    changed = [r for r in rows if "new_next_offset" in r]
    if sequence is not None and not changed:
        raise click.BadParameter(
            f"{to_sequence} names no shard of {stream!r} here", param_hint="--to-sequence"
        )
    lines = [f"{action} {consumer} of {stream} in {len(changed)} shards"] if resetting else []
    columns = ["shard_id", "start_offset", "end_offset", "checkpoint_offset", "next_offset"]
    if resetting:
        columns.append("new_next_offset")
    out.emit(
        {"stream": stream, "consumer": consumer, "dry_run": dry_run, "shards": rows},
        rows=rows,
        columns=columns,
        lines=lines,
    )


# -- config ---------------------------------------------------------------------------------------


def _setting(text: str) -> tuple[str, Any]:
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise click.BadParameter(f"{text!r} is not KEY=VALUE", param_hint="--set")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw  # a bare string: display_name=Orders
    return name.strip().replace("-", "_"), value


@click.command("config")
@click.argument("name")
@click.option(
    "--kind",
    type=click.Choice(KINDS),
    default=None,
    help="Which kind NAME is, when several kinds share it (or write kind:NAME).",
)
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="KEY=VALUE",
    help="A setting to change (repeatable); VALUE is JSON, or else a string.",
)
@common_options
def config(name: str, kind: str | None, settings: tuple[str, ...], out: Output) -> None:
    """Show or change a channel's configuration (SQS's SetQueueAttributes and kin).

    Without --set it prints the configuration. Queues: visibility_timeout,
    delay, retention, max_message_size, receive_wait (seconds or bytes, as
    `create queue`), dead_letter (["dlq", 5], or null to remove),
    content_based_dedup, replay_window (seconds or null). Topics:
    display_name, retention (seconds), content_based_dedup. Streams:
    retention_hours. All changes to one channel are made in one commit.

    Example:

    \b
        tidelog config jobs --set visibility_timeout=60 --set 'dead_letter=["jobs-dlq", 5]'
        tidelog config stream:clicks --set retention_hours=48
    """
    changes = dict(_setting(s) for s in settings)
    with open_store(out, readonly=not changes) as store:
        channel = resolve(store, name, kind)
        if changes:
            _apply(channel.kind, channel.handle, changes)
        current = _current(channel.kind, channel.handle)
    current = json.loads(json.dumps(current, default=str))
    verb = "changed" if changes else "configuration of"
    lines = [f"{verb} {channel.title}"] + [f"  {k}: {show(v)}" for k, v in current.items()]
    out.emit(
        {"kind": channel.kind, "name": channel.name, "changed": sorted(changes), "config": current},
        lines=lines,
    )


def _apply(kind: str, handle: Any, changes: dict[str, Any]) -> None:
    if kind == "queue":
        if isinstance(changes.get("dead_letter"), str):  # dlq:5, as `create queue`
            target, _, count = changes["dead_letter"].rpartition(":")
            if not count.isdigit():
                raise click.BadParameter("dead_letter: expected QUEUE:N or [QUEUE, N]")
            changes["dead_letter"] = (target, int(count))
        handle.set_attributes(**changes)
    elif kind == "topic":
        known = {"display_name", "retention", "content_based_dedup"}
        unknown = set(changes) - known
        if unknown:
            raise tidelog.InvalidArgument(
                f"config: topics have no setting {sorted(unknown)} (changeable: {sorted(known)})"
            )
        handle.set_attributes(**changes)
    elif kind == "stream":
        if set(changes) != {"retention_hours"}:
            raise tidelog.InvalidArgument(
                "config: a stream's changeable setting is retention_hours"
            )
        hours = changes["retention_hours"]
        if not isinstance(hours, int) or isinstance(hours, bool):
            raise tidelog.InvalidArgument(f"retention_hours: {hours!r} is not an integer")
        handle.set_retention_hours(hours)
    else:
        raise tidelog.InvalidArgument("config: a plain log's settings cannot be changed here")


def _current(kind: str, handle: Any) -> dict[str, Any]:
    if kind in ("queue", "topic"):
        attrs: dict[str, Any] = handle.attributes()
        return {k: v for k, v in attrs.items() if not k.startswith("approximate_")}
    if kind == "stream":
        d = handle.describe()
        return {
            "retention_hours": d.retention_hours,
            "max_record_bytes": d.max_record_bytes,
            "shards": len(d.shards),
        }
    info = handle.info
    return {
        "segment_bytes_max": info.segment_bytes_max,
        "retention_ms": info.retention_ms,
        "retention_bytes": info.retention_bytes,
    }


# -- create delivery-stream / app ---------------------------------------------------------------


@click.command("delivery-stream")
@click.argument("name")
@click.option("--source", default="direct", show_default=True, help="'direct' or a stream's name.")
@click.option(
    "--destination",
    required=True,
    metavar="DIR|s3://BUCKET",
    help="A directory, or an S3 bucket (tidelog's own S3 if it has the bucket).",
)
@click.option("--s3-endpoint-url", help="Another S3 endpoint for an s3:// destination.")
@click.option("--prefix", default="", help="Object key prefix (Firehose's Prefix).")
@click.option("--error-output-prefix", default="", help="Key prefix of failed records.")
@click.option("--buffer-mib", type=click.IntRange(1, 128), default=5, show_default=True)
@click.option("--buffer-seconds", type=click.IntRange(0, 900), default=300, show_default=True)
@click.option(
    "--compression",
    type=click.Choice(["UNCOMPRESSED", "GZIP", "ZIP", "Snappy", "HADOOP_SNAPPY", "ZSTD"]),
    default="UNCOMPRESSED",
    show_default=True,
)
@click.option("--newline", is_flag=True, help="Append a newline to each record.")
@click.option("--exist-ok", is_flag=True, help="Succeed if it exists already.")
@common_options
def create_delivery_stream(
    name: str,
    source: str,
    destination: str,
    s3_endpoint_url: str | None,
    prefix: str,
    error_output_prefix: str,
    buffer_mib: int,
    buffer_seconds: int,
    compression: str,
    newline: bool,
    exist_ok: bool,
    out: Output,
) -> None:
    """Create a delivery stream (Firehose's model): records land in files or S3 objects.

    Records come from `put_record` (--source direct) or from a stream. They
    are delivered in batches when --buffer-mib or --buffer-seconds is
    reached, by `tidelog serve` or `tidelog deliver`.

    Example:

    \b
        tidelog create delivery-stream clicks-to-s3 --source clicks --destination s3://archive
    """
    target: Any
    if destination.startswith("s3://"):
        bucket, _, key_prefix = destination[len("s3://") :].partition("/")
        if not bucket:
            raise click.BadParameter("s3://BUCKET needs a bucket", param_hint="--destination")
        target = tidelog.S3Destination(bucket, endpoint_url=s3_endpoint_url)
        prefix = prefix or key_prefix
    else:
        target = destination
    with open_store(out, readonly=False) as store:
        ds = store.create_delivery_stream(
            name,
            source=source,
            destination=target,
            prefix=prefix,
            error_output_prefix=error_output_prefix,
            buffering_size_mib=buffer_mib,
            buffering_interval=buffer_seconds,
            compression=compression,
            newline_delimiter=newline,
            exist_ok=exist_ok,
        )
        d = ds.describe()
    doc: dict[str, Any] = {"kind": "delivery-stream", "name": name, "source": d.source}
    doc["destination"] = d.destination
    out.emit(doc, lines=[f"created delivery stream {name} ({d.source} -> {destination})"])


@click.command("app")
@click.argument("name")
@click.option("--source", required=True, help="The channel it reads (stream, queue or topic).")
@click.option("--sql", "query", required=True, help="The query run over each window's rows.")
@click.option("--destination", required=True, metavar="KIND:NAME", help="stream:, queue: ...")
@click.option(
    "--window",
    type=click.Choice(["tumbling", "sliding", "session"]),
    default="tumbling",
    show_default=True,
)
@click.option("--size", type=float, default=60.0, show_default=True, help="Window seconds.")
@click.option("--slide", type=float, default=None, help="Sliding windows: the step, seconds.")
@click.option("--gap", type=float, default=None, help="Session windows: the idle gap, seconds.")
@click.option("--allowed-lateness", type=float, default=0.0, show_default=True, help="Seconds.")
@click.option("--stopped", is_flag=True, help="Create it stopped (not run until started).")
@common_options
def create_app(
    name: str,
    source: str,
    query: str,
    destination: str,
    window: str,
    size: float,
    slide: float | None,
    gap: float | None,
    allowed_lateness: float,
    stopped: bool,
    out: Output,
) -> None:
    """Create a SQL application (a continuous query over windows of a channel).

    The query names the source as its table; each result row becomes a
    message of the destination. `tidelog serve` or `tidelog run-app` runs it.

    Example:

    \b
        tidelog create app per-minute --source clicks --destination queue:counts \\
            --sql "SELECT count(*) AS n FROM clicks" --window tumbling --size 60
    """
    with open_store(out, readonly=False) as store:
        app = store.create_application(
            name,
            source,
            query,
            destination=destination,
            window=window,
            size=size,
            slide=slide,
            gap=gap,
            allowed_lateness=allowed_lateness,
            start=not stopped,
        )
        d = app.describe()
    out.emit(
        {
            "kind": "application",
            "name": d.name,
            "source": d.source,
            "destination": list(d.destination),
            "window": d.window,
            "running": d.running,
        },
        lines=[f"created application {name} ({source} -> {destination}, {window} {size:g} s)"],
    )
