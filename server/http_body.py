"""Reading an ASGI request body with a size limit (the AWS endpoint, the console
and the Kinesis Video Streams routes share it)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]


async def read_body(
    receive: Receive, limit: int, headers: Mapping[bytes, bytes] | None = None
) -> bytes | None:
    """The whole body, or None once it passes `limit` bytes (0: no limit). A
    Content-Length in `headers` over the limit is refused before reading."""
    if limit and headers is not None:
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if limit and size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)
