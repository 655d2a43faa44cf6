"""The Firehose API through boto3: tidelog's endpoint in front, moto's S3 behind."""

from __future__ import annotations

import gzip
import io
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from helpers import collect_complete_lines
from server_harness import client, free_port, start_serve

import tidelog
from tidelog.server import ServerThread

pytest.importorskip("moto.server")
from moto.server import ThreadedMotoServer  # noqa: E402

CLI = [sys.executable, "-m", "tidelog.cli.main"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Any, Any]]:
    port = _free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    s3_url = f"http://127.0.0.1:{port}"
    # The endpoint's S3 destinations use boto3's own configuration.
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    s3 = boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1")
    urllib.request.urlopen(urllib.request.Request(f"{s3_url}/moto-api/reset", method="POST"))
    s3.create_bucket(Bucket="landing")
    try:
        with tidelog.open(tmp_path / "d", sync="never") as store:
            server = ServerThread(store).start()
            try:
                yield store, client("firehose", server.url), s3
            finally:
                server.stop()
            assert store.check() == []
    finally:
        moto.stop()


def test_firehose_api_through_boto3(setup: tuple[Any, Any, Any]) -> None:
    store, firehose, s3 = setup
    arn = firehose.create_delivery_stream(
        DeliveryStreamName="events",
        DeliveryStreamType="DirectPut",
        ExtendedS3DestinationConfiguration={
            "RoleARN": "arn:aws:iam::000000000000:role/x",
            "BucketARN": "arn:aws:s3:::landing",
            "Prefix": "in/",
            "ErrorOutputPrefix": "err/",
            "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 60},
            "CompressionFormat": "GZIP",
            "ProcessingConfiguration": {
                "Enabled": True,
                "Processors": [{"Type": "AppendDelimiterToRecord"}],
            },
        },
    )["DeliveryStreamARN"]
    assert arn.endswith(":deliverystream/events")
    with pytest.raises(firehose.exceptions.ResourceInUseException):
        firehose.create_delivery_stream(
            DeliveryStreamName="events",
            S3DestinationConfiguration={"RoleARN": "r", "BucketARN": "arn:aws:s3:::landing"},
        )
    d = firehose.describe_delivery_stream(DeliveryStreamName="events")["DeliveryStreamDescription"]
    assert d["DeliveryStreamStatus"] == "ACTIVE" and d["VersionId"] == "1"
    dest = d["Destinations"][0]["ExtendedS3DestinationDescription"]
    assert dest["BufferingHints"] == {"SizeInMBs": 1, "IntervalInSeconds": 60}
    assert (dest["Prefix"], dest["CompressionFormat"]) == ("in/", "GZIP")
    assert firehose.list_delivery_streams()["DeliveryStreamNames"] == ["events"]

    one = firehose.put_record(DeliveryStreamName="events", Record={"Data": b"first"})
    assert one["RecordId"]
    batch = firehose.put_record_batch(
        DeliveryStreamName="events", Records=[{"Data": b"r%d" % i} for i in range(10)]
    )
    assert batch["FailedPutCount"] == 0 and len(batch["RequestResponses"]) == 10
    with pytest.raises(firehose.exceptions.InvalidArgumentException):
        firehose.put_record_batch(DeliveryStreamName="events", Records=[{"Data": b"x"}] * 501)
    with pytest.raises(firehose.exceptions.ResourceNotFoundException):
        firehose.put_record(DeliveryStreamName="nope", Record={"Data": b"x"})

    store.delivery_stream("events").flush_all()
    listing = s3.list_objects_v2(Bucket="landing")["Contents"]
    (key,) = [o["Key"] for o in listing]
    assert key.startswith("in/") and key.endswith(".gz")
    body = s3.get_object(Bucket="landing", Key=key)["Body"].read()
    assert gzip.decompress(body).split(b"\n")[:-1] == [b"first"] + [b"r%d" % i for i in range(10)]

    firehose.update_destination(
        DeliveryStreamName="events",
        CurrentDeliveryStreamVersionId="1",
        DestinationId=d["Destinations"][0]["DestinationId"],
        ExtendedS3DestinationUpdate={"Prefix": "v2/", "CompressionFormat": "UNCOMPRESSED"},
    )
    with pytest.raises(firehose.exceptions.ConcurrentModificationException):
        firehose.update_destination(
            DeliveryStreamName="events",
            CurrentDeliveryStreamVersionId="1",
            DestinationId=d["Destinations"][0]["DestinationId"],
            ExtendedS3DestinationUpdate={"Prefix": "v3/"},
        )
    firehose.put_record(DeliveryStreamName="events", Record={"Data": b"later"})
    store.delivery_stream("events").flush_all()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="landing", Prefix="v2/")["Contents"]]
    assert len(keys) == 1
    assert s3.get_object(Bucket="landing", Key=keys[0])["Body"].read() == b"later\n"

    firehose.delete_delivery_stream(DeliveryStreamName="events")
    assert firehose.list_delivery_streams()["DeliveryStreamNames"] == []
    with pytest.raises(firehose.exceptions.ResourceNotFoundException):
        firehose.describe_delivery_stream(DeliveryStreamName="events")


def test_firehose_from_a_kinesis_stream(setup: tuple[Any, Any, Any]) -> None:
    store, firehose, s3 = setup
    kinesis = client("kinesis", firehose.meta.endpoint_url)
    kinesis.create_stream(StreamName="clicks", ShardCount=2)
    for i in range(20):
        kinesis.put_record(StreamName="clicks", Data=b"c%d\n" % i, PartitionKey=str(i))
    stream_arn = kinesis.describe_stream_summary(StreamName="clicks")["StreamDescriptionSummary"][
        "StreamARN"
    ]
    firehose.create_delivery_stream(
        DeliveryStreamName="from-clicks",
        DeliveryStreamType="KinesisStreamAsSource",
        KinesisStreamSourceConfiguration={"KinesisStreamARN": stream_arn, "RoleARN": "r"},
        S3DestinationConfiguration={"RoleARN": "r", "BucketARN": "arn:aws:s3:::landing"},
    )
    d = firehose.describe_delivery_stream(DeliveryStreamName="from-clicks")
    assert d["DeliveryStreamDescription"]["DeliveryStreamType"] == "KinesisStreamAsSource"
    with pytest.raises(firehose.exceptions.InvalidArgumentException):
        firehose.put_record(DeliveryStreamName="from-clicks", Record={"Data": b"x"})
    store.delivery_stream("from-clicks").flush_all()
    (obj,) = s3.list_objects_v2(Bucket="landing")["Contents"]
    lines = s3.get_object(Bucket="landing", Key=obj["Key"])["Body"].read().splitlines()
    assert sorted(lines) == sorted(b"c%d" % i for i in range(20))


def test_firehose_parquet_conversion(setup: tuple[Any, Any, Any]) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    store, firehose, s3 = setup

    def destination(conversion: dict[str, Any], **more: Any) -> dict[str, Any]:
        return {
            "RoleARN": "r",
            "BucketARN": "arn:aws:s3:::landing",
            "Prefix": "pq/",
            "DataFormatConversionConfiguration": conversion,
            **more,
        }

    parquet = {
        "Enabled": True,
        "SchemaConfiguration": {"TableName": "struct<id:bigint,tags:map<string,int>>"},
        "InputFormatConfiguration": {"Deserializer": {"OpenXJsonSerDe": {}}},
        "OutputFormatConfiguration": {"Serializer": {"ParquetSerDe": {"Compression": "GZIP"}}},
    }
    firehose.create_delivery_stream(
        DeliveryStreamName="pq", ExtendedS3DestinationConfiguration=destination(parquet)
    )
    d = firehose.describe_delivery_stream(DeliveryStreamName="pq")["DeliveryStreamDescription"]
    conversion = d["Destinations"][0]["ExtendedS3DestinationDescription"][
        "DataFormatConversionConfiguration"
    ]
    assert conversion["SchemaConfiguration"] == parquet["SchemaConfiguration"]
    assert conversion["OutputFormatConfiguration"] == parquet["OutputFormatConfiguration"]
    firehose.put_record_batch(
        DeliveryStreamName="pq",
        Records=[{"Data": b'{"id": %d, "tags": {"k": %d}}' % (i, i)} for i in range(5)],
    )
    store.delivery_stream("pq").flush_all()
    (obj,) = s3.list_objects_v2(Bucket="landing", Prefix="pq/")["Contents"]
    assert obj["Key"].endswith(".parquet")
    body = s3.get_object(Bucket="landing", Key=obj["Key"])["Body"].read()
    table = pq.read_table(io.BytesIO(body))
    assert table.to_pylist() == [{"id": i, "tags": [("k", i)]} for i in range(5)]

    refused = [
        {**parquet, "OutputFormatConfiguration": {"Serializer": {"OrcSerDe": {}}}},
        {**parquet, "SchemaConfiguration": {"DatabaseName": "db", "TableName": "events"}},
    ]
    for bad in refused:
        with pytest.raises(firehose.exceptions.InvalidArgumentException):
            firehose.create_delivery_stream(
                DeliveryStreamName="bad", ExtendedS3DestinationConfiguration=destination(bad)
            )
    with pytest.raises(firehose.exceptions.InvalidArgumentException, match="parquet"):
        firehose.create_delivery_stream(
            DeliveryStreamName="bad",
            ExtendedS3DestinationConfiguration=destination(parquet, CompressionFormat="GZIP"),
        )
    assert firehose.list_delivery_streams()["DeliveryStreamNames"] == ["pq"]


def test_a_failing_destination_shows_in_info_and_the_server_log_at_the_first_attempt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A delivery stream whose bucket does not exist: Firehose retries for
    retry_duration (300 s by default) before its records fail, and the error
    must not wait for that."""
    moto_port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port, verbose=False)
    moto.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{moto_port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    data, port = tmp_path / "d", free_port()
    process = start_serve(data, port, "--no-stomp")
    stderr: list[str] = []
    assert process.stderr is not None
    reader = collect_complete_lines(process.stderr, stderr)
    try:
        firehose = client("firehose", f"http://127.0.0.1:{port}")
        firehose.create_delivery_stream(
            DeliveryStreamName="lost",
            S3DestinationConfiguration={
                "RoleARN": "r",
                "BucketARN": "arn:aws:s3:::no-such-bucket",
                "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 0},
            },
        )
        firehose.put_record(DeliveryStreamName="lost", Record={"Data": b"r1\n"})
        deadline = time.monotonic() + 60  # a bound; the first attempt is within a second
        progress: dict[str, Any] = {}
        while not progress.get("failing"):
            assert time.monotonic() < deadline, f"no error shown: {progress}"
            time.sleep(0.2)
            shown = subprocess.run(
                [*CLI, "--json", "info", "delivery-stream:lost", "--data", str(data)],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert shown.returncode == 0, shown.stderr
            progress = json.loads(shown.stdout)["progress"]
        assert "NoSuchBucket" in progress["last_error"], progress
        assert progress["last_error_at"] and progress["records_failed"] == 0  # still retrying
        assert progress["buffered_records"] == 1  # nothing lost meanwhile
        while not any("NoSuchBucket" in line for line in stderr):
            assert time.monotonic() < deadline, f"not in the server log: {stderr}"
            time.sleep(0.05)
        [line] = [line for line in stderr if "NoSuchBucket" in line]
        assert "delivery stream 'lost'" in line and "retrying" in line
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        reader.join(timeout=30)
        moto.stop()
    assert process.returncode == 0, stderr[-20:]
