"""Byte layout of segment files: constants, and pure encode/decode functions.

Every constant here is specified in docs/format.md ("Segment file (format
2)"); change both together. Nothing in this module does I/O.
"""

from __future__ import annotations

import os
import struct
from array import array
from collections.abc import Iterator, Sequence
from itertools import count, repeat
from typing import NamedTuple

from .crc import crc32c

_unpack_from = struct.unpack_from

SEGMENT_MAGIC = b"TDLGSEG\n"
READ_VERSION = 2  # oldest format a reader must understand to read our files
WRITE_VERSION = 2  # format this build writes
FORMAT_1 = 1  # one frame per record; moved to format 2 by `tidelog migrate`

# Header: magic, read version, write version, 2 reserved, salt, base offset,
# 4 reserved, CRC32C of bytes 0-27.
SEGMENT_HEADER = struct.Struct("<8sBB2xIQ4x")
SEGMENT_HEADER_BYTES = 32
SEGMENT_CRC = struct.Struct("<I")

# Batch header: length, crc, salt, count, base offset, timestamp, flags,
# attributes, 6 reserved. `length` counts the bytes after the first 8.
BATCH_HEADER = struct.Struct("<IIIIQqBB6x")
BATCH_HEADER_BYTES = 40
BATCH_PREFIX_BYTES = 8
BATCH_BODY_MIN = BATCH_HEADER_BYTES - BATCH_PREFIX_BYTES  # 32
_BATCH_AFTER_PREFIX = struct.Struct("<IIQqBB6x")
_BATCH_PREFIX = struct.Struct("<II")
ATTR_KEYS = 0x01
ATTR_HEADERS = 0x02
ATTR_GAP = 0x80
_ATTR_KNOWN = ATTR_KEYS | ATTR_HEADERS | ATTR_GAP
LENGTH_BYTES = 4  # one u32 per record per lengths array
BATCH_BYTES_MAX = 32 * 1024 * 1024  # bound on `length` before it is trusted
BATCH_TARGET_BYTES = 256 * 1024  # the writer cuts appends into batches of about this
RECORD_BYTES_MAX = 16 * 1024 * 1024  # value + key + headers of one record
KEY_BYTES_MAX = 0xFFFF

EXTENT_BYTES_MIN = 64 * 1024  # pre-written zeros: the first extent of a segment
EXTENT_BYTES_MAX = 4 * 1024 * 1024  # extents double up to this

INDEX_INTERVAL_BYTES = 4096
SEGMENT_BYTES_DEFAULT = 64 * 1024 * 1024
SEGMENT_BYTES_MIN = 4096
SEGMENT_SUFFIX = ".seg"
BROKEN_SUFFIX = ".broken"

if array("I").itemsize != LENGTH_BYTES:  # pragma: no cover - every CPython platform we run on
    raise ImportError("tidelog needs a 4-byte array('I')")
_LITTLE = struct.pack("=I", 1) == struct.pack("<I", 1)


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


def new_salt() -> int:
    """A random non-zero salt for a segment header (docs/format.md, "The salt")."""
    while True:
        salt = int.from_bytes(os.urandom(4), "little")
        if salt:
            return salt


def encode_segment_header(base_offset: int, salt: int) -> bytes:
    head = SEGMENT_HEADER.pack(SEGMENT_MAGIC, READ_VERSION, WRITE_VERSION, salt, base_offset)
    return head + SEGMENT_CRC.pack(crc32c(head))


class SegmentHeader(NamedTuple):
    read_version: int
    write_version: int
    base_offset: int
    salt: int


def decode_segment_header(data: bytes) -> SegmentHeader | None:
    """Decode a header; None if the bytes are not a valid header.

    A format 1 header decodes too (its salt reads as 0, which no format 2
    segment has), so callers can tell an old file from a damaged one.
    """
    if len(data) < SEGMENT_HEADER_BYTES:
        return None
    head = data[: SEGMENT_HEADER_BYTES - 4]
    (crc,) = SEGMENT_CRC.unpack_from(data, SEGMENT_HEADER_BYTES - 4)
    if crc != crc32c(head):
        return None
    magic, read_version, write_version, salt, base = SEGMENT_HEADER.unpack(head)
    if magic != SEGMENT_MAGIC:
        return None
    return SegmentHeader(read_version, write_version, base, salt)


class Record(NamedTuple):
    """One record of a log, as stored."""

    offset: int
    timestamp_ms: int
    flags: int
    key: bytes
    headers: bytes
    value: bytes


# A record without its key, headers and flags: (offset, timestamp_ms, value).
# Value last, as in Record, so record[-1] is the value of either.
ValueRow = tuple[int, int, bytes]


def _lengths(items: Sequence[bytes]) -> bytes:
    lengths = array("I", map(len, items))
    if not _LITTLE:  # pragma: no cover - big-endian hosts
        lengths.byteswap()
    return lengths.tobytes()


def encode_batch(
    salt: int,
    base_offset: int,
    timestamp_ms: int,
    flags: int,
    values: Sequence[bytes],
    keys: Sequence[bytes] | None = None,
    headers: Sequence[bytes] | None = None,
) -> bytes:
    """One batch of records (docs/format.md, "Record batch"); limits are the caller's.

    `keys` and `headers`, when given, have one item per value.
    """
    attributes = 0
    parts = [b"", _lengths(values)]
    if keys is not None:
        attributes |= ATTR_KEYS
        parts.append(_lengths(keys))
    if headers is not None:
        attributes |= ATTR_HEADERS
        parts.append(_lengths(headers))
    parts[0] = _BATCH_AFTER_PREFIX.pack(
        salt, len(values), base_offset, timestamp_ms, flags, attributes
    )
    parts += values
    if keys is not None:
        parts += keys
    if headers is not None:
        parts += headers
    body = b"".join(parts)
    return _BATCH_PREFIX.pack(len(body), crc32c(body)) + body


def encode_gap(salt: int, base_offset: int, lost: int, size: int, timestamp_ms: int) -> bytes:
    """A gap batch of exactly `size` bytes: `lost` offsets from `base_offset` that
    repair could not save (docs/format.md, "Repair"); `timestamp_ms` is that of
    the last good record before it, so time lookups stay ordered."""
    if size < BATCH_HEADER_BYTES or lost < 1:
        raise ValueError(f"gap: {size} bytes for {lost} records")
    body = _BATCH_AFTER_PREFIX.pack(salt, lost, base_offset, timestamp_ms, 0, ATTR_GAP)
    body += bytes(size - BATCH_HEADER_BYTES)
    return _BATCH_PREFIX.pack(len(body), crc32c(body)) + body


def batch_records_bytes(values: Sequence[bytes], keys: bool, headers: bool) -> int:
    """Bytes the lengths arrays add for `len(values)` records."""
    return LENGTH_BYTES * len(values) * (1 + keys + headers)


class FrameError(Exception):
    """A batch that cannot be decoded; `reason` says why (internal to segments/)."""

    def __init__(self, reason: str, position: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.position = position


_EMPTY = b""
_tuple_new = tuple.__new__


class Batch:
    """One checked batch: its header fields, and its records made on demand.

    Holds the chunk it was read from; the values, keys and headers are
    sliced out only when asked for, and only for the range asked for.
    """

    __slots__ = (
        "position",
        "size",
        "base_offset",
        "count",
        "timestamp_ms",
        "flags",
        "attributes",
        "_data",
        "_lengths",
        "_values_start",
    )

    def __init__(
        self,
        position: int,
        size: int,
        base_offset: int,
        count_: int,
        timestamp_ms: int,
        flags: int,
        attributes: int,
        data: bytes,
        lengths: array[int],
        values_start: int,
    ) -> None:
        self.position = position  # in the file
        self.size = size  # bytes on disk
        self.base_offset = base_offset
        self.count = count_
        self.timestamp_ms = timestamp_ms
        self.flags = flags
        self.attributes = attributes
        self._data = data
        self._lengths = lengths  # values', then keys', then headers' lengths
        self._values_start = values_start  # index in data of the first value

    @property
    def gap(self) -> bool:
        """True for a gap batch: `count` offsets lost to damage, no records."""
        return bool(self.attributes & ATTR_GAP)

    @property
    def end_offset(self) -> int:
        return self.base_offset + self.count

    def _column(self, which: int, low: int, high: int) -> list[bytes]:
        if low >= high:
            return []
        lengths = self._lengths
        first = which * self.count + low
        start = self._values_start + (sum(lengths[:first]) if first else 0)
        # One struct unpack of "<len>s" fields makes the bytes objects in C:
        # about a third cheaper than a slice per record.
        layout = "s".join(map(str, lengths[first : first + high - low])) + "s"
        return list(_unpack_from(layout, self._data, start))

    def values(self, low: int = 0, high: int | None = None) -> list[bytes]:
        """Values of records `low` to `high` (indexes in the batch)."""
        return self._column(0, low, self.count if high is None else high)

    def keys(self, low: int = 0, high: int | None = None) -> list[bytes] | None:
        if not self.attributes & ATTR_KEYS:
            return None
        return self._column(1, low, self.count if high is None else high)

    def headers(self, low: int = 0, high: int | None = None) -> list[bytes] | None:
        if not self.attributes & ATTR_HEADERS:
            return None
        which = 2 if self.attributes & ATTR_KEYS else 1
        return self._column(which, low, self.count if high is None else high)

    def records(self, low: int = 0, high: int | None = None) -> Iterator[Record]:
        """Records `low` to `high`, each made as the caller takes it."""
        if self.attributes & ATTR_GAP:
            return iter(())
        high = self.count if high is None else high
        if low >= high:
            return iter(())
        values = self.values(low, high)
        keys = self.keys(low, high)
        headers = self.headers(low, high)
        # tuple.__new__ over zip's tuples makes each Record in C: no Python
        # frame per record (Record's own __new__ is a Python function).
        fields = zip(
            count(self.base_offset + low),
            repeat(self.timestamp_ms),
            repeat(self.flags),
            repeat(_EMPTY) if keys is None else keys,
            repeat(_EMPTY) if headers is None else headers,
            values,
        )
        return map(_tuple_new, repeat(Record), fields)


_unpack_header = BATCH_HEADER.unpack_from


def decode_batches(
    data: bytes, position: int, end: int, salt: int, expected: int, base_position: int = 0
) -> tuple[list[Batch], int, FrameError | None]:
    """Check and decode the whole batches in data[position:end].

    `expected` is the base offset the first batch must have. Returns the
    good batches, the position just after the last of them, and the
    FrameError (with the byte position in the file, `base_position` +
    index) of the first batch that fails a check of docs/format.md, "Record
    batch", or None. A batch cut off by `end` is left for the next call.
    """
    out: list[Batch] = []
    append = out.append
    view = memoryview(data)
    crc_of = crc32c
    while position + BATCH_HEADER_BYTES <= end:
        length, crc, batch_salt, n, base, ts, flags, attributes = _unpack_header(data, position)
        at = base_position + position
        if length < BATCH_BODY_MIN or length > BATCH_BYTES_MAX:
            return out, position, FrameError(f"bad batch length {length}", at)
        stop = position + BATCH_PREFIX_BYTES + length
        if stop > end:
            break
        if batch_salt != salt:
            return out, position, FrameError("salt mismatch (not a batch of this segment)", at)
        if crc_of(view[position + BATCH_PREFIX_BYTES : stop]) != crc:
            return out, position, FrameError("CRC mismatch", at)
        if attributes & ~_ATTR_KNOWN or n < 1:
            return out, position, FrameError(f"bad attributes {attributes} or count {n}", at)
        if base != expected:
            return (
                out,
                position,
                FrameError(f"batch offset {base} where {expected} was expected", at),
            )
        start = position + BATCH_HEADER_BYTES
        lengths = array("I")
        if not attributes & ATTR_GAP:
            arrays = 1 + (attributes & ATTR_KEYS) + ((attributes & ATTR_HEADERS) >> 1)
            lengths_end = start + LENGTH_BYTES * n * arrays
            if lengths_end > stop:
                return out, position, FrameError("lengths do not fit in the batch", at)
            lengths.frombytes(view[start:lengths_end])
            if not _LITTLE:  # pragma: no cover - big-endian hosts
                lengths.byteswap()
            if lengths_end + sum(lengths) != stop:
                return out, position, FrameError("record lengths do not add up to the batch", at)
            start = lengths_end
        append(Batch(at, stop - position, base, n, ts, flags, attributes, data, lengths, start))
        expected = base + n
        position = stop
    return out, position, None


def batch_length(data: bytes, position: int) -> int | None:
    """Total size of the batch framed at `position`, or None if not bounded."""
    if position + BATCH_PREFIX_BYTES > len(data):
        return None
    length: int = struct.unpack_from("<I", data, position)[0]
    if length < BATCH_BODY_MIN or length > BATCH_BYTES_MAX:
        return None
    return BATCH_PREFIX_BYTES + length
