"""SNS through unmodified boto3 (query protocol, XML) against a real server on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from server_harness import client, running

from tidelog.server import ServerThread


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    with running(tmp_path / "data") as started:
        yield started


@pytest.fixture
def sns(server: ServerThread) -> Any:
    return client("sns", server.url)


@pytest.fixture
def sqs(server: ServerThread) -> Any:
    return client("sqs", server.url)


def _queue(sqs: Any, name: str) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return url, arn


def _bodies(sqs: Any, url: str) -> list[Any]:
    reply = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"])
    return reply.get("Messages", [])


def test_publish_fans_out_with_filters_and_raw_delivery(sns: Any, sqs: Any) -> None:
    topic = sns.create_topic(Name="orders")["TopicArn"]
    assert sns.create_topic(Name="orders")["TopicArn"] == topic
    assert topic.endswith(":orders")
    videos_url, videos_arn = _queue(sqs, "videos")
    all_url, all_arn = _queue(sqs, "everything")
    video_sub = sns.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=videos_arn,
        Attributes={"FilterPolicy": json.dumps({"kind": ["video"]}), "RawMessageDelivery": "true"},
        ReturnSubscriptionArn=True,
    )["SubscriptionArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=all_arn)

    sns.publish(
        TopicArn=topic,
        Message="order 7",
        Subject="new",
        MessageAttributes={"kind": {"DataType": "String", "StringValue": "video"}},
    )
    sns.publish(
        TopicArn=topic,
        Message="order 8",
        MessageAttributes={"kind": {"DataType": "String", "StringValue": "audio"}},
    )
    [raw] = _bodies(sqs, videos_url)
    assert raw["Body"] == "order 7"
    assert raw["MessageAttributes"] == {"kind": {"DataType": "String", "StringValue": "video"}}
    enveloped = _bodies(sqs, all_url)
    envelopes = [json.loads(m["Body"]) for m in enveloped]
    assert [e["Message"] for e in envelopes] == ["order 7", "order 8"]
    assert envelopes[0]["TopicArn"] == topic and envelopes[0]["Subject"] == "new"
    assert envelopes[0]["MessageAttributes"]["kind"] == {"Type": "String", "Value": "video"}

    attributes = sns.get_subscription_attributes(SubscriptionArn=video_sub)["Attributes"]
    assert json.loads(attributes["FilterPolicy"]) == {"kind": ["video"]}
    assert attributes["RawMessageDelivery"] == "true"
    assert attributes["Endpoint"] == videos_arn
    sns.set_subscription_attributes(
        SubscriptionArn=video_sub,
        AttributeName="FilterPolicy",
        AttributeValue=json.dumps({"kind": ["audio"]}),
    )
    batch = sns.publish_batch(
        TopicArn=topic,
        PublishBatchRequestEntries=[
            {
                "Id": "a",
                "Message": "order 9",
                "MessageAttributes": {"kind": {"DataType": "String", "StringValue": "audio"}},
            },
            {
                "Id": "b",
                "Message": "order 10",
                "MessageAttributes": {"kind": {"DataType": "String", "StringValue": "video"}},
            },
        ],
    )
    assert [e["Id"] for e in batch["Successful"]] == ["a", "b"]
    assert [m["Body"] for m in _bodies(sqs, videos_url)] == ["order 9"]

    by_topic = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    assert sorted(s["Endpoint"] for s in by_topic) == sorted([videos_arn, all_arn])
    assert len(sns.list_subscriptions()["Subscriptions"]) == 2
    sns.unsubscribe(SubscriptionArn=video_sub)
    sns.publish(
        TopicArn=topic,
        Message="order 11",
        MessageAttributes={"kind": {"DataType": "String", "StringValue": "audio"}},
    )
    assert _bodies(sqs, videos_url) == []
    assert [s["Endpoint"] for s in sns.list_subscriptions()["Subscriptions"]] == [all_arn]
    assert sns.get_topic_attributes(TopicArn=topic)["Attributes"]["SubscriptionsConfirmed"] == "1"
    assert sns.list_topics()["Topics"] == [{"TopicArn": topic}]
    sns.delete_topic(TopicArn=topic)
    assert sns.list_topics()["Topics"] == []


def test_body_filter_and_fifo(sns: Any, sqs: Any) -> None:
    topic = sns.create_topic(
        Name="events.fifo",
        Attributes={"FifoTopic": "true", "ContentBasedDeduplication": "true"},
    )["TopicArn"]
    url = sqs.create_queue(QueueName="events.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=arn,
        Attributes={
            "FilterPolicy": json.dumps({"size": [{"numeric": [">", 10]}]}),
            "FilterPolicyScope": "MessageBody",
            "RawMessageDelivery": "true",
        },
    )
    first = sns.publish(TopicArn=topic, Message=json.dumps({"size": 50}), MessageGroupId="g")
    assert first["SequenceNumber"]
    sns.publish(TopicArn=topic, Message=json.dumps({"size": 5}), MessageGroupId="g")
    assert [json.loads(m["Body"]) for m in _bodies(sqs, url)] == [{"size": 50}]


def test_error_shapes(sns: Any, sqs: Any) -> None:
    missing = "arn:aws:sns:us-east-1:000000000000:nope"
    with pytest.raises(sns.exceptions.NotFoundException) as not_found:
        sns.publish(TopicArn=missing, Message="x")
    assert not_found.value.response["Error"]["Code"] == "NotFound"
    assert not_found.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    topic = sns.create_topic(Name="t")["TopicArn"]
    with pytest.raises(sns.exceptions.InvalidParameterException):
        sns.subscribe(TopicArn=topic, Protocol="pigeon", Endpoint="a@example.com")
    _, arn = _queue(sqs, "q")
    with pytest.raises(sns.exceptions.InvalidParameterException):
        sns.subscribe(
            TopicArn=topic,
            Protocol="sqs",
            Endpoint=arn,
            Attributes={"FilterPolicy": "{not json"},
        )
    with pytest.raises(sns.exceptions.BatchEntryIdsNotDistinctException):
        sns.publish_batch(
            TopicArn=topic,
            PublishBatchRequestEntries=[{"Id": "a", "Message": "1"}, {"Id": "a", "Message": "2"}],
        )
    with pytest.raises(ClientError) as bad_arn:
        sns.get_subscription_attributes(SubscriptionArn="arn:aws:sns:us-east-1:0:t:nope")
    assert bad_arn.value.response["Error"]["Code"] == "NotFound"
