"""Test media made on the fly with Debian's ffmpeg, and a plain chunked PutMedia client."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

FFMPEG = shutil.which("ffmpeg") or "ffmpeg"
FFPROBE = shutil.which("ffprobe") or "ffprobe"


def make_mkv(
    path: Path, *, seconds: int = 4, fps: int = 25, size: str = "320x240", preset: str = "medium"
) -> bytes:
    """`seconds` of ffmpeg's testsrc in H.264, a keyframe (so a cluster: a
    fragment) each second, written through a pipe as a live producer writes
    it (a Segment of unknown size). Returns the bytes, also written to `path`."""
    command = [
        FFMPEG, "-v", "error", "-f", "lavfi", "-i", f"testsrc=size={size}:rate={fps}",
        "-t", str(seconds), "-c:v", "libx264", "-preset", preset, "-pix_fmt", "yuv420p",
        "-g", str(fps), "-keyint_min", str(fps), "-sc_threshold", "0",
        # A cluster per keyframe: through a pipe ffmpeg would also cut every 32 KiB.
        "-cluster_size_limit", "50000000", "-cluster_time_limit", "1000",
        "-f", "matroska", "pipe:1",
    ]  # fmt: skip
    data = subprocess.run(command, check=True, capture_output=True).stdout
    path.write_bytes(data)
    return data


def probe(target: str | Path) -> dict[str, Any]:
    """ffprobe's duration and counted video frames of a file or URL."""
    out = subprocess.run(
        [
            FFPROBE,
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames,codec_name:format=duration",
            "-of",
            "json",
            str(target),
        ],  # fmt: skip
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    doc = json.loads(out)
    return {
        "duration": float(doc["format"]["duration"]),
        "frames": int(doc["streams"][0]["nb_read_frames"]),
        "codec": doc["streams"][0]["codec_name"],
    }


def put_media_request(
    port: int,
    pieces: Iterable[bytes],
    *,
    stream: str,
    headers: dict[str, str] | None = None,
    timeout: float = 60,
) -> socket.socket:
    """Open a PutMedia request and send `pieces` as HTTP chunks (not the terminating one)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    head = {
        "Host": f"127.0.0.1:{port}",
        "Transfer-Encoding": "chunked",
        "x-amzn-stream-name": stream,
        "x-amzn-fragment-timecode-type": "ABSOLUTE",
        **(headers or {}),
    }
    lines = "".join(f"{k}: {v}\r\n" for k, v in head.items())
    sock.sendall(f"POST /putMedia HTTP/1.1\r\n{lines}\r\n".encode())
    for piece in pieces:
        sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
    return sock


def read_acks(
    sock: socket.socket, events: list[dict[str, Any]] | None = None
) -> tuple[int, list[dict[str, Any]]]:
    """The response's status and its ACK events, read until the response ends;
    each event is appended to `events` as it arrives. The chunked framing is
    parsed by the stdlib's http.client on the raw socket."""
    response = http.client.HTTPResponse(sock)
    response.begin()
    events = [] if events is None else events
    buffer = b""
    while True:
        try:
            piece = response.read1(65536)
        except (OSError, http.client.HTTPException):
            break  # the server went away mid-response
        if not piece:
            break
        buffer += piece
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                events.append(json.loads(line))
    return response.status, events


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]
