"""The one loop that reads batches out of a segment file.

Reads (reader.py), recovery (recovery.py), repair (repair.py) and index
rebuilds (rebuild.py) all walk a byte range of a segment with
`scan_batches`: it preads bounded chunks, checks every batch (salt, CRC,
lengths, offsets running on without a gap) and stops at the first damage
with a Corruption that says where, after handing out the good batches
before it. Batches are handed out as they are decoded; their records are
made only when asked for (format.Batch).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from . import format as fmt
from .errors import Corruption, UnsupportedFormat
from .format import Batch, decode_batches

READ_CHUNK_BYTES = 1 << 20  # the largest pread
FIRST_CHUNK_BYTES = 16 * 1024  # the first pread; doubles up to READ_CHUNK_BYTES


class _Reader(Protocol):
    def pread(self, fd: int, size: int, position: int) -> bytes: ...


def segment_salt(fs: _Reader, fd: int, base: int, *, log: str, path: str) -> int:
    """The salt of the segment open as `fd`, from its checked header.

    Raises Corruption if the header is damaged or names another base,
    UnsupportedFormat if the file is of format 1 or of a newer format.
    """
    header = fmt.decode_segment_header(fs.pread(fd, fmt.SEGMENT_HEADER_BYTES, 0))
    if header is None or header.base_offset != base:
        raise Corruption("segment header damaged", log=log, path=path, offset=base, position=0)
    if header.read_version > fmt.READ_VERSION or header.read_version < fmt.READ_VERSION:
        raise UnsupportedFormat(
            f"segment {path}: format {header.read_version}, this build reads "
            f"{fmt.READ_VERSION} (run `tidelog migrate` for format 1 stores)"
        )
    return header.salt


def scan_batches(
    fs: _Reader,
    fd: int,
    position: int,
    limit: int,
    expected: int,
    salt: int,
    *,
    log: str,
    path: str,
    first_chunk_bytes: int = FIRST_CHUNK_BYTES,
) -> Iterator[Batch]:
    """Yield the batches in [position, limit), gap batches included.

    `expected` is the base offset of the batch at `position`. Raises
    Corruption with the offset and byte position of the first damaged,
    missing or out-of-sequence batch, after yielding every good one before it.
    """

    def damaged(reason: str) -> Corruption:
        return Corruption(reason, log=log, path=path, offset=expected, position=position)

    chunk = first_chunk_bytes  # small first, so reading a few records reads few bytes
    while position < limit:
        data = fs.pread(fd, min(chunk, limit - position), position)
        chunk = min(chunk * 2, READ_CHUNK_BYTES)
        if len(data) < fmt.BATCH_HEADER_BYTES:
            raise damaged("segment shorter than its committed length")
        batches, used, error = decode_batches(data, 0, len(data), salt, expected, position)
        if not batches and error is None:
            # One batch larger than the chunk: read exactly its bytes.
            size = fmt.batch_length(data, 0)
            if size is None or position + size > limit:
                raise damaged("damaged batch: bad length")
            data = fs.pread(fd, size, position)
            if len(data) < size:
                raise damaged("segment shorter than its committed length")
            batches, used, error = decode_batches(data, 0, size, salt, expected, position)
        for batch in batches:
            expected = batch.base_offset + batch.count
            yield batch
        position += used
        if error is not None:
            raise Corruption(
                f"damaged batch: {error.reason}",
                log=log,
                path=path,
                offset=expected,
                position=error.position,
            )
