"""The S3 operations, each a blocking call over `store.objects` (engine/objects.py).

`dispatch` picks the operation from the method, whether a bucket and a key
are named, and the query's subresource, as S3's REST API does. Operations
S3 has but tidelog does not (ACLs, policies, versioning, tagging, ...)
answer NotImplemented (501).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterator
from typing import BinaryIO
from urllib.parse import unquote
from xml.etree import ElementTree

import tidelog
from tidelog.objects import (
    LIST_KEYS_MAX,
    PARTS_MAX,
    STORED_HEADERS,
    ObjectInfo,
    ObjectStore,
)

from .body import Request
from .wire import (
    NAMESPACE,
    Response,
    S3Error,
    element,
    elements,
    http_time,
    iso_time,
    owner_xml,
    url_encoded,
    xml_response,
)

Handler = Callable[[ObjectStore, Request], Response]

# Subresources S3 has that tidelog does not serve.
UNSUPPORTED = frozenset(
    {
        "accelerate",
        "acl",
        "analytics",
        "attributes",
        "cors",
        "encryption",
        "intelligent-tiering",
        "inventory",
        "legal-hold",
        "lifecycle",
        "logging",
        "metrics",
        "notification",
        "object-lock",
        "ownershipControls",
        "policy",
        "policyStatus",
        "publicAccessBlock",
        "replication",
        "requestPayment",
        "restore",
        "retention",
        "select",
        "tagging",
        "torrent",
        "versions",
        "website",
    }
)
_RANGE_RE = re.compile(r"bytes=(\d*)-(\d*)")


def _quoted(etag: str) -> str:
    return f'"{etag}"'


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit():
        raise S3Error("InvalidArgument", f"{name} must be an integer", ArgumentName=name)
    return max(low, min(int(raw), high))


def _parse_xml(body: bytes) -> ElementTree.Element:
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        raise S3Error(
            "MalformedXML",
            "The XML you provided was not well-formed or did not validate against our "
            "published schema.",
        ) from None
    for node in root.iter():  # drop namespaces: clients send them or not
        node.tag = node.tag.rpartition("}")[2]
    return root


def _stored_headers(request: Request) -> dict[str, str]:
    return {name: request.headers[name] for name in STORED_HEADERS if name in request.headers}


def _metadata(request: Request) -> dict[str, str]:
    return {
        name[len("x-amz-meta-") :]: value
        for name, value in request.headers.items()
        if name.startswith("x-amz-meta-")
    }


def _object_headers(info: ObjectInfo) -> list[tuple[str, str]]:
    headers = [
        ("etag", _quoted(info.etag)),
        ("last-modified", http_time(info.modified_ms)),
        ("accept-ranges", "bytes"),
        ("content-type", info.headers.get("content-type", "binary/octet-stream")),
    ]
    headers += [(k, v) for k, v in info.headers.items() if k != "content-type"]
    headers += [(f"x-amz-meta-{k}", v) for k, v in info.metadata.items()]
    if info.parts:
        headers.append(("x-amz-mp-parts-count", str(info.parts)))
    return headers


# -- the service and buckets ---------------------------------------------------------------


def list_buckets(objects: ObjectStore, request: Request) -> Response:
    rows = "".join(
        f"<Bucket>{element('Name', b.name)}{element('CreationDate', iso_time(b.created_ms))}"
        f"{element('BucketRegion', b.region)}</Bucket>"
        for b in objects.buckets()
    )
    return xml_response(
        f'<ListAllMyBucketsResult xmlns="{NAMESPACE}">{owner_xml()}'
        f"<Buckets>{rows}</Buckets></ListAllMyBucketsResult>"
    )


def create_bucket(objects: ObjectStore, request: Request) -> Response:
    bucket = request.bucket or ""
    body = request.read_small()
    region = "us-east-1"
    if body.strip():
        root = _parse_xml(body)
        constraint = root.find("LocationConstraint")
        if constraint is not None and constraint.text:
            region = constraint.text.strip()
    objects.create_bucket(bucket, region)
    return Response(200, [("location", f"/{bucket}")])


def head_bucket(objects: ObjectStore, request: Request) -> Response:
    found = objects.bucket(request.bucket or "")
    return Response(200, [("x-amz-bucket-region", found.region)])


def delete_bucket(objects: ObjectStore, request: Request) -> Response:
    objects.delete_bucket(request.bucket or "")
    return Response(204)


def get_bucket_location(objects: ObjectStore, request: Request) -> Response:
    region = objects.bucket(request.bucket or "").region
    value = "" if region == "us-east-1" else region  # S3 answers an empty constraint there
    return xml_response(f'<LocationConstraint xmlns="{NAMESPACE}">{value}</LocationConstraint>')


def get_bucket_versioning(objects: ObjectStore, request: Request) -> Response:
    objects.bucket(request.bucket or "")  # never versioned here: an empty configuration
    return xml_response(f'<VersioningConfiguration xmlns="{NAMESPACE}"/>')


def _contents(info: ObjectInfo, encode: bool, owner: bool) -> str:
    return (
        "<Contents>"
        + element("Key", url_encoded(info.key, encode))
        + element("LastModified", iso_time(info.modified_ms))
        + element("ETag", _quoted(info.etag))
        + element("Size", info.size)
        + element("StorageClass", "STANDARD")
        + (owner_xml() if owner else "")
        + "</Contents>"
    )


def _listing_common(request: Request) -> tuple[str, str, int, bool]:
    encoding = request.query.get("encoding-type", "")
    if encoding not in ("", "url"):
        raise S3Error("InvalidArgument", "Invalid Encoding Method specified in Request")
    max_keys = _int(request, "max-keys", LIST_KEYS_MAX, 0, LIST_KEYS_MAX)
    return (
        request.query.get("prefix", ""),
        request.query.get("delimiter", ""),
        max_keys,
        bool(encoding),
    )


def list_objects_v2(objects: ObjectStore, request: Request) -> Response:
    bucket = request.bucket or ""
    prefix, delimiter, max_keys, encode = _listing_common(request)
    token = request.query.get("continuation-token")
    start_after = request.query.get("start-after", "")
    after = start_after
    if token is not None:
        try:
            padded = token + "=" * (-len(token) % 4)
            after = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            raise S3Error(
                "InvalidArgument",
                "The continuation token provided is incorrect",
                ArgumentName="continuation-token",
            ) from None
    page = objects.list_objects(
        bucket, prefix=prefix, delimiter=delimiter, after=after, max_keys=max_keys
    )
    owner = request.query.get("fetch-owner") == "true"
    parts = [
        f'<ListBucketResult xmlns="{NAMESPACE}">',
        element("Name", bucket),
        element("Prefix", url_encoded(prefix, encode)),
    ]
    if delimiter:
        parts.append(element("Delimiter", url_encoded(delimiter, encode)))
    parts.append(element("MaxKeys", max_keys))
    if encode:
        parts.append(element("EncodingType", "url"))
    parts += [
        element("KeyCount", len(page.objects) + len(page.prefixes)),
        element("IsTruncated", page.truncated),
    ]
    if token is not None:
        parts.append(element("ContinuationToken", token))
    if page.truncated and page.next_marker is not None:
        next_token = base64.urlsafe_b64encode(page.next_marker.encode()).decode().rstrip("=")
        parts.append(element("NextContinuationToken", next_token))
    if start_after:
        parts.append(element("StartAfter", url_encoded(start_after, encode)))
    parts += [_contents(info, encode, owner) for info in page.objects]
    parts += [
        f"<CommonPrefixes>{element('Prefix', url_encoded(p, encode))}</CommonPrefixes>"
        for p in page.prefixes
    ]
    parts.append("</ListBucketResult>")
    return xml_response("".join(parts))


def list_objects(objects: ObjectStore, request: Request) -> Response:
    """ListObjects (version 1): Marker and NextMarker instead of tokens."""
    bucket = request.bucket or ""
    prefix, delimiter, max_keys, encode = _listing_common(request)
    marker = request.query.get("marker", "")
    page = objects.list_objects(
        bucket, prefix=prefix, delimiter=delimiter, after=marker, max_keys=max_keys
    )
    parts = [
        f'<ListBucketResult xmlns="{NAMESPACE}">',
        element("Name", bucket),
        element("Prefix", url_encoded(prefix, encode)),
        element("Marker", url_encoded(marker, encode)),
    ]
    if page.truncated and page.next_marker is not None:
        parts.append(element("NextMarker", url_encoded(page.next_marker, encode)))
    parts.append(element("MaxKeys", max_keys))
    if delimiter:
        parts.append(element("Delimiter", url_encoded(delimiter, encode)))
    if encode:
        parts.append(element("EncodingType", "url"))
    parts.append(element("IsTruncated", page.truncated))
    parts += [_contents(info, encode, True) for info in page.objects]
    parts += [
        f"<CommonPrefixes>{element('Prefix', url_encoded(p, encode))}</CommonPrefixes>"
        for p in page.prefixes
    ]
    parts.append("</ListBucketResult>")
    return xml_response("".join(parts))


def delete_objects(objects: ObjectStore, request: Request) -> Response:
    root = _parse_xml(request.read_small())
    quiet = (root.findtext("Quiet") or "").strip().lower() == "true"
    keys = [node.findtext("Key") or "" for node in root.findall("Object")]
    if not keys:
        raise S3Error("MalformedXML", "DeleteObjects needs at least one Object")
    results = objects.delete_many(request.bucket or "", keys)
    parts = [f'<DeleteResult xmlns="{NAMESPACE}">']
    for key, error in results:
        if error is None:
            if not quiet:
                parts.append(f"<Deleted>{element('Key', key)}</Deleted>")
        else:
            parts.append(
                f"<Error>{elements([('Key', key), ('Code', error), ('Message', error)])}</Error>"
            )
    parts.append("</DeleteResult>")
    return xml_response("".join(parts))


def list_uploads(objects: ObjectStore, request: Request) -> Response:
    bucket = request.bucket or ""
    prefix = request.query.get("prefix", "")
    found = [u for u in objects.uploads(bucket) if u.key.startswith(prefix)][:LIST_KEYS_MAX]
    rows = "".join(
        "<Upload>"
        + elements(
            [
                ("Key", u.key),
                ("UploadId", u.upload_id),
                ("Initiated", iso_time(u.created_ms)),
                ("StorageClass", "STANDARD"),
            ]
        )
        + owner_xml()
        + "</Upload>"
        for u in found
    )
    return xml_response(
        f'<ListMultipartUploadsResult xmlns="{NAMESPACE}">'
        + elements(
            [
                ("Bucket", bucket),
                ("KeyMarker", ""),
                ("UploadIdMarker", ""),
                ("Prefix", prefix),
                ("MaxUploads", LIST_KEYS_MAX),
                ("IsTruncated", False),
            ]
        )
        + rows
        + "</ListMultipartUploadsResult>"
    )


# -- objects -----------------------------------------------------------------------------------


def _check_preconditions(request: Request, info: ObjectInfo | None, reading: bool) -> None:
    """If-Match / If-None-Match / If-(Un)Modified-Since, as S3 applies them."""
    from email.utils import parsedate_to_datetime

    etag = _quoted(info.etag) if info is not None else None
    if_match = request.header("if-match")
    if if_match:
        if info is None:
            raise S3Error("NoSuchKey", "The specified key does not exist.", Key=request.key)
        if if_match.strip() != "*" and etag not in [t.strip() for t in if_match.split(",")]:
            raise S3Error(
                "PreconditionFailed",
                "At least one of the pre-conditions you specified did not hold",
                Condition="If-Match",
            )
    if_none = request.header("if-none-match")
    if if_none and info is not None:
        tags = [t.strip() for t in if_none.split(",")]
        if "*" in tags or etag in tags:
            if reading:
                raise _NotModified(info)
            raise S3Error(
                "PreconditionFailed",
                "At least one of the pre-conditions you specified did not hold",
                Condition="If-None-Match",
            )
    if info is None or not reading:
        return
    seconds = info.modified_ms // 1000
    for name, newer_fails in (("if-unmodified-since", True), ("if-modified-since", False)):
        value = request.header(name)
        if not value:
            continue
        try:
            limit = parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError):
            continue  # S3 ignores a malformed date
        if newer_fails and seconds > limit and not if_match:
            raise S3Error(
                "PreconditionFailed",
                "At least one of the pre-conditions you specified did not hold",
                Condition="If-Unmodified-Since",
            )
        if not newer_fails and seconds <= limit and not if_none:
            raise _NotModified(info)


class _NotModified(Exception):
    def __init__(self, info: ObjectInfo) -> None:
        super().__init__("not modified")
        self.info = info


def _range(value: str, size: int) -> tuple[int, int] | None:
    """The inclusive byte range a Range header asks for; None to send it all.

    A header S3 cannot parse (or several ranges) is ignored, as S3 does; a
    range that starts past the end is InvalidRange (416).
    """
    match = _RANGE_RE.fullmatch(value.strip())
    if match is None or not (match.group(1) or match.group(2)):
        return None
    first, last = match.group(1), match.group(2)
    if first:
        start = int(first)
        end = int(last) if last else max(size - 1, start)
        if end < start:
            return None  # bytes=5-3: not a valid range, ignored
    else:
        suffix = int(last)
        if suffix == 0:
            start, end = size, size - 1  # unsatisfiable
        else:
            start, end = max(0, size - suffix), size - 1
    if start >= size:
        raise S3Error(
            "InvalidRange",
            "The requested range is not satisfiable",
            RangeRequested=value,
            ActualObjectSize=size,
        )
    return start, min(end, size - 1)


def get_object(objects: ObjectStore, request: Request, head: bool = False) -> Response:
    bucket, key = request.bucket or "", request.key or ""
    info, file = objects.open(bucket, key)
    try:
        try:
            _check_preconditions(request, info, reading=True)
        except _NotModified:
            file.close()
            return Response(304, [("etag", _quoted(info.etag))])
        headers = _object_headers(info)
        wanted = _range(request.header("range"), info.size) if request.header("range") else None
        status = 200
        start, stop = 0, info.size
        if wanted is not None:
            status = 206
            start, stop = wanted[0], wanted[1] + 1
            headers.append(("content-range", f"bytes {wanted[0]}-{wanted[1]}/{info.size}"))
        if not wanted and info.checksums and request.header("x-amz-checksum-mode") == "ENABLED":
            headers += [(f"x-amz-checksum-{n}", v) for n, v in info.checksums.items()]
    except BaseException:
        file.close()
        raise
    if head:
        file.close()
        return Response(status, headers, b"", stop - start)
    return Response(status, headers, _stream(objects, info, file, start, stop), stop - start)


def _stream(
    objects: ObjectStore, info: ObjectInfo, file: BinaryIO, start: int, stop: int
) -> Iterator[bytes]:
    with file:
        yield from objects.read(info, file, start, stop)


def head_object(objects: ObjectStore, request: Request) -> Response:
    return get_object(objects, request, head=True)


def put_object(objects: ObjectStore, request: Request) -> Response:
    bucket, key = request.bucket or "", request.key or ""
    objects.bucket(bucket)
    if request.header("if-none-match") or request.header("if-match"):
        try:
            existing: ObjectInfo | None = objects.head(bucket, key)
        except tidelog.NotFound:
            existing = None
        _check_preconditions(request, existing, reading=False)
    with objects.stage() as staged:
        request.read_into(staged)
        info = objects.put(
            bucket,
            key,
            staged,
            headers=_stored_headers(request),
            metadata=_metadata(request),
            checksums=request.checksums,
        )
    headers = [("etag", _quoted(info.etag))]
    headers += [(f"x-amz-checksum-{n}", v) for n, v in info.checksums.items()]
    return Response(200, headers)


def delete_object(objects: ObjectStore, request: Request) -> Response:
    objects.delete(request.bucket or "", request.key or "")
    return Response(204)  # S3 answers 204 whether or not the key existed


def _copy_source(request: Request) -> tuple[str, str]:
    raw = unquote(request.header("x-amz-copy-source"))
    raw = raw.split("?versionId=", 1)[0].lstrip("/")
    bucket, _, key = raw.partition("/")
    if not bucket or not key:
        raise S3Error(
            "InvalidArgument",
            "Copy Source must mention the source bucket and key: sourcebucket/sourcekey",
            ArgumentName="x-amz-copy-source",
        )
    return bucket, key


def copy_object(objects: ObjectStore, request: Request) -> Response:
    source_bucket, source_key = _copy_source(request)
    bucket, key = request.bucket or "", request.key or ""
    directive = request.header("x-amz-metadata-directive", "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise S3Error("InvalidArgument", "Unknown metadata directive.")
    if directive == "COPY" and (source_bucket, source_key) == (bucket, key):
        raise S3Error(
            "InvalidRequest",
            "This copy request is illegal because it is trying to copy an object to itself "
            "without changing the object's metadata, storage class, website redirect location "
            "or encryption attributes.",
        )
    request.drain()
    replace = directive == "REPLACE"
    info = objects.copy(
        source_bucket,
        source_key,
        bucket,
        key,
        headers=_stored_headers(request) if replace else None,
        metadata=_metadata(request) if replace else None,
    )
    return xml_response(
        f'<CopyObjectResult xmlns="{NAMESPACE}">'
        + element("LastModified", iso_time(info.modified_ms))
        + element("ETag", _quoted(info.etag))
        + "</CopyObjectResult>"
    )


# -- multipart uploads -----------------------------------------------------------------------


def create_upload(objects: ObjectStore, request: Request) -> Response:
    bucket, key = request.bucket or "", request.key or ""
    request.drain()
    upload = objects.create_upload(
        bucket, key, headers=_stored_headers(request), metadata=_metadata(request)
    )
    return xml_response(
        f'<InitiateMultipartUploadResult xmlns="{NAMESPACE}">'
        + elements([("Bucket", bucket), ("Key", key), ("UploadId", upload.upload_id)])
        + "</InitiateMultipartUploadResult>"
    )


def _part_number(request: Request) -> int:
    raw = request.query.get("partNumber", "")
    if not raw.isdigit() or not 1 <= int(raw) <= PARTS_MAX:
        raise S3Error(
            "InvalidArgument",
            f"Part number must be an integer between 1 and {PARTS_MAX}, inclusive",
            ArgumentName="partNumber",
            ArgumentValue=raw,
        )
    return int(raw)


def _upload_for(objects: ObjectStore, request: Request) -> str:
    upload_id = request.query.get("uploadId", "")
    upload = objects.upload(upload_id)
    if (upload.bucket, upload.key) != (request.bucket, request.key):
        raise S3Error("NoSuchUpload", "The specified upload does not exist.", UploadId=upload_id)
    return upload_id


def upload_part(objects: ObjectStore, request: Request) -> Response:
    number = _part_number(request)
    upload_id = _upload_for(objects, request)
    with objects.stage() as staged:
        request.read_into(staged)
        part = objects.put_part(upload_id, number, staged)
    headers = [("etag", _quoted(part.etag))]
    headers += [(f"x-amz-checksum-{n}", v) for n, v in request.checksums.items()]
    return Response(200, headers)


def upload_part_copy(objects: ObjectStore, request: Request) -> Response:
    number = _part_number(request)
    upload_id = _upload_for(objects, request)
    source_bucket, source_key = _copy_source(request)
    request.drain()
    info, file = objects.open(source_bucket, source_key)
    with file, objects.stage() as staged:
        start, stop = 0, info.size
        wanted = request.header("x-amz-copy-source-range")
        if wanted:
            span = _range(wanted, info.size)
            if span is None:
                raise S3Error(
                    "InvalidArgument",
                    "The x-amz-copy-source-range value must be of the form bytes=first-last",
                    ArgumentName="x-amz-copy-source-range",
                )
            start, stop = span[0], span[1] + 1
        for chunk in objects.read(info, file, start, stop):
            staged.write(chunk)
        part = objects.put_part(upload_id, number, staged.finish())
    return xml_response(
        f'<CopyPartResult xmlns="{NAMESPACE}">'
        + element("LastModified", iso_time(part.modified_ms))
        + element("ETag", _quoted(part.etag))
        + "</CopyPartResult>"
    )


def list_parts(objects: ObjectStore, request: Request) -> Response:
    upload_id = _upload_for(objects, request)
    marker = _int(request, "part-number-marker", 0, 0, PARTS_MAX)
    max_parts = _int(request, "max-parts", 1000, 0, 1000)
    after = [p for p in objects.parts(upload_id) if p.number > marker]
    page, truncated = after[:max_parts], len(after) > max_parts
    rows = "".join(
        "<Part>"
        + elements(
            [
                ("PartNumber", p.number),
                ("LastModified", iso_time(p.modified_ms)),
                ("ETag", _quoted(p.etag)),
                ("Size", p.size),
            ]
        )
        + "</Part>"
        for p in page
    )
    return xml_response(
        f'<ListPartsResult xmlns="{NAMESPACE}">'
        + elements(
            [
                ("Bucket", request.bucket),
                ("Key", request.key),
                ("UploadId", upload_id),
                ("PartNumberMarker", marker),
                ("NextPartNumberMarker", page[-1].number if page else marker),
                ("MaxParts", max_parts),
                ("IsTruncated", truncated),
                ("StorageClass", "STANDARD"),
            ]
        )
        + owner_xml()
        + rows
        + "</ListPartsResult>"
    )


def complete_upload(objects: ObjectStore, request: Request) -> Response:
    upload_id = _upload_for(objects, request)
    root = _parse_xml(request.read_small())
    parts = []
    for node in root.findall("Part"):
        number = (node.findtext("PartNumber") or "").strip()
        if not number.isdigit():
            raise S3Error("MalformedXML", "a Part has no PartNumber")
        parts.append((int(number), (node.findtext("ETag") or "").strip()))
    info = objects.complete_upload(upload_id, parts)
    return xml_response(
        f'<CompleteMultipartUploadResult xmlns="{NAMESPACE}">'
        + elements(
            [
                ("Location", f"/{info.bucket}/{info.key}"),
                ("Bucket", info.bucket),
                ("Key", info.key),
                ("ETag", _quoted(info.etag)),
            ]
        )
        + "</CompleteMultipartUploadResult>"
    )


def abort_upload(objects: ObjectStore, request: Request) -> Response:
    objects.abort_upload(_upload_for(objects, request))
    return Response(204)


# -- routing -----------------------------------------------------------------------------------


def dispatch(objects: ObjectStore, request: Request) -> Response:
    """Run the operation the request names (raises S3Error or a library error)."""
    method, query = request.method, request.query
    if UNSUPPORTED & query.keys():
        name = sorted(UNSUPPORTED & query.keys())[0]
        raise S3Error("NotImplemented", f"tidelog's S3 does not implement ?{name}")
    if request.bucket is None:
        if method in ("GET", "HEAD"):
            return list_buckets(objects, request)
        raise S3Error(
            "MethodNotAllowed",
            "The specified method is not allowed against this resource.",
            Method=method,
            ResourceType="SERVICE",
        )
    if request.key is None:
        if method == "PUT":
            return create_bucket(objects, request)
        if method == "HEAD":
            return head_bucket(objects, request)
        if method == "DELETE":
            return delete_bucket(objects, request)
        if method == "POST" and "delete" in query:
            return delete_objects(objects, request)
        if method == "GET":
            if "location" in query:
                return get_bucket_location(objects, request)
            if "versioning" in query:
                return get_bucket_versioning(objects, request)
            if "uploads" in query:
                return list_uploads(objects, request)
            if query.get("list-type") == "2":
                return list_objects_v2(objects, request)
            return list_objects(objects, request)
        raise S3Error(
            "MethodNotAllowed",
            "The specified method is not allowed against this resource.",
            Method=method,
            ResourceType="BUCKET",
        )
    copying = bool(request.header("x-amz-copy-source"))
    if method == "PUT":
        if "uploadId" in query or "partNumber" in query:
            return upload_part_copy(objects, request) if copying else upload_part(objects, request)
        return copy_object(objects, request) if copying else put_object(objects, request)
    if method == "GET":
        if "uploadId" in query:
            return list_parts(objects, request)
        return get_object(objects, request)
    if method == "HEAD":
        return head_object(objects, request)
    if method == "DELETE":
        if "uploadId" in query:
            return abort_upload(objects, request)
        return delete_object(objects, request)
    if method == "POST":
        if "uploads" in query:
            return create_upload(objects, request)
        if "uploadId" in query:
            return complete_upload(objects, request)
    raise S3Error(
        "MethodNotAllowed",
        "The specified method is not allowed against this resource.",
        Method=method,
        ResourceType="OBJECT",
    )
