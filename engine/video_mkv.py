"""Cutting a Matroska (MKV/WebM) byte stream into fragments, and framing them again.

A fragment is what Kinesis Video Streams calls one: one Matroska Cluster,
with the stream header before it (the EBML header, a Segment of unknown size,
its Info and Tracks) so that each fragment is a playable file on its own.

The EBML layer (element IDs, sizes, unknown sizes, encoding elements) is
ebmlite's: `readElementID` / `readElementSize` find element boundaries in
the bytes as they arrive, `Schema.loads` reads the header's Info and Tracks,
and the schema's element classes encode the AWS tags GetMedia adds. What
this module knows is Matroska's layout: which top-level IDs start a header,
a cluster or something to skip, and where a block's timecode sits.
"""

from __future__ import annotations

import io
import itertools
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import ebmlite
from ebmlite import decoding, encoding

from tidelog.segments.errors import InvalidArgument

SCHEMA: Any = ebmlite.loadSchema("matroska.xml")

# Matroska element IDs this module acts on (the Matroska specification's values).
EBML_ID = 0x1A45DFA3
SEGMENT_ID = 0x18538067
INFO_ID = 0x1549A966
TRACKS_ID = 0x1654AE6B
CLUSTER_ID = 0x1F43B675
TIMECODE_ID = 0xE7
SIMPLE_BLOCK_ID = 0xA3
BLOCK_GROUP_ID = 0xA0
BLOCK_ID = 0xA1
BLOCK_DURATION_ID = 0x9B
# What may stand inside a Cluster: an unknown-size cluster ends at the first other ID.
_CLUSTER_CHILDREN = frozenset(
    {TIMECODE_ID, SIMPLE_BLOCK_ID, BLOCK_GROUP_ID, 0xBF, 0xA7, 0xAB, 0x5854, 0xEC, 0xAF}
)
_UNKNOWN_SEGMENT_SIZE = b"\x01\xff\xff\xff\xff\xff\xff\xff"
TIMECODE_SCALE_DEFAULT_NS = 1_000_000

# Bounds before a length field is trusted: a header (EBML, Info, Tracks) is a
# few KiB; anything larger than this is not a producer's stream.
HEADER_ELEMENT_BYTES_MAX = 1024 * 1024


class MkvError(InvalidArgument):
    """The bytes are not a Matroska stream tidelog can cut (KVS's INVALID_MKV_DATA)."""


class FragmentTooLarge(InvalidArgument):
    """A cluster is over the fragment size limit (KVS's MAX_FRAGMENT_SIZE_REACHED)."""


@dataclass(frozen=True, slots=True)
class StreamHeader:
    """The bytes every fragment of one producer session starts with, and what they say."""

    data: bytes  # EBML header + Segment (unknown size) + Info + Tracks
    timecode_scale_ns: int
    frame_duration_ns: int | None  # the first track's DefaultDuration, when given
    codec_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Cluster:
    """One cluster as cut from the stream: its bytes and its times, in the stream's units."""

    data: bytes
    timecode: int  # the cluster's Timecode, in timecode-scale units
    duration: int  # from its first block to the end of its last, same units


def parse_header(data: bytes) -> StreamHeader:
    """Read the Info and Tracks of a header made by `MkvCutter`."""
    try:
        doc = SCHEMA.loads(data)
        scale = TIMECODE_SCALE_DEFAULT_NS
        frame_ns: int | None = None
        codecs: list[str] = []
        for top in doc:
            if top.id != SEGMENT_ID:
                continue
            for child in top:
                if child.id == INFO_ID:
                    for item in child:
                        if item.name == "TimecodeScale":
                            scale = int(item.value)
                elif child.id == TRACKS_ID:
                    for entry in child:
                        if entry.name != "TrackEntry":
                            continue  # CRC-32, Void
                        for item in entry:
                            if item.name == "CodecID":
                                codecs.append(str(item.value))
                            elif item.name == "DefaultDuration" and frame_ns is None:
                                frame_ns = int(item.value)
    except (OSError, ValueError, TypeError, KeyError, IndexError) as exc:
        raise MkvError(f"MKV header: cannot be read ({exc})") from None
    if scale <= 0:
        raise MkvError(f"MKV header: TimecodeScale {scale} is not positive")
    return StreamHeader(data, scale, frame_ns, tuple(codecs))


def _element_head(buffer: bytes | bytearray, position: int) -> tuple[int, int | None, int] | None:
    """(element id, payload size or None for unknown, header length) at `position`,
    or None when the buffer ends inside the header."""
    if len(buffer) - position < 2:
        return None
    stream = io.BytesIO(memoryview(buffer)[position : position + 12])
    try:
        element_id, id_length = decoding.readElementID(stream)
        size, size_length = decoding.readElementSize(stream)
    except (OSError, TypeError, IndexError, ValueError):
        if len(buffer) - position < 12:
            return None  # cut inside a header: wait for more bytes
        raise MkvError(f"MKV: no element header at byte {position}") from None
    if stream.tell() < id_length + size_length:  # read past what is buffered
        return None
    return element_id, size, id_length + size_length


def cluster_times(data: bytes, header: StreamHeader) -> tuple[int, int]:
    """(Timecode, duration) of one whole cluster element, in timecode-scale units.

    The duration runs from the cluster's Timecode to the end of its last block:
    the last block's relative timecode plus one frame (a BlockDuration when the
    block has one, else the track's DefaultDuration, else the median gap
    between blocks).
    """
    head = _element_head(data, 0)
    if head is None or head[0] != CLUSTER_ID:
        raise MkvError("MKV: a fragment must be one Cluster")
    position = head[2]
    end = len(data)
    timecode: int | None = None
    relatives: list[int] = []
    last_block_duration: int | None = None
    while position < end:
        child = _element_head(data, position)
        if child is None:
            raise MkvError(f"MKV: Cluster cut short at byte {position}")
        child_id, size, length = child
        if size is None:
            raise MkvError("MKV: unknown size inside a Cluster")
        start = position + length
        if child_id == TIMECODE_ID:
            timecode = int.from_bytes(data[start : start + size], "big")
        elif child_id == SIMPLE_BLOCK_ID:
            relatives.append(_block_timecode(data, start))
            last_block_duration = None
        elif child_id == BLOCK_GROUP_ID:
            relatives.append(_group_timecode(data, start, start + size))
            last_block_duration = _group_duration(data, start, start + size)
        position = start + size
    if timecode is None:
        raise MkvError("MKV: a Cluster has no Timecode")
    if not relatives:
        return timecode, 0
    ordered = sorted(relatives)
    if last_block_duration is not None:
        frame = last_block_duration
    elif header.frame_duration_ns:
        frame = max(1, round(header.frame_duration_ns / header.timecode_scale_ns))
    elif len(ordered) > 1:
        gaps = [later - earlier for earlier, later in itertools.pairwise(ordered)]
        frame = max(1, round(statistics.median(gaps)))
    else:
        frame = 0
    return timecode, max(0, ordered[-1] + frame)


def _block_timecode(data: bytes, start: int) -> int:
    """A (Simple)Block's timecode relative to its cluster: a signed 16-bit
    integer after the track number (itself an EBML variable-size integer)."""
    track_length, _ = decoding.decodeIntLength(data[start])
    return int.from_bytes(data[start + track_length : start + track_length + 2], "big", signed=True)


def _group_children(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    position = start
    while position < end:
        head = _element_head(data, position)
        if head is None or head[1] is None:
            raise MkvError("MKV: bad BlockGroup")
        yield head[0], position + head[2], head[1]
        position += head[2] + head[1]


def _group_timecode(data: bytes, start: int, end: int) -> int:
    for child_id, payload, _size in _group_children(data, start, end):
        if child_id == BLOCK_ID:
            return _block_timecode(data, payload)
    raise MkvError("MKV: a BlockGroup has no Block")


def _group_duration(data: bytes, start: int, end: int) -> int | None:
    for child_id, payload, size in _group_children(data, start, end):
        if child_id == BLOCK_DURATION_ID:
            return int.from_bytes(data[payload : payload + size], "big")
    return None


class MkvCutter:
    """Cuts a Matroska byte stream, fed in pieces of any size, into clusters.

    `feed` returns what the new bytes completed: `StreamHeader`s (a producer
    may start a new EBML document mid-stream, as KVS producers do when their
    tracks change) and `Cluster`s, each with the header in force before it.
    Known-size and unknown-size Segments and Clusters are both accepted;
    SeekHead, Cues, Tags, Chapters, Attachments and Void are skipped.
    """

    def __init__(self, fragment_bytes_max: int) -> None:
        self.fragment_bytes_max = fragment_bytes_max
        self._buffer = bytearray()
        self._in_segment = False
        self._segment_end: int | None = None  # bytes of a known-size Segment left
        self._ebml = b""
        self._header_parts: list[bytes] = []
        self.header: StreamHeader | None = None
        self._open_cluster: int | None = None  # end of the parsed children of an unknown-size one
        self.consumed = 0  # bytes of the stream fully handled
        self._error: MkvError | None = None

    @property
    def pending_bytes(self) -> int:
        """Bytes received but not yet part of a finished element."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[StreamHeader | Cluster]:
        """What `data` completed. Bad bytes raise MkvError, but only after the
        pieces completed before them have been returned (on the next call)."""
        if self._error is not None:
            raise self._error
        self._buffer += data
        out: list[StreamHeader | Cluster] = []
        try:
            while self._step(out, final=False):
                pass
        except MkvError as exc:
            if not out:
                raise
            self._error = exc
        return out

    def finish(self) -> list[StreamHeader | Cluster]:
        """The stream ended: an open unknown-size cluster ends here; a cut element is an error."""
        if self._error is not None:
            raise self._error
        out: list[StreamHeader | Cluster] = []
        while self._step(out, final=True):
            pass
        if self._buffer:
            raise MkvError(f"MKV: the stream ended inside an element ({len(self._buffer)} bytes)")
        return out

    def _take(self, length: int) -> bytes:
        piece = bytes(self._buffer[:length])
        del self._buffer[:length]
        self.consumed += length
        if self._segment_end is not None:
            self._segment_end -= length
            if self._segment_end <= 0:
                self._in_segment = False
                self._segment_end = None
        return piece

    def _step(self, out: list[StreamHeader | Cluster], final: bool) -> bool:
        buffer = self._buffer
        if not buffer:
            return False
        if self._open_cluster is not None:
            return self._step_open_cluster(out, final)
        head = _element_head(buffer, 0)
        if head is None:
            return False
        element_id, size, length = head
        if element_id == EBML_ID or not self._in_segment:
            return self._step_top(out, element_id, size, length)
        if element_id == CLUSTER_ID:
            if self.header is None:
                raise MkvError("MKV: a Cluster before the Segment's Info and Tracks")
            if size is None:
                self._open_cluster = length
                return True
            if length + size > self.fragment_bytes_max:
                raise FragmentTooLarge(
                    f"MKV: a {length + size}-byte fragment is over the "
                    f"{self.fragment_bytes_max}-byte limit"
                )
            if len(buffer) < length + size:
                return False
            self._emit_cluster(out, self._take(length + size))
            return True
        if size is None:
            raise MkvError(f"MKV: element 0x{element_id:X} of unknown size inside the Segment")
        if element_id in (INFO_ID, TRACKS_ID):
            if size > HEADER_ELEMENT_BYTES_MAX:
                raise MkvError(f"MKV: a {size}-byte Info or Tracks element is too large")
            if len(buffer) < length + size:
                return False
            if self.header is not None:  # a new Info/Tracks after clusters: a new header
                self._header_parts = [p for p in self._header_parts if p[:4] != buffer[:4]]
                self.header = None
            self._header_parts.append(self._take(length + size))
            if any(p[:4] == TRACKS_ID.to_bytes(4, "big") for p in self._header_parts) and any(
                p[:4] == INFO_ID.to_bytes(4, "big") for p in self._header_parts
            ):
                self._set_header(out)
            return True
        # Anything else at level 1 (SeekHead, Cues, Tags, Void, ...) is skipped.
        if size > self.fragment_bytes_max:
            raise MkvError(f"MKV: a {size}-byte element 0x{element_id:X} is too large")
        if len(buffer) < length + size:
            return False
        self._take(length + size)
        return True

    def _step_top(
        self, out: list[StreamHeader | Cluster], element_id: int, size: int | None, length: int
    ) -> bool:
        if element_id == EBML_ID:
            if size is None or size > HEADER_ELEMENT_BYTES_MAX:
                raise MkvError("MKV: a bad EBML header size")
            if len(self._buffer) < length + size:
                return False
            self._in_segment = False
            self._segment_end = None
            self._ebml = self._take(length + size)
            self._header_parts = []
            self.header = None
            return True
        if element_id == SEGMENT_ID:
            if not self._ebml:
                raise MkvError("MKV: a Segment before the EBML header")
            self._take(length)
            self._in_segment = True
            self._segment_end = size  # None: unknown size, runs to the end or the next EBML
            return True
        raise MkvError(f"MKV: element 0x{element_id:X} where an EBML header or Segment belongs")

    def _step_open_cluster(self, out: list[StreamHeader | Cluster], final: bool) -> bool:
        """Walk the children of an unknown-size cluster until an ID that is not one."""
        position = self._open_cluster or 0
        while True:
            if position > self.fragment_bytes_max:
                raise FragmentTooLarge(
                    f"MKV: a fragment over the {self.fragment_bytes_max}-byte limit"
                )
            head = _element_head(self._buffer, position)
            if head is None:
                if final and position == len(self._buffer):
                    break
                self._open_cluster = position
                return final and self._close_open_cluster(out, position)
            element_id, size, length = head
            if element_id not in _CLUSTER_CHILDREN:
                break
            if size is None:
                raise MkvError("MKV: unknown size inside a Cluster")
            if len(self._buffer) < position + length + size:
                self._open_cluster = position
                return False
            position += length + size
        return self._close_open_cluster(out, position)

    def _close_open_cluster(self, out: list[StreamHeader | Cluster], end: int) -> bool:
        raw = self._take(end)
        self._open_cluster = None
        head = _element_head(raw, 0)
        if head is None:
            raise MkvError("MKV: a Cluster header vanished")  # parsed before: cannot happen
        # Stored with its real size, so that each fragment is a well-formed file.
        body = raw[head[2] :]
        sized = CLUSTER_ID.to_bytes(4, "big") + _size_bytes(len(body)) + body
        self._emit_cluster(out, sized)
        return bool(self._buffer)

    def _set_header(self, out: list[StreamHeader | Cluster]) -> None:
        data = b"".join([self._ebml, SEGMENT_ID.to_bytes(4, "big"), _UNKNOWN_SEGMENT_SIZE])
        data += b"".join(self._header_parts)
        self.header = parse_header(data)
        out.append(self.header)

    def _emit_cluster(self, out: list[StreamHeader | Cluster], data: bytes) -> None:
        header = self.header
        if header is None:
            raise MkvError("MKV: a Cluster before the Segment's Info and Tracks")
        timecode, duration = cluster_times(data, header)
        out.append(Cluster(data, timecode, duration))


def _size_bytes(size: int) -> bytes:
    return bytes(encoding.encodeSize(size, 8))


def tags_element(tags: list[tuple[str, str]]) -> bytes:
    """A Matroska Tags element of SimpleTags (GetMedia's per-fragment AWS tags)."""
    simple = [{"TagName": name, "TagString": value} for name, value in tags]
    return bytes(SCHEMA["Tags"].encode({"Tag": {"SimpleTag": simple}}))


def split_fragments(data: bytes) -> list[tuple[bytes, bytes]]:
    """A whole MKV file (or GetMedia's output) as (header bytes, cluster bytes) pairs,
    in order; each header as `MkvCutter` builds it."""
    cutter = MkvCutter(fragment_bytes_max=max(len(data), 1))
    pieces = cutter.feed(data) + cutter.finish()
    result: list[tuple[bytes, bytes]] = []
    header = b""
    for piece in pieces:
        if isinstance(piece, StreamHeader):
            header = piece.data
        else:
            result.append((header, piece.data))
    return result
