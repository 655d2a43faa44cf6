"""`tidelog video ...`: video streams (engine/video.py): list, inspect, ingest, export."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

import tidelog

from .channels import bytes_on_disk
from .output import Output, common_options, iso_ms, open_store, show, table
from .records import parse_time_ms


def _summary(store: tidelog.Store, stream: tidelog.VideoStream) -> dict[str, Any]:
    info = stream.describe()
    log = stream.log
    newest = log.ends().last_timestamp_ms if len(log) else None
    return {
        "name": info.name,
        "retention_hours": info.data_retention_hours,
        "media_type": info.media_type,
        "fragments": len(log),
        "bytes": bytes_on_disk(store, log),
        "newest": iso_ms(newest) if newest else None,
    }


def video_rows(store: tidelog.Store) -> list[dict[str, Any]]:
    """`tidelog ls` rows for the video streams (messages and records: fragments)."""
    rows = []
    for stream in store.video_streams():
        summary = _summary(store, stream)
        log = stream.log
        oldest = next(iter(log.read(log.start_offset, log.start_offset + 1)), None)
        rows.append(
            {
                "kind": "video",
                "name": stream.name,
                "messages": summary["fragments"],
                "records": summary["fragments"],
                "bytes": summary["bytes"],
                "oldest": iso_ms(oldest.timestamp_ms) if oldest else None,
                "newest": summary["newest"],
                "visible": None,
                "in_flight": None,
                "delayed": None,
            }
        )
    return rows


def _time(text: str | None, what: str) -> int | None:
    if text is None:
        return None
    ms = parse_time_ms(text)
    if ms is None:
        raise click.BadParameter(
            f"{text!r}: an ISO 8601 time, 'now' or an age like -5m", param_hint=what
        )
    return ms


@click.group("video")
def video() -> None:
    """Video streams (Kinesis Video Streams): list, inspect, ingest MKV, export clips.

    Example:

    \b
        tidelog video create cam --retention-hours 24
        tidelog video put cam recording.mkv
        tidelog video info cam
        tidelog video clip cam --start -10m --end now -o last.mp4
    """


@video.command("ls")
@common_options
def video_ls(out: Output) -> None:
    """List video streams: retention, fragments, bytes on disk, newest fragment.

    Example:

    \b
        tidelog video ls --json
    """
    with open_store(out, readonly=True) as store:
        rows = [_summary(store, s) for s in store.video_streams()]
    out.emit({"video_streams": rows}, rows=rows, lines=[f"{len(rows)} video streams"])


@video.command("info")
@click.argument("name")
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True,
              help="Show the newest LIMIT fragments.")  # fmt: skip
@common_options
def video_info(name: str, limit: int, out: Output) -> None:
    """A video stream's settings and its newest fragments (number, times, duration, size).

    Example:

    \b
        tidelog video info cam --limit 5 --json
    """
    with open_store(out, readonly=True) as store:
        stream = store.video_stream(name)
        info = stream.describe()
        log = stream.log
        first = max(log.start_offset, log.end_offset - limit)
        fragments = stream.fragments(after_offset=first - 1, limit=limit)
        summary = _summary(store, stream)
    rows = [
        {
            "number": f.number,
            "producer_time": iso_ms(f.producer_timestamp_ms),
            "server_time": iso_ms(f.server_timestamp_ms),
            "duration_ms": f.duration_ms,
            "bytes": f.size,
        }
        for f in fragments
    ]
    config = {
        "arn": info.arn,
        "version": info.version,
        "retention_hours": info.data_retention_hours,
        "media_type": info.media_type,
        "device_name": info.device_name,
        "kms_key_id": info.kms_key_id,
        "tags": dict(info.tags),
        "fragments": summary["fragments"],
        "bytes": summary["bytes"],
    }
    lines = [f"video stream {name}", "", "configuration:"]
    lines += [f"  {k}: {show(v)}" for k, v in config.items()]
    lines += ["", f"newest {len(rows)} fragments:", table(rows)]
    out.emit({"name": name, "config": config, "fragments": rows}, lines=lines)


@video.command("create")
@click.argument("name")
@click.option("--retention-hours", type=int, default=24, show_default=True,
              help="Hours of fragments kept (0 keeps no archive, as KVS).")  # fmt: skip
@click.option("--media-type", default="", help="The stream's MIME type, e.g. video/h264.")
@click.option("--device-name", default="", help="The producing device's name.")
@common_options
def video_create(
    name: str, retention_hours: int, media_type: str, device_name: str, out: Output
) -> None:
    """Create a video stream (KVS's CreateStream).

    Example:

    \b
        tidelog video create door-cam --retention-hours 48 --media-type video/h264
    """
    with open_store(out, readonly=False) as store:
        stream = store.create_video_stream(
            name, data_retention_hours=retention_hours, media_type=media_type,
            device_name=device_name,
        )  # fmt: skip
        arn = stream.describe().arn
    out.emit({"name": name, "arn": arn}, lines=[f"created video stream {name} ({arn})"])


@video.command("put")
@click.argument("name")
@click.argument("source", type=click.Path(dir_okay=False, allow_dash=True))
@common_options
def video_put(name: str, source: str, out: Output) -> None:
    """Ingest an MKV/WebM file (or - for standard input, a live stream) into NAME.

    Each fragment's acknowledgements print as they come (JSON lines with
    --json). Exits 1 on an ERROR acknowledgement; the fragments before it stay.

    Example:

    \b
        ffmpeg -i rtsp://camera/stream -c copy -f matroska - | tidelog video put door-cam -
    """
    reader = sys.stdin.buffer if source == "-" else Path(source).open("rb")  # noqa: SIM115
    failed = None
    try:
        with open_store(out, readonly=False) as store:
            stream = store.video_stream(name)
            pieces = iter(lambda: reader.read(256 * 1024), b"")
            for ack in stream.put_media(pieces):
                doc = ack.to_json()
                out.line(doc, " ".join(f"{k}={v}" for k, v in doc.items()))
                if ack.event_type == "ERROR":
                    failed = ack
    finally:
        if reader is not sys.stdin.buffer:
            reader.close()
    if failed is not None:
        raise click.ClickException(f"PutMedia error {failed.error_id}: {failed.message}")


@video.command("clip")
@click.argument("name")
@click.option("--start", help="Producer time to start at (ISO 8601, 'now', -5m); default: oldest.")
@click.option("--end", help="Producer time to end at; default: newest.")
@click.option("-o", "--output", "target", type=click.Path(dir_okay=False), required=True,
              help="The MP4 file to write.")  # fmt: skip
@common_options
def video_clip(name: str, start: str | None, end: str | None, target: str, out: Output) -> None:
    """Export the fragments in a producer-time range as one MP4 (remuxed, not re-encoded).

    Example:

    \b
        tidelog video clip cam --start 2026-01-01T10:00:00Z --end 2026-01-01T10:05:00Z -o a.mp4
    """
    from tidelog import video_media

    with open_store(out, readonly=True) as store:
        stream = store.video_stream(name)
        found = stream.fragments(
            _time(start, "--start"), _time(end, "--end"), timestamp_type="PRODUCER"
        )
        if not found:
            raise click.ClickException(f"video stream {name}: no fragments in that range")
        stored = list(stream.media_for_fragments([f.number for f in found]))
        data = video_media.remux_mp4(stored)
    Path(target).write_bytes(data)
    doc = {"name": name, "fragments": len(found), "bytes": len(data), "path": target}
    out.emit(doc, lines=[f"wrote {target}: {len(found)} fragments, {len(data)} bytes"])
