"""Shared pieces of the wire-server tests: a server on a free port and boto3 clients for it."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from xml.etree import ElementTree

import boto3
from botocore.config import Config
from helpers import FakeClock

import tidelog
from tidelog.server import ServerThread

# No retries, so an error reaches the test at once; no signing checks server-side,
# so any credentials do.
CLIENT_CONFIG = Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=30)


def client(service: str, url: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=url,
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=CLIENT_CONFIG,
    )


@contextmanager
def running(path: Path, clock: FakeClock | None = None) -> Iterator[ServerThread]:
    """A store at `path` served on 127.0.0.1 (free port) until the block ends."""
    options: dict[str, Any] = {} if clock is None else {"clock": clock}
    with tidelog.open(path, sync="never", **options) as store:
        server = ServerThread(store).start()
        try:
            yield server
        finally:
            server.stop()
        assert store.check() == []


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def start_serve(data: Path, port: int, *options: str) -> subprocess.Popen[str]:
    """`tidelog serve` on 127.0.0.1:port as a child process (stderr piped, as text),
    returned once the port accepts connections."""
    command = [sys.executable, "-m", "tidelog.cli.main", "serve", "--data", str(data)]
    process = subprocess.Popen(
        [*command, "--port", str(port), *options], stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise AssertionError(f"serve did not start: {process.communicate()}") from None
            time.sleep(0.05)


# -- raw requests, for what boto3 refuses to send --------------------------------------------------

JSON_TARGETS = {
    "sqs": ("AmazonSQS", "application/x-amz-json-1.0"),
    "kinesis": ("Kinesis_20131202", "application/x-amz-json-1.1"),
    "firehose": ("Firehose_20150804", "application/x-amz-json-1.1"),
}


@dataclass
class RawReply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def xml(self) -> ElementTree.Element:
        return ElementTree.fromstring(self.body)

    def error_type(self) -> str:
        """A JSON error's __type without its namespace."""
        kind: str = self.json()["__type"]
        return kind.rsplit("#", 1)[-1]

    def error_code(self) -> str:
        """A query-protocol ErrorResponse's Code (the XML must parse)."""
        code = self.xml().find("./{*}Error/{*}Code")
        assert code is not None and code.text, self.body[:300]
        return code.text


def post(
    port: int, body: bytes, headers: dict[str, str], path: str = "/", timeout: float = 30
) -> RawReply:
    """One POST to the server on 127.0.0.1:port; its status, headers and body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        return RawReply(
            response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        )
    finally:
        connection.close()


def post_json(
    port: int, service: str, operation: str, body: bytes | Any, content_type: str | None = None
) -> RawReply:
    """A JSON-protocol call (service "sqs", "kinesis" or "firehose"); `body` as bytes is
    sent as it is, anything else as JSON; `content_type` replaces the protocol's."""
    prefix, default_type = JSON_TARGETS[service]
    content_type = content_type or default_type
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"X-Amz-Target": f"{prefix}.{operation}", "Content-Type": content_type}
    return post(port, data, headers)


def post_form(port: int, fields: Any, path: str = "/") -> RawReply:
    """A query-protocol call: `fields` (pairs or a dict) form-encoded, or bytes as they are."""
    data = fields if isinstance(fields, bytes) else urlencode(fields).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    return post(port, data, headers, path)
