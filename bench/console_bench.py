#!/usr/bin/env python3
"""The web console's costs: first render with many channels, and the data path watched.

    python bench/console_bench.py              # both parts (about 4 minutes)
    python bench/console_bench.py --render     # only the first render
    python bench/console_bench.py --watched    # only the data path, watched and not
    python bench/console_bench.py --control    # the same with no page either time (noise)
    python bench/console_bench.py --json       # JSON on stdout (the table goes to stderr)

Needs Debian's chromium and chromium-driver and selenium (tests/console_harness.py
starts the browser the same way the tests do).

1. **First render.** A store with 1,000 channels (500 queues with a few
   messages each, 250 topics, 250 one-shard streams) is served by
   `tidelog serve` in a child process; headless Chromium loads
   /console/ afresh (new navigation) RENDER_LOADS times. The figure is the
   page's own `tidelog:first-render` mark (performance.mark after the
   overview's tables are built from /console/api/overview), in ms since
   navigation start: HTML, scripts, the API call and the DOM, as the user
   waits for it. Median and worst of the loads; the API call alone beside it.

2. **The data path, watched.** queue_bench's tidelog cases (send and
   receive+delete in batches of 10, single round trips, 16 threads of
   single sends; 100 B, sync="always") and stream_bench's (put_many of 500
   records, get_records replay), in smaller counts, run in this process on
   a store that a `tidelog serve` child has open. In each of ROUNDS rounds
   every case runs once with the console not watched (the page elsewhere:
   the sampler stops) and once watched (a Chromium page on the overview:
   live charts over server-sent events, the sampler reading every channel
   each second, the tables refreshed every 5 s), in ABBA order across
   rounds. The figure is the median over rounds of watched / not watched,
   with its quartiles; 1.00 is "no cost".
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "tests")]

import queue_bench  # noqa: E402
import stream_bench  # noqa: E402
from console_harness import browser, wait  # noqa: E402

import tidelog  # noqa: E402

RENDER_LOADS = 7
CHANNELS = {"queues": 500, "topics": 250, "streams": 250}
ROUNDS = 12
QUEUE_MESSAGES = 2_000
ROUND_TRIPS = 200
STREAM_BATCHES = 20  # of stream_bench.BATCH records
STREAM_REPLAY = 100_000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@contextmanager
def serving(data: str) -> Iterator[str]:
    """`tidelog serve` on `data` in a child process; yields its URL."""
    port = free_port()
    command = [sys.executable, "-m", "tidelog.cli.main", "serve", "--data", data]
    process = subprocess.Popen(
        [*command, "--port", str(port), "--no-stomp", "--no-workers"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url + "/health", timeout=1).read()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("tidelog serve did not start") from None
            time.sleep(0.05)
    try:
        yield url
    finally:
        process.terminate()
        process.wait(30)


def first_render(root: str) -> dict[str, Any]:
    data = os.path.join(root, "many")
    with tidelog.open(data, sync="never") as store:
        for i in range(CHANNELS["queues"]):
            store.create_queue(f"queue-{i:04d}").send_many([b"x" * 100] * 3)
        for i in range(CHANNELS["topics"]):
            store.create_topic(f"topic-{i:04d}")
        for i in range(CHANNELS["streams"]):
            store.create_stream(f"stream-{i:04d}").put(b"x" * 100, "k")
    marks: list[float] = []
    api_ms: list[float] = []
    with serving(data) as url, browser() as driver:
        for _ in range(RENDER_LOADS):
            started = time.perf_counter()
            urllib.request.urlopen(url + "/console/api/overview").read()
            api_ms.append((time.perf_counter() - started) * 1000)
            driver.get("about:blank")
            driver.get(url + "/console/")
            mark = wait(
                driver,
                lambda d: d.execute_script(
                    "const m = performance.getEntriesByName('tidelog:first-render');"
                    "return m.length ? m[0].startTime : null;"
                ),
                "the first render",
                60,
            )
            shown = driver.execute_script(
                "return [document.querySelector('#count-queues .value').textContent,"
                " document.querySelectorAll('#queues tbody tr[data-name]').length,"
                " document.querySelector('#queues .show-all').textContent]"
            )
            if shown[0] != f"{CHANNELS['queues']:,}" or not shown[1] or "more" not in shown[2]:
                raise RuntimeError(f"the overview shows {shown}")
            marks.append(float(mark))
        driver.get("about:blank")
    return {
        "channels": sum(CHANNELS.values()),
        "first_render_ms_median": round(statistics.median(marks), 1),
        "first_render_ms_max": round(max(marks), 1),
        "overview_api_ms_median": round(statistics.median(api_ms), 1),
        "loads": [round(m, 1) for m in marks],
    }


def _rate(count: int, fn: Callable[[], None]) -> float:
    started = time.perf_counter()
    fn()
    return count / (time.perf_counter() - started)


def cases(store: tidelog.Store, replay: tidelog.Stream) -> dict[str, float]:
    """One run of each case, on fresh channels of the watched store (queue_bench's
    tidelog cases and stream_bench's, at their record sizes, in smaller counts)."""
    body = queue_bench.BODY
    q = store.create_queue(f"bench-{time.monotonic_ns()}")
    out: dict[str, float] = {}

    def send() -> None:
        for _ in range(QUEUE_MESSAGES // 10):
            q.send_many([body] * 10)

    def receive_delete() -> None:
        while batch := q.receive(max_messages=10):
            q.delete_many([m.receipt for m in batch])

    def round_trip() -> None:
        for _ in range(ROUND_TRIPS):
            q.send(body)
            [m] = q.receive()
            q.delete(m.receipt)

    def threaded() -> None:
        def sender() -> None:
            for _ in range(QUEUE_MESSAGES // 16):
                q.send(body)

        workers = [threading.Thread(target=sender) for _ in range(16)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()

    out["queue_send_batch10"] = _rate(QUEUE_MESSAGES, send)
    out["queue_receive_delete_batch10"] = _rate(QUEUE_MESSAGES, receive_delete)
    out["queue_round_trip_single"] = _rate(ROUND_TRIPS, round_trip)
    out["queue_send_single_16_threads"] = _rate(QUEUE_MESSAGES // 16 * 16, threaded)
    q.purge()
    store.delete_queue(q.name)

    batch = [(stream_bench.RECORD, f"key-{i}") for i in range(stream_bench.BATCH)]
    s = store.create_stream(f"bench-{time.monotonic_ns()}", shards=1)
    s.put_many(batch)

    def put() -> None:
        for _ in range(STREAM_BATCHES):
            s.put_many(batch)

    out["stream_put_many_500"] = _rate(STREAM_BATCHES * stream_bench.BATCH, put)
    store.delete_stream(s.name)
    count = 0

    def read() -> None:
        nonlocal count
        iterator: str | None = replay.get_shard_iterator("shardId-000000000000", "TRIM_HORIZON")
        while iterator is not None:
            result = replay.get_records(iterator, limit=10_000)
            if not result.records:
                break
            count += len(result.records)
            iterator = result.next_shard_iterator

    started = time.perf_counter()
    read()
    out["stream_get_records"] = count / (time.perf_counter() - started)
    return out


def watch(driver: Any, url: str | None) -> None:
    """Point the page at the overview (until its charts have a sample) or away."""
    if url is None:
        driver.get("about:blank")
        return
    driver.get(url + "/console/")
    wait(
        driver,
        lambda d: d.execute_script(
            "const c = window.tidelog && window.tidelog.state.charts;"
            "return c && c.length && c[0].data[0].length > 0;"
        ),
        "a first live sample",
        30,
    )


def watched(root: str, control: bool = False) -> dict[str, Any]:
    """ROUNDS rounds; in each, every case runs once not watched and once watched,
    in ABBA order across rounds. One store, one serve child, one browser.
    `control`: both runs unwatched (an A/A run: the method's own noise)."""
    data = os.path.join(root, "watched")
    ratios: dict[str, list[float]] = {}
    runs: dict[str, dict[str, list[float]]] = {"not_watched": {}, "watched": {}}
    with serving(data) as url, browser() as driver, tidelog.open(data) as store:
        replay = store.create_stream("replay", shards=1)
        batch = [(stream_bench.RECORD, f"key-{i}") for i in range(stream_bench.BATCH)]
        for _ in range(STREAM_REPLAY // stream_bench.BATCH):
            replay.put_many(batch)
        cases(store, replay)  # warm: files, caches, the serve child's first look
        for index in range(ROUNDS):
            order = ["not_watched", "watched"] if index % 2 == 0 else ["watched", "not_watched"]
            got: dict[str, dict[str, float]] = {}
            for who in order:
                watch(driver, url if who == "watched" and not control else None)
                got[who] = cases(store, replay)
                if who == "watched" and not control:
                    points = driver.execute_script(
                        "return window.tidelog.state.charts[0].data[0].length"
                    )
                    if points < 2:
                        raise RuntimeError("the page got no live samples while the cases ran")
            for case, value in got["not_watched"].items():
                ratios.setdefault(case, []).append(got["watched"][case] / value)
                for who in runs:
                    runs[who].setdefault(case, []).append(got[who][case])
            print(f"round {index + 1}/{ROUNDS} done", file=sys.stderr)
        watch(driver, None)
    out: dict[str, Any] = {}
    for case, values in ratios.items():
        quartiles = statistics.quantiles(values, n=4)
        out[case] = {
            "not_watched": round(statistics.median(runs["not_watched"][case])),
            "watched": round(statistics.median(runs["watched"][case])),
            "ratio_median": round(statistics.median(values), 3),
            "ratio_quartiles": [round(quartiles[0], 3), round(quartiles[2], 3)],
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--render", action="store_true")
    parser.add_argument("--watched", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--control", action="store_true", help="--watched with no page either time (A/A)"
    )
    parser.add_argument("--data", default=None)
    args = parser.parse_args()
    args.watched = args.watched or args.control
    both = not args.render and not args.watched
    root = tempfile.mkdtemp(prefix="tidelog-console-bench-", dir=args.data)
    results: dict[str, Any] = {}
    try:
        if args.render or both:
            results["first_render"] = first_render(root)
        if args.watched or both:
            results["watched"] = watched(root, control=args.control)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    lines = []
    if "first_render" in results:
        r = results["first_render"]
        lines.append(
            f"first render, {r['channels']:,} channels: median {r['first_render_ms_median']} ms, "
            f"worst {r['first_render_ms_max']} ms "
            f"(overview API alone {r['overview_api_ms_median']} ms)"
        )
    if "watched" in results:
        lines.append(
            f"{'case (per s)':30} {'not watched':>12} {'watched':>12} {'ratio':>7} {'IQR':>13}"
        )
        for case, r in results["watched"].items():
            low, high = r["ratio_quartiles"]
            lines.append(
                f"{case:30} {r['not_watched']:12,} {r['watched']:12,} "
                f"{r['ratio_median']:7.3f} {low:6.2f}-{high:<6.2f}"
            )
    print("\n".join(lines), file=sys.stderr)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
