#!/usr/bin/env python3
"""STOMP benchmark: one producer, four consumers, one queue, persistent 100 B messages.

    python bench/stomp_bench.py            # full run (20,000 messages a case)
    python bench/stomp_bench.py --quick    # 2,000 messages a case
    python bench/stomp_bench.py --json     # JSON on stdout (the table goes to stderr)
    python bench/stomp_bench.py --activemq HOST:PORT   # also measure a running ActiveMQ

The broker runs in its own process (`tidelog serve --sync always`, as a
user would run it), so the clients do not share its interpreter. The
clients are stomp.py 1.2 connections: the producer sends with
`persistent:true`, either fire-and-forget or waiting for a RECEIPT after
every send (each send then costs one durable commit); the four consumers
subscribe with ack=auto. A case's rate is messages / (first send to last
delivery). ActiveMQ is measured the same way when --activemq names a
running broker (none is started here).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import stomp

BODY = b"x" * 100
CONSUMERS = 4


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Counter(stomp.ConnectionListener):  # type: ignore[misc]
    def __init__(self, total: list[int], done: threading.Event, expected: int) -> None:
        self.total = total
        self.done = done
        self.expected = expected
        self.lock = threading.Lock()

    def on_message(self, frame: Any) -> None:
        with self.lock:
            self.total[0] += 1
            if self.total[0] >= self.expected:
                self.done.set()


def run_case(host: str, port: int, queue: str, count: int, receipts: bool) -> float:
    total = [0]
    done = threading.Event()
    consumers = []
    shared = Counter(total, done, count)
    for index in range(CONSUMERS):
        conn = stomp.Connection12([(host, port)], auto_decode=False)
        conn.set_listener("", shared)
        conn.connect(wait=True)
        conn.subscribe(f"/queue/{queue}", id=f"c{index}", ack="auto")
        consumers.append(conn)
    producer = stomp.Connection12([(host, port)], auto_decode=False)
    receipt_seen = threading.Event()

    class Receipts(stomp.ConnectionListener):  # type: ignore[misc]
        def on_receipt(self, frame: Any) -> None:
            receipt_seen.set()

    producer.set_listener("", Receipts())
    producer.connect(wait=True)
    started = time.perf_counter()
    for n in range(count):
        if receipts:
            receipt_seen.clear()
            producer.send(f"/queue/{queue}", BODY, headers={"persistent": "true"}, receipt=str(n))
            if not receipt_seen.wait(30):
                raise RuntimeError("no RECEIPT within 30 s")
        else:
            producer.send(f"/queue/{queue}", BODY, headers={"persistent": "true"})
    if not done.wait(300):
        raise RuntimeError(f"only {total[0]} of {count} messages arrived")
    elapsed = time.perf_counter() - started
    for conn in [producer, *consumers]:
        conn.disconnect()
    return count / elapsed


def wait_listening(host: str, port: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {host}:{port}")


def measure(host: str, port: int, count: int, label: str) -> dict[str, float]:
    out = {}
    for receipts in (False, True):
        n = count if not receipts else max(200, count // 4)
        name = f"bench-{label}-{'receipt' if receipts else 'plain'}-{os.getpid()}"
        out["receipt per send" if receipts else "no receipt"] = run_case(
            host, port, name, n, receipts
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--activemq", help="HOST:PORT of a running ActiveMQ STOMP connector")
    args = parser.parse_args()
    count = 2_000 if args.quick else 20_000
    results: dict[str, dict[str, float]] = {}

    root = tempfile.mkdtemp(prefix="stomp-bench-")
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "tidelog.cli.main",
        "serve",
        "--data",
        os.path.join(root, "d"),
        "--port",
        str(free_port()),
        "--stomp-port",
        str(port),
        "--sync",
        "always",
    ]
    server = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    try:
        wait_listening("127.0.0.1", port)
        results["tidelog"] = measure("127.0.0.1", port, count, "tidelog")
    finally:
        server.terminate()
        server.wait(60)
        shutil.rmtree(root, ignore_errors=True)
    if args.activemq:
        host, _, amq_port = args.activemq.rpartition(":")
        results["ActiveMQ"] = measure(host, int(amq_port), count, "amq")
    else:
        print("ActiveMQ: not measured (pass --activemq HOST:PORT)", file=sys.stderr)

    lines = [f"{'broker':<10} {'case':<18} {'msgs/s':>10}"]
    for broker, cases in results.items():
        for case, value in cases.items():
            lines.append(f"{broker:<10} {case:<18} {value:>10,.0f}")
    print("\n".join(lines), file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps({"messages": count, "consumers": CONSUMERS, "results": results}))


if __name__ == "__main__":
    main()
