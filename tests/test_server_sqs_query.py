"""SQS's legacy query protocol (Action=...&Version=2012-11-05, XML replies), by raw HTTP.

botocore no longer ships a query-protocol SQS model, so these tests post the
forms the SQS API reference documents (API version 2012-11-05) and read the
XML back with ElementTree, as an older SDK would.
"""

from __future__ import annotations

import hashlib
import http.client
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
from server_harness import client, running

from tidelog.server import ServerThread

NS = {"q": "http://queue.amazonaws.com/doc/2012-11-05/"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    with running(tmp_path / "data") as serving:
        yield serving


def _post(
    server: ServerThread, fields: dict[str, str], path: str = "/"
) -> tuple[int, ElementTree.Element]:
    form = {"Version": "2012-11-05", **fields}
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request(
            "POST",
            path,
            body=urlencode(form),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        response = connection.getresponse()
        return response.status, ElementTree.fromstring(response.read())
    finally:
        connection.close()


def _text(root: ElementTree.Element, path: str) -> str:
    found = root.find(path, NS)
    assert found is not None, (path, ElementTree.tostring(root))
    return found.text or ""


def test_queue_and_message_round_trip(server: ServerThread) -> None:
    status, root = _post(
        server,
        {
            "Action": "CreateQueue",
            "QueueName": "legacy",
            "Attribute.1.Name": "VisibilityTimeout",
            "Attribute.1.Value": "40",
            "Tag.1.Key": "team",
            "Tag.1.Value": "core",
        },
    )
    assert status == 200
    url = _text(root, "q:CreateQueueResult/q:QueueUrl")
    assert url == f"{server.url}/000000000000/legacy"
    assert _text(root, "q:ResponseMetadata/q:RequestId")

    status, root = _post(
        server,
        {
            "Action": "SendMessage",
            "QueueUrl": url,
            "MessageBody": "héllo <xml> & {request_id}",
            "MessageAttribute.1.Name": "kind",
            "MessageAttribute.1.Value.DataType": "String",
            "MessageAttribute.1.Value.StringValue": "greeting",
        },
    )
    assert status == 200
    body_md5 = hashlib.md5("héllo <xml> & {request_id}".encode()).hexdigest()
    assert _text(root, "q:SendMessageResult/q:MD5OfMessageBody") == body_md5

    # Posted to the queue's own path with no QueueUrl field, as the query API allows.
    status, root = _post(
        server,
        {
            "Action": "ReceiveMessage",
            "AttributeName.1": "All",
            "MessageAttributeName.1": "All",
            "MaxNumberOfMessages": "5",
        },
        path=urlsplit(url).path,
    )
    assert status == 200
    message = root.find("q:ReceiveMessageResult/q:Message", NS)
    assert message is not None
    assert _text(message, "q:Body") == "héllo <xml> & {request_id}"
    assert _text(message, "q:MD5OfBody") == body_md5
    attributes = {
        _text(a, "q:Name"): _text(a, "q:Value") for a in message.findall("q:Attribute", NS)
    }
    assert attributes["ApproximateReceiveCount"] == "1"
    assert _text(message, "q:MessageAttribute/q:Name") == "kind"
    assert _text(message, "q:MessageAttribute/q:Value/q:StringValue") == "greeting"
    receipt = _text(message, "q:ReceiptHandle")

    status, root = _post(
        server,
        {
            "Action": "DeleteMessageBatch",
            "QueueUrl": url,
            "DeleteMessageBatchRequestEntry.1.Id": "a",
            "DeleteMessageBatchRequestEntry.1.ReceiptHandle": receipt,
            "DeleteMessageBatchRequestEntry.2.Id": "b",
            "DeleteMessageBatchRequestEntry.2.ReceiptHandle": "garbage",
        },
    )
    assert status == 200
    result = "q:DeleteMessageBatchResult/"
    assert _text(root, result + "q:DeleteMessageBatchResultEntry/q:Id") == "a"
    assert _text(root, result + "q:BatchResultErrorEntry/q:Id") == "b"
    assert _text(root, result + "q:BatchResultErrorEntry/q:SenderFault") == "true"

    # What the query API did is what the JSON API sees.
    sqs = client("sqs", server.url)
    attributes_json = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes_json["VisibilityTimeout"] == "40"
    assert attributes_json["ApproximateNumberOfMessages"] == "0"
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"team": "core"}

    status, root = _post(server, {"Action": "ListQueues", "QueueNamePrefix": "leg"})
    assert [e.text for e in root.findall("q:ListQueuesResult/q:QueueUrl", NS)] == [url]
    status, root = _post(
        server, {"Action": "GetQueueAttributes", "QueueUrl": url, "AttributeName.1": "All"}
    )
    names = [e.text for e in root.findall("q:GetQueueAttributesResult/q:Attribute/q:Name", NS)]
    assert "QueueArn" in names and "VisibilityTimeout" in names
    status, root = _post(
        server,
        {
            "Action": "SendMessageBatch",
            "QueueUrl": url,
            "SendMessageBatchRequestEntry.1.Id": "one",
            "SendMessageBatchRequestEntry.1.MessageBody": "1",
            "SendMessageBatchRequestEntry.1.DelaySeconds": "0",
        },
    )
    assert _text(root, "q:SendMessageBatchResult/q:SendMessageBatchResultEntry/q:Id") == "one"
    status, root = _post(server, {"Action": "DeleteQueue", "QueueUrl": url})
    assert status == 200 and root.tag.endswith("}DeleteQueueResponse")


def test_errors_carry_the_legacy_codes(server: ServerThread) -> None:
    status, root = _post(server, {"Action": "GetQueueUrl", "QueueName": "missing"})
    assert status == 400
    assert _text(root, "q:Error/q:Code") == "AWS.SimpleQueueService.NonExistentQueue"
    assert _text(root, "q:Error/q:Type") == "Sender"
    status, root = _post(server, {"Action": "CreateQueue"})
    assert (status, _text(root, "q:Error/q:Code")) == (400, "MissingParameter")
    status, root = _post(server, {"Action": "NoSuchThing"})
    assert (status, _text(root, "q:Error/q:Code")) == (400, "InvalidAction")
    url = client("sqs", server.url).create_queue(QueueName="q")["QueueUrl"]
    bad = {"Action": "ReceiveMessage", "QueueUrl": url, "MaxNumberOfMessages": "lots"}
    status, root = _post(server, bad)
    assert (status, _text(root, "q:Error/q:Code")) == (400, "InvalidParameterValue")
    status, root = _post(server, {"Action": "ListQueues", "Attribute.x.Name": "a"})
    assert (status, _text(root, "q:Error/q:Code")) == (400, "InvalidParameterValue")
    garbage = {"Action": "SendMessageBatch", "QueueUrl": url, "SendMessageBatchRequestEntry.1": "x"}
    status, root = _post(server, garbage)
    assert (status, _text(root, "q:Error/q:Code")) == (400, "InvalidParameterValue")
    # The server still answers.
    assert _post(server, {"Action": "ListQueues"})[0] == 200
