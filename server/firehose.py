"""Kinesis Data Firehose over AWS JSON 1.1 (X-Amz-Target: Firehose_20150804.<Op>).

Maps onto tidelog.DeliveryStream. Destinations are S3 buckets
(ExtendedS3DestinationConfiguration or S3DestinationConfiguration), reached
through boto3's usual configuration of the server's process (for another
S3 endpoint: AWS_ENDPOINT_URL_S3). Sources are DirectPut or a tidelog stream
(KinesisStreamAsSource, by ARN). Lambda processors have no counterpart
here and are refused; the AppendDelimiterToRecord processor maps to
`newline_delimiter`. Format conversion maps to `record_format="parquet"`
(ParquetSerDe only; with no Glue Data Catalog, the schema is given in
SchemaConfiguration.TableName as `struct<name:type,...>`, see
_conversion_settings). Tags are kept in the delivery
stream's configuration (DeliveryStream.tag).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from typing import Any

import tidelog
from tidelog.delivery import DeliveryStreamDescription
from tidelog.server import model
from tidelog.server.context import Context
from tidelog.server.errors import AwsError
from tidelog.tags import TAGS_MAX, tags_page

Handler = Callable[[Context, dict[str, Any]], dict[str, Any]]

LIST_LIMIT_DEFAULT = 10
DESTINATION_ID = "destinationId-000000000001"
_VERSION_ID = re.compile(r"[0-9]{1,20}")


def from_library(exc: tidelog.Error, **fields: object) -> AwsError:
    """A library error as Firehose reports it."""
    if isinstance(exc, tidelog.NotFound):
        return AwsError("ResourceNotFoundException", str(exc))
    if isinstance(exc, tidelog.AlreadyExists):
        return AwsError("ResourceInUseException", str(exc))
    if isinstance(exc, tidelog.InvalidArgument):
        if "(LimitExceededException)" in str(exc):  # too many tags
            return AwsError("LimitExceededException", str(exc))
        return AwsError("InvalidArgumentException", str(exc))
    return AwsError("ServiceUnavailableException", str(exc), 500, sender_fault=False)


def invalid(error: model.ShapeError) -> AwsError:
    """A request that does not fit Firehose's model: missing members, wrong types and
    values outside the model's bounds alike are InvalidArgumentException."""
    return AwsError("InvalidArgumentException", str(error))


def _arn(ctx: Context, name: str) -> str:
    return f"arn:aws:firehose:{ctx.region}:{ctx.account_id}:deliverystream/{name}"


def _bucket(arn: str) -> str:
    if not arn.startswith("arn:aws:s3:::") or len(arn) == len("arn:aws:s3:::"):
        raise AwsError("InvalidArgumentException", f"BucketARN {arn!r} is not arn:aws:s3:::BUCKET")
    return arn[len("arn:aws:s3:::") :]


def _settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """Library settings from an S3 destination configuration or update."""
    out: dict[str, Any] = {}
    if "BucketARN" in config:
        out["destination"] = tidelog.S3Destination(_bucket(config["BucketARN"]))
    if "Prefix" in config:
        out["prefix"] = config["Prefix"]
    if "ErrorOutputPrefix" in config:
        out["error_output_prefix"] = config["ErrorOutputPrefix"]
    hints = config.get("BufferingHints") or {}
    if "SizeInMBs" in hints:
        out["buffering_size_mib"] = hints["SizeInMBs"]
    if "IntervalInSeconds" in hints:
        out["buffering_interval"] = hints["IntervalInSeconds"]
    if "CompressionFormat" in config:
        out["compression"] = config["CompressionFormat"]
    processing = config.get("ProcessingConfiguration") or {}
    if processing.get("Enabled"):
        kinds = {p.get("Type") for p in processing.get("Processors", [])}
        if kinds - {"AppendDelimiterToRecord"}:
            raise AwsError("InvalidArgumentException", f"processors {sorted(kinds)}: unsupported")
        out["newline_delimiter"] = True
    if config.get("DataFormatConversionConfiguration") is not None:
        out.update(_conversion_settings(config["DataFormatConversionConfiguration"]))
    return out


def _conversion_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """Library settings from a DataFormatConversionConfiguration: JSON to Parquet.

    Firehose reads the columns from a Glue table; tidelog has no Glue Data
    Catalog, so SchemaConfiguration.TableName carries them as a Hive struct
    type, `struct<id:bigint,name:string>` (Glue's own type syntax). Without
    SchemaConfiguration or TableName, each batch's schema is inferred. The
    other Glue fields, the deserializer's options and ParquetSerDe's sizes
    are accepted and not used; only ParquetSerDe.Compression is.
    """
    if not config.get("Enabled", True):  # Firehose keeps the configuration, converts nothing
        return {"record_format": "raw"}
    serializer = (config.get("OutputFormatConfiguration") or {}).get("Serializer") or {}
    if set(serializer) != {"ParquetSerDe"}:
        raise AwsError(
            "InvalidArgumentException",
            "DataFormatConversionConfiguration: OutputFormatConfiguration.Serializer must be "
            "ParquetSerDe (OrcSerDe is not supported)",
        )
    deserializer = (config.get("InputFormatConfiguration") or {}).get("Deserializer") or {}
    if len(deserializer) > 1:
        raise AwsError("InvalidArgumentException", "Deserializer: one of OpenX and Hive, not both")
    out: dict[str, Any] = {
        "record_format": "parquet",
        "parquet_compression": serializer["ParquetSerDe"].get("Compression", "SNAPPY"),
        "parquet_schema": None,
    }
    table = (config.get("SchemaConfiguration") or {}).get("TableName")
    if table is not None:
        if not (table.lower().startswith("struct<") and table.endswith(">")):
            raise AwsError(
                "InvalidArgumentException",
                f"SchemaConfiguration.TableName {table!r}: there is no Glue Data Catalog here; "
                "give the columns as 'struct<name:type,...>' (Hive types), or leave "
                "SchemaConfiguration out to infer each batch's schema",
            )
        out["parquet_schema"] = _struct_columns(table)
    return out


def _struct_columns(text: str) -> list[tuple[str, str]]:
    """The top-level (name, type) pairs of `struct<a:int,b:map<string,int>>`."""
    inner = text[len("struct<") : -1]
    columns: list[tuple[str, str]] = []
    depth = start = 0
    for i, char in enumerate(inner + ","):
        if char in "<(":
            depth += 1
        elif char in ">)":
            depth -= 1
        elif char == "," and depth == 0:
            name, colon, type_ = inner[start:i].partition(":")
            if not colon or not name.strip():
                raise AwsError("InvalidArgumentException", f"TableName {text!r}: not name:type")
            columns.append((name.strip(), type_.strip()))
            start = i + 1
    return columns


def _conversion_description(d: DeliveryStreamDescription) -> dict[str, Any]:
    conversion: dict[str, Any] = {
        "Enabled": True,
        "InputFormatConfiguration": {"Deserializer": {"OpenXJsonSerDe": {}}},
        "OutputFormatConfiguration": {
            "Serializer": {"ParquetSerDe": {"Compression": d.parquet_compression}}
        },
    }
    if isinstance(d.parquet_schema, list):  # a pyarrow.Schema set by the library has no form
        columns = ",".join(f"{name}:{type_}" for name, type_ in d.parquet_schema)
        conversion["SchemaConfiguration"] = {"TableName": f"struct<{columns}>"}
    return conversion


def _destination_config(request: Mapping[str, Any]) -> Mapping[str, Any]:
    for key in ("ExtendedS3DestinationConfiguration", "S3DestinationConfiguration"):
        if key in request:
            config: Mapping[str, Any] = request[key]
            return config
    raise AwsError("InvalidArgumentException", "an S3 destination configuration is required")


def create_delivery_stream(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    name = request["DeliveryStreamName"]
    kind = request.get("DeliveryStreamType", "DirectPut")
    source = "direct"
    if kind == "KinesisStreamAsSource":
        arn = request.get("KinesisStreamSourceConfiguration", {}).get("KinesisStreamARN", "")
        if ":stream/" not in arn:
            raise AwsError("InvalidArgumentException", "KinesisStreamARN is required")
        source = arn.split(":stream/", 1)[1]
    elif kind != "DirectPut":
        raise AwsError("InvalidArgumentException", f"DeliveryStreamType {kind!r}: unsupported")
    settings = _settings(_destination_config(request))
    tags = _tags(request.get("Tags") or [])
    ctx.store.create_delivery_stream(name, source=source, tags=tags, **settings)
    return {"DeliveryStreamARN": _arn(ctx, name)}


def delete_delivery_stream(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    ctx.store.delete_delivery_stream(request["DeliveryStreamName"])
    return {}


def describe_delivery_stream(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    ds = ctx.store.delivery_stream(request["DeliveryStreamName"])
    d = ds.describe()
    destination: dict[str, Any] = {
        "RoleARN": f"arn:aws:iam::{ctx.account_id}:role/tidelog",
        "BucketARN": f"arn:aws:s3:::{d.destination.get('bucket', '')}",
        "Prefix": d.prefix,
        "ErrorOutputPrefix": d.error_output_prefix,
        "BufferingHints": {
            "SizeInMBs": d.buffering_size_mib,
            "IntervalInSeconds": d.buffering_interval,
        },
        "CompressionFormat": d.compression,
        "EncryptionConfiguration": {"NoEncryptionConfig": "NoEncryption"},
    }
    if d.record_format == "parquet":
        destination["DataFormatConversionConfiguration"] = _conversion_description(d)
    if d.newline_delimiter:
        destination["ProcessingConfiguration"] = {
            "Enabled": True,
            "Processors": [{"Type": "AppendDelimiterToRecord"}],
        }
    description: dict[str, Any] = {
        "DeliveryStreamName": d.name,
        "DeliveryStreamARN": _arn(ctx, d.name),
        "DeliveryStreamStatus": "ACTIVE",
        "DeliveryStreamType": "DirectPut" if d.source == "direct" else "KinesisStreamAsSource",
        "VersionId": str(d.version),
        "CreateTimestamp": d.created_ms / 1000,
        "Destinations": [
            {
                "DestinationId": DESTINATION_ID,
                "S3DestinationDescription": destination,
                "ExtendedS3DestinationDescription": destination,
            }
        ],
        "HasMoreDestinations": False,
    }
    if d.source != "direct":
        description["Source"] = {
            "KinesisStreamSourceDescription": {
                "KinesisStreamARN": ctx.stream_arn(d.source),
                "RoleARN": f"arn:aws:iam::{ctx.account_id}:role/tidelog",
            }
        }
    return {"DeliveryStreamDescription": description}


def list_delivery_streams(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    limit = request.get("Limit") or LIST_LIMIT_DEFAULT
    after = request.get("ExclusiveStartDeliveryStreamName")
    kind = request.get("DeliveryStreamType")
    names = []
    for ds in ctx.store.delivery_streams():
        if after is not None and ds.name <= after:
            continue
        if kind is not None:
            direct = ds.describe().source == "direct"
            if direct != (kind == "DirectPut"):
                continue
        names.append(ds.name)
    return {"DeliveryStreamNames": names[:limit], "HasMoreDeliveryStreams": len(names) > limit}


def put_record(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    ds = ctx.store.delivery_stream(request["DeliveryStreamName"])
    result = ds.put_record(base64.b64decode(request["Record"]["Data"]))
    return {"RecordId": result.record_id, "Encrypted": False}


def put_record_batch(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    ds = ctx.store.delivery_stream(request["DeliveryStreamName"])
    results = ds.put_record_batch([base64.b64decode(r["Data"]) for r in request["Records"]])
    responses = [
        {"RecordId": r.record_id}
        if r.error_code is None
        else {"ErrorCode": r.error_code, "ErrorMessage": r.error_message or ""}
        for r in results
    ]
    failed = sum(r.error_code is not None for r in results)
    return {"FailedPutCount": failed, "Encrypted": False, "RequestResponses": responses}


def update_destination(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    ds = ctx.store.delivery_stream(request["DeliveryStreamName"])
    if request.get("DestinationId") != DESTINATION_ID:
        raise AwsError("InvalidArgumentException", f"DestinationId: not {DESTINATION_ID}")
    update = request.get("ExtendedS3DestinationUpdate") or request.get("S3DestinationUpdate")
    if update is None:
        raise AwsError("InvalidArgumentException", "an S3 destination update is required")
    version = request["CurrentDeliveryStreamVersionId"]
    # ASCII digits only ("²" passes str.isdigit() and fails int()), of a size
    # a version can have: anything else is simply not the current version.
    if not _VERSION_ID.fullmatch(version) or int(version) != ds.describe().version:
        raise AwsError(
            "ConcurrentModificationException",
            f"CurrentDeliveryStreamVersionId {version!r} is not the current version",
        )
    try:
        ds.update_destination(current_version=int(version), **_settings(update))
    except tidelog.InvalidArgument as exc:
        if "version" in str(exc):
            raise AwsError("ConcurrentModificationException", str(exc)) from None
        raise
    return {}


# -- tags: kept in the delivery stream's configuration --------------------------------------------


def _tags(tags: list[dict[str, Any]]) -> dict[str, str]:
    """A request's Tags (Value is optional) as a dict; the library checks them."""
    return {t["Key"]: t.get("Value") or "" for t in tags}


def tag_delivery_stream(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    ds = ctx.store.delivery_stream(request["DeliveryStreamName"])
    ds.tag(_tags(request["Tags"]))
    return {}


def untag_delivery_stream(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    keys = request["TagKeys"]
    if not 1 <= len(keys) <= TAGS_MAX:
        raise AwsError("InvalidArgumentException", f"TagKeys: 1-{TAGS_MAX} keys")
    ctx.store.delivery_stream(request["DeliveryStreamName"]).untag(list(keys))
    return {}


def list_tags_for_delivery_stream(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    limit = TAGS_MAX if request.get("Limit") is None else request["Limit"]
    if not 1 <= limit <= TAGS_MAX:
        raise AwsError("InvalidArgumentException", f"Limit: {limit} is not 1-{TAGS_MAX}")
    tags = ctx.store.delivery_stream(request["DeliveryStreamName"]).tags()
    page, more = tags_page(tags, request.get("ExclusiveStartTagKey"), limit)
    return {"Tags": [{"Key": k, "Value": v} for k, v in page], "HasMoreTags": more}


HANDLERS: dict[str, Handler] = {
    "CreateDeliveryStream": create_delivery_stream,
    "DeleteDeliveryStream": delete_delivery_stream,
    "DescribeDeliveryStream": describe_delivery_stream,
    "ListDeliveryStreams": list_delivery_streams,
    "PutRecord": put_record,
    "PutRecordBatch": put_record_batch,
    "UpdateDestination": update_destination,
    "TagDeliveryStream": tag_delivery_stream,
    "UntagDeliveryStream": untag_delivery_stream,
    "ListTagsForDeliveryStream": list_tags_for_delivery_stream,
}
