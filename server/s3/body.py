"""One S3 request as a blocking handler sees it: target, headers, and the body stream.

The handler runs in the server's thread pool; the body is pulled from the
ASGI connection a message at a time (`receive` is a blocking call into the
event loop), so an upload of gigabytes streams straight to a staging file
and is never held in memory. Integrity checks, as S3 makes them:

- `Content-MD5`: the MD5 of the body (InvalidDigest if malformed, BadDigest
  if it differs);
- `x-amz-content-sha256` with a hex digest: the body's SHA-256
  (XAmzContentSHA256Mismatch);
- `x-amz-checksum-crc32|crc32c|sha1|sha256`, as a header or (aws-chunked)
  a trailer named in `x-amz-trailer`: BadDigest if it differs. A CRC64NVME
  checksum is kept but not checked (no library here computes it);
- aws-chunked bodies (server/s3/chunked.py) are decoded, their chunk
  signatures checked when the server verifies signatures, and their
  decoded length checked against `x-amz-decoded-content-length`.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import crc32c as _crc32c

from tidelog.objects import Staged

from .chunked import STREAMING_FORMS, AwsChunkedDecoder, ChunkError, ChunkSigner
from .wire import S3Error

SMALL_BODY_BYTES_MAX = 4 * 1024 * 1024  # XML request bodies (a 10,000-part completion fits)
CHECKSUM_ALGORITHMS = ("crc32", "crc32c", "crc64nvme", "sha1", "sha256")


class _Checksum:
    """One x-amz-checksum-* algorithm, computed incrementally."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._crc = 0
        self._hash = hashlib.new(name) if name in ("sha1", "sha256") else None

    def update(self, data: bytes) -> None:
        if self.name == "crc32":
            self._crc = zlib.crc32(data, self._crc)
        elif self.name == "crc32c":
            self._crc = _crc32c.crc32c(data, self._crc)
        elif self._hash is not None:
            self._hash.update(data)

    def value(self) -> str | None:
        """The base64 value S3 sends, or None when it cannot be computed here."""
        if self.name in ("crc32", "crc32c"):
            return base64.b64encode(self._crc.to_bytes(4, "big")).decode()
        if self._hash is not None:
            return base64.b64encode(self._hash.digest()).decode()
        return None


class Request:
    """What a handler is given: method, bucket, key, query, headers and the body."""

    def __init__(
        self,
        method: str,
        bucket: str | None,
        key: str | None,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        receive: Callable[[], dict[str, Any]],
        signer: ChunkSigner | None = None,
    ) -> None:
        self.method = method
        self.bucket = bucket
        self.key = key
        self.query = dict(query)
        self.headers = dict(headers)
        self._receive = receive
        self.signer = signer
        self.trailers: dict[str, str] = {}
        self.checksums: dict[str, str] = {}  # the x-amz-checksum-* values, checked
        self._consumed = False

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name, default)

    def _raw_pieces(self) -> Iterator[bytes]:
        if self._consumed:
            return
        self._consumed = True
        while True:
            message = self._receive()
            if message["type"] == "http.disconnect":
                raise S3Error("IncompleteBody", "The client went away before sending the body.")
            piece = message.get("body", b"")
            if piece:
                yield piece
            if not message.get("more_body", False):
                return

    def _is_chunked(self) -> bool:
        encodings = [e.strip() for e in self.header("content-encoding").split(",")]
        return "aws-chunked" in encodings or self.header("x-amz-content-sha256") in STREAMING_FORMS

    def _pieces(self) -> Iterator[bytes]:
        """The body's bytes as the client meant them (aws-chunked framing removed)."""
        if not self._is_chunked():
            yield from self._raw_pieces()
            return
        decoder = AwsChunkedDecoder(self.signer)
        try:
            for raw in self._raw_pieces():
                yield from decoder.feed(raw)
            decoder.close()
        except ChunkError as exc:
            raise S3Error(exc.code, str(exc)) from None
        self.trailers = decoder.trailers

    def _checks(self) -> tuple[list[_Checksum], dict[str, str]]:
        """The checksums to compute, and the values sent as headers."""
        sent = {
            name: self.headers[f"x-amz-checksum-{name}"]
            for name in CHECKSUM_ALGORITHMS
            if f"x-amz-checksum-{name}" in self.headers
        }
        wanted = set(sent)
        for trailer in self.header("x-amz-trailer").split(","):
            trailer = trailer.strip().lower()
            if trailer.startswith("x-amz-checksum-"):
                wanted.add(trailer[len("x-amz-checksum-") :])
        unknown = wanted - set(CHECKSUM_ALGORITHMS)
        if unknown:
            raise S3Error("InvalidRequest", f"unknown checksum algorithm {sorted(unknown)[0]!r}")
        return [_Checksum(name) for name in sorted(wanted)], sent

    def read_into(self, staged: Staged) -> None:
        """Stream the body into `staged`, then check every digest the client sent."""
        computed, sent = self._checks()
        content_sha = self.header("x-amz-content-sha256")
        check_sha = len(content_sha) == 64 and not self._is_chunked()
        sha = hashlib.sha256() if check_sha else None
        for piece in self._pieces():
            staged.write(piece)
            for checksum in computed:
                checksum.update(piece)
            if sha is not None:
                sha.update(piece)
        staged.finish()
        declared = self.header("x-amz-decoded-content-length")
        if self._is_chunked() and declared.isdigit() and int(declared) != staged.size:
            raise S3Error(
                "IncompleteBody",
                f"x-amz-decoded-content-length is {declared} but the body held {staged.size} bytes",
            )
        if sha is not None and sha.hexdigest() != content_sha.lower():
            raise S3Error(
                "XAmzContentSHA256Mismatch",
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
                ClientComputedContentSHA256=content_sha,
                S3ComputedContentSHA256=sha.hexdigest(),
            )
        self._check_md5(staged.md5_digest)
        for checksum in computed:
            given = sent.get(checksum.name) or self.trailers.get(f"x-amz-checksum-{checksum.name}")
            if given is None:
                raise S3Error(
                    "InvalidRequest", f"x-amz-checksum-{checksum.name} was announced but not sent"
                )
            value = checksum.value()
            if value is not None and value != given:
                raise S3Error(
                    "BadDigest",
                    f"The {checksum.name.upper()} you specified did not match the calculated "
                    "checksum.",
                )
            self.checksums[checksum.name] = given

    def _check_md5(self, digest: bytes) -> None:
        given = self.header("content-md5")
        if not given:
            return
        try:
            expected = base64.b64decode(given, validate=True)
        except ValueError:
            expected = b""
        if len(expected) != 16:
            raise S3Error("InvalidDigest", "The Content-MD5 you specified was invalid.")
        if expected != digest:
            raise S3Error(
                "BadDigest", "The Content-MD5 you specified did not match what we received."
            )

    def read_small(self) -> bytes:
        """The whole body of a request that carries an XML document (bounded)."""
        data = bytearray()
        computed, sent = self._checks()
        for piece in self._pieces():
            data += piece
            if len(data) > SMALL_BODY_BYTES_MAX:
                raise S3Error("MalformedXML", "The XML you provided was too large.")
        body = bytes(data)
        self._check_md5(hashlib.md5(body).digest())
        for checksum in computed:
            checksum.update(body)
            given = sent.get(checksum.name) or self.trailers.get(f"x-amz-checksum-{checksum.name}")
            value = checksum.value()
            if given is not None and value is not None and value != given:
                raise S3Error(
                    "BadDigest",
                    f"The {checksum.name.upper()} you specified did not match the calculated "
                    "checksum.",
                )
        return body

    def drain(self) -> None:
        """Read and drop whatever body is left (before a reply that needs none)."""
        for _ in self._raw_pieces():
            pass
