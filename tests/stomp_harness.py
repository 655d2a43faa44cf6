"""Shared pieces of the STOMP tests: a broker on a free port, a collecting listener, raw sockets."""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import stomp
from stomp.utils import Frame as ClientFrame

import tidelog
from tidelog.server.stomp import BrokerConfig, StompServerThread

FAST = BrokerConfig(poll_wait_seconds=0.3)


@contextmanager
def broker(
    path: Path, config: BrokerConfig = FAST, store: tidelog.Store | None = None
) -> Iterator[StompServerThread]:
    """A broker over the store at `path` (opened here unless given) until the block ends."""
    if store is not None:
        with StompServerThread(store, config=config) as server:
            yield server
        return
    with tidelog.open(path, sync="never") as opened:
        with StompServerThread(opened, config=config) as server:
            yield server
        assert opened.check() == []


class Collector(stomp.ConnectionListener):  # type: ignore[misc]
    """Collects MESSAGE, ERROR and RECEIPT frames for the test to wait on."""

    def __init__(self) -> None:
        self.messages: queue.Queue[ClientFrame] = queue.Queue()
        self.errors: list[ClientFrame] = []
        self.heartbeats = 0
        self.disconnected = False
        self.receipts: set[str] = set()
        self._receipt = threading.Condition()

    def on_message(self, frame: ClientFrame) -> None:
        self.messages.put(frame)

    def on_error(self, frame: ClientFrame) -> None:
        self.errors.append(frame)

    def on_receipt(self, frame: ClientFrame) -> None:
        with self._receipt:
            self.receipts.add(frame.headers["receipt-id"])
            self._receipt.notify_all()

    def receipt(self, receipt_id: str, timeout: float = 30.0) -> None:
        """Wait for the RECEIPT of the frame sent with `receipt=receipt_id`: the
        broker has done what that frame asked (and what came before it)."""
        with self._receipt:
            if not self._receipt.wait_for(lambda: receipt_id in self.receipts, timeout):
                raise AssertionError(f"no RECEIPT {receipt_id!r} within {timeout} s")

    def on_heartbeat(self) -> None:
        self.heartbeats += 1

    def on_disconnected(self) -> None:
        self.disconnected = True

    def take(self, count: int, timeout: float = 30.0) -> list[ClientFrame]:
        deadline = time.monotonic() + timeout
        out = []
        while len(out) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"got {len(out)} of {count} messages")
            try:
                out.append(self.messages.get(timeout=left))
            except queue.Empty:
                continue
        return out

    def none(self, seconds: float = 0.5) -> bool:
        """True when no message arrives within `seconds`."""
        try:
            self.messages.get(timeout=seconds)
        except queue.Empty:
            return True
        return False


def connect(
    server: StompServerThread, version: str = "1.2", **options: Any
) -> tuple[stomp.Connection, Collector]:
    """A connected stomp.py client and its collector. Options go to connect()."""
    classes = {"1.0": stomp.Connection10, "1.1": stomp.Connection11, "1.2": stomp.Connection12}
    heartbeats = options.pop("heartbeats", (0, 0))
    kwargs: dict[str, Any] = {"auto_decode": False}
    if version != "1.0":
        kwargs["heartbeats"] = heartbeats
    connection = classes[version]([(server.host, server.port)], **kwargs)
    listener = Collector()
    connection.set_listener("", listener)
    connection.connect(wait=True, **options)
    return connection, listener


class Raw:
    """A plain socket to the broker, for frames no client library would send."""

    def __init__(self, server: StompServerThread) -> None:
        self.sock = socket.create_connection((server.host, server.port), timeout=5)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def connect(self, headers: str = "accept-version:1.2\nhost:x\n") -> bytes:
        self.send(b"CONNECT\n" + headers.encode() + b"\n\0")
        return self.frame()

    def frame(self) -> bytes:
        """The next frame (heart-beat EOLs skipped), up to and without its NUL."""
        while True:
            self.buffer = self.buffer.lstrip(b"\r\n")
            if b"\0" in self.buffer:
                head, _, body_start = self.buffer.partition(b"\n\n")
                length = None
                for line in head.split(b"\n")[1:]:
                    if line.startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if length is not None and len(body_start) < length + 1:
                    pass
                else:
                    end = len(head) + 2 + length if length is not None else self.buffer.index(b"\0")
                    frame, self.buffer = self.buffer[:end], self.buffer[end + 1 :]
                    return frame
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed before a whole frame")
            self.buffer += chunk

    def closed(self, timeout: float = 30.0) -> bool:
        """True once the broker closes the connection."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()


def refused(
    server: StompServerThread, frame: bytes, reason: bytes, connected: bool = True
) -> bytes:
    """Send `frame` on a fresh connection (after CONNECT unless `connected` is
    False): an ERROR naming `reason` must come back, then the close. Returns it."""
    raw = Raw(server)
    if connected:
        assert raw.connect().startswith(b"CONNECTED\n")
    raw.send(frame)
    reply = raw.frame()
    assert reply.startswith(b"ERROR\n"), reply
    assert reason in reply, reply
    assert raw.closed()
    raw.close()
    return reply
