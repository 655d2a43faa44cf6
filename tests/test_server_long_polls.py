"""1,000 concurrent long polls hold no threads: other requests are answered meanwhile.

A long poll once held a pool thread for its wait, so 300 of them (of 256
threads) made every other request wait ~18 s (issue 14, point 6). The polls
here are raw HTTP from one asyncio loop (1,000 boto3 clients would take
longer to build than the test runs); the rest is boto3 and http.client, all
on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import resource
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from server_harness import client, running

POLLS = 1000
DEADLINE_SECONDS = 90  # a bound for each phase; it normally takes a few seconds


def _raise_open_files_limit(needed: int) -> None:
    """Each poll is two sockets in this process (client and server side)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


async def _poll(port: int, url: str, wait_seconds: int) -> tuple[int, dict[str, Any]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = json.dumps({"QueueUrl": url, "WaitTimeSeconds": wait_seconds}).encode()
    writer.write(
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"Content-Type: application/x-amz-json-1.0\r\n"
        b"X-Amz-Target: AmazonSQS.ReceiveMessage\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    await writer.drain()
    reply = await reader.read()  # to the close
    writer.close()
    head, _, payload = reply.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(payload)


def _polls_in_a_thread(port: int, url: str, out: list[Any]) -> threading.Thread:
    async def all_polls() -> None:
        out.extend(await asyncio.gather(*(_poll(port, url, 20) for _ in range(POLLS))))

    thread = threading.Thread(target=lambda: asyncio.run(all_polls()), daemon=True)
    thread.start()
    return thread


def _list_queues_latencies(port: int, count: int) -> list[float]:
    """`count` ListQueues on one keep-alive connection, each timed (seconds)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": "AmazonSQS.ListQueues"}
    out = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            connection.request("POST", "/", body=b"{}", headers=headers)
            response = connection.getresponse()
            assert response.status == 200 and "QueueUrls" in json.loads(response.read())
            out.append(time.perf_counter() - started)
            time.sleep(0.01)
    finally:
        connection.close()
    return out


def _wait_for(what: str, condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_thousand_long_polls_beside_producers_and_list_queues(tmp_path: Path) -> None:
    _raise_open_files_limit(4 * POLLS + 256)
    with running(tmp_path / "data") as server:
        sqs = client("sqs", server.url)
        polled = sqs.create_queue(QueueName="polled")["QueueUrl"]
        busy = sqs.create_queue(QueueName="busy")["QueueUrl"]
        results: list[Any] = []
        polls = _polls_in_a_thread(server.port, polled, results)
        long_polls = server.app.long_polls
        _wait_for(f"{POLLS} polls waiting", lambda: long_polls.waiting == POLLS)
        assert server.app.executor._work_queue.qsize() == 0  # no thread held, none queued

        # Producers on another queue and ListQueues, while every poll waits.
        stop = threading.Event()
        sent_busy: list[int] = []

        def produce() -> None:
            producer = client("sqs", server.url)
            while not stop.is_set():
                entries = [{"Id": str(i), "MessageBody": f"b{i}"} for i in range(10)]
                producer.send_message_batch(QueueUrl=busy, Entries=entries)
                sent_busy.append(10)

        producers = [threading.Thread(target=produce) for _ in range(2)]
        for thread in producers:
            thread.start()
        # The best of up to 3 windows of 100: a burst of load from other
        # processes on a shared 2-core machine stalls one window, while a pool
        # held by the polls stalls every one (p99 was 105 s that way).
        windows: list[tuple[float, list[float]]] = []
        try:
            while len(windows) < 3 and not any(p99 < 0.1 for p99, _ in windows):
                latencies = _list_queues_latencies(server.port, 100)
                windows.append((statistics.quantiles(latencies, n=100)[98], latencies))
        finally:
            stop.set()
            for thread in producers:
                thread.join(60)
        p99, latencies = min(windows)
        assert p99 < 0.1, (
            f"ListQueues p99 {p99 * 1000:.0f} ms (median {statistics.median(latencies) * 1000:.1f}"
            f" ms) beside {POLLS} long polls"
        )
        assert sum(sent_busy) > 0

        # Producers on the polled queue: the polls are woken, one message each.
        bodies = [f"m{i}" for i in range(POLLS)]

        def send(part: list[str]) -> None:
            producer = client("sqs", server.url)
            for start in range(0, len(part), 10):
                entries = [
                    {"Id": str(i), "MessageBody": b} for i, b in enumerate(part[start:][:10])
                ]
                producer.send_message_batch(QueueUrl=polled, Entries=entries)

        senders = [threading.Thread(target=send, args=(bodies[i::4],)) for i in range(4)]
        for thread in senders:
            thread.start()
        for thread in senders:
            thread.join(DEADLINE_SECONDS)
        polls.join(DEADLINE_SECONDS)
        assert not polls.is_alive(), f"{long_polls.waiting} polls still waiting"
        assert [status for status, _ in results] == [200] * POLLS
        assert all(len(reply.get("Messages", [])) <= 1 for _, reply in results)
        got = [m["Body"] for _, reply in results for m in reply.get("Messages", [])]
        # On a loaded machine the first polls may reach their 20 s before the
        # sends: what they did not take is still queued, and nothing twice.
        assert len(got) >= POLLS // 2, f"only {len(got)} polls were woken by a send"
        while left := sqs.receive_message(QueueUrl=polled, MaxNumberOfMessages=10).get("Messages"):
            got += [m["Body"] for m in left]
        assert sorted(got) == sorted(bodies)
