"""The one loop that reads records out of a segment file.

Reads (reader.py), recovery (recovery.py) and index rebuilds (rebuild.py) all
walk a byte range of a segment with `scan`: it preads bounded chunks, decodes
whole records, checks every CRC and that offsets run on without a gap, and
stops at the first damage with a Corruption that says where, after handing
out the good records before it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from operator import itemgetter
from typing import Protocol, TypeVar

from . import format as fmt
from .errors import Corruption
from .format import FrameError, Record, ValueRow, decode_records

READ_CHUNK_BYTES = 1 << 20  # the largest pread
FIRST_CHUNK_BYTES = 16 * 1024  # the first pread; doubles up to READ_CHUNK_BYTES
_offset_of = itemgetter(0)  # the offset of a Record or ValueRow, at C speed


class _Reader(Protocol):
    def pread(self, fd: int, size: int, position: int) -> bytes: ...


def record_bytes(record: Record) -> int:
    """Size of a record's frame on disk."""
    return fmt.RECORD_FRAME_BYTES + len(record.key) + len(record.headers) + len(record.value)


R = TypeVar("R", Record, ValueRow)


def scan(
    fs: _Reader,
    fd: int,
    position: int,
    limit: int,
    expected: int,
    *,
    log: str,
    path: str,
) -> Iterator[tuple[int, list[Record]]]:
    """Yield (position after the chunk, records) for the records in [position, limit).

    `expected` is the offset of the record at `position`. Raises Corruption
    with the offset and byte position of the first damaged, missing or
    out-of-sequence record, after yielding every good record before it.
    """
    return scan_with(decode_records, fs, fd, position, limit, expected, log=log, path=path)


def scan_with(
    decode: Callable[[bytes, int, int, int], tuple[list[R], int]],
    fs: _Reader,
    fd: int,
    position: int,
    limit: int,
    expected: int,
    *,
    log: str,
    path: str,
) -> Iterator[tuple[int, list[R]]]:
    """`scan`, decoding with `decode` (format.decode_records or decode_values)."""

    def damaged(reason: str, at: int) -> Corruption:
        return Corruption(reason, log=log, path=path, offset=expected, position=at)

    chunk = FIRST_CHUNK_BYTES  # small first, so reading a few records reads few bytes
    while position < limit:
        data = fs.pread(fd, min(chunk, limit - position), position)
        chunk = min(chunk * 2, READ_CHUNK_BYTES)
        if len(data) < fmt.RECORD_FRAME_BYTES:
            raise damaged("segment shorter than its committed length", position)
        error: Corruption | None = None
        try:
            records, used = decode(data, 0, len(data), position)
        except FrameError as exc:
            records, used = decode(data, 0, exc.position - position, position)
            error = Corruption(
                f"damaged record: {exc.reason}",
                log=log,
                path=path,
                offset=expected + len(records),
                position=exc.position,
            )
        if not records and error is None:
            # One record larger than the chunk: read exactly its frame.
            size = fmt.frame_length(data, 0)
            if size is None or position + size > limit:
                raise damaged("damaged record: bad length", position)
            data = fs.pread(fd, size, position)
            if len(data) < size:
                raise damaged("segment shorter than its committed length", position)
            try:
                records, used = decode(data, 0, size, position)
            except FrameError as exc:
                raise damaged(f"damaged record: {exc.reason}", exc.position) from None
        # Every offset, not just the first and last: a record with a wrong
        # offset and a valid CRC can sit in the middle of a chunk.
        count = len(records)
        if list(map(_offset_of, records)) != list(range(expected, expected + count)):
            bad = next(i for i, r in enumerate(records) if r[0] != expected + i)
            found = records[bad][0]
            records = records[:bad]
            used = fmt.frames_bytes(data, bad)
            error = Corruption(
                f"record offset {found} where {expected + bad} was expected",
                log=log,
                path=path,
                offset=expected + bad,
                position=position + used,
            )
        if records:
            position += used
            expected += len(records)
            yield position, records
        if error is not None:
            raise error
