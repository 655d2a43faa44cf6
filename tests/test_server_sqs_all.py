"""Every SQS operation in botocore's model, through boto3 against a real server.

`test_every_operation` calls each of the 23 operations and fails if botocore's
model names one that the test did not call, so a new operation in a botocore
upgrade shows up here. Tags and permissions are stored in the queue's
configuration and listed back; they survive a restart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from server_harness import client, running

from tidelog.server import model


def test_every_operation(tmp_path: Path) -> None:
    called: set[str] = set()
    with running(tmp_path / "data") as server:
        sqs = client("sqs", server.url)

        def call(operation: str, **kwargs: Any) -> Any:
            called.add(operation)
            names = {api: method for method, api in sqs.meta.method_to_api_mapping.items()}
            method = getattr(sqs, names[operation])
            return method(**kwargs)

        dlq = call("CreateQueue", QueueName="dlq")["QueueUrl"]
        dlq_arn = call("GetQueueAttributes", QueueUrl=dlq, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        url = call(
            "CreateQueue",
            QueueName="jobs",
            Attributes={
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 1})
            },
            tags={"team": "core"},
        )["QueueUrl"]
        assert call("GetQueueUrl", QueueName="jobs")["QueueUrl"] == url
        assert call("ListQueues", QueueNamePrefix="jo")["QueueUrls"] == [url]
        call("SetQueueAttributes", QueueUrl=url, Attributes={"VisibilityTimeout": "0"})
        assert call("ListDeadLetterSourceQueues", QueueUrl=dlq)["queueUrls"] == [url]

        call("TagQueue", QueueUrl=url, Tags={"env": "test", "team": "data"})
        assert call("ListQueueTags", QueueUrl=url)["Tags"] == {"team": "data", "env": "test"}
        call("UntagQueue", QueueUrl=url, TagKeys=["team", "absent"])
        assert call("ListQueueTags", QueueUrl=url)["Tags"] == {"env": "test"}

        call(
            "AddPermission",
            QueueUrl=url,
            Label="reader",
            AWSAccountIds=["111122223333"],
            Actions=["ReceiveMessage"],
        )
        policy = json.loads(
            sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])["Attributes"][
                "Policy"
            ]
        )
        assert [s["Sid"] for s in policy["Statement"]] == ["reader"]
        assert policy["Statement"][0]["Action"] == ["SQS:ReceiveMessage"]
        call("RemovePermission", QueueUrl=url, Label="reader")
        assert (
            "Policy"
            not in sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        )

        call("SendMessage", QueueUrl=url, MessageBody="one")
        call(
            "SendMessageBatch",
            QueueUrl=url,
            Entries=[{"Id": "a", "MessageBody": "two"}, {"Id": "b", "MessageBody": "three"}],
        )
        received = call(
            "ReceiveMessage", QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30
        )
        messages = received["Messages"]
        assert sorted(m["Body"] for m in messages) == ["one", "three", "two"]
        call(
            "ChangeMessageVisibility",
            QueueUrl=url,
            ReceiptHandle=messages[0]["ReceiptHandle"],
            VisibilityTimeout=60,
        )
        reply = call(
            "ChangeMessageVisibilityBatch",
            QueueUrl=url,
            Entries=[
                {"Id": "x", "ReceiptHandle": messages[1]["ReceiptHandle"], "VisibilityTimeout": 60}
            ],
        )
        assert reply["Successful"] == [{"Id": "x"}]
        call("DeleteMessage", QueueUrl=url, ReceiptHandle=messages[0]["ReceiptHandle"])
        reply = call(
            "DeleteMessageBatch",
            QueueUrl=url,
            Entries=[{"Id": "y", "ReceiptHandle": messages[1]["ReceiptHandle"]}],
        )
        assert reply["Successful"] == [{"Id": "y"}]
        call("PurgeQueue", QueueUrl=url)

        # A message moved to the dead-letter queue, and a move task taking it back.
        sqs.send_message(QueueUrl=dlq, MessageBody="dead")
        jobs_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        handle = call("StartMessageMoveTask", SourceArn=dlq_arn, DestinationArn=jobs_arn)[
            "TaskHandle"
        ]
        tasks = call("ListMessageMoveTasks", SourceArn=dlq_arn)["Results"]
        assert len(tasks) == 1
        assert tasks[0]["SourceArn"] == dlq_arn
        assert "ApproximateNumberOfMessagesMoved" in call(
            "CancelMessageMoveTask", TaskHandle=handle
        )

        call("DeleteQueue", QueueUrl=url)
        assert sqs.list_queues().get("QueueUrls") == [dlq]

    assert called == set(model.service_model("sqs").operation_names)


def test_tags_and_permissions_survive_a_restart(tmp_path: Path) -> None:
    with running(tmp_path / "data") as server:
        sqs = client("sqs", server.url)
        url = sqs.create_queue(QueueName="kept")["QueueUrl"]
        sqs.tag_queue(QueueUrl=url, Tags={"owner": "ops"})
        sqs.add_permission(
            QueueUrl=url, Label="send", AWSAccountIds=["123456789012"], Actions=["SendMessage"]
        )
    with running(tmp_path / "data") as server:
        sqs = client("sqs", server.url)
        url = sqs.get_queue_url(QueueName="kept")["QueueUrl"]
        assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"owner": "ops"}
        policy = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])["Attributes"]
        assert json.loads(policy["Policy"])["Statement"][0]["Sid"] == "send"
        # Create-if-absent still agrees with the queue after it gained tags.
        assert sqs.create_queue(QueueName="kept")["QueueUrl"] == url


def test_tag_and_permission_errors(tmp_path: Path) -> None:
    with running(tmp_path / "data") as server:
        sqs = client("sqs", server.url)
        url = sqs.create_queue(QueueName="q")["QueueUrl"]
        with pytest.raises(sqs.exceptions.ClientError) as too_many:
            sqs.tag_queue(QueueUrl=url, Tags={f"k{i}": "v" for i in range(51)})
        assert too_many.value.response["Error"]["Code"] == "InvalidParameterValue"
        assert "Tags" not in sqs.list_queue_tags(QueueUrl=url)
        with pytest.raises(sqs.exceptions.ClientError) as absent:
            sqs.remove_permission(QueueUrl=url, Label="nobody")
        assert absent.value.response["Error"]["Code"] == "InvalidParameterValue"
        sqs.add_permission(QueueUrl=url, Label="a", AWSAccountIds=["1"], Actions=["*"])
        with pytest.raises(sqs.exceptions.ClientError):
            sqs.add_permission(QueueUrl=url, Label="a", AWSAccountIds=["1"], Actions=["*"])
        with pytest.raises(sqs.exceptions.QueueDoesNotExist):
            sqs.tag_queue(QueueUrl=f"{server.url}/000000000000/none", Tags={"a": "b"})
