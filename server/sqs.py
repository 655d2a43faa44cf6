"""SQS over AWS JSON 1.0 (X-Amz-Target: AmazonSQS.<Operation>), mapped onto tidelog.Queue.

Each handler takes the decoded request (already checked against botocore's
input shape) and returns the response structure. Engine calls block (long
polls included), so the app runs handlers in its thread pool.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import tidelog
from tidelog import json_limits, queues
from tidelog.catalog import FIFO_SUFFIX
from tidelog.queues import Message, md5_of_attributes, md5_of_body
from tidelog.server import model
from tidelog.server.context import Context, WouldWait
from tidelog.server.errors import from_library_sqs, sqs_error
from tidelog.server.xml_text import sqs_text

Handler = Callable[[Context, dict[str, Any]], dict[str, Any]]
AsyncHandler = Callable[[Context, dict[str, Any]], Awaitable[dict[str, Any]]]

# SQS attribute name -> create_queue keyword, and the values SQS takes for it.
_INT_ATTRIBUTES = {
    "VisibilityTimeout": "visibility_timeout",
    "DelaySeconds": "delay",
    "MessageRetentionPeriod": "retention",
    "MaximumMessageSize": "max_message_size",
    "ReceiveMessageWaitTimeSeconds": "receive_wait",
}
_ATTRIBUTE_RANGES = {
    "VisibilityTimeout": (0, queues.VISIBILITY_SECONDS_MAX),
    "DelaySeconds": (0, queues.DELAY_SECONDS_MAX),
    "MessageRetentionPeriod": (queues.RETENTION_SECONDS_MIN, queues.RETENTION_SECONDS_MAX),
    "MaximumMessageSize": (queues.MESSAGE_BYTES_MIN, queues.MESSAGE_BYTES_MAX),
    "ReceiveMessageWaitTimeSeconds": (0, queues.WAIT_SECONDS_MAX),
    "maxReceiveCount": (1, queues.MAX_RECEIVE_COUNT_MAX),
}
# Request members SQS bounds (its model gives no min/max): (low, high, AWS's reason).
# Batch entries' members are checked per entry by the library instead.
_PARAMETER_RANGES = {
    "MaxNumberOfMessages": (1, queues.BATCH_ENTRIES_MAX, "Must be between 1 and 10, if provided."),
    "WaitTimeSeconds": (0, queues.WAIT_SECONDS_MAX, "Must be >= 0 and <= 20, if provided."),
    "VisibilityTimeout": (
        0,
        queues.VISIBILITY_SECONDS_MAX,
        f"Must be >= 0 and <= {queues.VISIBILITY_SECONDS_MAX}, if provided.",
    ),
    "DelaySeconds": (
        0,
        queues.DELAY_SECONDS_MAX,
        f"DelaySeconds must be >= 0 and <= {queues.DELAY_SECONDS_MAX}.",
    ),
    "MaxResults": (1, 1000, "Must be between 1 and 1000, if provided."),
    "MaxNumberOfMessagesPerSecond": (
        1,
        queues.MOVE_RATE_MAX,
        f"Must be between 1 and {queues.MOVE_RATE_MAX}, if provided.",
    ),
}
# Accepted and not kept: tidelog has no access policies or encryption at rest.
# Attributes SQS reports back that the library has no field for: kept as given.
_KEPT_ATTRIBUTES = {
    "Policy",
    "RedriveAllowPolicy",
    "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds",
    "SqsManagedSseEnabled",
}
_SYSTEM_ATTRIBUTES = (
    "SenderId",
    "SentTimestamp",
    "ApproximateReceiveCount",
    "ApproximateFirstReceiveTimestamp",
    "SequenceNumber",
    "MessageDeduplicationId",
    "MessageGroupId",
)
SENDER_ID = "000000000000"
LIST_RESULTS_MAX = 1000
TAGS_MAX = 50  # SQS's tags per queue
# Every attribute GetQueueAttributes knows (others are refused as SQS refuses them).
QUEUE_ATTRIBUTE_NAMES = frozenset(
    {
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesDelayed",
        "ApproximateNumberOfMessagesNotVisible",
        "CreatedTimestamp",
        "DelaySeconds",
        "LastModifiedTimestamp",
        "MaximumMessageSize",
        "MessageRetentionPeriod",
        "Policy",
        "QueueArn",
        "ReceiveMessageWaitTimeSeconds",
        "RedrivePolicy",
        "RedriveAllowPolicy",
        "VisibilityTimeout",
        "KmsMasterKeyId",
        "KmsDataKeyReusePeriodSeconds",
        "SqsManagedSseEnabled",
        "FifoQueue",
        "ContentBasedDeduplication",
        "DeduplicationScope",
        "FifoThroughputLimit",
    }
)
POLICY_DEPTH_MAX = 8  # a RedrivePolicy is one flat object


def _queue_name(url: object) -> str:
    if not isinstance(url, str) or not url:
        raise sqs_error("InvalidAddress", "QueueUrl: must be a queue URL")
    return url.rstrip("/").rsplit("/", 1)[-1]


def _queue(ctx: Context, request: Mapping[str, Any]) -> tidelog.Queue:
    return ctx.store.queue(_queue_name(request.get("QueueUrl")))


def _name_of_arn(arn: object, what: str) -> str:
    if not isinstance(arn, str) or not arn.startswith("arn:") or arn.count(":") < 5:
        raise sqs_error("InvalidParameterValue", f"{what}: {arn!r} is not a queue ARN")
    return arn.rsplit(":", 1)[-1]


def _int_attribute(name: str, raw: object) -> int:
    """A queue attribute's integer (SQS sends them as text), in the attribute's range."""
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise sqs_error("InvalidAttributeValue", parameter=name)
    try:
        number = model.parse_number("integer", str(raw), name)
    except model.ShapeError:
        raise sqs_error("InvalidAttributeValue", parameter=name) from None
    low, high = _ATTRIBUTE_RANGES[name]
    if not isinstance(number, int) or not low <= number <= high:
        raise sqs_error("InvalidAttributeValue", parameter=name)
    return number


def _bool_attribute(name: str, raw: object) -> bool:
    text = str(raw).lower()
    if text not in ("true", "false"):
        raise sqs_error("InvalidAttributeValue", parameter=name)
    return text == "true"


def check_parameters(request: Mapping[str, Any]) -> None:
    """SQS's bounds on a request's numeric members, in AWS's words.

    The model checks their types (check_json; the query protocol's form
    text is typed first); the bounds live here, for every operation, since
    SQS's model has none. Zero is a value: MaxNumberOfMessages=0 is refused.
    """
    for name, (low, high, reason) in _PARAMETER_RANGES.items():
        value = request.get(name)
        if value is not None and not low <= value <= high:
            raise sqs_error("InvalidParameterValue", value=value, parameter=name, reason=reason)


def _library_attributes(attributes: Mapping[str, str], *, creating: bool) -> dict[str, Any]:
    """SQS queue attributes as create_queue / set_attributes keywords."""
    out: dict[str, Any] = {}
    for name, raw in attributes.items():
        if name in _INT_ATTRIBUTES:
            out[_INT_ATTRIBUTES[name]] = _int_attribute(name, raw)
        elif name == "RedrivePolicy":
            if raw == "":
                out["dead_letter"] = None
                continue
            try:
                policy = json_limits.loads(raw, POLICY_DEPTH_MAX)
                target = _name_of_arn(policy["deadLetterTargetArn"], "deadLetterTargetArn")
                count = _int_attribute("maxReceiveCount", policy["maxReceiveCount"])
            except (ValueError, KeyError, TypeError):
                raise sqs_error(
                    "InvalidAttributeValue",
                    "RedrivePolicy: must be JSON with deadLetterTargetArn and maxReceiveCount",
                ) from None
            out["dead_letter"] = (target, count)
        elif name == "FifoQueue":
            if not creating:
                raise sqs_error("InvalidAttributeName", "FifoQueue: cannot be changed")
            out["fifo"] = _bool_attribute(name, raw)
        elif name == "ContentBasedDeduplication":
            out["content_based_dedup"] = _bool_attribute(name, raw)
        elif name == "DeduplicationScope":
            out["dedup_scope"] = raw
        elif name == "FifoThroughputLimit":
            out["fifo_throughput_limit"] = raw
        elif name in _KEPT_ATTRIBUTES:
            out.setdefault("kept", {})[name] = raw
        else:
            raise sqs_error("InvalidAttributeName", attribute=name)
    return out


def _kept(ctx: Context, name: str) -> dict[str, str]:
    """The attributes kept beside the library's (server/sns_state.py's `sqs-state`)."""
    if ctx.sqs_state is None:
        return {}
    found = ctx.sqs_state.get(f"queue/{name}")
    return dict(found) if found else {}


def _keep(ctx: Context, name: str, changes: Mapping[str, str], *, replace: bool) -> None:
    if ctx.sqs_state is None:
        return
    before = _kept(ctx, name)
    if not changes and (not replace or not before):
        return  # nothing to write: no commit for the common queue without them
    kept = {} if replace else before
    for key, value in changes.items():
        if value == "":
            kept.pop(key, None)  # SQS removes an attribute set to ""
        else:
            kept[key] = value
    ctx.sqs_state.put(f"queue/{name}", kept or None)


# -- queues ---------------------------------------------------------------------------------------


def create_queue(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    name = request["QueueName"]
    options = _library_attributes(request.get("Attributes") or {}, creating=True)
    kept = options.pop("kept", {})
    existed = name in {q.name for q in ctx.store.queues(name)}
    queue = ctx.store.create_queue(name, exist_ok=True, **options)
    if not existed:
        _keep(ctx, name, kept, replace=True)
    if request.get("tags"):
        queue.tag(request["tags"])
    return {"QueueUrl": ctx.queue_url(name)}


def get_queue_url(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    queue = ctx.store.queue(request["QueueName"])
    return {"QueueUrl": ctx.queue_url(queue.name)}


def _page(ctx: Context, names: list[str], request: Mapping[str, Any], key: str) -> dict[str, Any]:
    limit = request.get("MaxResults")
    if limit is not None and not 1 <= limit <= LIST_RESULTS_MAX:
        raise sqs_error("InvalidParameterValue", "MaxResults: must be 1-1000")
    token = request.get("NextToken")
    if token:
        try:
            after = base64.urlsafe_b64decode(token.encode()).decode()
        except ValueError:
            raise sqs_error("InvalidParameterValue", "NextToken: invalid") from None
        names = [n for n in names if n > after]
    page = names[: limit or LIST_RESULTS_MAX]
    out: dict[str, Any] = {key: [ctx.queue_url(n) for n in page]}
    if limit is not None and len(names) > len(page):
        out["NextToken"] = base64.urlsafe_b64encode(page[-1].encode()).decode()
    return out


def list_queues(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    names = sorted(q.name for q in ctx.store.queues(request.get("QueueNamePrefix") or ""))
    return _page(ctx, names, request, "QueueUrls")


def delete_queue(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    name = _queue_name(request["QueueUrl"])
    ctx.store.delete_queue(name)
    _keep(ctx, name, {}, replace=True)
    return {}


def _queue_attributes(ctx: Context, queue: tidelog.Queue) -> dict[str, str]:
    data = queue.attributes()
    out = {
        "QueueArn": ctx.queue_arn(queue.name),
        "ApproximateNumberOfMessages": str(data["approximate_visible"]),
        "ApproximateNumberOfMessagesNotVisible": str(data["approximate_in_flight"]),
        "ApproximateNumberOfMessagesDelayed": str(data["approximate_delayed"]),
        "CreatedTimestamp": str(data.get("created_ms", 0) // 1000),
        "LastModifiedTimestamp": str(data.get("modified_ms", 0) // 1000),
        "SqsManagedSseEnabled": "false",
    }
    for wire, key in _INT_ATTRIBUTES.items():
        out[wire] = str(data[key])
    if data["dead_letter"]:
        target, count = data["dead_letter"]
        out["RedrivePolicy"] = json.dumps(
            {"deadLetterTargetArn": ctx.queue_arn(target), "maxReceiveCount": count},
            separators=(",", ":"),
        )
    if data.get("permissions"):
        out["Policy"] = _policy(ctx, queue.name, data["permissions"])
    out.update(_kept(ctx, queue.name))
    if data["fifo"]:
        out["FifoQueue"] = "true"
        out["ContentBasedDeduplication"] = "true" if data["content_based_dedup"] else "false"
        out["DeduplicationScope"] = data["dedup_scope"]
        out["FifoThroughputLimit"] = data["fifo_throughput_limit"]
    return out


def get_queue_attributes(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    queue = _queue(ctx, request)
    wanted = request.get("AttributeNames") or []
    for name in wanted:
        if name != "All" and name not in QUEUE_ATTRIBUTE_NAMES:
            raise sqs_error("InvalidAttributeName", attribute=name)
    everything = _queue_attributes(ctx, queue)
    if "All" in wanted:
        return {"Attributes": everything}
    chosen = {k: everything[k] for k in wanted if k in everything}
    return {"Attributes": chosen} if chosen else {}  # SQS leaves an empty map out


def set_queue_attributes(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    queue = _queue(ctx, request)
    changes = _library_attributes(request["Attributes"], creating=False)
    _keep(ctx, queue.name, changes.pop("kept", {}), replace=False)
    if changes:
        queue.set_attributes(**changes)
    return {}


def purge_queue(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    queue = _queue(ctx, request)
    try:
        queue.purge(min_interval=queues.PURGE_INTERVAL_SECONDS)
    except tidelog.InvalidArgument as exc:
        raise from_library_sqs(exc, queue=queue.name) from None
    return {}


def list_dead_letter_source_queues(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    name = _queue_name(request["QueueUrl"])
    names = sorted(q.name for q in ctx.store.dead_letter_source_queues(name))
    return _page(ctx, names, request, "queueUrls")


# -- messages -------------------------------------------------------------------------------------


def _message_attributes(raw: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """boto3's MessageAttributes, with Binary values decoded from the JSON's base64."""
    if not raw:
        return None
    out: dict[str, Any] = {}
    for name, value in raw.items():
        if "BinaryValue" in value:
            out[name] = {
                "DataType": value.get("DataType", ""),
                "BinaryValue": base64.b64decode(value["BinaryValue"]),
            }
        elif "StringListValues" in value or "BinaryListValues" in value:
            raise sqs_error("InvalidParameterValue", f"{name}: list values are not supported")
        else:
            out[name] = {
                "DataType": value.get("DataType", ""),
                "StringValue": value.get("StringValue", ""),
            }
    return out


def _sent(result: tidelog.SendResult) -> dict[str, Any]:
    out: dict[str, Any] = {"MessageId": result.id, "MD5OfMessageBody": result.md5_of_body}
    if result.md5_of_attributes:
        out["MD5OfMessageAttributes"] = result.md5_of_attributes
    if result.sequence_number is not None:
        out["SequenceNumber"] = result.sequence_number
    return out


def _missing_group(queue: tidelog.Queue, entry: Mapping[str, Any]) -> bool:
    # FIFO queue names end in .fifo (the library's rule), so no lookup is needed.
    return queue.name.endswith(FIFO_SUFFIX) and entry.get("MessageGroupId") is None


def _send_call(
    ctx: Context, request: dict[str, Any]
) -> tuple[tidelog.Queue, tuple[Any, ...], dict[str, Any]]:
    """The queue and the arguments of Queue.send (or send_async) for a SendMessage."""
    queue = _queue(ctx, request)
    if _missing_group(queue, request):
        raise sqs_error("MissingParameter", parameter="MessageGroupId")
    # The body goes to the library as text, which refuses what SQS refuses
    # (InvalidMessageContents) before it is encoded.
    args = (request["MessageBody"], _message_attributes(request.get("MessageAttributes")))
    kwargs = {
        "delay": request.get("DelaySeconds"),
        "group_id": request.get("MessageGroupId"),
        "dedup_id": request.get("MessageDeduplicationId"),
    }
    return queue, args, kwargs


def send_message(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    queue, args, kwargs = _send_call(ctx, request)
    return _sent(queue.send(*args, **kwargs))


async def send_message_async(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    """SendMessage on the event loop: the commit is awaited (Queue.send_async), so
    concurrent requests share group commits without a thread each."""
    queue, args, kwargs = _send_call(ctx, request)
    return _sent(await queue.send_async(*args, **kwargs))


def send_message_batch(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    queue = _queue(ctx, request)
    # An entry without a MessageGroupId on a FIFO queue fails alone, as
    # InvalidParameterValue (the library's per-entry code), as in SQS.
    entries = [
        {
            "id": entry["Id"],
            "body": entry["MessageBody"],
            "attributes": _message_attributes(entry.get("MessageAttributes")),
            "delay": entry.get("DelaySeconds"),
            "group_id": entry.get("MessageGroupId"),
            "dedup_id": entry.get("MessageDeduplicationId"),
        }
        for entry in request["Entries"]
    ]
    result = queue.send_many(entries)
    return {
        "Successful": [dict(_sent(sent), Id=entry_id) for entry_id, sent in result.successful],
        "Failed": _failures(result),
    }


def _failures(
    result: tidelog.BatchResult, receipts: Mapping[str, object] | None = None
) -> list[dict[str, Any]]:
    """A batch's failed entries, in AWS's words where the table has them."""
    out = []
    for f in result.failed:
        message = f.message
        if f.code == "InvalidMessageContents":
            message = sqs_error(f.code).message
        elif f.code == "ReceiptHandleIsInvalid" and receipts is not None:
            message = sqs_error(f.code, handle=receipts.get(f.entry_id)).message
        out.append(
            {"Id": f.entry_id, "SenderFault": f.sender_fault, "Code": f.code, "Message": message}
        )
    return out


def _wire_attribute(value: tidelog.AttributeValue) -> dict[str, Any]:
    if isinstance(value.value, bytes):
        return {
            "DataType": value.data_type,
            "BinaryValue": base64.b64encode(value.value).decode(),
        }
    return {"DataType": value.data_type, "StringValue": value.value}


def _system_attributes(message: Message, wanted: set[str]) -> dict[str, str]:
    every = {
        "SenderId": SENDER_ID,
        "SentTimestamp": str(message.sent_at_ms),
        "ApproximateReceiveCount": str(message.receive_count),
        "ApproximateFirstReceiveTimestamp": str(message.first_received_at_ms),
    }
    if message.sequence_number is not None:
        every["SequenceNumber"] = message.sequence_number
    if message.dedup_id is not None:
        every["MessageDeduplicationId"] = message.dedup_id
    if message.group_id is not None:
        every["MessageGroupId"] = message.group_id
    if "All" in wanted:
        return every
    return {k: v for k, v in every.items() if k in wanted}


def receive_message(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    queue = _queue(ctx, request)
    wanted = set(request.get("AttributeNames") or []) | set(
        request.get("MessageSystemAttributeNames") or []
    )
    max_messages = request.get("MaxNumberOfMessages")
    wait = request.get("WaitTimeSeconds")
    messages = queue.receive(
        1 if max_messages is None else max_messages,
        # On the event loop a long poll holds no thread: look once, and if
        # nothing is there the loop waits and asks again (server/long_poll.py).
        wait=0 if ctx.long_poll else wait,
        visibility_timeout=request.get("VisibilityTimeout"),
        attribute_names=list(request.get("MessageAttributeNames") or []),
    )
    if not messages and ctx.long_poll and not ctx.poll_final:
        seconds = queue.attributes()["receive_wait"] if wait is None else wait
        if seconds > 0:
            raise WouldWait(queue, seconds)
    out = []
    for message in messages:
        # SQS bodies are text; a body sent as bytes through the library or STOMP
        # arrives with U+FFFD for what is not UTF-8 or not SQS's characters
        # (which the query protocol's XML could not carry), digested as sent here.
        body = sqs_text(message.body.decode("utf-8", "replace"))
        item: dict[str, Any] = {
            "MessageId": message.id,
            "ReceiptHandle": message.receipt,
            "MD5OfBody": md5_of_body(body.encode()),
            "Body": body,
        }
        system = _system_attributes(message, wanted)
        if system:
            item["Attributes"] = system
        if message.typed_attributes:
            item["MessageAttributes"] = {
                name: _wire_attribute(value) for name, value in message.typed_attributes.items()
            }
            item["MD5OfMessageAttributes"] = md5_of_attributes(message.typed_attributes)
        out.append(item)
    return {"Messages": out} if out else {}


def delete_message(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    queue = _queue(ctx, request)
    try:
        queue.delete(request["ReceiptHandle"])
    except tidelog.InvalidArgument as exc:
        raise from_library_sqs(exc, handle=request["ReceiptHandle"]) from None
    return {}


def _receipts(request: Mapping[str, Any]) -> dict[str, object]:
    return {e["Id"]: e["ReceiptHandle"] for e in request["Entries"]}


def delete_message_batch(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    queue = _queue(ctx, request)
    result = queue.delete_many([(e["Id"], e["ReceiptHandle"]) for e in request["Entries"]])
    return {
        "Successful": [{"Id": entry_id} for entry_id, _ in result.successful],
        "Failed": _failures(result, _receipts(request)),
    }


def change_message_visibility(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    queue = _queue(ctx, request)
    try:
        queue.change_visibility(request["ReceiptHandle"], request["VisibilityTimeout"])
    except tidelog.InvalidArgument as exc:
        raise from_library_sqs(exc, handle=request["ReceiptHandle"]) from None
    return {}


def change_message_visibility_batch(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    queue = _queue(ctx, request)
    result = queue.change_visibility_many(
        [(e["Id"], e["ReceiptHandle"], e.get("VisibilityTimeout", 0)) for e in request["Entries"]]
    )
    return {
        "Successful": [{"Id": entry_id} for entry_id, _ in result.successful],
        "Failed": _failures(result, _receipts(request)),
    }


# -- message move tasks ---------------------------------------------------------------------------


def start_message_move_task(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    source = _name_of_arn(request["SourceArn"], "SourceArn")
    destination = request.get("DestinationArn")
    task = ctx.store.start_message_move_task(
        source,
        _name_of_arn(destination, "DestinationArn") if destination else None,
        max_messages_per_second=request.get("MaxNumberOfMessagesPerSecond"),
    )
    return {"TaskHandle": task.handle}


def cancel_message_move_task(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    task = ctx.store.cancel_message_move_task(request["TaskHandle"])
    return {"ApproximateNumberOfMessagesMoved": task.moved}


def list_message_move_tasks(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    source = _name_of_arn(request["SourceArn"], "SourceArn")
    ctx.store.queue(source)
    limit = request.get("MaxResults") or 1
    results = []
    for task in reversed(ctx.store.list_message_move_tasks(source)[-limit:]):
        entry: dict[str, Any] = {
            "Status": task.status,
            "SourceArn": ctx.queue_arn(task.source),
            "ApproximateNumberOfMessagesMoved": task.moved,
            "ApproximateNumberOfMessagesToMove": task.to_move,
        }
        if task.status == "RUNNING":
            entry["TaskHandle"] = task.handle
        if task.destination:
            entry["DestinationArn"] = ctx.queue_arn(task.destination)
        if task.max_messages_per_second:
            entry["MaxNumberOfMessagesPerSecond"] = task.max_messages_per_second
        if task.error:
            entry["FailureReason"] = task.error
        results.append(entry)
    return {"Results": results}


# -- tags and permissions: stored in the queue's configuration, not enforced ----------------------


def tag_queue(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    queue = _queue(ctx, request)
    if not request["Tags"]:
        raise sqs_error("MissingParameter#Tags")
    if len(request["Tags"]) > TAGS_MAX:
        raise sqs_error("InvalidParameterValue#TooManyTags", queue=queue.name)
    queue.tag(request["Tags"])
    return {}


def untag_queue(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    queue = _queue(ctx, request)
    if not request["TagKeys"]:
        raise sqs_error("InvalidParameterValue#TagKeys")
    queue.untag(list(request["TagKeys"]))
    return {}


def list_queue_tags(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    tags = _queue(ctx, request).tags()
    return {"Tags": tags} if tags else {}


def add_permission(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    actions = [a if a.startswith("SQS:") else f"SQS:{a}" for a in request["Actions"]]
    _queue(ctx, request).add_permission(request["Label"], request["AWSAccountIds"], actions)
    return {}


def remove_permission(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    _queue(ctx, request).remove_permission(request["Label"])
    return {}


def _policy(ctx: Context, name: str, permissions: Mapping[str, Any]) -> str:
    """The stored permissions as the Policy document SQS shows for AddPermission."""
    arn = ctx.queue_arn(name)
    statements = [
        {
            "Sid": label,
            "Effect": "Allow",
            "Principal": {"AWS": [f"arn:aws:iam::{a}:root" for a in entry["accounts"]]},
            "Action": entry["actions"],
            "Resource": arn,
        }
        for label, entry in sorted(permissions.items())
    ]
    return json.dumps(
        {"Version": "2012-10-17", "Id": f"{arn}/SQSDefaultPolicy", "Statement": statements},
        separators=(",", ":"),
    )


def _checked(handler: Handler) -> Handler:
    def checked(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
        check_parameters(request)
        return handler(ctx, request)

    checked.__name__ = handler.__name__
    checked.__doc__ = handler.__doc__
    return checked


_HANDLERS: dict[str, Handler] = {
    "CreateQueue": create_queue,
    "GetQueueUrl": get_queue_url,
    "ListQueues": list_queues,
    "DeleteQueue": delete_queue,
    "GetQueueAttributes": get_queue_attributes,
    "SetQueueAttributes": set_queue_attributes,
    "PurgeQueue": purge_queue,
    "ListDeadLetterSourceQueues": list_dead_letter_source_queues,
    "SendMessage": send_message,
    "SendMessageBatch": send_message_batch,
    "ReceiveMessage": receive_message,
    "DeleteMessage": delete_message,
    "DeleteMessageBatch": delete_message_batch,
    "ChangeMessageVisibility": change_message_visibility,
    "ChangeMessageVisibilityBatch": change_message_visibility_batch,
    "StartMessageMoveTask": start_message_move_task,
    "CancelMessageMoveTask": cancel_message_move_task,
    "ListMessageMoveTasks": list_message_move_tasks,
    "ListQueueTags": list_queue_tags,
    "TagQueue": tag_queue,
    "UntagQueue": untag_queue,
    "AddPermission": add_permission,
    "RemovePermission": remove_permission,
}
# Both protocols (JSON here, query in sqs_query.py) call these: each checks
# its request's bounds first.
HANDLERS: dict[str, Handler] = {name: _checked(h) for name, h in _HANDLERS.items()}


def _checked_async(handler: AsyncHandler) -> AsyncHandler:
    async def checked(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
        check_parameters(request)
        return await handler(ctx, request)

    checked.__name__ = handler.__name__
    return checked


# Served on the event loop by the JSON endpoint (server/app.py): the commit is
# awaited, not waited for in an executor thread.
ASYNC_HANDLERS: dict[str, AsyncHandler] = {"SendMessage": _checked_async(send_message_async)}

__all__ = ["ASYNC_HANDLERS", "HANDLERS"]
