#!/usr/bin/env python3
"""tidelog video streams benchmark: 1080p 30 fps H.264 ingest and GetMedia replay,
each beside a baseline measured in the same run.

    python bench/video_bench.py            # 20 s of 1080p30 at ~8 Mbit/s, 5 repeats
    python bench/video_bench.py --quick    # 6 s, 3 repeats
    python bench/video_bench.py --json     # machine-readable result on stdout

Media: ffmpeg's testsrc2 at 1920x1080, 30 fps, x264 ultrafast, constant
8 Mbit/s (filler-padded: a camera's bitrate, not testsrc's few hundred
kbit/s), a keyframe (so a fragment) every second, written through a pipe as a
live producer writes it. Made once per run (ffmpeg's time is not measured).

Cases, interleaved in short slices (tidelog, baseline, tidelog, ...):

- ingest, library: `put_media` of the stream in 64 KiB pieces, sync="always"
  (each fragment durable before its PERSISTED); baseline: the same bytes
  appended to a plain file with one fsync per 1 s fragment (the least a
  durable recorder does). Also given as "x real time" (media seconds per
  wall second; the issue's target: >= 10x).
- ingest, wire: PutMedia as chunked HTTP to a server on 127.0.0.1 (in this
  process), reading the ACKs; same baseline.
- replay, library: `read_media()` of every fragment (the stream ingested
  `--copies` times); baseline: a sequential read of the same segment files
  with plain file reads (both from the page cache: the store's overhead
  over reading its files), and with O_DIRECT (the disk's own sequential
  bandwidth, the issue's ">= 50% of disk bandwidth" target).
- replay, wire: boto3's GetMedia from EARLIEST against `tidelog serve` (another
  process), payload read to its end, timed to its last byte (the server ends
  it 3 s after the last fragment: that wait is excluded); and the same request with curl as the
  client, which leaves Python's HTTP client out of the figure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import mmap
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import tidelog
from tidelog.server import ServerThread
from tidelog.video_mkv import split_fragments

PIECE_BYTES = 64 * 1024


def make_media(path: Path, seconds: int) -> bytes:
    command = [
        "ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30",
        "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
        "-g", "30", "-keyint_min", "30", "-sc_threshold", "0",
        "-b:v", "8M", "-minrate", "8M", "-maxrate", "8M", "-bufsize", "2M",
        "-x264-params", "nal-hrd=cbr:force-cfr=1",
        # A cluster (a fragment) per keyframe: through a pipe ffmpeg would cut every 32 KiB.
        "-cluster_size_limit", "50000000", "-cluster_time_limit", "1000",
        "-f", "matroska", "pipe:1",
    ]  # fmt: skip
    data = subprocess.run(command, check=True, capture_output=True).stdout
    path.write_bytes(data)
    return data


def pieces(data: bytes) -> list[bytes]:
    return [data[i : i + PIECE_BYTES] for i in range(0, len(data), PIECE_BYTES)]


def ingest_library(root: Path, data: bytes) -> float:
    with tidelog.open(root) as store:
        stream = store.create_video_stream("cam", data_retention_hours=1)
        start = time.perf_counter()
        acks = list(stream.put_media(pieces(data)))
        seconds = time.perf_counter() - start
    if acks[-1].event_type != "PERSISTED":
        raise SystemExit(f"ingest failed: {acks[-1]}")
    return seconds


def ingest_baseline(root: Path, data: bytes) -> float:
    """The same bytes to a plain file, fsync'd once per fragment."""
    clusters = [header + cluster for header, cluster in split_fragments(data)]
    root.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(root / "recording.mkv", "wb") as file:
        for cluster in clusters:
            file.write(cluster)
            file.flush()
            os.fsync(file.fileno())
    return time.perf_counter() - start


def ingest_wire(root: Path, data: bytes) -> float:
    with tidelog.open(root) as store:
        store.create_video_stream("cam", data_retention_hours=1)
        server = ServerThread(store).start()
        try:
            port = int(server.url.rsplit(":", 1)[1])
            sock = socket.create_connection(("127.0.0.1", port), timeout=120)
            head = (
                "POST /putMedia HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
                "x-amzn-stream-name: cam\r\nx-amzn-fragment-timecode-type: ABSOLUTE\r\n\r\n"
            )
            start = time.perf_counter()
            sock.sendall(head.encode())
            done: list[float] = []

            def read() -> None:
                import http.client

                response = http.client.HTTPResponse(sock)
                response.begin()
                body = response.read()
                done.append(time.perf_counter())
                if b"ERROR" in body:
                    raise SystemExit(f"PutMedia failed: {body[-300:]!r}")

            reader = threading.Thread(target=read)
            reader.start()
            for piece in pieces(data):
                sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
            sock.sendall(b"0\r\n\r\n")
            reader.join()
            sock.close()
        finally:
            server.stop()
    return done[0] - start


def build_replay_store(root: Path, data: bytes, copies: int) -> int:
    with tidelog.open(root, sync="never") as store:
        stream = store.create_video_stream("cam", data_retention_hours=1)
        for copy in range(copies):
            acks = list(
                stream.put_media(
                    pieces(data),
                    timecode_type="RELATIVE",
                    producer_start_timestamp_ms=copy * 3_600_000,
                )
            )
            if acks[-1].event_type != "PERSISTED":
                raise SystemExit(f"ingest failed: {acks[-1]}")
        store.sync()
        return sum(f.size for f in stream.fragments(limit=100_000))


def replay_library(root: Path) -> tuple[int, float]:
    with tidelog.open(root, readonly=True) as store:
        stream = store.video_stream("cam")
        start = time.perf_counter()
        total = sum(len(s.media) for s in stream.read_media())
        return total, time.perf_counter() - start


def replay_baseline(root: Path) -> tuple[int, float]:
    """The segment files read sequentially with plain reads (from the page cache)."""
    files = sorted((root / "logs").rglob("*.seg"))
    start = time.perf_counter()
    total = 0
    for path in files:
        with open(path, "rb", buffering=0) as file:
            while chunk := file.read(1024 * 1024):
                total += len(chunk)
    return total, time.perf_counter() - start


def disk_baseline(root: Path) -> tuple[int, float]:
    """The segment files read with O_DIRECT (the page cache bypassed): the disk's
    sequential read bandwidth, measured now."""
    files = sorted((root / "logs").rglob("*.seg"))
    block = 1024 * 1024
    buffer = mmap.mmap(-1, block)  # page-aligned, as O_DIRECT needs
    start = time.perf_counter()
    total = 0
    for path in files:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
        try:
            while read := os.readv(fd, [buffer]):
                total += read
                if read < block:
                    break
        finally:
            os.close(fd)
    return total, time.perf_counter() - start


@contextlib.contextmanager
def serving(root: Path) -> Iterator[int]:
    """`tidelog serve` over `root` in another process (so client and server do not
    share one interpreter); yields its port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "tidelog.cli.main", "serve", "--data", str(root)]
    server = subprocess.Popen([*command, "--port", str(port), "--no-stomp"],
                              stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("serve did not start") from None
                time.sleep(0.05)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=30)


def replay_wire(root: Path) -> tuple[int, float]:
    """boto3's GetMedia from EARLIEST, the payload read to its end."""
    import boto3
    from botocore.config import Config

    with serving(root) as port:
        media = boto3.client(
            "kinesis-video-media", endpoint_url=f"http://127.0.0.1:{port}",
            region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x",
            config=Config(retries={"max_attempts": 1}, read_timeout=120),
        )  # fmt: skip
        start = time.perf_counter()
        payload = media.get_media(StreamName="cam", StartSelector={"StartSelectorType": "EARLIEST"})
        # The response ends GET_MEDIA_IDLE_SECONDS after the last fragment: that
        # wait is not throughput. A read returns a full piece as soon as it has
        # one but the last, short piece only at the end, so the clock stops at
        # the last full piece (all but < 64 KiB of the payload).
        piece = 64 * 1024
        total, last = 0, start
        while len(payload["Payload"].read(piece)) == piece:
            total += piece
            last = time.perf_counter()
    return total, last - start


def replay_wire_curl(root: Path) -> tuple[int, float]:
    """The same GetMedia with curl as the client (the server's side, without
    Python's HTTP client in the measurement)."""
    from tidelog.server import kinesis_video

    body = json.dumps({"StreamName": "cam", "StartSelector": {"StartSelectorType": "EARLIEST"}})
    with serving(root) as port:
        start = time.perf_counter()
        out = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{size_download}", "-X", "POST",
             "-H", "content-type: application/json", "-d", body,
             f"http://127.0.0.1:{port}/getMedia"],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        seconds = time.perf_counter() - start - kinesis_video.GET_MEDIA_IDLE_SECONDS
    return int(out), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--data", default=tempfile.gettempdir())
    parser.add_argument("--copies", type=int, default=None, help="ingests in the replay store")
    args = parser.parse_args()
    seconds = 6 if args.quick else 20
    repeats = 3 if args.quick else 5
    copies = args.copies or (20 if args.quick else 10)
    work = Path(tempfile.mkdtemp(prefix="tidelog-video-bench-", dir=args.data))
    results: dict[str, Any] = {"media_seconds": seconds, "repeats": repeats}
    try:
        data = make_media(work / "media.mkv", seconds)
        results["media_bytes"] = len(data)
        results["media_mbit_per_s"] = round(len(data) * 8 / seconds / 1e6, 2)
        ingest: dict[str, list[float]] = {"library": [], "wire": [], "baseline": []}
        for repeat in range(repeats):  # interleaved slices
            for case, fn in (
                ("library", ingest_library),
                ("baseline", ingest_baseline),
                ("wire", ingest_wire),
            ):
                target = work / f"ingest-{case}-{repeat}"
                ingest[case].append(fn(target, data))
                shutil.rmtree(target, ignore_errors=True)
        base = statistics.median(ingest["baseline"])
        for case in ("library", "wire"):
            took = statistics.median(ingest[case])
            results[f"ingest_{case}"] = {
                "x_real_time": round(seconds / took, 1),
                "mb_per_s": round(len(data) / took / 1e6, 1),
                "baseline_x_real_time": round(seconds / base, 1),
                "ratio_to_baseline": round(base / took, 2),
            }
        replay_root = work / "replay"
        stored = build_replay_store(replay_root, data, copies)
        results["replay_bytes"] = stored
        replay: dict[str, list[float]] = {
            "library": [], "wire": [], "wire_curl": [], "baseline": [], "disk": [],
        }  # fmt: skip
        for _ in range(repeats):
            for case, fn in (
                ("library", replay_library),
                ("baseline", replay_baseline),
                ("disk", disk_baseline),
                ("wire", replay_wire),
                ("wire_curl", replay_wire_curl),
            ):
                total, took = fn(replay_root)
                replay[case].append(total / took)
        base_rate = statistics.median(replay["baseline"])
        disk_rate = statistics.median(replay["disk"])
        for case in ("library", "wire", "wire_curl"):
            rate = statistics.median(replay[case])
            results[f"replay_{case}"] = {
                "mb_per_s": round(rate / 1e6, 1),
                "baseline_mb_per_s": round(base_rate / 1e6, 1),
                "ratio_to_baseline": round(rate / base_rate, 2),
                "disk_mb_per_s": round(disk_rate / 1e6, 1),
                "ratio_to_disk": round(rate / disk_rate, 2),
            }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(results))
        return
    print(f"media: {seconds} s of 1080p30 H.264, {results['media_mbit_per_s']} Mbit/s")
    for case in ("ingest_library", "ingest_wire"):
        r = results[case]
        print(
            f"{case:16} {r['x_real_time']:7.1f}x real time  {r['mb_per_s']:7.1f} MB/s  "
            f"baseline (file + fsync a fragment) {r['baseline_x_real_time']:7.1f}x  "
            f"ratio {r['ratio_to_baseline']:.2f}"
        )
    for case in ("replay_library", "replay_wire", "replay_wire_curl"):
        r = results[case]
        print(
            f"{case:16} {r['mb_per_s']:7.1f} MB/s  baseline (reading the segment files) "
            f"{r['baseline_mb_per_s']:7.1f} MB/s  ratio {r['ratio_to_baseline']:.2f}  "
            f"disk (O_DIRECT) {r['disk_mb_per_s']:7.1f} MB/s  ratio {r['ratio_to_disk']:.2f}"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
