"""Kinesis through unmodified boto3 against a real server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from helpers import FakeClock
from server_harness import client, running

from tidelog.server import ServerThread


@pytest.fixture
def server(tmp_path: Path, clock: FakeClock) -> Iterator[ServerThread]:
    with running(tmp_path / "data", clock) as started:
        yield started


@pytest.fixture
def kinesis(server: ServerThread) -> Any:
    return client("kinesis", server.url)


def _drain(kinesis: Any, shard: str, start: str = "TRIM_HORIZON", **kwargs: Any) -> list[Any]:
    iterator = kinesis.get_shard_iterator(
        StreamName="clicks", ShardId=shard, ShardIteratorType=start, **kwargs
    )["ShardIterator"]
    records = []
    while iterator:
        page = kinesis.get_records(ShardIterator=iterator, Limit=3)
        records += page["Records"]
        if not page["Records"]:
            break
        iterator = page.get("NextShardIterator")
    return records


def test_streams_put_and_get(kinesis: Any) -> None:
    kinesis.create_stream(StreamName="clicks", ShardCount=2)
    summary = kinesis.describe_stream_summary(StreamName="clicks")["StreamDescriptionSummary"]
    assert summary["OpenShardCount"] == 2
    assert summary["StreamARN"] == "arn:aws:kinesis:eu-west-1:000000000000:stream/clicks"
    assert kinesis.list_streams()["StreamNames"] == ["clicks"]
    shards = kinesis.list_shards(StreamName="clicks")["Shards"]
    assert [s["ShardId"] for s in shards] == ["shardId-000000000000", "shardId-000000000001"]

    one = kinesis.put_record(StreamName="clicks", Data=b"first", PartitionKey="user-1")
    many = kinesis.put_records(
        StreamName="clicks",
        Records=[{"Data": f"r{i}".encode(), "PartitionKey": "user-1"} for i in range(7)],
    )
    assert many["FailedRecordCount"] == 0
    assert {r["ShardId"] for r in many["Records"]} == {one["ShardId"]}
    got = _drain(kinesis, one["ShardId"])
    assert [r["Data"] for r in got] == [b"first"] + [f"r{i}".encode() for i in range(7)]
    assert got[0]["SequenceNumber"] == one["SequenceNumber"]
    assert got[0]["PartitionKey"] == "user-1"
    assert got[0]["ApproximateArrivalTimestamp"].year >= 2023
    after = _drain(
        kinesis,
        one["ShardId"],
        "AFTER_SEQUENCE_NUMBER",
        StartingSequenceNumber=many["Records"][5]["SequenceNumber"],
    )
    assert [r["Data"] for r in after] == [b"r6"]
    at = _drain(
        kinesis,
        one["ShardId"],
        "AT_SEQUENCE_NUMBER",
        StartingSequenceNumber=many["Records"][5]["SequenceNumber"],
    )
    assert [r["Data"] for r in at] == [b"r5", b"r6"]
    latest = kinesis.get_shard_iterator(
        StreamName="clicks", ShardId=one["ShardId"], ShardIteratorType="LATEST"
    )["ShardIterator"]
    kinesis.put_record(StreamName="clicks", Data=b"new", PartitionKey="user-1")
    assert [r["Data"] for r in kinesis.get_records(ShardIterator=latest)["Records"]] == [b"new"]

    kinesis.increase_stream_retention_period(StreamName="clicks", RetentionPeriodHours=48)
    assert (
        kinesis.describe_stream(StreamName="clicks")["StreamDescription"]["RetentionPeriodHours"]
        == 48
    )
    kinesis.decrease_stream_retention_period(StreamName="clicks", RetentionPeriodHours=24)
    with pytest.raises(kinesis.exceptions.InvalidArgumentException):
        kinesis.increase_stream_retention_period(StreamName="clicks", RetentionPeriodHours=12)
    kinesis.delete_stream(StreamName="clicks")
    assert kinesis.list_streams()["StreamNames"] == []


def test_resharding(kinesis: Any) -> None:
    kinesis.create_stream(StreamName="clicks", ShardCount=1)
    kinesis.put_record(StreamName="clicks", Data=b"before", PartitionKey="k")
    parent_iterator = kinesis.get_shard_iterator(
        StreamName="clicks", ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    kinesis.split_shard(
        StreamName="clicks",
        ShardToSplit="shardId-000000000000",
        NewStartingHashKey=str(2**127),
    )
    shards = kinesis.describe_stream(StreamName="clicks")["StreamDescription"]["Shards"]
    assert [s["ShardId"] for s in shards] == [
        "shardId-000000000000",
        "shardId-000000000001",
        "shardId-000000000002",
    ]
    assert "EndingSequenceNumber" in shards[0]["SequenceNumberRange"]
    assert shards[1]["ParentShardId"] == "shardId-000000000000"
    assert shards[2]["HashKeyRange"]["StartingHashKey"] == str(2**127)
    # Reading the closed parent to its end names its children.
    page = kinesis.get_records(ShardIterator=parent_iterator)
    assert [r["Data"] for r in page["Records"]] == [b"before"]
    assert "NextShardIterator" not in page
    assert sorted(c["ShardId"] for c in page["ChildShards"]) == [
        "shardId-000000000001",
        "shardId-000000000002",
    ]
    kinesis.merge_shards(
        StreamName="clicks",
        ShardToMerge="shardId-000000000001",
        AdjacentShardToMerge="shardId-000000000002",
    )
    open_shards = kinesis.list_shards(StreamName="clicks", ShardFilter={"Type": "AT_LATEST"})
    assert [s["ShardId"] for s in open_shards["Shards"]] == ["shardId-000000000003"]
    resized = kinesis.update_shard_count(
        StreamName="clicks", TargetShardCount=2, ScalingType="UNIFORM_SCALING"
    )
    assert (resized["CurrentShardCount"], resized["TargetShardCount"]) == (1, 2)
    summary = kinesis.describe_stream_summary(StreamName="clicks")["StreamDescriptionSummary"]
    assert summary["OpenShardCount"] == 2
    page1 = kinesis.list_shards(StreamName="clicks", MaxResults=4)
    page2 = kinesis.list_shards(NextToken=page1["NextToken"])
    assert len(page1["Shards"]) + len(page2["Shards"]) == 6


def test_error_shapes(kinesis: Any, clock: FakeClock) -> None:
    with pytest.raises(kinesis.exceptions.ResourceNotFoundException) as missing:
        kinesis.describe_stream(StreamName="nope")
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    kinesis.create_stream(StreamName="clicks", ShardCount=1)
    with pytest.raises(kinesis.exceptions.ResourceInUseException):
        kinesis.create_stream(StreamName="clicks", ShardCount=1)
    with pytest.raises(kinesis.exceptions.InvalidArgumentException):
        kinesis.split_shard(
            StreamName="clicks", ShardToSplit="shardId-000000000000", NewStartingHashKey="1"
        )
    with pytest.raises(kinesis.exceptions.InvalidArgumentException):
        kinesis.get_shard_iterator(
            StreamName="clicks",
            ShardId="shardId-000000000000",
            ShardIteratorType="AT_SEQUENCE_NUMBER",
        )
    iterator = kinesis.get_shard_iterator(
        StreamName="clicks", ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    with pytest.raises(kinesis.exceptions.InvalidArgumentException):
        kinesis.get_records(ShardIterator="clicks:" + "A" * 40)
    clock.advance(301)
    with pytest.raises(kinesis.exceptions.ExpiredIteratorException):
        kinesis.get_records(ShardIterator=iterator)
    with pytest.raises(ClientError) as invalid:
        kinesis.put_record(StreamName="clicks", Data=b"x" * (1024 * 1024 + 1), PartitionKey="k")
    assert invalid.value.response["Error"]["Code"] == "InvalidArgumentException"
