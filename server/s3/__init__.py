"""An S3 subset on the endpoint's own port (REST-XML), over `store.objects`.

Served: ListBuckets, CreateBucket, HeadBucket, DeleteBucket,
GetBucketLocation, GetBucketVersioning (never enabled), ListObjects (v1 and
V2, with prefix, delimiter, pagination and EncodingType=url), PutObject,
GetObject (with a Range and conditional headers), HeadObject, DeleteObject,
DeleteObjects, CopyObject, and multipart uploads (Create, UploadPart,
UploadPartCopy, ListParts, Complete, Abort, ListMultipartUploads); see
docs/server.md, "S3".

Which requests are S3's (`claims`): none with X-Amz-Target (the JSON
services) or an Action= query (the query services); every one whose SigV4
credential names the service "s3"; and, unsigned, every GET, HEAD, PUT and
DELETE (the other services only POST) and a POST with S3's ?uploads,
?uploadId or ?delete. The bucket comes from the path (path style,
`/bucket/key`) or from the host (virtual-host style): `bucket.localhost`,
`bucket.s3.<anything>` or `bucket.s3-<region>.<anything>`; an IP address or
a bare host name is path style.

The blocking work (files, LMDB) runs in the endpoint's thread pool; the
request body is pulled from the connection as the handler reads it, and
object bodies are streamed out in 1 MiB chunks, so neither is held whole in
memory.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping
from concurrent.futures import Executor
from typing import Any
from urllib.parse import parse_qsl

import tidelog
from tidelog.server.auth import Authenticator
from tidelog.server.errors import AwsError

from .body import Request
from .chunked import STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, ChunkSigner, signing_key
from .handlers import dispatch
from .wire import Response, S3Error, error_response, from_library, new_request_id

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("tidelog.server.s3")

_CREDENTIAL_RE = re.compile(r"Credential=([^/,\s]+)/(\d{8})/([^/,\s]*)/([^/,\s]+)/aws4_request")
_SIGNATURE_RE = re.compile(r"Signature=([0-9a-f]{64})")
_S3_POST_QUERIES = frozenset({"uploads", "uploadId", "delete"})
# Paths the endpoint serves itself on GET when no S3 signature says otherwise.
_RESERVED_PATHS = frozenset({"/health", "/metrics"})
_BUCKET_HOST_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_AUTH_CODES = {
    "MissingAuthenticationToken": "AccessDenied",
    "InvalidClientTokenId": "InvalidAccessKeyId",
    "IncompleteSignature": "AuthorizationHeaderMalformed",
    "SignatureDoesNotMatch": "SignatureDoesNotMatch",
}
_END = object()


def _service(authorization: bytes | None) -> str | None:
    if not authorization:
        return None
    match = _CREDENTIAL_RE.search(authorization.decode("latin-1"))
    return match.group(4) if match else None


def claims(scope: Scope, headers: Mapping[bytes, bytes]) -> bool:
    """Whether a request is S3's (see the module docstring)."""
    if b"x-amz-target" in headers:
        return False
    query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), True))
    if "Action" in query:
        return False
    service = _service(headers.get(b"authorization"))
    if service is not None:
        return service == "s3"
    method = scope["method"]
    if method == "POST":
        return bool(_S3_POST_QUERIES & query.keys())
    if method in ("GET", "HEAD") and scope["path"] in _RESERVED_PATHS:
        return False
    return method in ("GET", "HEAD", "PUT", "DELETE")


def bucket_from_host(host: str) -> str | None:
    """The bucket a virtual-host style Host names, or None (path style)."""
    name = host.strip().lower()
    if name.startswith("["):  # an IPv6 literal
        return None
    name = name.rsplit(":", 1)[0] if ":" in name else name
    candidate = None
    if name.endswith(".localhost"):
        candidate = name[: -len(".localhost")]
        candidate = candidate[: -len(".s3")] if candidate.endswith(".s3") else candidate
    else:
        match = re.match(r"^(.+?)\.s3([.-][^.]+)?\.", name + ".")
        if match and "." in name:
            candidate = match.group(1)
    if candidate and _BUCKET_HOST_RE.fullmatch(candidate):
        return candidate
    return None


def target(host: str, path: str) -> tuple[str | None, str | None]:
    """(bucket, key) from the Host header and the decoded path."""
    bucket = bucket_from_host(host)
    rest = path[1:] if path.startswith("/") else path
    if bucket is None:
        name, _, key = rest.partition("/")
        return (name or None), (key or None)
    return bucket, (rest or None)


def _has_body(headers: Mapping[bytes, bytes]) -> bool:
    length = headers.get(b"content-length", b"0")
    return b"transfer-encoding" in headers or (length.isdigit() and int(length) > 0)


class S3:
    """The ASGI handler of S3 requests, sharing the endpoint's store, pool and keys."""

    def __init__(
        self, store: tidelog.Store, executor: Executor, auth: Authenticator | None = None
    ) -> None:
        self.store = store
        self.executor = executor
        self.auth = auth

    async def __call__(
        self, scope: Scope, headers: Mapping[bytes, bytes], receive: Receive, send: Send
    ) -> None:
        loop = asyncio.get_running_loop()

        body_done = [False]

        async def next_message() -> dict[str, Any]:
            message = dict(await receive())
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done[0] = True
            return message

        def receive_blocking() -> dict[str, Any]:
            return asyncio.run_coroutine_threadsafe(next_message(), loop).result()

        request_id = new_request_id()
        response = await loop.run_in_executor(
            self.executor, self.respond, scope, headers, receive_blocking, request_id
        )
        out = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
        out += [(b"x-amz-request-id", request_id.encode()), (b"x-amz-id-2", request_id.encode())]
        if not body_done[0] and _has_body(headers):
            # Replied before reading the body (an error): a client that sent
            # "Expect: 100-continue" will not send it now, so the connection
            # cannot carry another request. Close it, as S3 does.
            out.append((b"connection", b"close"))
        body = response.body
        if isinstance(body, bytes | bytearray):
            length = response.length if response.length is not None else len(body)
            out.append((b"content-length", str(length).encode()))
            await send({"type": "http.response.start", "status": response.status, "headers": out})
            await send({"type": "http.response.body", "body": bytes(body)})
            return
        out.append((b"content-length", str(response.length or 0).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": out})
        chunks: Iterator[bytes] = iter(body)
        try:
            while True:
                chunk = await loop.run_in_executor(self.executor, next, chunks, _END)
                if chunk is _END:
                    break
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except tidelog.Corruption:
            # The headers are out: all that is left is to cut the connection short, so the
            # client sees a truncated body (and retries), never damaged bytes as good.
            log.exception("S3 GET %s: stored object is damaged", scope["path"])
            raise
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        await send({"type": "http.response.body", "body": b""})

    def respond(
        self,
        scope: Scope,
        raw_headers: Mapping[bytes, bytes],
        receive: Callable[[], dict[str, Any]],
        request_id: str,
    ) -> Response:
        """Run one request in the pool: parse, authenticate, dispatch, map errors."""
        head = scope["method"] == "HEAD"
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw_headers.items()}
        bucket: str | None = None
        key: str | None = None
        try:
            bucket, key = target(headers.get("host", ""), scope["path"])
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), True))
            signer = self._authenticate(scope, headers)
            request = Request(scope["method"], bucket, key, query, headers, receive, signer)
            return dispatch(self.store.objects, request)
        except S3Error as error:
            return error_response(self._located(error, bucket, key), request_id, head)
        except tidelog.Error as exc:
            return error_response(self._located(from_library(exc), bucket, key), request_id, head)
        except OSError as exc:
            log.exception("S3 %s %s failed", scope["method"], scope["path"])
            failure = S3Error("InternalError", f"{exc.strerror or exc}")
            return error_response(failure, request_id, head)
        except Exception as exc:  # a bug here must answer 500, not drop the connection
            log.exception("S3 %s %s failed", scope["method"], scope["path"])
            return error_response(S3Error("InternalError", repr(exc)), request_id, head)

    @staticmethod
    def _located(error: S3Error, bucket: str | None, key: str | None) -> S3Error:
        if error.code == "NoSuchKey" and key is not None:
            error.fields.setdefault("Key", key)
        if error.code in ("NoSuchBucket", "BucketNotEmpty", "BucketAlreadyOwnedByYou") and bucket:
            error.fields.setdefault("BucketName", bucket)
        return error

    def _authenticate(self, scope: Scope, headers: Mapping[str, str]) -> ChunkSigner | None:
        """Check the request's SigV4 signature (with --auth); the chunk signer, if streaming."""
        if self.auth is None:
            return None
        raw_path = scope.get("raw_path") or scope["path"].encode()
        try:
            self.auth.check(
                scope["method"],
                raw_path.decode("latin-1"),
                scope.get("query_string", b"").decode("latin-1"),
                headers,
                b"",  # S3 signs x-amz-content-sha256 instead of the body (body.py checks it)
                json_protocol=False,
            )
        except AwsError as error:
            raise S3Error(_AUTH_CODES.get(error.code, "AccessDenied"), error.message) from None
        if headers.get("x-amz-content-sha256") not in (STREAMING_SIGNED, STREAMING_SIGNED_TRAILER):
            return None
        authorization = headers.get("authorization", "")
        credential = _CREDENTIAL_RE.search(authorization)
        signature = _SIGNATURE_RE.search(authorization)
        if credential is None or signature is None:
            raise S3Error("AuthorizationHeaderMalformed", "no credential or signature")
        access_key, date, region, service = credential.groups()
        secret = self.auth.keys[access_key]  # check() found the key
        return ChunkSigner(
            signing_key(secret, date, region, service),
            headers.get("x-amz-date", ""),
            f"{date}/{region}/{service}/aws4_request",
            signature.group(1),
        )
