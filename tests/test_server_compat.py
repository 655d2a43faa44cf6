"""What moto's and LocalStack's suites need of `tidelog serve` (issue 16), through boto3:
the reset API, accounts, STS, Kinesis's recorded settings, SNS mobile/SMS/permissions,
MessageStructure=json, kept deliveries, and AWS's error texts."""

from __future__ import annotations

import http.client
import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from server_harness import CLIENT_CONFIG, client, free_port, running, start_serve

import tidelog
from tidelog.server import ServerThread
from tidelog.server.auth import Authenticator
from tidelog.server.sns_state import DELIVERIES_LOG, deliveries


def _post(port: int, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", path, body=b"")
        reply = connection.getresponse()
        return reply.status, reply.read()
    finally:
        connection.close()


def _keyed_client(service: str, url: str, key: str, secret: str = "s", **extra: Any) -> Any:
    return boto3.client(
        service,
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=CLIENT_CONFIG,
        **extra,
    )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServerThread]:
    with running(tmp_path / "data") as server:
        yield server


# -- the reset API --------------------------------------------------------------------------------


def test_reset_api_is_off_by_default(served: ServerThread) -> None:
    sqs = client("sqs", served.url)
    sqs.create_queue(QueueName="kept")
    status, _ = _post(served.port, "/moto-api/reset")
    assert status != 200
    assert [u.rsplit("/", 1)[1] for u in sqs.list_queues()["QueueUrls"]] == ["kept"]


def test_reset_api_drops_every_channel_and_sns_state(tmp_path: Path) -> None:
    with (
        tidelog.open(tmp_path / "data", sync="never") as store,
        ServerThread(store, reset_api=True) as server,
    ):
        sqs, sns = client("sqs", server.url), client("sns", server.url)
        kinesis = client("kinesis", server.url)
        for path in ("/moto-api/reset", "/_localstack/state/reset"):
            sqs.create_queue(QueueName="q")
            topic = sns.create_topic(Name="t")["TopicArn"]
            sns.subscribe(TopicArn=topic, Protocol="sms", Endpoint="+15551234567")
            sns.set_sms_attributes(attributes={"DefaultSMSType": "Transactional"})
            kinesis.create_stream(StreamName="s", ShardCount=1)
            assert _post(server.port, path)[0] == 200
            assert sqs.list_queues().get("QueueUrls", []) == []
            assert sns.list_topics()["Topics"] == []
            assert sns.list_subscriptions()["Subscriptions"] == []
            assert sns.get_sms_attributes()["attributes"] == {}
            assert kinesis.list_streams()["StreamNames"] == []
        # A channel made after the reset is as good as any.
        url = sqs.create_queue(QueueName="after")["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody="x")
        assert sqs.receive_message(QueueUrl=url)["Messages"][0]["Body"] == "x"


def test_serve_banner_says_the_reset_api_is_on(tmp_path: Path) -> None:
    port = free_port()
    process = start_serve(tmp_path / "data", port, "--no-stomp", "--sync", "never", "--reset-api")
    try:
        assert _post(port, "/moto-api/reset")[0] == 200
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "reset API on" in err


# -- accounts -------------------------------------------------------------------------------------


def test_account_id_option_names_queues_topics_and_identity(tmp_path: Path) -> None:
    port = free_port()
    process = start_serve(
        tmp_path / "data", port, "--no-stomp", "--sync", "never", "--account-id", "123456789012"
    )
    url = f"http://127.0.0.1:{port}"
    try:
        sqs, sns = client("sqs", url), client("sns", url)
        queue_url = sqs.create_queue(QueueName="jobs")["QueueUrl"]
        assert queue_url == f"{url}/123456789012/jobs"
        topic = sns.create_topic(Name="orders")["TopicArn"]
        assert topic == "arn:aws:sns:us-east-1:123456789012:orders"
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        sns.publish(TopicArn=topic, Message="m")
        body = json.loads(sqs.receive_message(QueueUrl=queue_url)["Messages"][0]["Body"])
        assert body["TopicArn"] == topic  # the envelope agrees with the ARN handed out
        assert client("sts", url).get_caller_identity()["Account"] == "123456789012"
        # A 12-digit access key acts as its own account.
        other = _keyed_client("sqs", url, "111111111111")
        assert other.get_queue_url(QueueName="jobs")["QueueUrl"] == f"{url}/111111111111/jobs"
        sts = _keyed_client("sts", url, "111111111111")
        assert sts.get_caller_identity()["Account"] == "111111111111"
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err


# -- STS ------------------------------------------------------------------------------------------


def test_assumed_role_credentials_sign_requests_under_auth(tmp_path: Path) -> None:
    with tidelog.open(tmp_path / "data", sync="never") as store:
        auth = Authenticator({"AKIDLOCAL": "secret"})
        with ServerThread(store, auth=auth) as server:
            sts = _keyed_client("sts", server.url, "AKIDLOCAL", "secret")
            assumed = sts.assume_role(
                RoleArn="arn:aws:iam::222222222222:role/worker", RoleSessionName="job-1"
            )
            creds = assumed["Credentials"]
            assert creds["AccessKeyId"].startswith("ASIA")
            assert assumed["AssumedRoleUser"]["Arn"] == (
                "arn:aws:sts::222222222222:assumed-role/worker/job-1"
            )
            as_role = dict(
                aws_session_token=creds["SessionToken"],
            )
            sqs = _keyed_client(
                "sqs", server.url, creds["AccessKeyId"], creds["SecretAccessKey"], **as_role
            )
            url = sqs.create_queue(QueueName="work")["QueueUrl"]
            assert url.endswith("/222222222222/work")
            identity = _keyed_client(
                "sts", server.url, creds["AccessKeyId"], creds["SecretAccessKey"], **as_role
            ).get_caller_identity()
            assert identity["Account"] == "222222222222"
            session = sts.get_session_token(DurationSeconds=900)["Credentials"]
            mine = _keyed_client(
                "sts",
                server.url,
                session["AccessKeyId"],
                session["SecretAccessKey"],
                aws_session_token=session["SessionToken"],
            )
            assert mine.get_caller_identity()["Account"] == "000000000000"
            # A session key with a wrong secret is refused as AWS refuses it.
            forged = _keyed_client("sqs", server.url, creds["AccessKeyId"], "wrong", **as_role)
            with pytest.raises(ClientError) as refused:
                forged.list_queues()
            assert refused.value.response["Error"]["Code"] == "InvalidSignatureException"
            with pytest.raises(ClientError) as bad:
                sts.assume_role(RoleArn="arn:aws:iam::1:role-not-one", RoleSessionName="x1")
            assert bad.value.response["Error"]["Code"] == "ValidationError"


# -- Kinesis: recorded settings -------------------------------------------------------------------


def test_kinesis_monitoring_encryption_and_policy_survive_a_restart(tmp_path: Path) -> None:
    with running(tmp_path / "data") as server:
        kinesis = client("kinesis", server.url)
        kinesis.create_stream(StreamName="s", ShardCount=1)
        enabled = kinesis.enable_enhanced_monitoring(
            StreamName="s", ShardLevelMetrics=["IncomingBytes", "OutgoingBytes"]
        )
        assert enabled["CurrentShardLevelMetrics"] == []
        assert enabled["DesiredShardLevelMetrics"] == ["IncomingBytes", "OutgoingBytes"]
        disabled = kinesis.disable_enhanced_monitoring(
            StreamName="s", ShardLevelMetrics=["OutgoingBytes"]
        )
        assert disabled["DesiredShardLevelMetrics"] == ["IncomingBytes"]
        kinesis.start_stream_encryption(StreamName="s", EncryptionType="KMS", KeyId="alias/k")
        arn = kinesis.describe_stream_summary(StreamName="s")["StreamDescriptionSummary"][
            "StreamARN"
        ]
        policy = json.dumps({"Version": "2012-10-17", "Statement": []})
        kinesis.put_resource_policy(ResourceARN=arn, Policy=policy)
        with pytest.raises(ClientError) as missing:
            kinesis.get_resource_policy(ResourceARN=arn + "x")
        assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"
        assert missing.value.response["Error"]["Message"] == (
            f"Stream {arn}x under account 000000000000 not found."
        )
    with running(tmp_path / "data") as server:
        kinesis = client("kinesis", server.url)
        description = kinesis.describe_stream(StreamName="s")["StreamDescription"]
        assert description["EnhancedMonitoring"] == [{"ShardLevelMetrics": ["IncomingBytes"]}]
        assert (description["EncryptionType"], description["KeyId"]) == ("KMS", "alias/k")
        assert kinesis.get_resource_policy(ResourceARN=arn)["Policy"] == policy
        kinesis.delete_resource_policy(ResourceARN=arn)
        with pytest.raises(ClientError) as none_left:
            kinesis.delete_resource_policy(ResourceARN=arn)
        assert none_left.value.response["Error"]["Message"] == (
            f"No resource policy found for resource ARN {arn}."
        )
        kinesis.stop_stream_encryption(StreamName="s", EncryptionType="KMS", KeyId="alias/k")
        description = kinesis.describe_stream(StreamName="s")["StreamDescription"]
        assert description["EncryptionType"] == "NONE" and "KeyId" not in description


def test_kinesis_unknown_stream_text(served: ServerThread) -> None:
    kinesis = client("kinesis", served.url)
    with pytest.raises(ClientError) as missing:
        kinesis.describe_stream(StreamName="nope")
    assert missing.value.response["Error"]["Message"] == (
        "Stream nope under account 000000000000 not found."
    )


# -- SNS ------------------------------------------------------------------------------------------


def test_platform_endpoints_and_sms_are_kept_as_deliveries(tmp_path: Path) -> None:
    with running(tmp_path / "data") as server:
        sns = client("sns", server.url)
        app = sns.create_platform_application(Name="app", Platform="GCM", Attributes={})[
            "PlatformApplicationArn"
        ]
        assert app == "arn:aws:sns:eu-west-1:000000000000:app/GCM/app"
        endpoint = sns.create_platform_endpoint(PlatformApplicationArn=app, Token="device-1")[
            "EndpointArn"
        ]
        again = sns.create_platform_endpoint(PlatformApplicationArn=app, Token="device-1")
        assert again["EndpointArn"] == endpoint  # idempotent for the same attributes
        with pytest.raises(ClientError) as clash:
            sns.create_platform_endpoint(
                PlatformApplicationArn=app, Token="device-1", CustomUserData="other"
            )
        assert clash.value.response["Error"]["Code"] == "InvalidParameter"
        sns.publish(
            TargetArn=endpoint,
            MessageStructure="json",
            Message=json.dumps({"default": "plain", "GCM": "push"}),
        )
        sns.publish(PhoneNumber="+15551234567", Message="hello")
        topic = sns.create_topic(Name="alerts")["TopicArn"]
        sns.subscribe(TopicArn=topic, Protocol="email", Endpoint="ops@example.com")
        sns.publish(TopicArn=topic, Message="disk full", Subject="alarm")
        sns.set_endpoint_attributes(EndpointArn=endpoint, Attributes={"Enabled": "false"})
        with pytest.raises(ClientError) as disabled:
            sns.publish(TargetArn=endpoint, Message="x")
        assert disabled.value.response["Error"]["Code"] == "EndpointDisabled"
        with pytest.raises(ClientError) as bad_number:
            sns.publish(PhoneNumber="555-NOPE", Message="x")
        assert "E164" in bad_number.value.response["Error"]["Message"]
    with tidelog.open(tmp_path / "data", sync="never") as store:
        kept = [(d["protocol"], d["endpoint"], d["message"]) for d in deliveries(store)]
        assert kept == [
            ("application", endpoint, "plain"),
            ("sms", "+15551234567", "hello"),
            ("email", "ops@example.com", "disk full"),
        ]
        assert len(store.log(DELIVERIES_LOG)) == 3  # a plain log: `tidelog info` lists it
    with running(tmp_path / "data") as server:  # the applications survive a restart
        sns = client("sns", server.url)
        listed = sns.list_endpoints_by_platform_application(PlatformApplicationArn=app)
        assert [e["EndpointArn"] for e in listed["Endpoints"]] == [endpoint]
        sns.delete_platform_application(PlatformApplicationArn=app)
        with pytest.raises(ClientError) as gone:
            sns.get_endpoint_attributes(EndpointArn=endpoint)
        assert gone.value.response["Error"]["Message"] == "Endpoint does not exist"


def test_sms_attributes_and_opt_out_check(served: ServerThread) -> None:
    sns = client("sns", served.url)
    sns.set_sms_attributes(attributes={"DefaultSMSType": "Transactional", "DefaultSenderID": "X"})
    assert sns.get_sms_attributes(attributes=["DefaultSMSType"])["attributes"] == {
        "DefaultSMSType": "Transactional"
    }
    assert sns.check_if_phone_number_is_opted_out(phoneNumber="+15551234567")["isOptedOut"] is False
    assert sns.list_phone_numbers_opted_out()["phoneNumbers"] == []
    topic = sns.create_topic(Name="t")["TopicArn"]
    with pytest.raises(ClientError) as bad:
        sns.subscribe(TopicArn=topic, Protocol="sms", Endpoint="+15--551234567")
    assert bad.value.response["Error"]["Message"] == "Invalid SMS endpoint: +15--551234567"


def test_topic_permissions_and_message_structure(served: ServerThread) -> None:
    sns, sqs = client("sns", served.url), client("sqs", served.url)
    topic = sns.create_topic(Name="t")["TopicArn"]
    sns.add_permission(
        TopicArn=topic, Label="pub", AWSAccountId=["999999999999"], ActionName=["Publish"]
    )
    policy = json.loads(sns.get_topic_attributes(TopicArn=topic)["Attributes"]["Policy"])
    assert policy["Statement"][1] == {
        "Sid": "pub",
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::999999999999:root"},
        "Action": "SNS:Publish",
        "Resource": topic,
    }
    with pytest.raises(ClientError) as again:
        sns.add_permission(
            TopicArn=topic, Label="pub", AWSAccountId=["999999999999"], ActionName=["Publish"]
        )
    assert again.value.response["Error"]["Message"] == "Statement already exists"
    sns.remove_permission(TopicArn=topic, Label="pub")
    policy = json.loads(sns.get_topic_attributes(TopicArn=topic)["Attributes"]["Policy"])
    assert [s["Sid"] for s in policy["Statement"]] == ["__default_statement_ID"]

    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    sns.publish(
        TopicArn=topic,
        MessageStructure="json",
        Message=json.dumps({"default": "everyone", "sqs": "queues"}),
    )
    body = json.loads(sqs.receive_message(QueueUrl=url)["Messages"][0]["Body"])
    assert body["Message"] == "queues"
    with pytest.raises(ClientError) as not_json:
        sns.publish(TopicArn=topic, MessageStructure="json", Message="{nope")
    assert not_json.value.response["Error"]["Message"] == "Message is not valid JSON."
    with pytest.raises(ClientError) as no_default:
        sns.publish(TopicArn=topic, MessageStructure="json", Message='{"sqs": "x"}')
    assert no_default.value.response["Error"]["Code"] == "InvalidParameter"


def test_sns_error_texts(served: ServerThread) -> None:
    sns = client("sns", served.url)
    missing = "arn:aws:sns:us-east-1:000000000000:nope"
    with pytest.raises(ClientError) as topic:
        sns.publish(TopicArn=missing, Message="x")
    assert topic.value.response["Error"]["Message"] == "Topic does not exist"
    with pytest.raises(ClientError) as sub:
        sns.get_subscription_attributes(SubscriptionArn=f"{missing}:0d9d1f0e")
    assert sub.value.response["Error"]["Message"] == "Subscription does not exist"
    with pytest.raises(ClientError) as tags:
        sns.list_tags_for_resource(ResourceArn=missing)
    assert tags.value.response["Error"]["Code"] == "ResourceNotFound"
    with pytest.raises(ClientError) as name:
        sns.create_topic(Name="bad name")
    assert name.value.response["Error"]["Message"].startswith("Topic names must be made up")
    with pytest.raises(ClientError) as fifo_name:
        sns.create_topic(Name="bad", Attributes={"FifoTopic": "true"})
    assert fifo_name.value.response["Error"]["Message"].startswith("Fifo Topic names must end")
    first = sns.create_topic(Name="same")["TopicArn"]
    sns.set_topic_attributes(TopicArn=first, AttributeName="DisplayName", AttributeValue="d")
    assert sns.create_topic(Name="same")["TopicArn"] == first  # no attributes: the topic


# -- SQS ------------------------------------------------------------------------------------------


def test_sqs_error_texts_and_urls(served: ServerThread) -> None:
    sqs = client("sqs", served.url)
    with pytest.raises(ClientError) as missing:
        sqs.get_queue_url(QueueName="nope")
    assert missing.value.response["Error"]["Message"] == "The specified queue does not exist."
    with pytest.raises(ClientError) as name:
        sqs.create_queue(QueueName="bad name")
    assert name.value.response["Error"]["Message"] == (
        "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length"
    )
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    localhost = client("sqs", served.url.replace("127.0.0.1", "localhost"))
    assert localhost.get_queue_url(QueueName="q")["QueueUrl"] == (
        url.replace("127.0.0.1", "localhost")  # the host the client used, as SQS's URLs
    )
    with pytest.raises(ClientError) as empty:
        sqs.send_message_batch(QueueUrl=url, Entries=[])
    assert empty.value.response["Error"]["Message"] == (
        "There should be at least one SendMessageBatchRequestEntry in the request."
    )
    with pytest.raises(ClientError) as big:
        sqs.send_message(QueueUrl=url, MessageBody="x" * (1024 * 1024 + 1))
    assert big.value.response["Error"]["Message"] == (
        "One or more parameters are invalid. Reason: Message must be shorter than 1048576 bytes."
    )
    with pytest.raises(ClientError) as attribute:
        sqs.send_message(
            QueueUrl=url,
            MessageBody="x",
            MessageAttributes={"a b": {"DataType": "String", "StringValue": "v"}},
        )
    assert attribute.value.response["Error"]["Message"].startswith(
        "The message attribute name 'a b' is invalid."
    )
    with pytest.raises(ClientError) as unknown:
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Nope"])
    assert unknown.value.response["Error"]["Message"] == "Unknown Attribute Nope."
    assert "Attributes" not in sqs.get_queue_attributes(QueueUrl=url)
    with pytest.raises(ClientError) as no_tags:
        sqs.tag_queue(QueueUrl=url, Tags={})
    assert no_tags.value.response["Error"]["Message"] == (
        "The request must contain the parameter Tags."
    )


def test_kinesis_validation_texts(served: ServerThread) -> None:
    kinesis = client("kinesis", served.url)
    kinesis.create_stream(StreamName="s", ShardCount=1)
    with pytest.raises(ClientError) as pattern:
        kinesis.split_shard(StreamName="s", ShardToSplit="?", NewStartingHashKey="1")
    assert pattern.value.response["Error"]["Code"] == "ValidationException"
    assert "at 'shardToSplit' failed to satisfy constraint" in str(pattern.value)
    with pytest.raises(ClientError) as unknown:
        kinesis.split_shard(StreamName="s", ShardToSplit="unknown", NewStartingHashKey="5")
    assert unknown.value.response["Error"]["Message"] == (
        "Could not find shard unknown in stream s under account 000000000000."
    )
    with pytest.raises(ClientError) as out_of_range:
        kinesis.split_shard(
            StreamName="s", ShardToSplit="shardId-000000000000", NewStartingHashKey="1"
        )
    assert out_of_range.value.response["Error"]["Code"] == "InvalidArgumentException"
    assert out_of_range.value.response["Error"]["Message"].endswith(
        "less than the shard's EndingHashKey 340282366920938463463374607431768211455."
    )
    with pytest.raises(ClientError) as too_many:
        kinesis.put_records(StreamName="s", Records=[{"Data": b"a", "PartitionKey": "k"}] * 501)
    assert too_many.value.response["Error"]["Message"] == (
        "1 validation error detected: Value at 'records' failed to satisfy constraint: "
        "Member must have length less than or equal to 500"
    )
    with pytest.raises(ClientError) as big:
        kinesis.put_records(
            StreamName="s", Records=[{"Data": b"a" * (1024 * 1024 + 1), "PartitionKey": "k"}]
        )
    assert big.value.response["Error"]["Code"] == "ValidationException"
    assert "'records.1.member.data'" in big.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as shard:
        kinesis.get_shard_iterator(StreamName="s", ShardId="123", ShardIteratorType="LATEST")
    assert shard.value.response["Error"]["Message"] == (
        "Shard 123 in stream s under account 000000000000 does not exist"
    )


def test_sqs_keeps_policy_and_kms_attributes_across_a_restart(tmp_path: Path) -> None:
    policy = json.dumps({"Version": "2012-10-17", "Statement": []})
    with running(tmp_path / "data") as server:
        sqs = client("sqs", server.url)
        url = sqs.create_queue(
            QueueName="q", Attributes={"KmsMasterKeyId": "alias/k", "Policy": policy}
        )["QueueUrl"]
    with running(tmp_path / "data") as server:
        sqs = client("sqs", server.url)
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert (attributes["KmsMasterKeyId"], attributes["Policy"]) == ("alias/k", policy)
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": ""})
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert "Policy" not in attributes and attributes["KmsMasterKeyId"] == "alias/k"
        sqs.delete_queue(QueueUrl=url)
        sqs.create_queue(QueueName="q")
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert "KmsMasterKeyId" not in attributes  # a new queue starts without them
