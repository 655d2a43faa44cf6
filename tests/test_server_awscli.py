"""A few commands through the AWS CLI (`aws --endpoint-url ...`) against a real server.

The AWS CLI (pip awscli, in the test extra) carries its own copy of botocore,
so this checks the endpoint against a second client build. The server checks
signatures here (`auth=`), so the CLI's SigV4 signing is verified too.
Skipped when awscli is not installed.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

# awscli is in the `test` extra: these tests always run, never skip.
from awscli.clidriver import create_clidriver

import tidelog
from tidelog.server import ServerThread
from tidelog.server.auth import Authenticator

KEY, SECRET = "AKIDCLI", "cli-secret"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    path = tmp_path_factory.mktemp("awscli") / "data"
    with (
        tidelog.open(path, sync="never") as store,
        ServerThread(store, auth=Authenticator({KEY: SECRET})) as running,
    ):
        yield running


class Result:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def aws(server: ServerThread, *args: str, secret: str = SECRET, check: bool = True) -> Any:
    """Run one `aws` command in this process (a subprocess costs 2 s of start-up here)."""
    env = {
        "AWS_ACCESS_KEY_ID": KEY,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    stdout, stderr = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = create_clidriver().main(
                ["--endpoint-url", server.url, "--output", "json", *args]
            )
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    done = Result(code, stdout.getvalue(), stderr.getvalue())
    if not check:
        return done
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.strip() else None


def test_sqs_commands(server: ServerThread) -> None:
    url = aws(server, "sqs", "create-queue", "--queue-name", "cli-jobs")["QueueUrl"]
    assert url == f"{server.url}/000000000000/cli-jobs"
    sent = aws(server, "sqs", "send-message", "--queue-url", url, "--message-body", "from the cli")
    assert sent["MD5OfMessageBody"]
    received = aws(server, "sqs", "receive-message", "--queue-url", url, "--wait-time-seconds", "1")
    assert [m["Body"] for m in received["Messages"]] == ["from the cli"]
    receipt = received["Messages"][0]["ReceiptHandle"]
    aws(server, "sqs", "delete-message", "--queue-url", url, "--receipt-handle", receipt)
    missing = aws(server, "sqs", "get-queue-url", "--queue-name", "absent", check=False)
    assert missing.returncode != 0
    assert "NonExistentQueue" in missing.stderr or "QueueDoesNotExist" in missing.stderr


def test_sns_and_kinesis_commands(server: ServerThread) -> None:
    arn = aws(server, "sns", "create-topic", "--name", "cli-topic")["TopicArn"]
    topics = aws(server, "sns", "list-topics")["Topics"]
    assert {"TopicArn": arn} in topics
    aws(server, "kinesis", "create-stream", "--stream-name", "cli-stream", "--shard-count", "1")
    assert "cli-stream" in aws(server, "kinesis", "list-streams")["StreamNames"]


def test_wrong_secret_is_refused(server: ServerThread) -> None:
    refused = aws(server, "sqs", "list-queues", secret="wrong", check=False)
    assert refused.returncode != 0
    assert "InvalidSignatureException" in refused.stderr
