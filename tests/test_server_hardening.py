"""Bad input over the AWS wire protocols gets the service's 400, never a 500 (issue 14).

Each test sends, to a real server on 127.0.0.1, what a careless client or an
attacker would: JSON nested 100,000 deep, numbers that are not numbers,
receipt handles with fields out of range, text SQS refuses, names with a
trailing newline, forms of thousands of fields; and checks the answer is
the service's own error (its code, and AWS's text where AWS has one) while
the good parts of a batch still succeed. Raw HTTP is used where boto3
itself would refuse to send the request.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from helpers import FakeClock
from server_harness import client, post_form, post_json, running

import tidelog
from tidelog.server import ServerThread, model

SQS_VERSION = "2012-11-05"
SNS_VERSION = "2010-03-31"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def server(tmp_path: Path, clock: FakeClock) -> Iterator[ServerThread]:
    with running(tmp_path / "data", clock) as started:
        yield started


@pytest.fixture
def sqs(server: ServerThread) -> Any:
    return client("sqs", server.url)


@pytest.fixture
def queue_url(sqs: Any) -> str:
    url: str = sqs.create_queue(QueueName="q")["QueueUrl"]
    return url


def _code(error: pytest.ExceptionInfo[ClientError]) -> str:
    code: str = error.value.response["Error"]["Code"]
    return code


def _message(error: pytest.ExceptionInfo[ClientError]) -> str:
    message: str = error.value.response["Error"]["Message"]
    return message


def _visible(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


# -- point 2: JSON nested too deep ----------------------------------------------------------------

DEEP = b"[" * 100_000


@pytest.mark.parametrize(
    ("service", "operation", "error"),
    [
        ("sqs", "SendMessage", "SerializationException"),
        ("kinesis", "PutRecord", "SerializationException"),
        ("firehose", "PutRecord", "SerializationException"),
    ],
)
def test_deeply_nested_json_is_a_400(
    server: ServerThread, service: str, operation: str, error: str
) -> None:
    reply = post_json(server.port, service, operation, DEEP)
    assert reply.status == 400, reply.body[:300]
    assert reply.error_type() == error
    assert "nested deeper" in reply.json()["message"]
    # Deep inside an otherwise good request (a member the model does not know).
    deep_member = b'{"QueueUrl": "x", "MessageBody": "x", "Extra": ' + b"[" * 40 + b"]" * 40 + b"}"
    reply = post_json(server.port, service, operation, deep_member)
    assert reply.status == 400 and reply.error_type() == error
    # 32 levels are still parsed (and then judged by the model).
    shallow = b'{"Extra": ' + b"[" * 30 + b"]" * 30 + b"}"
    reply = post_json(server.port, service, operation, shallow)
    assert reply.status == 400 and "nested" not in reply.json()["message"]


def test_sqs_query_policies_and_redrive_nested_too_deep(sqs: Any, queue_url: str) -> None:
    policy = '{"deadLetterTargetArn": ' + "[" * 5000 + "]" * 5000 + ', "maxReceiveCount": 3}'
    with pytest.raises(ClientError) as bad:
        sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"RedrivePolicy": policy})
    assert _code(bad) == "InvalidAttributeValue"


def _nested_policy(depth: int) -> str:
    return '{"a": ' * depth + '["x"]' + "}" * depth


def test_sns_filter_policy_nested_too_deep_is_invalid_parameter(server: ServerThread) -> None:
    sns = client("sns", server.url)
    sqs = client("sqs", server.url)
    topic = sns.create_topic(Name="t")["TopicArn"]
    sqs.create_queue(QueueName="sub")
    endpoint = "arn:aws:sqs:us-east-1:000000000000:sub"
    for depth in (3000, 51):
        with pytest.raises(ClientError) as bad:
            sns.subscribe(
                TopicArn=topic,
                Protocol="sqs",
                Endpoint=endpoint,
                Attributes={
                    "FilterPolicy": _nested_policy(depth),
                    "FilterPolicyScope": "MessageBody",
                },
            )
        assert _code(bad) == "InvalidParameter", depth
        assert bad.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert "nested deeper than 50" in _message(bad)
    # At the bound, the policy is taken and filters.
    sub = sns.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=endpoint,
        Attributes={"FilterPolicy": _nested_policy(45), "FilterPolicyScope": "MessageBody"},
        ReturnSubscriptionArn=True,
    )["SubscriptionArn"]
    with pytest.raises(ClientError) as bad:
        sns.set_subscription_attributes(
            SubscriptionArn=sub, AttributeName="FilterPolicy", AttributeValue=_nested_policy(3000)
        )
    assert _code(bad) == "InvalidParameter"
    # A message body nested past any bound is published, and filtered as not JSON.
    sns.publish(TopicArn=topic, Message="[" * 100_000)
    sns.publish(TopicArn=topic, Message=json.dumps(json.loads(_nested_policy(45))))
    url = sqs.get_queue_url(QueueName="sub")["QueueUrl"]
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    assert len(got["Messages"]) == 1
    # A String.Array attribute nested too deep is refused.
    with pytest.raises(ClientError) as bad:
        sns.publish(
            TopicArn=topic,
            Message="m",
            MessageAttributes={"a": {"DataType": "String.Array", "StringValue": "[" * 5000}},
        )
    assert _code(bad) == "InvalidParameter"


def test_library_filter_policy_given_as_a_deep_dict(tmp_path: Path) -> None:
    policy: dict[str, Any] = {"k": ["x"]}
    for _ in range(3000):
        policy = {"a": policy}
    with tidelog.open(tmp_path / "d", sync="never") as store:
        topic = store.create_topic("t")
        queue = store.create_queue("q")
        with pytest.raises(tidelog.InvalidArgument, match="nested deeper"):
            topic.subscribe(queue, filter_policy=policy, filter_scope="body")


# -- point 3: numbers that are not numbers -------------------------------------------------------

# JSON values no integer member may take: a string of a superscript digit,
# "--1", NaN and Infinity (JSON has neither), a float, an integer past 32
# bits, a boolean.
BAD_JSON_INTEGERS = [b'"\xc2\xb2"', b'"--1"', b"NaN", b"Infinity", b"-Infinity", b"1e308", b"1e400"]
BAD_JSON_INTEGERS += [b"100000000000000000000000000000", b"true", b"1.5", b'"5"']


def _json_with(members: dict[str, Any], name: str, raw: bytes) -> bytes:
    head = json.dumps(members)[:-1]
    return f'{head}, "{name}": '.encode() + raw + b"}"


@pytest.mark.parametrize("raw", BAD_JSON_INTEGERS, ids=lambda r: r.decode("utf-8", "replace"))
def test_sqs_json_numbers(sqs: Any, server: ServerThread, queue_url: str, raw: bytes) -> None:
    sqs.send_message(QueueUrl=queue_url, MessageBody="kept")
    cases = [
        ("ReceiveMessage", "MaxNumberOfMessages"),
        ("ReceiveMessage", "WaitTimeSeconds"),
        ("ReceiveMessage", "VisibilityTimeout"),
        ("SendMessage", "DelaySeconds"),
        ("ChangeMessageVisibility", "VisibilityTimeout"),
        ("ListQueues", "MaxResults"),
    ]
    base = {"QueueUrl": queue_url, "MessageBody": "x", "ReceiptHandle": "tl1.1.1.1"}
    for operation, name in cases:
        reply = post_json(server.port, "sqs", operation, _json_with(base, name, raw))
        assert reply.status == 400, (operation, name, reply.body[:300])
        assert reply.error_type() in ("InvalidParameterValue", "SerializationException")
        assert reply.json()["message"]
    assert _visible(sqs, queue_url) == 1  # nothing was leased by the refused receives


BAD_FORM_INTEGERS = ["²", "--1", "NaN", "Infinity", "1e308", "99999999999999999999999"]
BAD_FORM_INTEGERS += ["true", "1_0", " 5", "5 ", "0x10", "١", ""]


@pytest.mark.parametrize("text", BAD_FORM_INTEGERS)
def test_sqs_query_numbers(sqs: Any, server: ServerThread, queue_url: str, text: str) -> None:
    sqs.send_message(QueueUrl=queue_url, MessageBody="kept")
    cases = [
        ("ReceiveMessage", "MaxNumberOfMessages"),
        ("ReceiveMessage", "WaitTimeSeconds"),
        ("ReceiveMessage", "VisibilityTimeout"),
        ("SendMessage", "DelaySeconds"),
        ("ChangeMessageVisibility", "VisibilityTimeout"),
    ]
    for action, name in cases:
        fields = {
            "Action": action,
            "Version": SQS_VERSION,
            "QueueUrl": queue_url,
            "MessageBody": "x",
            "ReceiptHandle": "tl1.1.1.1",
            name: text,
        }
        reply = post_form(server.port, fields)
        assert reply.status == 400, (action, name, reply.body[:300])
        assert reply.error_code() == "InvalidParameterValue"
    for protocol_call in ("json", "query"):
        fields = {
            "Action": "SetQueueAttributes",
            "Version": SQS_VERSION,
            "QueueUrl": queue_url,
            "Attribute.1.Name": "VisibilityTimeout",
            "Attribute.1.Value": text,
        }
        if protocol_call == "query":
            reply = post_form(server.port, fields)
            assert reply.status == 400 and reply.error_code() == "InvalidAttributeValue"
        else:
            with pytest.raises(ClientError) as bad:
                sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"VisibilityTimeout": text})
            assert _code(bad) == "InvalidAttributeValue"
    assert _visible(sqs, queue_url) == 1


def test_zero_messages_is_a_value_not_absent(sqs: Any, queue_url: str) -> None:
    sqs.send_message(QueueUrl=queue_url, MessageBody="kept")
    with pytest.raises(ClientError) as bad:
        sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=0)
    assert _code(bad) == "InvalidParameterValue"
    assert _message(bad) == (
        "Value 0 for parameter MaxNumberOfMessages is invalid. "
        "Reason: Must be between 1 and 10, if provided."
    )
    with pytest.raises(ClientError) as bad:
        sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=11)
    assert _code(bad) == "InvalidParameterValue"
    with pytest.raises(ClientError) as bad:
        sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=-1)
    assert _message(bad) == (
        "Value -1 for parameter WaitTimeSeconds is invalid. "
        "Reason: Must be >= 0 and <= 20, if provided."
    )
    assert _visible(sqs, queue_url) == 1
    assert len(sqs.receive_message(QueueUrl=queue_url)["Messages"]) == 1


def _stream(server: ServerThread) -> tuple[Any, str]:
    kinesis = client("kinesis", server.url)
    kinesis.create_stream(StreamName="s", ShardCount=1)
    kinesis.put_record(StreamName="s", Data=b"kept", PartitionKey="k")
    shard = kinesis.list_shards(StreamName="s")["Shards"][0]["ShardId"]
    return kinesis, shard


@pytest.mark.parametrize("raw", BAD_JSON_INTEGERS, ids=lambda r: r.decode("utf-8", "replace"))
def test_kinesis_numbers(server: ServerThread, raw: bytes) -> None:
    kinesis, shard = _stream(server)
    iterator = kinesis.get_shard_iterator(
        StreamName="s", ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    cases = [
        ("GetRecords", {"ShardIterator": iterator}, "Limit"),
        ("CreateStream", {"StreamName": "t"}, "ShardCount"),
        ("DescribeStream", {"StreamName": "s"}, "Limit"),
        ("ListShards", {"StreamName": "s"}, "MaxResults"),
        ("ListStreams", {}, "Limit"),
        (
            "UpdateShardCount",
            {"StreamName": "s", "ScalingType": "UNIFORM_SCALING"},
            "TargetShardCount",
        ),
        ("IncreaseStreamRetentionPeriod", {"StreamName": "s"}, "RetentionPeriodHours"),
        (
            "GetShardIterator",
            {"StreamName": "s", "ShardId": shard, "ShardIteratorType": "AT_TIMESTAMP"},
            "Timestamp",
        ),
    ]
    for operation, members, name in cases:
        if name == "Timestamp" and raw in (b'"\xc2\xb2"', b'"--1"', b'"5"', b"1.5"):
            continue  # strings and small floats are timestamps of a kind; see the next test
        reply = post_json(server.port, "kinesis", operation, _json_with(members, name, raw))
        assert reply.status == 400, (operation, name, reply.body[:300])
        assert reply.error_type() in (
            "SerializationException",
            "ValidationException",
            "InvalidArgumentException",
        )
    assert kinesis.describe_stream_summary(StreamName="s")["StreamDescriptionSummary"]
    records = kinesis.get_records(ShardIterator=iterator)["Records"]
    assert [r["Data"] for r in records] == [b"kept"]


def test_kinesis_bounds_and_timestamps(server: ServerThread) -> None:
    kinesis, shard = _stream(server)
    iterator = kinesis.get_shard_iterator(
        StreamName="s", ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    # The model's bounds: Limit is 1-10000; 0 is a value, not "absent".
    reply = post_json(server.port, "kinesis", "GetRecords", {"ShardIterator": iterator, "Limit": 0})
    assert reply.status == 400 and reply.error_type() == "ValidationException"
    assert "greater than or equal to 1" in reply.json()["message"]
    members = {"StreamName": "s", "ShardId": shard, "ShardIteratorType": "AT_TIMESTAMP"}
    for raw in (b"1e308", b"-1e308", b"NaN", b'"yesterday"', b"1e17"):
        reply = post_json(
            server.port, "kinesis", "GetShardIterator", _json_with(members, "Timestamp", raw)
        )
        assert reply.status == 400, (raw, reply.body[:300])
    stream = server.app.store.stream("s")
    for bad in (float("nan"), float("inf"), 1e308):
        with pytest.raises(tidelog.InvalidArgument, match="timestamp"):
            stream.get_shard_iterator(shard, "AT_TIMESTAMP", timestamp=bad)


def _delivery_stream(server: ServerThread) -> Any:
    firehose = client("firehose", server.url)
    firehose.create_delivery_stream(
        DeliveryStreamName="d",
        ExtendedS3DestinationConfiguration={
            "RoleARN": "arn:aws:iam::000000000000:role/r",
            "BucketARN": "arn:aws:s3:::b",
        },
    )
    return firehose


@pytest.mark.parametrize("raw", BAD_JSON_INTEGERS, ids=lambda r: r.decode("utf-8", "replace"))
def test_firehose_numbers(server: ServerThread, raw: bytes) -> None:
    _delivery_stream(server)
    cases = [
        ("ListDeliveryStreams", {}, "Limit"),
        ("ListTagsForDeliveryStream", {"DeliveryStreamName": "d"}, "Limit"),
        (
            "UpdateDestination",
            {
                "DeliveryStreamName": "d",
                "DestinationId": "destinationId-000000000001",
                "ExtendedS3DestinationUpdate": {},
            },
            "CurrentDeliveryStreamVersionId",
        ),
    ]
    for operation, members, name in cases:
        reply = post_json(server.port, "firehose", operation, _json_with(members, name, raw))
        assert reply.status == 400, (operation, name, reply.body[:300])
    body = (
        b'{"DeliveryStreamName": "e", "ExtendedS3DestinationConfiguration": {'
        b'"RoleARN": "arn:aws:iam::000000000000:role/r", "BucketARN": "arn:aws:s3:::b", '
        b'"BufferingHints": {"SizeInMBs": ' + raw + b"}}}"
    )
    reply = post_json(server.port, "firehose", "CreateDeliveryStream", body)
    assert reply.status == 400, reply.body[:300]
    assert reply.error_type() in ("SerializationException", "InvalidArgumentException")


def test_firehose_version_ids(server: ServerThread) -> None:
    _delivery_stream(server)
    for version in ("²", "--1", "1e308", "١", "99999999999999999999999999", ""):
        reply = post_json(
            server.port,
            "firehose",
            "UpdateDestination",
            {
                "DeliveryStreamName": "d",
                "DestinationId": "destinationId-000000000001",
                "CurrentDeliveryStreamVersionId": version,
                "ExtendedS3DestinationUpdate": {"Prefix": "p/"},
            },
        )
        assert reply.status == 400, (version, reply.body[:300])
        assert reply.error_type() in ("ConcurrentModificationException", "InvalidArgumentException")


def test_sns_numbers_and_booleans(server: ServerThread) -> None:
    sns = client("sns", server.url)
    topic = sns.create_topic(Name="t")["TopicArn"]
    for text in ("maybe", "True ", "1"):
        reply = post_form(
            server.port,
            {
                "Action": "Subscribe",
                "Version": SNS_VERSION,
                "TopicArn": topic,
                "Protocol": "sqs",
                "Endpoint": "arn:aws:sqs:us-east-1:000000000000:q",
                "ReturnSubscriptionArn": text,
            },
        )
        assert reply.status == 400 and reply.error_code() == "InvalidParameter"
    for token in ("²", "--1", "LTE=", "OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk=", "!!"):
        reply = post_form(
            server.port, {"Action": "ListTopics", "Version": SNS_VERSION, "NextToken": token}
        )
        assert reply.status in (200, 400), reply.body[:300]
        if reply.status == 400:
            assert reply.error_code() == "InvalidParameter"


# -- point 4: receipt handles ---------------------------------------------------------------------


def _bad_handles(good: str) -> list[str]:
    prefix, log_id, _offset, nonce = good.split(".")
    return [
        f"{prefix}.{log_id}.-5.{nonce}",  # negative
        f"{prefix}.{log_id}.{'f' * 20}.{nonce}",  # 20 hex digits: past 64 bits
        f"{prefix}.{log_id}.1.{'f' * 17}",
        f"{prefix}.{log_id}.1_0.{nonce}",
        f"{prefix}.{log_id}. 1.{nonce}",
        f"{prefix}.{log_id}.1",  # wrong length
        f"{prefix}.{log_id}.1.1.1",
        "garbage",
        "",
        "tl1.." + "9" * 5000,
    ]


def test_receipt_handles_out_of_range(sqs: Any, server: ServerThread, queue_url: str) -> None:
    for body in ("a", "b", "c"):
        sqs.send_message(QueueUrl=queue_url, MessageBody=body)
    got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=3, VisibilityTimeout=300)
    good = [m["ReceiptHandle"] for m in got["Messages"]]
    assert len(good) == 3
    for bad in _bad_handles(good[0]):
        with pytest.raises(ClientError) as error:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=bad)
        assert _code(error) == "ReceiptHandleIsInvalid", bad
        assert _message(error) == f'The input receipt handle "{bad}" is not a valid receipt handle.'
        with pytest.raises(ClientError) as error:
            sqs.change_message_visibility(
                QueueUrl=queue_url, ReceiptHandle=bad, VisibilityTimeout=5
            )
        assert _code(error) == "ReceiptHandleIsInvalid", bad
        reply = post_form(
            server.port,
            {
                "Action": "DeleteMessage",
                "Version": SQS_VERSION,
                "QueueUrl": queue_url,
                "ReceiptHandle": bad,
            },
        )
        assert reply.status == 400 and reply.error_code() == "ReceiptHandleIsInvalid"
    # In a batch, a bad handle fails alone; the others are applied.
    bad = _bad_handles(good[0])[:2]
    changed = sqs.change_message_visibility_batch(
        QueueUrl=queue_url,
        Entries=[
            {"Id": "good", "ReceiptHandle": good[2], "VisibilityTimeout": 0},
            {"Id": "negative", "ReceiptHandle": bad[0], "VisibilityTimeout": 0},
            {"Id": "wide", "ReceiptHandle": bad[1], "VisibilityTimeout": 0},
        ],
    )
    assert [s["Id"] for s in changed["Successful"]] == ["good"]
    assert {f["Id"]: f["Code"] for f in changed["Failed"]} == {
        "negative": "ReceiptHandleIsInvalid",
        "wide": "ReceiptHandleIsInvalid",
    }
    deleted = sqs.delete_message_batch(
        QueueUrl=queue_url,
        Entries=[
            {"Id": "one", "ReceiptHandle": good[0]},
            {"Id": "negative", "ReceiptHandle": bad[0]},
            {"Id": "two", "ReceiptHandle": good[1]},
            {"Id": "wide", "ReceiptHandle": bad[1]},
        ],
    )
    assert sorted(s["Id"] for s in deleted["Successful"]) == ["one", "two"]
    failed = {f["Id"]: f for f in deleted["Failed"]}
    assert {k: f["Code"] for k, f in failed.items()} == {
        "negative": "ReceiptHandleIsInvalid",
        "wide": "ReceiptHandleIsInvalid",
    }
    assert failed["wide"]["SenderFault"] is True
    assert failed["wide"]["Message"] == (
        f'The input receipt handle "{bad[1]}" is not a valid receipt handle.'
    )
    # "a" and "b" are gone; "c" was released by the visibility batch.
    left = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in left] == ["c"]


def test_library_receipts_out_of_range(tmp_path: Path) -> None:
    with tidelog.open(tmp_path / "d", sync="never") as store:
        queue = store.create_queue("q")
        queue.send(b"x")
        (message,) = queue.receive(visibility_timeout=300)
        for bad in _bad_handles(message.receipt):
            with pytest.raises(tidelog.InvalidArgument, match="ReceiptHandleIsInvalid"):
                queue.delete(bad)
        result = queue.delete_many([("bad", _bad_handles(message.receipt)[1]), ("ok", message)])
        assert [entry for entry, _ in result.successful] == ["ok"]
        assert [f.code for f in result.failed] == ["ReceiptHandleIsInvalid"]


# -- point 5: text SQS refuses, names with a newline ----------------------------------------------


@pytest.mark.parametrize("body", ["\x00", "a\x01b", "\uffff", "\ufffe", "\x08", "\x1f"])
def test_characters_sqs_refuses(sqs: Any, server: ServerThread, queue_url: str, body: str) -> None:
    with pytest.raises(ClientError) as bad:
        sqs.send_message(QueueUrl=queue_url, MessageBody=body)
    assert _code(bad) == "InvalidMessageContents"
    assert _message(bad).startswith("Invalid characters found. Valid unicode characters are #x9")
    reply = post_form(
        server.port,
        {
            "Action": "SendMessage",
            "Version": SQS_VERSION,
            "QueueUrl": queue_url,
            "MessageBody": body,
        },
    )
    assert reply.status == 400 and reply.error_code() == "InvalidMessageContents"
    sent = sqs.send_message_batch(
        QueueUrl=queue_url,
        Entries=[{"Id": "bad", "MessageBody": body}, {"Id": "good", "MessageBody": "ok"}],
    )
    assert [s["Id"] for s in sent["Successful"]] == ["good"]
    assert [(f["Id"], f["Code"]) for f in sent["Failed"]] == [("bad", "InvalidMessageContents")]
    # SQS answers InvalidParameterValue for an attribute's text (as LocalStack
    # recorded against AWS).
    with pytest.raises(ClientError) as bad:
        sqs.send_message(
            QueueUrl=queue_url,
            MessageBody="x",
            MessageAttributes={"a": {"DataType": "String", "StringValue": body}},
        )
    assert _code(bad) == "InvalidParameterValue"
    assert [m["Body"] for m in sqs.receive_message(QueueUrl=queue_url)["Messages"]] == ["ok"]


def test_lone_surrogates(sqs: Any, server: ServerThread, queue_url: str) -> None:
    # botocore writes JSON with ensure_ascii: a lone surrogate travels as \ud800.
    for text in ("\ud800", "a\udfffb"):
        body = json.dumps({"QueueUrl": queue_url, "MessageBody": text}).encode()
        reply = post_json(server.port, "sqs", "SendMessage", body)
        assert reply.status == 400 and reply.error_type() == "InvalidMessageContents"
        attribute = {"a": {"DataType": "String", "StringValue": text}}
        body = json.dumps(
            {"QueueUrl": queue_url, "MessageBody": "x", "MessageAttributes": attribute}
        ).encode()
        reply = post_json(server.port, "sqs", "SendMessage", body)
        assert reply.status == 400 and reply.error_type() == "InvalidParameterValue"
    # The query protocol's form: a surrogate's UTF-8 bytes are not UTF-8.
    raw = f"Action=SendMessage&Version={SQS_VERSION}&QueueUrl={queue_url}&MessageBody=%ED%A0%80"
    reply = post_form(server.port, raw.encode())
    assert reply.status == 400 and reply.error_code() == "MalformedQueryString"
    assert _visible(sqs, queue_url) == 0


def test_bytes_bodies_travel_as_text_sqs_can_carry(server: ServerThread, queue_url: str) -> None:
    # The library and STOMP store bodies as bytes; SQS receives them as XML-safe text.
    server.app.store.queue("q").send(b"a\x00b\xff\xefc")
    reply = post_form(
        server.port,
        {"Action": "ReceiveMessage", "Version": SQS_VERSION, "QueueUrl": queue_url},
    )
    assert reply.status == 200
    body = reply.xml().find(".//{*}Message/{*}Body")
    assert body is not None and body.text == "a\ufffdb\ufffd\ufffdc"


NEWLINE_NAMES = ["evil\n", "evil\n.fifo", "\nevil", "ev\nil", "evil\r"]


@pytest.mark.parametrize("name", NEWLINE_NAMES, ids=repr)
def test_names_with_newlines(server: ServerThread, sqs: Any, name: str) -> None:
    attributes = {"FifoQueue": "true"} if name.endswith(".fifo") else {}
    with pytest.raises(ClientError) as bad:
        sqs.create_queue(QueueName=name, Attributes=attributes)
    assert _code(bad) == "InvalidParameterValue"
    reply = post_form(server.port, {"Action": "CreateTopic", "Version": SNS_VERSION, "Name": name})
    assert reply.status == 400 and reply.error_code() == "InvalidParameter"
    with pytest.raises(ClientError) as bad:
        client("kinesis", server.url).create_stream(StreamName=name, ShardCount=1)
    assert _code(bad) == "InvalidArgumentException"
    assert sqs.list_queues().get("QueueUrls", []) == []
    assert client("sns", server.url).list_topics()["Topics"] == []


def test_library_names_and_ids_with_newlines(tmp_path: Path) -> None:
    with tidelog.open(tmp_path / "d", sync="never") as store:
        for name in NEWLINE_NAMES:
            fifo = name.endswith(".fifo")
            with pytest.raises(tidelog.InvalidArgument):
                store.create_queue(name, fifo=fifo)
            with pytest.raises(tidelog.InvalidArgument):
                store.create_topic(name, fifo=fifo)
            with pytest.raises(tidelog.InvalidArgument):
                store.create_stream(name, shards=1)
        fifo = store.create_queue("f.fifo", fifo=True)
        with pytest.raises(tidelog.InvalidArgument):
            fifo.send(b"x", group_id="g\n", dedup_id="d")
        with pytest.raises(tidelog.InvalidArgument):
            fifo.send(b"x", group_id="g", dedup_id="d\n")
        queue = store.create_queue("q")
        with pytest.raises(tidelog.InvalidArgument):
            queue.send(b"x", attributes={"name\n": "v"})
        with pytest.raises(tidelog.InvalidArgument, match="InvalidBatchEntryId"):
            queue.send_many([{"id": "e\n", "body": b"x"}])
        topic = store.create_topic("t")
        with pytest.raises(tidelog.InvalidArgument):
            topic.subscribe_http("http://127.0.0.1:9/\n")


# -- point 7: SNS forms of thousands of fields ----------------------------------------------------


def _publish_form(topic: str, attributes: int) -> list[tuple[str, str]]:
    fields = [
        ("Action", "Publish"),
        ("Version", SNS_VERSION),
        ("TopicArn", topic),
        ("Message", "m"),
    ]
    for i in range(1, attributes + 1):
        prefix = f"MessageAttributes.entry.{i}"
        fields += [
            (f"{prefix}.Name", f"a{i}"),
            (f"{prefix}.Value.DataType", "String"),
            (f"{prefix}.Value.StringValue", "v"),
        ]
    return fields


def test_sns_large_forms_answer_promptly(server: ServerThread) -> None:
    sns = client("sns", server.url)
    topic = sns.create_topic(Name="t")["TopicArn"]
    # Wall-clock bounds generous enough for a loaded shared machine (a 4,500
    # one once took 3.6 s there): quadratic decoding of 20,000 fields takes
    # minutes, and test_query_form_decoding_is_linear checks the growth in CPU time.
    for attributes in (1500, 4500, 20_000):
        started = time.monotonic()
        reply = post_form(server.port, _publish_form(topic, attributes))
        elapsed = time.monotonic() - started
        assert reply.status == 400 and reply.error_code() == "InvalidParameter", attributes
        assert elapsed < 20.0, (attributes, elapsed)
    # Under the field bound, a form of 600 attributes decodes at once; the
    # library then refuses more than 10 attributes.
    started = time.monotonic()
    reply = post_form(server.port, _publish_form(topic, 600))
    assert reply.status == 400 and reply.error_code() == "InvalidParameter"
    assert time.monotonic() - started < 20.0


def test_sns_legal_maximum_batch(server: ServerThread) -> None:
    sns = client("sns", server.url)
    sqs = client("sqs", server.url)
    topic = sns.create_topic(Name="t")["TopicArn"]
    url = sqs.create_queue(QueueName="sub")["QueueUrl"]
    sns.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint="arn:aws:sqs:us-east-1:000000000000:sub",
        Attributes={"RawMessageDelivery": "true"},
    )
    attributes = {f"a{i}": {"DataType": "String", "StringValue": f"v{i}"} for i in range(10)}
    published = sns.publish_batch(
        TopicArn=topic,
        PublishBatchRequestEntries=[
            {"Id": f"e{j}", "Message": f"m{j}", "MessageAttributes": attributes} for j in range(10)
        ],
    )
    assert len(published["Successful"]) == 10 and published["Failed"] == []
    bodies = []
    while len(bodies) < 10:
        got = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=1
        )
        for message in got.get("Messages", []):
            assert len(message["MessageAttributes"]) == 10
            bodies.append(message["Body"])
    assert sorted(bodies) == sorted(f"m{j}" for j in range(10))


def test_query_form_decoding_is_linear() -> None:
    operation = model.operation("sns", "Publish")
    assert operation is not None

    def decode_seconds(attributes: int) -> float:
        form = dict(_publish_form("arn:aws:sns:us-east-1:000000000000:t", attributes))
        # This thread's CPU time, not the wall clock: other processes on a loaded
        # machine do not count; the best of 5 drops a cold cache or a GC pause.
        best = float("inf")
        for _ in range(5):
            started = time.thread_time()
            decoded = model.decode_query(operation.input_shape, form)
            best = min(best, time.thread_time() - started)
        assert len(decoded["MessageAttributes"]) == attributes
        return best

    small, large = decode_seconds(150), decode_seconds(600)
    # Linear: 4x the fields, about 4x the time (quadratic decoding was 16x).
    assert large < small * 9 + 0.005, (small, large)


# -- point 10: SQS's codes and texts --------------------------------------------------------------


def test_create_queue_attribute_out_of_range(sqs: Any, server: ServerThread) -> None:
    for name, value in (("VisibilityTimeout", "43201"), ("DelaySeconds", "901")):
        with pytest.raises(ClientError) as bad:
            sqs.create_queue(QueueName="q", Attributes={name: value})
        assert _code(bad) == "InvalidAttributeValue"
        assert _message(bad) == f"Invalid value for the parameter {name}."
        reply = post_form(
            server.port,
            {
                "Action": "CreateQueue",
                "Version": SQS_VERSION,
                "QueueName": "q",
                "Attribute.1.Name": name,
                "Attribute.1.Value": value,
            },
        )
        assert reply.status == 400 and reply.error_code() == "InvalidAttributeValue"
    assert sqs.list_queues().get("QueueUrls", []) == []


def test_second_purge_within_60_seconds(
    sqs: Any, server: ServerThread, queue_url: str, clock: FakeClock
) -> None:
    sqs.send_message(QueueUrl=queue_url, MessageBody="gone")
    sqs.purge_queue(QueueUrl=queue_url)
    sqs.send_message(QueueUrl=queue_url, MessageBody="kept")
    clock.advance(59)
    with pytest.raises(ClientError) as bad:
        sqs.purge_queue(QueueUrl=queue_url)
    assert _code(bad) == "AWS.SimpleQueueService.PurgeQueueInProgress"
    assert bad.value.response["Error"]["QueryErrorCode"] == "PurgeQueueInProgress"
    assert bad.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert _message(bad) == "Only one PurgeQueue operation on q is allowed every 60 seconds."
    reply = post_form(
        server.port, {"Action": "PurgeQueue", "Version": SQS_VERSION, "QueueUrl": queue_url}
    )
    assert reply.status == 403
    assert reply.error_code() == "AWS.SimpleQueueService.PurgeQueueInProgress"
    assert _visible(sqs, queue_url) == 1  # the refused purges deleted nothing
    clock.advance(1)
    sqs.purge_queue(QueueUrl=queue_url)
    assert _visible(sqs, queue_url) == 0


def test_fifo_send_without_group(sqs: Any, server: ServerThread) -> None:
    url = sqs.create_queue(
        QueueName="f.fifo", Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"}
    )["QueueUrl"]
    with pytest.raises(ClientError) as bad:
        sqs.send_message(QueueUrl=url, MessageBody="x")
    assert _code(bad) == "MissingParameter"
    assert _message(bad) == "The request must contain the parameter MessageGroupId."
    reply = post_form(
        server.port,
        {"Action": "SendMessage", "Version": SQS_VERSION, "QueueUrl": url, "MessageBody": "x"},
    )
    assert reply.status == 400 and reply.error_code() == "MissingParameter"
    sent = sqs.send_message_batch(
        QueueUrl=url,
        Entries=[
            {"Id": "none", "MessageBody": "x"},
            {"Id": "ok", "MessageBody": "y", "MessageGroupId": "g"},
        ],
    )
    assert [s["Id"] for s in sent["Successful"]] == ["ok"]
    assert [(f["Id"], f["Code"]) for f in sent["Failed"]] == [("none", "InvalidParameterValue")]


# -- what the fuzzers (tests/test_fuzz_*.py) found ------------------------------------------------


def test_lone_surrogates_in_any_json_string(server: ServerThread) -> None:
    # Every string of a JSON request is Unicode text or the request's 400: a
    # lone surrogate reached str.encode() in CancelMessageMoveTask (a 500).
    for service, operation, members in (
        ("sqs", "CancelMessageMoveTask", {"TaskHandle": "\ud800"}),
        ("sqs", "GetQueueUrl", {"QueueName": "q\udfff"}),
        ("sqs", "TagQueue", {"QueueUrl": "x", "Tags": {"\ud800": "v"}}),
        ("kinesis", "PutRecord", {"StreamName": "s", "Data": "eA==", "PartitionKey": "\ud800"}),
        ("firehose", "DescribeDeliveryStream", {"DeliveryStreamName": "\ud800"}),
    ):
        reply = post_json(server.port, service, operation, json.dumps(members).encode())
        assert reply.status == 400, (operation, reply.body[:300])
        assert "lone surrogate" in reply.json()["message"]


def test_empty_delivery_stream_name(server: ServerThread) -> None:
    # "" was looked up as an LMDB key, which LMDB refuses (BadValsizeError, a 500).
    operations = (
        "DescribeDeliveryStream",
        "PutRecord",
        "PutRecordBatch",
        "TagDeliveryStream",
        "UntagDeliveryStream",
        "ListTagsForDeliveryStream",
        "DeleteDeliveryStream",
    )
    for operation in operations:
        members = {
            "DeliveryStreamName": "",
            "Record": {"Data": "eA=="},
            "Records": [{"Data": "eA=="}],
            "Tags": [],
            "TagKeys": ["k"],
        }
        reply = post_json(server.port, "firehose", operation, members)
        assert reply.status == 400 and reply.error_type() == "ResourceNotFoundException"


def test_kinesis_records_without_partition_key(server: ServerThread) -> None:
    # botocore's model leaves PartitionKey optional; a record without one was a KeyError (500).
    client("kinesis", server.url).create_stream(StreamName="s", ShardCount=1)
    reply = post_json(server.port, "kinesis", "PutRecord", {"StreamName": "s", "Data": "eA=="})
    assert reply.status == 400 and reply.error_type() == "ValidationException"
    records = {
        "StreamName": "s",
        "Records": [{"Data": "eA==", "PartitionKey": "k"}, {"Data": "eA=="}],
    }
    reply = post_json(server.port, "kinesis", "PutRecords", records)
    assert reply.status == 400 and reply.error_type() == "ValidationException"
