"""Shared pieces of the trigger tests: a handler module, waiting, and AWS's event shapes.

The handler module is written to a directory of the test's tmp_path and run
in real worker processes; each handler appends what it saw to the file named
by the OUT environment variable (one JSON object a line, fsynced, so a
SIGKILLed runner loses no line of an invocation that returned).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from helpers import read_complete_lines

HANDLER_SOURCE = r'''
import base64, json, os, signal, sys, time

OUT = os.environ["OUT"]


def _log(kind, **fields):
    line = json.dumps({"kind": kind, "pid": os.getpid(), **fields})
    with open(OUT, "a") as out:
        out.write(line + "\n")
        out.flush()
        os.fsync(out.fileno())


def _once(name):
    """True the first time `name` is asked for in this test (a marker file)."""
    marker = os.path.join(os.path.dirname(OUT), "once-" + name)
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def record(event, context):
    _log(
        "event",
        event=event,
        context={
            "aws_request_id": context.aws_request_id,
            "function_name": context.function_name,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "remaining_ms": context.get_remaining_time_in_millis(),
            "invoked_function_arn": context.invoked_function_arn,
        },
        env=os.environ.get("GREETING"),
    )
    return {"records": len(event.get("Records", []))}


def bodies(event, context):
    for r in event["Records"]:
        _log("body", body=r["body"], group=r["attributes"].get("MessageGroupId"),
             count=int(r["attributes"]["ApproximateReceiveCount"]))
    pause = float(os.environ.get("PAUSE", "0"))
    if pause:
        time.sleep(pause)


def partial(event, context):
    failed = []
    for r in event["Records"]:
        _log("body", body=r["body"], group=r["attributes"].get("MessageGroupId"),
             count=int(r["attributes"]["ApproximateReceiveCount"]))
        if r["body"].startswith("bad") and _once(r["body"]):
            failed.append({"itemIdentifier": r["messageId"]})
    return {"batchItemFailures": failed}


def always_fail(event, context):
    for r in event["Records"]:
        _log("body", body=r["body"], count=int(r["attributes"]["ApproximateReceiveCount"]))
    raise RuntimeError("this handler always fails")


def kinesis(event, context):
    data = [base64.b64decode(r["kinesis"]["data"]).decode() for r in event["Records"]]
    keys = [r["kinesis"]["partitionKey"] for r in event["Records"]]
    shards = [r["eventID"].split(":")[0] for r in event["Records"]]
    _log("batch", data=data, keys=keys, shards=shards)
    if "bad" in data:
        raise ValueError("a bad record")
    pause = float(os.environ.get("PAUSE", "0"))
    if pause:
        time.sleep(pause)


def misbehave(event, context):
    """Crashes, hangs, exits or blows its memory the first time it sees a body saying so."""
    for r in event["Records"]:
        body = r["body"]
        if body in ("crash", "hang", "exit", "memory") and _once(body):
            _log("misbehaving", body=body)
            if body == "crash":
                os.kill(os.getpid(), signal.SIGSEGV)
            if body == "hang":
                time.sleep(60)
            if body == "exit":
                sys.exit(3)
            if body == "memory":
                hog = bytearray(8 * 1024 ** 3)
                _log("allocated", size=len(hog))
        _log("body", body=body, count=int(r["attributes"]["ApproximateReceiveCount"]))
'''


def write_handler(folder: Path, module: str = "handlers") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{module}.py").write_text(HANDLER_SOURCE)
    return folder


def lines(out: Path, kind: str | None = None) -> list[dict[str, Any]]:
    # A line a handler is writing while the test reads is not complete yet.
    found = [json.loads(line) for line in read_complete_lines(out) if line.strip()]
    return [f for f in found if kind is None or f["kind"] == kind]


def wait_for(condition: Callable[[], Any], timeout: float = 60.0, what: str = "") -> Any:
    """Poll `condition` until it is truthy (returned) or `timeout` seconds pass (fail)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
        time.sleep(0.05)


def same_shape(actual: Any, sample: Any, where: str = "event") -> None:
    """Fail unless `actual` has exactly `sample`'s keys at every level and the
    same JSON type at every leaf (None in the sample allows str or None)."""
    if isinstance(sample, dict) and list(sample) == ["*"]:  # a map: any keys, values alike
        assert isinstance(actual, dict), f"{where}: {type(actual).__name__}, not an object"
        for key, value in actual.items():
            same_shape(value, sample["*"], f"{where}.{key}")
    elif isinstance(sample, dict):
        assert isinstance(actual, dict), f"{where}: {type(actual).__name__}, not an object"
        assert set(actual) == set(sample), f"{where}: keys {sorted(actual)} != {sorted(sample)}"
        for key in sample:
            same_shape(actual[key], sample[key], f"{where}.{key}")
    elif isinstance(sample, list):
        assert isinstance(actual, list), f"{where}: not a list"
        if sample and actual:
            for index, item in enumerate(actual):
                same_shape(item, sample[0], f"{where}[{index}]")
    elif sample is None:
        assert actual is None or isinstance(actual, str), f"{where}: {actual!r}"
    else:
        assert type(actual) is type(sample), (
            f"{where}: {type(actual).__name__} {actual!r}, AWS sends {type(sample).__name__}"
        )


# AWS's sample events (Lambda developer guide: "Using Lambda with Amazon SQS / Kinesis /
# SNS"), with our own values: the keys, their order and the JSON types are what matter.
SQS_SAMPLE_RECORD = {
    "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
    "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a",
    "body": "test",
    "attributes": {
        "ApproximateReceiveCount": "1",
        "SentTimestamp": "1545082649183",
        "SenderId": "AIDAIENQZJOLO23YVJ4VO",
        "ApproximateFirstReceiveTimestamp": "1545082649185",
    },
    "messageAttributes": {
        "*": {
            "stringValue": "blue",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "String",
        }
    },
    "md5OfBody": "098f6bcd4621d373cade4e832627b4f6",
    "md5OfMessageAttributes": "b0a8e2b4e5f0c3a3b1b1c3a9b8e2d1f0",
    "eventSource": "aws:sqs",
    "eventSourceARN": "arn:aws:sqs:us-east-2:123456789012:my-queue",
    "awsRegion": "us-east-2",
}
SQS_FIFO_ATTRIBUTES = {
    "ApproximateReceiveCount": "1",
    "SentTimestamp": "1545082649183",
    "SenderId": "AIDAIENQZJOLO23YVJ4VO",
    "ApproximateFirstReceiveTimestamp": "1545082649185",
    "SequenceNumber": "18849496460467696128",
    "MessageGroupId": "1",
    "MessageDeduplicationId": "1",
}
KINESIS_SAMPLE_RECORD = {
    "kinesis": {
        "kinesisSchemaVersion": "1.0",
        "partitionKey": "1",
        "sequenceNumber": "49590338271490256608559692538361571095921575989136588898",
        "data": "SGVsbG8sIHRoaXMgaXMgYSB0ZXN0Lg==",
        "approximateArrivalTimestamp": 1545084650.987,
    },
    "eventSource": "aws:kinesis",
    "eventVersion": "1.0",
    "eventID": "shardId-000000000006:49590338271490256608559692538361571095921575989136588898",
    "eventName": "aws:kinesis:record",
    "invokeIdentityArn": "arn:aws:iam::123456789012:role/lambda-role",
    "awsRegion": "us-east-2",
    "eventSourceARN": "arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream",
}
SNS_SAMPLE_RECORD = {
    "EventSource": "aws:sns",
    "EventVersion": "1.0",
    "EventSubscriptionArn": "arn:aws:sns:us-east-1:123456789012:sns-lambda:21be56ed",
    "Sns": {
        "Type": "Notification",
        "MessageId": "95df01b4-ee98-5cb9-9903-4c221d41eb5e",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:sns-lambda",
        "Subject": None,
        "Message": "Hello from SNS!",
        "Timestamp": "2019-01-02T12:45:07.000Z",
        "SignatureVersion": "1",
        "Signature": "tcc6faL2yUC6dgZdmrwh1Y4cGa/ebXEkAi6RibDsvpi+tE/1+82j",
        "SigningCertUrl": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService.pem",
        "UnsubscribeUrl": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
        "MessageAttributes": {"*": {"Type": "String", "Value": "TestString"}},
    },
}
KINESIS_FAILURE_SAMPLE = {
    "requestContext": {
        "requestId": "c9b8fa9f-5a7f-xmpl-af9c-0c604cde93a5",
        "functionArn": "arn:aws:lambda:us-east-2:123456789012:function:myfunction",
        "condition": "RetryAttemptsExhausted",
        "approximateInvokeCount": 1,
    },
    "responseContext": {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    },
    "version": "1.0",
    "timestamp": "2019-11-14T00:38:06.021Z",
    "KinesisBatchInfo": {
        "shardId": "shardId-000000000001",
        "startSequenceNumber": "49601189658422359378836298521827638475320189012309704722",
        "endSequenceNumber": "49601189658422359378836298522902373528957594348623495186",
        "approximateArrivalOfFirstRecord": "2019-11-14T00:38:04.835Z",
        "approximateArrivalOfLastRecord": "2019-11-14T00:38:05.580Z",
        "batchSize": 500,
        "streamArn": "arn:aws:kinesis:us-east-2:123456789012:stream/mystream",
    },
}


def in_order_at_least_once(seen: list[Any], sent: list[Any]) -> None:
    """Every sent item was seen, and each first arrived only after all before it
    had arrived at least once (redeliveries may repeat earlier items)."""
    position = {item: index for index, item in enumerate(sent)}
    arrived: set[Any] = set()
    for item in seen:
        if item in arrived:
            continue
        missing = [s for s in sent[: position[item]] if s not in arrived]
        assert not missing, f"{item!r} arrived before {missing[:3]!r}"
        arrived.add(item)
    assert arrived == set(sent), f"never seen: {sorted(set(sent) - arrived)[:5]}"
