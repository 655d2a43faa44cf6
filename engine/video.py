"""Video streams: the Kinesis Video Streams model (docs/video.md).

A video stream is two plain logs of the store, written and read only through
the public log API (`Store.create_log`, `Log.append`, `Log.read`,
`Log.offset_for_time`):

- `video/<name>/meta`: one JSON record per change of the stream's settings
  (device name, media type, KMS key id, retention, tags, version); the last
  record is the stream's state. A meta log without a record is a create that
  did not finish, and is not a stream.
- `video/<name>/fragments`: one record per fragment. The value is the
  fragment as a Matroska file of its own (the producer's EBML header, Segment,
  Info and Tracks, then one Cluster); the record's headers hold a small JSON
  document (header length, producer timestamp, duration, the cluster's
  timecode); the record's timestamp is the server timestamp, so the log's
  own time index answers "from server time T". A fragment's number is its
  offset, written as KVS writes them (a 47-digit decimal string).

Cutting the producer's bytes into fragments is engine/video_mkv.py (ebmlite);
remuxing, clips and images are engine/video_media.py (PyAV).
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from tidelog.segments.errors import AlreadyExists, InvalidArgument, NotFound
from tidelog.video_mkv import Cluster, FragmentTooLarge, MkvCutter, MkvError, StreamHeader

if TYPE_CHECKING:
    from tidelog.log import Log
    from tidelog.store import Store

# Kinesis Video Streams' limits (its API reference and quotas page).
NAME_CHARS = re.compile(r"[a-zA-Z0-9_.-]{1,256}")
DEVICE_NAME_CHARS = re.compile(r"[a-zA-Z0-9_.-]{1,128}")
MEDIA_TYPE_CHARS = re.compile(r"[\w\-\.\+]+/[\w\-\.\+]+(,[\w\-\.\+]+/[\w\-\.\+]+)*")
MEDIA_TYPE_LENGTH_MAX = 128
KMS_KEY_ID_LENGTH_MAX = 2048
RETENTION_HOURS_MAX = 87600  # ten years
TAGS_MAX = 50
FRAGMENT_BYTES_MAX = 50 * 1024 * 1024  # KVS's fragment size limit
FRAGMENT_DURATION_MS_MAX = 20_000  # KVS's fragment duration limit
LIST_RESULTS_MAX = 1000

# A fragment number is its offset after this prefix, zero-padded: 47 digits as
# KVS's are, ordered as the offsets are.
_FRAGMENT_PREFIX = "91343852333"
_FRAGMENT_DIGITS = 36
FRAGMENT_NUMBER_LENGTH = len(_FRAGMENT_PREFIX) + _FRAGMENT_DIGITS

TimestampType = Literal["SERVER", "PRODUCER"]
TimecodeType = Literal["ABSOLUTE", "RELATIVE"]

# PutMedia's acknowledgement error ids (KVS's PutMedia reference).
ERROR_STREAM_READ = 4000
ERROR_MAX_FRAGMENT_SIZE = 4001
ERROR_MAX_FRAGMENT_DURATION = 4002
ERROR_TIMECODE_LESSER_THAN_PREVIOUS = 4004
ERROR_INVALID_MKV_DATA = 4006
ERROR_INVALID_PRODUCER_TIMESTAMP = 4007
ERROR_STREAM_NOT_ACTIVE = 4008
ERROR_INTERNAL = 5000


def fragment_number(offset: int) -> str:
    return f"{_FRAGMENT_PREFIX}{offset:0{_FRAGMENT_DIGITS}d}"


def fragment_offset(number: object) -> int:
    """The offset a fragment number names. Raises InvalidArgument for anything else."""
    if (
        not isinstance(number, str)
        or len(number) != FRAGMENT_NUMBER_LENGTH
        or not number.startswith(_FRAGMENT_PREFIX)
        or not number.isdigit()
    ):
        raise InvalidArgument(f"fragment number {number!r}: not one of this store's")
    return int(number[len(_FRAGMENT_PREFIX) :])


@dataclass(frozen=True, slots=True)
class VideoStreamInfo:
    """A stream's settings (KVS's StreamInfo)."""

    name: str
    arn: str
    creation_time_ms: int
    version: str
    data_retention_hours: int
    media_type: str = ""
    device_name: str = ""
    kms_key_id: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    status: str = "ACTIVE"


@dataclass(frozen=True, slots=True)
class Fragment:
    """One stored fragment (KVS's Fragment)."""

    number: str
    offset: int
    producer_timestamp_ms: int
    server_timestamp_ms: int
    duration_ms: int
    size: int  # bytes of the fragment as stored (header and cluster)
    header_size: int
    timecode: int  # the cluster's Timecode, in the producer's timecode-scale units


@dataclass(frozen=True, slots=True)
class Ack:
    """One PutMedia acknowledgement (KVS's Acknowledgement event)."""

    event_type: Literal["BUFFERING", "RECEIVED", "PERSISTED", "ERROR", "IDLE"]
    fragment_timecode: int | None = None  # ms, as the producer wrote it
    fragment_number: str | None = None
    error_id: int | None = None
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        """The event as KVS sends it, one JSON object a line."""
        out: dict[str, Any] = {"EventType": self.event_type}
        if self.fragment_timecode is not None:
            out["FragmentTimecode"] = self.fragment_timecode
        if self.fragment_number is not None:
            out["FragmentNumber"] = self.fragment_number
        if self.error_id is not None:
            out["ErrorId"] = self.error_id
        return out


@dataclass(frozen=True, slots=True)
class StartSelector:
    """Where GetMedia starts (KVS's StartSelector)."""

    kind: Literal[
        "EARLIEST",
        "NOW",
        "PRODUCER_TIMESTAMP",
        "SERVER_TIMESTAMP",
        "FRAGMENT_NUMBER",
        "CONTINUATION_TOKEN",
    ] = "EARLIEST"
    timestamp_ms: int | None = None
    fragment_number: str | None = None
    continuation_token: str | None = None


def _meta_log(name: str) -> str:
    return f"video/{name}/meta"


def _fragments_log(name: str) -> str:
    return f"video/{name}/fragments"


def check_name(name: object) -> str:
    if not isinstance(name, str) or not NAME_CHARS.fullmatch(name):
        raise InvalidArgument(
            f"video stream name {name!r}: must be 1-256 characters of a-z A-Z 0-9 _ . -"
        )
    return name


def _check_settings(
    device_name: str | None,
    media_type: str | None,
    kms_key_id: str | None,
    retention_hours: int | None,
) -> None:
    if device_name is not None and device_name and not DEVICE_NAME_CHARS.fullmatch(device_name):
        raise InvalidArgument(
            f"device name {device_name!r}: must be 1-128 characters of a-z A-Z 0-9 _ . -"
        )
    if (
        media_type is not None
        and media_type
        and (len(media_type) > MEDIA_TYPE_LENGTH_MAX or not MEDIA_TYPE_CHARS.fullmatch(media_type))
    ):
        raise InvalidArgument(
            f"media type {media_type!r}: must be a MIME type such as video/h264 "
            f"(at most {MEDIA_TYPE_LENGTH_MAX} characters)"
        )
    if kms_key_id is not None and len(kms_key_id) > KMS_KEY_ID_LENGTH_MAX:
        raise InvalidArgument(f"KMS key id: at most {KMS_KEY_ID_LENGTH_MAX} characters")
    if retention_hours is not None and (
        isinstance(retention_hours, bool)
        or not isinstance(retention_hours, int)
        or not 0 <= retention_hours <= RETENTION_HOURS_MAX
    ):
        raise InvalidArgument(
            f"data retention {retention_hours!r} hours: must be 0-{RETENTION_HOURS_MAX}"
        )


def _check_tags(tags: Mapping[str, str]) -> None:
    if len(tags) > TAGS_MAX:
        raise InvalidArgument(f"tags: at most {TAGS_MAX} per stream")
    for key, value in tags.items():
        if not isinstance(key, str) or not 1 <= len(key) <= 128:
            raise InvalidArgument(f"tag key {key!r}: must be 1-128 characters")
        if not isinstance(value, str) or len(value) > 256:
            raise InvalidArgument(f"tag value for {key!r}: must be at most 256 characters")


def _retention_ms(hours: int) -> int:
    return hours * 3600 * 1000


def create_video_stream(
    store: Store,
    name: str,
    *,
    data_retention_hours: int = 0,
    media_type: str = "",
    device_name: str = "",
    kms_key_id: str = "",
    tags: Mapping[str, str] | None = None,
    exist_ok: bool = False,
) -> VideoStream:
    check_name(name)
    _check_settings(device_name, media_type, kms_key_id, data_retention_hours)
    tags = dict(tags or {})
    _check_tags(tags)
    try:
        meta = store.create_log(_meta_log(name))
    except AlreadyExists:
        meta = store.log(_meta_log(name))
        if meta.end_offset > meta.start_offset:  # finished: a stream
            if exist_ok:
                return VideoStream(store, name)
            raise AlreadyExists(f"video stream {name!r}: exists already") from None
    # Retention 0 keeps no history (KVS: no data is persisted), but a live
    # GetMedia still needs the newest fragments: the log keeps an hour's.
    keep_ms = _retention_ms(data_retention_hours) if data_retention_hours else 3600 * 1000
    store.create_log(_fragments_log(name), retention_ms=keep_ms, exist_ok=True)
    now_ms = int(time.time() * 1000)
    info = VideoStreamInfo(
        name=name,
        arn=f"arn:aws:kinesisvideo:us-east-1:000000000000:stream/{name}/{now_ms}",
        creation_time_ms=now_ms,
        version=secrets.token_hex(10),
        data_retention_hours=data_retention_hours,
        media_type=media_type,
        device_name=device_name,
        kms_key_id=kms_key_id,
        tags=tags,
    )
    meta.append(_encode_info(info))  # the create's commit point
    return VideoStream(store, name)


def _encode_info(info: VideoStreamInfo) -> bytes:
    return json.dumps(
        {
            "name": info.name,
            "arn": info.arn,
            "created_ms": info.creation_time_ms,
            "version": info.version,
            "retention_hours": info.data_retention_hours,
            "media_type": info.media_type,
            "device_name": info.device_name,
            "kms_key_id": info.kms_key_id,
            "tags": dict(info.tags),
        },
        separators=(",", ":"),
    ).encode()


def _decode_info(raw: bytes) -> VideoStreamInfo:
    doc = json.loads(raw)
    return VideoStreamInfo(
        name=doc["name"],
        arn=doc["arn"],
        creation_time_ms=doc["created_ms"],
        version=doc["version"],
        data_retention_hours=doc["retention_hours"],
        media_type=doc["media_type"],
        device_name=doc["device_name"],
        kms_key_id=doc["kms_key_id"],
        tags=doc["tags"],
    )


def list_video_streams(store: Store, prefix: str = "") -> list[VideoStream]:
    """Every finished video stream whose name starts with `prefix`, by name."""
    names = []
    for log in store.logs():
        parts = log.name.split("/")
        is_meta = len(parts) == 3 and parts[0] == "video" and parts[2] == "meta"
        if is_meta and parts[1].startswith(prefix) and log.end_offset > log.start_offset:
            names.append(parts[1])
    return [VideoStream(store, name) for name in sorted(names)]


def delete_video_stream(store: Store, name: str, current_version: str | None = None) -> None:
    stream = VideoStream(store, name)
    info = stream.describe()
    if current_version is not None and current_version != info.version:
        raise VersionMismatch(f"video stream {name!r}: version is {info.version}")
    # The meta log goes first: from then on the stream does not exist, even if
    # the process dies before its fragments' log is gone (a later create reuses it
    # after clearing it below).
    store.delete_log(_meta_log(name))
    with contextlib.suppress(NotFound):
        store.delete_log(_fragments_log(name))


class VersionMismatch(InvalidArgument):
    """An update named a CurrentVersion not the stream's (KVS's VersionMismatchException)."""


class NoDataRetention(InvalidArgument):
    """Archived media asked of a stream that keeps none (KVS's NoDataRetentionException)."""


@dataclass(frozen=True, slots=True)
class StoredFragment:
    """A fragment with its bytes: a Matroska file of its own."""

    fragment: Fragment
    media: bytes


class VideoStream:
    """A handle on one video stream. Thread- and process-safe, as its logs are.

    Settings changes are read-modify-append on the meta log: two processes
    updating one stream at once may each succeed, the later one winning (KVS's
    CurrentVersion check is made against the state each one read).
    """

    def __init__(self, store: Store, name: str) -> None:
        self._store = store
        self.name = name

    def __repr__(self) -> str:
        return f"<tidelog.VideoStream {self.name!r}>"

    # -- settings ---------------------------------------------------------------

    def _meta(self) -> Log:
        try:
            log = self._store.log(_meta_log(self.name))
        except NotFound:
            raise NotFound(f"video stream {self.name!r}: not found") from None
        return log

    def _fragments(self) -> Log:
        try:
            return self._store.log(_fragments_log(self.name))
        except NotFound:
            raise NotFound(f"video stream {self.name!r}: not found") from None

    @property
    def log(self) -> Log:
        """The log holding the stream's fragments (to inspect: write with put_media)."""
        return self._fragments()

    def describe(self) -> VideoStreamInfo:
        """The stream's settings. Raises NotFound."""
        log = self._meta()
        end = log.end_offset
        if end <= log.start_offset:
            raise NotFound(f"video stream {self.name!r}: not found")
        for record in log.read(end - 1, end):
            return _decode_info(record.value)
        raise NotFound(f"video stream {self.name!r}: not found")

    def _change(self, current_version: str | None, **changes: Any) -> VideoStreamInfo:
        info = self.describe()
        if current_version is not None and current_version != info.version:
            raise VersionMismatch(
                f"video stream {self.name!r}: the current version is {info.version}, "
                f"not {current_version}"
            )
        new = replace(info, version=secrets.token_hex(10), **changes)
        self._meta().append(_encode_info(new))
        return new

    def update(
        self,
        *,
        device_name: str | None = None,
        media_type: str | None = None,
        current_version: str | None = None,
    ) -> VideoStreamInfo:
        """Change the device name and media type (KVS's UpdateStream)."""
        _check_settings(device_name, media_type, None, None)
        changes: dict[str, Any] = {}
        if device_name is not None:
            changes["device_name"] = device_name
        if media_type is not None:
            changes["media_type"] = media_type
        return self._change(current_version, **changes)

    def update_data_retention(
        self,
        operation: Literal["INCREASE_DATA_RETENTION", "DECREASE_DATA_RETENTION"],
        change_hours: int,
        *,
        current_version: str | None = None,
    ) -> VideoStreamInfo:
        """Raise or lower the retention by `change_hours` (KVS's UpdateDataRetention).

        The new period applies to the fragments already stored as well."""
        if isinstance(change_hours, bool) or not isinstance(change_hours, int) or change_hours < 1:
            raise InvalidArgument(f"retention change {change_hours!r}: must be a positive int")
        info = self.describe()
        if operation == "INCREASE_DATA_RETENTION":
            hours = info.data_retention_hours + change_hours
        elif operation == "DECREASE_DATA_RETENTION":
            hours = info.data_retention_hours - change_hours
        else:
            raise InvalidArgument(f"retention operation {operation!r}: not one KVS has")
        if not 0 <= hours <= RETENTION_HOURS_MAX:
            raise InvalidArgument(f"data retention {hours} hours: must be 0-{RETENTION_HOURS_MAX}")
        return self._change(current_version, data_retention_hours=hours)

    def tag(self, tags: Mapping[str, str]) -> None:
        merged = {**self.describe().tags, **tags}
        _check_tags(merged)
        self._change(None, tags=merged)

    def untag(self, keys: Sequence[str]) -> None:
        gone = set(keys)
        self._change(None, tags={k: v for k, v in self.describe().tags.items() if k not in gone})

    @property
    def tags(self) -> dict[str, str]:
        return dict(self.describe().tags)

    # -- ingest -------------------------------------------------------------------

    def put_media(
        self,
        chunks: Iterable[bytes],
        *,
        timecode_type: TimecodeType = "ABSOLUTE",
        producer_start_timestamp_ms: int | None = None,
    ) -> Iterator[Ack]:
        """Ingest a Matroska stream given in pieces; yields KVS's acknowledgements.

        For each fragment (cluster), in order: BUFFERING, RECEIVED, then
        PERSISTED once its append is durable (as the store's sync mode
        promises; a stream with no retention gets no PERSISTED, as in KVS).
        Bad input yields one ERROR (with KVS's error id) and ends the
        session; the fragments acknowledged before it stay stored.
        A generator: nothing is read until it is iterated. Blocks on `chunks`.

        `timecode_type` "ABSOLUTE": cluster timecodes are epoch times;
        "RELATIVE": they count from `producer_start_timestamp_ms` (required).
        """
        if timecode_type not in ("ABSOLUTE", "RELATIVE"):
            raise InvalidArgument(f"timecode type {timecode_type!r}: ABSOLUTE or RELATIVE")
        if timecode_type == "RELATIVE" and producer_start_timestamp_ms is None:
            raise InvalidArgument("RELATIVE timecodes need a producer start timestamp")
        return self._put_media(chunks, timecode_type, producer_start_timestamp_ms or 0)

    def _put_media(
        self, chunks: Iterable[bytes], timecode_type: str, start_ms: int
    ) -> Iterator[Ack]:
        info = self.describe()
        log = self._fragments()
        persisted = info.data_retention_hours > 0
        cutter = MkvCutter(FRAGMENT_BYTES_MAX)
        header: StreamHeader | None = None
        last_producer_ms: int | None = None
        finished = False
        iterator = iter(chunks)
        while not finished:
            try:
                chunk = next(iterator, None)
                pieces = cutter.feed(chunk) if chunk is not None else cutter.finish()
                finished = chunk is None
            except FragmentTooLarge as exc:
                yield Ack("ERROR", error_id=ERROR_MAX_FRAGMENT_SIZE, message=str(exc))
                return
            except MkvError as exc:
                yield Ack("ERROR", error_id=ERROR_INVALID_MKV_DATA, message=str(exc))
                return
            except OSError as exc:
                yield Ack("ERROR", error_id=ERROR_STREAM_READ, message=str(exc))
                return
            for piece in pieces:
                if isinstance(piece, StreamHeader):
                    header = piece
                    continue
                if header is None:  # the cutter refuses clusters before a header
                    yield Ack("ERROR", error_id=ERROR_INVALID_MKV_DATA)
                    return
                scale_ms = header.timecode_scale_ns / 1_000_000
                timecode_ms = round(piece.timecode * scale_ms)
                producer_ms = timecode_ms + (start_ms if timecode_type == "RELATIVE" else 0)
                duration_ms = round(piece.duration * scale_ms)
                yield Ack("BUFFERING", fragment_timecode=timecode_ms)
                if duration_ms > FRAGMENT_DURATION_MS_MAX:
                    yield Ack(
                        "ERROR",
                        fragment_timecode=timecode_ms,
                        error_id=ERROR_MAX_FRAGMENT_DURATION,
                        message=f"a {duration_ms} ms fragment is over {FRAGMENT_DURATION_MS_MAX}",
                    )
                    return
                if last_producer_ms is not None and producer_ms < last_producer_ms:
                    yield Ack(
                        "ERROR",
                        fragment_timecode=timecode_ms,
                        error_id=ERROR_TIMECODE_LESSER_THAN_PREVIOUS,
                    )
                    return
                last_producer_ms = producer_ms
                yield Ack("RECEIVED", fragment_timecode=timecode_ms)
                offset = self._append(log, header, piece, producer_ms, duration_ms)
                if persisted:
                    yield Ack(
                        "PERSISTED",
                        fragment_timecode=timecode_ms,
                        fragment_number=fragment_number(offset),
                    )

    @staticmethod
    def _append(
        log: Log, header: StreamHeader, cluster: Cluster, producer_ms: int, duration_ms: int
    ) -> int:
        meta = json.dumps(
            {"h": len(header.data), "p": producer_ms, "d": duration_ms, "t": cluster.timecode},
            separators=(",", ":"),
        ).encode()
        return log.append(header.data + cluster.data, headers=meta)

    def put_file(self, path: str, *, chunk_bytes: int = 1024 * 1024, **options: Any) -> list[Ack]:
        """Ingest a whole MKV/WebM file; returns the acknowledgements."""

        def chunks() -> Iterator[bytes]:
            with open(path, "rb") as file:
                while piece := file.read(chunk_bytes):
                    yield piece

        return list(self.put_media(chunks(), **options))

    # -- reads --------------------------------------------------------------------

    @staticmethod
    def _fragment(record: Any) -> Fragment:
        meta = json.loads(record.headers)
        return Fragment(
            number=fragment_number(record.offset),
            offset=record.offset,
            producer_timestamp_ms=meta["p"],
            server_timestamp_ms=record.timestamp_ms,
            duration_ms=meta["d"],
            size=len(record.value),
            header_size=meta["h"],
            timecode=meta["t"],
        )

    def _stored(self, record: Any) -> StoredFragment:
        return StoredFragment(self._fragment(record), record.value)

    def fragment(self, number: str) -> StoredFragment:
        """One fragment by its number. Raises NotFound (never stored, or past retention)."""
        offset = fragment_offset(number)
        log = self._fragments()
        for record in log.read(max(offset, 0), offset + 1):
            if record.offset == offset:
                return self._stored(record)
        raise NotFound(f"fragment {number}: not in video stream {self.name!r}")

    def _first_at_producer_time(self, log: Log, timestamp_ms: int) -> int:
        """The first offset whose producer timestamp is >= timestamp_ms, by bisection
        (producer timestamps rise within a stream: PutMedia refuses them falling)."""
        low, high = log.start_offset, log.end_offset
        while low < high:
            middle = (low + high) // 2
            records = list(log.read(middle, middle + 1))
            if not records:  # trimmed under us: start again from what is kept
                low = max(low, log.start_offset)
                continue
            if self._fragment(records[0]).producer_timestamp_ms < timestamp_ms:
                low = middle + 1
            else:
                high = middle
        return low

    def fragments(
        self,
        start_ms: int | None = None,
        end_ms: int | None = None,
        *,
        timestamp_type: TimestampType = "SERVER",
        limit: int = LIST_RESULTS_MAX,
        after_offset: int | None = None,
    ) -> list[Fragment]:
        """Fragments whose start time is in [start_ms, end_ms], oldest first (KVS's
        ListFragments), at most `limit`; `after_offset` continues a listing."""
        log = self._fragments()
        if timestamp_type not in ("SERVER", "PRODUCER"):
            raise InvalidArgument(f"timestamp type {timestamp_type!r}: SERVER or PRODUCER")
        if start_ms is None:
            first = log.start_offset
        elif timestamp_type == "SERVER":
            first = log.offset_for_time(start_ms)
        else:
            first = self._first_at_producer_time(log, start_ms)
        if after_offset is not None:
            first = max(first, after_offset + 1)
        out: list[Fragment] = []
        for record in log.read(first):
            fragment = self._fragment(record)
            at = (
                fragment.server_timestamp_ms
                if timestamp_type == "SERVER"
                else fragment.producer_timestamp_ms
            )
            if end_ms is not None and at > end_ms:
                break
            if start_ms is not None and at < start_ms:
                continue
            out.append(fragment)
            if len(out) >= limit:
                break
        return out

    def start_offset_for(self, selector: StartSelector) -> int:
        """The offset GetMedia starts at for `selector`."""
        log = self._fragments()
        kind = selector.kind
        if kind == "EARLIEST":
            return log.start_offset
        if kind == "NOW":
            return log.end_offset
        if kind in ("PRODUCER_TIMESTAMP", "SERVER_TIMESTAMP"):
            if selector.timestamp_ms is None:
                raise InvalidArgument(f"StartSelector {kind}: needs a timestamp")
            if kind == "SERVER_TIMESTAMP":
                return log.offset_for_time(selector.timestamp_ms)
            return self._first_at_producer_time(log, selector.timestamp_ms)
        if kind == "FRAGMENT_NUMBER":
            return fragment_offset(selector.fragment_number)
        if kind == "CONTINUATION_TOKEN":
            return fragment_offset(selector.continuation_token) + 1
        raise InvalidArgument(f"StartSelector type {kind!r}: not one KVS has")

    def read_media(
        self, selector: StartSelector | None = None, *, follow: bool = False, wait: float = 1.0
    ) -> Iterator[StoredFragment]:
        """Fragments from `selector` on, oldest first (KVS's GetMedia).

        Without `follow` it stops at the end stored when it gets there; with
        it, it waits for new fragments, `wait` seconds at a time, until the
        caller stops iterating. Memory stays bounded (one fragment at a time).
        """
        log = self._fragments()
        offset = self.start_offset_for(selector or StartSelector())
        while True:
            for record in log.read(max(offset, log.start_offset)):
                offset = record.offset + 1
                yield self._stored(record)
            if not follow:
                return
            log.wait(offset, wait)

    def wait_for_fragment(self, offset: int, timeout: float) -> bool:
        """Block until the fragment at `offset` is stored, up to `timeout` seconds."""
        return self._fragments().wait(offset, timeout)

    def media_for_fragments(self, numbers: Sequence[str]) -> Iterator[StoredFragment]:
        """The named fragments, in the order given (KVS's GetMediaForFragmentList).
        Every number is checked before any fragment is read; raises NotFound
        at the first one not stored."""
        offsets = [fragment_offset(number) for number in numbers]
        for offset in offsets:
            yield self.fragment(fragment_number(offset))

    def check_archive(self) -> None:
        """Raise NoDataRetention when the stream keeps no archive (retention 0)."""
        if self.describe().data_retention_hours == 0:
            raise NoDataRetention(f"video stream {self.name!r}: retention is 0 (no archive)")
