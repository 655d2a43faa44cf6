"""AWS's event-stream encoding (application/vnd.amazon.eventstream), the writing side.

Each message is

    total length      u32 big-endian (the whole message, these 4 bytes included)
    headers length    u32
    prelude CRC       u32, CRC-32 (zlib's) of the 8 bytes above
    headers           name length u8, name, value type u8, value
    payload           bytes
    message CRC       u32, CRC-32 of everything before it

and the only header value type written here is 7 (a string: u16 length,
UTF-8). botocore reads these with botocore.eventstream; there is no
standalone encoder in botocore or the standard library to reuse, so this
module writes the format and tests/test_eventstream.py checks every message
against botocore's own decoder, corrupted ones included.

SubscribeToShard (server/kinesis.py) sends an `initial-response` event
first, as botocore's JSON parser requires, then `SubscribeToShardEvent`
events, or an `exception` message with the error's code.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

CONTENT_TYPE = b"application/vnd.amazon.eventstream"
HEADER_STRING = 7
HEADERS_BYTES_MAX = 128 * 1024  # botocore's limits
PAYLOAD_BYTES_MAX = 24 * 1024 * 1024

_PRELUDE = struct.Struct(">II")
_U32 = struct.Struct(">I")


def encode_message(headers: Sequence[tuple[str, str]], payload: bytes) -> bytes:
    """One event-stream message with string headers. Raises ValueError past the
    format's limits (a header name over 255 bytes, a value over 65,535,
    headers over 128 KiB, a payload over 24 MiB)."""
    parts = []
    for name, value in headers:
        raw_name, raw_value = name.encode(), value.encode()
        if not 1 <= len(raw_name) <= 255 or len(raw_value) > 0xFFFF:
            raise ValueError(f"event-stream header {name!r}: name or value too long")
        parts += [bytes([len(raw_name)]), raw_name, bytes([HEADER_STRING])]
        parts += [struct.pack(">H", len(raw_value)), raw_value]
    encoded = b"".join(parts)
    if len(encoded) > HEADERS_BYTES_MAX or len(payload) > PAYLOAD_BYTES_MAX:
        raise ValueError("event-stream message: headers or payload over botocore's limits")
    total = _PRELUDE.size + 4 + len(encoded) + len(payload) + 4
    prelude = _PRELUDE.pack(total, len(encoded))
    head = prelude + _U32.pack(zlib.crc32(prelude)) + encoded + payload
    return head + _U32.pack(zlib.crc32(head))


def event(event_type: str, payload: Mapping[str, Any]) -> bytes:
    """An `event` message of `event_type` with a JSON payload."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    return encode_message(
        [
            (":event-type", event_type),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        body,
    )


def exception(code: str, message: str) -> bytes:
    """An `exception` message: botocore raises EventStreamError with this code."""
    body = json.dumps({"message": message}, separators=(",", ":")).encode()
    return encode_message(
        [
            (":exception-type", code),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        body,
    )


@dataclass
class StreamingResult:
    """A handler's answer whose body is sent as it is made (SubscribeToShard).

    `next_chunk(timeout)` runs in the server's thread pool: it returns the
    next bytes to send, b"" when none came within `timeout` seconds (the
    server then checks the client is still there), or None at the end.
    `close()` is called once when the response ends, however it ends.
    server/app.py streams it with chunked transfer encoding.
    """

    content_type: bytes
    next_chunk: Callable[[float], bytes | None]
    close: Callable[[], None]
