#!/usr/bin/env python3
"""tidelog delivery streams benchmark, beside a stdlib json + gzip writer run now.

    python bench/delivery_bench.py            # full run (about half a minute)
    python bench/delivery_bench.py --quick    # a few seconds
    python bench/delivery_bench.py --json     # machine-readable result on stdout

Case: JSON documents of about 150 bytes, made by json.dumps in both runs.

- tidelog: put_record_batch of 500 records into a direct delivery stream
  (sync="always": every batch durable before the call returns), then the
  deliverer lands them as gzip JSON lines in a directory, exactly-once
  (each document validated, 5 MiB batches, temp file + fsync + rename, then
  the checkpoint commit). The clock runs from the first put to the last
  object committed. The last case runs a deliverer thread during the puts
  instead, as `tidelog serve` does (it shares the GIL with the producer).
- baseline: the same documents json.dumps'ed into one gzip.open file (same
  compression level, 6) with a newline each, then fsync'ed. No durability
  until the end, no record boundaries kept, no retry, no exactly-once.

Rates are records/s, the median of the repeats; each repeat runs the
baseline right before tidelog and the ratio is the median of those pairs'. Scratch data lives under
--data (default /tmp) and is removed at the end.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import tidelog
from tidelog.delivery import Deliverer
from tidelog.delivery_formats import GZIP_LEVEL
from tidelog.segments.logstore import SyncMode

BATCH = 500
# (sync mode, producer threads): one producer pays one fsync'd commit per 500
# records; several share commits (group commit), as concurrent producers do.
# The last flag: a background deliverer during the puts (as serve runs), or
# one flush after the last put (delivery not overlapping the puts at all).
CASES: list[tuple[SyncMode, int, bool]] = [
    ("always", 1, False),
    ("always", 4, False),
    ("interval", 1, False),
    ("always", 1, True),
]


def documents(count: int) -> list[dict[str, object]]:
    return [
        {
            "id": i,
            "user": f"user-{i % 997}",
            "event": "click",
            "path": f"/items/{i % 5000}",
            "ms": i,
        }
        for i in range(count)
    ]


def run_tidelog(
    root: Path, docs: list[dict[str, object]], sync: SyncMode, producers: int, background: bool
) -> tuple[int, float]:
    data, out = root / "data", root / "out"
    with tidelog.open(data, sync=sync) as store:
        ds = store.create_delivery_stream(
            "bench", destination=out, compression="GZIP", record_format="json_lines"
        )
        batches = [docs[first : first + BATCH] for first in range(0, len(docs), BATCH)]

        def produce(mine: list[list[dict[str, object]]]) -> None:
            for batch in mine:
                ds.put_record_batch([json.dumps(d) for d in batch])

        started = time.perf_counter()
        # As `tidelog serve` runs it: a deliverer thread lands each 5 MiB
        # batch while the producers go on; the rest is flushed at the end.
        deliverer = Deliverer(store, ["bench"], poll_interval=0.05).start() if background else None
        threads = [
            threading.Thread(target=produce, args=(batches[i::producers],))
            for i in range(producers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if deliverer is not None:
            deliverer.stop()
        ds.flush_all()
        seconds = time.perf_counter() - started
        if ds.stats().records_delivered != len(docs):
            raise RuntimeError("delivery bench: records missing")
    return len(docs), seconds


def run_baseline(root: Path, docs: list[dict[str, object]]) -> tuple[int, float]:
    path = root / "baseline.json.gz"
    started = time.perf_counter()
    with open(path, "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=GZIP_LEVEL) as out:
            for d in docs:
                out.write(json.dumps(d).encode() + b"\n")
        raw.flush()
        os.fsync(raw.fileno())
    return len(docs), time.perf_counter() - started


def rate(fn: Callable[[Path], tuple[int, float]], base: str) -> float:
    root = Path(tempfile.mkdtemp(prefix="tidelog-delivery-bench-", dir=base))
    try:
        count, seconds = fn(root)
        return count / seconds
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    parser.add_argument("--json", action="store_true", help="print JSON on stdout")
    parser.add_argument("--data", default=tempfile.gettempdir(), help="scratch directory")
    args = parser.parse_args()
    count, repeats = (20_000, 1) if args.quick else (100_000, 3)
    docs = documents(count)
    results = []
    for sync, producers, background in CASES:
        # Each repeat runs the baseline right before tidelog, so both see the
        # same machine load; the ratio is the median of the pairs' ratios.
        pairs = []
        for _ in range(repeats):
            baseline = rate(lambda root: run_baseline(root, docs), args.data)
            ours = rate(
                lambda root: run_tidelog(root, docs, sync, producers, background),  # noqa: B023
                args.data,
            )
            pairs.append((ours, baseline))
        results.append(
            {
                "case": f"put_record_batch -> delivered gzip JSON lines, sync={sync}, "
                f"{producers} producer thread{'s' if producers > 1 else ''}, "
                + ("background deliverer" if background else "one flush after the puts"),
                "records": count,
                "tidelog_records_per_s": round(statistics.median(o for o, _ in pairs)),
                "baseline_records_per_s": round(statistics.median(b for _, b in pairs)),
                "ratio": round(statistics.median(o / b for o, b in pairs), 2),
            }
        )
    if args.json:
        print(json.dumps({"quick": args.quick, "results": results}, indent=2))
        return
    for r in results:
        print(
            f"{r['case']}: {r['tidelog_records_per_s']:,} records/s; baseline "
            f"{r['baseline_records_per_s']:,} records/s (json + gzip); ratio {r['ratio']}x"
        )


if __name__ == "__main__":
    main()
