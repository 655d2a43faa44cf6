"""Delivery streams into S3 through boto3, against moto's server on 127.0.0.1."""

from __future__ import annotations

import gzip
import json
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from helpers import FakeClock

import tidelog

pytest.importorskip("moto.server")
from moto.server import ThreadedMotoServer  # noqa: E402

CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def s3_url() -> Iterator[str]:
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    # moto keeps its buckets per process, not per server: start from none,
    # whatever another test module left.
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"))
    try:
        yield url
    finally:
        server.stop()


def s3(url: str) -> Any:
    return boto3.client("s3", endpoint_url=url, region_name="us-east-1", **CREDENTIALS)


def bucket_objects(client: Any, bucket: str) -> dict[str, bytes]:
    listing = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {
        o["Key"]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listing
    }


def destination(url: str, bucket: str) -> tidelog.S3Destination:
    return tidelog.S3Destination(bucket, endpoint_url=url, region="us-east-1", **CREDENTIALS)


def test_s3_gzip_json_lines(s3_url: str, tmp_path: Path) -> None:
    client = s3(s3_url)
    client.create_bucket(Bucket="landing")
    clock = FakeClock()
    with tidelog.open(tmp_path / "d", sync="never", clock=clock) as store:
        ds = store.create_delivery_stream(
            "events",
            destination=destination(s3_url, "landing"),
            prefix="raw/",
            compression="GZIP",
            record_format="json_lines",
            buffering_interval=60,
        )
        ds.put_record_batch([json.dumps({"n": n}) for n in range(100)])
        assert ds.flush() is None
        clock.advance(60)
        assert ds.flush() is not None
        ds.put_record_batch([json.dumps({"n": n}) for n in range(100, 150)])
        assert ds.flush_all()
        found = bucket_objects(client, "landing")
        assert len(found) == 2 and all(k.startswith("raw/2023/11/14/22/events-1-") for k in found)
        rows = [
            json.loads(line)["n"]
            for key in sorted(found)
            for line in gzip.decompress(found[key]).splitlines()
        ]
        assert rows == list(range(150))
        assert ds.stats().records_delivered == 150


def test_s3_retry_overwrites_the_same_key(s3_url: str, tmp_path: Path) -> None:
    client = s3(s3_url)
    client.create_bucket(Bucket="retry")
    with tidelog.open(tmp_path / "d", sync="never") as store:
        ds = store.create_delivery_stream("f", destination=destination(s3_url, "retry"))
        ds.put_record_batch([b"a", b"b"])
        intent = ds._plan(0, force=True)
        assert intent is not None
        # A deliverer that wrote the object and died before its commit, then the retry.
        ds._writer(intent["config"]).put("x", b"")  # connection works
        first = ds._deliver(intent, store._logs.clock, lambda s: None)
        again = ds._deliver(intent, store._logs.clock, lambda s: None)
        assert first.keys == again.keys
        found = bucket_objects(client, "retry")
        assert found.pop("x") == b"" and list(found.values()) == [b"ab"]
        assert ds.stats().records_delivered == 2


def test_s3_missing_bucket_fails_then_retries(s3_url: str, tmp_path: Path) -> None:
    with tidelog.open(tmp_path / "d", sync="never") as store:
        ds = store.create_delivery_stream(
            "f", destination=destination(s3_url, "not-yet"), retry_duration=0
        )
        ds.put_record(b"kept")
        # The error output lives in the same bucket, so nothing can be written:
        # the batch stays planned and is delivered once the bucket exists.
        with pytest.raises(tidelog.Error, match="error output failed"):
            ds.flush(force=True)
        assert ds.stats().records_delivered == 0
        s3(s3_url).create_bucket(Bucket="not-yet")
        (result,) = ds.flush_all()
        assert result.delivered == 1
        assert list(bucket_objects(s3(s3_url), "not-yet").values()) == [b"kept"]
