#!/usr/bin/env python3
"""SubscribeToShard's put-to-event latency, boto3 against `tidelog serve`, over HTTP/1.1.

    python bench/subscribe_bench.py            # 500 records, 3 repeats
    python bench/subscribe_bench.py --quick    # 100 records, 1 repeat
    python bench/subscribe_bench.py --json     # machine-readable result on stdout

`tidelog serve` runs as a child process (sync="always"). One boto3 client
subscribes a registered consumer to a 1-shard stream (LATEST); another puts
one 100 B record with PutRecord, waits until the subscriber has it, then
puts the next. The latency of a record is from just before its PutRecord
call to the moment its SubscribeToShardEvent is parsed by botocore, both on
this process's clock; so it includes the put's own round trip, measured
alone in the same run as the baseline (PutRecord's p50). Beside it: the
same records read by a GetRecords loop polling as fast as it can (the
lowest latency a polling consumer gets, at a request per loop; the KCL's
default polls once a second). Percentiles are medians over the repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config

RECORD = b"x" * 100
SHARD = "shardId-000000000000"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def start_serve(data: str, port: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "tidelog.cli.main", "serve", "--data", data]
    process = subprocess.Popen(
        [*command, "--port", str(port), "--no-stomp", "--no-workers"],
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("tidelog serve did not start") from None
            time.sleep(0.05)


def client(url: str) -> Any:
    return boto3.client(
        "kinesis",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=Config(retries={"max_attempts": 1}, read_timeout=60),
    )


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50": statistics.median(ordered),
        "p90": ordered[int(len(ordered) * 0.9) - 1],
        "p99": ordered[max(int(len(ordered) * 0.99) - 1, 0)],
    }


Reader = Callable[[Any, Callable[[int], None], threading.Event], None]


def measure(url: str, count: int, reader: Reader) -> list[float]:
    """Put `count` records one at a time, each after the last arrived; their latencies (ms)."""
    producer = client(url)
    arrived = [threading.Event() for _ in range(count)]
    seen_at = [0.0] * count
    errors: list[BaseException] = []
    ready = threading.Event()

    def got(i: int) -> None:
        seen_at[i] = time.perf_counter()
        arrived[i].set()

    def read() -> None:
        try:
            reader(client(url), got, ready)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            ready.set()
            for event in arrived:
                event.set()

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    if not ready.wait(30):  # subscribed (or holding an iterator) before the first put
        raise RuntimeError("the reader did not start")
    sent = [0.0] * count
    for i in range(count):
        sent[i] = time.perf_counter()
        producer.put_record(StreamName="b", Data=b"%d " % i + RECORD, PartitionKey="k")
        if not arrived[i].wait(30):
            raise RuntimeError(f"record {i} did not arrive")
        if errors:
            raise errors[0]
    thread.join(30)
    return [(seen - put) * 1000 for seen, put in zip(seen_at, sent, strict=True)]


def subscriber(consumer_arn: str, count: int) -> Reader:
    def read(kinesis: Any, got: Callable[[int], None], ready: threading.Event) -> None:
        events = kinesis.subscribe_to_shard(
            ConsumerARN=consumer_arn, ShardId=SHARD, StartingPosition={"Type": "LATEST"}
        )["EventStream"]
        ready.set()
        seen = 0
        for event in events:
            for record in event["SubscribeToShardEvent"]["Records"]:
                got(int(record["Data"].split(b" ", 1)[0]))
                seen += 1
            if seen == count:
                break
        events.close()

    return read


def poller(count: int) -> Reader:
    def read(kinesis: Any, got: Callable[[int], None], ready: threading.Event) -> None:
        iterator = kinesis.get_shard_iterator(
            StreamName="b", ShardId=SHARD, ShardIteratorType="LATEST"
        )["ShardIterator"]
        ready.set()
        seen = 0
        while seen < count:
            reply = kinesis.get_records(ShardIterator=iterator)
            for record in reply["Records"]:
                got(int(record["Data"].split(b" ", 1)[0]))
                seen += 1
            iterator = reply["NextShardIterator"]

    return read


def put_alone(url: str, count: int) -> list[float]:
    producer = client(url)
    out = []
    for i in range(count):
        started = time.perf_counter()
        producer.put_record(StreamName="b", Data=b"%d " % i + RECORD, PartitionKey="k")
        out.append((time.perf_counter() - started) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 records, one repeat")
    parser.add_argument("--json", action="store_true", help="print JSON on stdout")
    parser.add_argument("--data", default=None, help="directory for scratch data")
    args = parser.parse_args()
    count, repeats = (100, 1) if args.quick else (500, 3)
    root = tempfile.mkdtemp(dir=args.data, prefix="tidelog-subscribe-bench-")
    port = free_port()
    serve = start_serve(os.path.join(root, "data"), port)
    url = f"http://127.0.0.1:{port}"
    try:
        kinesis = client(url)
        kinesis.create_stream(StreamName="b", ShardCount=1)
        arn = kinesis.describe_stream_summary(StreamName="b")["StreamDescriptionSummary"][
            "StreamARN"
        ]
        runs: dict[str, list[dict[str, float]]] = {"subscribe": [], "poll": [], "put": []}
        for repeat in range(repeats):
            consumer = kinesis.register_stream_consumer(StreamARN=arn, ConsumerName=f"c{repeat}")
            consumer_arn = consumer["Consumer"]["ConsumerARN"]
            runs["put"].append(percentiles(put_alone(url, count)))
            subscribed = measure(url, count, subscriber(consumer_arn, count))
            runs["subscribe"].append(percentiles(subscribed))
            runs["poll"].append(percentiles(measure(url, count, poller(count))))
        result = {
            "records": count,
            "repeats": repeats,
            "latency_ms": {
                case: {p: statistics.median(r[p] for r in results) for p in ("p50", "p90", "p99")}
                for case, results in runs.items()
            },
        }
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(60)
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
        return
    print(f"{count} records, one at a time, median of {repeats} runs (ms)")
    names = {
        "subscribe": "put-to-event, SubscribeToShard",
        "poll": "put-to-record, GetRecords polled flat out",
        "put": "PutRecord round trip alone",
    }
    for case, figures in result["latency_ms"].items():
        print(
            f"{names[case]:<44} p50 {figures['p50']:6.2f}  p90 {figures['p90']:6.2f}  "
            f"p99 {figures['p99']:6.2f}"
        )


if __name__ == "__main__":
    main()
