"""Shared pieces of the wire-server tests: a server on a free port and boto3 clients for it."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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
