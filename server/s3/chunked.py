"""S3's aws-chunked request bodies (Content-Encoding: aws-chunked).

SDKs stream an upload as chunks, each `<size in hex>[;chunk-signature=<sig>]`
CRLF, the bytes, CRLF; a chunk of size 0 ends the data, and trailing headers
(`x-amz-checksum-crc32:...`, `x-amz-trailer-signature:...`) may follow, one
a line, before a final empty line. `x-amz-content-sha256` says which form:

| value | chunk signatures | trailer |
| --- | --- | --- |
| STREAMING-AWS4-HMAC-SHA256-PAYLOAD | yes | no |
| STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER | yes | yes |
| STREAMING-UNSIGNED-PAYLOAD-TRAILER (botocore's default over HTTPS) | no | yes |

Each chunk's signature chains from the previous one (the first from the
request's own signature): HMAC-SHA256 with the request's signing key over
"AWS4-HMAC-SHA256-PAYLOAD", the request time, the credential scope, the
previous signature, the SHA-256 of nothing and the SHA-256 of the chunk.
`ChunkSigner` checks them when the server verifies signatures. The trailer's
own signature is not checked: the data chunks are signed, and the checksum
the trailer carries is checked against the data (server/s3/body.py).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator

STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
STREAMING_FORMS = (STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER)
# A chunk header or trailer line longer than this is not aws-chunked framing.
LINE_BYTES_MAX = 8192
TRAILER_LINES_MAX = 32
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class ChunkError(Exception):
    """Malformed aws-chunked framing, or a chunk whose signature does not match."""

    def __init__(self, message: str, code: str = "IncompleteBody") -> None:
        super().__init__(message)
        self.code = code


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """SigV4's signing key for a credential scope (date is YYYYMMDD)."""
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


class ChunkSigner:
    """Checks the chained signatures of one request's chunks."""

    def __init__(self, key: bytes, timestamp: str, scope: str, seed_signature: str) -> None:
        self.key = key
        self.timestamp = timestamp
        self.scope = scope
        self.previous = seed_signature

    def expected(self, data: bytes) -> str:
        text = "\n".join(
            (
                "AWS4-HMAC-SHA256-PAYLOAD",
                self.timestamp,
                self.scope,
                self.previous,
                _EMPTY_SHA256,
                hashlib.sha256(data).hexdigest(),
            )
        )
        return hmac.new(self.key, text.encode(), hashlib.sha256).hexdigest()

    def check(self, data: bytes, signature: str | None) -> None:
        want = self.expected(data)
        if signature is None or not hmac.compare_digest(want, signature):
            raise ChunkError(
                "The request signature we calculated does not match the signature you "
                "provided (a chunk's signature).",
                "SignatureDoesNotMatch",
            )
        self.previous = want


class AwsChunkedDecoder:
    """Turns an aws-chunked body, fed in pieces of any size, back into the object's bytes.

    `feed(piece)` yields the data it completes; `close()` checks that the
    body ended properly (the zero-size chunk, then the trailer). `trailers`
    then holds the trailing headers (lower-case names). With a `signer`,
    every chunk's signature is checked before its data is yielded. A chunk's
    data is held until it is complete, so memory is bounded by the chunk
    size the client chose (SDKs use 64 KiB to 8 MiB; at most `chunk_bytes_max`).
    """

    def __init__(self, signer: ChunkSigner | None = None, chunk_bytes_max: int = 64 << 20):
        self.signer = signer
        self.chunk_bytes_max = chunk_bytes_max
        self.trailers: dict[str, str] = {}
        self._buffer = bytearray()
        self._want: int | None = None  # bytes of the current chunk's data, None: at a header
        self._signature: str | None = None
        self._ended = False  # the zero-size chunk was read
        self._done = False  # the trailer's final empty line was read

    def _line(self) -> bytes | None:
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if len(self._buffer) > LINE_BYTES_MAX:
                raise ChunkError("aws-chunked: a chunk header or trailer line is too long")
            return None
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 2]
        return line

    def feed(self, piece: bytes) -> Iterator[bytes]:
        if self._done:
            if piece.strip(b"\r\n"):
                raise ChunkError("aws-chunked: bytes after the end of the body")
            return
        self._buffer += piece
        while True:
            if self._ended:
                self._trailer_lines()
                return
            if self._want is None:
                line = self._line()
                if line is None:
                    return
                self._header(line)
                if self._want == 0:
                    if self.signer is not None:
                        self.signer.check(b"", self._signature)
                    self._want = None
                    self._ended = True
                    continue
            want = self._want
            if want is None or len(self._buffer) < want + 2:
                return
            if self._buffer[want : want + 2] != b"\r\n":
                raise ChunkError("aws-chunked: a chunk's data is not followed by CRLF")
            data = bytes(self._buffer[:want])
            del self._buffer[: want + 2]
            self._want = None
            if self.signer is not None:
                self.signer.check(data, self._signature)
            yield data

    def _header(self, line: bytes) -> None:
        size_text, _, extension = line.partition(b";")
        try:
            size = int(size_text.strip(), 16)
        except ValueError:
            raise ChunkError(f"aws-chunked: bad chunk size {size_text[:32]!r}") from None
        if size < 0 or size > self.chunk_bytes_max:
            raise ChunkError(f"aws-chunked: a chunk of {size} bytes is over the limit")
        self._signature = None
        if extension:
            name, _, value = extension.partition(b"=")
            if name.strip() == b"chunk-signature":
                self._signature = value.strip().decode("ascii", "replace")
        self._want = size

    def _trailer_lines(self) -> bool:
        """Read trailer lines; True once the final empty line is read."""
        while True:
            line = self._line()
            if line is None:
                return False
            if not line:
                self._done = True
                return True
            name, sep, value = line.partition(b":")
            if not sep or len(self.trailers) >= TRAILER_LINES_MAX:
                raise ChunkError(f"aws-chunked: bad trailer line {line[:64]!r}")
            self.trailers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")

    def close(self) -> None:
        """Raise ChunkError unless the body ended with the zero-size chunk (and trailer)."""
        if not self._ended:
            raise ChunkError("aws-chunked: the body ended before its zero-size chunk")
        if self._done:
            return
        # Some clients end after the zero-size chunk or the last trailer, with
        # no final empty line: supply it.
        if self._buffer and not self._buffer.endswith(b"\r\n"):
            self._buffer += b"\r\n"
        self._buffer += b"\r\n"
        self._trailer_lines()
