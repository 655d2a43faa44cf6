#!/usr/bin/env python3
"""Triggers: SQS batch-10 throughput with a no-op handler, and send-to-handler latency.

    python bench/trigger_bench.py            # 20,000 messages x 3, 300 latency samples
    python bench/trigger_bench.py --quick    # 5,000 messages x 1, 100 samples
    python bench/trigger_bench.py --json     # machine-readable result on stdout

Throughput (the library, sync="always"): N messages are sent to a queue
first; then a TriggerRunner drains it through a no-op handler in worker
processes (batch size 10, the default 5 pollers), from the runner's start
to the queue's last delete. The baseline, on the same queue shape in the
same run, interleaved: 5 threads of this process receiving 10 and deleting
them (`delete_many`) with no handler at all, the engine's own ceiling for a
consumer. Worker processes are started before the clock starts (one invoke
per poller), as warm Lambda sandboxes are.

Latency (`tidelog serve` as a child process, sync="always"): boto3
deploys a zipped handler that sends the message body in a UDP datagram to
this process; a mapped standard queue is idle (the pollers are in their long
poll) when each message is sent. Latency is from just before SendMessage to
the datagram's arrival, on this machine's clock, so it includes the send's
own round trip. Baselines in the same server and run: SendMessage alone, and a
boto3 consumer long-polling ReceiveMessage (send to its return).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from botocore.config import Config

import tidelog
from tidelog.trigger_runner import QUEUE_POLLERS_DEFAULT, pools

NOOP = "def handler(event, context):\n    return None\n"
UDP_HANDLER = (
    "import os, socket\n"
    "_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "_to = ('127.0.0.1', int(os.environ['PORT']))\n"
    "def handler(event, context):\n"
    "    for record in event['Records']:\n"
    "        _sock.sendto(record['body'].encode(), _to)\n"
)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# -- throughput --------------------------------------------------------------------------------


def fill(queue: tidelog.Queue, count: int) -> None:
    body = b"x" * 100
    for _ in range(count // 10):
        queue.send_many([body] * 10)


def drained(queue: tidelog.Queue) -> bool:
    counts = queue.approximate_counts()
    return counts.visible == counts.in_flight == counts.delayed == 0


def trigger_rate(root: str, count: int) -> float:
    code = os.path.join(root, "code")
    os.makedirs(code, exist_ok=True)
    with open(os.path.join(code, "noop.py"), "w") as handle:
        handle.write(NOOP)
    with tidelog.open(os.path.join(root, "trigger-data")) as store:
        queue = store.create_queue("jobs")
        fill(queue, count)
        registry = tidelog.Triggers(store)
        registry.create_function("noop", "noop.handler", code_dir=code)
        registry.create_trigger("noop", queue, batch_size=10)
        warm = pools(store)
        function = registry.function("noop")
        with ThreadPoolExecutor(QUEUE_POLLERS_DEFAULT) as executor:
            list(executor.map(lambda _: warm.invoke(function, {}), range(QUEUE_POLLERS_DEFAULT)))
        start = time.perf_counter()
        runner = tidelog.TriggerRunner(store).start()
        while not drained(queue):
            time.sleep(0.002)
        elapsed = time.perf_counter() - start
        runner.stop()
    return count / elapsed


def consumer_rate(root: str, count: int) -> float:
    with tidelog.open(os.path.join(root, "consumer-data")) as store:
        queue = store.create_queue("jobs")
        fill(queue, count)
        done = threading.Event()

        def consume() -> None:
            while not done.is_set():
                messages = queue.receive(10, wait=0.2)
                if messages:
                    queue.delete_many([m.receipt for m in messages])
                elif drained(queue):
                    done.set()

        start = time.perf_counter()
        threads = [threading.Thread(target=consume) for _ in range(QUEUE_POLLERS_DEFAULT)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - start
    return count / elapsed


# -- latency -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def start_serve(data: str, port: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "tidelog.cli.main", "serve", "--data", data]
    process = subprocess.Popen(
        [*command, "--port", str(port), "--no-stomp"], stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise SystemExit("tidelog serve did not start") from None
            time.sleep(0.05)


def clients(url: str) -> tuple[Any, Any]:
    config = Config(retries={"max_attempts": 1}, read_timeout=60)
    options: dict[str, Any] = {
        "endpoint_url": url,
        "region_name": "us-east-1",
        "aws_access_key_id": "bench",
        "aws_secret_access_key": "bench",
        "config": config,
    }
    return boto3.client("lambda", **options), boto3.client("sqs", **options)


def latencies(root: str, samples: int) -> dict[str, list[float]]:
    port = free_port()
    server = start_serve(os.path.join(root, "serve-data"), port)
    try:
        return _latencies(f"http://127.0.0.1:{port}", samples)
    finally:
        server.terminate()
        server.wait(30)


def _latencies(url: str, samples: int) -> dict[str, list[float]]:
    lam, sqs = clients(url)
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(30)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("udp.py", UDP_HANDLER)
    lam.create_function(
        FunctionName="udp",
        Runtime="python3.12",
        Role="arn:aws:iam::000000000000:role/r",
        Handler="udp.handler",
        Code={"ZipFile": archive.getvalue()},
        Environment={"Variables": {"PORT": str(listener.getsockname()[1])}},
    )
    queue = sqs.create_queue(QueueName="triggered")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    lam.create_event_source_mapping(EventSourceArn=arn, FunctionName="udp", BatchSize=10)
    polled = sqs.create_queue(QueueName="polled")["QueueUrl"]
    out: dict[str, list[float]] = {"trigger": [], "send": [], "long_poll": []}
    received: dict[str, float] = {}
    got = threading.Condition()
    _, poll_sqs = clients(url)
    stop = threading.Event()

    def long_poll() -> None:
        while not stop.is_set():
            reply = poll_sqs.receive_message(QueueUrl=polled, WaitTimeSeconds=1)
            now = time.time()
            for message in reply.get("Messages", []):
                with got:
                    received[message["Body"]] = now
                    got.notify_all()
                poll_sqs.delete_message(QueueUrl=polled, ReceiptHandle=message["ReceiptHandle"])

    poller = threading.Thread(target=long_poll, daemon=True)
    poller.start()
    # Warm: the first message starts the function's worker process.
    sqs.send_message(QueueUrl=queue, MessageBody="warm")
    listener.recvfrom(256)
    for index in range(samples):
        time.sleep(0.03)  # idle: the pollers are back in their long poll
        body = f"m{index}"
        sent = time.time()
        sqs.send_message(QueueUrl=queue, MessageBody=body)
        out["send"].append(time.time() - sent)
        while True:
            data, _ = listener.recvfrom(256)
            if data.decode() == body:
                out["trigger"].append(time.time() - sent)
                break
        sent = time.time()
        sqs.send_message(QueueUrl=polled, MessageBody=body)
        with got:
            got.wait_for(lambda b=body: b in received, timeout=30)
        out["long_poll"].append(received[body] - sent)
    stop.set()
    poller.join(5)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    count, repeats, samples = (5000, 1, 100) if args.quick else (20000, 3, 300)
    rates: dict[str, list[float]] = {"trigger": [], "consumer": []}
    for _ in range(repeats):
        for name, run in (("consumer", consumer_rate), ("trigger", trigger_rate)):
            root = tempfile.mkdtemp(prefix="tidelog-trigger-bench-")
            try:
                rates[name].append(run(root, count))
            finally:
                shutil.rmtree(root, ignore_errors=True)
    root = tempfile.mkdtemp(prefix="tidelog-trigger-bench-")
    try:
        times = latencies(root, samples)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    trigger, consumer = statistics.median(rates["trigger"]), statistics.median(rates["consumer"])
    result = {
        "messages": count,
        "repeats": repeats,
        "trigger_messages_per_s": round(trigger),
        "consumer_messages_per_s": round(consumer),
        "ratio": round(trigger / consumer, 3),
        "latency_ms": {
            name: {
                "p50": round(percentile(values, 0.5) * 1000, 2),
                "p99": round(percentile(values, 0.99) * 1000, 2),
            }
            for name, values in times.items()
        },
        "samples": samples,
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"SQS batch 10, no-op handler, {count} messages, median of {repeats}:")
    print(f"  trigger (handler in worker processes)   {trigger:10,.0f} msg/s")
    print(f"  in-process consumer, no handler          {consumer:10,.0f} msg/s")
    print(f"  ratio                                    {trigger / consumer:10.2f}")
    print(f"send-to-handler latency over tidelog serve, idle queue, {samples} samples (ms):")
    for name, label in (
        ("trigger", "send -> handler"),
        ("long_poll", "send -> boto3 long-poll ReceiveMessage"),
        ("send", "SendMessage round trip alone"),
    ):
        values = result["latency_ms"][name]  # type: ignore[index]
        print(f"  {label:40} p50 {values['p50']:7.2f}   p99 {values['p99']:7.2f}")


if __name__ == "__main__":
    main()
