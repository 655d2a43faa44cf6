"""Delivery stream tags: the library API, and Firehose's tag calls through boto3
against a real server on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from server_harness import client, running

import tidelog
from tidelog.cli.main import main
from tidelog.delivery import DELIVERY_STATE_DB

S3_DESTINATION = {"RoleARN": "arn:aws:iam::000000000000:role/x", "BucketARN": "arn:aws:s3:::b"}


@pytest.fixture
def firehose(tmp_path: Path) -> Iterator[Any]:
    with running(tmp_path / "d") as server:
        yield client("firehose", server.url)


def _create(firehose: Any, name: str, **extra: Any) -> None:
    firehose.create_delivery_stream(
        DeliveryStreamName=name, S3DestinationConfiguration=S3_DESTINATION, **extra
    )


def _all_tags(firehose: Any, name: str, limit: int) -> tuple[list[dict[str, str]], int]:
    """Every tag of `name`, read `limit` at a time; and how many calls it took."""
    tags: list[dict[str, str]] = []
    calls = 0
    options: dict[str, Any] = {"Limit": limit}
    while True:
        page = firehose.list_tags_for_delivery_stream(DeliveryStreamName=name, **options)
        calls += 1
        tags += page["Tags"]
        assert len(page["Tags"]) <= limit
        if not page["HasMoreTags"]:
            return tags, calls
        options["ExclusiveStartTagKey"] = page["Tags"][-1]["Key"]


# -- the library ------------------------------------------------------------------------


def test_tags_in_the_library_survive_a_reopen(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with tidelog.open(data, sync="never") as store:
        ds = store.create_delivery_stream(
            "events", destination=tmp_path / "out", tags={"team": "core"}, buffering_interval=0
        )
        assert ds.tags() == {"team": "core"}
        ds.tag({"env": "dev", "team": "data", "empty": ""})
        ds.untag(["empty", "absent"])
        assert ds.describe().version == 1  # tags are not a destination update
        # Tags stay out of the intents that batches are delivered from.
        ds.put_record(b"x")
        ds._plan(store._logs.now_ms(), force=True)
        with store._logs.env.begin() as txn:
            raw = txn.get(b"events\0intent", db=store._logs.database(DELIVERY_STATE_DB))
        assert raw is not None and "tags" not in json.loads(raw)["config"]
        ds.flush_all()
        assert store.check() == []
    with tidelog.open(data, sync="never") as store:
        assert store.delivery_stream("events").tags() == {"env": "dev", "team": "data"}
        store.delivery_stream("events").untag(["env", "team"])
        assert store.delivery_stream("events").tags() == {}


@pytest.mark.parametrize(
    "tags",
    [
        {"": "v"},
        {"k" * 129: "v"},
        {"k": "v" * 257},
        {"aws:owner": "me"},
        {"a*b": "v"},
        {"k": "semi;colon"},
        {"k": 1},
    ],
)
def test_library_refuses_tags_firehose_refuses(tmp_path: Path, tags: dict[str, Any]) -> None:
    with tidelog.open(tmp_path / "data", sync="never") as store:
        with pytest.raises(tidelog.InvalidArgument, match="^tag"):
            store.create_delivery_stream("e", destination=tmp_path / "out", tags=tags)
        assert store.delivery_streams() == []  # nothing created
        ds = store.create_delivery_stream("e", destination=tmp_path / "out")
        with pytest.raises(tidelog.InvalidArgument, match="^tag"):
            ds.tag(tags)
        assert ds.tags() == {}


def test_library_allows_the_aws_character_set(tmp_path: Path) -> None:
    tags = {"k" * 128: "v" * 256, "Ünïcode 名前 9": "_ . : / = + - @ %", "blank": ""}
    with tidelog.open(tmp_path / "data", sync="never") as store:
        ds = store.create_delivery_stream("e", destination=tmp_path / "out", tags=tags)
        assert ds.tags() == tags


def test_at_most_fifty_tags(tmp_path: Path) -> None:
    with tidelog.open(tmp_path / "data", sync="never") as store:
        ds = store.create_delivery_stream(
            "e", destination=tmp_path / "out", tags={f"k{i}": "v" for i in range(50)}
        )
        ds.tag({"k0": "replaced"})  # replacing keeps the count
        with pytest.raises(tidelog.InvalidArgument, match="LimitExceededException"):
            ds.tag({"one-more": "v"})
        assert len(ds.tags()) == 50 and ds.tags()["k0"] == "replaced"
        with pytest.raises(tidelog.InvalidArgument, match="LimitExceededException"):
            store.create_delivery_stream(
                "f", destination=tmp_path / "out", tags={f"k{i}": "v" for i in range(51)}
            )


def test_tags_of_a_deleted_stream(tmp_path: Path) -> None:
    with tidelog.open(tmp_path / "data", sync="never") as store:
        ds = store.create_delivery_stream("e", destination=tmp_path / "out", tags={"a": "b"})
        ds.delete()
        for call in (ds.tags, lambda: ds.tag({"a": "c"}), lambda: ds.untag(["a"])):
            with pytest.raises(tidelog.NotFound):
                call()
        again = store.create_delivery_stream("e", destination=tmp_path / "out")
        assert again.tags() == {}


def test_info_shows_the_tags(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with tidelog.open(data, sync="never") as store:
        store.create_delivery_stream("events", destination=tmp_path / "out", tags={"team": "a"})
    result = CliRunner().invoke(main, ["info", "events", "--data", str(data), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["config"]["tags"] == {"team": "a"}
    text = CliRunner().invoke(main, ["info", "events", "--data", str(data)]).output
    assert "  tags: team=a" in text.splitlines()


# -- over the wire ----------------------------------------------------------------------


def test_tag_list_untag_through_boto3(firehose: Any) -> None:
    _create(firehose, "events", Tags=[{"Key": "team", "Value": "core"}, {"Key": "no-value"}])
    listed = firehose.list_tags_for_delivery_stream(DeliveryStreamName="events")
    assert listed["Tags"] == [{"Key": "no-value", "Value": ""}, {"Key": "team", "Value": "core"}]
    assert listed["HasMoreTags"] is False

    firehose.tag_delivery_stream(
        DeliveryStreamName="events",
        Tags=[{"Key": f"k{i:02d}", "Value": str(i)} for i in range(20)]
        + [{"Key": "team", "Value": "data"}],
    )
    expected = sorted(
        [{"Key": f"k{i:02d}", "Value": str(i)} for i in range(20)]
        + [{"Key": "no-value", "Value": ""}, {"Key": "team", "Value": "data"}],
        key=lambda t: t["Key"],
    )
    for limit, calls in ((50, 1), (22, 1), (7, 4), (1, 22)):
        assert _all_tags(firehose, "events", limit) == (expected, calls)
    page = firehose.list_tags_for_delivery_stream(
        DeliveryStreamName="events", ExclusiveStartTagKey="k18", Limit=2
    )
    assert [t["Key"] for t in page["Tags"]] == ["k19", "no-value"] and page["HasMoreTags"]

    firehose.untag_delivery_stream(DeliveryStreamName="events", TagKeys=["team", "absent"])
    keys = [t["Key"] for t in _all_tags(firehose, "events", 50)[0]]
    assert "team" not in keys and len(keys) == 21
    # Tagging leaves the destination's version alone.
    d = firehose.describe_delivery_stream(DeliveryStreamName="events")
    assert d["DeliveryStreamDescription"]["VersionId"] == "1"


def test_tag_errors_through_boto3(firehose: Any) -> None:
    _create(firehose, "events", Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(49)])
    firehose.tag_delivery_stream(DeliveryStreamName="events", Tags=[{"Key": "k49", "Value": "v"}])
    with pytest.raises(firehose.exceptions.LimitExceededException):
        firehose.tag_delivery_stream(
            DeliveryStreamName="events", Tags=[{"Key": "k50", "Value": "v"}]
        )
    for bad in ({"Key": "aws:x", "Value": "v"}, {"Key": "k", "Value": "v" * 257}):
        with pytest.raises(firehose.exceptions.InvalidArgumentException):
            firehose.tag_delivery_stream(DeliveryStreamName="events", Tags=[bad])
    with pytest.raises(firehose.exceptions.InvalidArgumentException):
        firehose.tag_delivery_stream(DeliveryStreamName="events", Tags=[{"Key": "k" * 129}])
    with pytest.raises(firehose.exceptions.InvalidArgumentException):
        firehose.list_tags_for_delivery_stream(DeliveryStreamName="events", Limit=51)
    with pytest.raises(firehose.exceptions.InvalidArgumentException):
        firehose.untag_delivery_stream(
            DeliveryStreamName="events", TagKeys=[f"k{i}" for i in range(51)]
        )
    assert len(_all_tags(firehose, "events", 50)[0]) == 50  # the refused calls changed nothing

    # CreateDeliveryStream refuses bad or too many tags and creates nothing.
    with pytest.raises(firehose.exceptions.LimitExceededException):
        _create(firehose, "many", Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(51)])
    with pytest.raises(firehose.exceptions.InvalidArgumentException):
        _create(firehose, "bad", Tags=[{"Key": "a#b", "Value": "v"}])
    assert firehose.list_delivery_streams()["DeliveryStreamNames"] == ["events"]

    for call, args in (
        (firehose.tag_delivery_stream, {"Tags": [{"Key": "a", "Value": "b"}]}),
        (firehose.untag_delivery_stream, {"TagKeys": ["a"]}),
        (firehose.list_tags_for_delivery_stream, {}),
    ):
        with pytest.raises(firehose.exceptions.ResourceNotFoundException):
            call(DeliveryStreamName="missing", **args)


def test_tags_survive_a_server_restart(tmp_path: Path) -> None:
    data = tmp_path / "d"
    with running(data) as server:
        firehose = client("firehose", server.url)
        _create(firehose, "events", Tags=[{"Key": "team", "Value": "core"}])
        firehose.tag_delivery_stream(DeliveryStreamName="events", Tags=[{"Key": "env"}])
    with running(data) as server:
        firehose = client("firehose", server.url)
        listed = firehose.list_tags_for_delivery_stream(DeliveryStreamName="events")
        assert listed["Tags"] == [{"Key": "env", "Value": ""}, {"Key": "team", "Value": "core"}]
