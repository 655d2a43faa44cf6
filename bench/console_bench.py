#!/usr/bin/env python3
"""The web console's costs: first render with many channels, and the data path watched.

    python bench/console_bench.py              # both parts (about 3 minutes)
    python bench/console_bench.py --render     # only the first render
    python bench/console_bench.py --watched    # only the data path, watched and not
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
   single sends, sync="always") and stream_bench's cases (put_many of 500
   records, get_records replay), each run in this process on a store that a
   `tidelog serve` child has open. Two contenders take turns in short
   slices: the console not watched (serve running, no page) and watched
   (a Chromium page on the overview: live charts over server-sent events,
   the sampler reading every channel each second, the tables refreshed
   every 5 s). The figure is the median over slices of watched / not
   watched, per case; 1.00 is "no cost".
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
import time
import urllib.request
from collections.abc import Iterator
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
SLICES = 5
QUEUE_MESSAGES = 5_000
STREAM_BATCHES = 40  # of stream_bench.BATCH records
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


def stream_cases(data: str) -> dict[str, float]:
    """stream_bench's two cases on the watched store (same records and batches)."""
    batch = [(stream_bench.RECORD, f"key-{i}") for i in range(stream_bench.BATCH)]
    out: dict[str, float] = {}
    with tidelog.open(data) as store:
        s = store.create_stream(f"bench-{time.monotonic_ns()}", shards=1)
        s.put_many(batch)
        started = time.perf_counter()
        for _ in range(STREAM_BATCHES):
            s.put_many(batch)
        out["stream_put_many_500"] = (
            STREAM_BATCHES * stream_bench.BATCH / (time.perf_counter() - started)
        )
        for _ in range(STREAM_REPLAY // stream_bench.BATCH - STREAM_BATCHES - 1):
            s.put_many(batch)
        started = time.perf_counter()
        count = 0
        iterator: str | None = s.get_shard_iterator("shardId-000000000000", "TRIM_HORIZON")
        while iterator is not None:
            result = s.get_records(iterator, limit=10_000)
            if not result.records:
                break
            count += len(result.records)
            iterator = result.next_shard_iterator
        out["stream_get_records"] = count / (time.perf_counter() - started)
    return out


def one_slice(root: str, driver: Any | None) -> dict[str, float]:
    """One run of every case on a fresh store that `serve` has open (watched or not)."""
    slice_root = tempfile.mkdtemp(dir=root)
    data = os.path.join(slice_root, "tl")  # where queue_bench.tidelog_cases opens its store
    try:
        with serving(data) as url:
            if driver is not None:
                driver.get(url + "/console/")
                wait(
                    driver, lambda d: d.execute_script("return document.body.dataset.view"), "page"
                )
            results = queue_bench.tidelog_cases(slice_root, QUEUE_MESSAGES, 16)
            results.update(stream_cases(data))
            if driver is not None:
                points = driver.execute_script(
                    "return window.tidelog.state.charts.map((c) => c.data[0].length)"
                )
                if not points or max(points) < 2:
                    raise RuntimeError(f"the page saw no live samples: {points}")
                driver.get("about:blank")
        return results
    finally:
        shutil.rmtree(slice_root, ignore_errors=True)


def watched(root: str) -> dict[str, Any]:
    ratios: dict[str, list[float]] = {}
    plain: dict[str, list[float]] = {}
    seen: dict[str, list[float]] = {}
    with browser() as driver:
        for index in range(SLICES):
            # Alternate which goes first, so drift does not favour one.
            order: list[Any] = [None, driver] if index % 2 == 0 else [driver, None]
            got = {id(who): one_slice(root, who) for who in order}
            base, with_page = got[id(None)], got[id(driver)]
            for case, value in base.items():
                ratios.setdefault(case, []).append(with_page[case] / value)
                plain.setdefault(case, []).append(value)
                seen.setdefault(case, []).append(with_page[case])
            print(f"slice {index + 1}/{SLICES} done", file=sys.stderr)
    return {
        case: {
            "not_watched": round(statistics.median(plain[case])),
            "watched": round(statistics.median(seen[case])),
            "ratio_median": round(statistics.median(values), 3),
            "ratios": [round(v, 3) for v in values],
        }
        for case, values in ratios.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--render", action="store_true")
    parser.add_argument("--watched", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--data", default=None)
    args = parser.parse_args()
    both = not args.render and not args.watched
    root = tempfile.mkdtemp(prefix="tidelog-console-bench-", dir=args.data)
    results: dict[str, Any] = {}
    try:
        if args.render or both:
            results["first_render"] = first_render(root)
        if args.watched or both:
            results["watched"] = watched(root)
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
        lines.append(f"{'case':34} {'not watched':>12} {'watched':>12} {'ratio':>7}")
        for case, r in results["watched"].items():
            lines.append(
                f"{case:34} {r['not_watched']:12,} {r['watched']:12,} {r['ratio_median']:7.3f}"
            )
    print("\n".join(lines), file=sys.stderr)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
