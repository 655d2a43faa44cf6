"""Fuzzing SQS over AWS JSON 1.0 and the query protocol against one real server (issue 14).

Hypothesis builds requests from botocore's SQS model with edge values (see
tests/fuzz_wire.py) and garbage bodies; every reply must be below 500 and
in SQS's error shape. Messages sent before the fuzzing (to queues no fuzzed
request names) must all be there, unchanged, afterwards, and the server must
still answer. Derandomized and bounded: the same few hundred examples per
protocol each run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fuzz_wire import FUZZ, KEEP, check_json_reply, check_query_reply, json_request, query_request
from hypothesis import assume, given
from hypothesis import strategies as st
from server_harness import client, post_form, post_json, running

import tidelog
from tidelog.server import ServerThread, sqs

VERSION = "2012-11-05"
KEPT = [f"kept message {i} é😀" for i in range(5)]
OPERATIONS = sorted(sqs.HANDLERS) + ["Nope", ""]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with running(Path(tmp_path_factory.mktemp("fuzz-sqs")) / "data") as started:
        boto = client("sqs", started.url)
        kept = boto.create_queue(QueueName=KEEP)["QueueUrl"]
        kept_fifo = boto.create_queue(
            QueueName=f"{KEEP}.fifo",
            Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"},
        )["QueueUrl"]
        for body in KEPT:
            boto.send_message(QueueUrl=kept, MessageBody=body)
            boto.send_message(QueueUrl=kept_fifo, MessageBody=body, MessageGroupId="g")
        # Queues the fuzzer may name, with messages for its receives and deletes.
        fz = boto.create_queue(QueueName="fz")["QueueUrl"]
        boto.create_queue(QueueName="fz.fifo", Attributes={"FifoQueue": "true"})
        for i in range(50):
            boto.send_message(QueueUrl=fz, MessageBody=f"fz {i}")
        yield started
        _check_kept(boto, kept, kept_fifo)


def _check_kept(boto: Any, *urls: str) -> None:
    """The server answers, and every message sent before the fuzzing is there as sent."""
    assert {KEEP, f"{KEEP}.fifo"} <= {
        url.rsplit("/", 1)[-1] for url in boto.list_queues()["QueueUrls"]
    }
    for url in urls:
        got: list[str] = []
        for _ in range(len(KEPT) + 1):
            reply = boto.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=300
            )
            messages = reply.get("Messages", [])
            if not messages:
                break
            got += [m["Body"] for m in messages]
            boto.delete_message_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(messages)
                ],
            )
        assert sorted(got) == sorted(KEPT), url


def _ensure_targets(server: ServerThread) -> None:
    """Put back the queues a fuzzed DeleteQueue or PurgeQueue took, so that later
    examples reach more than QueueDoesNotExist."""
    store = server.app.store
    for name, fifo in (("fz", False), ("fz.fifo", True)):
        try:
            queue = store.queue(name)
        except tidelog.NotFound:
            queue = store.create_queue(name, fifo=fifo, content_based_dedup=fifo)
        if len(queue) < 5:
            queue.send_many([{"body": b"fz", "group_id": "g" if fifo else None}] * 10)


def _fill(server: ServerThread) -> dict[str, Any]:
    """Good values for members, so fuzzed requests get past the first check."""
    base = f"{server.url}/000000000000"
    boto = client("sqs", server.url)
    try:
        boto.get_queue_url(QueueName="fz")
    except boto.exceptions.QueueDoesNotExist:  # an earlier fuzzer deleted it, as it may
        boto.create_queue(QueueName="fz")
    boto.send_message(QueueUrl=f"{base}/fz", MessageBody="fz")
    received = boto.receive_message(QueueUrl=f"{base}/fz", MaxNumberOfMessages=10)
    receipts = [m["ReceiptHandle"] for m in received.get("Messages", [])] or ["tl1.1.1.1"]
    # Out-of-range forms of a real handle: negative and 20-digit offsets.
    prefix, log_id, _offset, nonce = receipts[0].split(".")
    receipts += [f"{prefix}.{log_id}.-1.{nonce}", f"{prefix}.{log_id}.{'f' * 20}.{nonce}"]
    return {
        "QueueUrl": [f"{base}/fz", f"{base}/fz.fifo", f"{base}/nope", "fz", ""],
        "QueueName": ["fz", "fz.fifo", "fz2", "evil\n", "evil\n.fifo"],
        "MessageBody": ["x", "\x00", "\ud800", "\uffff", "é"],
        "ReceiptHandle": receipts,
        "MaxNumberOfMessages": [0, 1, 10, 11],
        "WaitTimeSeconds": [0, 21, -1],
        "VisibilityTimeout": [0, 1, 43200, 43201],
        "Entries": [
            [{"Id": "a", "MessageBody": "x", "ReceiptHandle": r, "VisibilityTimeout": 0}]
            for r in receipts
        ],
        "MessageGroupId": ["g", "g\n", ""],
        "MessageDeduplicationId": ["d", "d\n"],
        "DelaySeconds": [0, 1, 900, 901],
        "Attributes": [
            {"VisibilityTimeout": "43201"},
            {"DelaySeconds": "²"},
            {"RedrivePolicy": '{"deadLetterTargetArn": "arn:aws:sqs:us-east-1:0:fz"}'},
            {"RedrivePolicy": "[" * 5000},
            {"FifoQueue": "true"},
        ],
        "MessageAttributes": [
            {"a": {"DataType": "String", "StringValue": v}} for v in ("v", "\x00", "\ud800", "")
        ]
        + [{"n": {"DataType": "Number", "StringValue": v}} for v in ("1", "NaN", "1e999", "²")],
        "AttributeNames": [["All"], ["Bogus"]],
        "MessageAttributeNames": [["All"], [".*"], ["a.*"]],
        "Tags": [{"k": "v"}, {"": ""}],
        "TagKeys": [["k"], []],
        "Label": ["l", "l\n"],
        "AWSAccountIds": [["000000000000"]],
        "Actions": [["SendMessage"], ["*"]],
        "SourceArn": ["arn:aws:sqs:us-east-1:000000000000:fz", "arn:aws:sqs:x"],
        "NextToken": ["", "!!", "eA=="],
    }


RECEIPT_KEYS = ["DeleteMessageBatchRequestEntry", "ChangeMessageVisibilityBatchRequestEntry"]


def _query_fields(fill: dict[str, Any]) -> st.SearchStrategy[list[tuple[str, str]]]:
    """Fields in SQS query's own spelling, with edge values."""
    values = st.sampled_from(
        ["1", "0", "43201", "²", "--1", "NaN", "x", "\x00", "\ud800", "String", "Number"]
    )
    receipts = st.sampled_from(fill["ReceiptHandle"])
    index = st.sampled_from(["1", "2", "10", "11", "0", "99999"])
    return st.one_of(
        st.tuples(
            index, st.sampled_from(["VisibilityTimeout", "DelaySeconds", "Bogus"]), values
        ).map(lambda t: [(f"Attribute.{t[0]}.Name", t[1]), (f"Attribute.{t[0]}.Value", t[2])]),
        st.tuples(index, st.sampled_from(["String", "Number", "Binary", "X"]), values).map(
            lambda t: [
                (f"MessageAttribute.{t[0]}.Name", "a"),
                (f"MessageAttribute.{t[0]}.Value.DataType", t[1]),
                (f"MessageAttribute.{t[0]}.Value.StringValue", t[2]),
            ]
        ),
        st.tuples(index, values).map(
            lambda t: [
                (f"SendMessageBatchRequestEntry.{t[0]}.Id", "a"),
                (f"SendMessageBatchRequestEntry.{t[0]}.MessageBody", t[1]),
            ]
        ),
        st.tuples(st.sampled_from(RECEIPT_KEYS), index, receipts, values).map(
            lambda t: [
                (f"{t[0]}.{t[1]}.Id", "a"),
                (f"{t[0]}.{t[1]}.ReceiptHandle", t[2]),
                (f"{t[0]}.{t[1]}.VisibilityTimeout", t[3]),
            ]
        ),
    )


def test_fuzz_sqs_json(server: ServerThread) -> None:
    fill = _fill(server)

    @FUZZ
    @given(request=json_request("sqs", OPERATIONS, fill))
    def run(request: tuple[str, bytes]) -> None:
        operation, body = request
        assume(KEEP.encode() not in body)
        check_json_reply(post_json(server.port, "sqs", operation, body))
        _ensure_targets(server)

    run()


def test_fuzz_sqs_query(server: ServerThread) -> None:
    fill = _fill(server)

    @FUZZ
    @given(body=query_request("sqs", VERSION, OPERATIONS, fill, _query_fields(fill)))
    def run(body: bytes) -> None:
        assume(KEEP.encode() not in body)
        check_query_reply(post_form(server.port, body))
        # Posted to a queue's path, as the query protocol allows.
        check_query_reply(post_form(server.port, body, path="/000000000000/fz"))
        _ensure_targets(server)

    run()
