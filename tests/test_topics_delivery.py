"""Topic fan-out under SIGKILL, HTTP delivery to a real local server, callbacks."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from helpers import FakeClock

import tidelog
from tidelog.topics import DeliveryWorker

CHILD = r"""
import sys, tidelog
store = tidelog.open(sys.argv[1])
topic = store.topic("t")
prefix = sys.argv[2]
print("ready", flush=True)
i = 0
while True:
    if i % 3 == 2:
        topic.publish_many([
            tidelog.PublishEntry(f"{prefix}-{i + k}", {"parity": ("even", "odd")[(i + k) % 2]})
            for k in range(4)
        ])
        i += 4
    else:
        topic.publish(f"{prefix}-{i}", {"parity": ("even", "odd")[i % 2]})
        i += 1
"""


def drain(queue: tidelog.Queue) -> list[tidelog.Message]:
    out: list[tidelog.Message] = []
    while True:
        got = queue.receive(10, visibility_timeout=600)
        if not got:
            return out
        out.extend(got)


def test_fan_out_is_atomic_under_sigkill(tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    path = tmp_path / "data"
    with tidelog.open(path) as store:
        topic = store.create_topic("t")
        for i in range(5):
            queue = store.create_queue(f"q{i}")
            # q0-q2 take everything (q0 and q1 raw, q2 wrapped); q3, q4 only even messages.
            policy = {"parity": ["even"]} if i >= 3 else None
            topic.subscribe(queue, filter_policy=policy, raw=i in (0, 1, 3))
    for round_ in range(5):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), f"r{round_}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.1, 0.5))
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    with tidelog.open(path) as store:
        published = {
            str(uuid.UUID(bytes=record.key)): record.value.decode()
            for record in store.log("topic/t").read()
        }
        assert len(published) > 5, f"seed {seed}: the children published too little"
        even = {mid for mid, body in published.items() if int(body.split("-")[1]) % 2 == 0}
        by_queue: dict[str, set[str]] = {}
        for i in range(5):
            messages = drain(store.queue(f"q{i}"))
            ids: set[str] = set()
            for message in messages:
                if i in (0, 1, 3):
                    ids.update(m for m, body in published.items() if body == message.text)
                else:
                    ids.add(json.loads(message.body)["MessageId"])
            assert len(ids) == len(messages), f"seed {seed}: q{i} holds a duplicate"
            by_queue[f"q{i}"] = ids
        for name in ("q0", "q1", "q2"):
            assert by_queue[name] == set(published), f"seed {seed}: {name} differs from the topic"
        for name in ("q3", "q4"):
            assert by_queue[name] == even, f"seed {seed}: {name} differs from the even messages"
        assert store.check() == []


# -- HTTP/HTTPS endpoints --------------------------------------------------------------------------


class Endpoint:
    """A real HTTP server on 127.0.0.1 that records requests and answers
    Notifications with scripted status codes (then 200)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.statuses: dict[str, list[int]] = {}
        self.arrived = threading.Condition()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status = 200
                if headers.get("x-amz-sns-message-type") == "Notification":
                    script = endpoint.statuses.get(self.path, [])
                    status = script.pop(0) if script else 200
                with endpoint.arrived:
                    endpoint.requests.append((self.path, headers, body))
                    endpoint.arrived.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, count: int, path: str, timeout: float = 15.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        with self.arrived:
            while True:
                got = [r for r in self.requests if r[0] == path]
                if len(got) >= count or time.monotonic() > deadline:
                    return got
                self.arrived.wait(0.05)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    server = Endpoint()
    yield server
    server.stop()


def test_http_confirmation_then_delivery_with_retries(tmp_path: Path, endpoint: Endpoint) -> None:
    fast = {"numRetries": 3, "minDelayTarget": 1, "maxDelayTarget": 1}
    with tidelog.open(tmp_path / "data", sync="never") as store:
        topic = store.create_topic("orders")
        dlq = store.create_queue("dlq")
        sub = topic.subscribe_http(endpoint.url + "/ok", delivery_policy=fast, raw=False)
        topic.subscribe_http(
            endpoint.url + "/down",
            delivery_policy={"numRetries": 1, "minDelayTarget": 1, "maxDelayTarget": 1},
            dead_letter=dlq,
            raw=True,
        )
        assert sub.status == "pending"
        store.start_topic_delivery(poll_interval=0.02, http_timeout=5)
        tokens = {}
        for path in ("/ok", "/down"):
            (_, headers, body) = endpoint.wait_for(1, path)[0]
            assert headers["x-amz-sns-message-type"] == "SubscriptionConfirmation"
            confirmation = json.loads(body)
            assert confirmation["Type"] == "SubscriptionConfirmation"
            assert "Action=ConfirmSubscription" in confirmation["SubscribeURL"]
            tokens[path] = confirmation["Token"]
        # Not delivered before confirmation.
        assert topic.publish(b"early").delivered == 0
        assert topic.confirm_subscription(tokens["/ok"]).confirmed
        topic.confirm_subscription(tokens["/down"])
        endpoint.statuses["/ok"] = [500, 503]  # fail twice, then succeed
        endpoint.statuses["/down"] = [500] * 10
        started = time.monotonic()
        result = topic.publish(b"order 7", {"kind": "video"}, subject="New order")
        assert result.delivered == 2
        got = endpoint.wait_for(4, "/ok")  # confirmation + three attempts
        notifications = [r for r in got if r[1]["x-amz-sns-message-type"] == "Notification"]
        assert len(notifications) == 3
        assert time.monotonic() - started >= 1.9  # two retries, 1 s apart
        for _, headers, body in notifications:
            envelope = json.loads(body)
            assert envelope["MessageId"] == result.id == headers["x-amz-sns-message-id"]
            assert envelope["Message"] == "order 7" and envelope["Subject"] == "New order"
            assert headers["x-amz-sns-subscription-arn"] == sub.arn
            assert headers["x-amz-sns-topic-arn"] == topic.arn
        # The failing endpoint: 2 attempts, then the dead-letter queue.
        deadline = time.monotonic() + 10
        dead: list[tidelog.Message] = []
        while not dead and time.monotonic() < deadline:
            dead = dlq.receive(10, wait=0.5)
        assert [m.body for m in dead] == [b"order 7"]
        down = [r for r in endpoint.requests if r[0] == "/down"]
        assert len(down) == 3 and down[1][1]["x-amz-sns-rawdelivery"] == "true"
        assert down[1][2] == b"order 7"
        worker = store.start_topic_delivery()
        deadline = time.monotonic() + 5  # the last 200 may still be on its way back
        while worker.delivered < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert (worker.delivered, worker.dead_lettered) == (3, 1)  # 2 confirmations + 1
        assert len(store.queue(sub.delivery_queue or "")) == 0
        assert store.check() == []


# -- callbacks -------------------------------------------------------------------------------------


def test_callbacks_retry_with_backoff_survive_restart_and_dead_letter(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "data"
    calls: list[tuple[str, int]] = []

    def flaky(note: tidelog.Notification) -> None:
        calls.append((note.text, note.attempt))
        if note.attempt == 1:
            raise RuntimeError("endpoint down")

    with tidelog.open(path, sync="never", clock=clock) as store:
        topic = store.create_topic("t")
        store.create_queue("dlq")
        sub = topic.subscribe_callback(
            "audit", flaky, raw=True, filter_policy={"k": ["yes"]}, start_worker=False
        )
        topic.subscribe_callback(
            "broken",
            lambda note: 1 / 0,
            raw=True,
            delivery_policy={"numRetries": 1, "minDelayTarget": 5, "maxDelayTarget": 5},
            dead_letter="dlq",
            start_worker=False,
        )  # deliver by hand below, after a restart
        assert topic.publish(b"a", {"k": "yes"}).delivered == 2
        assert topic.publish(b"b", {"k": "no"}).delivered == 1
    assert calls == []
    with tidelog.open(path, sync="never", clock=clock) as store:
        topic = store.topic("t")
        again = topic.subscribe_callback(
            "audit", flaky, raw=True, filter_policy={"k": ["yes"]}, start_worker=False
        )
        assert again.id == sub.id  # re-attached, same subscription
        topic.subscribe_callback(
            "broken",
            lambda note: 1 / 0,
            raw=True,
            delivery_policy={"numRetries": 1, "minDelayTarget": 5, "maxDelayTarget": 5},
            dead_letter="dlq",
            start_worker=False,
        )
        worker = DeliveryWorker(store)
        assert worker.run_once() == 3  # a to audit; a and b to broken
        assert calls == [("a", 1)]
        assert worker.run_once() == 0  # retries are not due yet
        clock.advance(1)  # callbacks' default: first retry after 1 s
        worker.run_once()
        assert calls == [("a", 1), ("a", 2)]
        clock.advance(5)
        worker.run_once()  # broken: second and last attempt, then the DLQ
        assert sorted(m.body for m in store.queue("dlq").receive(10)) == [b"a", b"b"]
        assert (worker.delivered, worker.dead_lettered) == (1, 2)
        clock.advance(60)
        assert worker.run_once() == 0
        assert calls == [("a", 1), ("a", 2)]


def test_retry_policy_validation_and_delays() -> None:
    from tidelog.topics import check_retry_policy, retry_delay

    policy = check_retry_policy(
        {
            "healthyRetryPolicy": {
                "numRetries": 10,
                "numNoDelayRetries": 2,
                "numMinDelayRetries": 2,
                "numMaxDelayRetries": 2,
                "minDelayTarget": 1,
                "maxDelayTarget": 9,
                "backoffFunction": "linear",
            }
        },
        {},
    )
    assert [retry_delay(policy, n) for n in range(1, 11)] == [0, 0, 1, 1, 1, 4, 7, 9, 9, 9]
    for bad, message in (
        ({"numRetries": 101}, "numRetries"),
        ({"minDelayTarget": 0}, "minDelayTarget"),
        ({"minDelayTarget": 5, "maxDelayTarget": 4}, "maxDelayTarget"),
        ({"numRetries": 1, "numNoDelayRetries": 2}, "exceed numRetries"),
        ({"backoffFunction": "cubic"}, "backoffFunction"),
        ({"numRetries": 100, "minDelayTarget": 3600, "maxDelayTarget": 3600}, "3600"),
    ):
        with pytest.raises(tidelog.InvalidArgument, match=message):
            check_retry_policy(bad, tidelog.topics.HTTP_RETRY_POLICY_DEFAULT)
