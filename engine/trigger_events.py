"""The events a trigger hands its handler, in the shapes Lambda documents.

Pure functions: a received queue message, a stream record or an SNS
envelope in, the record dict of Lambda's `event["Records"]` out, with AWS's
key names, value types and order (docs/triggers.md, "Events"). Also the
filter documents FilterCriteria patterns are matched against, and the
failure record a stream trigger sends to its on-failure destination.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from tidelog.errors import InvalidArgument
from tidelog.queues import Message
from tidelog.streams import StreamRecord
from tidelog.topic_filters import FilterPolicy, body_view

REGION = "us-east-1"
ACCOUNT_ID = "000000000000"
SENDER_ID = "AIDAIENQZJOLO23YVJ4VO"  # the SenderId of AWS's sample events
INVOKE_IDENTITY_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/lambda-role"
FILTERS_MAX = 5  # Lambda's default quota of filters per event source mapping
PATTERN_CHARS_MAX = 4096  # Lambda's limit on one filter pattern


def queue_arn(name: str, region: str = REGION) -> str:
    return f"arn:aws:sqs:{region}:{ACCOUNT_ID}:{name}"


def stream_arn(name: str, region: str = REGION) -> str:
    return f"arn:aws:kinesis:{region}:{ACCOUNT_ID}:stream/{name}"


def topic_arn(name: str, region: str = REGION) -> str:
    return f"arn:aws:sns:{region}:{ACCOUNT_ID}:{name}"


def function_arn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}"


def iso_ms(ms: int) -> str:
    """2019-11-14T00:38:06.021Z, as Lambda writes timestamps in failure records."""
    stamp = datetime.fromtimestamp(ms / 1000, UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


# -- aws:sqs ----------------------------------------------------------------------------


def sqs_record(
    message: Message, queue_name: str, fifo: bool, region: str = REGION
) -> dict[str, Any]:
    """One record of an SQS event (AWS's "Example Amazon SQS message event")."""
    attributes = {
        "ApproximateReceiveCount": str(message.receive_count),
        "SentTimestamp": str(message.sent_at_ms),
        "SenderId": SENDER_ID,
        "ApproximateFirstReceiveTimestamp": str(message.first_received_at_ms),
    }
    if fifo:
        attributes["SequenceNumber"] = message.sequence_number or ""
        attributes["MessageGroupId"] = message.group_id or ""
        attributes["MessageDeduplicationId"] = message.dedup_id or ""
    message_attributes: dict[str, Any] = {}
    for name, typed in message.typed_attributes.items():
        entry: dict[str, Any]
        if isinstance(typed.value, bytes):
            entry = {"binaryValue": base64.b64encode(typed.value).decode()}
        else:
            entry = {"stringValue": typed.value}
        entry.update(stringListValues=[], binaryListValues=[], dataType=typed.data_type)
        message_attributes[name] = entry
    record: dict[str, Any] = {
        "messageId": message.id,
        "receiptHandle": message.receipt,
        "body": message.body.decode("utf-8", "replace"),
        "attributes": attributes,
        "messageAttributes": message_attributes,
        "md5OfBody": message.md5_of_body,
    }
    if message_attributes:
        record["md5OfMessageAttributes"] = message.md5_of_attributes
    record["eventSource"] = "aws:sqs"
    record["eventSourceARN"] = queue_arn(queue_name, region)
    record["awsRegion"] = region
    return record


# -- aws:kinesis ------------------------------------------------------------------------


def kinesis_record(record: StreamRecord, stream_name: str, region: str = REGION) -> dict[str, Any]:
    """One record of a Kinesis event (AWS's "Example Kinesis record event")."""
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": record.partition_key,
            "sequenceNumber": record.sequence_number,
            "data": base64.b64encode(record.data).decode(),
            "approximateArrivalTimestamp": record.arrival_timestamp_ms / 1000,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{record.shard_id}:{record.sequence_number}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": INVOKE_IDENTITY_ARN,
        "awsRegion": region,
        "eventSourceARN": stream_arn(stream_name, region),
    }


def kinesis_failure(
    *,
    request_id: str,
    function_name: str,
    condition: str,
    invoke_count: int,
    function_error: str | None,
    shard_id: str,
    records: Sequence[StreamRecord],
    stream_name: str,
    now_ms: int,
) -> dict[str, Any]:
    """What an on-failure destination receives for a discarded stream batch
    (AWS's "Example invocation record" for Kinesis). `condition` is
    RetryAttemptsExhausted or RecordAgeExceeded."""
    response: dict[str, Any] = {"statusCode": 200, "executedVersion": "$LATEST"}
    if function_error is not None:
        response["functionError"] = function_error
    return {
        "requestContext": {
            "requestId": request_id,
            "functionArn": function_arn(function_name),
            "condition": condition,
            "approximateInvokeCount": invoke_count,
        },
        "responseContext": response,
        "version": "1.0",
        "timestamp": iso_ms(now_ms),
        "KinesisBatchInfo": {
            "shardId": shard_id,
            "startSequenceNumber": records[0].sequence_number,
            "endSequenceNumber": records[-1].sequence_number,
            "approximateArrivalOfFirstRecord": iso_ms(records[0].arrival_timestamp_ms),
            "approximateArrivalOfLastRecord": iso_ms(records[-1].arrival_timestamp_ms),
            "batchSize": len(records),
            "streamArn": stream_arn(stream_name),
        },
    }


# -- aws:sns ----------------------------------------------------------------------------


def sns_record(envelope: Mapping[str, Any], subscription_arn: str) -> dict[str, Any]:
    """One record of an SNS event (AWS's "Example Amazon SNS message event"),
    from the JSON envelope SNS delivers to a queue."""
    return {
        "EventSource": "aws:sns",
        "EventVersion": "1.0",
        "EventSubscriptionArn": subscription_arn,
        "Sns": {
            "Type": envelope.get("Type", "Notification"),
            "MessageId": envelope["MessageId"],
            "TopicArn": envelope["TopicArn"],
            "Subject": envelope.get("Subject"),
            "Message": envelope["Message"],
            "Timestamp": envelope["Timestamp"],
            "SignatureVersion": envelope.get("SignatureVersion", "1"),
            "Signature": envelope.get("Signature", ""),
            "SigningCertUrl": envelope.get("SigningCertURL", ""),
            "UnsubscribeUrl": envelope.get("UnsubscribeURL", ""),
            "MessageAttributes": dict(envelope.get("MessageAttributes") or {}),
        },
    }


# -- FilterCriteria ---------------------------------------------------------------------


def compile_filters(criteria: Mapping[str, Any] | None) -> list[FilterPolicy]:
    """FilterCriteria ({"Filters": [{"Pattern": "<json>"}, ...]}) as compiled policies.

    Patterns are matched with SNS's filter-policy engine in body scope
    (engine/topic_filters.py): the operators Lambda's patterns use (exact
    values, prefix, suffix, anything-but, numeric, exists,
    equals-ignore-case) are the same. Raises InvalidArgument naming the
    broken pattern.
    """
    if not criteria:
        return []
    if not isinstance(criteria, Mapping):
        raise InvalidArgument("FilterCriteria: must be an object with Filters")
    filters = criteria.get("Filters") or []
    if not isinstance(filters, list) or len(filters) > FILTERS_MAX:
        raise InvalidArgument(f"FilterCriteria.Filters: a list of at most {FILTERS_MAX} filters")
    out = []
    for index, item in enumerate(filters):
        pattern = item.get("Pattern") if isinstance(item, Mapping) else None
        if not isinstance(pattern, str) or len(pattern) > PATTERN_CHARS_MAX:
            raise InvalidArgument(
                f"FilterCriteria.Filters.{index + 1}.Pattern: a JSON string of at most "
                f"{PATTERN_CHARS_MAX} characters"
            )
        try:
            out.append(FilterPolicy(pattern, "body"))
        except InvalidArgument as exc:
            raise InvalidArgument(
                f"Invalid filter pattern definition: FilterCriteria.Filters.{index + 1}: {exc}"
            ) from None
    return out


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def sqs_filter_document(record: Mapping[str, Any]) -> dict[str, Any]:
    """An SQS record as patterns see it: `body` parsed when it is JSON."""
    return dict(record, body=_json_or_text(record["body"]))


def kinesis_filter_document(record: Mapping[str, Any], data: bytes) -> dict[str, Any]:
    """A Kinesis record as patterns see it: the `kinesis` fields at the top and
    `data` decoded (JSON when it parses, else the base64 text, as Lambda)."""
    try:
        decoded: Any = json.loads(data)
    except ValueError:
        decoded = record["kinesis"]["data"]
    return dict(record["kinesis"], data=decoded)


def passes(filters: Sequence[FilterPolicy], document: Mapping[str, Any]) -> bool:
    """True if any filter matches (filters are ORed), or there are none."""
    if not filters:
        return True
    view = body_view(json.dumps(document))
    return any(policy.matches(view) for policy in filters)
