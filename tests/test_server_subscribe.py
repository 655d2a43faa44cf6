"""SubscribeToShard (enhanced fan-out) through boto3 against a real server, over HTTP/1.1.

The event-stream bytes are checked with botocore's own decoder
(botocore.eventstream), both as server/eventstream.py writes them and as
they arrive on a raw HTTP connection.
"""

from __future__ import annotations

import http.client
import json
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer
from botocore.exceptions import ClientError, EventStreamError
from helpers import FakeClock
from server_harness import client, running

from tidelog.server import ServerThread, eventstream
from tidelog.stream_subscriptions import SUBSCRIPTION_MS, TAKEOVER_MS

SHARD = "shardId-000000000000"


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


def _consumer(kinesis: Any, stream: str = "s", shards: int = 1) -> str:
    kinesis.create_stream(StreamName=stream, ShardCount=shards)
    arn = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"][
        "StreamARN"
    ]
    consumer = kinesis.register_stream_consumer(StreamARN=arn, ConsumerName="app")
    return str(consumer["Consumer"]["ConsumerARN"])


def _subscribe(kinesis: Any, arn: str, position: dict[str, Any], shard: str = SHARD) -> Any:
    return kinesis.subscribe_to_shard(ConsumerARN=arn, ShardId=shard, StartingPosition=position)[
        "EventStream"
    ]


# -- the encoding, against botocore's decoder -----------------------------------------------------


def _decode(data: bytes) -> list[Any]:
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    return list(buffer)


def test_messages_decode_with_botocore() -> None:
    payload = {"Records": [], "ContinuationSequenceNumber": "1", "MillisBehindLatest": 0}
    data = (
        eventstream.event("initial-response", {})
        + eventstream.event("SubscribeToShardEvent", payload)
        + eventstream.exception("ResourceInUseException", "taken over é")
        + eventstream.encode_message([("x", "y" * 65535)], b"\x00" * 100_000)
    )
    messages = _decode(data)
    assert [m.headers.get(":event-type") for m in messages] == [
        "initial-response",
        "SubscribeToShardEvent",
        None,
        None,
    ]
    assert json.loads(messages[1].payload) == payload
    assert messages[2].headers[":message-type"] == "exception"
    assert messages[2].headers[":exception-type"] == "ResourceInUseException"
    assert json.loads(messages[2].payload) == {"message": "taken over é"}
    assert messages[3].headers == {"x": "y" * 65535} and messages[3].payload == b"\x00" * 100_000
    # Fed a byte at a time, as a slow connection delivers it: the same messages.
    buffer = EventStreamBuffer()
    pieces = []
    for i in range(len(data[:2000])):
        buffer.add_data(data[i : i + 1])
        pieces += list(buffer)
    assert [m.payload for m in pieces] == [m.payload for m in messages[:3]]


@pytest.mark.parametrize("position", [2, 9, 14, 30, -5])
def test_a_damaged_byte_fails_botocores_checksums(position: int) -> None:
    """Bytes 0-7 are the prelude (its CRC at 8-11), then headers, payload, message CRC."""
    data = bytearray(eventstream.event("SubscribeToShardEvent", {"Records": []}))
    data[position] ^= 0x01
    with pytest.raises(ChecksumMismatch):
        _decode(bytes(data))


def test_the_format_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        eventstream.encode_message([("x" * 256, "v")], b"")
    with pytest.raises(ValueError):
        eventstream.encode_message([("x", "v" * 65536)], b"")
    with pytest.raises(ValueError):
        eventstream.encode_message([], b"\x00" * (eventstream.PAYLOAD_BYTES_MAX + 1))


def test_raw_http_bytes_decode_with_botocore(kinesis: Any, server: ServerThread) -> None:
    arn = _consumer(kinesis)
    put = kinesis.put_record(StreamName="s", Data=b"hello", PartitionKey="k")
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    body = json.dumps(
        {"ConsumerARN": arn, "ShardId": SHARD, "StartingPosition": {"Type": "TRIM_HORIZON"}}
    )
    headers = {
        "X-Amz-Target": "Kinesis_20131202.SubscribeToShard",
        "Content-Type": "application/x-amz-json-1.1",
    }
    connection.request("POST", "/", body=body, headers=headers)
    response = connection.getresponse()
    assert response.status == 200
    assert response.getheader("Content-Type") == "application/vnd.amazon.eventstream"
    assert response.getheader("Transfer-Encoding") == "chunked"
    buffer = EventStreamBuffer()
    messages: list[Any] = []
    while len(messages) < 2:
        buffer.add_data(response.read1(65536))
        messages += list(buffer)
    connection.close()
    assert messages[0].headers[":event-type"] == "initial-response"
    assert messages[0].payload == b"{}"
    assert messages[1].headers == {
        ":event-type": "SubscribeToShardEvent",
        ":content-type": "application/json",
        ":message-type": "event",
    }
    event = json.loads(messages[1].payload)
    assert [r["Data"] for r in event["Records"]] == ["aGVsbG8="]
    assert event["ContinuationSequenceNumber"] == put["SequenceNumber"]


# -- boto3 ---------------------------------------------------------------------------------------


def test_records_arrive_as_they_are_put(tmp_path: Path) -> None:
    """Put one record, wait for its event, put the next: put-to-event latency (p50 < 50 ms).
    On the real clock: the arrival times are real too."""
    with running(tmp_path / "real") as server:
        kinesis = client("kinesis", server.url)
        producer = client("kinesis", server.url)
        arn = _consumer(kinesis)
        events = _subscribe(kinesis, arn, {"Type": "LATEST"})
        count = 50
        received = [threading.Event() for _ in range(count)]
        arrived: list[float] = [0.0] * count
        sent: list[float] = [0.0] * count
        failures: list[BaseException] = []

        def produce() -> None:
            try:
                for i in range(count):
                    sent[i] = time.perf_counter()
                    producer.put_record(StreamName="s", Data=b"%d" % i, PartitionKey="k")
                    assert received[i].wait(30), f"record {i} never arrived"
            except BaseException as exc:  # noqa: BLE001 - reported by the test thread
                failures.append(exc)
                for event in received:
                    event.set()

        thread = threading.Thread(target=produce)
        thread.start()
        got = 0
        for event in events:
            for record in event["SubscribeToShardEvent"]["Records"]:
                i = int(record["Data"])
                assert i == got  # in order, each once
                arrived[i] = time.perf_counter()
                received[i].set()
                got += 1
            if got == count or failures:
                break
        events.close()
        thread.join(30)
        assert not failures, failures
        latencies_ms = sorted((a - s) * 1000 for a, s in zip(arrived, sent, strict=True))
        assert statistics.median(latencies_ms) < 50, latencies_ms


def test_resume_from_the_continuation_after_5_minutes(kinesis: Any, clock: FakeClock) -> None:
    arn = _consumer(kinesis)
    first = [
        kinesis.put_record(StreamName="s", Data=b"a%d" % i, PartitionKey="k")["SequenceNumber"]
        for i in range(5)
    ]
    events = _subscribe(kinesis, arn, {"Type": "TRIM_HORIZON"})
    seen: list[str] = []
    continuation = None
    for event in events:
        body = event["SubscribeToShardEvent"]
        seen += [r["SequenceNumber"] for r in body["Records"]]
        continuation = body["ContinuationSequenceNumber"]
        if len(seen) == 5:
            clock.advance(SUBSCRIPTION_MS / 1000)  # the subscription's 5 minutes are up
    # The stream ended by itself (the loop above ran out).
    assert seen == first and continuation == first[-1]
    second = [
        kinesis.put_record(StreamName="s", Data=b"b%d" % i, PartitionKey="k")["SequenceNumber"]
        for i in range(3)
    ]
    again = _subscribe(
        kinesis, arn, {"Type": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": continuation}
    )
    resumed: list[str] = []
    for event in again:
        resumed += [r["SequenceNumber"] for r in event["SubscribeToShardEvent"]["Records"]]
        if len(resumed) == 3:
            break
    again.close()
    assert resumed == second


def test_the_end_of_a_shard_names_its_children(kinesis: Any) -> None:
    arn = _consumer(kinesis)
    kinesis.put_record(StreamName="s", Data=b"x", PartitionKey="k")
    events = _subscribe(kinesis, arn, {"Type": "TRIM_HORIZON"})
    kinesis.split_shard(StreamName="s", ShardToSplit=SHARD, NewStartingHashKey=str(2**127))
    bodies = [event["SubscribeToShardEvent"] for event in events]  # ends at SHARD_END
    assert [r["Data"] for body in bodies for r in body["Records"]] == [b"x"]
    last = bodies[-1]
    assert last.get("ContinuationSequenceNumber") is None
    assert [c["ShardId"] for c in last["ChildShards"]] == [
        "shardId-000000000001",
        "shardId-000000000002",
    ]
    assert last["ChildShards"][0]["ParentShards"] == [SHARD]
    assert last["ChildShards"][1]["HashKeyRange"]["StartingHashKey"] == str(2**127)


def test_one_subscription_per_consumer_and_shard(kinesis: Any, clock: FakeClock) -> None:
    arn = _consumer(kinesis)
    first = _subscribe(kinesis, arn, {"Type": "LATEST"})
    with pytest.raises(ClientError) as refused:
        _subscribe(kinesis, arn, {"Type": "LATEST"})
    assert refused.value.response["Error"]["Code"] == "ResourceInUseException"
    clock.advance(TAKEOVER_MS / 1000)
    second = _subscribe(kinesis, arn, {"Type": "LATEST"})
    with pytest.raises(EventStreamError) as taken:
        for _ in first:
            pass
    assert taken.value.response["Error"]["Code"] == "ResourceInUseException"
    kinesis.put_record(StreamName="s", Data=b"x", PartitionKey="k")
    for event in second:
        if event["SubscribeToShardEvent"]["Records"]:
            break
    second.close()


def test_subscriptions_are_refused_clearly(kinesis: Any, clock: FakeClock) -> None:
    arn = _consumer(kinesis)
    cases = [
        ({"ConsumerARN": arn[: arn.rindex(":")] + ":1"}, "ResourceNotFoundException"),
        ({"ShardId": "shardId-000000000007"}, "ResourceNotFoundException"),
        ({"StartingPosition": {"Type": "AT_SEQUENCE_NUMBER"}}, "InvalidArgumentException"),
        ({"StartingPosition": {"Type": "AT_TIMESTAMP"}}, "InvalidArgumentException"),
        (
            {"StartingPosition": {"Type": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": "7"}},
            "InvalidArgumentException",
        ),
    ]
    for change, code in cases:
        request = {"ConsumerARN": arn, "ShardId": SHARD, "StartingPosition": {"Type": "LATEST"}}
        request.update(change)
        with pytest.raises(ClientError) as refused:
            kinesis.subscribe_to_shard(**request)
        assert refused.value.response["Error"]["Code"] == code, change
    # Deregistering the consumer ends its live subscription with ResourceNotFound.
    events = _subscribe(kinesis, arn, {"Type": "LATEST"})
    kinesis.deregister_stream_consumer(ConsumerARN=arn)
    with pytest.raises(EventStreamError) as gone:
        for _ in events:
            pass
    assert gone.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_stopping_the_server_ends_live_subscriptions(tmp_path: Path) -> None:
    with running(tmp_path / "d") as server:
        kinesis = client("kinesis", server.url)
        arn = _consumer(kinesis)
        events = _subscribe(kinesis, arn, {"Type": "LATEST"})
        started = time.monotonic()
        server.stop()  # running() stops it again: stop is idempotent
        assert time.monotonic() - started < 10  # not the 25 s graceful timeout
        assert list(events) == []  # the stream ended cleanly
