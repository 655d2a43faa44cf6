"""Kinesis's control-plane calls for KCL-style and CLI use, through boto3 against a real
server on an injected clock: ListShards' filters, UpdateShardCount, DescribeLimits,
retention increase and decrease with Kinesis's limits and texts, capacity modes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from helpers import FakeClock
from server_harness import client, running

import tidelog
from tidelog.server import ServerThread

HOUR = 3600.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def server(tmp_path: Path, clock: FakeClock) -> Iterator[ServerThread]:
    with running(tmp_path / "data", clock) as serving:
        yield serving


@pytest.fixture
def kinesis(server: ServerThread) -> Any:
    return client("kinesis", server.url)


def _ids(reply: dict[str, Any]) -> list[str]:
    return [s["ShardId"] for s in reply["Shards"]]


def _code(excinfo: pytest.ExceptionInfo[ClientError]) -> str:
    return str(excinfo.value.response["Error"]["Code"])


def test_list_shards_filters(kinesis: Any, clock: FakeClock) -> None:
    kinesis.create_stream(StreamName="s", ShardCount=2)
    created = clock.now
    clock.advance(HOUR)
    kinesis.split_shard(
        StreamName="s", ShardToSplit="shardId-000000000000", NewStartingHashKey=str(2**126)
    )
    split_at = clock.now
    clock.advance(HOUR)
    kinesis.merge_shards(
        StreamName="s",
        ShardToMerge="shardId-000000000003",
        AdjacentShardToMerge="shardId-000000000001",
    )
    merged_at = clock.now
    clock.advance(HOUR)
    every = [f"shardId-00000000000{i}" for i in range(5)]

    def listed(**shard_filter: Any) -> list[str]:
        return _ids(kinesis.list_shards(StreamName="s", ShardFilter=shard_filter))

    assert _ids(kinesis.list_shards(StreamName="s")) == every
    assert listed(Type="FROM_TRIM_HORIZON") == every
    assert listed(Type="AT_LATEST") == ["shardId-000000000002", "shardId-000000000004"]
    assert listed(Type="AT_TRIM_HORIZON") == ["shardId-000000000000", "shardId-000000000001"]
    assert listed(Type="AFTER_SHARD_ID", ShardId="shardId-000000000002") == every[3:]
    # Open at a time: before the split, between split and merge, after the merge.
    assert listed(Type="AT_TIMESTAMP", Timestamp=created + 1) == every[:2]
    between = split_at + 1
    assert listed(Type="AT_TIMESTAMP", Timestamp=between) == every[1:4]
    assert listed(Type="AT_TIMESTAMP", Timestamp=merged_at + 1) == [every[2], every[4]]
    # From a time: the open shards and those closed since.
    assert listed(Type="FROM_TIMESTAMP", Timestamp=between) == every[1:]
    assert listed(Type="FROM_TIMESTAMP", Timestamp=merged_at + 1) == [every[2], every[4]]
    # Pages keep the filter.
    first = kinesis.list_shards(StreamName="s", MaxResults=2, ShardFilter={"Type": "AT_LATEST"})
    assert _ids(first) == [every[2], every[4]] and "NextToken" not in first
    page = kinesis.list_shards(StreamName="s", MaxResults=1, ShardFilter={"Type": "AT_LATEST"})
    rest = kinesis.list_shards(NextToken=page["NextToken"])
    assert _ids(page) + _ids(rest) == [every[2], every[4]]
    for bad in ({"Type": "AFTER_SHARD_ID"}, {"Type": "AT_TIMESTAMP"}):
        with pytest.raises(ClientError) as refused:
            kinesis.list_shards(StreamName="s", ShardFilter=bad)
        assert _code(refused) == "InvalidArgumentException"
    with pytest.raises(ClientError) as refused:
        kinesis.list_shards(NextToken="bm9wZTp4")
    assert _code(refused) == "InvalidArgumentException"


def test_retention_limits_and_texts(kinesis: Any) -> None:
    kinesis.create_stream(StreamName="r", ShardCount=1)
    kinesis.increase_stream_retention_period(StreamName="r", RetentionPeriodHours=48)
    kinesis.increase_stream_retention_period(StreamName="r", RetentionPeriodHours=48)  # equal: ok
    cases = [
        (
            kinesis.increase_stream_retention_period,
            24,
            "Requested retention period (24 hours) for stream r can not be shorter than "
            "existing retention period (48 hours). Use DecreaseRetentionPeriod API.",
        ),
        (
            kinesis.decrease_stream_retention_period,
            72,
            "Requested retention period (72 hours) for stream r can not be longer than "
            "existing retention period (48 hours). Use IncreaseRetentionPeriod API.",
        ),
        (
            kinesis.increase_stream_retention_period,
            8761,
            "Maximum allowed retention period is 8760 hours. Requested retention period "
            "(8761 hours) is too long.",
        ),
    ]
    for call, hours, message in cases:
        with pytest.raises(ClientError) as refused:
            call(StreamName="r", RetentionPeriodHours=hours)
        assert _code(refused) == "InvalidArgumentException"
        assert refused.value.response["Error"]["Message"] == message
    kinesis.decrease_stream_retention_period(StreamName="r", RetentionPeriodHours=24)
    summary = kinesis.describe_stream_summary(StreamName="r")["StreamDescriptionSummary"]
    assert summary["RetentionPeriodHours"] == 24


def test_update_shard_count_and_limits(kinesis: Any, server: ServerThread) -> None:
    kinesis.create_stream(StreamName="u", ShardCount=2)
    reply = kinesis.update_shard_count(
        StreamName="u", TargetShardCount=4, ScalingType="UNIFORM_SCALING"
    )
    assert (reply["CurrentShardCount"], reply["TargetShardCount"]) == (2, 4)
    open_now = kinesis.list_shards(StreamName="u", ShardFilter={"Type": "AT_LATEST"})
    assert len(open_now["Shards"]) == 4
    for target in (9, 1):  # past double, below half
        with pytest.raises(ClientError) as refused:
            kinesis.update_shard_count(
                StreamName="u", TargetShardCount=target, ScalingType="UNIFORM_SCALING"
            )
        assert _code(refused) == "InvalidArgumentException"
    kinesis.create_stream(StreamName="d", StreamModeDetails={"StreamMode": "ON_DEMAND"})
    limits = kinesis.describe_limits()
    assert limits["ShardLimit"] == 500
    assert limits["OpenShardCount"] == 4 + 4  # u's four, and d's default four
    assert (limits["OnDemandStreamCount"], limits["OnDemandStreamCountLimit"]) == (1, 50)
    assert server.app.store.stream_limits().open_shard_count == 8


def test_capacity_modes(kinesis: Any, server: ServerThread, clock: FakeClock) -> None:
    kinesis.create_stream(StreamName="m", ShardCount=1)
    arn = kinesis.describe_stream_summary(StreamName="m")["StreamDescriptionSummary"]["StreamARN"]

    def mode() -> str:
        summary = kinesis.describe_stream_summary(StreamName="m")["StreamDescriptionSummary"]
        described = kinesis.describe_stream(StreamName="m")["StreamDescription"]
        listed = kinesis.list_streams()["StreamSummaries"][0]
        modes = {
            summary["StreamModeDetails"]["StreamMode"],
            described["StreamModeDetails"]["StreamMode"],
            listed["StreamModeDetails"]["StreamMode"],
        }
        assert len(modes) == 1
        return modes.pop()

    assert mode() == "PROVISIONED"
    kinesis.update_stream_mode(StreamARN=arn, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    assert mode() == "ON_DEMAND" and server.app.store.stream("m").mode == "ON_DEMAND"
    with pytest.raises(ClientError) as refused:
        kinesis.update_shard_count(
            StreamName="m", TargetShardCount=2, ScalingType="UNIFORM_SCALING"
        )
    assert _code(refused) == "ValidationException"
    with pytest.raises(tidelog.InvalidArgument):
        server.app.store.stream("m").update_shard_count(2)
    kinesis.update_stream_mode(StreamARN=arn, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    kinesis.update_stream_mode(StreamARN=arn, StreamModeDetails={"StreamMode": "PROVISIONED"})
    # Two switches in 24 hours: the third waits for the first to age out.
    with pytest.raises(ClientError) as refused:
        kinesis.update_stream_mode(StreamARN=arn, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    assert _code(refused) == "LimitExceededException"
    clock.advance(24 * HOUR)
    kinesis.update_stream_mode(StreamARN=arn, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    assert mode() == "ON_DEMAND"
    with pytest.raises(ClientError) as refused:
        kinesis.update_stream_mode(
            StreamARN=arn.replace("/m", "/nope"), StreamModeDetails={"StreamMode": "ON_DEMAND"}
        )
    assert _code(refused) == "ResourceNotFoundException"


def test_at_most_50_on_demand_streams(server: ServerThread, kinesis: Any) -> None:
    store = server.app.store
    for i in range(50):
        store.create_stream(f"o{i}").set_mode("ON_DEMAND")
    with pytest.raises(tidelog.LimitExceeded):
        store.create_stream("one-more").set_mode("ON_DEMAND")
    with pytest.raises(ClientError) as refused:
        kinesis.create_stream(StreamName="x", StreamModeDetails={"StreamMode": "ON_DEMAND"})
    assert _code(refused) == "LimitExceededException"
    store.stream("o0").set_mode("ON_DEMAND")  # already on demand: a no-op, not a 51st
