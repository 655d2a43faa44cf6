"""Format 1 segments, read only: what `tidelog migrate` moves to format 2.

Format 1 framed every record alone (docs/format.md, "Format 1 stores"):

    segment := header record*
    header  := "TDLGSEG\\n" read:u8 write:u8 reserved[6] base:u64 reserved[4] crc:u32
    record  := length:u32 crc:u32 offset:u64 timestamp:i64 flags:u8 reserved:u8
               key_length:u16 headers_length:u32 key headers value

`length` counts the bytes after the first 8 and the CRC32C covers them.
Nothing in this build writes format 1.
"""

from __future__ import annotations

import struct

from .crc import crc32c
from .format import FrameError, Record

FORMAT_VERSION = 1
RECORD_FRAME = struct.Struct("<IIQqBxHI")
RECORD_FRAME_BYTES = 32
RECORD_PREFIX_BYTES = 8
RECORD_BODY_MIN = RECORD_FRAME_BYTES - RECORD_PREFIX_BYTES
RECORD_BYTES_MAX = 16 * 1024 * 1024


def decode_records(
    data: bytes, position: int, end: int, base_position: int = 0
) -> tuple[list[Record], int]:
    """Whole format 1 records of data[position:end], and the position after them.

    A record cut off by `end` is left for the next call; a damaged frame
    raises FrameError with its byte position (`base_position` + index).
    """
    out: list[Record] = []
    while position + RECORD_FRAME_BYTES <= end:
        length, crc, offset, ts, flags, klen, hlen = RECORD_FRAME.unpack_from(data, position)
        if length < RECORD_BODY_MIN or length > RECORD_BYTES_MAX or klen + hlen > length - 24:
            raise FrameError(f"bad record length {length}", base_position + position)
        stop = position + RECORD_PREFIX_BYTES + length
        if stop > end:
            break
        if crc32c(data[position + RECORD_PREFIX_BYTES : stop]) != crc:
            raise FrameError("CRC mismatch", base_position + position)
        k = position + RECORD_FRAME_BYTES
        h = k + klen
        v = h + hlen
        out.append(Record(offset, ts, flags, data[k:h], data[h:v], data[v:stop]))
        position = stop
    return out, position
