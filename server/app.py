"""The ASGI application: one HTTP endpoint routing to SQS, Kinesis and SNS.

Routing follows the wire protocols botocore speaks:

- `X-Amz-Target: AmazonSQS.<Op>` (AWS JSON 1.0) -> server/sqs.py
- `X-Amz-Target: Kinesis_20131202.<Op>` (AWS JSON 1.1) -> server/kinesis.py
- `X-Amz-Target: Firehose_20150804.<Op>` (AWS JSON 1.1) -> server/firehose.py
- a form body with `Action=<Op>` (query protocol, XML replies) -> server/sns.py
- Lambda's REST shape (signed for "lambda", or an unsigned request on one of its
  paths; see `lambda_api.claims`) -> server/lambda_api.py
- `POST /<operation>` of Kinesis Video Streams (REST-JSON), `/putMedia` and
  HLS under `/hls/v1/` -> server/kinesis_video.py
- S3's REST shape (see `s3.claims`: signed for "s3", or an unsigned GET/PUT/...) -> server/s3/

Request signatures are verified only when the app is given access keys
(server/auth.py); otherwise any credentials work. Handlers call the
blocking engine, so they run in a thread pool; the event loop only parses and
writes. A long-polling ReceiveMessage holds no thread while it waits: it
waits on the event loop (server/long_poll.py) and is made again when its
queue may have a message.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import tidelog
from tidelog import json_limits
from tidelog.server import (
    console,
    firehose,
    kinesis,
    kinesis_video,
    lambda_api,
    model,
    reset,
    s3,
    sns,
    sns_mobile,
    sqs,
    sqs_query,
    sts,
)
from tidelog.server.auth import Authenticator
from tidelog.server.context import ACCOUNT_ID, REGION_DEFAULT, Context, WouldWait, account_of
from tidelog.server.errors import (
    AwsError,
    from_library_kinesis,
    from_library_sns,
    from_library_sqs,
    sqs_error,
    sqs_invalid,
)
from tidelog.server.eventstream import StreamingResult
from tidelog.server.http_body import read_body
from tidelog.server.long_poll import LongPolls
from tidelog.server.sns_state import SQS_STATE_LOG, KeyedState
from tidelog.server.xml_text import xml_escape

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("tidelog.server")

# Kinesis PutRecords carries up to 5 MiB of data, base64-encoded in JSON (4/3
# larger): 8 MiB leaves room for the JSON around it and bounds what one
# request may make the server hold.
REQUEST_BYTES_MAX = 8 * 1024 * 1024
# Requests to async handlers up to this size are parsed on the event loop;
# larger ones go to the executor, so that parsing never stalls the loop long.
ASYNC_BODY_BYTES_MAX = 64 * 1024
# No request shape of these services nests deeper than 8 levels; a body that
# does is refused before any handler sees it (tidelog.json_limits).
REQUEST_DEPTH_MAX = 32
# Threads for the handlers' blocking engine calls. Long polls hold none while
# they wait (server/long_poll.py); streaming responses hold one per poll.
WORKER_THREADS = 256

_SQS_PREFIX = "AmazonSQS."
_KINESIS_PREFIX = "Kinesis_20131202."
_FIREHOSE_PREFIX = "Firehose_20150804."
_SNS_NAMESPACE = "http://sns.amazonaws.com/doc/2010-03-31/"
_CBOR_CONTENT_TYPE = b"application/x-amz-cbor"


class Reply:
    """A finished response: status, headers and body bytes."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class StreamingReply(Reply):
    """A 200 response whose body is sent piece by piece as `result` makes it
    (SubscribeToShard's event stream; see `App._stream`)."""

    __slots__ = ("result",)

    def __init__(self, result: StreamingResult) -> None:
        request_id = uuid.uuid4().hex.encode()
        super().__init__(
            200, [(b"content-type", result.content_type), (b"x-amzn-requestid", request_id)], b""
        )
        self.result = result


# A streaming response asks its source for the next piece at least this often,
# so a client that went away or a server that is stopping is noticed soon.
STREAM_POLL_SECONDS = 0.5


def _json_reply(
    status: int, content_type: bytes, payload: Mapping[str, Any], extra: list[tuple[bytes, bytes]]
) -> Reply:
    body = json.dumps(payload, separators=(",", ":")).encode()
    request_id = uuid.uuid4().hex.encode()
    headers = [(b"content-type", content_type), (b"x-amzn-requestid", request_id), *extra]
    return Reply(status, headers, body)


def _json_error(error: AwsError, content_type: bytes, namespace: str) -> Reply:
    extra: list[tuple[bytes, bytes]] = []
    if error.query_code is not None:
        fault = "Sender" if error.sender_fault else "Receiver"
        extra.append((b"x-amzn-query-error", f"{error.query_code};{fault}".encode()))
    payload = {"__type": f"{namespace}#{error.code}", "message": error.message}
    return _json_reply(error.status, content_type, payload, extra)


def _xml_reply(status: int, text: str) -> Reply:
    request_id = uuid.uuid4().hex
    body = text.replace("{request_id}", request_id).encode()
    return Reply(
        status, [(b"content-type", b"text/xml"), (b"x-amzn-requestid", request_id.encode())], body
    )


def _xml_error(error: AwsError, namespace: str = _SNS_NAMESPACE) -> Reply:
    kind = "Sender" if error.sender_fault else "Receiver"
    return _xml_reply(
        error.status,
        f'<ErrorResponse xmlns="{namespace}"><Error><Type>{kind}</Type>'
        f"<Code>{xml_escape(error.code)}</Code><Message>{xml_escape(error.message)}</Message>"
        "</Error><RequestId>{request_id}</RequestId></ErrorResponse>",
    )


class Service:
    """One JSON-protocol service: its model, handlers and error mapping."""

    def __init__(
        self,
        name: str,
        content_type: bytes,
        namespace: str,
        handlers: Mapping[str, Callable[[Context, dict[str, Any]], Any]],
        from_library: Callable[..., AwsError],
        invalid: Callable[[model.ShapeError], AwsError],
        async_handlers: Mapping[str, Callable[[Context, dict[str, Any]], Any]] | None = None,
    ) -> None:
        self.async_handlers = async_handlers or {}
        self.name = name
        self.content_type = content_type
        self.namespace = namespace
        self.handlers = handlers
        self.from_library = from_library
        self.invalid = invalid

    def call(self, ctx: Context, operation: str, body: bytes) -> Reply:
        try:
            return self._call(ctx, operation, body)
        except WouldWait:
            raise  # a long poll: App waits on the event loop and calls again
        except Exception as exc:  # noqa: BLE001 - mapped to AWS's error shapes
            return self._error(operation, exc)

    async def call_async(self, ctx: Context, operation: str, body: bytes) -> Reply:
        """`call` for an operation in async_handlers, run on the event loop."""
        try:
            request = self._request(operation, body)
            try:
                result = await self.async_handlers[operation](ctx, request)
            except tidelog.Error as exc:
                raise self._library(exc, operation, request, ctx) from None
            return _json_reply(200, self.content_type, result, [])
        except Exception as exc:  # noqa: BLE001 - mapped to AWS's error shapes
            return self._error(operation, exc)

    def _error(self, operation: str, exc: Exception) -> Reply:
        if isinstance(exc, AwsError):
            return _json_error(exc, self.content_type, self.namespace)
        if isinstance(exc, tidelog.Error):
            return _json_error(self.from_library(exc), self.content_type, self.namespace)
        # A bug here must answer 500, not drop the connection.
        log.error("%s %s failed", self.name, operation, exc_info=exc)
        failure = AwsError("InternalFailure", f"internal error: {exc!r}", 500, sender_fault=False)
        return _json_error(failure, self.content_type, self.namespace)

    def _library(
        self, exc: tidelog.Error, operation: str, request: dict[str, Any], ctx: Context
    ) -> AwsError:
        """The library's error as the service says it (server/errors.py's tables)."""
        return self.from_library(exc, operation=operation, request=request, account=ctx.account_id)

    def _call(self, ctx: Context, operation: str, body: bytes) -> Reply:
        handler = self.handlers.get(operation)
        if handler is None:
            raise AwsError("UnknownOperationException", f"Unknown operation {operation!r}")
        request = self._request(operation, body)
        try:
            result = handler(ctx, request)
        except tidelog.Error as exc:
            raise self._library(exc, operation, request, ctx) from None
        if isinstance(result, StreamingResult):
            return StreamingReply(result)
        return _json_reply(200, self.content_type, result, [])

    def _request(self, operation: str, body: bytes) -> dict[str, Any]:
        """The request parsed and checked against the operation's input shape."""
        op_model = model.operation(self.name, operation)
        if op_model is None:
            raise AwsError("UnknownOperationException", f"Unknown operation {operation!r}")
        try:
            request = json_limits.loads(body, REQUEST_DEPTH_MAX) if body else {}
        except json_limits.JsonLimitError as exc:
            raise AwsError("SerializationException", f"Request body: {exc}") from None
        except ValueError:
            raise AwsError("SerializationException", "Request body is not valid JSON") from None
        try:
            library_text = model.LIBRARY_TEXT.get(self.name, frozenset())
            model.check_json(op_model.input_shape, request, library_text=library_text)
        except model.ShapeError as exc:
            raise self.invalid(exc) from None
        return request


def _kinesis_invalid(error: model.ShapeError) -> AwsError:
    code = "SerializationException" if error.kind == "type" else "ValidationException"
    return AwsError(code, str(error))


SQS = Service(
    "sqs",
    b"application/x-amz-json-1.0",
    "com.amazonaws.sqs",
    sqs.HANDLERS,
    from_library_sqs,
    sqs_invalid,
    sqs.ASYNC_HANDLERS,
)
KINESIS = Service(
    "kinesis",
    b"application/x-amz-json-1.1",
    "com.amazonaws.kinesis.v20131202",
    kinesis.HANDLERS,
    from_library_kinesis,
    _kinesis_invalid,
)

FIREHOSE = Service(
    "firehose",
    b"application/x-amz-json-1.1",
    "com.amazonaws.firehose.v20150804",
    firehose.HANDLERS,
    firehose.from_library,
    firehose.invalid,
)


def call_query(ctx: Context, body: bytes, path: str = "/") -> Reply:
    """A query-protocol request (SNS; SQS's legacy API by its Version): form in, XML out."""
    try:
        form = model.parse_form(body)
    except model.FormError as exc:
        if exc.too_many and sqs_query.VERSION.encode() in body:
            failure = sqs_error("InvalidParameterValue", str(exc))
            return _xml_reply(failure.status, sqs_query.error_xml(failure, "{request_id}"))
        code = "InvalidParameter" if exc.too_many else "MalformedQueryString"
        return _xml_error(AwsError(code, str(exc)))
    if sqs_query.is_sqs(form):
        request_id = uuid.uuid4().hex
        status, text = sqs_query.call(ctx, form, path, request_id)
        headers = [(b"content-type", b"text/xml"), (b"x-amzn-requestid", request_id.encode())]
        return Reply(status, headers, text.encode())
    action = form.get("Action", "")
    service, handlers, namespace = (
        ("sts", sts.HANDLERS, sts.NAMESPACE)
        if form.get("Version") == sts.VERSION
        else ("sns", {**sns.HANDLERS, **sns_mobile.HANDLERS}, _SNS_NAMESPACE)
    )
    handler = handlers.get(action)
    op_model = model.operation(service, action)
    if handler is None or op_model is None:
        return _xml_error(
            AwsError("InvalidAction", f"The action {action!r} is not valid"), namespace
        )
    try:
        try:
            request = model.decode_query(op_model.input_shape, form)
        except model.ShapeError as exc:
            code = "MissingParameter" if exc.missing else "InvalidParameter"
            raise AwsError(code, str(exc)) from None
        result = handler(ctx, request)
    except AwsError as error:
        return _xml_error(error, namespace)
    except tidelog.Error as exc:
        return _xml_error(from_library_sns(exc, operation=action, request=form), namespace)
    except Exception as exc:
        log.exception("%s %s failed", service, action)
        failure = AwsError("InternalError", repr(exc), 500, sender_fault=False)
        return _xml_error(failure, namespace)
    output = op_model.output_shape
    wrapper = output.serialization.get("resultWrapper") if output is not None else None
    inner = model.encode_xml(output, result)
    result_xml = f"<{wrapper}>{inner}</{wrapper}>" if wrapper else ""
    return _xml_reply(
        200,
        f'<{action}Response xmlns="{namespace}">{result_xml}'
        "<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata>"
        f"</{action}Response>",
    )


_CREDENTIAL_SERVICE = re.compile(rb"Credential=[^/,\s]+/\d{8}/[^/,\s]*/([^/,\s]+)/aws4_request")


def _signed_service(headers: Mapping[bytes, bytes]) -> str | None:
    """The service a SigV4 Authorization header was signed for, or None."""
    match = _CREDENTIAL_SERVICE.search(headers.get(b"authorization", b""))
    return match.group(1).decode("latin-1") if match else None


_HOST = re.compile(rb"[A-Za-z0-9.-]{1,253}(?::[0-9]{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](?::[0-9]{1,5})?")


def _base_url(headers: Mapping[bytes, bytes], default: str) -> str:
    """http:// and the Host the client connected to (as SQS's queue URLs name the
    endpoint the client used), or `default` without a well-formed Host."""
    host = headers.get(b"host", b"")
    if _HOST.fullmatch(host):
        return f"http://{host.decode()}"
    return default


_CREDENTIAL = re.compile(rb"Credential=([A-Za-z0-9]+)/[0-9]{8}/([a-z0-9-]{1,32})/")


def _signer(headers: Mapping[bytes, bytes], query: bytes) -> tuple[str | None, str]:
    """The access key id a request is signed with (header or presigned query), if
    any, and the region it signed for (us-east-1 when unsigned)."""
    found = _CREDENTIAL.search(headers.get(b"authorization", b"")) or _CREDENTIAL.search(
        query.replace(b"X-Amz-Credential=", b"Credential=").replace(b"%2F", b"/")
    )
    if found is None:
        return None, REGION_DEFAULT
    return found.group(1).decode(), found.group(2).decode()


class App:
    """The ASGI 3 application over an open store.

    `base_url` is what queue URLs start with (http://HOST:PORT). With `auth`,
    every request must carry a SigV4 signature by one of its keys
    (server/auth.py). `account_id` is the account of callers whose access key
    is not 12 digits (server/context.py). With `reset_api`, POST
    /moto-api/reset and /_localstack/state/reset drop every channel
    (server/reset.py). Closing the app shuts its thread pool down; the store
    belongs to the caller.
    """

    def __init__(
        self,
        store: tidelog.Store,
        base_url: str,
        *,
        workers: int = WORKER_THREADS,
        auth: Authenticator | None = None,
        account_id: str = ACCOUNT_ID,
        reset_api: bool = False,
    ):
        self.store = store
        self.base_url = base_url
        self.auth = auth
        self.account_id = account_id
        self.reset_api = reset_api
        self.sessions = sts.Sessions()
        self.sns_state = KeyedState(store)
        self.sqs_state = KeyedState(store, SQS_STATE_LOG)
        if auth is not None:
            auth.sessions = self.sessions
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tidelog-http")
        self.s3 = s3.S3(store, self.executor, auth)
        self.console = console.Console(store, base_url=base_url, auth=auth)  # docs/console.md
        self.video = kinesis_video.KinesisVideo(store, self.executor, base_url, auth)
        self.long_polls = LongPolls(store)
        self._ending_streams = False

    def _reset(self) -> None:
        reset.drop_everything(self.store)
        self.sessions.clear()
        self.sns_state.forget()
        self.sqs_state.forget()

    def end_streams(self) -> None:
        """End every streaming response within STREAM_POLL_SECONDS (the server is
        stopping: a subscription must not hold up the graceful shutdown). Waiting
        long polls answer at once."""
        self._ending_streams = True
        self.video.ending = True
        self.long_polls.release_all()

    def close(self) -> None:
        self.end_streams()
        self.long_polls.close()
        self.console.close()
        self.executor.shutdown(wait=True, cancel_futures=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if console.handles(scope):  # /console..., /metrics, /health
            await self.console(scope, receive, send)
            return
        headers: dict[bytes, bytes] = dict(scope["headers"])
        if kinesis_video.claims(scope):  # docs/video.md
            await self.video(scope, receive, send)
            return
        if lambda_api.claims(scope["method"], scope["path"], _signed_service(headers)):
            await self._lambda(scope, headers, receive, send)
            return
        if s3.claims(scope, headers):  # S3's REST shape: server/s3/
            await self.s3(scope, headers, receive, send)
            return
        reply = await self._handle(scope, headers, receive)
        if isinstance(reply, StreamingReply):
            await self._stream(reply, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": reply.status,
                "headers": [*reply.headers, (b"content-length", str(len(reply.body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": reply.body})

    async def _lambda(
        self, scope: Scope, headers: Mapping[bytes, bytes], receive: Receive, send: Send
    ) -> None:
        """A Lambda request (server/lambda_api.py): REST paths, JSON bodies."""
        body = await self._read_body(headers, receive)
        loop = asyncio.get_running_loop()
        if body is None:
            failure = AwsError("RequestTooLargeException", "Request body is too large", 413)
            status, out, payload = lambda_api.error_response(failure)
        else:
            refusal = None
            if self.auth is not None:
                refusal = await loop.run_in_executor(
                    self.executor, self._refusal, scope, headers, body, True
                )
            if refusal is not None:
                status, out, payload = lambda_api.error_response(refusal)
            else:
                ctx = Context(self.store, self.base_url)
                status, out, payload = await loop.run_in_executor(
                    self.executor,
                    lambda_api.call,
                    ctx,
                    scope["method"],
                    scope["path"],
                    scope.get("query_string", b"").decode("latin-1"),
                    headers,
                    body,
                )
        out = [*out, (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": payload})

    async def _stream(self, reply: StreamingReply, receive: Receive, send: Send) -> None:
        """Send a streaming reply with chunked transfer encoding until its source ends,
        the client disconnects or the server stops. The source's blocking calls run
        in the pool, STREAM_POLL_SECONDS at a time."""
        result = reply.result
        loop = asyncio.get_running_loop()
        gone = asyncio.Event()

        async def watch() -> None:  # the request body is read: what comes next is a disconnect
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.create_task(watch())
        try:
            await send({"type": "http.response.start", "status": 200, "headers": reply.headers})
            while not gone.is_set() and not self._ending_streams:
                chunk = await loop.run_in_executor(
                    self.executor, result.next_chunk, STREAM_POLL_SECONDS
                )
                if chunk is None:
                    break
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()
            await loop.run_in_executor(self.executor, result.close)

    def _refusal(
        self, scope: Scope, headers: Mapping[bytes, bytes], body: bytes, json_protocol: bool
    ) -> AwsError | None:
        """Why the request's signature is refused, or None when it is good."""
        if self.auth is None:
            return None
        try:
            self.auth.check(
                scope["method"],
                scope.get("raw_path", scope["path"].encode()).decode("latin-1"),
                scope.get("query_string", b"").decode("latin-1"),
                {k.decode("latin-1"): v.decode("latin-1") for k, v in headers.items()},
                body,
                json_protocol=json_protocol,
            )
        except AwsError as error:
            return error
        return None

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _read_body(self, headers: Mapping[bytes, bytes], receive: Receive) -> bytes | None:
        return await read_body(receive, REQUEST_BYTES_MAX, headers)

    async def _handle(
        self, scope: Scope, headers: Mapping[bytes, bytes], receive: Receive
    ) -> Reply:
        target = headers.get(b"x-amz-target", b"").decode("latin-1")
        body = await self._read_body(headers, receive)
        loop = asyncio.get_running_loop()
        if self.reset_api and scope["method"] == "POST" and scope["path"] in reset.RESET_PATHS:
            await loop.run_in_executor(self.executor, self._reset)
            return Reply(200, [(b"content-type", b"application/json")], b'{"status": "ok"}')
        if scope["method"] != "POST":
            if scope["method"] in ("GET", "HEAD") and scope["path"] == "/":
                return Reply(200, [(b"content-type", b"text/plain")], b"tidelog\n")
            return _xml_error(AwsError("InvalidAction", "Use POST", 405))
        service = (
            SQS
            if target.startswith(_SQS_PREFIX)
            else KINESIS
            if target.startswith(_KINESIS_PREFIX)
            else FIREHOSE
            if target.startswith(_FIREHOSE_PREFIX)
            else None
        )
        if body is None:
            message = f"Request body is over {REQUEST_BYTES_MAX} bytes"
            if service is None:
                return _xml_error(AwsError("RequestEntityTooLarge", message, 413))
            error = AwsError("RequestEntityTooLarge", message, 413)
            return _json_error(error, service.content_type, service.namespace)
        access_key, region = _signer(headers, scope.get("query_string", b""))
        session = self.sessions.get(access_key) if access_key else None
        ctx = Context(
            self.store,
            _base_url(headers, self.base_url),
            region=region,
            account_id=session.account_id if session else account_of(access_key, self.account_id),
            access_key_id=access_key,
            sessions=self.sessions,
            sns_state=self.sns_state,
            sqs_state=self.sqs_state,
            long_poll=True,
        )
        loop = asyncio.get_running_loop()
        if self.auth is not None:
            # Hashing a large body takes milliseconds: off the event loop.
            refusal = await loop.run_in_executor(
                self.executor, self._refusal, scope, headers, body, service is not None
            )
            if refusal is not None:
                if service is None:
                    return _xml_error(refusal)
                return _json_error(refusal, service.content_type, "com.amazon.coral.service")
        if service is not None:
            if headers.get(b"content-type", b"").startswith(_CBOR_CONTENT_TYPE):
                # Not served (docs/server.md): refused whatever the body, an empty one
                # too, which would otherwise read as an empty JSON request.
                error = AwsError(
                    "SerializationException",
                    "AWS CBOR requests are not served: send AWS JSON 1.1 (AWS_CBOR_DISABLE=true)",
                )
                return _json_error(error, service.content_type, service.namespace)
            operation = target.split(".", 1)[1]
            if operation in service.async_handlers and len(body) <= ASYNC_BODY_BYTES_MAX:
                # Parsed on the loop (small bodies only) and committed with an await.
                return await service.call_async(ctx, operation, body)
            return await self._call(service.call, ctx, operation, body)
        if target:
            error = AwsError("UnknownOperationException", f"Unknown target {target!r}")
            return _json_error(error, b"application/x-amz-json-1.0", "com.amazon.coral.service")
        return await self._call(call_query, ctx, body, scope["path"])

    async def _call(self, call: Callable[..., Reply], ctx: Context, *args: Any) -> Reply:
        """`call(ctx, *args)` in the pool. A long poll that finds nothing (WouldWait)
        waits on the event loop, holding no thread, and is made again when its
        queue may have a message; the last try, once its wait is over, answers."""
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        while True:
            try:
                return await loop.run_in_executor(self.executor, call, ctx, *args)
            except WouldWait as would:
                if deadline is None:
                    deadline = loop.time() + would.seconds
                left = deadline - loop.time()
                if left > 0 and not self._ending_streams:
                    await self.long_polls.wait(would.queue, left)
                if loop.time() >= deadline or self._ending_streams:
                    ctx = dataclasses.replace(ctx, poll_final=True)
