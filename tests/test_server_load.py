"""200 concurrent long polls beside other traffic; subscriptions across a kill -9.

The long polls are raw HTTP (200 boto3 clients would take longer to build
than the test runs); everything else is boto3. The kill -9 test runs
`tidelog serve` as a child process and kills it without warning.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from server_harness import client, running

POLLERS = 200


def _receive(port: int, url: str, wait_seconds: int, out: list[Any]) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=wait_seconds + 20)
    try:
        body = json.dumps({"QueueUrl": url, "WaitTimeSeconds": wait_seconds})
        headers = {
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": "AmazonSQS.ReceiveMessage",
        }
        connection.request("POST", "/", body=body, headers=headers)
        response = connection.getresponse()
        out.append((response.status, json.loads(response.read())))
    except OSError as exc:
        out.append((0, repr(exc)))
    finally:
        connection.close()


def test_200_long_polls_do_not_starve_other_requests(tmp_path: Path) -> None:
    with running(tmp_path / "data") as server:
        sqs = client("sqs", server.url)
        idle = sqs.create_queue(QueueName="idle")["QueueUrl"]
        results: list[Any] = []
        pollers = [
            threading.Thread(target=_receive, args=(server.port, idle, 3, results))
            for _ in range(POLLERS)
        ]
        for thread in pollers:
            thread.start()
        time.sleep(0.5)  # let the polls reach the server and start waiting
        # Other work goes through at once while every poll waits.
        started = time.monotonic()
        busy = sqs.create_queue(QueueName="busy")["QueueUrl"]
        for n in range(20):
            sqs.send_message(QueueUrl=busy, MessageBody=str(n))
        got = sqs.receive_message(QueueUrl=busy, MaxNumberOfMessages=10)["Messages"]
        elapsed = time.monotonic() - started
        assert len(got) == 10
        assert elapsed < 2.0, f"22 requests took {elapsed:.2f}s beside {POLLERS} long polls"
        # Messages sent to the polled queue wake waiting polls.
        for n in range(30):
            sqs.send_message(QueueUrl=idle, MessageBody=f"wake {n}")
        for thread in pollers:
            thread.join(30)
        assert len(results) == POLLERS
        assert all(status == 200 for status, _ in results), results[:3]
        delivered = [m["Body"] for _, reply in results for m in reply.get("Messages", [])]
        assert delivered, "no waiting poll was woken by a send"
        # On a slow machine some polls may time out first: the rest is still queued.
        left = sqs.receive_message(QueueUrl=idle, MaxNumberOfMessages=10).get("Messages", [])
        while left:
            delivered += [m["Body"] for m in left]
            left = sqs.receive_message(QueueUrl=idle, MaxNumberOfMessages=10).get("Messages", [])
        assert sorted(delivered) == sorted(f"wake {n}" for n in range(30))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start(data: Path, port: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "tidelog.cli.main", "serve", "--data", str(data)]
    command += ["--port", str(port), "--no-stomp", "--sync", "always"]
    process = subprocess.Popen(command, stderr=subprocess.DEVNULL, env=dict(os.environ))
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise AssertionError("tidelog serve did not start") from None
            time.sleep(0.05)


def test_subscriptions_survive_restart_and_kill_9(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    process = _start(data, port)
    try:
        sqs, sns = client("sqs", url), client("sns", url)
        queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        topic = sns.create_topic(Name="events")["TopicArn"]
        subscription = sns.subscribe(
            TopicArn=topic,
            Protocol="sqs",
            Endpoint=queue_arn,
            Attributes={"RawMessageDelivery": "true", "FilterPolicy": '{"kind": ["keep"]}'},
        )["SubscriptionArn"]
    finally:
        process.send_signal(signal.SIGKILL)  # no shutdown: only what was acknowledged
        process.wait(10)

    process = _start(data, port)
    try:
        sqs, sns = client("sqs", url), client("sns", url)
        listed = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
        assert [s["SubscriptionArn"] for s in listed] == [subscription]
        attributes = sns.get_subscription_attributes(SubscriptionArn=subscription)["Attributes"]
        assert attributes["RawMessageDelivery"] == "true"
        assert json.loads(attributes["FilterPolicy"]) == {"kind": ["keep"]}
        keep = {"kind": {"DataType": "String", "StringValue": "keep"}}
        drop = {"kind": {"DataType": "String", "StringValue": "drop"}}
        sns.publish(TopicArn=topic, Message="kept", MessageAttributes=keep)
        sns.publish(TopicArn=topic, Message="dropped", MessageAttributes=drop)
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        assert [m["Body"] for m in messages["Messages"]] == ["kept"]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
