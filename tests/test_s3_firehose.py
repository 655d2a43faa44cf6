"""Firehose delivering into tidelog's own S3, over the wire, with only the default install.

`tidelog serve` runs in a child process that cannot import any package the
default install lacks (boto3, s3transfer, moto, DuckDB, pyarrow, ... are
blocked, computed from tidelog's own metadata): a delivery stream whose
bucket exists in the store's S3 writes there without them. The test's
clients are boto3 over HTTP, as a user's would be.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib.metadata import packages_distributions, requires
from pathlib import Path
from typing import Any

import boto3
import pytest
from packaging.requirements import Requirement
from server_harness import free_port

MARKER_EXTRA = "extra"


def _optional_modules() -> list[str]:
    """Top-level modules of the packages tidelog's extras add to its default install."""
    default: set[str] = set()
    extra: set[str] = set()
    for text in requires("tidelog") or []:
        requirement = Requirement(text)
        name = requirement.name.lower().replace("_", "-")
        if requirement.marker is not None and MARKER_EXTRA in str(requirement.marker):
            extra.add(name)
        else:
            default.add(name)
    optional = extra - default
    modules = [
        module
        for module, dists in packages_distributions().items()
        if any(d.lower().replace("_", "-") in optional for d in dists)
    ]
    return sorted(set(modules) | {"boto3", "s3transfer", "moto"} - _default_modules(default))


def _default_modules(default: set[str]) -> set[str]:
    return {
        module
        for module, dists in packages_distributions().items()
        if any(d.lower().replace("_", "-") in default for d in dists)
    }


SERVE_WITH_ONLY_DEFAULTS = """
import importlib.abc, sys
blocked = set(sys.argv[1].split(","))
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ImportError(f"{name} is not in tidelog's default install")
        return None
sys.meta_path.insert(0, Block())
sys.argv = ["tidelog", *sys.argv[2:]]
from tidelog.cli.main import main
main()
"""


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    blocked = _optional_modules()
    assert {"duckdb", "pyarrow", "moto"} <= set(blocked)
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            SERVE_WITH_ONLY_DEFAULTS,
            ",".join(blocked),
            "serve",
            "--data",
            str(tmp_path / "data"),
            "--port",
            str(port),
            "--no-stomp",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    probe = boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )
    while True:
        try:
            probe.list_buckets()
            break
        except Exception:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise AssertionError(f"serve did not start: {process.communicate()}") from None
            time.sleep(0.05)
    try:
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        assert "is not in tidelog's default install" not in err, err


def _client(service: str, url: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )


def test_firehose_delivers_to_the_servers_own_s3(endpoint: str) -> None:
    s3 = _client("s3", endpoint)
    firehose = _client("firehose", endpoint)
    s3.create_bucket(Bucket="landing")
    firehose.create_delivery_stream(
        DeliveryStreamName="clicks",
        DeliveryStreamType="DirectPut",
        ExtendedS3DestinationConfiguration={
            "RoleARN": "arn:aws:iam::000000000000:role/firehose",
            "BucketARN": "arn:aws:s3:::landing",
            "Prefix": "clicks/",
            "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 0},
            "ProcessingConfiguration": {
                "Enabled": True,
                "Processors": [{"Type": "AppendDelimiterToRecord"}],
            },
        },
    )
    records = [json.dumps({"click": i}).encode() for i in range(20)]
    result = firehose.put_record_batch(
        DeliveryStreamName="clicks", Records=[{"Data": r} for r in records]
    )
    assert result["FailedPutCount"] == 0
    deadline = time.monotonic() + 30
    keys: list[str] = []
    while not keys:  # the server's background worker delivers within a second or so
        assert time.monotonic() < deadline, "nothing was delivered"
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="landing").get("Contents", [])]
        time.sleep(0.1)
    assert all(key.startswith("clicks/") for key in keys)
    landed = b"".join(s3.get_object(Bucket="landing", Key=k)["Body"].read() for k in sorted(keys))
    assert landed.split(b"\n")[:-1] == records
    described = firehose.describe_delivery_stream(DeliveryStreamName="clicks")
    assert described["DeliveryStreamDescription"]["DeliveryStreamStatus"] == "ACTIVE"
