"""Kinesis stream consumers and tags through boto3 against a real server.

Registered consumers are the library's named consumers (`stream.consumer`),
so a consumer registered over the wire has checkpoints the library can use,
and the other way round. Tags live in the stream's configuration.
SubscribeToShard is in tests/test_server_subscribe.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from server_harness import client, running

import tidelog
from tidelog.server import ServerThread


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    with running(tmp_path / "data") as serving:
        yield serving


@pytest.fixture
def kinesis(server: ServerThread) -> Any:
    return client("kinesis", server.url)


def _arn(kinesis: Any, name: str) -> str:
    arn: str = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"][
        "StreamARN"
    ]
    return arn


def test_consumers_are_the_librarys(kinesis: Any, server: ServerThread) -> None:
    kinesis.create_stream(StreamName="s", ShardCount=1)
    arn = _arn(kinesis, "s")
    consumer = kinesis.register_stream_consumer(StreamARN=arn, ConsumerName="app")["Consumer"]
    assert consumer["ConsumerName"] == "app"
    assert consumer["ConsumerARN"].startswith(f"{arn}/consumer/app:")
    assert consumer["ConsumerStatus"] == "ACTIVE"
    with pytest.raises(kinesis.exceptions.ResourceInUseException):
        kinesis.register_stream_consumer(StreamARN=arn, ConsumerName="app")

    described = kinesis.describe_stream_consumer(ConsumerARN=consumer["ConsumerARN"])
    assert described["ConsumerDescription"]["StreamARN"] == arn
    assert described["ConsumerDescription"]["ConsumerARN"] == consumer["ConsumerARN"]
    by_name = kinesis.describe_stream_consumer(StreamARN=arn, ConsumerName="app")
    assert by_name["ConsumerDescription"]["ConsumerARN"] == consumer["ConsumerARN"]

    # The library sees the wire's consumer, and the wire sees the library's.
    store: tidelog.Store = server.app.store
    assert store.stream("s").consumers() == ["app"]
    store.stream("s").consumer("batch")
    for name in ("c1", "c2", "c3"):
        kinesis.register_stream_consumer(StreamARN=arn, ConsumerName=name)
    first = kinesis.list_stream_consumers(StreamARN=arn, MaxResults=3)
    second = kinesis.list_stream_consumers(StreamARN=arn, NextToken=first["NextToken"])
    names = [c["ConsumerName"] for c in first["Consumers"] + second["Consumers"]]
    assert names == ["app", "batch", "c1", "c2", "c3"]
    assert "NextToken" not in second
    summary = kinesis.describe_stream_summary(StreamName="s")["StreamDescriptionSummary"]
    assert summary["ConsumerCount"] == 5

    kinesis.deregister_stream_consumer(ConsumerARN=consumer["ConsumerARN"])
    kinesis.deregister_stream_consumer(StreamARN=arn, ConsumerName="c1")
    assert store.stream("s").consumers() == ["batch", "c2", "c3"]
    with pytest.raises(kinesis.exceptions.ResourceNotFoundException):
        kinesis.describe_stream_consumer(StreamARN=arn, ConsumerName="app")
    with pytest.raises(kinesis.exceptions.InvalidArgumentException):
        kinesis.describe_stream_consumer(ConsumerName="c2")


def test_tags(kinesis: Any) -> None:
    kinesis.create_stream(StreamName="t", ShardCount=1, Tags={"team": "core"})
    kinesis.add_tags_to_stream(StreamName="t", Tags={"env": "dev", "cost": "1"})
    page = kinesis.list_tags_for_stream(StreamName="t", Limit=2)
    assert page["Tags"] == [{"Key": "cost", "Value": "1"}, {"Key": "env", "Value": "dev"}]
    assert page["HasMoreTags"] is True
    rest = kinesis.list_tags_for_stream(StreamName="t", ExclusiveStartTagKey="env")
    assert rest["Tags"] == [{"Key": "team", "Value": "core"}] and not rest["HasMoreTags"]
    kinesis.remove_tags_from_stream(StreamName="t", TagKeys=["cost", "team"])
    arn = _arn(kinesis, "t")
    kinesis.tag_resource(ResourceARN=arn, Tags={"owner": "ops"})
    kinesis.untag_resource(ResourceARN=arn, TagKeys=["env"])
    assert kinesis.list_tags_for_resource(ResourceARN=arn)["Tags"] == [
        {"Key": "owner", "Value": "ops"}
    ]
    with pytest.raises(kinesis.exceptions.InvalidArgumentException):
        kinesis.add_tags_to_stream(StreamName="t", Tags={f"k{i}": "v" for i in range(60)})
    with pytest.raises(kinesis.exceptions.ResourceNotFoundException):
        kinesis.add_tags_to_stream(StreamName="missing", Tags={"a": "b"})


def test_tags_and_consumers_survive_a_restart(tmp_path: Path) -> None:
    with running(tmp_path / "d") as server:
        kinesis = client("kinesis", server.url)
        kinesis.create_stream(StreamName="s", ShardCount=2)
        kinesis.add_tags_to_stream(StreamName="s", Tags={"k": "v"})
        arn = _arn(kinesis, "s")
        registered = kinesis.register_stream_consumer(StreamARN=arn, ConsumerName="app")
    with running(tmp_path / "d") as server:
        kinesis = client("kinesis", server.url)
        assert kinesis.list_tags_for_stream(StreamName="s")["Tags"] == [{"Key": "k", "Value": "v"}]
        consumers = kinesis.list_stream_consumers(StreamARN=arn)["Consumers"]
        assert [c["ConsumerARN"] for c in consumers] == [registered["Consumer"]["ConsumerARN"]]
