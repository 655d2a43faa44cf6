"""Fuzzing SNS over the query protocol against one real server (issue 14).

Hypothesis builds forms from botocore's SNS model with edge values (filter
policies nested past any bound or not JSON, attributes of every type with
values that are not, names with newlines, forms of many fields; see
tests/fuzz_wire.py) and garbage bodies; every reply must be below 500 and
an XML ErrorResponse with a Code, or XML that parses. Messages published
before the fuzzing reach their subscribed queue intact, and the server
still answers. Derandomized and bounded.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fuzz_wire import FUZZ, KEEP, check_query_reply, query_request
from hypothesis import assume, given
from hypothesis import strategies as st
from server_harness import client, post_form, running

import tidelog
from tidelog.server import ServerThread, sns

VERSION = "2010-03-31"
KEPT = [f"published {i} é😀" for i in range(5)]
ACTIONS = sorted(sns.HANDLERS) + ["Nope", ""]
ARN = "arn:aws:sns:us-east-1:000000000000"
QUEUE_ARN = "arn:aws:sqs:us-east-1:000000000000"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with running(Path(tmp_path_factory.mktemp("fuzz-sns")) / "data") as started:
        boto = client("sns", started.url)
        sqs = client("sqs", started.url)
        topic = boto.create_topic(Name=KEEP)["TopicArn"]
        url = sqs.create_queue(QueueName=f"{KEEP}q")["QueueUrl"]
        boto.subscribe(
            TopicArn=topic,
            Protocol="sqs",
            Endpoint=f"{QUEUE_ARN}:{KEEP}q",
            Attributes={"RawMessageDelivery": "true"},
        )
        for body in KEPT:
            boto.publish(TopicArn=topic, Message=body, MessageAttributes=_KEPT_ATTRIBUTES)
        _ensure_targets(started)
        yield started
        assert topic in [t["TopicArn"] for t in boto.list_topics()["Topics"]]
        got = []
        for _ in range(len(KEPT)):
            reply = sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
            )
            for message in reply.get("Messages", []):
                assert message["MessageAttributes"] == _KEPT_ATTRIBUTES
                got.append(message["Body"])
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        assert sorted(got) == sorted(KEPT)


_KEPT_ATTRIBUTES = {"k": {"DataType": "String", "StringValue": "v"}}


def _ensure_targets(server: ServerThread) -> None:
    """The topic and queue the fuzzer aims at, put back if a fuzzed call deleted them."""
    store = server.app.store
    try:
        topic = store.topic("fz")
    except tidelog.NotFound:
        topic = store.create_topic("fz")
    try:
        store.queue("fzq")
    except tidelog.NotFound:
        store.create_queue("fzq")
    if not topic.subscriptions():
        topic.subscribe("fzq")


def _policy(depth: int) -> str:
    return '{"a": ' * depth + '["x"]' + "}" * depth


def _fill(server: ServerThread) -> dict[str, Any]:
    subscription = server.app.store.topic("fz").subscriptions()[0].arn
    attributes = [
        {"a": {"DataType": "String", "StringValue": v}} for v in ("v", "\x00", "", "x" * 300)
    ]
    attributes += [
        {"n": {"DataType": "Number", "StringValue": v}} for v in ("1", "NaN", "1e999", "²", "--1")
    ]
    attributes += [
        {"s": {"DataType": "String.Array", "StringValue": v}}
        for v in ('["a", 1, true, null]', "[" * 5000, "[NaN]", "{}", '[{"a": [1]}]')
    ]
    attributes += [{"b": {"DataType": "Binary", "BinaryValue": "eA=="}}]
    attributes += [{f"a{i}": {"DataType": "String", "StringValue": "v"} for i in range(11)}]
    policies = [_policy(3000), _policy(51), _policy(2), '{"a": ["x"]}', "[", "{}", "[]", "null"]
    policies += [
        '{"a": [{"numeric": [">", "x"]}]}',
        '{"a": [{"numeric": [">", 1e999]}]}',
        '{"a": [{"numeric": ["<", NaN]}]}',
        '{"a": [{"cidr": "10.0.0.0/99"}]}',
        '{"a": [{"anything-but": {"prefix": 1}}]}',
        '{"$or": [{"a": ["x"]}, {"b": ["y"]}]}',
        json.dumps({f"k{i}": ["v"] for i in range(6)}),
        json.dumps({"a": [str(i) for i in range(151)]}),
    ]
    return {
        "TopicArn": [f"{ARN}:fz", f"{ARN}:nope", "arn:aws:sns", "fz"],
        "TargetArn": [f"{ARN}:fz"],
        "Name": ["fz", "fz.fifo", "fz2", "evil\n", "evil\n.fifo", ""],
        "Protocol": ["sqs", "email", "lambda", ""],
        "Endpoint": [f"{QUEUE_ARN}:fzq", f"{QUEUE_ARN}:nope", "x"],
        "Message": ["m", "[" * 100_000, "\x00", '{"a": "x"}', "é😀"],
        "Subject": ["s", "s\n", "x" * 101],
        "MessageAttributes": attributes,
        "Attributes": [{"FilterPolicy": p} for p in policies]
        + [
            {"FilterPolicyScope": "MessageBody", "FilterPolicy": _policy(3)},
            {"RawMessageDelivery": "maybe"},
            {"RedrivePolicy": "[" * 5000},
            {"DeliveryPolicy": "[]"},
            {"FifoTopic": "true"},
            {"DisplayName": "\x00"},
        ],
        "SubscriptionArn": [subscription, subscription + "x", f"{ARN}:fz:nope", "x"],
        "AttributeName": ["FilterPolicy", "RawMessageDelivery", "DisplayName", "Bogus"],
        "AttributeValue": policies + ["true", "\x00"],
        "PublishBatchRequestEntries": [
            [{"Id": str(i), "Message": "m", "MessageAttributes": a} for i in range(2)]
            for a in attributes[:4]
        ]
        + [[{"Id": "a", "Message": "m"}] * 2, [{"Id": str(i), "Message": "m"} for i in range(11)]],
        "Tags": [[{"Key": "k", "Value": "v"}], [{"Key": "", "Value": ""}]],
        "ResourceArn": [f"{ARN}:fz"],
        "NextToken": ["", "!!", "LTE=", "OTk5OTk5OTk5OTk5OTk5OTk5OTk5"],
    }


def _many_fields() -> st.SearchStrategy[list[tuple[str, str]]]:
    """Forms with thousands of attribute fields (the field bound is 2,000)."""
    return st.sampled_from([10, 600, 700, 1500]).map(
        lambda n: [
            field
            for i in range(1, n + 1)
            for field in (
                (f"MessageAttributes.entry.{i}.Name", f"a{i}"),
                (f"MessageAttributes.entry.{i}.Value.DataType", "String"),
                (f"MessageAttributes.entry.{i}.Value.StringValue", "v"),
            )
        ]
    )


def test_fuzz_sns_query(server: ServerThread) -> None:
    fill = _fill(server)

    @FUZZ
    @given(body=query_request("sns", VERSION, ACTIONS, fill, _many_fields()))
    def run(body: bytes) -> None:
        assume(KEEP.encode() not in body)
        check_query_reply(post_form(server.port, body))
        _ensure_targets(server)

    run()
