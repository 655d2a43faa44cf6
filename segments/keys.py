"""LMDB database names, key and value layouts (docs/format.md, "LMDB")."""

from __future__ import annotations

import struct
from typing import Any, NamedTuple

DB_META = b"meta"
DB_NAMES = b"names"
DB_LOGS = b"logs"
DB_ENDS = b"ends"
DB_SEGMENTS = b"segments"
DB_INDEX = b"index"
DB_TIMEINDEX = b"timeindex"
LOG_DATABASES = (DB_META, DB_NAMES, DB_LOGS, DB_ENDS, DB_SEGMENTS, DB_INDEX, DB_TIMEINDEX)

META_FORMAT = b"format"
META_NEXT_LOG_ID = b"next_log_id"

# py-lmdb's stubs type every read as bytes | memoryview; we never open
# transactions with buffers=True, so reads are bytes. Transactions are typed
# loosely rather than cast at every call.
Txn = Any

U64 = struct.Struct(">Q")
U64_PAIR = struct.Struct(">QQ")
U64_TRIPLE = struct.Struct(">QQQ")
ENDS = struct.Struct(">QQQQQQ")
SEGMENT_ROW = struct.Struct(">QQQQB")
INDEX_ROW = struct.Struct(">QQQ")  # segment base, byte position, timestamp


class Ends(NamedTuple):
    """A log's commit point: everything below `next_offset` is committed."""

    start_offset: int  # first offset still retained
    next_offset: int  # offset the next append gets
    active_base: int  # base offset of the segment being appended to
    active_position: int  # committed byte length of that segment
    last_timestamp_ms: int
    last_index_position: int  # byte position of the active segment's last index entry

    def pack(self) -> bytes:
        return ENDS.pack(*self)

    @classmethod
    def unpack(cls, data: bytes) -> Ends:
        return cls._make(ENDS.unpack(data))


class SegmentRow(NamedTuple):
    end_offset: int  # offset after the segment's last record (0 while active)
    size: int  # bytes, header included (0 while active)
    first_timestamp_ms: int
    last_timestamp_ms: int
    sealed: int

    def pack(self) -> bytes:
        return SEGMENT_ROW.pack(*self)

    @classmethod
    def unpack(cls, data: bytes) -> SegmentRow:
        return cls._make(SEGMENT_ROW.unpack(data))


def log_key(log_id: int) -> bytes:
    return U64.pack(log_id)


def log_offset_key(log_id: int, offset: int) -> bytes:
    return U64_PAIR.pack(log_id, offset)


def time_key(log_id: int, timestamp_ms: int, offset: int) -> bytes:
    return U64_TRIPLE.pack(log_id, timestamp_ms, offset)
