"""SQS through unmodified boto3 against a real server on 127.0.0.1.

The queue conformance suite (tests/queue_conformance.py) runs again here
through `BotoHarness`, an adapter that speaks boto3 and gives back objects
shaped like the library's. The store shares the test's injected clock, so
`advance` moves time for visibility timeouts and delays without sleeping.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import queue_conformance
from botocore.exceptions import ClientError
from helpers import FakeClock
from server_harness import client, running

from tidelog.server import ServerThread

# -- the adapter ----------------------------------------------------------------------------------

_CREATE_ATTRIBUTES = {
    "visibility_timeout": "VisibilityTimeout",
    "delay": "DelaySeconds",
    "retention": "MessageRetentionPeriod",
    "max_message_size": "MaximumMessageSize",
    "receive_wait": "ReceiveMessageWaitTimeSeconds",
    "fifo": "FifoQueue",
    "content_based_dedup": "ContentBasedDeduplication",
}


def _wire_attributes(attributes: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in (attributes or {}).items():
        if isinstance(value, bytes):
            out[name] = {"DataType": "Binary", "BinaryValue": value}
        elif isinstance(value, int | float):
            out[name] = {"DataType": "Number", "StringValue": str(value)}
        else:
            out[name] = {"DataType": "String", "StringValue": value}
    return out


def _python_attributes(wire: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in wire.items():
        if value["DataType"].startswith("Binary"):
            out[name] = value["BinaryValue"]
        elif value["DataType"].startswith("Number"):
            text = value["StringValue"]
            out[name] = float(text) if "." in text or "e" in text.lower() else int(text)
        else:
            out[name] = value["StringValue"]
    return out


@dataclass
class Sent:
    id: str
    md5_of_body: str
    md5_of_attributes: str


@dataclass
class Received:
    id: str
    body: bytes
    attributes: dict[str, Any]
    receipt: str
    receive_count: int
    md5_of_body: str
    md5_of_attributes: str
    group_id: str | None
    sequence_number: str | None


@dataclass
class Failure:
    entry_id: str
    code: str


@dataclass
class Batch:
    successful: list[tuple[str, Any]] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)


@dataclass
class Counts:
    visible: int
    in_flight: int
    delayed: int


class BotoQueue:
    """tidelog.Queue's methods, spoken through boto3."""

    def __init__(self, sqs: Any, url: str) -> None:
        self.sqs = sqs
        self.url = url

    def send(
        self,
        body: bytes,
        attributes: dict[str, Any] | None = None,
        *,
        delay: int | None = None,
        group_id: str | None = None,
        dedup_id: str | None = None,
    ) -> Sent:
        params: dict[str, Any] = {"QueueUrl": self.url, "MessageBody": body.decode()}
        if attributes:
            params["MessageAttributes"] = _wire_attributes(attributes)
        if delay is not None:
            params["DelaySeconds"] = delay
        if group_id is not None:
            params["MessageGroupId"] = group_id
        if dedup_id is not None:
            params["MessageDeduplicationId"] = dedup_id
        reply = self.sqs.send_message(**params)
        return Sent(
            reply["MessageId"], reply["MD5OfMessageBody"], reply.get("MD5OfMessageAttributes", "")
        )

    def send_many(self, entries: list[Any]) -> Batch:
        wire = []
        for index, entry in enumerate(entries):
            if isinstance(entry, bytes):
                entry = {"body": entry}
            item: dict[str, Any] = {
                "Id": entry.get("id", str(index)),
                "MessageBody": entry["body"].decode(),
            }
            if entry.get("attributes"):
                item["MessageAttributes"] = _wire_attributes(entry["attributes"])
            wire.append(item)
        reply = self.sqs.send_message_batch(QueueUrl=self.url, Entries=wire)
        return Batch(
            [(e["Id"], e) for e in reply.get("Successful", [])],
            [Failure(f["Id"], f["Code"]) for f in reply.get("Failed", [])],
        )

    def receive(self, max_messages: int = 1) -> list[Received]:
        reply = self.sqs.receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=max_messages,
            WaitTimeSeconds=0,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
        )
        out = []
        for m in reply.get("Messages", []):
            system = m.get("Attributes", {})
            out.append(
                Received(
                    m["MessageId"],
                    m["Body"].encode(),
                    _python_attributes(m.get("MessageAttributes", {})),
                    m["ReceiptHandle"],
                    int(system["ApproximateReceiveCount"]),
                    m["MD5OfBody"],
                    m.get("MD5OfMessageAttributes", ""),
                    system.get("MessageGroupId"),
                    system.get("SequenceNumber"),
                )
            )
        return out

    def delete(self, receipt: str) -> None:
        self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=receipt)

    def delete_many(self, items: list[tuple[str, str]]) -> Batch:
        reply = self.sqs.delete_message_batch(
            QueueUrl=self.url, Entries=[{"Id": i, "ReceiptHandle": r} for i, r in items]
        )
        return Batch(
            [(e["Id"], None) for e in reply.get("Successful", [])],
            [Failure(f["Id"], f["Code"]) for f in reply.get("Failed", [])],
        )

    def change_visibility(self, receipt: str, seconds: int) -> None:
        self.sqs.change_message_visibility(
            QueueUrl=self.url, ReceiptHandle=receipt, VisibilityTimeout=seconds
        )

    def purge(self) -> None:
        self.sqs.purge_queue(QueueUrl=self.url)

    def approximate_counts(self) -> Counts:
        attributes = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["All"])[
            "Attributes"
        ]
        return Counts(
            int(attributes["ApproximateNumberOfMessages"]),
            int(attributes["ApproximateNumberOfMessagesNotVisible"]),
            int(attributes["ApproximateNumberOfMessagesDelayed"]),
        )


class BotoHarness:
    def __init__(self, server: ServerThread, clock: FakeClock) -> None:
        self.sqs = client("sqs", server.url)
        self.clock = clock

    def create(self, name: str, **attributes: Any) -> BotoQueue:
        wire = {}
        for key, value in attributes.items():
            wire[_CREATE_ATTRIBUTES[key]] = (
                str(value).lower() if isinstance(value, bool) else str(value)
            )
        url = self.sqs.create_queue(QueueName=name, Attributes=wire)["QueueUrl"]
        return BotoQueue(self.sqs, url)

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)


@pytest.fixture
def clocked(tmp_path: Path, clock: FakeClock) -> Iterator[ServerThread]:
    with running(tmp_path / "data", clock) as server:
        yield server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    with running(tmp_path / "data") as started:
        yield started


@pytest.fixture
def sqs(server: ServerThread) -> Any:
    return client("sqs", server.url)


@pytest.mark.parametrize("check", queue_conformance.CHECKS, ids=lambda c: c.__name__)
def test_conformance_over_boto3(
    check: Callable[..., None], clocked: ServerThread, clock: FakeClock
) -> None:
    harness = BotoHarness(clocked, clock)
    if check is queue_conformance.check_stale_receipt_does_not_delete:
        check(harness, ClientError)
    else:
        check(harness)


# -- operations beyond the suite ------------------------------------------------------------------


def test_queue_management(sqs: Any, server: ServerThread) -> None:
    dlq = sqs.create_queue(QueueName="jobs-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    assert dlq_arn == "arn:aws:sqs:eu-west-1:000000000000:jobs-dlq"  # the signed region
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"})
    url = sqs.create_queue(
        QueueName="jobs", Attributes={"VisibilityTimeout": "5", "RedrivePolicy": policy}
    )["QueueUrl"]
    assert url == f"{server.url}/000000000000/jobs"
    assert (
        sqs.create_queue(
            QueueName="jobs", Attributes={"VisibilityTimeout": "5", "RedrivePolicy": policy}
        )["QueueUrl"]
        == url
    )  # same attributes: the existing queue
    assert sqs.get_queue_url(QueueName="jobs")["QueueUrl"] == url
    assert sqs.list_queues()["QueueUrls"] == [url, dlq]
    assert sqs.list_queues(QueueNamePrefix="jobs-")["QueueUrls"] == [dlq]
    page = sqs.list_queues(MaxResults=1)
    assert page["QueueUrls"] == [url]
    assert sqs.list_queues(MaxResults=1, NextToken=page["NextToken"])["QueueUrls"] == [dlq]
    assert sqs.list_dead_letter_source_queues(QueueUrl=dlq)["queueUrls"] == [url]

    sqs.set_queue_attributes(
        QueueUrl=url, Attributes={"VisibilityTimeout": "60", "DelaySeconds": "1"}
    )
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["VisibilityTimeout"] == "60"
    assert attributes["DelaySeconds"] == "1"
    assert json.loads(attributes["RedrivePolicy"]) == {
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": 2,
    }
    assert "FifoQueue" not in attributes
    only = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["DelaySeconds"])["Attributes"]
    assert only == {"DelaySeconds": "1"}
    sqs.delete_queue(QueueUrl=url)
    assert sqs.list_queues()["QueueUrls"] == [dlq]


def test_batches_and_system_attributes(sqs: Any) -> None:
    url = sqs.create_queue(
        QueueName="orders.fifo",
        Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"},
    )["QueueUrl"]
    entries = [
        {
            "Id": f"e{i}",
            "MessageBody": f"order {i}",
            "MessageGroupId": "g",
            "MessageAttributes": {"n": {"DataType": "Number", "StringValue": str(i)}},
        }
        for i in range(10)
    ]
    sent = sqs.send_message_batch(QueueUrl=url, Entries=entries)  # boto3 checks every MD5
    assert [e["Id"] for e in sent["Successful"]] == [f"e{i}" for i in range(10)]
    assert all(e["SequenceNumber"] for e in sent["Successful"])
    got = sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=10,
        MessageSystemAttributeNames=["MessageGroupId", "ApproximateReceiveCount"],
        MessageAttributeNames=["n"],
    )["Messages"]
    assert [m["Body"] for m in got] == [f"order {i}" for i in range(10)]
    assert got[0]["Attributes"] == {"MessageGroupId": "g", "ApproximateReceiveCount": "1"}
    assert got[3]["MessageAttributes"] == {"n": {"DataType": "Number", "StringValue": "3"}}
    changed = sqs.change_message_visibility_batch(
        QueueUrl=url,
        Entries=[
            {"Id": "a", "ReceiptHandle": got[0]["ReceiptHandle"], "VisibilityTimeout": 100},
            {"Id": "b", "ReceiptHandle": "garbage", "VisibilityTimeout": 100},
        ],
    )
    assert [e["Id"] for e in changed["Successful"]] == ["a"]
    assert changed["Failed"][0]["Code"] == "ReceiptHandleIsInvalid"
    deleted = sqs.delete_message_batch(
        QueueUrl=url,
        Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)],
    )
    assert len(deleted["Successful"]) == 10
    # Without attribute names, none come back (as SQS).
    sqs.send_message(
        QueueUrl=url,
        MessageBody="plain",
        MessageGroupId="g",
        MessageAttributes={"k": {"DataType": "String", "StringValue": "v"}},
    )
    [m] = sqs.receive_message(QueueUrl=url)["Messages"]
    assert "Attributes" not in m and "MessageAttributes" not in m


def test_dead_letter_and_redrive(sqs: Any) -> None:
    dlq = sqs.create_queue(QueueName="dlq")["QueueUrl"]
    dlq_arn = "arn:aws:sqs:us-east-1:000000000000:dlq"
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 1})
    url = sqs.create_queue(
        QueueName="work", Attributes={"VisibilityTimeout": "0", "RedrivePolicy": policy}
    )["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="poison")
    assert len(sqs.receive_message(QueueUrl=url)["Messages"]) == 1
    assert "Messages" not in sqs.receive_message(QueueUrl=url)  # moved on the second receive
    [dead] = sqs.receive_message(QueueUrl=dlq, VisibilityTimeout=0)["Messages"]
    assert dead["Body"] == "poison"
    handle = sqs.start_message_move_task(SourceArn=dlq_arn)["TaskHandle"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        [task] = sqs.list_message_move_tasks(SourceArn=dlq_arn)["Results"]
        if task["Status"] != "RUNNING":
            break
        time.sleep(0.05)
    assert task["Status"] == "COMPLETED" and task["ApproximateNumberOfMessagesMoved"] == 1
    assert handle
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"RedrivePolicy": ""})
    [back] = sqs.receive_message(QueueUrl=url)["Messages"]
    assert back["Body"] == "poison"


def test_long_poll_returns_promptly_on_send(sqs: Any, server: ServerThread) -> None:
    url = sqs.create_queue(QueueName="waiting")["QueueUrl"]
    sender = client("sqs", server.url)
    timer = threading.Timer(0.3, lambda: sender.send_message(QueueUrl=url, MessageBody="wake"))
    started = time.monotonic()
    timer.start()
    reply = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=10)
    elapsed = time.monotonic() - started
    timer.join()
    assert [m["Body"] for m in reply["Messages"]] == ["wake"]
    assert 0.25 <= elapsed < 2.0, elapsed
    # An empty long poll waits its time, then answers with no messages.
    started = time.monotonic()
    assert "Messages" not in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)
    assert 0.9 <= time.monotonic() - started < 3.0


def test_long_polls_do_not_block_other_requests(sqs: Any, server: ServerThread) -> None:
    url = sqs.create_queue(QueueName="idle")["QueueUrl"]
    pollers = [client("sqs", server.url) for _ in range(20)]
    threads = [
        threading.Thread(target=p.receive_message, kwargs={"QueueUrl": url, "WaitTimeSeconds": 2})
        for p in pollers
    ]
    for t in threads:
        t.start()
    time.sleep(0.2)
    started = time.monotonic()
    other = sqs.create_queue(QueueName="busy")["QueueUrl"]
    sqs.send_message(QueueUrl=other, MessageBody="x")
    assert time.monotonic() - started < 1.0
    for t in threads:
        t.join()


def test_error_shapes(sqs: Any, server: ServerThread) -> None:
    with pytest.raises(sqs.exceptions.QueueDoesNotExist) as missing:
        sqs.get_queue_url(QueueName="nope")
    error = missing.value.response["Error"]
    assert error["Code"] == "AWS.SimpleQueueService.NonExistentQueue"
    assert error["QueryErrorCode"] == "QueueDoesNotExist"
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.send_message(QueueUrl=f"{server.url}/000000000000/nope", MessageBody="x")

    url = sqs.create_queue(QueueName="q", Attributes={"VisibilityTimeout": "5"})["QueueUrl"]
    with pytest.raises(sqs.exceptions.QueueNameExists) as exists:
        sqs.create_queue(QueueName="q", Attributes={"VisibilityTimeout": "6"})
    assert exists.value.response["Error"]["Code"] == "QueueAlreadyExists"
    with pytest.raises(sqs.exceptions.InvalidAttributeName):
        sqs.create_queue(QueueName="r", Attributes={"Bogus": "1"})
    with pytest.raises(sqs.exceptions.InvalidAttributeValue):
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "soon"})
    with pytest.raises(ClientError) as bad_value:
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "99999"})
    # Out of range is InvalidAttributeValue, as SQS answers (issue 14, point 10).
    assert bad_value.value.response["Error"]["Code"] == "InvalidAttributeValue"
    assert bad_value.value.response["Error"]["Message"] == (
        "Invalid value for the parameter VisibilityTimeout."
    )
    with pytest.raises(sqs.exceptions.ReceiptHandleIsInvalid):
        sqs.delete_message(QueueUrl=url, ReceiptHandle="garbage")
    with pytest.raises(sqs.exceptions.BatchEntryIdsNotDistinct):
        sqs.send_message_batch(
            QueueUrl=url,
            Entries=[{"Id": "a", "MessageBody": "1"}, {"Id": "a", "MessageBody": "2"}],
        )
    with pytest.raises(sqs.exceptions.TooManyEntriesInBatchRequest):
        sqs.send_message_batch(
            QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": "x"} for i in range(11)]
        )
    # The other batch calls answer with the same codes.
    handles = [{"Id": str(i), "ReceiptHandle": "garbage"} for i in range(11)]
    with pytest.raises(sqs.exceptions.TooManyEntriesInBatchRequest):
        sqs.delete_message_batch(QueueUrl=url, Entries=handles)
    with pytest.raises(sqs.exceptions.TooManyEntriesInBatchRequest):
        sqs.change_message_visibility_batch(
            QueueUrl=url, Entries=[{**h, "VisibilityTimeout": 1} for h in handles]
        )
    with pytest.raises(sqs.exceptions.BatchEntryIdsNotDistinct):
        sqs.delete_message_batch(QueueUrl=url, Entries=[handles[0], handles[0]])
    with pytest.raises(sqs.exceptions.BatchEntryIdsNotDistinct):
        sqs.change_message_visibility_batch(
            QueueUrl=url, Entries=[{**handles[0], "VisibilityTimeout": 1}] * 2
        )
    with pytest.raises(sqs.exceptions.EmptyBatchRequest):
        sqs.delete_message_batch(QueueUrl=url, Entries=[])
    with pytest.raises(ClientError) as too_long:
        sqs.receive_message(QueueUrl=url, WaitTimeSeconds=21)
    assert too_long.value.response["Error"]["Code"] == "InvalidParameterValue"
