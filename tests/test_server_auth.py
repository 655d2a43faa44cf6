"""SigV4 verification (`--auth FILE`): boto3 with right keys works, others are refused.

The server recomputes each signature with botocore's signer; these tests sign
with boto3 as a user would, and by hand for the requests no SDK sends
(malformed headers, a body changed after signing).
"""

from __future__ import annotations

import datetime
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.auth
import pytest
from botocore import UNSIGNED
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from server_harness import CLIENT_CONFIG

import tidelog
from tidelog.server import ServerThread
from tidelog.server.auth import Authenticator, load_keys

KEY, SECRET = "AKIDTIDELOG", "s3cret/value+1"


def _client(service: str, url: str, key: str = KEY, secret: str = SECRET, **config: Any) -> Any:
    return boto3.client(
        service,
        endpoint_url=url,
        region_name="eu-west-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=CLIENT_CONFIG.merge(Config(**config)) if config else CLIENT_CONFIG,
    )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    with (
        tidelog.open(tmp_path / "data", sync="never") as store,
        ServerThread(store, auth=Authenticator({KEY: SECRET})) as running,
    ):
        yield running


def _code(error: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response = error.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def test_right_keys_work_for_every_service(server: ServerThread) -> None:
    sqs = _client("sqs", server.url)
    url = sqs.create_queue(QueueName="signed")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="héllo")
    assert sqs.receive_message(QueueUrl=url)["Messages"][0]["Body"] == "héllo"
    kinesis = _client("kinesis", server.url)
    kinesis.create_stream(StreamName="s", ShardCount=1)
    kinesis.put_record(StreamName="s", Data=b"x", PartitionKey="k")
    sns = _client("sns", server.url)
    arn = sns.create_topic(Name="t")["TopicArn"]
    sns.publish(TopicArn=arn, Message="m", Subject="a subject with spaces & symbols")


def test_wrong_secret_unknown_key_and_unsigned_are_refused(server: ServerThread) -> None:
    with pytest.raises(ClientError) as wrong:
        _client("sqs", server.url, secret="not-it").list_queues()
    assert _code(wrong) == ("InvalidSignatureException", 403)
    with pytest.raises(ClientError) as unknown:
        _client("kinesis", server.url, key="AKIDOTHER").list_streams()
    assert _code(unknown) == ("UnrecognizedClientException", 403)
    with pytest.raises(ClientError) as unsigned:
        _client("sqs", server.url, signature_version=UNSIGNED).list_queues()
    assert _code(unsigned) == ("MissingAuthenticationTokenException", 403)
    # SNS speaks the query protocol: its codes are the query ones, in XML.
    with pytest.raises(ClientError) as wrong_sns:
        _client("sns", server.url, secret="not-it").list_topics()
    assert _code(wrong_sns) == ("SignatureDoesNotMatch", 403)
    with pytest.raises(ClientError) as unsigned_sns:
        _client("sns", server.url, signature_version=UNSIGNED).list_topics()
    assert _code(unsigned_sns) == ("MissingAuthenticationToken", 403)
    # Nothing was done by the refused calls.
    assert not _client("sqs", server.url).list_queues().get("QueueUrls")


def test_expired_signature_is_refused(
    server: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    late = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) - datetime.timedelta(minutes=20)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: late)
    with pytest.raises(ClientError) as expired:
        _client("sqs", server.url).list_queues()
    assert _code(expired) == ("InvalidSignatureException", 403)
    assert "expired" in expired.value.response["Error"]["Message"]


def _signed(url: str, body: bytes, target: str) -> dict[str, str]:
    request = AWSRequest(
        method="POST",
        url=url + "/",
        data=body,
        headers={"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": target},
    )
    SigV4Auth(Credentials(KEY, SECRET), "sqs", "eu-west-1").add_auth(request)
    return dict(request.headers.items())


def _post(server: ServerThread, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request("POST", "/", body=body, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_tampered_body_and_malformed_headers_are_refused(server: ServerThread) -> None:
    body = json.dumps({"QueueName": "a"}).encode()
    headers = _signed(server.url, body, "AmazonSQS.CreateQueue")
    status, reply = _post(server, body, headers)
    assert status == 200 and reply["QueueUrl"].endswith("/a")
    # The same signature over another body.
    status, reply = _post(server, json.dumps({"QueueName": "b"}).encode(), headers)
    assert (status, reply["__type"].rsplit("#")[-1]) == (403, "InvalidSignatureException")
    # A header that is not a whole AWS4-HMAC-SHA256 authorization.
    broken = dict(headers, Authorization=headers["Authorization"].split(", Signature=")[0])
    status, reply = _post(server, body, broken)
    assert (status, reply["__type"].rsplit("#")[-1]) == (400, "IncompleteSignatureException")
    # A signed header changed after signing (the target).
    moved = dict(headers, **{"X-Amz-Target": "AmazonSQS.DeleteQueue"})
    status, reply = _post(server, body, moved)
    assert reply["__type"].rsplit("#")[-1] == "InvalidSignatureException"
    assert _client("sqs", server.url).list_queues()["QueueUrls"] == [f"{server.url}/000000000000/a"]


def test_key_file_format(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("# access key, secret\n\nAKID1 one\nAKID2 two\n")
    assert load_keys(path) == {"AKID1": "one", "AKID2": "two"}
    path.write_text("AKID1\n")
    with pytest.raises(ValueError, match="keys:1"):
        load_keys(path)
    path.write_text("# none\n")
    with pytest.raises(ValueError, match="no access keys"):
        load_keys(path)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_cli_serve_with_auth(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"{KEY} {SECRET}\n")
    port = _free_port()
    command = [sys.executable, "-m", "tidelog.cli.main", "serve", "--data", str(tmp_path / "d")]
    command += ["--port", str(port), "--no-stomp", "--auth", str(keys), "--sync", "never"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, env=dict(os.environ))
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise AssertionError(process.stderr.read() if process.stderr else b"") from None
                time.sleep(0.05)
        assert not _client("sqs", url).list_queues().get("QueueUrls")
        with pytest.raises(ClientError) as wrong:
            _client("sqs", url, secret="nope").list_queues()
        assert _code(wrong)[0] == "InvalidSignatureException"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
