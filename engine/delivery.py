"""Delivery streams: the Kinesis Data Firehose model on tidelog's logs.

A delivery stream lands records in a destination (a local directory, or an
S3 bucket through boto3) in buffered batches. Its source is either its own
log (`source="direct"`, fed by put_record / put_record_batch; the log is
named `delivery/<name>`) or an existing stream, read through the stream
consumer `firehose-<name>` whose per-shard checkpoints are the delivery
checkpoints.

Exactly-once, in three steps per batch (docs/guarantees.md, "Delivery streams"):

1. *Intent.* One LMDB commit records the batch: its number, the record
   range of every source log it covers, and the configuration it is
   delivered with. An intent left by a crash is redone exactly, never
   re-planned, so a retry writes the same bytes under the same key.
2. *Write.* The object is written durably under a key that depends only on
   the intent (temp file + fsync + rename + directory fsync for
   directories; a plain PUT for S3, where a retry overwrites the same key).
3. *Commit.* One LMDB commit moves the checkpoints past the range, bumps
   the batch number and drops the intent. Two deliverers racing on one
   stream both write the same object; only one commit finds the intent.

Configuration lives in the LMDB database `delivery_streams`; state (batch
number, counters, the direct source's position, the intent) in
`delivery_state`. Both are primary state.
"""

from __future__ import annotations

import base64
import importlib
import json
import logging
import os
import re
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import accumulate, chain
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Literal, cast

from tidelog.catalog import CHANNELS_DB, channel_key, log_name
from tidelog.delivery_formats import (
    CONVERSION_FAILED,
    PARQUET_SUFFIX,
    SUFFIXES,
    arrow_schema,
    check_compression,
    check_parquet_compression,
    compress,
    pyarrow,
    stored_schema,
    to_parquet,
)
from tidelog.log import as_bytes
from tidelog.segments.errors import AlreadyExists, Error, InvalidArgument, NotFound
from tidelog.segments.format import ValueRow
from tidelog.segments.logstore import LogInfo, LogStore, delete_prefix
from tidelog.segments.reader import read_value_chunks
from tidelog.segments.writer import WriteContext
from tidelog.tags import TAGS_MAX, check_tags, merged_tags, remaining_tags

log = logging.getLogger("tidelog.delivery")

if TYPE_CHECKING:
    from tidelog.store import Store
    from tidelog.streams import Stream

# -- limits (Firehose's, see docs/api.md "Delivery streams") --------------------------------

DELIVERY_STREAMS_DB = b"delivery_streams"
DELIVERY_STATE_DB = b"delivery_state"
NAME_RE = re.compile(r"[a-zA-Z0-9_.-]{1,64}")
RECORD_BYTES_MAX = 1000 * 1024  # 1,000 KiB
BATCH_RECORDS_MAX = 500
BATCH_BYTES_MAX = 4 * 1024 * 1024
BUFFER_MIB_MIN, BUFFER_MIB_MAX, BUFFER_MIB_DEFAULT = 1, 128, 5
INTERVAL_MIN, INTERVAL_MAX, INTERVAL_DEFAULT = 0, 900, 300
RETRY_SECONDS_MAX = 7200
ERROR_CHARS_MAX = 1000  # a destination error kept in the state (botocore's can be long)
RETRY_SECONDS_DEFAULT = 300
BACKOFF_FIRST_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0
FORMATS = ("raw", "json_lines", "parquet")
# The server answers LimitExceededException for the code in parentheses.
TOO_MANY_TAGS = f"tag: a delivery stream has at most {TAGS_MAX} tags (LimitExceededException)"

Compression = Literal["UNCOMPRESSED", "GZIP", "Snappy", "ZSTD"]
RecordFormat = Literal["raw", "json_lines", "parquet"]
ParquetCompression = Literal["UNCOMPRESSED", "SNAPPY", "GZIP"]
_U64 = struct.Struct(">Q")
_EXPRESSION = re.compile(r"!\{([a-z]+):([^}]*)\}")
_JAVA_TIME = [("yyyy", "%Y"), ("yy", "%y"), ("MM", "%m"), ("dd", "%d"), ("HH", "%H")]
_JAVA_TIME += [("mm", "%M"), ("ss", "%S")]


# -- destinations -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DirectoryDestination:
    """Objects land as files under `path` (keys are relative paths)."""

    path: str

    def to_json(self) -> dict[str, Any]:
        return {"type": "directory", "path": os.path.abspath(self.path)}


@dataclass(frozen=True, slots=True)
class S3Destination:
    """Objects land in an S3 bucket through boto3 (AWS, MinIO, moto's server...).

    Leave credentials and endpoint None to use boto3's usual chain
    (AWS_ENDPOINT_URL_S3, AWS_ACCESS_KEY_ID...). Credentials given here are
    kept in the store's catalog in the clear.
    """

    bucket: str
    endpoint_url: str | None = None
    region: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "s3",
            "bucket": self.bucket,
            "endpoint_url": self.endpoint_url,
            "region": self.region,
            "aws_access_key_id": self.aws_access_key_id,
            "aws_secret_access_key": self.aws_secret_access_key,
        }


Destination = DirectoryDestination | S3Destination


def _destination_of(value: object) -> dict[str, Any]:
    if isinstance(value, str | os.PathLike):
        return DirectoryDestination(str(os.fspath(value))).to_json()
    if isinstance(value, DirectoryDestination | S3Destination):
        return value.to_json()
    raise InvalidArgument(f"destination: {value!r} is not a path, DirectoryDestination or S3")


class _Writer:
    """Writes one object durably; a second write of a key replaces the first."""

    def __init__(self, config: Mapping[str, Any], store: Store | None = None) -> None:
        self.config = config
        self.store = store
        self._client: Any = None

    def put(self, key: str, body: bytes) -> None:
        if self.config["type"] == "directory":
            self._put_file(key, body)
        elif (store := self._local_store()) is not None:
            # The bucket is in this store's own S3 (engine/objects.py): no HTTP, no boto3.
            store.objects.put(self.config["bucket"], key, body)
        else:
            self._put_s3(key, body)

    def _local_store(self) -> Store | None:
        """This store, if the S3 destination names one of its buckets (and no other endpoint).

        Looked up at every write, so a bucket created after the delivery
        stream is written to as soon as it exists.
        """
        store = self.store
        if store is None or self.config.get("endpoint_url"):
            return None
        return store if store.objects.has_bucket(self.config["bucket"]) else None

    def _put_file(self, key: str, body: bytes) -> None:
        root = self.config["path"]
        path = os.path.join(root, *key.split("/"))
        directory = os.path.dirname(path)
        os.makedirs(directory, exist_ok=True)
        # A fixed temp name: a retry after a crash truncates the old one.
        temp = os.path.join(directory, "." + os.path.basename(path) + ".tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(body)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _put_s3(self, key: str, body: bytes) -> None:
        if self._client is None:
            try:
                import boto3
            except ImportError:  # pragma: no cover - boto3 is a dependency (pyproject.toml)
                raise InvalidArgument("S3 destination: needs boto3 (pip install boto3)") from None
            cfg = self.config
            options = {
                k: cfg[k]
                for k in ("endpoint_url", "aws_access_key_id", "aws_secret_access_key")
                if cfg.get(k)
            }
            if cfg.get("region"):
                options["region_name"] = cfg["region"]
            self._client = boto3.client("s3", **options)
        self._client.put_object(Bucket=self.config["bucket"], Key=key, Body=body)


# -- processors ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Processed:
    """A processor's verdict on one record (Firehose's Lambda transform result)."""

    result: Literal["Ok", "Dropped", "ProcessingFailed"]
    data: bytes = b""
    reason: str = ""


def Ok(data: bytes) -> Processed:  # noqa: N802 - named as Firehose's result
    """Deliver `data` in place of the record."""
    return Processed("Ok", data)


DROPPED = Processed("Dropped")


def ProcessingFailed(reason: str = "") -> Processed:  # noqa: N802
    """Send the record to the error output with `reason`."""
    return Processed("ProcessingFailed", reason=reason)


Processor = Callable[[bytes, str], Processed]
# Callables cannot be stored in LMDB: they belong to this process, by store path and name.
_PROCESSORS: dict[tuple[str, str], Processor] = {}


def _load_processor(spec: str) -> Processor:
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise InvalidArgument(f"processor: {spec!r} is not 'module:function'")
    fn = getattr(importlib.import_module(module), attr)
    if not callable(fn):
        raise InvalidArgument(f"processor: {spec!r} is not callable")
    processor: Processor = fn
    return processor


# -- results and descriptions -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeliveryPutResult:
    """One record's put result (Firehose's RecordId, or an error code)."""

    record_id: str | None
    error_code: str | None = None
    error_message: str | None = None


@dataclass(frozen=True, slots=True)
class DeliveryStreamDescription:
    name: str
    source: str
    destination: dict[str, Any]
    prefix: str
    error_output_prefix: str
    buffering_size_mib: int
    buffering_interval: int
    compression: Compression
    record_format: RecordFormat
    newline_delimiter: bool
    processor: str | None
    retry_duration: int
    version: int
    created_ms: int
    # (name, type) pairs as given, a pyarrow.Schema, or None (inferred from each batch).
    parquet_schema: Any = None
    parquet_compression: ParquetCompression = "SNAPPY"


@dataclass(frozen=True, slots=True)
class DeliveryStats:
    """What a delivery stream has delivered, and what waits."""

    batches: int
    records_delivered: int
    records_dropped: int
    records_failed: int
    objects: int
    bytes_delivered: int
    last_delivery_ms: int | None
    last_key: str | None
    buffered_records: int
    buffered_bytes: int
    oldest_buffered_ms: int | None
    # The destination's newest failure ("OSError: ...", at a time), recorded at
    # the first failed attempt of a put, and whether the batch it failed is
    # still being retried (False again once a batch lands).
    last_error: str | None = None
    last_error_ms: int | None = None
    failing: bool = False


@dataclass(slots=True)
class FlushResult:
    """One delivered batch: its keys and counts (see DeliveryStream.flush)."""

    batch: int
    records: int
    keys: list[str] = field(default_factory=list)
    delivered: int = 0
    dropped: int = 0
    failed: int = 0


# -- helpers ------------------------------------------------------------------------------


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise InvalidArgument(message)


def check_name(name: object) -> str:
    _require(
        isinstance(name, str) and NAME_RE.fullmatch(name) is not None,
        f"delivery stream name: {name!r} is not 1-64 of a-zA-Z0-9_.-",
    )
    return cast(str, name)


def _int_in(value: object, low: int, high: int, what: str) -> int:
    _require(
        isinstance(value, int) and not isinstance(value, bool) and low <= value <= high,
        f"{what}: {value!r} is outside {low}-{high}",
    )
    assert isinstance(value, int)
    return value


def _strftime(ts_ms: int, java: str) -> str:
    fmt = java
    for pattern, directive in _JAVA_TIME:
        fmt = fmt.replace(pattern, directive)
    return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime(fmt)


def evaluate_prefix(prefix: str, ts_ms: int, error_type: str | None = None) -> str:
    """A key prefix for an object whose oldest record arrived at `ts_ms`.

    As Firehose: `!{timestamp:<Java date pattern>}` and
    `!{firehose:error-output-type}` are replaced; a prefix with no timestamp
    expression gets the default `YYYY/MM/DD/HH/` (UTC) appended; an error
    prefix without the error-type expression gets `<type>/` before it.
    """
    has_time = False

    def replace(match: re.Match[str]) -> str:
        nonlocal has_time
        namespace, value = match.group(1), match.group(2)
        if namespace == "timestamp":
            has_time = True
            return _strftime(ts_ms, value)
        if namespace == "firehose" and value == "error-output-type" and error_type:
            return error_type
        raise InvalidArgument(f"prefix: unsupported expression !{{{namespace}:{value}}}")

    out = _EXPRESSION.sub(replace, prefix)
    if error_type and "!{firehose:error-output-type}" not in prefix:
        out += f"{error_type}/"
    if not has_time:
        out += _strftime(ts_ms, "yyyy/MM/dd/HH/")
    return out


def _check_prefix(prefix: object, what: str, error: bool) -> str:
    _require(isinstance(prefix, str) and len(prefix) <= 1024, f"{what}: must be a str <= 1024")
    assert isinstance(prefix, str)
    for namespace, value in _EXPRESSION.findall(prefix):
        ok = namespace == "timestamp" or (
            error and namespace == "firehose" and value == "error-output-type"
        )
        _require(ok, f"{what}: unsupported expression !{{{namespace}:{value}}}")
    return prefix


def _state_key(name: str, what: bytes) -> bytes:
    return name.encode() + b"\0" + what


def consumer_name(name: str) -> str:
    """The stream consumer through which a stream-sourced delivery stream reads."""
    return f"firehose-{name}"


# -- create / list / delete ---------------------------------------------------------------


def create_delivery_stream(
    store: Store,
    name: str,
    *,
    source: str = "direct",
    destination: Destination | str | os.PathLike[str],
    prefix: str = "",
    error_output_prefix: str = "",
    buffering_size_mib: int = BUFFER_MIB_DEFAULT,
    buffering_interval: int = INTERVAL_DEFAULT,
    compression: Compression = "UNCOMPRESSED",
    record_format: RecordFormat = "raw",
    newline_delimiter: bool = False,
    parquet_schema: Any = None,
    parquet_compression: ParquetCompression = "SNAPPY",
    processor: Processor | str | None = None,
    retry_duration: int = RETRY_SECONDS_DEFAULT,
    tags: Mapping[str, str] | None = None,
    exist_ok: bool = False,
) -> DeliveryStream:
    check_name(name)
    check_tags(tags or {}, aws_charset=True)
    config: dict[str, Any] = {
        "source": source,
        "destination": _destination_of(destination),
        **_settings(
            prefix=prefix,
            error_output_prefix=error_output_prefix,
            buffering_size_mib=buffering_size_mib,
            buffering_interval=buffering_interval,
            compression=compression,
            record_format=record_format,
            newline_delimiter=newline_delimiter,
            parquet_schema=parquet_schema,
            parquet_compression=parquet_compression,
            retry_duration=retry_duration,
        ),
        "processor": processor if isinstance(processor, str) else None,
        "version": 1,
        "tags": merged_tags({}, tags or {}, TOO_MANY_TAGS),
    }
    _require(isinstance(source, str) and bool(source), "source: 'direct' or a stream name")
    _check_config(config)
    if isinstance(processor, str):
        _load_processor(processor)
    elif processor is not None and not callable(processor):
        raise InvalidArgument("processor: must be a callable or 'module:function'")
    logs = store._logs
    if source != "direct":
        stream = store.stream(source)
        stream.describe()  # raises NotFound
        stream.consumer(consumer_name(name))
    encoded = name.encode()

    def op(ctx: WriteContext) -> bool:
        db = ctx.db(DELIVERY_STREAMS_DB)
        if ctx.txn.get(encoded, db=db) is not None:
            if exist_ok:
                return False
            raise AlreadyExists(f"delivery stream {name!r}: already exists")
        if source != "direct":
            if ctx.txn.get(channel_key("stream", source), db=ctx.db(CHANNELS_DB)) is None:
                raise NotFound(f"stream {source!r}: not found")
        else:
            logs.create_log_in(
                ctx,
                log_name("delivery", name),  # type: ignore[arg-type]
                segment_bytes_max=logs.segment_bytes_default,
                retention_ms=None,
                retention_bytes=None,
                meta={"delivery_stream": name},
                exist_ok=False,
            )
        config["created_ms"] = ctx.now_ms
        ctx.txn.put(encoded, json.dumps(config, sort_keys=True).encode(), db=db)
        state: dict[str, Any] = {"batch": 0, "position": 0, "delivered": 0, "dropped": 0}
        state |= {"failed": 0, "objects": 0, "bytes": 0, "last_ms": None, "last_key": None}
        ctx.txn.put(_state_key(name, b"state"), json.dumps(state).encode(), db=_sdb(ctx))
        return True

    logs.submit(op)
    if callable(processor):
        _PROCESSORS[(store.path, name)] = processor
    return DeliveryStream(store, name)


def _settings(**given: Any) -> dict[str, Any]:
    """Validated settings (those given), as stored in the configuration."""
    out: dict[str, Any] = {}
    for key, value in given.items():
        if key == "prefix":
            out[key] = _check_prefix(value, "prefix", error=False)
        elif key == "error_output_prefix":
            out[key] = _check_prefix(value, "error_output_prefix", error=True)
        elif key == "buffering_size_mib":
            out[key] = _int_in(value, BUFFER_MIB_MIN, BUFFER_MIB_MAX, "buffering_size_mib")
        elif key == "buffering_interval":
            out[key] = _int_in(value, INTERVAL_MIN, INTERVAL_MAX, "buffering_interval")
        elif key == "retry_duration":
            out[key] = _int_in(value, 0, RETRY_SECONDS_MAX, "retry_duration")
        elif key == "compression":
            out[key] = check_compression(value)
        elif key == "record_format":
            _require(value in FORMATS, f"record_format: {value!r} is not one of {FORMATS}")
            if value == "parquet":
                pyarrow()  # refused here, not at delivery, when pyarrow is missing
            out[key] = value
        elif key == "parquet_schema":
            out[key] = stored_schema(value)
        elif key == "parquet_compression":
            out[key] = check_parquet_compression(value)
        elif key == "newline_delimiter":
            _require(isinstance(value, bool), "newline_delimiter: must be a bool")
            out[key] = value
        else:  # pragma: no cover - callers pass only the names above
            raise InvalidArgument(f"unknown setting {key!r}")
    return out


def _check_config(config: Mapping[str, Any]) -> None:
    """The rules between settings, checked on the whole configuration."""
    if config.get("record_format") == "parquet":
        # As Firehose, which turns S3 compression off with format conversion.
        _require(
            config.get("compression") == "UNCOMPRESSED",
            f"compression: {config.get('compression')!r} with record_format 'parquet' "
            "(Parquet compresses inside the file: use parquet_compression)",
        )


def _described_schema(stored: dict[str, Any] | None) -> Any:
    if stored is not None and "columns" in stored:
        return [(name, type_) for name, type_ in stored["columns"]]
    return arrow_schema(stored)


def _sdb(ctx: WriteContext) -> Any:
    return ctx.db(DELIVERY_STATE_DB)


def _check_lookup(name: object) -> None:
    """A name no delivery stream can have is NotFound ("" is no LMDB key at all)."""
    if not isinstance(name, str) or NAME_RE.fullmatch(name) is None:
        raise NotFound(f"delivery stream {name!r:.80}: not found")


def _config_in(ctx: WriteContext, name: str) -> dict[str, Any]:
    """The configuration of delivery stream `name` as a write sees it. Raises NotFound."""
    _check_lookup(name)
    raw = ctx.txn.get(name.encode(), db=ctx.db(DELIVERY_STREAMS_DB))
    if raw is None:
        raise NotFound(f"delivery stream {name!r}: not found")
    config: dict[str, Any] = json.loads(raw)
    return config


def list_delivery_streams(store: Store) -> list[DeliveryStream]:
    logs = store._logs
    with logs.env.begin() as txn:
        names = [
            k.decode()
            for k in txn.cursor(db=logs.database(DELIVERY_STREAMS_DB)).iternext(values=False)
        ]
    return [DeliveryStream(store, n) for n in names]


def delete_delivery_stream(store: Store, name: str) -> None:
    """Delete a delivery stream, its state and (direct source) its log. Atomic."""
    logs = store._logs
    encoded = name.encode()

    def op(ctx: WriteContext) -> None:
        config = _config_in(ctx, name)
        ctx.txn.delete(encoded, db=ctx.db(DELIVERY_STREAMS_DB))
        delete_prefix(ctx.txn, _sdb(ctx), encoded + b"\0")
        if config["source"] == "direct":
            logs.delete_log_in(ctx, log_name("delivery", name))  # type: ignore[arg-type]
        else:
            from tidelog.streams import CHECKPOINTS_DB

            raw_stream = ctx.txn.get(
                channel_key("stream", config["source"]), db=ctx.db(CHANNELS_DB)
            )
            if raw_stream is not None:
                uid = _stream_uid(config["source"], raw_stream)
                prefix = uid + consumer_name(name).encode() + b"\0"
                delete_prefix(ctx.txn, ctx.db(CHECKPOINTS_DB), prefix)

    logs.submit(op)
    _PROCESSORS.pop((store.path, name), None)


def _stream_uid(stream_name: str, raw: bytes) -> bytes:
    from tidelog.streams import _View

    return _View(stream_name, raw).uid


# -- the delivery stream ------------------------------------------------------------------


@dataclass(slots=True)
class _Part:
    """One source log in a batch: records [start, end) of `info`."""

    key: str  # "direct" or a shard index
    info: LogInfo
    start: int
    end: int


class DeliveryStream:
    """A handle on one delivery stream. Cheap; thread- and process-safe.

    Every method that writes is one LMDB commit (atomic, durable as the
    store's sync mode). `flush` may be called from several threads or
    processes at once: each batch is delivered exactly once.
    """

    def __init__(self, store: Store, name: str) -> None:
        self.store = store
        self.name = name
        self._logs = store._logs
        self._writers: dict[str, _Writer] = {}
        # The records of the batch this handle just planned, so delivery need not read them again.
        self._planned: tuple[int, dict[str, list[ValueRow]]] | None = None
        # What the buffer held at the last poll that found nothing due (see _surely_not_due).
        self._sums: tuple[str, dict[str, tuple[int, int, int, int | None]]] | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<tidelog.DeliveryStream {self.name!r}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DeliveryStream) and (other.store, other.name) == (
            self.store,
            self.name,
        )

    def __hash__(self) -> int:
        return hash(("delivery", self.name))

    # -- configuration ------------------------------------------------------------------

    def _config(self) -> dict[str, Any]:
        with self._logs.env.begin() as txn:
            raw = txn.get(self.name.encode(), db=self._logs.database(DELIVERY_STREAMS_DB))
        if raw is None:
            raise NotFound(f"delivery stream {self.name!r}: not found")
        config: dict[str, Any] = json.loads(raw)
        return config

    def describe(self) -> DeliveryStreamDescription:
        c = self._config()
        return DeliveryStreamDescription(
            name=self.name,
            source=c["source"],
            destination=dict(c["destination"]),
            prefix=c["prefix"],
            error_output_prefix=c["error_output_prefix"],
            buffering_size_mib=c["buffering_size_mib"],
            buffering_interval=c["buffering_interval"],
            compression=c["compression"],
            record_format=c["record_format"],
            newline_delimiter=c["newline_delimiter"],
            processor=c["processor"],
            retry_duration=c["retry_duration"],
            version=c["version"],
            created_ms=c["created_ms"],
            parquet_schema=_described_schema(c.get("parquet_schema")),
            parquet_compression=c.get("parquet_compression", "SNAPPY"),
        )

    def update_destination(
        self,
        *,
        destination: Destination | str | os.PathLike[str] | None = None,
        current_version: int | None = None,
        **settings: Any,
    ) -> int:
        """Change the destination or its settings (Firehose's UpdateDestination).

        Settings are create_delivery_stream's keywords (prefix, buffering_*,
        compression...). Applies to batches planned after it; a batch already
        planned is delivered as planned. Atomic. With `current_version`, raises
        InvalidArgument if another update came first. Returns the new version.
        """
        changes = _settings(**settings)
        if destination is not None:
            changes["destination"] = _destination_of(destination)

        def change(config: dict[str, Any]) -> int:
            if current_version is not None and config["version"] != current_version:
                raise InvalidArgument(
                    f"update_destination: version {current_version} is not the current "
                    f"{config['version']}"
                )
            config.update(changes)
            _check_config(config)
            config["version"] += 1
            return int(config["version"])

        version: int = self._change_config(change)
        return version

    def _change_config(self, change: Callable[[dict[str, Any]], Any]) -> Any:
        """Apply `change` to the stored configuration and store the result, in
        one commit; returns what `change` returns. Raises NotFound."""

        def op(ctx: WriteContext) -> Any:
            config = _config_in(ctx, self.name)
            result = change(config)
            raw = json.dumps(config, sort_keys=True).encode()
            ctx.txn.put(self.name.encode(), raw, db=ctx.db(DELIVERY_STREAMS_DB))
            return result

        return self._logs.submit(op)

    # -- tags: kept in the configuration, not in the batches' intents ------------------

    def tags(self) -> dict[str, str]:
        """The delivery stream's tags (Firehose's ListTagsForDeliveryStream). Raises NotFound."""
        return dict(self._config().get("tags") or {})

    def tag(self, tags: Mapping[str, str]) -> None:
        """Add or replace tags (Firehose's TagDeliveryStream). Atomic.

        Raises NotFound, or InvalidArgument past Firehose's rules: keys 1-128
        and values up to 256 characters of Unicode letters, digits, white
        space and `_ . : / = + - @ %`, no key starting `aws:`, at most 50
        tags (the message then names LimitExceededException).
        """
        check_tags(tags, aws_charset=True)

        # The version stays: as in Firehose, only destination updates change it.
        def change(config: dict[str, Any]) -> None:
            config["tags"] = merged_tags(config, tags, TOO_MANY_TAGS)

        self._change_config(change)

    def untag(self, tag_keys: Sequence[str]) -> None:
        """Remove tags by key (Firehose's UntagDeliveryStream); missing keys are
        ignored. Atomic. Raises NotFound."""

        def change(config: dict[str, Any]) -> None:
            config["tags"] = remaining_tags(config, tag_keys)

        self._change_config(change)

    def set_processor(self, processor: Processor | None) -> None:
        """Use `processor` (a callable) for batches this process delivers."""
        if processor is None:
            _PROCESSORS.pop((self.store.path, self.name), None)
        else:
            _PROCESSORS[(self.store.path, self.name)] = processor

    def delete(self) -> None:
        delete_delivery_stream(self.store, self.name)

    # -- puts ---------------------------------------------------------------------------

    def _direct_log(self) -> LogInfo:
        return self._logs.get_log(log_name("delivery", self.name))  # type: ignore[arg-type]

    def put_record(self, data: bytes | bytearray | memoryview | str) -> DeliveryPutResult:
        """Append one record (Firehose's PutRecord). Raises InvalidArgument, NotFound."""
        return self.put_record_batch([data])[0]

    def put_record_batch(
        self, records: Sequence[bytes | bytearray | memoryview | str]
    ) -> list[DeliveryPutResult]:
        """Append up to 500 records, 4 MiB in all, 1,000 KiB each, in one commit.

        Atomic: all are appended or none. Returns one result per record, in
        order, each with a record id (Firehose's PutRecordBatch; here every
        record of an accepted batch succeeds). Raises InvalidArgument for a
        limit broken or a stream whose source is not "direct"; NotFound.
        """
        values = [r if type(r) is bytes else as_bytes(r, "record") for r in records]
        _require(
            1 <= len(values) <= BATCH_RECORDS_MAX,
            f"put_record_batch: {len(values)} records is outside 1-{BATCH_RECORDS_MAX}",
        )
        longest = max(map(len, values))
        _require(
            longest <= RECORD_BYTES_MAX,
            f"put_record: a record of {longest} bytes is over {RECORD_BYTES_MAX} (1,000 KiB)",
        )
        total = sum(map(len, values))
        _require(
            total <= BATCH_BYTES_MAX,
            f"put_record_batch: {total} bytes is over {BATCH_BYTES_MAX} (4 MiB)",
        )
        if self._config()["source"] != "direct":
            raise InvalidArgument(f"delivery stream {self.name!r}: source is a stream, not direct")
        info = self._direct_log()
        first = self._logs.submit(lambda ctx: ctx.append(info, values))
        return [DeliveryPutResult(f"{first + i:020d}") for i in range(len(values))]

    # -- state --------------------------------------------------------------------------

    def _state(self) -> tuple[dict[str, Any], dict[str, Any] | None]:
        db = self._logs.database(DELIVERY_STATE_DB)
        with self._logs.env.begin() as txn:
            raw = txn.get(_state_key(self.name, b"state"), db=db)
            intent = txn.get(_state_key(self.name, b"intent"), db=db)
        if raw is None:
            raise NotFound(f"delivery stream {self.name!r}: not found")
        return json.loads(raw), None if intent is None else json.loads(intent)

    def _positions(self, config: Mapping[str, Any], state: Mapping[str, Any]) -> list[_Part]:
        """Every source log, from its checkpoint to its committed end (in lineage order)."""
        if config["source"] == "direct":
            info = self._direct_log()
            end = self._logs.ends(info).next_offset
            return [_Part("direct", info, int(state["position"]), end)]
        stream = self.store.stream(config["source"])
        consumer = stream.consumer(consumer_name(self.name))
        from tidelog.streams import parse_sequence_number

        done = {
            parse_sequence_number(seq)[0]: parse_sequence_number(seq)[1] + 1
            for seq in consumer.checkpoints().values()
        }
        view = stream._view()
        parts = []
        # Shard indexes are handed out in creation order and children come after
        # their parents, so index order is a lineage order.
        for shard in sorted(view.shards.values(), key=lambda s: s.index):
            start = max(done.get(shard.index, 0), self._logs.ends(shard.info).start_offset)
            end = self._logs.ends(shard.info).next_offset
            if shard.end_offset is not None:
                end = min(end, shard.end_offset)
            parts.append(_Part(str(shard.index), shard.info, start, end))
        return parts

    def stats(self) -> DeliveryStats:
        """Counters, last delivery, and what is buffered (reads the pending records)."""
        state, _ = self._state()
        config = self._config()
        records = bytes_ = 0
        oldest: int | None = None
        for part in self._positions(config, state):
            for rows, size, first in _buffered(self._logs, part.info, part.start, part.end):
                records += len(rows)
                bytes_ += size
                oldest = first if oldest is None else min(oldest, first)
        return DeliveryStats(
            batches=state["batch"],
            records_delivered=state["delivered"],
            records_dropped=state["dropped"],
            records_failed=state["failed"],
            objects=state["objects"],
            bytes_delivered=state["bytes"],
            last_delivery_ms=state["last_ms"],
            last_key=state["last_key"],
            buffered_records=records,
            buffered_bytes=bytes_,
            oldest_buffered_ms=oldest,
            last_error=state.get("error"),
            last_error_ms=state.get("error_ms"),
            failing=bool(state.get("failing")),
        )

    # -- delivery -----------------------------------------------------------------------

    def _plan(self, now_ms: int, force: bool) -> dict[str, Any] | None:
        """Commit an intent for the next batch if one is due; returns it (or None)."""
        state, intent = self._state()
        if intent is not None:
            return intent
        config = self._config()
        limit = config["buffering_size_mib"] * 1024 * 1024
        parts = self._positions(config, state)
        if not force and self._surely_not_due(state, config, parts, now_ms):
            return None
        total = 0
        oldest: int | None = None
        ranges: dict[str, list[int]] = {}
        finished: set[str] = set()
        view_parents = self._parents(config)
        known = {part.key for part in parts}
        read: dict[str, list[ValueRow]] = {}
        for part in parts:
            if any(p in known and p not in finished for p in view_parents.get(part.key, ())):
                continue  # a parent still has records after this batch
            end = part.start
            records: list[ValueRow] = []
            for rows, size, first in _buffered(
                self._logs, part.info, part.start, part.end, limit - total
            ):
                total += size
                oldest = first if oldest is None else min(oldest, first)
                end = rows[-1][0] + 1
                records += rows
            if end > part.start:
                ranges[part.key] = [part.start, end]
                read[part.key] = records
            if end >= part.end:
                finished.add(part.key)
        if not ranges or oldest is None:
            return None
        due = force or total >= limit or now_ms - oldest >= config["buffering_interval"] * 1000
        if not due:
            return None
        new_intent = {"batch": state["batch"], "ranges": ranges, "oldest_ms": oldest}
        # Tags play no part in delivery: up to 50 of them need not be copied into every intent.
        new_intent["config"] = {k: v for k, v in config.items() if k != "tags"}
        key = _state_key(self.name, b"intent")
        state_key = _state_key(self.name, b"state")
        expected = json.dumps(state).encode()

        def op(ctx: WriteContext) -> dict[str, Any] | None:
            raw = ctx.txn.get(key, db=_sdb(ctx))
            if raw is not None:
                found: dict[str, Any] = json.loads(raw)
                return found
            if ctx.txn.get(state_key, db=_sdb(ctx)) != expected:
                return None  # another deliverer committed a batch meanwhile: plan again
            ctx.txn.put(key, json.dumps(new_intent).encode(), db=_sdb(ctx))
            return new_intent

        planned: dict[str, Any] | None = self._logs.submit(op)
        if planned is new_intent:  # ours: deliver from the records just read
            self._planned = (new_intent["batch"], read)
        return planned

    def _surely_not_due(
        self,
        state: Mapping[str, Any],
        config: Mapping[str, Any],
        parts: list[_Part],
        now_ms: int,
    ) -> bool:
        """Whether no batch is due, reading only records this handle has not summed yet.

        Without this, every poll of a buffer that waits for its interval
        reads the whole buffer (up to buffering_size_mib) again. Records below
        a log's committed end never change, so the sums of what was read
        before still hold while the delivery state (the checkpoints) is the
        same and each source log starts where it did. The answer is the one
        _plan's full reading would give: False sends _plan there.
        """
        key = json.dumps(state, sort_keys=True)
        known = self._sums[1] if self._sums is not None and self._sums[0] == key else {}
        self._sums = None
        limit = config["buffering_size_mib"] * 1024 * 1024
        due_ms = now_ms - config["buffering_interval"] * 1000  # a record this old is due
        sums: dict[str, tuple[int, int, int, int | None]] = {}
        total = 0
        for part in parts:
            start, end, size, first = known.get(part.key, (part.start, part.start, 0, None))
            if start != part.start or end > part.end:
                start, end, size, first = part.start, part.start, 0, None
            for rows, more, oldest in _buffered(self._logs, part.info, end, part.end):
                size += more
                first = oldest if first is None else min(first, oldest)
                end = rows[-1][0] + 1
                if first <= due_ms or total + size >= limit:
                    return False  # due (so the first chunk of a due buffer is all it reads)
            if first is not None and first <= due_ms:
                return False
            sums[part.key] = (start, end, size, first)
            total += size
        self._sums = (key, sums)
        return True

    def _parents(self, config: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
        if config["source"] == "direct":
            return {}
        view = self.store.stream(config["source"])._view()
        return {str(s.index): tuple(str(p) for p in s.parents) for s in view.shards.values()}

    def _part_info(self, config: Mapping[str, Any], key: str) -> LogInfo:
        if key == "direct":
            return self._direct_log()
        view = self.store.stream(config["source"])._view()
        return view.shards[int(key)].info

    def flush(
        self,
        *,
        force: bool = False,
        now: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> FlushResult | None:
        """Deliver one batch if the buffering hints say it is due (or `force`).

        A batch is due when its records reach the buffering size, or its
        oldest record is `buffering_interval` seconds old by `now` (default:
        the store's clock). Blocks while writing the object; a failed write is
        retried with backoff (`sleep`) for `retry_duration` seconds, then the
        batch's records go to the error output with the reason. Returns what
        was delivered, or None when nothing was due. Exactly-once; see the
        module docstring. Raises NotFound, Error if even the error output
        cannot be written (the batch is retried by the next flush).
        """
        clock = self._logs.clock
        now_ms = int((clock() if now is None else now) * 1000)
        with self._lock:
            intent = self._plan(now_ms, force)
            if intent is None:
                return None
            return self._deliver(intent, clock, sleep)

    def flush_all(self, *, now: float | None = None) -> list[FlushResult]:
        """Deliver everything buffered, due or not, in as many batches as it takes."""
        out = []
        while (result := self.flush(force=True, now=now)) is not None:
            out.append(result)
        return out

    def _processor(self, config: Mapping[str, Any]) -> Processor | None:
        fn = _PROCESSORS.get((self.store.path, self.name))
        if fn is None and config.get("processor"):
            fn = _load_processor(config["processor"])
        return fn

    def _deliver(
        self, intent: Mapping[str, Any], clock: Callable[[], float], sleep: Callable[[float], None]
    ) -> FlushResult:
        config = intent["config"]
        batch = intent["batch"]
        result = FlushResult(batch, 0)
        processor = self._processor(config)
        json_lines = config["record_format"] == "json_lines"
        # Parquet takes each record as one JSON object; a delimiter is no part of it.
        parquet = config["record_format"] == "parquet"
        newline = (config["newline_delimiter"] or json_lines) and not parquet
        good: list[bytes] = []
        origins: list[ValueRow] = []  # the record of each of `good` (kept for Parquet only)
        failed: list[dict[str, Any]] = []
        for part_key in sorted(
            intent["ranges"], key=lambda k: (k != "direct", int(k) if k.isdigit() else 0)
        ):
            records = self._records_of(intent, config, part_key)
            if processor is None and not json_lines and not parquet:  # bytes as they are
                values = list(map(_value_of, records))
                result.records += len(values)
                good.extend([v + b"\n" for v in values] if newline else values)
                continue
            if processor is None and not parquet:  # JSON lines: one C-level check per record
                pairs = [(r, r[-1].rstrip(b"\r\n")) for r in records]
                result.records += len(pairs)
                checks = [b"\n" not in v and _is_json(v) for _, v in pairs]
                good.extend([v + b"\n" for (_, v), ok in zip(pairs, checks, strict=True) if ok])
                failed.extend(
                    _error_doc(r, "Invalid.JSON", "not one JSON document")
                    for (r, _), ok in zip(pairs, checks, strict=True)
                    if not ok
                )
                continue
            for record in records:
                result.records += 1
                data = record[-1]
                record_id = f"{part_key}:{record[0]}"
                if processor is not None:
                    try:
                        verdict = processor(data, record_id)
                    except Exception as exc:  # a processor's bug fails its record, not the batch
                        verdict = ProcessingFailed(f"processor raised {exc!r}")
                    if verdict.result == "Dropped":
                        result.dropped += 1
                        continue
                    if verdict.result != "Ok":
                        failed.append(_error_doc(record, "Lambda.ProcessingFailed", verdict.reason))
                        continue
                    data = verdict.data
                if json_lines:
                    data = data.rstrip(b"\r\n")
                    if b"\n" in data or not _is_json(data):
                        failed.append(_error_doc(record, "Invalid.JSON", "not one JSON document"))
                        continue
                good.append(data + b"\n" if newline else data)
                if parquet:
                    origins.append(record)
        compression = config["compression"]
        stamp = datetime.fromtimestamp(intent["oldest_ms"] / 1000, UTC).strftime(
            "%Y-%m-%d-%H-%M-%S"
        )
        stem = f"{self.name}-{config['version']}-{stamp}-{batch:016d}"
        writer = self._writer(config)
        bytes_written = 0
        body: bytes | None = None
        if parquet and good:
            # Converted before the write: a redo converts the same records the same way.
            schema = arrow_schema(config.get("parquet_schema"))
            parquet_compression = config.get("parquet_compression", "SNAPPY")
            body, misfits = to_parquet(good, schema, parquet_compression)
            for i, message in sorted(misfits.items()):
                doc = _error_doc_of(good[i], CONVERSION_FAILED, message)
                doc["approximateArrivalTimestamp"] = origins[i][1]
                failed.append(doc)
            good = [data for i, data in enumerate(good) if i not in misfits]
        elif good:
            body = compress(b"".join(good), compression)
        if body is not None:
            suffix = PARQUET_SUFFIX if parquet else SUFFIXES[compression]
            key = evaluate_prefix(config["prefix"], intent["oldest_ms"]) + stem + suffix
            reason = self._put_with_retry(writer, key, body, config, clock, sleep)
            if reason is None:
                result.keys.append(key)
                result.delivered = len(good)
                bytes_written += len(body)
            else:
                docs = [_error_doc_of(raw, "S3.DeliveryFailed", reason) for raw in good]
                failed.extend(docs)
        # One error object per error type (in the order of their first failure), as
        # Firehose files them under !{firehose:error-output-type}.
        by_type: dict[str, list[dict[str, Any]]] = {}
        for doc in failed:
            error_type = _ERROR_TYPES.get(doc["errorCode"], "processing-failed")
            by_type.setdefault(error_type, []).append(doc)
        prefix = config["error_output_prefix"] or config["prefix"]
        for error_type, docs in by_type.items():
            body = compress(b"".join(json.dumps(d).encode() + b"\n" for d in docs), compression)
            key = evaluate_prefix(prefix, intent["oldest_ms"], error_type) + stem
            key += SUFFIXES[compression]
            reason = self._put_with_retry(writer, key, body, config, clock, sleep)
            if reason is not None:
                raise Error(f"delivery stream {self.name!r}: error output failed: {reason}")
            result.keys.append(key)
            bytes_written += len(body)
        result.failed = len(failed)
        self._commit(intent, result, bytes_written, config)
        return result

    def _records_of(
        self, intent: Mapping[str, Any], config: Mapping[str, Any], part_key: str
    ) -> Iterable[ValueRow]:
        planned, self._planned = self._planned, None
        if planned is not None and planned[0] == intent["batch"] and part_key in planned[1]:
            records = planned[1].pop(part_key)
            if planned[1]:
                self._planned = planned  # the other parts of the same batch
            return records
        start, end = intent["ranges"][part_key]
        info = self._part_info(config, part_key)
        return chain.from_iterable(read_value_chunks(self._logs, info, start, end))

    def _writer(self, config: Mapping[str, Any]) -> _Writer:
        ident = json.dumps(config["destination"], sort_keys=True)
        writer = self._writers.get(ident)
        if writer is None:
            writer = self._writers[ident] = _Writer(config["destination"], self.store)
        return writer

    def _put_with_retry(
        self,
        writer: _Writer,
        key: str,
        body: bytes,
        config: Mapping[str, Any],
        clock: Callable[[], float],
        sleep: Callable[[float], None],
    ) -> str | None:
        """Write, retrying with exponential backoff; returns None or the last failure.

        The first failed attempt, and each new reason after it, is logged
        (logger `tidelog.delivery`) and recorded in the stream's state at
        once, so `stats()` (and `tidelog info`) show it while the retries go on.
        """
        deadline = clock() + config["retry_duration"]
        delay = BACKOFF_FIRST_SECONDS
        said = None
        while True:
            try:
                writer.put(key, body)
                return None
            except Exception as exc:  # any destination failure (OSError, botocore's)
                reason = f"{type(exc).__name__}: {exc}"
            if reason != said:
                said = reason
                log.warning(
                    "delivery stream %r: writing %s failed: %s (retrying for up to %d s)",
                    self.name,
                    key,
                    reason,
                    config["retry_duration"],
                )
                self._record_error(reason)
            left = deadline - clock()
            if left <= 0:
                return reason
            sleep(min(delay, left))
            delay = min(delay * 2, BACKOFF_MAX_SECONDS)

    def _record_error(self, reason: str) -> None:
        """Commit the destination's failure into the state (stats' last_error)."""
        state_key = _state_key(self.name, b"state")

        def op(ctx: WriteContext) -> None:
            raw = ctx.txn.get(state_key, db=_sdb(ctx))
            if raw is None:
                return  # deleted meanwhile
            state = json.loads(raw)
            state.update(error=reason[:ERROR_CHARS_MAX], error_ms=ctx.now_ms, failing=True)
            ctx.txn.put(state_key, json.dumps(state).encode(), db=_sdb(ctx))

        self._logs.submit(op)

    def _commit(
        self, intent: Mapping[str, Any], result: FlushResult, bytes_written: int, config: Any
    ) -> None:
        intent_key = _state_key(self.name, b"intent")
        state_key = _state_key(self.name, b"state")
        expected = json.dumps(intent).encode()
        name = self.name
        source = config["source"]

        def op(ctx: WriteContext) -> None:
            db = _sdb(ctx)
            if ctx.txn.get(intent_key, db=db) != expected:
                return  # another deliverer committed this batch
            state = json.loads(ctx.txn.get(state_key, db=db))
            state["batch"] += 1
            state["delivered"] += result.delivered
            state["dropped"] += result.dropped
            state["failed"] += result.failed
            state["objects"] += len(result.keys)
            state["bytes"] += bytes_written
            state["last_ms"] = ctx.now_ms
            state["last_key"] = result.keys[-1] if result.keys else state["last_key"]
            state["failing"] = False  # the batch landed (its failed records in the error output)
            if source == "direct":
                state["position"] = intent["ranges"]["direct"][1]
                info = self._direct_log()
                ctx.trim_before(info, state["position"])  # delivered sealed segments go
            else:
                from tidelog.streams import CHECKPOINTS_DB

                raw = ctx.txn.get(channel_key("stream", source), db=ctx.db(CHANNELS_DB))
                if raw is None:
                    raise NotFound(f"stream {source!r}: not found (deleted?)")
                prefix = _stream_uid(source, raw) + consumer_name(name).encode() + b"\0"
                for part_key, (_, end) in intent["ranges"].items():
                    ctx.txn.put(
                        prefix + _U64.pack(int(part_key)),
                        _U64.pack(end - 1),
                        db=ctx.db(CHECKPOINTS_DB),
                    )
            ctx.txn.put(state_key, json.dumps(state).encode(), db=db)
            ctx.txn.delete(intent_key, db=db)

        self._logs.submit(op)


# The C scanner, without json.loads' per-call costs (typeshed does not declare it).
_DECODER: Any = json.JSONDecoder()
_scan_json: Callable[[str, int], tuple[Any, int]] = _DECODER.scan_once


_value_of = itemgetter(-1)  # a ValueRow's value
# The error output's type (a prefix path part) by errorCode; the others are processing-failed.
_ERROR_TYPES = {
    "S3.DeliveryFailed": "delivery-failed",
    CONVERSION_FAILED: "format-conversion-failed",
}
_time_of = itemgetter(1)  # its time (ms)


def _buffered(
    logs: LogStore, info: LogInfo, start: int, stop: int, room: int | None = None
) -> Iterator[tuple[list[ValueRow], int, int]]:
    """The (offset, time, value) rows of [start, stop) of a log, a chunk at a
    time, with the chunk's value bytes and oldest time.

    With `room`, ends at the row whose value brings the bytes to `room` or
    past (a batch takes whole records up to its size hint and then one
    more); nothing when room <= 0. Per chunk, not per record: the sums are
    C loops.
    """
    if room is not None and room <= 0:
        return
    taken = 0
    for chunk in read_value_chunks(logs, info, start, stop):
        sizes = list(map(len, map(_value_of, chunk)))
        size = sum(sizes)
        if room is not None and taken + size >= room:
            # The first row before which `room` bytes were already taken ends it.
            before = accumulate(sizes, initial=taken)
            cut = next(i for i, total in enumerate(before) if total >= room)
            rows = chunk[:cut]
            yield rows, sum(sizes[:cut]), min(map(_time_of, rows))
            return
        yield chunk, size, min(map(_time_of, chunk))
        taken += size


def _is_json(data: bytes) -> bool:
    """Whether `data` is exactly one JSON document in UTF-8 (whitespace around it allowed)."""
    try:
        text = data.strip(b" \t\r\n").decode()
        end: int = _scan_json(text, 0)[1]
        return end == len(text)
    except (ValueError, StopIteration, RecursionError):  # RecursionError: nested too deep
        return False


def _error_doc(record: ValueRow, code: str, message: str) -> dict[str, Any]:
    doc = _error_doc_of(record[-1], code, message)
    doc["approximateArrivalTimestamp"] = record[1]
    return doc


def _error_doc_of(data: bytes, code: str, message: str) -> dict[str, Any]:
    """An error-output line, as Firehose writes them (rawData in base64)."""
    return {
        "errorCode": code,
        "errorMessage": message,
        "rawData": base64.b64encode(
            data.rstrip(b"\n") if code == "S3.DeliveryFailed" else data
        ).decode(),
    }


# -- the background deliverer -------------------------------------------------------------


class _Stopped(Exception):
    """Raised inside a retry's backoff when the deliverer is stopped."""


class Deliverer:
    """A thread that flushes delivery streams when their buffering hints say so.

    `names` None means every delivery stream (new ones are picked up).
    Several deliverers, in threads or processes, may run at once: each
    batch is still delivered exactly once. `on_batch` is called after each
    delivered batch (for progress displays). Errors are kept in `errors`
    and the batch is retried on a later poll.
    """

    def __init__(
        self,
        store: Store,
        names: Iterable[str] | None = None,
        *,
        poll_interval: float = 0.2,
        on_batch: Callable[[DeliveryStream, FlushResult], None] | None = None,
    ) -> None:
        self.store = store
        self.names = None if names is None else list(names)
        self.poll_interval = poll_interval
        self.on_batch = on_batch
        self.errors: list[tuple[str, BaseException]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._handles: dict[str, DeliveryStream] = {}

    def start(self) -> Deliverer:
        self._thread = threading.Thread(target=self.run, name="tidelog-deliverer", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def poll(self) -> int:
        """Flush every due batch once; returns the number of batches delivered."""
        names = self.names
        if names is None:
            names = [d.name for d in list_delivery_streams(self.store)]
        delivered = 0
        for name in names:
            ds = self._handles.get(name)
            if ds is None:
                ds = self._handles[name] = DeliveryStream(self.store, name)
            try:
                while (result := ds.flush(sleep=self._sleep)) is not None:
                    delivered += 1
                    if self.on_batch is not None:
                        self.on_batch(ds, result)
            except NotFound:
                self._handles.pop(name, None)
            except _Stopped:
                break
            except Exception as exc:
                self.errors = [*self.errors[-99:], (name, exc)]
        return delivered

    def _sleep(self, seconds: float) -> None:
        """A retry's backoff, cut short by stop() (the batch stays planned)."""
        if self._stop.wait(seconds):
            raise _Stopped

    def run(self) -> None:
        """Poll until stop(); blocks (start() runs it in a thread)."""
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(self.poll_interval)


def get_delivery_stream(store: Store, name: str) -> DeliveryStream:
    _check_lookup(name)
    ds = DeliveryStream(store, name)
    ds._config()
    return ds


def source_stream(store: Store, ds: DeliveryStream) -> Stream | None:
    source = ds._config()["source"]
    return None if source == "direct" else store.stream(source)


__all__ = [
    "DROPPED",
    "Deliverer",
    "DeliveryPutResult",
    "DeliveryStats",
    "DeliveryStream",
    "DeliveryStreamDescription",
    "DirectoryDestination",
    "FlushResult",
    "Ok",
    "Processed",
    "ProcessingFailed",
    "Processor",
    "S3Destination",
    "create_delivery_stream",
    "delete_delivery_stream",
    "evaluate_prefix",
    "get_delivery_stream",
    "list_delivery_streams",
]
