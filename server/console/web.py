"""The console's ASGI application: pages, JSON actions, events, /metrics, /health.

Routes (all on the endpoint's own host and port):

| path | method | what |
| --- | --- | --- |
| /console/ | GET | the page (static/index.html); /console redirects here |
| /console/static/... | GET | the page's scripts, styles and the vendored uPlot (package data) |
| /console/api/session | GET | whether a login is needed, who is logged in, the CSRF token |
| /console/api/login, /console/api/logout | POST | start or end a session (with `--auth`) |
| /console/api/events | GET | server-sent events: live samples for the charts (live.py) |
| /console/api/<read> | GET | api.READS: overview, queue, queue/messages, ... |
| /console/api/<action> | POST | api.WRITES: send, purge, delete, redrive, create, ... |
| /metrics | GET | Prometheus' text format (metrics.py) |
| /health | GET, HEAD | the store's state as JSON; 200 while it serves, else 503 |

Safety (docs/console.md, "Safety"):

- Every POST must carry `X-CSRF-Token` (from /console/api/session, which
  only a same-origin page can read) and a JSON body; an `Origin` header, if
  sent, must name this host. A cross-site page can neither read the token
  nor send the header without a CORS preflight, which is never granted.
- When the endpoint is bound to a loopback address, requests for the
  console must name a loopback host (`Host: 127.0.0.1:4566`, `localhost`,
  `[::1]`): a DNS-rebinding page that reaches 127.0.0.1 under its own name
  is refused.
- With `--auth` the console asks for an access key and its secret (the
  same key file the AWS signatures are checked against); a good pair
  starts a session (an HttpOnly, SameSite=Strict cookie), and every API
  call, event stream and /metrics scrape needs one (/metrics also takes
  HTTP Basic auth with the key and secret, for Prometheus). /health is open.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import tidelog
from tidelog.server.auth import Authenticator
from tidelog.server.console import api
from tidelog.server.console.live import Sampler
from tidelog.server.console.metrics import Metrics, health
from tidelog.server.http_body import read_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("tidelog.server.console")

PREFIX = "/console"
CONSOLE_THREADS = 4  # its own pool: a slow SQL query never holds an AWS request's thread
REQUEST_BYTES_MAX = 4 * 1024 * 1024  # a 1 MiB message in base64, with room for its JSON
SESSION_IDLE_SECONDS = 12 * 3600
SESSIONS_MAX = 10_000
LOGIN_FAILURE_DELAY_SECONDS = 0.5  # slows guessing; the event loop is not held
COOKIE = "tidelog_console"
WINDOW_SECONDS_MAX = 3600

_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}
_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        b"img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
        b"form-action 'none'",
    ),
]


def handles(scope: Scope) -> bool:
    """Whether a request belongs to the console (the rest is the AWS endpoint's):
    its paths, unless the request is SigV4-signed. boto3 signs every request,
    so an S3 bucket that happens to be named console, metrics or health still
    reaches the S3 API; the console's own requests are never signed."""
    path: str = scope["path"]
    if not (path in ("/metrics", "/health", PREFIX) or path.startswith(PREFIX + "/")):
        return False
    for name, value in scope["headers"]:
        if name.lower() == b"authorization" and value.startswith(b"AWS4-"):
            return False
    return "X-Amz-Signature=" not in scope.get("query_string", b"").decode("latin-1")


def _is_loopback(host: str | None) -> bool:
    """localhost, or an IP address literal in 127.0.0.0/8 or ::1 (not a name that
    merely starts with "127.")."""
    if not host:
        return False
    host = host.lower().rstrip(".")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Reply:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


def _json(
    status: int, payload: Mapping[str, Any], extra: Sequence[tuple[bytes, bytes]] = ()
) -> _Reply:
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"cache-control", b"no-store"),
        *_SECURITY_HEADERS,
        *extra,
    ]
    return _Reply(status, headers, body)


def _error(status: int, code: str, message: str) -> _Reply:
    return _json(status, {"error": code, "message": message})


def _library_error(exc: tidelog.Error) -> _Reply:
    if isinstance(exc, tidelog.NotFound):
        return _error(404, "NotFound", str(exc))
    if isinstance(exc, tidelog.AlreadyExists):
        return _error(409, "AlreadyExists", str(exc))
    if isinstance(exc, tidelog.InvalidArgument):  # SqlError and BadRequest too
        return _error(400, type(exc).__name__, str(exc))
    if isinstance(exc, tidelog.ReadOnly):
        return _error(409, "ReadOnly", str(exc))
    if isinstance(exc, tidelog.StoreFailed):
        return _error(503, "StoreFailed", str(exc))
    return _error(500, type(exc).__name__, str(exc))


class _Sessions:
    """Logged-in sessions (with --auth): token -> (access key, last seen)."""

    def __init__(self) -> None:
        self._sessions: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def start(self, access_key: str) -> str:
        token = secrets.token_urlsafe(32)
        self._sessions[token] = (access_key, time.monotonic())
        while len(self._sessions) > SESSIONS_MAX:
            self._sessions.popitem(last=False)
        return token

    def get(self, token: str | None) -> str | None:
        """The session's access key (and it is kept alive), or None."""
        if not token:
            return None
        found = self._sessions.get(token)
        if found is None:
            return None
        access_key, seen = found
        now = time.monotonic()
        if now - seen > SESSION_IDLE_SECONDS:
            del self._sessions[token]
            return None
        self._sessions[token] = (access_key, now)
        self._sessions.move_to_end(token)
        return access_key

    def end(self, token: str | None) -> None:
        if token:
            self._sessions.pop(token, None)


class Console:
    """The console and the monitoring endpoints over an open store (an ASGI 3 app).

    `base_url` is the endpoint's own URL: its host decides whether requests
    must name a loopback host. `auth` turns the login on. Blocking engine
    calls run in the console's own small thread pool. `close()` stops the
    live sampler, the commit observer and the pool; the store is the caller's.
    """

    def __init__(
        self, store: tidelog.Store, *, base_url: str, auth: Authenticator | None = None
    ) -> None:
        self.store = store
        self.auth = auth
        self.loopback = _is_loopback(urlsplit(base_url).hostname)
        self.executor = ThreadPoolExecutor(CONSOLE_THREADS, thread_name_prefix="tidelog-console")
        self.sampler = Sampler(store, self.executor)
        self.metrics = Metrics(store)
        self.sessions = _Sessions()
        self.started = time.time()
        self._secret = secrets.token_bytes(32)
        self._assets: dict[str, bytes] = {}

    def close(self) -> None:
        self.sampler.close()
        self.metrics.close()
        self.executor.shutdown(wait=True, cancel_futures=True)

    # -- ASGI -------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = {k.lower(): v for k, v in scope["headers"]}
        path: str = scope["path"]
        method: str = scope["method"]
        if path == "/console/api/events" and method == "GET":
            refusal = self._refusal(path, method, headers)
            if refusal is None:
                await self._events(scope, headers, receive, send)
                return
            reply = refusal
        else:
            reply = await self._handle(scope, path, method, headers, receive)
        await send(
            {
                "type": "http.response.start",
                "status": reply.status,
                "headers": [*reply.headers, (b"content-length", str(len(reply.body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else reply.body})

    async def _handle(
        self,
        scope: Scope,
        path: str,
        method: str,
        headers: Mapping[bytes, bytes],
        receive: Receive,
    ) -> _Reply:
        loop = asyncio.get_running_loop()
        if path == "/health":
            if method not in ("GET", "HEAD"):
                return _error(405, "MethodNotAllowed", "use GET")
            status, document = await loop.run_in_executor(
                self.executor, health, self.store, self.started
            )
            return _json(status, document)
        if path == "/metrics":
            if method not in ("GET", "HEAD"):
                return _error(405, "MethodNotAllowed", "use GET")
            if self.auth is not None and not self._metrics_allowed(headers):
                return _json(
                    401,
                    {"error": "AuthRequired", "message": "log in to the console or use Basic auth"},
                    [(b"www-authenticate", b'Basic realm="tidelog"')],
                )
            body = await loop.run_in_executor(self.executor, self.metrics.render)
            return _Reply(200, [(b"content-type", self.metrics.content_type.encode())], body)
        refusal = self._refusal(path, method, headers)
        if refusal is not None:
            return refusal
        if path == PREFIX:
            return _Reply(308, [(b"location", b"/console/")], b"")
        if path == PREFIX + "/":
            path = PREFIX + "/static/index.html"
        if path.startswith(PREFIX + "/static/"):
            if method not in ("GET", "HEAD"):
                return _error(405, "MethodNotAllowed", "use GET")
            return self._asset(path[len(PREFIX + "/static/") :], headers)
        if not path.startswith(PREFIX + "/api/"):
            return _error(404, "NotFound", f"no console page {path!r}")
        name = path[len(PREFIX + "/api/") :]
        if method == "GET":
            return await self._read(name, scope, headers)
        if method == "POST":
            payload = await self._body(headers, receive)
            if payload is None:
                return _error(413, "RequestEntityTooLarge", f"over {REQUEST_BYTES_MAX} bytes")
            return await self._write(name, headers, payload)
        return _error(405, "MethodNotAllowed", "use GET or POST")

    # -- safety -------------------------------------------------------------------------

    def _refusal(self, path: str, method: str, headers: Mapping[bytes, bytes]) -> _Reply | None:
        """Why a console request is refused before it is looked at, or None."""
        host = headers.get(b"host", b"").decode("latin-1")
        if self.loopback and not _is_loopback(urlsplit("//" + host).hostname):
            return _error(
                421,
                "MisdirectedRequest",
                f"the console answers only to a loopback host name, not {host!r}",
            )
        if method == "POST":
            origin = headers.get(b"origin")
            if origin is not None and urlsplit(origin.decode("latin-1")).netloc != host:
                return _error(403, "CrossOrigin", "the console takes no requests from other sites")
        return None

    def _token(self, headers: Mapping[bytes, bytes]) -> str | None:
        raw = headers.get(b"cookie", b"").decode("latin-1")
        for part in raw.split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE:
                return value
        return None

    def _user(self, headers: Mapping[bytes, bytes]) -> str | None:
        """Who the request acts as: the session's access key, "" without --auth,
        None when --auth is on and there is no session."""
        if self.auth is None:
            return ""
        return self.sessions.get(self._token(headers))

    def _csrf(self, headers: Mapping[bytes, bytes]) -> str:
        """The CSRF token of the request's session (or of no session)."""
        session = self._token(headers) if self.auth is not None else None
        if session is not None and self.sessions.get(session) is None:
            session = None
        material = (session or "anonymous").encode()
        return hmac.new(self._secret, material, hashlib.sha256).hexdigest()

    def _check_key(self, access_key: str, secret: str) -> bool:
        if self.auth is None:
            return False
        expected = self.auth.keys.get(access_key)
        # Compare even for an unknown key, so timing does not tell keys apart.
        return hmac.compare_digest((expected or "\0" * 40).encode(), secret.encode()) and (
            expected is not None
        )

    def _metrics_allowed(self, headers: Mapping[bytes, bytes]) -> bool:
        if self._user(headers):
            return True
        authorization = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            access_key, _, secret = base64.b64decode(encoded).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return self._check_key(access_key, secret)

    # -- pages --------------------------------------------------------------------------

    def _asset(self, name: str, request: Mapping[bytes, bytes]) -> _Reply:
        """A static file, with an ETag: a page loaded again revalidates (no-cache)
        and gets 304 without the bytes while the package is unchanged."""
        data = self._assets.get(name)
        if data is None:
            parts = name.split("/")
            if not name or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
                return _error(404, "NotFound", f"no asset {name!r}")
            node = resources.files("tidelog.server.console").joinpath("static", *parts)
            if not node.is_file():
                return _error(404, "NotFound", f"no asset {name!r}")
            data = self._assets[name] = node.read_bytes()
        suffix = "." + name.rpartition(".")[2] if "." in name else ""
        content_type = _CONTENT_TYPES.get(suffix, "text/plain; charset=utf-8")
        etag = b'"' + hashlib.sha256(data).hexdigest()[:32].encode() + b'"'
        headers = [
            (b"content-type", content_type.encode()),
            (b"cache-control", b"no-cache"),
            (b"etag", etag),
            *_SECURITY_HEADERS,
        ]
        if request.get(b"if-none-match") == etag:
            return _Reply(304, headers, b"")
        return _Reply(200, headers, data)

    async def _body(self, headers: Mapping[bytes, bytes], receive: Receive) -> bytes | None:
        return await read_body(receive, REQUEST_BYTES_MAX, headers)

    # -- the API ------------------------------------------------------------------------

    def _session_document(self, headers: Mapping[bytes, bytes]) -> dict[str, Any]:
        user = self._user(headers)
        return {
            "auth_required": self.auth is not None,
            "logged_in": user is not None,
            "access_key": user or None,
            "csrf": self._csrf(headers),
            "version": tidelog.__version__,
            "store": self.store.path,
        }

    async def _read(self, name: str, scope: Scope, headers: Mapping[bytes, bytes]) -> _Reply:
        if name == "session":
            return _json(200, self._session_document(headers))
        action = api.READS.get(name)
        if action is None:
            return _error(404, "NotFound", f"no console read {name!r}")
        if self._user(headers) is None:
            return _error(401, "AuthRequired", "log in with an access key and its secret")
        query = scope.get("query_string", b"").decode("latin-1")
        params = dict(parse_qsl(query, keep_blank_values=True))
        return await self._call(action, params)

    async def _write(self, name: str, headers: Mapping[bytes, bytes], body: bytes) -> _Reply:
        if not headers.get(b"content-type", b"").startswith(b"application/json"):
            return _error(415, "UnsupportedMediaType", "send application/json")
        token = headers.get(b"x-csrf-token", b"").decode("latin-1")
        if not hmac.compare_digest(token, self._csrf(headers)):
            return _error(403, "BadCsrfToken", "missing or stale CSRF token (reload the page)")
        try:
            params = json.loads(body) if body else {}
        except ValueError:
            return _error(400, "BadRequest", "the body is not JSON")
        if not isinstance(params, dict):
            return _error(400, "BadRequest", "the body must be a JSON object")
        if name == "login":
            return await self._login(params)
        if name == "logout":
            self.sessions.end(self._token(headers))
            return _json(200, {}, [(b"set-cookie", _cookie("", 0))])
        action = api.WRITES.get(name)
        if action is None:
            return _error(404, "NotFound", f"no console action {name!r}")
        user = self._user(headers)
        if user is None:
            return _error(401, "AuthRequired", "log in with an access key and its secret")
        if user:
            log.info("console: %s by %s", name, user)
        return await self._call(action, params)

    async def _login(self, params: Mapping[str, Any]) -> _Reply:
        if self.auth is None:
            return _error(400, "BadRequest", "this server runs without --auth: no login needed")
        access_key = params.get("access_key")
        secret = params.get("secret")
        if (
            not isinstance(access_key, str)
            or not isinstance(secret, str)
            or not self._check_key(access_key, secret)
        ):
            await asyncio.sleep(LOGIN_FAILURE_DELAY_SECONDS)
            return _error(401, "InvalidCredentials", "unknown access key or wrong secret")
        token = self.sessions.start(access_key)
        csrf = hmac.new(self._secret, token.encode(), hashlib.sha256).hexdigest()
        return _json(
            200,
            {"logged_in": True, "access_key": access_key, "csrf": csrf},
            [(b"set-cookie", _cookie(token, SESSION_IDLE_SECONDS))],
        )

    async def _call(self, action: api.Action, params: Mapping[str, Any]) -> _Reply:
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self.executor, action, self.store, params)
        except tidelog.Error as exc:
            return _library_error(exc)
        except Exception as exc:  # a bug must answer 500, not drop the connection
            log.exception("console action failed")
            return _error(500, "InternalError", repr(exc))
        return _json(200, result)

    # -- live events --------------------------------------------------------------------

    async def _events(
        self, scope: Scope, headers: Mapping[bytes, bytes], receive: Receive, send: Send
    ) -> None:
        if self._user(headers) is None:
            reply = _error(401, "AuthRequired", "log in with an access key and its secret")
            await send({"type": "http.response.start", "status": 401, "headers": reply.headers})
            await send({"type": "http.response.body", "body": reply.body})
            return
        params = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        try:
            window = min(api.integer(params, "window", 300, low=1), WINDOW_SECONDS_MAX)
            last = headers.get(b"last-event-id", b"").decode("latin-1")
            last_id = int(last) if last.isascii() and last.isdigit() else None
        except tidelog.InvalidArgument as exc:
            reply = _library_error(exc)
            await send({"type": "http.response.start", "status": 400, "headers": reply.headers})
            await send({"type": "http.response.body", "body": reply.body})
            return
        channel = params.get("channel") or None
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream"),
                    (b"cache-control", b"no-store"),
                    *_SECURITY_HEADERS,
                ],
            }
        )
        stop = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            stop.set()

        watcher = asyncio.ensure_future(watch())
        try:
            async for text in self.sampler.events(channel, window, last_id, stop):
                await send({"type": "http.response.body", "body": text.encode(), "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            watcher.cancel()


def _cookie(token: str, max_age: float) -> bytes:
    return (
        f"{COOKIE}={token}; Path={PREFIX}; Max-Age={int(max_age)}; HttpOnly; SameSite=Strict"
    ).encode()
