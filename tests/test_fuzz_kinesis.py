"""Fuzzing Kinesis (AWS JSON 1.1) and Firehose against one real server (issue 14).

Hypothesis builds requests from botocore's Kinesis and Firehose models with
edge values (numbers that are not numbers, timestamps out of any range,
iterators and sequence numbers tampered with, JSON nested too deep; see
tests/fuzz_wire.py) and garbage bodies; every reply must be below 500 and
in the JSON protocols' error shape. Records put before the fuzzing are read
back intact afterwards, and the server still answers. Derandomized and
bounded.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fuzz_wire import FUZZ, KEEP, check_json_reply, json_request
from hypothesis import assume, given
from hypothesis import strategies as st
from server_harness import client, post_json, running

import tidelog
from tidelog.server import ServerThread, firehose, kinesis

KEPT = [f"record {i} é😀".encode() for i in range(5)] + [b"\x00\xff"]
KINESIS_OPERATIONS = sorted(kinesis.HANDLERS) + ["Nope"]
FIREHOSE_OPERATIONS = sorted(firehose.HANDLERS) + ["Nope"]
STREAM_ARN = "arn:aws:kinesis:us-east-1:000000000000:stream"
DESTINATION = {"RoleARN": "arn:aws:iam::000000000000:role/r", "BucketARN": "arn:aws:s3:::b"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with running(Path(tmp_path_factory.mktemp("fuzz-kinesis")) / "data") as started:
        boto = client("kinesis", started.url)
        boto.create_stream(StreamName=KEEP, ShardCount=2)
        for i, data in enumerate(KEPT):
            boto.put_record(StreamName=KEEP, Data=data, PartitionKey=f"p{i}")
        hose = client("firehose", started.url)
        hose.create_delivery_stream(
            DeliveryStreamName=f"{KEEP}d", ExtendedS3DestinationConfiguration=DESTINATION
        )
        before = hose.describe_delivery_stream(DeliveryStreamName=f"{KEEP}d")
        _ensure_targets(started)
        yield started
        got = []
        for shard in boto.list_shards(StreamName=KEEP)["Shards"]:
            iterator = boto.get_shard_iterator(
                StreamName=KEEP, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            got += [r["Data"] for r in boto.get_records(ShardIterator=iterator)["Records"]]
        assert sorted(got) == sorted(KEPT)
        after = hose.describe_delivery_stream(DeliveryStreamName=f"{KEEP}d")
        assert after["DeliveryStreamDescription"] == before["DeliveryStreamDescription"]


def _ensure_targets(server: ServerThread) -> None:
    """The stream and delivery stream the fuzzer aims at, put back if it deleted them."""
    store = server.app.store
    try:
        store.stream("fz")
    except tidelog.NotFound:
        store.create_stream("fz", shards=2).put_many([(b"fz", "a"), (b"fz", "b")])
    try:
        store.delivery_stream("fzd")
    except tidelog.NotFound:
        store.create_delivery_stream("fzd", destination=tidelog.S3Destination("b"))


def _kinesis_fill(server: ServerThread) -> dict[str, Any]:
    boto = client("kinesis", server.url)
    shards = [s["ShardId"] for s in boto.list_shards(StreamName="fz")["Shards"]]
    iterator = boto.get_shard_iterator(
        StreamName="fz", ShardId=shards[0], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    sequence = boto.put_record(StreamName="fz", Data=b"x", PartitionKey="a")["SequenceNumber"]
    name, _, inner = iterator.partition(":")
    return {
        "StreamName": ["fz", "fz2", "nope", "evil\n", "a:b"],
        "StreamARN": [f"{STREAM_ARN}/fz", f"{STREAM_ARN}/nope", "arn:x"],
        "ShardId": shards + ["shardId-999999999999", "shardId-١٢٣٤٥٦٧٨٩٠١٢", "x"],
        "ShardIterator": [
            iterator,
            f"{name}:{inner[:-2]}",
            f"{name}:{inner}x",
            f"nope:{inner}",
            "fz:",
            ":",
            f"{name}:{'A' * 5000}",
        ],
        "ShardIteratorType": ["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP", "AT_SEQUENCE_NUMBER"],
        "StartingSequenceNumber": [sequence, sequence + "9", "-1", "x", "9" * 100],
        "Timestamp": [0, 1e17, -1e17, 1.5, 1_700_000_000],
        "Data": ["eA==", "", "!!"],
        "PartitionKey": ["a", "", "x" * 257, "\x00"],
        "ExplicitHashKey": ["0", "-1", str(2**128), "²", "1" * 50],
        "Records": [
            [{"Data": "eA==", "PartitionKey": "a"}],
            [{"Data": "eA==", "PartitionKey": "a", "ExplicitHashKey": str(2**128)}],
            [{"Data": "!!", "PartitionKey": "a"}] * 3,
            [],
            [{"Data": "eA==", "PartitionKey": "a"}] * 501,
        ],
        "ShardCount": [1, 0, 501],
        "TargetShardCount": [1, 2, 0, 501],
        "ScalingType": ["UNIFORM_SCALING"],
        "ShardToSplit": shards,
        "NewStartingHashKey": ["1", "0", str(2**127), str(2**128)],
        "ShardToMerge": shards,
        "AdjacentShardToMerge": list(reversed(shards)),
        "RetentionPeriodHours": [24, 23, 8760, 8761],
        "ConsumerName": ["c", "c\n", ""],
        "ConsumerARN": [f"{STREAM_ARN}/fz/consumer/c:1", "x/consumer/"],
        "Tags": [{"k": "v"}, {"": "x" * 300}],
        "TagKeys": [["k"], []],
        "ResourceARN": [f"{STREAM_ARN}/fz", "arn:x"],
        "NextToken": ["", "!!", "eA==", "bm9wZTp4"],
    }


def _firehose_fill() -> dict[str, Any]:
    conversion = {
        "Enabled": True,
        "OutputFormatConfiguration": {"Serializer": {"ParquetSerDe": {}}},
        "SchemaConfiguration": {"TableName": "struct<" * 500},
    }
    return {
        "DeliveryStreamName": ["fzd", "fzd2", "nope", "evil\n"],
        "ExtendedS3DestinationConfiguration": [
            DESTINATION,
            {**DESTINATION, "BucketARN": "arn:aws:s3:::"},
            {**DESTINATION, "BufferingHints": {"SizeInMBs": 0, "IntervalInSeconds": 901}},
            {**DESTINATION, "DataFormatConversionConfiguration": conversion},
            {**DESTINATION, "CompressionFormat": "Bogus"},
        ],
        "Record": [{"Data": "eA=="}, {"Data": "!!"}, {}],
        "Records": [[{"Data": "eA=="}] * 2, [], [{"Data": "eA=="}] * 501],
        "DestinationId": ["destinationId-000000000001", "x"],
        "CurrentDeliveryStreamVersionId": ["1", "2", "²", "--1", "1" * 30],
        "ExtendedS3DestinationUpdate": [{"Prefix": "p/"}, {"BufferingHints": {"SizeInMBs": 129}}],
        "Tags": [[{"Key": "k", "Value": "v"}], [{"Key": ""}]],
        "TagKeys": [["k"], []],
    }


def test_fuzz_kinesis_json(server: ServerThread) -> None:
    fill = _kinesis_fill(server)

    @FUZZ
    @given(request=json_request("kinesis", KINESIS_OPERATIONS, fill))
    def run(request: tuple[str, bytes]) -> None:
        operation, body = request
        assume(KEEP.encode() not in body)
        check_json_reply(post_json(server.port, "kinesis", operation, body))
        _ensure_targets(server)

    run()


def test_fuzz_firehose_json(server: ServerThread) -> None:
    fill = _firehose_fill()

    @FUZZ
    @given(request=json_request("firehose", FIREHOSE_OPERATIONS, fill))
    def run(request: tuple[str, bytes]) -> None:
        operation, body = request
        assume(KEEP.encode() not in body)
        check_json_reply(post_json(server.port, "firehose", operation, body))
        _ensure_targets(server)

    run()


# CBOR data items (RFC 8949) as the Java SDK's AWS CBOR 1.1 sends them: maps of
# text keys, byte strings for blobs, tag 1 for timestamps; some well formed,
# some cut short, some nested 100,000 deep.
_CBOR_ITEMS = [
    b"\xa1\x6aStreamName\x62fz",  # {"StreamName": "fz"}
    b"\xa3\x6aStreamName\x62fz\x64Data\x41x\x6cPartitionKey\x61a",  # with a byte string
    b"\xa1\x69Timestamp\xc1\x1b\x00\x00\x01\x8b\xcf\xe5\x68\x00",  # tag 1, epoch ms
    b"\xbf\x6aStreamName\x62fz\xff",  # an indefinite-length map
    b"\x81" * 100_000,  # arrays nested 100,000 deep
    b"\xa1\x6aStreamName",  # cut short
    b"\x5b\xff\xff\xff\xff\xff\xff\xff\xff",  # a byte string of 2**64-1 bytes, announced
    b"\xf9\x7e\x00",  # a half-precision NaN
]


def test_fuzz_kinesis_cbor(server: ServerThread) -> None:
    """tidelog does not serve AWS CBOR (docs/server.md): a CBOR request is refused
    as a request it cannot read, in the JSON error shape, whatever the bytes."""

    @FUZZ
    @given(
        operation=st.sampled_from(KINESIS_OPERATIONS),
        body=st.sampled_from(_CBOR_ITEMS) | st.binary(max_size=200),
    )
    def run(operation: str, body: bytes) -> None:
        assume(KEEP.encode() not in body)
        reply = post_json(server.port, "kinesis", operation, body, "application/x-amz-cbor-1.1")
        check_json_reply(reply)
        assert reply.status == 400

    run()
