"""Running the endpoint: `serve` for the CLI, `ServerThread` for tests and embedding.

The HTTP stack is uvicorn (with httptools when installed) over asyncio.
asyncio sets TCP_NODELAY on accepted TCP connections (see `bind` for the
catch), so uvicorn's two writes per reply (headers, body) do not meet the
40 ms Nagle + delayed-ACK stall with keep-alive clients.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Self

import uvicorn

import tidelog
from tidelog import topics
from tidelog.segments.logstore import SyncMode
from tidelog.server.app import App
from tidelog.server.auth import Authenticator
from tidelog.server.context import ACCOUNT_ID
from tidelog.server.service import Service
from tidelog.server.workers import Workers

HOST_DEFAULT = "127.0.0.1"
PORT_DEFAULT = 4566
# In-flight requests get this long to finish after SIGINT/SIGTERM or stop().
SHUTDOWN_SECONDS = 25


LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def _config(
    app: App, host: str, port: int, log_level: str = "warning", access_log: bool = False
) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        lifespan="on",
        timeout_graceful_shutdown=SHUTDOWN_SECONDS,
        # 200 long polls of 20 s must not be cut: a connection only closes
        # when idle, and the pool, not uvicorn, bounds the concurrent work.
        timeout_keep_alive=75,
    )


class _Server(uvicorn.Server):
    """uvicorn's server, with SIGINT/SIGTERM ending `run` normally.

    uvicorn re-raises a captured signal after its graceful shutdown, which
    would end the process before `serve` closes the store; here the signal
    only asks for the shutdown, and `serve` returns. The signal also ends the
    app's streaming responses (SubscribeToShard), which would otherwise hold
    the graceful shutdown for its whole timeout.
    """

    def __init__(self, config: uvicorn.Config, app: App) -> None:
        super().__init__(config)
        self.tidelog_app = app

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def stop(signum: int, frame: FrameType | None) -> None:
            if self.should_exit:
                self.force_exit = True  # a second signal: stop waiting for requests
            self.tidelog_app.end_streams()
            self.should_exit = True

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


class PortInUse(OSError):
    """A listener's port is taken by another process (EADDRINUSE); says which listener."""

    def __init__(self, listener: str, host: str, port: int) -> None:
        super().__init__(errno.EADDRINUSE, f"{listener} port {port} on {host} is in use")
        self.listener, self.host, self.port = listener, host, port


def bind(host: str, port: int, listener: str = "AWS") -> socket.socket:
    """A listening TCP socket on host:port (0 picks a free port).

    Raises PortInUse (an OSError) naming `listener` when the port is taken.

    The protocol is given as IPPROTO_TCP on purpose: asyncio sets TCP_NODELAY
    only on sockets whose `proto` says TCP, and accepted sockets inherit the
    listener's. A socket made with proto 0 serves every keep-alive request
    40 ms late (Nagle + delayed ACK; tests/test_server.py measures it).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(listener, host, port) from exc
        raise
    sock.listen(2048)
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _authenticator(auth_file: str | None) -> Authenticator | None:
    if auth_file is None:
        return None
    try:
        return Authenticator.from_file(auth_file)
    except (OSError, ValueError) as exc:
        raise tidelog.InvalidArgument(f"auth file: {exc}") from None


def serve(
    data: str,
    host: str = HOST_DEFAULT,
    port: int = PORT_DEFAULT,
    sync: str = "always",
    stomp_port: int | None = 61613,
    stomp_users: str | None = None,
    auth_file: str | None = None,
    workers: bool = True,
    log_level: str = "warning",
    access_log: bool = False,
    reset_api: bool = False,
    account_id: str = ACCOUNT_ID,
    on_ready: Callable[[str, int | None], None] | None = None,
) -> None:
    """Open the store at `data` and serve SQS, SNS and Kinesis on host:port,
    and STOMP on host:stomp_port (None: no STOMP listener).

    With `workers` (the default) it also runs the background workers
    (server/workers.py): every delivery stream is delivered as its
    buffering hints fall due and every running SQL application computes
    its windows, those created or started later included.

    Blocks until SIGINT or SIGTERM; then stops accepting, lets in-flight
    requests finish (up to 25 s), stops the STOMP broker and the workers (a
    batch or window being written is finished first, up to 10 s) and closes
    the store. With `auth_file` (one `ACCESS_KEY_ID SECRET` pair a line)
    every AWS request must be SigV4-signed by one of its keys; without it any
    credentials work. STOMP logins are checked against `stomp_users` (a file
    of login:passcode lines) when given. Raises InvalidArgument for a bad
    sync mode or key file, OSError if a port cannot be bound (PortInUse,
    naming the listener, when another process has it). `on_ready(url,
    stomp_port)` is called once every listener is bound, before requests
    are served (`tidelog serve` prints its banner there). `log_level`
    (critical, error, warning, info, debug) sets what the server logs to
    stderr, tidelog's own loggers included; `access_log` logs a line per
    request (uvicorn's access log). `reset_api` answers moto's and
    LocalStack's reset calls by dropping every channel (server/reset.py);
    `account_id` (12 digits) is the account of queue URLs and ARNs, the
    library's topic ARNs included (`tidelog.topics.set_account`).
    """
    if log_level not in LOG_LEVELS:
        raise tidelog.InvalidArgument(f"log_level: {log_level!r} is not one of {LOG_LEVELS}")
    logging.getLogger("tidelog").setLevel(log_level.upper())
    if sync not in ("always", "interval", "never"):
        raise tidelog.InvalidArgument(f"sync: {sync!r} is not always, interval or never")
    mode: SyncMode = sync  # type: ignore[assignment]
    auth = _authenticator(auth_file)
    topics.set_account(account_id)
    # The exit stack stops what was started in reverse order, the store last.
    with tidelog.open(data, sync=mode) as store, contextlib.ExitStack() as started:
        from tidelog.server.stomp import BrokerConfig, StompServerThread, load_users

        # Both listeners are bound before the workers start: a port in use
        # stops the server before it does anything.
        sock = bind(host, port)
        started.callback(sock.close)
        bound = sock.getsockname()[1]
        stomp = None
        if stomp_port is not None:
            users = load_users(stomp_users) if stomp_users is not None else None
            config = BrokerConfig(users=users)
            stomp = started.enter_context(StompServerThread(store, host, stomp_port, config))
        if workers:
            started.enter_context(Workers(store))
        url = f"http://{_url_host(host)}:{bound}"
        app = App(store, url, auth=auth, account_id=account_id, reset_api=reset_api)
        started.callback(app.close)
        if on_ready is not None:
            on_ready(url, None if stomp is None else stomp.port)
        _Server(_config(app, host, bound, log_level, access_log), app).run(sockets=[sock])


class ServerThread(Service):
    """An endpoint over an open store, served from a background thread.

    with ServerThread(store) as server:   # binds 127.0.0.1 on a free port
        boto3.client("sqs", endpoint_url=server.url, ...)

    The caller owns the store (so tests may open it with an injected clock).
    With `auth` (server/auth.py) every request must be SigV4-signed by one of
    its keys. With `workers=True` it also runs the background workers
    (delivery streams, SQL applications; server/workers.py) as `serve` does;
    `server.workers` is then the `Workers`.
    `stop()` finishes in-flight requests, stops the workers and joins the threads.
    """

    def __init__(
        self,
        store: tidelog.Store,
        host: str = HOST_DEFAULT,
        port: int = 0,
        *,
        auth: Authenticator | None = None,
        workers: bool = False,
        reset_api: bool = False,
    ) -> None:
        self.workers = Workers(store) if workers else None
        self._socket = bind(host, port)
        self.host = host
        self.port: int = self._socket.getsockname()[1]
        self.url = f"http://{_url_host(host)}:{self.port}"
        self.app = App(store, self.url, auth=auth, reset_api=reset_api)
        self._server = _Server(_config(self.app, host, self.port), self.app)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            daemon=True,
            name=f"tidelog-server-{self.port}",
        )

    def start(self) -> Self:
        """Start serving; returns once the endpoint accepts connections."""
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("tidelog server thread stopped before it started")
            self._thread.join(0.01)
        if self.workers is not None:
            self.workers.start()
        return self

    def stop(self) -> None:
        """Stop accepting, finish in-flight requests, stop the workers, join the threads."""
        self.app.end_streams()
        self._server.should_exit = True
        self._thread.join(SHUTDOWN_SECONDS + 5)
        self.app.close()
        self._socket.close()
        if self.workers is not None:
            self.workers.stop()
