"""Kinesis Video Streams over the wire: boto3's `kinesisvideo`,
`kinesis-video-media` and `kinesis-video-archived-media` clients, PutMedia
as a chunked POST answered with acknowledgement events, and HLS playback.

All three services are AWS's REST-JSON protocol: `POST /<operationName>`
with a JSON body; errors are `{"__type", "message"}` with the code in the
`x-amzn-ErrorType` header. GetMedia, GetClip and GetMediaForFragmentList
answer a blob payload (GetMedia's streamed as fragments are read).
PutMedia (not in boto3: producers' SDKs send it) is a POST to `/putMedia`
whose stream name and timecode type are headers and whose body is the MKV
stream; its response is a stream of JSON acknowledgements, one a line, sent
while the body still comes in. HLS sessions are URLs under `/hls/v1/` whose
SessionToken carries the session's settings (so any worker process serves
them); playlists and fMP4 segments are made from the stored fragments on
request (engine/video_media.py). Semantics live in engine/video.py.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import math
import queue
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs, quote

import tidelog
from tidelog import video
from tidelog.server import model
from tidelog.server.auth import Authenticator
from tidelog.server.errors import AwsError
from tidelog.server.http_body import read_body
from tidelog.video import Ack, StartSelector, VideoStream
from tidelog.video_mkv import tags_element

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("tidelog.server.kinesis_video")

SERVICES = ("kinesisvideo", "kinesis-video-media", "kinesis-video-archived-media")
HLS_PREFIX = "/hls/v1/"
PUT_MEDIA_PATH = "/putMedia"
REQUEST_BYTES_MAX = 1024 * 1024  # control-plane requests are small JSON documents
# GetMedia keeps streaming as fragments arrive, and ends after this long with none new.
GET_MEDIA_IDLE_SECONDS = 3.0
# A streaming request checks this often whether the server is stopping.
STREAM_POLL_SECONDS = 0.5
HLS_EXPIRES_DEFAULT = 300
HLS_EXPIRES_MAX = 43200
HLS_LIVE_FRAGMENTS_DEFAULT = 5
HLS_FRAGMENTS_MAX = 5000
CLIP_FRAGMENTS_MAX = 1000  # a clip is at most this many fragments (and 100 MB in KVS)
MKV_CONTENT_TYPE = "video/x-matroska"

_ROUTES: dict[str, tuple[str, str]] = {}
for _service in SERVICES:
    _model = model.service_model(_service)
    for _name in _model.operation_names:
        _ROUTES[_model.operation_model(_name).http["requestUri"]] = (_service, _name)


def claims(scope: Scope) -> bool:
    """Whether a request is Kinesis Video Streams' (a known operation path, PutMedia or HLS)."""
    path = scope["path"]
    if scope["method"] == "POST":
        return path in _ROUTES or path == PUT_MEDIA_PATH
    return scope["method"] in ("GET", "HEAD") and path.startswith(HLS_PREFIX)


def _error_reply(error: AwsError) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    body = json.dumps({"__type": error.code, "message": error.message}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"x-amzn-errortype", error.code.encode()),
        (b"x-amzn-requestid", uuid.uuid4().hex.encode()),
    ]
    return error.status, headers, body


def from_library(exc: tidelog.Error) -> AwsError:
    """The library's errors as KVS's."""
    if isinstance(exc, tidelog.NotFound):
        return AwsError("ResourceNotFoundException", str(exc), 404)
    if isinstance(exc, tidelog.AlreadyExists):
        return AwsError("ResourceInUseException", str(exc))
    if isinstance(exc, video.VersionMismatch):
        return AwsError("VersionMismatchException", str(exc))
    if isinstance(exc, video.NoDataRetention):
        return AwsError("NoDataRetentionException", str(exc))
    if isinstance(exc, tidelog.InvalidArgument):
        return AwsError("InvalidArgumentException", str(exc))
    return AwsError("ClientLimitExceededException", str(exc), 500, sender_fault=False)


def _seconds(value: Any) -> float:
    return float(value)


def _ms(value: Any) -> int:
    return round(_seconds(value) * 1000)


def _stream(ctx: Handler, request: Mapping[str, Any]) -> VideoStream:
    name = request.get("StreamName")
    arn = request.get("StreamARN")
    if name is None and arn is None:
        raise AwsError("InvalidArgumentException", "StreamName or StreamARN is required")
    if name is not None and arn is not None:
        raise AwsError("InvalidArgumentException", "give StreamName or StreamARN, not both")
    if arn is not None:
        parts = str(arn).split(":stream/", 1)
        if len(parts) != 2 or not parts[1]:
            raise AwsError("InvalidArgumentException", f"StreamARN {arn!r} is not a stream's")
        name = parts[1].split("/", 1)[0]
    return ctx.store.video_stream(str(name))


def _stream_info(info: video.VideoStreamInfo) -> dict[str, Any]:
    out: dict[str, Any] = {
        "StreamName": info.name,
        "StreamARN": info.arn,
        "Version": info.version,
        "Status": info.status,
        "CreationTime": info.creation_time_ms / 1000,
        "DataRetentionInHours": info.data_retention_hours,
    }
    if info.device_name:
        out["DeviceName"] = info.device_name
    if info.media_type:
        out["MediaType"] = info.media_type
    if info.kms_key_id:
        out["KmsKeyId"] = info.kms_key_id
    return out


def _fragment_json(fragment: video.Fragment) -> dict[str, Any]:
    return {
        "FragmentNumber": fragment.number,
        "FragmentSizeInBytes": fragment.size,
        "ProducerTimestamp": fragment.producer_timestamp_ms / 1000,
        "ServerTimestamp": fragment.server_timestamp_ms / 1000,
        "FragmentLengthInMilliseconds": fragment.duration_ms,
    }


def _tag_time(ms: int) -> str:
    return f"{ms // 1000}.{ms % 1000:03d}"


def media_with_tags(stored: video.StoredFragment, *, behind_ms: int | None = None) -> bytes:
    """A fragment as GetMedia sends it: its header, the AWS tags naming it, its
    cluster, then the continuation token (and how far behind now the reader is)."""
    fragment = stored.fragment
    media = memoryview(stored.media)  # slices without copies: one join copies once
    head = media[: fragment.header_size]
    cluster = media[fragment.header_size :]
    before = tags_element(
        [
            ("AWS_KINESISVIDEO_FRAGMENT_NUMBER", fragment.number),
            ("AWS_KINESISVIDEO_SERVER_TIMESTAMP", _tag_time(fragment.server_timestamp_ms)),
            ("AWS_KINESISVIDEO_PRODUCER_TIMESTAMP", _tag_time(fragment.producer_timestamp_ms)),
        ]
    )
    after = [("AWS_KINESISVIDEO_CONTINUATION_TOKEN", fragment.number)]
    if behind_ms is not None:
        after.append(("AWS_KINESISVIDEO_MILLIS_BEHIND_NOW", str(max(0, behind_ms))))
    return b"".join((head, before, cluster, tags_element(after)))


class Handler:
    """What a KVS handler sees: the store and the endpoint's base URL."""

    def __init__(self, store: tidelog.Store, base_url: str) -> None:
        self.store = store
        self.base_url = base_url


class Blob:
    """A handler's blob answer: content type and bytes, or chunks as they are made."""

    def __init__(
        self,
        content_type: str,
        body: bytes | Iterator[bytes],
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.content_type = content_type
        self.body = body
        self.headers = dict(headers or {})


# -- control plane (kinesisvideo) ---------------------------------------------------------


def create_stream(ctx: Handler, request: dict[str, Any]) -> dict[str, Any]:
    stream = ctx.store.create_video_stream(
        request["StreamName"],
        data_retention_hours=request.get("DataRetentionInHours", 0),
        media_type=request.get("MediaType", ""),
        device_name=request.get("DeviceName", ""),
        kms_key_id=request.get("KmsKeyId", ""),
        tags=request.get("Tags") or {},
    )
    return {"StreamARN": stream.describe().arn}


def describe_stream(ctx: Handler, request: dict[str, Any]) -> dict[str, Any]:
    return {"StreamInfo": _stream_info(_stream(ctx, request).describe())}


def list_streams(ctx: Handler, request: dict[str, Any]) -> dict[str, Any]:
    condition = request.get("StreamNameCondition") or {}
    prefix = condition.get("ComparisonValue", "") if condition else ""
    limit = request.get("MaxResults", 10000)
    streams = ctx.store.video_streams(prefix)
    after = request.get("NextToken")
    if after is not None:
        streams = [s for s in streams if s.name > after]
    page = streams[:limit]
    out: dict[str, Any] = {"StreamInfoList": [_stream_info(s.describe()) for s in page]}
    if len(streams) > limit:
        out["NextToken"] = page[-1].name
    return out


def delete_stream(ctx: Handler, request: dict[str, Any]) -> dict[str, Any]:
    name = _arn_name(request["StreamARN"])
    ctx.store.delete_video_stream(name, current_version=request.get("CurrentVersion"))
    return {}


def _arn_name(arn: str) -> str:
    parts = arn.split(":stream/", 1)
    if len(parts) != 2 or not parts[1]:
        raise AwsError("InvalidArgumentException", f"StreamARN {arn!r} is not a stream's")
    return parts[1].split("/", 1)[0]


def update_stream(ctx: Handler, request: dict[str, Any]) -> dict[str, Any]:
    _stream(ctx, request).update(
        device_name=request.get("DeviceName"),
        media_type=request.get("MediaType"),
        current_version=request["CurrentVersion"],
    )
    return {}


def update_data_retention(ctx: Handler, request: dict[str, Any]) -> dict[str, Any]:
    _stream(ctx, request).update_data_retention(
        request["Operation"],
        request["DataRetentionChangeInHours"],
        current_version=request["CurrentVersion"],
    )
    return {}


def tag_stream(ctx: Handler, request: dict[str, Any]) -> dict[str, Any]:
    stream = _stream(ctx, request)
    if len({**stream.tags, **request["Tags"]}) > video.TAGS_MAX:
        raise AwsError(
            "TagsPerResourceExceededLimitException", f"at most {video.TAGS_MAX} tags a stream"
        )
    stream.tag(request["Tags"])
    return {}


def untag_stream(ctx: Handler, request: dict[str, Any]) -> dict[str, Any]:
    _stream(ctx, request).untag(request["TagKeyList"])
    return {}


def list_tags_for_stream(ctx: Handler, request: dict[str, Any]) -> dict[str, Any]:
    return {"Tags": _stream(ctx, request).tags}


def tag_resource(ctx: Handler, request: dict[str, Any]) -> dict[str, Any]:
    tags = {t["Key"]: t["Value"] for t in request["Tags"]}
    return tag_stream(ctx, {"StreamARN": request["ResourceARN"], "Tags": tags})


def untag_resource(ctx: Handler, request: dict[str, Any]) -> dict[str, Any]:
    return untag_stream(
        ctx, {"StreamARN": request["ResourceARN"], "TagKeyList": request["TagKeyList"]}
    )


def list_tags_for_resource(ctx: Handler, request: dict[str, Any]) -> dict[str, Any]:
    tags = _stream(ctx, {"StreamARN": request["ResourceARN"]}).tags
    return {"Tags": tags}


def get_data_endpoint(ctx: Handler, request: dict[str, Any]) -> dict[str, Any]:
    _stream(ctx, request)  # NotFound for a stream that is not there, as KVS
    return {"DataEndpoint": ctx.base_url}


# -- media (kinesis-video-media) ---------------------------------------------------------


def _selector(raw: Mapping[str, Any]) -> StartSelector:
    kind = raw["StartSelectorType"]
    timestamp = raw.get("StartTimestamp")
    return StartSelector(
        kind=kind,
        timestamp_ms=_ms(timestamp) if timestamp is not None else None,
        fragment_number=raw.get("AfterFragmentNumber"),
        continuation_token=raw.get("ContinuationToken"),
    )


def get_media(ctx: Handler, request: dict[str, Any]) -> Blob:
    stream = _stream(ctx, request)
    selector = _selector(request["StartSelector"])
    start = stream.start_offset_for(selector)  # errors now, before the 200
    return Blob(MKV_CONTENT_TYPE, _ending_when_idle(stream, start))


def _ending_when_idle(stream: VideoStream, start: int) -> Iterator[bytes]:
    """GetMedia's chunks: every fragment from `start`, then new ones as they come,
    until none has come for GET_MEDIA_IDLE_SECONDS."""
    offset = start
    while True:
        sent = False
        for stored in stream.read_media(
            StartSelector("FRAGMENT_NUMBER", fragment_number=video.fragment_number(offset))
        ):
            behind = int(time.time() * 1000) - stored.fragment.server_timestamp_ms
            yield media_with_tags(stored, behind_ms=behind)
            offset = stored.fragment.offset + 1
            sent = True
        if not sent and not stream.wait_for_fragment(offset, GET_MEDIA_IDLE_SECONDS):
            return


# -- archived media (kinesis-video-archived-media) ---------------------------------------


def _range(raw: Mapping[str, Any] | None) -> tuple[int | None, int | None]:
    if not raw:
        return None, None
    start, end = _ms(raw["StartTimestamp"]), _ms(raw["EndTimestamp"])
    if end < start:
        raise AwsError("InvalidArgumentException", "EndTimestamp is before StartTimestamp")
    return start, end


def list_fragments(ctx: Handler, request: dict[str, Any]) -> dict[str, Any]:
    stream = _stream(ctx, request)
    selector = request.get("FragmentSelector") or {}
    kind = selector.get("FragmentSelectorType", "SERVER_TIMESTAMP")
    start, end = _range(selector.get("TimestampRange"))
    limit = request.get("MaxResults", 100)
    token = request.get("NextToken")
    after = video.fragment_offset(token) if token else None
    found = stream.fragments(
        start,
        end,
        timestamp_type=_timestamp_type(kind),
        limit=limit + 1,
        after_offset=after,
    )
    out: dict[str, Any] = {"Fragments": [_fragment_json(f) for f in found[:limit]]}
    if len(found) > limit:
        out["NextToken"] = found[limit - 1].number
    return out


def get_media_for_fragment_list(ctx: Handler, request: dict[str, Any]) -> Blob:
    stream = _stream(ctx, request)
    numbers = request["Fragments"]
    stored = list(stream.media_for_fragments(numbers))  # NotFound before the 200
    return Blob(MKV_CONTENT_TYPE, b"".join(media_with_tags(s) for s in stored))


def _timestamp_type(kind: object) -> video.TimestampType:
    return "PRODUCER" if kind == "PRODUCER_TIMESTAMP" else "SERVER"


def _selected(
    stream: VideoStream, raw: Mapping[str, Any] | None, key: str, limit: int
) -> tuple[list[video.Fragment], str]:
    selector = raw or {}
    kind = selector.get(f"{key}Type", "SERVER_TIMESTAMP")
    start, end = _range(selector.get("TimestampRange"))
    timestamp_type = _timestamp_type(kind)
    return stream.fragments(start, end, timestamp_type=timestamp_type, limit=limit), timestamp_type


def get_clip(ctx: Handler, request: dict[str, Any]) -> Blob:
    from tidelog import video_media

    stream = _stream(ctx, request)
    stream.check_archive()
    found, _ = _selected(
        stream, request["ClipFragmentSelector"], "FragmentSelector", CLIP_FRAGMENTS_MAX
    )
    if not found:
        raise AwsError("ResourceNotFoundException", "no fragments in the clip's range", 404)
    stored = list(stream.media_for_fragments([f.number for f in found]))
    return Blob("video/mp4", video_media.remux_mp4(stored))


def get_images(ctx: Handler, request: dict[str, Any]) -> dict[str, Any]:
    from tidelog import video_media

    stream = _stream(ctx, request)
    stream.check_archive()
    start, end = _ms(request["StartTimestamp"]), _ms(request["EndTimestamp"])
    if end < start:
        raise AwsError("InvalidArgumentException", "EndTimestamp is before StartTimestamp")
    interval = request.get("SamplingInterval", 3000)
    timestamp_type = _timestamp_type(request["ImageSelectorType"])
    limit = request.get("MaxResults", 25)
    after = request.get("NextToken")
    if after is not None:
        start = int(after)
    # The fragment holding `start` begins before it: list from one fragment-length back.
    found = stream.fragments(
        start - video.FRAGMENT_DURATION_MS_MAX, end, timestamp_type=timestamp_type, limit=1000
    )
    stored = stream.media_for_fragments([f.number for f in found])
    config = request.get("FormatConfig") or {}
    quality = int(config["JPEGQuality"]) if "JPEGQuality" in config else None
    images = video_media.images(
        stored,
        start,
        end,
        interval,
        image_format=request["Format"],
        timestamp_type=timestamp_type,
        width=request.get("WidthPixels"),
        height=request.get("HeightPixels"),
        quality=quality,
        limit=limit + 1,
    )
    out: dict[str, Any] = {"Images": []}
    for image in images[:limit]:
        entry: dict[str, Any] = {"TimeStamp": image.timestamp_ms / 1000}
        if image.content is not None:
            entry["ImageContent"] = base64.b64encode(image.content).decode()
        else:
            entry["Error"] = image.error
        out["Images"].append(entry)
    if len(images) > limit:
        out["NextToken"] = str(images[limit].timestamp_ms)
    return out


def _token(settings: Mapping[str, Any]) -> str:
    raw = json.dumps(settings, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _untoken(token: str) -> dict[str, Any]:
    try:
        padded = token + "=" * (-len(token) % 4)
        settings = json.loads(base64.urlsafe_b64decode(padded))
        if not isinstance(settings, dict):
            raise ValueError
    except ValueError:
        raise AwsError(
            "InvalidArgumentException", "SessionToken is not one of this server's"
        ) from None
    if settings.get("expires", 0) < time.time():
        raise AwsError("InvalidArgumentException", "the streaming session has expired", 403)
    return settings


def get_hls_streaming_session_url(ctx: Handler, request: dict[str, Any]) -> dict[str, Any]:
    stream = _stream(ctx, request)
    stream.check_archive()
    mode = request.get("PlaybackMode", "LIVE")
    container = request.get("ContainerFormat", "FRAGMENTED_MP4")
    if container != "FRAGMENTED_MP4":
        raise AwsError("InvalidArgumentException", "tidelog serves HLS as FRAGMENTED_MP4 only")
    expires = request.get("Expires", HLS_EXPIRES_DEFAULT)
    if not 300 <= expires <= HLS_EXPIRES_MAX:
        raise AwsError("InvalidArgumentException", f"Expires: 300-{HLS_EXPIRES_MAX} seconds")
    selector = request.get("HLSFragmentSelector") or {}
    kind = selector.get("FragmentSelectorType", "SERVER_TIMESTAMP")
    start, end = _range(selector.get("TimestampRange"))
    if mode == "ON_DEMAND" and start is None:
        raise AwsError("InvalidArgumentException", "ON_DEMAND needs a TimestampRange")
    count = request.get(
        "MaxMediaPlaylistFragmentResults",
        HLS_LIVE_FRAGMENTS_DEFAULT if mode == "LIVE" else 1000,
    )
    if mode not in ("LIVE", "LIVE_REPLAY", "ON_DEMAND"):
        raise AwsError("InvalidArgumentException", f"PlaybackMode {mode!r}")
    if not stream.fragments(limit=1):
        raise AwsError("ResourceNotFoundException", "the stream holds no fragments", 404)
    token = _token(
        {
            "stream": stream.name,
            "mode": mode,
            "type": _timestamp_type(kind),
            "start": start,
            "end": end,
            "count": min(count, HLS_FRAGMENTS_MAX),
            "expires": time.time() + expires,
        }
    )
    return {
        "HLSStreamingSessionURL": (
            f"{ctx.base_url}{HLS_PREFIX}getHLSMasterPlaylist.m3u8?SessionToken={quote(token)}"
        )
    }


def _playlist_fragments(stream: VideoStream, settings: Mapping[str, Any]) -> list[video.Fragment]:
    count = int(settings["count"])
    if settings["mode"] == "LIVE":
        newest = stream.fragments(limit=HLS_FRAGMENTS_MAX)  # bounded; the newest `count` kept
        return newest[-count:]
    return stream.fragments(
        settings["start"], settings["end"], timestamp_type=settings["type"], limit=count
    )


def hls(ctx: Handler, path: str, query: str) -> Blob:
    """One HLS resource of a session: master or media playlist, init or media segment."""
    from tidelog import video_media

    params = parse_qs(query)
    token = (params.get("SessionToken") or [""])[0]
    settings = _untoken(token)
    stream = ctx.store.video_stream(settings["stream"])
    name = path[len(HLS_PREFIX) :]
    quoted = quote(token)
    if name == "getHLSMasterPlaylist.m3u8":
        text = (
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n"
            "#EXT-X-STREAM-INF:BANDWIDTH=2000000\n"
            f"getHLSMediaPlaylist.m3u8?SessionToken={quoted}\n"
        )
        return Blob("application/x-mpegURL", text.encode())
    if name == "getHLSMediaPlaylist.m3u8":
        fragments = _playlist_fragments(stream, settings)
        if not fragments:
            raise AwsError("ResourceNotFoundException", "no fragments for this session", 404)
        target = max(1, math.ceil(max(f.duration_ms for f in fragments) / 1000))
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:7",
            f"#EXT-X-TARGETDURATION:{target}",
            f"#EXT-X-MEDIA-SEQUENCE:{fragments[0].offset}",
        ]
        if settings["mode"] == "ON_DEMAND":
            lines.append("#EXT-X-PLAYLIST-TYPE:VOD")
        first = fragments[0].number
        lines.append(
            f'#EXT-X-MAP:URI="getMP4InitFragment.mp4?SessionToken={quoted}&FragmentNumber={first}"'
        )
        for fragment in fragments:
            lines.append(f"#EXTINF:{fragment.duration_ms / 1000:.3f},")
            lines.append(
                f"getMP4MediaFragment.mp4?SessionToken={quoted}&FragmentNumber={fragment.number}"
            )
        if settings["mode"] == "ON_DEMAND":
            lines.append("#EXT-X-ENDLIST")
        return Blob("application/x-mpegURL", ("\n".join(lines) + "\n").encode())
    if name in ("getMP4InitFragment.mp4", "getMP4MediaFragment.mp4"):
        number = (params.get("FragmentNumber") or [""])[0]
        init, media = video_media.hls_init_and_segment(stream.fragment(number))
        return Blob("video/mp4", init if name == "getMP4InitFragment.mp4" else media)
    raise AwsError("ResourceNotFoundException", f"no HLS resource {name!r}", 404)


HANDLERS: dict[str, Callable[[Handler, dict[str, Any]], Any]] = {
    "CreateStream": create_stream,
    "DescribeStream": describe_stream,
    "ListStreams": list_streams,
    "DeleteStream": delete_stream,
    "UpdateStream": update_stream,
    "UpdateDataRetention": update_data_retention,
    "TagStream": tag_stream,
    "UntagStream": untag_stream,
    "ListTagsForStream": list_tags_for_stream,
    "TagResource": tag_resource,
    "UntagResource": untag_resource,
    "ListTagsForResource": list_tags_for_resource,
    "GetDataEndpoint": get_data_endpoint,
    "GetMedia": get_media,
    "ListFragments": list_fragments,
    "GetMediaForFragmentList": get_media_for_fragment_list,
    "GetClip": get_clip,
    "GetImages": get_images,
    "GetHLSStreamingSessionURL": get_hls_streaming_session_url,
}


def call(
    ctx: Handler, path: str, body: bytes
) -> Blob | tuple[int, list[tuple[bytes, bytes]], bytes]:
    """One REST-JSON operation: a Blob, or (status, headers, body) for JSON and errors."""
    service, operation = _ROUTES[path]
    try:
        handler = HANDLERS.get(operation)
        if handler is None:
            raise AwsError(
                "UnsupportedOperation", f"{operation} is not served by tidelog (docs/video.md)"
            )
        try:
            request = json.loads(body) if body else {}
        except ValueError:
            raise AwsError("SerializationException", "request body is not JSON") from None
        if not isinstance(request, dict):
            raise AwsError("SerializationException", "request body is not a JSON object")
        op_model = model.operation(service, operation)
        try:
            model.check_json(op_model.input_shape if op_model else None, request)
        except model.ShapeError as exc:
            raise AwsError("InvalidArgumentException", str(exc)) from None
        result = handler(ctx, request)
    except AwsError as error:
        return _error_reply(error)
    except tidelog.Error as exc:
        return _error_reply(from_library(exc))
    except Exception as exc:  # a bug must answer 500, not drop the connection
        log.exception("kinesisvideo %s failed", operation)
        return _error_reply(AwsError("ClientLimitExceededException", repr(exc), 500))
    if isinstance(result, Blob):
        return result
    payload = json.dumps(result, separators=(",", ":")).encode()
    return 200, [(b"content-type", b"application/json")], payload


class KinesisVideo:
    """The ASGI handler for every KVS request `claims` accepts."""

    def __init__(
        self,
        store: tidelog.Store,
        executor: ThreadPoolExecutor,
        base_url: str,
        auth: Authenticator | None,
    ) -> None:
        self.ctx = Handler(store, base_url)
        self.executor = executor
        self.auth = auth
        self.ending = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        path = scope["path"]
        if path == PUT_MEDIA_PATH:
            await self._put_media(scope, headers, receive, send)
            return
        if scope["method"] == "POST":
            body = await read_body(receive, REQUEST_BYTES_MAX)
            if body is None:
                await _send_reply(
                    send,
                    *_error_reply(
                        AwsError(
                            "InvalidArgumentException",
                            f"request body over {REQUEST_BYTES_MAX} bytes",
                            413,
                        )
                    ),
                )
                return
            refusal = self._refusal(scope, headers, body)
            if refusal is not None:
                await _send_reply(send, *_error_reply(refusal))
                return
            result = await loop.run_in_executor(self.executor, call, self.ctx, path, body)
        else:
            await read_body(receive, 0)
            query = scope.get("query_string", b"").decode("latin-1")

            def serve_hls() -> Blob | tuple[int, list[tuple[bytes, bytes]], bytes]:
                try:
                    return hls(self.ctx, path, query)
                except AwsError as error:
                    return _error_reply(error)
                except tidelog.Error as exc:
                    return _error_reply(from_library(exc))

            result = await loop.run_in_executor(self.executor, serve_hls)
        if not isinstance(result, Blob):
            await _send_reply(send, *result)
            return
        await self._send_blob(result, receive, send, head=scope["method"] == "HEAD")

    def _refusal(self, scope: Scope, headers: Mapping[str, str], body: bytes) -> AwsError | None:
        if self.auth is None:
            return None
        try:
            self.auth.check(
                scope["method"],
                scope.get("raw_path", scope["path"].encode()).decode("latin-1"),
                scope.get("query_string", b"").decode("latin-1"),
                headers,
                body,
                json_protocol=True,
            )
        except AwsError as error:
            return error
        return None

    async def _send_blob(self, blob: Blob, receive: Receive, send: Send, *, head: bool) -> None:
        loop = asyncio.get_running_loop()
        response_headers = [
            (b"content-type", blob.content_type.encode()),
            (b"x-amzn-requestid", uuid.uuid4().hex.encode()),
        ]
        if isinstance(blob.body, bytes):
            await _send_reply(
                send, 200, response_headers, b"" if head else blob.body, length=len(blob.body)
            )
            return
        chunks = blob.body
        await send({"type": "http.response.start", "status": 200, "headers": response_headers})
        done = object()
        # One chunk ahead: the pool reads the next fragment while this one is
        # written to the socket (waiting for the client to drain it), so disk
        # reads and sends overlap instead of taking turns.
        ahead = loop.run_in_executor(self.executor, next, chunks, done)
        try:
            while not self.ending:
                chunk = await ahead
                if chunk is done:
                    break
                ahead = loop.run_in_executor(self.executor, next, chunks, done)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except OSError:  # the client went away
            pass
        finally:
            with contextlib.suppress(Exception):
                await ahead  # a generator cannot be closed while it runs
            close = getattr(chunks, "close", None)
            if close is not None:
                await loop.run_in_executor(self.executor, close)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _put_media(
        self, scope: Scope, headers: Mapping[str, str], receive: Receive, send: Send
    ) -> None:
        """PutMedia: the body is fed to the engine as it arrives; acknowledgements
        are sent back on the same connection as the engine yields them."""
        loop = asyncio.get_running_loop()
        refusal = (
            self._refusal(scope, headers, b"")
            if headers.get("x-amz-content-sha256") == "UNSIGNED-PAYLOAD" or self.auth is None
            else AwsError(
                "InvalidSignatureException", "PutMedia must be signed with UNSIGNED-PAYLOAD", 403
            )
        )
        try:
            if refusal is not None:
                raise refusal
            name = headers.get("x-amzn-stream-name")
            arn = headers.get("x-amzn-stream-arn")
            stream = _stream(
                self.ctx, {"StreamName": name, "StreamARN": arn} if name or arn else {}
            )
            timecode_type = headers.get("x-amzn-fragment-timecode-type", "ABSOLUTE")
            start_raw = headers.get("x-amzn-producer-start-timestamp")
            start_ms = _ms(start_raw) if start_raw else None
            if timecode_type not in ("ABSOLUTE", "RELATIVE"):
                raise AwsError("InvalidArgumentException", f"timecode type {timecode_type!r}")
            acks = stream.put_media(
                _Feed.placeholder(),
                timecode_type=timecode_type,  # type: ignore[arg-type]
                producer_start_timestamp_ms=start_ms,
            )
            del acks
        except (AwsError, tidelog.Error, ValueError) as exc:
            error = (
                exc
                if isinstance(exc, AwsError)
                else (
                    from_library(exc)
                    if isinstance(exc, tidelog.Error)
                    else AwsError("InvalidArgumentException", str(exc))
                )
            )
            await read_body(receive, 0)
            await _send_reply(send, *_error_reply(error))
            return
        feed = _Feed()
        out: asyncio.Queue[Ack | None] = asyncio.Queue()

        def ingest() -> None:
            try:
                for ack in stream.put_media(
                    feed,
                    timecode_type=timecode_type,  # type: ignore[arg-type]
                    producer_start_timestamp_ms=start_ms,
                ):
                    loop.call_soon_threadsafe(out.put_nowait, ack)
            except tidelog.Error as exc:
                error_id = (
                    video.ERROR_STREAM_NOT_ACTIVE
                    if isinstance(exc, tidelog.NotFound)
                    else video.ERROR_INTERNAL
                )
                loop.call_soon_threadsafe(
                    out.put_nowait, Ack("ERROR", error_id=error_id, message=str(exc))
                )
            except Exception as exc:
                log.exception("PutMedia failed")
                loop.call_soon_threadsafe(
                    out.put_nowait, Ack("ERROR", error_id=video.ERROR_INTERNAL, message=repr(exc))
                )
            finally:
                feed.stop()
                loop.call_soon_threadsafe(out.put_nowait, None)

        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"x-amzn-requestid", uuid.uuid4().hex.encode()),
                ],
            }
        )
        worker = loop.run_in_executor(self.executor, ingest)

        async def pump() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    feed.end()
                    return
                body = message.get("body", b"")
                if body and not await loop.run_in_executor(self.executor, feed.put, body):
                    return  # the engine stopped reading (an ERROR): drop the rest
                if not message.get("more_body", False):
                    feed.end()
                    return

        reader = asyncio.create_task(pump())
        try:
            while True:
                try:
                    ack = await asyncio.wait_for(out.get(), STREAM_POLL_SECONDS)
                except TimeoutError:
                    if self.ending:  # the server is stopping: end the session
                        feed.stop()
                    continue
                if ack is None:
                    break
                line = json.dumps(ack.to_json(), separators=(",", ":")) + "\n"
                await send({"type": "http.response.body", "body": line.encode(), "more_body": True})
        finally:
            feed.stop()
            reader.cancel()
            await worker
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class _Feed:
    """The request body's pieces, handed from the event loop to the ingesting thread,
    with a small bound so a fast client waits for the store, not memory."""

    PIECES_MAX = 64

    def __init__(self) -> None:
        self._queue: queue.Queue[bytes | None] = queue.Queue(self.PIECES_MAX)
        self._stopped = threading.Event()

    @staticmethod
    def placeholder() -> Iterator[bytes]:
        return iter(())

    def put(self, piece: bytes) -> bool:
        """Hand a piece on; False once the reader has stopped."""
        while not self._stopped.is_set():
            try:
                self._queue.put(piece, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def end(self) -> None:
        while not self._stopped.is_set():
            try:
                self._queue.put(None, timeout=0.2)
                return
            except queue.Full:
                continue

    def stop(self) -> None:
        self._stopped.set()

    def __iter__(self) -> Iterator[bytes]:
        while not self._stopped.is_set():
            try:
                piece = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            if piece is None:
                return
            yield piece


async def _send_reply(
    send: Send,
    status: int,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    *,
    length: int | None = None,
) -> None:
    size = len(body) if length is None else length
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(size).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
