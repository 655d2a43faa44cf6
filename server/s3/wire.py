"""S3's wire format: errors and their HTTP statuses, XML documents, dates.

S3 speaks REST-XML: the operation is in the method, path and query; replies
are XML in the 2006-03-01 namespace; an error is
`<Error><Code/><Message/><RequestId/>...</Error>` with the status S3 gives
that code (and no body for HEAD).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate
from urllib.parse import quote
from xml.sax.saxutils import escape

import tidelog

NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"
OWNER_ID = "75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a"
OWNER_NAME = "tidelog"

# The status S3 answers each error code with (what botocore and the AWS CLI expect).
STATUS = {
    "AccessDenied": 403,
    "AuthorizationHeaderMalformed": 400,
    "BadDigest": 400,
    "BucketAlreadyExists": 409,
    "BucketAlreadyOwnedByYou": 409,
    "BucketNotEmpty": 409,
    "EntityTooLarge": 400,
    "EntityTooSmall": 400,
    "IncompleteBody": 400,
    "InternalError": 500,
    "InvalidAccessKeyId": 403,
    "InvalidArgument": 400,
    "InvalidBucketName": 400,
    "InvalidDigest": 400,
    "InvalidPart": 400,
    "InvalidPartOrder": 400,
    "InvalidRange": 416,
    "InvalidRequest": 400,
    "KeyTooLongError": 400,
    "MalformedXML": 400,
    "MethodNotAllowed": 405,
    "MissingContentLength": 411,
    "NoSuchBucket": 404,
    "NoSuchKey": 404,
    "NoSuchUpload": 404,
    "NotImplemented": 501,
    "PreconditionFailed": 412,
    "ServiceUnavailable": 503,
    "SignatureDoesNotMatch": 403,
    "XAmzContentSHA256Mismatch": 400,
}


class S3Error(Exception):
    """An S3 error reply: its code, message and the extra fields S3 puts in <Error>."""

    def __init__(self, code: str, message: str, **fields: object) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = STATUS.get(code, 400)
        self.fields = {k: str(v) for k, v in fields.items() if v is not None}


def from_library(exc: tidelog.Error) -> S3Error:
    """A library error as S3 reports it."""
    code = getattr(exc, "s3_code", None)
    if code is not None:
        return S3Error(code, str(exc))
    if isinstance(exc, tidelog.ReadOnly):
        return S3Error("AccessDenied", str(exc))
    if isinstance(exc, tidelog.NotFound):
        return S3Error("NoSuchKey", str(exc))
    if isinstance(exc, tidelog.InvalidArgument):
        return S3Error("InvalidArgument", str(exc))
    if isinstance(exc, tidelog.Corruption):
        return S3Error("InternalError", f"stored data is damaged: {exc}")
    return S3Error("ServiceUnavailable", str(exc))


@dataclass
class Response:
    """A reply: status, headers and a body (bytes, or chunks streamed as they come)."""

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | Iterable[bytes] = b""
    length: int | None = None  # Content-Length of a streamed body


def xml_response(document: str, status: int = 200) -> Response:
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n' + document).encode()
    return Response(status, [("content-type", "application/xml")], body)


def error_response(error: S3Error, request_id: str, head: bool = False) -> Response:
    extra = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in error.fields.items())
    document = (
        f"<Error><Code>{escape(error.code)}</Code><Message>{escape(error.message)}</Message>"
        f"{extra}<RequestId>{request_id}</RequestId><HostId>{request_id}</HostId></Error>"
    )
    response = xml_response(document, error.status)
    if head:  # HEAD replies carry no body; the status says it all
        response.body = b""
    return response


def element(name: str, value: object) -> str:
    """<name>value</name>, escaped; booleans as S3 writes them."""
    if isinstance(value, bool):
        value = "true" if value else "false"
    return f"<{name}>{escape(str(value))}</{name}>"


def elements(items: Iterable[tuple[str, object | None]]) -> str:
    return "".join(element(name, value) for name, value in items if value is not None)


def iso_time(ms: int) -> str:
    """S3's XML timestamp: 2024-05-01T12:00:00.000Z."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{ms % 1000:03d}Z"
    )


def http_time(ms: int) -> str:
    """An HTTP date (Last-Modified): Wed, 01 May 2024 12:00:00 GMT."""
    return formatdate(ms // 1000, usegmt=True)


def url_encoded(value: str, encode: bool) -> str:
    """A key or prefix in a listing: URL-encoded when the client asked (EncodingType=url)."""
    return quote(value, safe="/") if encode else value


def new_request_id() -> str:
    return uuid.uuid4().hex[:16].upper()


def owner_xml() -> str:
    return f"<Owner><ID>{OWNER_ID}</ID><DisplayName>{OWNER_NAME}</DisplayName></Owner>"


def chunks(body: bytes | Iterable[bytes]) -> Iterator[bytes]:
    if isinstance(body, bytes):
        yield body
    else:
        yield from body
