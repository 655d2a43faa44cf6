"""STOMP frames: reading from a stream, encoding, header escaping by version.

A frame is `COMMAND EOL (header EOL)* EOL body NUL`. Header values are
escaped in 1.1 and 1.2 (`\\\\`, `\\n`, `\\c`, and `\\r` in 1.2) and taken
literally in 1.0; CONNECT and CONNECTED are never escaped (the 1.2 spec).
A body is read to `content-length` when the header is given (so it may hold
NUL bytes), else up to the first NUL. Every part has a bound (FrameLimits);
a frame over one raises FrameError and the connection is closed.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field

COMMANDS_CLIENT = frozenset(
    {
        "CONNECT",
        "STOMP",
        "SEND",
        "SUBSCRIBE",
        "UNSUBSCRIBE",
        "ACK",
        "NACK",
        "BEGIN",
        "COMMIT",
        "ABORT",
        "DISCONNECT",
    }
)
_UNESCAPED = ("CONNECT", "CONNECTED")


class FrameError(Exception):
    """A frame that breaks the protocol or a limit; the connection must close.

    `receipt` is the frame's `receipt` header when it was read before the
    fault, so that the ERROR can carry it as `receipt-id`.
    """

    def __init__(self, message: str, receipt: str | None = None) -> None:
        super().__init__(message)
        self.receipt = receipt


# ASCII digits only: str.isdigit() also passes "²" and "١", which int() refuses
# or reads as another number. 18 digits keep every value inside a signed long.
_DECIMAL = re.compile(r"[0-9]{1,18}")


def parse_decimal(text: str, what: str, maximum: int = 10**18 - 1) -> int:
    """`text` as a whole number 0..maximum written in ASCII digits.

    Raises FrameError naming `what` for anything else ("²", "--1", "NaN",
    "1e308", " 5", a number past `maximum`).
    """
    if _DECIMAL.fullmatch(text) is None:
        raise FrameError(f"{what} {text[:40]!r}: not a whole number in ASCII digits")
    value = int(text)
    if value > maximum:
        raise FrameError(f"{what} {text!r}: over the maximum of {maximum}")
    return value


@dataclass(frozen=True, slots=True)
class FrameLimits:
    """Bounds on what one client frame may hold (ActiveMQ has similar knobs)."""

    command_bytes_max: int = 64
    header_line_bytes_max: int = 10 * 1024
    headers_max: int = 1000
    headers_bytes_max: int = 64 * 1024
    body_bytes_max: int = 1024 * 1024


@dataclass(slots=True)
class Frame:
    command: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def unescape(value: str, version: str) -> str:
    """A header value as sent, decoded for `version`. Raises FrameError on a bad escape."""
    if version == "1.0" or "\\" not in value:
        return value
    out: list[str] = []
    index = 0
    while index < len(value):
        char = value[index]
        if char != "\\":
            out.append(char)
            index += 1
            continue
        pair = value[index : index + 2]
        if pair == "\\\\":
            out.append("\\")
        elif pair == "\\n":
            out.append("\n")
        elif pair == "\\c":
            out.append(":")
        elif pair == "\\r" and version == "1.2":
            out.append("\r")
        else:
            raise FrameError(f"header value {value!r}: undefined escape sequence {pair!r}")
        index += 2
    return "".join(out)


def escape(value: str, version: str) -> str:
    if version == "1.0":
        # 1.0 has no escapes: a newline would end the header, so it is dropped.
        return value.replace("\n", " ").replace("\r", " ")
    value = value.replace("\\", "\\\\").replace("\n", "\\n").replace(":", "\\c")
    if version == "1.2":
        value = value.replace("\r", "\\r")
    return value


def encode(frame: Frame, version: str) -> bytes:
    """The bytes of a server frame; a body always goes with content-length."""
    raw = frame.command in _UNESCAPED
    lines = [frame.command]
    for name, value in frame.headers.items():
        if raw:
            lines.append(f"{name}:{value}")
        else:
            lines.append(f"{escape(name, version)}:{escape(value, version)}")
    if frame.command in ("MESSAGE", "ERROR") or frame.body:
        lines.append(f"content-length:{len(frame.body)}")
    return ("\n".join(lines) + "\n\n").encode() + frame.body + b"\0"


async def _line(reader: asyncio.StreamReader, limit: int, what: str) -> bytes:
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.LimitOverrunError as exc:
        raise FrameError(f"{what}: longer than {limit} bytes") from exc
    if len(line) > limit:
        raise FrameError(f"{what}: {len(line)} bytes, over the limit of {limit}")
    return line[:-2] if line.endswith(b"\r\n") else line[:-1]


async def read_frame(
    reader: asyncio.StreamReader, version: str, limits: FrameLimits
) -> Frame | None:
    """The next frame, or None for a heart-beat (a bare EOL).

    Raises asyncio.IncompleteReadError at end of stream, FrameError for a
    malformed or oversize frame.
    """
    command_raw = await _line(reader, limits.command_bytes_max + 2, "command")
    if not command_raw:
        return None
    try:
        command = command_raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise FrameError("command: not ASCII (garbage bytes?)") from exc
    # An unknown command is read whole (the broker answers it with an ERROR
    # that carries its receipt-id, as ActiveMQ does).
    headers: dict[str, str] = {}
    total = 0
    count = 0
    escaped_version = "1.0" if command in _UNESCAPED else version
    while True:
        line = await _line(reader, limits.header_line_bytes_max + 2, "header line")
        if not line:
            break
        total += len(line)
        count += 1
        if count > limits.headers_max or total > limits.headers_bytes_max:
            raise FrameError(
                f"headers: over {limits.headers_max} headers or {limits.headers_bytes_max} bytes"
            )
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FrameError("header: not UTF-8") from exc
        name, colon, value = text.partition(":")
        if not colon:
            raise FrameError(f"header {text[:64]!r}: no colon")
        name = unescape(name, escaped_version)
        # The spec: when a header repeats, the first value counts.
        if name not in headers:
            headers[name] = unescape(value, escaped_version)
    receipt = headers.get("receipt")
    length_text = headers.get("content-length")
    if length_text is not None:
        try:
            length = parse_decimal(length_text, "content-length")
        except FrameError as exc:
            raise FrameError(str(exc), receipt) from None
        if length > limits.body_bytes_max:
            raise FrameError(
                f"body: {length} bytes, over the limit of {limits.body_bytes_max}", receipt
            )
        body = await reader.readexactly(length + 1)
        if body[-1:] != b"\0":
            raise FrameError("body: not followed by NUL after content-length bytes", receipt)
        body = body[:-1]
    else:
        try:
            body = await reader.readuntil(b"\0")
        except asyncio.LimitOverrunError as exc:
            raise FrameError(
                f"body: over the limit of {limits.body_bytes_max} bytes", receipt
            ) from exc
        body = body[:-1]
        if len(body) > limits.body_bytes_max:
            raise FrameError(f"body: over the limit of {limits.body_bytes_max} bytes", receipt)
    return Frame(command, headers, body)
