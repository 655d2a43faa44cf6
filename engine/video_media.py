"""Remuxing and decoding stored fragments with FFmpeg's libraries, through PyAV.

Clips (KVS's GetClip) and HLS segments are the fragments' packets copied
into MP4 (no re-encoding); images (GetImages) are decoded frames encoded as
JPEG or PNG. PyAV is the `video` extra: this module imports it on first use,
and says so clearly when it is missing.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tidelog.segments.errors import InvalidArgument
from tidelog.video import StoredFragment, TimestampType

ImageFormat = Literal["JPEG", "PNG"]
# Fragmented MP4 whose fragment times are the packets' own (frag_discont with
# no shift to zero), so segments cut from separate fragments line up.
_FMP4_OPTIONS = {
    "movflags": "frag_keyframe+empty_moov+default_base_moof+frag_discont",
    "avoid_negative_ts": "disabled",
}


class MediaError(InvalidArgument):
    """Stored fragments that FFmpeg cannot read as media (KVS's MEDIA_ERROR)."""


def _av() -> Any:
    try:
        import av
    except ImportError:  # pragma: no cover - the extra is part of the test install
        raise MediaError("video media needs PyAV: pip install 'tidelog[video]'") from None
    return av


def _open(media: bytes) -> Any:
    av = _av()
    try:
        return av.open(io.BytesIO(media), format="matroska")
    except av.FFmpegError as exc:
        raise MediaError(f"fragment media: FFmpeg cannot read it ({exc})") from None


def _packets(container: Any, streams: Sequence[Any]) -> Iterator[Any]:
    """The streams' packets with a decode timestamp on each: Matroska stores
    presentation times only, and the first packets of a fragment with
    reordered frames come without one; they get the ones before the first
    known, a frame apart, as FFmpeg's own remuxer gives them."""
    waiting: dict[int, list[Any]] = {s.index: [] for s in streams}
    last: dict[int, int] = {}
    for packet in container.demux(*streams):
        if packet.size == 0:
            continue
        index = packet.stream_index
        step = max(packet.duration or 1, 1)
        if packet.dts is None:
            if index not in last:
                waiting[index].append(packet)
                continue
            packet.dts = last[index] + step
        early_packets = waiting[index]
        for position, early in enumerate(early_packets):
            early.dts = packet.dts - (len(early_packets) - position) * step
            yield early
        waiting[index] = []
        last[index] = packet.dts
        yield packet
    for early_packets in waiting.values():
        for early in early_packets:
            early.dts = early.pts
            yield early


def _matroska(fragments: Sequence[StoredFragment]) -> bytes:
    """One Matroska file of the fragments: the first one's header, then every cluster.

    The fragments of one producer session share a header; a clip across a
    change of tracks keeps the first session's header (docs/video.md)."""
    if not fragments:
        raise MediaError("no fragments")
    first = fragments[0]
    parts = [first.media]
    parts += [f.media[f.fragment.header_size :] for f in fragments[1:]]
    return b"".join(parts)


def remux_mp4(fragments: Sequence[StoredFragment], *, fragmented: bool = False) -> bytes:
    """The fragments' video (and audio) packets in an MP4 file, copied, not re-encoded."""
    av = _av()
    source = _open(_matroska(fragments))
    out = io.BytesIO()
    try:
        options = dict(_FMP4_OPTIONS) if fragmented else {"avoid_negative_ts": "make_zero"}
        target = av.open(out, "w", format="mp4", options=options)
        streams = [s for s in source.streams if s.type in ("video", "audio")]
        if not streams:
            raise MediaError("fragments hold no audio or video track")
        mapping = {s.index: target.add_stream_from_template(s) for s in streams}
        for packet in _packets(source, streams):
            packet.stream = mapping[packet.stream_index]
            target.mux(packet)
        target.close()
    except av.FFmpegError as exc:
        raise MediaError(f"fragments cannot be remuxed to MP4 ({exc})") from None
    finally:
        source.close()
    return out.getvalue()


def hls_init_and_segment(fragment: StoredFragment) -> tuple[bytes, bytes]:
    """(initialization segment, media segment) of one fragment as fragmented MP4."""
    data = remux_mp4([fragment], fragmented=True)
    moof = data.find(b"moof")
    if moof < 4:
        raise MediaError("remuxed fragment has no movie fragment")
    return data[: moof - 4], data[moof - 4 :]


@dataclass(frozen=True, slots=True)
class Image:
    """One sampled image (KVS's Image): bytes, or why there is none."""

    timestamp_ms: int
    content: bytes | None
    error: Literal["NO_MEDIA", "MEDIA_ERROR"] | None = None


def _encode_image(
    frame: Any,
    image_format: ImageFormat,
    width: int | None,
    height: int | None,
    quality: int | None,
) -> bytes:
    av = _av()
    w = width or (round(frame.width * height / frame.height) if height else frame.width)
    h = height or (round(frame.height * width / frame.width) if width else frame.height)
    if image_format == "JPEG":
        codec = av.CodecContext.create("mjpeg", "w")
        codec.pix_fmt = "yuvj420p"
        if quality is not None:  # KVS's 1-100 mapped onto MJPEG's quantiser (2 best, 31 worst)
            quantiser = str(max(2, round(31 - (quality - 1) * 29 / 99)))
            codec.options = {"qmin": quantiser, "qmax": quantiser}
    else:
        codec = av.CodecContext.create("png", "w")
        codec.pix_fmt = "rgb24"
    codec.width, codec.height = w, h
    converted = frame.reformat(width=w, height=h, format=codec.pix_fmt)
    packets = list(codec.encode(converted)) + list(codec.encode(None))
    return b"".join(bytes(p) for p in packets)


def images(
    fragments: Iterable[StoredFragment],
    start_ms: int,
    end_ms: int,
    interval_ms: int,
    *,
    image_format: ImageFormat = "JPEG",
    timestamp_type: TimestampType = "PRODUCER",
    width: int | None = None,
    height: int | None = None,
    quality: int | None = None,
    limit: int = 100,
) -> list[Image]:
    """Images at start_ms, start_ms + interval_ms, ... up to end_ms (KVS's GetImages).

    Each is the first frame at or after its time (within the fragment that
    holds it or the next); a time no frame follows is NO_MEDIA.
    """
    if image_format not in ("JPEG", "PNG"):
        raise InvalidArgument(f"image format {image_format!r}: JPEG or PNG")
    if interval_ms < 1:
        raise InvalidArgument("sampling interval: must be at least 1 ms")
    wanted = list(range(start_ms, end_ms + 1, interval_ms))[:limit]
    out: list[Image] = []
    index = 0
    for stored in fragments:
        if index >= len(wanted):
            break
        fragment = stored.fragment
        base = (
            fragment.producer_timestamp_ms
            if timestamp_type == "PRODUCER"
            else fragment.server_timestamp_ms
        )
        if base + fragment.duration_ms <= wanted[index]:
            continue
        try:
            source = _open(stored.media)
            with source:
                stream = source.streams.video[0]
                first_pts_ms: float | None = None
                for frame in source.decode(stream):
                    if frame.pts is None:
                        continue
                    frame_ms = float(frame.pts * frame.time_base * 1000)
                    if first_pts_ms is None:
                        first_pts_ms = frame_ms
                    at = base + (frame_ms - first_pts_ms)
                    while index < len(wanted) and at >= wanted[index]:
                        content = _encode_image(frame, image_format, width, height, quality)
                        out.append(Image(wanted[index], content))
                        index += 1
                    if index >= len(wanted):
                        break
        except (MediaError, IndexError) as exc:
            if index < len(wanted):
                out.append(Image(wanted[index], None, "MEDIA_ERROR"))
                index += 1
            del exc
    out += [Image(at, None, "NO_MEDIA") for at in wanted[index:]]
    return out
