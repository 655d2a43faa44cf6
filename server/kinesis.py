"""Kinesis Data Streams over AWS JSON 1.1 (X-Amz-Target: Kinesis_20131202.<Op>).

Maps onto tidelog.Stream. Blobs travel as base64 and timestamps as epoch
seconds, as botocore sends and parses them. GetRecords carries only an
iterator, so the wire iterator is `<stream name>:<library iterator>` (stream
names cannot hold ':'); the library iterator inside stays opaque and signed.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

import tidelog
from tidelog import stream_admin
from tidelog.server import eventstream
from tidelog.server.context import Context
from tidelog.server.errors import AwsError, kinesis_error
from tidelog.stream_admin import ON_DEMAND_STREAMS_MAX, STREAM_MODES, LimitExceeded
from tidelog.stream_subscriptions import ShardSubscription, SubscriptionEvent, SubscriptionInUse
from tidelog.streams import RETENTION_HOURS_MAX, RETENTION_HOURS_MIN, ShardDescription
from tidelog.tags import tags_page

Handler = Callable[[Context, dict[str, Any]], Any]  # a dict, or a StreamingResult

SHARDS_DEFAULT = 4  # what Kinesis gives an ON_DEMAND stream created without ShardCount
LIST_LIMIT_DEFAULT = 100
LIST_SHARDS_LIMIT_MAX = 10_000


def _stream_name(request: Mapping[str, Any]) -> str:
    name = request.get("StreamName")
    if name:
        return str(name)
    arn = request.get("StreamARN")
    if isinstance(arn, str) and ":stream/" in arn:
        return arn.split(":stream/", 1)[1]
    raise AwsError("ValidationException", "StreamName or StreamARN is required")


def _stream(ctx: Context, request: Mapping[str, Any]) -> tidelog.Stream:
    return ctx.store.stream(_stream_name(request))


def _settings(stream: tidelog.Stream) -> dict[str, Any]:
    """What DescribeStream(Summary) reports of monitoring and encryption."""
    encryption, key_id = stream_admin.stream_encryption(stream)
    out: dict[str, Any] = {
        "EnhancedMonitoring": [{"ShardLevelMetrics": stream_admin.shard_level_metrics(stream)}],
        "EncryptionType": encryption,
    }
    if key_id is not None:
        out["KeyId"] = key_id
    return out


def _shard(shard: ShardDescription) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ShardId": shard.shard_id,
        "HashKeyRange": {
            "StartingHashKey": str(shard.starting_hash_key),
            "EndingHashKey": str(shard.ending_hash_key),
        },
        "SequenceNumberRange": {"StartingSequenceNumber": shard.starting_sequence_number},
    }
    if shard.ending_sequence_number is not None:
        out["SequenceNumberRange"]["EndingSequenceNumber"] = shard.ending_sequence_number
    if shard.parent_shard_id:
        out["ParentShardId"] = shard.parent_shard_id
    if shard.adjacent_parent_shard_id:
        out["AdjacentParentShardId"] = shard.adjacent_parent_shard_id
    return out


def _shards_after(shards: list[ShardDescription], after: str | None) -> list[ShardDescription]:
    return [s for s in shards if after is None or s.shard_id > after]


# -- streams --------------------------------------------------------------------------------------


def create_stream(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    shards = request.get("ShardCount") or SHARDS_DEFAULT
    size_kib = request.get("MaxRecordSizeInKiB")
    options: dict[str, Any] = {}
    if size_kib is not None:
        options["max_record_bytes"] = size_kib * 1024
    mode = _requested_mode(ctx, request.get("StreamModeDetails"), new=True)
    stream = ctx.store.create_stream(request["StreamName"], shards, **options)
    if mode != "PROVISIONED":
        _set_mode(stream, mode)
    if request.get("Tags"):
        stream.tag(request["Tags"])
    return {}


def delete_stream(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    ctx.store.delete_stream(_stream_name(request))
    return {}


def describe_stream(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    stream = _stream(ctx, request)
    description = stream.describe()
    limit = request.get("Limit") or LIST_LIMIT_DEFAULT
    shards = _shards_after(list(description.shards), request.get("ExclusiveStartShardId"))
    return {
        "StreamDescription": {
            "StreamName": stream.name,
            "StreamARN": ctx.stream_arn(stream.name),
            "StreamStatus": description.status,
            "StreamModeDetails": {"StreamMode": stream.mode},
            "Shards": [_shard(s) for s in shards[:limit]],
            "HasMoreShards": len(shards) > limit,
            "RetentionPeriodHours": description.retention_hours,
            "StreamCreationTimestamp": description.created_ms / 1000,
            **_settings(stream),
        }
    }


def describe_stream_summary(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    stream = _stream(ctx, request)
    description = stream.describe()
    return {
        "StreamDescriptionSummary": {
            "StreamName": stream.name,
            "StreamARN": ctx.stream_arn(stream.name),
            "StreamStatus": description.status,
            "StreamModeDetails": {"StreamMode": stream.mode},
            "RetentionPeriodHours": description.retention_hours,
            "StreamCreationTimestamp": description.created_ms / 1000,
            **_settings(stream),
            "OpenShardCount": description.open_shard_count,
            "ConsumerCount": len(stream.consumers()),
            "MaxRecordSizeInKiB": description.max_record_bytes // 1024,
        }
    }


def list_streams(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    limit = request.get("Limit") or LIST_LIMIT_DEFAULT
    after = request.get("ExclusiveStartStreamName")
    token = request.get("NextToken")
    if token:
        after = _decode_token(token)
    streams = sorted(ctx.store.streams(), key=lambda s: s.name)
    streams = [s for s in streams if after is None or s.name > after]
    page = streams[:limit]
    more = len(streams) > limit
    out: dict[str, Any] = {
        "StreamNames": [s.name for s in page],
        "HasMoreStreams": more,
        "StreamSummaries": [
            {
                "StreamName": s.name,
                "StreamARN": ctx.stream_arn(s.name),
                "StreamStatus": "ACTIVE",
                "StreamModeDetails": {"StreamMode": s.mode},
            }
            for s in page
        ],
    }
    if more:
        out["NextToken"] = _encode_token(page[-1].name)
    return out


def _encode_token(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode()


def _decode_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except ValueError:
        raise AwsError(
            "InvalidArgumentException", "NextToken: not a token of this endpoint"
        ) from None


# -- ListShards' filters, capacity modes, limits, retention (engine/stream_admin.py) ------------


def _shards_token(token: str) -> dict[str, Any]:
    """A ListShards NextToken: the stream, the last shard listed and the filter."""
    try:
        state = json.loads(_decode_token(token))
        if not isinstance(state, dict) or not isinstance(state.get("stream"), str):
            raise ValueError(state)
    except ValueError:
        raise AwsError(
            "InvalidArgumentException", "NextToken: not a ListShards token of this endpoint"
        ) from None
    return state


def list_shards(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    token = request.get("NextToken")
    if token:
        state = _shards_token(token)
        stream = ctx.store.stream(state["stream"])
        after, shard_filter = state.get("after") or "", state.get("filter") or {}
    else:
        stream = _stream(ctx, request)
        after = request.get("ExclusiveStartShardId") or ""
        shard_filter = request.get("ShardFilter") or {}
    limit = request.get("MaxResults") or LIST_SHARDS_LIMIT_MAX
    shards = stream.list_shards(
        shard_filter.get("Type") or "FROM_TRIM_HORIZON",
        shard_id=shard_filter.get("ShardId"),
        timestamp=shard_filter.get("Timestamp"),
    )
    shards = _shards_after(shards, after or None)
    page = shards[:limit]
    out: dict[str, Any] = {"Shards": [_shard(s) for s in page]}
    if len(shards) > limit:
        state = {"stream": stream.name, "after": page[-1].shard_id, "filter": shard_filter}
        out["NextToken"] = _encode_token(json.dumps(state))
    return out


def _requested_mode(ctx: Context, details: Mapping[str, Any] | None, new: bool) -> str:
    """The StreamMode asked for; for a new stream, the on-demand limit checked first
    (the library checks it when an existing stream switches)."""
    mode = str((details or {}).get("StreamMode") or "PROVISIONED")
    if mode not in STREAM_MODES:
        raise AwsError("ValidationException", f"StreamMode: {mode!r} is not one of {STREAM_MODES}")
    if (
        new
        and mode == "ON_DEMAND"
        and ctx.store.stream_limits().on_demand_stream_count >= (ON_DEMAND_STREAMS_MAX)
    ):
        raise AwsError(
            "LimitExceededException",
            f"This request would exceed the limit of {ON_DEMAND_STREAMS_MAX} on-demand streams",
        )
    return mode


def _set_mode(stream: tidelog.Stream, mode: str) -> None:
    try:
        stream.set_mode(mode)
    except LimitExceeded as exc:
        raise AwsError("LimitExceededException", str(exc)) from None


def update_stream_mode(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    stream = _stream(ctx, {"StreamARN": request["StreamARN"]})
    mode = _requested_mode(ctx, request["StreamModeDetails"], new=False)
    _set_mode(stream, mode)
    return {}


def describe_limits(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    limits = ctx.store.stream_limits()
    return {
        "ShardLimit": limits.shard_limit,
        "OpenShardCount": limits.open_shard_count,
        "OnDemandStreamCount": limits.on_demand_stream_count,
        "OnDemandStreamCountLimit": limits.on_demand_stream_count_limit,
    }


def _retention(ctx: Context, request: dict[str, Any], increase: bool) -> dict[str, Any]:
    """Increase/DecreaseStreamRetentionPeriod, with Kinesis's limits and texts."""
    stream = _stream(ctx, request)
    hours = request["RetentionPeriodHours"]
    if hours < RETENTION_HOURS_MIN:
        raise AwsError(
            "InvalidArgumentException",
            f"Minimum allowed retention period is {RETENTION_HOURS_MIN} hours. Requested "
            f"retention period ({hours} hours) is too short.",
        )
    if hours > RETENTION_HOURS_MAX:
        raise AwsError(
            "InvalidArgumentException",
            f"Maximum allowed retention period is {RETENTION_HOURS_MAX} hours. Requested "
            f"retention period ({hours} hours) is too long.",
        )
    current = stream.retention_hours
    if increase and hours < current:
        raise AwsError(
            "InvalidArgumentException",
            f"Requested retention period ({hours} hours) for stream {stream.name} can not be "
            f"shorter than existing retention period ({current} hours). Use "
            "DecreaseRetentionPeriod API.",
        )
    if not increase and hours > current:
        raise AwsError(
            "InvalidArgumentException",
            f"Requested retention period ({hours} hours) for stream {stream.name} can not be "
            f"longer than existing retention period ({current} hours). Use "
            "IncreaseRetentionPeriod API.",
        )
    stream.set_retention_hours(hours)
    return {}


def increase_stream_retention_period(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    return _retention(ctx, request, True)


def decrease_stream_retention_period(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    return _retention(ctx, request, False)


# -- records --------------------------------------------------------------------------------------


def _partition_key(record: Mapping[str, Any], where: str) -> Any:
    # botocore's current model leaves PartitionKey optional; Kinesis needs one.
    key = record.get("PartitionKey")
    if key is None:
        raise AwsError(
            "ValidationException",
            f"1 validation error detected: Value null at '{where}' failed to satisfy "
            "constraint: Member must not be null",
        )
    return key


def put_record(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    stream = _stream(ctx, request)
    result = stream.put(
        base64.b64decode(request["Data"]),
        _partition_key(request, "partitionKey"),
        request.get("ExplicitHashKey"),
    )
    return {
        "ShardId": result.shard_id,
        "SequenceNumber": result.sequence_number,
        "EncryptionType": "NONE",
    }


def put_records(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    stream = _stream(ctx, request)
    if len(request["Records"]) > RECORDS_MAX:
        raise kinesis_error("ValidationException#LengthMax", where="records", max=RECORDS_MAX)
    limit = stream.describe().max_record_bytes
    for i, record in enumerate(request["Records"]):
        if len(record["Data"]) * 3 // 4 > limit and len(base64.b64decode(record["Data"])) > limit:
            where = f"records.{i + 1}.member.data"
            raise kinesis_error("ValidationException#LengthMax", where=where, max=limit)
    records = [
        (
            base64.b64decode(r["Data"]),
            _partition_key(r, f"records.{i + 1}.member.partitionKey"),
            r.get("ExplicitHashKey"),
        )
        for i, r in enumerate(request["Records"])
    ]
    result = stream.put_many(records)
    entries: list[dict[str, Any]] = []
    for item in result:
        if item.ok:
            entries.append({"SequenceNumber": item.sequence_number, "ShardId": item.shard_id})
        else:
            code = item.error_code or "InternalFailure"
            entries.append(
                {
                    "ErrorCode": code if code.endswith("Exception") else f"{code}Exception",
                    "ErrorMessage": item.error_message or "",
                }
            )
    return {
        "FailedRecordCount": result.failed_record_count,
        "Records": entries,
        "EncryptionType": "NONE",
    }


def get_shard_iterator(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    stream = _stream(ctx, request)
    iterator = stream.get_shard_iterator(
        request["ShardId"],
        request["ShardIteratorType"],
        sequence_number=request.get("StartingSequenceNumber"),
        timestamp=request.get("Timestamp"),
    )
    return {"ShardIterator": f"{stream.name}:{iterator}"}


def get_records(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    name, _, iterator = str(request["ShardIterator"]).partition(":")
    if not iterator:
        raise AwsError(
            "InvalidArgumentException", "ShardIterator: not an iterator of this endpoint"
        )
    stream = ctx.store.stream(name)
    result = stream.get_records(iterator, request.get("Limit") or 10_000)
    out: dict[str, Any] = {
        "Records": [
            {
                "SequenceNumber": r.sequence_number,
                "ApproximateArrivalTimestamp": r.arrival_timestamp_ms / 1000,
                "Data": base64.b64encode(r.data).decode(),
                "PartitionKey": r.partition_key,
            }
            for r in result.records
        ],
        "MillisBehindLatest": result.millis_behind_latest,
    }
    if result.next_shard_iterator is not None:
        out["NextShardIterator"] = f"{name}:{result.next_shard_iterator}"
    if result.child_shards:
        by_id = {s.shard_id: s for s in stream.describe().shards}
        out["ChildShards"] = [
            {
                "ShardId": child,
                "ParentShards": list(by_id[child].parent_shard_ids),
                "HashKeyRange": _shard(by_id[child])["HashKeyRange"],
            }
            for child in result.child_shards
            if child in by_id
        ]
    return out


# -- resharding -----------------------------------------------------------------------------------


_SHARD_ID_PATTERN = re.compile(r"[a-zA-Z0-9_.-]+")
_HASH_KEY_PATTERN = re.compile(r"0|([1-9]\d{0,38})")
RECORDS_MAX = 500  # PutRecords' entries


def _check_pattern(value: str, pattern: re.Pattern[str], where: str) -> None:
    """Kinesis's request validation of a modeled pattern, in its words."""
    if not pattern.fullmatch(value):
        raise kinesis_error(
            "ValidationException#Pattern", value=value, where=where, pattern=pattern.pattern
        )


def split_shard(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    _check_pattern(request["ShardToSplit"], _SHARD_ID_PATTERN, "shardToSplit")
    _check_pattern(request["NewStartingHashKey"], _HASH_KEY_PATTERN, "newStartingHashKey")
    stream = _stream(ctx, request)
    try:
        stream.split_shard(request["ShardToSplit"], request["NewStartingHashKey"])
    except tidelog.InvalidArgument as exc:
        if not str(exc).startswith("split_shard: new_starting_hash_key"):
            raise
        # Kinesis names the shard's range as DescribeStream reports it (inclusive end).
        shard = next(s for s in stream.describe().shards if s.shard_id == request["ShardToSplit"])
        raise kinesis_error(
            "InvalidArgumentException#SplitKey",
            hash_key=request["NewStartingHashKey"],
            shard=shard.shard_id,
            stream=stream.name,
            account=ctx.account_id,
            start=shard.starting_hash_key,
            end=shard.ending_hash_key,
        ) from None
    return {}


def merge_shards(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    _stream(ctx, request).merge_shards(request["ShardToMerge"], request["AdjacentShardToMerge"])
    return {}


def update_shard_count(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    stream = _stream(ctx, request)
    if stream.mode == "ON_DEMAND":
        raise kinesis_error(
            "ValidationException#OnDemand", stream=stream.name, account=ctx.account_id
        )
    if request["ScalingType"] != "UNIFORM_SCALING":
        raise AwsError("ValidationException", "ScalingType: must be UNIFORM_SCALING")
    current = stream.describe().open_shard_count
    target = request["TargetShardCount"]
    stream.update_shard_count(target)
    return {
        "StreamName": stream.name,
        "StreamARN": ctx.stream_arn(stream.name),
        "CurrentShardCount": current,
        "TargetShardCount": target,
    }


# -- consumers: the library's named consumers (checkpoints in the store) --------------------------

CONSUMERS_PAGE_MAX = 10_000


def _consumer_arn(ctx: Context, stream: str, consumer: str, registered_ms: int) -> str:
    return f"{ctx.stream_arn(stream)}/consumer/{consumer}:{registered_ms // 1000}"


def _consumer_of(ctx: Context, request: Mapping[str, Any]) -> tuple[tidelog.Stream, str]:
    """The stream and consumer name a request names, by ConsumerARN or StreamARN + name."""
    arn = request.get("ConsumerARN")
    if arn:
        if not isinstance(arn, str) or ":stream/" not in arn or "/consumer/" not in arn:
            raise kinesis_error(
                "ResourceNotFoundException#Consumer", consumer=arn, account=ctx.account_id
            )
        stream_part, consumer_part = arn.split(":stream/", 1)[1].split("/consumer/", 1)
        try:
            return ctx.store.stream(stream_part), consumer_part.rsplit(":", 1)[0]
        except tidelog.NotFound:
            raise kinesis_error(
                "ResourceNotFoundException#Consumer", consumer=arn, account=ctx.account_id
            ) from None
    if not request.get("StreamARN") or not request.get("ConsumerName"):
        raise AwsError(
            "InvalidArgumentException", "Give ConsumerARN, or StreamARN and ConsumerName"
        )
    return _stream(ctx, request), request["ConsumerName"]


def _consumer_description(ctx: Context, stream: tidelog.Stream, name: str) -> dict[str, Any]:
    registered_ms = stream.consumer_registered_ms(name)
    return {
        "ConsumerName": name,
        "ConsumerARN": _consumer_arn(ctx, stream.name, name, registered_ms),
        "ConsumerStatus": "ACTIVE",
        "ConsumerCreationTimestamp": registered_ms / 1000,
    }


def register_stream_consumer(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    stream = _stream(ctx, request)
    name = request["ConsumerName"]
    if name in stream.consumers():
        raise AwsError("ResourceInUseException", f"Consumer {name} of {stream.name} exists")
    stream.consumer(name)
    return {"Consumer": _consumer_description(ctx, stream, name)}


def describe_stream_consumer(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    stream, name = _consumer_of(ctx, request)
    description = _consumer_description(ctx, stream, name)
    description["StreamARN"] = ctx.stream_arn(stream.name)
    return {"ConsumerDescription": description}


def deregister_stream_consumer(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    stream, name = _consumer_of(ctx, request)
    stream.delete_consumer(name)
    return {}


def list_stream_consumers(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    stream = _stream(ctx, request)
    names = stream.consumers()
    token = request.get("NextToken")
    if token:
        after = _decode_token(token)
        names = [n for n in names if n > after]
    limit = request.get("MaxResults") or 100
    if not 1 <= limit <= CONSUMERS_PAGE_MAX:
        raise AwsError("InvalidArgumentException", f"MaxResults: 1-{CONSUMERS_PAGE_MAX}")
    page = names[:limit]
    out: dict[str, Any] = {"Consumers": [_consumer_description(ctx, stream, n) for n in page]}
    if len(names) > len(page):
        out["NextToken"] = _encode_token(page[-1])
    return out


# -- SubscribeToShard: enhanced fan-out as an event stream (server/eventstream.py) ---------------


def _subscribed_consumer(ctx: Context, arn: str) -> tidelog.Consumer:
    """The consumer a ConsumerARN names, its registration time included (an ARN of a
    consumer deregistered and registered again names no consumer, as on AWS)."""
    stream, name = _consumer_of(ctx, {"ConsumerARN": arn})
    registered_ms = stream.consumer_registered_ms(name)
    if (
        _consumer_arn(ctx, stream.name, name, registered_ms).split(":stream/", 1)[1]
        != (arn.split(":stream/", 1)[1])
    ):
        raise AwsError(
            "ResourceNotFoundException", f"Consumer {arn} not found (registered at another time)"
        )
    return tidelog.Consumer(stream, name)


def _subscription_start(position: Mapping[str, Any]) -> Any:
    kind = position["Type"]
    if kind in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"):
        if position.get("SequenceNumber") is None:
            raise AwsError(
                "InvalidArgumentException", f"StartingPosition: {kind} needs a SequenceNumber"
            )
        return (kind, position["SequenceNumber"])
    if kind == "AT_TIMESTAMP":
        if position.get("Timestamp") is None:
            raise AwsError(
                "InvalidArgumentException", "StartingPosition: AT_TIMESTAMP needs a Timestamp"
            )
        return (kind, position["Timestamp"])
    return kind


def _subscription_event(event: SubscriptionEvent) -> dict[str, Any]:
    out: dict[str, Any] = {
        "Records": [
            {
                "SequenceNumber": r.sequence_number,
                "ApproximateArrivalTimestamp": r.arrival_timestamp_ms / 1000,
                "Data": base64.b64encode(r.data).decode(),
                "PartitionKey": r.partition_key,
            }
            for r in event.records
        ],
        "ContinuationSequenceNumber": event.continuation_sequence_number,
        "MillisBehindLatest": event.millis_behind_latest,
    }
    if event.child_shards:
        out["ChildShards"] = [
            {
                "ShardId": child.shard_id,
                "ParentShards": list(child.parent_shard_ids),
                "HashKeyRange": _shard(child)["HashKeyRange"],
            }
            for child in event.child_shards
        ]
    return out


class _SubscriptionBody:
    """The event stream of one subscription: initial-response, then its events, then
    the end (or one exception message when it is taken over or its consumer goes)."""

    def __init__(self, subscription: ShardSubscription) -> None:
        self.subscription = subscription
        self.started = False
        self.finished = False

    def next_chunk(self, timeout: float) -> bytes | None:
        if not self.started:
            self.started = True
            return eventstream.event("initial-response", {})
        if self.finished:
            return None
        try:
            event = self.subscription.next_event(timeout)
        except SubscriptionInUse as exc:
            self.finished = True
            return eventstream.exception("ResourceInUseException", str(exc))
        except tidelog.NotFound as exc:
            self.finished = True
            return eventstream.exception("ResourceNotFoundException", str(exc))
        except tidelog.Error as exc:
            self.finished = True
            return eventstream.exception("InternalFailureException", str(exc))
        if event is None:
            return None if self.subscription.ended else b""
        return eventstream.event("SubscribeToShardEvent", _subscription_event(event))

    def close(self) -> None:
        self.subscription.close()


def subscribe_to_shard(ctx: Context, request: dict[str, Any]) -> eventstream.StreamingResult:
    consumer = _subscribed_consumer(ctx, request["ConsumerARN"])
    start = _subscription_start(request["StartingPosition"])
    subscription = consumer.subscribe(request["ShardId"], start)
    body = _SubscriptionBody(subscription)
    return eventstream.StreamingResult(eventstream.CONTENT_TYPE, body.next_chunk, body.close)


# -- tags: kept in the stream's configuration ------------------------------------------------------


def _stream_of_arn(ctx: Context, request: Mapping[str, Any]) -> tidelog.Stream:
    arn = request["ResourceARN"]
    if ":stream/" not in arn or "/consumer/" in arn:
        raise AwsError("InvalidArgumentException", f"ResourceARN: {arn!r} is not a stream ARN")
    return ctx.store.stream(arn.split(":stream/", 1)[1])


def add_tags_to_stream(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    _stream(ctx, request).tag(request["Tags"])
    return {}


def remove_tags_from_stream(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    _stream(ctx, request).untag(list(request["TagKeys"]))
    return {}


def list_tags_for_stream(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    tags = _stream(ctx, request).tags()
    page, more = tags_page(tags, request.get("ExclusiveStartTagKey"), request.get("Limit") or 50)
    return {"Tags": [{"Key": k, "Value": v} for k, v in page], "HasMoreTags": more}


def tag_resource(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    _stream_of_arn(ctx, request).tag(request["Tags"])
    return {}


def untag_resource(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    _stream_of_arn(ctx, request).untag(list(request["TagKeys"]))
    return {}


def list_tags_for_resource(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    tags = sorted(_stream_of_arn(ctx, request).tags().items())
    return {"Tags": [{"Key": k, "Value": v} for k, v in tags]}


# -- recorded settings: monitoring, encryption, resource policies ----------------------------------


def _monitoring(ctx: Context, request: dict[str, Any], enable: bool) -> dict[str, Any]:
    stream = _stream(ctx, request)
    before, after = stream_admin.change_shard_level_metrics(
        stream, request["ShardLevelMetrics"], enable=enable
    )
    return {
        "StreamName": stream.name,
        "StreamARN": ctx.stream_arn(stream.name),
        "CurrentShardLevelMetrics": before,
        "DesiredShardLevelMetrics": after,
    }


def enable_enhanced_monitoring(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    return _monitoring(ctx, request, True)


def disable_enhanced_monitoring(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    return _monitoring(ctx, request, False)


def start_stream_encryption(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    stream_admin.set_stream_encryption(
        _stream(ctx, request), request["EncryptionType"], request["KeyId"]
    )
    return {}


def stop_stream_encryption(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    stream_admin.set_stream_encryption(_stream(ctx, request), "NONE", None)
    return {}


def _policy_stream(ctx: Context, request: dict[str, Any]) -> tidelog.Stream:
    arn = request["ResourceARN"]
    if ":stream/" not in arn or "/consumer/" in arn:
        raise kinesis_error(
            "ResourceNotFoundException#StreamArn", stream=arn, account=ctx.account_id
        )
    try:
        return ctx.store.stream(arn.split(":stream/", 1)[1])
    except tidelog.NotFound:
        raise kinesis_error(
            "ResourceNotFoundException#StreamArn", stream=arn, account=ctx.account_id
        ) from None


def put_resource_policy(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    stream_admin.set_resource_policy(_policy_stream(ctx, request), request["Policy"])
    return {}


def get_resource_policy(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    policy = stream_admin.resource_policy(_policy_stream(ctx, request))
    return {"Policy": "{}" if policy is None else policy}


def delete_resource_policy(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    if not stream_admin.set_resource_policy(_policy_stream(ctx, request), None):
        raise kinesis_error("ResourceNotFoundException#NoPolicy", arn=request["ResourceARN"])
    return {}


HANDLERS: dict[str, Handler] = {
    "EnableEnhancedMonitoring": enable_enhanced_monitoring,
    "DisableEnhancedMonitoring": disable_enhanced_monitoring,
    "StartStreamEncryption": start_stream_encryption,
    "StopStreamEncryption": stop_stream_encryption,
    "PutResourcePolicy": put_resource_policy,
    "GetResourcePolicy": get_resource_policy,
    "DeleteResourcePolicy": delete_resource_policy,
    "RegisterStreamConsumer": register_stream_consumer,
    "DescribeStreamConsumer": describe_stream_consumer,
    "DeregisterStreamConsumer": deregister_stream_consumer,
    "ListStreamConsumers": list_stream_consumers,
    "SubscribeToShard": subscribe_to_shard,
    "AddTagsToStream": add_tags_to_stream,
    "RemoveTagsFromStream": remove_tags_from_stream,
    "ListTagsForStream": list_tags_for_stream,
    "TagResource": tag_resource,
    "UntagResource": untag_resource,
    "ListTagsForResource": list_tags_for_resource,
    "CreateStream": create_stream,
    "DeleteStream": delete_stream,
    "DescribeStream": describe_stream,
    "DescribeStreamSummary": describe_stream_summary,
    "ListStreams": list_streams,
    "ListShards": list_shards,
    "IncreaseStreamRetentionPeriod": increase_stream_retention_period,
    "DecreaseStreamRetentionPeriod": decrease_stream_retention_period,
    "PutRecord": put_record,
    "PutRecords": put_records,
    "GetShardIterator": get_shard_iterator,
    "GetRecords": get_records,
    "SplitShard": split_shard,
    "MergeShards": merge_shards,
    "UpdateShardCount": update_shard_count,
    "UpdateStreamMode": update_stream_mode,
    "DescribeLimits": describe_limits,
}
