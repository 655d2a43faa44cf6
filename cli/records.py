"""Records as the CLI prints, dumps, loads and replays them; times and filters.

A dump line holds a record's raw fields (key, headers, value as UTF-8 text
when they are, else base64), so `tidelog load` writes back the same bytes
with the same timestamp: a dump then load round-trips every byte.
"""

from __future__ import annotations

import base64
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import click

import tidelog
from tidelog.streams import parse_sequence_number, sequence_number

from .channels import Channel, Part, queue_meta
from .output import iso_ms, printable, text_or_base64

DUMP_VERSION = 1

# -- times -------------------------------------------------------------------------------------

_RELATIVE = re.compile(r"^-?(\d+(?:\.\d+)?)\s*(s|m|min|h|d)(?:\s+ago)?$")
_UNIT_SECONDS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_time_ms(text: str, now: float | None = None) -> int | None:
    """Milliseconds since the epoch for an ISO 8601 time or an age like `-5m`, `2h ago`.

    None if `text` is neither.
    """
    text = text.strip()
    match = _RELATIVE.match(text)
    if match:
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        return int(((time.time() if now is None else now) - seconds) * 1000)
    if text == "now":
        return int((time.time() if now is None else now) * 1000)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def start_offsets(channel: Channel, start: str) -> dict[str, int]:
    """Where each part starts for `--from`: trim-horizon, latest, a TIME or a SEQ.

    A SEQ is a stream sequence number (it names its shard), or a record
    offset (for every part). Raises click.BadParameter.
    """
    spec = start.strip().lower()
    out: dict[str, int] = {}
    if spec in ("trim-horizon", "trim_horizon", "earliest"):
        return {p.label: p.log.start_offset for p in channel.parts}
    if spec in ("latest", "end"):
        return {p.label: p.log.end_offset for p in channel.parts}
    if spec.isdigit():
        number = int(spec)
        if channel.kind == "stream" and len(spec) >= 39:
            try:
                index, offset = parse_sequence_number(spec)
            except tidelog.InvalidArgument as exc:
                raise click.BadParameter(str(exc), param_hint="--from") from None
            for part in channel.parts:
                if part.shard_index == index:
                    out[part.label] = offset
                elif part.shard_index is not None and part.shard_index > index:
                    out[part.label] = part.log.start_offset
                else:
                    out[part.label] = part.log.end_offset
            return out
        return {p.label: max(number, p.log.start_offset) for p in channel.parts}
    ms = parse_time_ms(start)
    if ms is None:
        raise click.BadParameter(
            f"{start!r} is not trim-horizon, latest, a time (ISO 8601 or -5m) or a sequence number",
            param_hint="--from",
        )
    return {p.label: p.log.offset_for_time(ms) for p in channel.parts}


# -- attributes -------------------------------------------------------------------------------


def parse_attributes(items: Sequence[str]) -> dict[str, tidelog.AttributeValue]:
    """`--attr name=value` (String), `name:Number=5`, `name:Binary=<base64>`."""
    out: dict[str, tidelog.AttributeValue] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{item!r} is not name=value", param_hint="--attr")
        name, _, data_type = name.partition(":")
        data_type = data_type or "String"
        if data_type.split(".", 1)[0] == "Binary":
            try:
                raw = base64.b64decode(value, validate=True)
            except ValueError:
                raise click.BadParameter(
                    f"{item!r}: Binary values are base64", param_hint="--attr"
                ) from None
            out[name] = tidelog.AttributeValue(data_type, raw)
        else:
            out[name] = tidelog.AttributeValue(data_type, value)
    return out


def attributes_of(meta: Mapping[str, Any]) -> dict[str, tidelog.AttributeValue]:
    """Typed attributes from a queue record's metadata."""
    out: dict[str, tidelog.AttributeValue] = {}
    for entry in meta.get("a") or []:
        name, data_type, kind, value = entry
        out[name] = tidelog.AttributeValue(
            data_type, base64.b64decode(value) if kind == "b" else value
        )
    return out


def attributes_doc(attributes: Mapping[str, tidelog.AttributeValue]) -> dict[str, Any]:
    return {
        name: {"type": value.data_type}
        | (
            {"base64": base64.b64encode(value.value).decode()}
            if isinstance(value.value, bytes)
            else {"text": value.value}
        )
        for name, value in attributes.items()
    }


# -- one record, decoded ------------------------------------------------------------------------


def message_id(key: bytes) -> str:
    return str(uuid.UUID(bytes=key)) if len(key) == 16 else key.decode(errors="replace")


def record_doc(channel: Channel, part: Part, record: tidelog.Record) -> dict[str, Any]:
    """What `tail --format json` prints for a record."""
    doc: dict[str, Any] = {
        "kind": channel.kind,
        "channel": channel.name,
        "offset": record.offset,
        "timestamp_ms": record.timestamp_ms,
        "time": iso_ms(record.timestamp_ms),
    }
    if channel.kind == "stream":
        doc["shard_id"] = part.label
        doc["sequence_number"] = sequence_number(part.shard_index or 0, record.offset)
        doc["partition_key"] = record.key.decode(errors="replace")
        doc["data"] = text_or_base64(record.value)
    elif channel.kind in ("queue", "topic") and _looks_like_message(record):
        meta = queue_meta(record.headers)
        doc["id"] = message_id(record.key)
        doc["body"] = text_or_base64(record.value)
        doc["attributes"] = attributes_doc(attributes_of(meta))
        for short, long in (
            ("s", "subject"),
            ("g", "group_id"),
            ("dd", "dedup_id"),
            ("d", "delay_ms"),
        ):
            if short in meta:
                doc[long] = meta[short]
    else:
        doc["key"] = text_or_base64(record.key)
        doc["headers"] = text_or_base64(record.headers)
        doc["value"] = text_or_base64(record.value)
    return doc


def _looks_like_message(record: tidelog.Record) -> bool:
    return len(record.key) == 16 and (not record.headers or record.headers[:1] == b"{")


def record_text(channel: Channel, part: Part, record: tidelog.Record) -> str:
    """One line for people."""
    when = iso_ms(record.timestamp_ms) or "-"
    if channel.kind == "stream":
        seq = sequence_number(part.shard_index or 0, record.offset)
        key = record.key.decode(errors="replace")
        return f"{part.label} {seq} {when} [{key}] {printable(record.value)}"
    if channel.kind in ("queue", "topic") and _looks_like_message(record):
        attrs = attributes_of(queue_meta(record.headers))
        shown = " ".join(
            f"{n}={v.value if isinstance(v.value, str) else '<binary>'}" for n, v in attrs.items()
        )
        return f"{record.offset} {when} {message_id(record.key)} {printable(record.value)}" + (
            f"  {{{shown}}}" if shown else ""
        )
    key = f" [{printable(record.key)}]" if record.key else ""
    return f"{record.offset} {when}{key} {printable(record.value)}"


def record_hex(channel: Channel, part: Part, record: tidelog.Record) -> str:
    """A header line, then the value as a hex dump (16 bytes a line)."""
    where = f"{part.label} " if part.label else ""
    lines = [
        f"# {channel.kind} {channel.name} {where}offset {record.offset} "
        f"ts {record.timestamp_ms} key {record.key.hex() or '-'} "
        f"headers {len(record.headers)} bytes value {len(record.value)} bytes"
    ]
    data = record.value
    for at in range(0, len(data), 16):
        chunk = data[at : at + 16]
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{at:08x}  {chunk.hex(' '):<47}  {text}")
    return "\n".join(lines)


# -- dump lines -------------------------------------------------------------------------------


def dump_line(part: Part, record: tidelog.Record) -> dict[str, Any]:
    return {
        "part": part.label,
        "offset": record.offset,
        "timestamp_ms": record.timestamp_ms,
        "flags": record.flags,
        "key": text_or_base64(record.key),
        "headers": text_or_base64(record.headers),
        "value": text_or_base64(record.value),
    }
