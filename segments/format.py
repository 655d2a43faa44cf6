"""Byte layout of segment files: constants, and pure encode/decode functions.

Every constant here is specified in docs/format.md; change both together.
Nothing in this module does I/O.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from .crc import crc32c

SEGMENT_MAGIC = b"TDLGSEG\n"
READ_VERSION = 1  # oldest format a reader must understand to read our files
WRITE_VERSION = 1  # format this build writes

# Header: magic, read version, write version, 6 reserved, base offset,
# 4 reserved, CRC32C of bytes 0-27.
SEGMENT_HEADER = struct.Struct("<8sBB6xQ4x")
SEGMENT_HEADER_BYTES = 32
SEGMENT_CRC = struct.Struct("<I")

# Record frame: length, crc, offset, timestamp, flags, reserved, key length,
# headers length. `length` counts the bytes after the first 8.
RECORD_FRAME = struct.Struct("<IIQqBxHI")
RECORD_FRAME_BYTES = 32
RECORD_PREFIX_BYTES = 8
RECORD_BODY_MIN = RECORD_FRAME_BYTES - RECORD_PREFIX_BYTES  # 24
RECORD_BYTES_MAX = 16 * 1024 * 1024  # bound on `length` before it is trusted
KEY_BYTES_MAX = 0xFFFF

INDEX_INTERVAL_BYTES = 4096
SEGMENT_BYTES_DEFAULT = 64 * 1024 * 1024
SEGMENT_BYTES_MIN = 4096
SEGMENT_SUFFIX = ".seg"
BROKEN_SUFFIX = ".broken"


def segment_name(base_offset: int) -> str:
    """File name of the segment whose first record is `base_offset`."""
    return f"{base_offset:020d}{SEGMENT_SUFFIX}"


def parse_segment_name(name: str) -> int | None:
    """Base offset from a segment file name, or None if it is not one."""
    if len(name) != 20 + len(SEGMENT_SUFFIX) or not name.endswith(SEGMENT_SUFFIX):
        return None
    digits = name[:20]
    # isascii: str.isdigit() also accepts digits like "²" that int() rejects.
    return int(digits) if digits.isascii() and digits.isdigit() else None


def encode_segment_header(base_offset: int) -> bytes:
    head = SEGMENT_HEADER.pack(SEGMENT_MAGIC, READ_VERSION, WRITE_VERSION, base_offset)
    return head + SEGMENT_CRC.pack(crc32c(head))


class SegmentHeader(NamedTuple):
    read_version: int
    write_version: int
    base_offset: int


def decode_segment_header(data: bytes) -> SegmentHeader | None:
    """Decode a header; None if the bytes are not a valid header."""
    if len(data) < SEGMENT_HEADER_BYTES:
        return None
    head = data[: SEGMENT_HEADER_BYTES - 4]
    (crc,) = SEGMENT_CRC.unpack_from(data, SEGMENT_HEADER_BYTES - 4)
    if crc != crc32c(head):
        return None
    magic, read_version, write_version, base = SEGMENT_HEADER.unpack(head)
    if magic != SEGMENT_MAGIC:
        return None
    return SegmentHeader(read_version, write_version, base)


class Record(NamedTuple):
    """One record of a log, as stored."""

    offset: int
    timestamp_ms: int
    flags: int
    key: bytes
    headers: bytes
    value: bytes


_pack_frame = RECORD_FRAME.pack
_pack_body_head = struct.Struct("<QqBxHI").pack


def encode_record(
    offset: int, timestamp_ms: int, flags: int, key: bytes, headers: bytes, value: bytes
) -> bytes:
    """Frame one record (docs/format.md, "Record")."""
    body = (
        _pack_body_head(offset, timestamp_ms, flags, len(key), len(headers)) + key + headers + value
    )
    return _pack_frame_prefix(len(body), crc32c(body)) + body


_pack_frame_prefix = struct.Struct("<II").pack


class FrameError(Exception):
    """A frame that cannot be decoded; `reason` says why (internal to segments/)."""

    def __init__(self, reason: str, position: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.position = position


def decode_records(
    data: bytes, position: int, end: int, base_position: int = 0
) -> tuple[list[Record], int]:
    """Decode whole records from data[position:end].

    Returns the records and the position just after the last whole record.
    A record cut off by `end` is left for the next call. Raises FrameError
    (with the byte position in the file, `base_position` + index) when a
    frame is damaged.
    """
    # This loop is the replay hot path: locals only, one unpack per frame,
    # and no slicing of empty keys or headers.
    out: list[Record] = []
    unpack = RECORD_FRAME.unpack_from
    append = out.append
    new = tuple.__new__
    crc_of = crc32c
    empty = b""
    body_max = RECORD_BYTES_MAX
    while position + RECORD_FRAME_BYTES <= end:
        length, crc, offset, ts, flags, klen, hlen = unpack(data, position)
        if length < RECORD_BODY_MIN or length > body_max or klen + hlen > length - 24:
            raise FrameError(f"bad record length {length}", base_position + position)
        stop = position + RECORD_PREFIX_BYTES + length
        if stop > end:
            break
        if crc_of(data[position + RECORD_PREFIX_BYTES : stop]) != crc:
            raise FrameError("CRC mismatch", base_position + position)
        if klen or hlen:
            k = position + RECORD_FRAME_BYTES
            h = k + klen
            v = h + hlen
            append(new(Record, (offset, ts, flags, data[k:h], data[h:v], data[v:stop])))
        else:
            append(new(Record, (offset, ts, flags, empty, empty, data[position + 32 : stop])))
        position = stop
    return out, position


# A record without its key, headers and flags: (offset, timestamp_ms, value).
# Value last, as in Record, so record[-1] is the value of either.
ValueRow = tuple[int, int, bytes]


def decode_values(
    data: bytes, position: int, end: int, base_position: int = 0
) -> tuple[list[ValueRow], int]:
    """`decode_records` for readers that need only offsets, times and values.

    Checks every frame exactly as decode_records does, but skips slicing
    keys and headers and building Record objects: a third less Python per
    record, which is what a columnar reader (SQL) pays for. Kept separate
    rather than parameterised, because a branch per record is that loop's
    cost too.
    """
    out: list[ValueRow] = []
    unpack = RECORD_FRAME.unpack_from
    append = out.append
    crc_of = crc32c
    body_max = RECORD_BYTES_MAX
    while position + RECORD_FRAME_BYTES <= end:
        length, crc, offset, ts, _flags, klen, hlen = unpack(data, position)
        if length < RECORD_BODY_MIN or length > body_max or klen + hlen > length - 24:
            raise FrameError(f"bad record length {length}", base_position + position)
        stop = position + RECORD_PREFIX_BYTES + length
        if stop > end:
            break
        if crc_of(data[position + RECORD_PREFIX_BYTES : stop]) != crc:
            raise FrameError("CRC mismatch", base_position + position)
        append((offset, ts, data[position + RECORD_FRAME_BYTES + klen + hlen : stop]))
        position = stop
    return out, position


def frames_bytes(data: bytes, count: int) -> int:
    """Bytes taken by the first `count` frames of `data` (frames already checked)."""
    position = 0
    for _ in range(count):
        position += RECORD_PREFIX_BYTES + struct.unpack_from("<I", data, position)[0]
    return position


def frame_length(data: bytes, position: int) -> int | None:
    """Total size of the record framed at `position`, or None if not bounded."""
    if position + RECORD_PREFIX_BYTES > len(data):
        return None
    length: int = struct.unpack_from("<I", data, position)[0]
    if length < RECORD_BODY_MIN or length > RECORD_BYTES_MAX:
        return None
    return RECORD_PREFIX_BYTES + length
