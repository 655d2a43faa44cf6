#!/usr/bin/env python3
"""tidelog streams benchmark, each figure beside a stdlib sqlite3 baseline run now.

    python bench/stream_bench.py            # full run (about a minute)
    python bench/stream_bench.py --quick    # a few seconds
    python bench/stream_bench.py --json     # machine-readable result on stdout

Cases (100 B records, partition keys "key-<n>"):

- put_many of 500 records, sync="always" (every batch durable before the call
  returns), one-shard stream; baseline: sqlite3 WAL synchronous=FULL, 500
  inserts a transaction;
- get_records sequential read with limit 10,000 over a one-shard stream;
  baseline: sqlite3 SELECT pages of 10,000 rows by rowid;
- fan-in: 4 producer processes, each put_many 500 at a time to one 4-shard
  stream (sync="always"); baseline: 4 processes inserting into one sqlite3
  WAL FULL database, 500 a transaction.

Rates are the median of the repeats; within a repeat tidelog and sqlite3 take
turns (put_many: 6 slices each), and the targets are ratios to sqlite3 in the
same run (put_many >= 3x, get_records >= 1.2x). Scratch data lives under --data
(default /tmp) and is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable

import tidelog

RECORD = b"x" * 100
BATCH = 500


def sqlite_connect(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, timeout=60)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS records (seq INTEGER PRIMARY KEY, shard INTEGER, "
        "partition_key TEXT, data BLOB, arrival_ms INTEGER)"
    )
    return db


def sqlite_insert(db: sqlite3.Connection, rows: list[tuple[int, str, bytes, int]]) -> None:
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO records (shard, partition_key, data, arrival_ms) VALUES (?, ?, ?, ?)", rows
    )
    db.execute("COMMIT")


def paired_rates(
    ours: Callable[[], tuple[int, float]], baseline: Callable[[], tuple[int, float]], repeats: int
) -> tuple[float, float]:
    """Median rates of two contenders run in turns, so both see the same weather."""
    mine, theirs = [], []
    for _ in range(repeats):
        for fn, rates in ((ours, mine), (baseline, theirs)):
            count, seconds = fn()
            rates.append(count / seconds)
    return statistics.median(mine), statistics.median(theirs)


def bench_put_many(root: str, batches: int, repeats: int, slices: int = 6) -> tuple[float, float]:
    """put_many of 500 against sqlite3 500/txn, in `slices` turns each per repeat."""
    batch = [(RECORD, f"key-{i}") for i in range(BATCH)]
    rows = [(0, key, data, 0) for data, key in batch]
    per_slice = max(1, batches // slices)
    mine, theirs = [], []
    for _ in range(repeats):
        path = tempfile.mkdtemp(dir=root)
        store = tidelog.open(os.path.join(path, "t"))
        s = store.create_stream("b", shards=1)
        s.put_many(batch)  # warm: files exist, handles cached
        db = sqlite_connect(os.path.join(path, "b.db"))
        sqlite_insert(db, rows)
        spent = [0.0, 0.0]
        for _ in range(slices):
            start = time.perf_counter()
            for _ in range(per_slice):
                s.put_many(batch)
            spent[0] += time.perf_counter() - start
            start = time.perf_counter()
            for _ in range(per_slice):
                sqlite_insert(db, rows)
            spent[1] += time.perf_counter() - start
        store.close()
        db.close()
        shutil.rmtree(path)
        done = slices * per_slice * BATCH
        mine.append(done / spent[0])
        theirs.append(done / spent[1])
    return statistics.median(mine), statistics.median(theirs)


def bench_get_records(root: str, total: int, repeats: int) -> tuple[float, float]:
    path = tempfile.mkdtemp(dir=root)
    batch = [(RECORD, f"key-{i}") for i in range(BATCH)]
    rows = [(0, key, data, 0) for data, key in batch]
    store = tidelog.open(os.path.join(path, "t"), sync="never")
    s = store.create_stream("b", shards=1)
    db = sqlite_connect(os.path.join(path, "b.db"))
    for _ in range(total // BATCH):
        s.put_many(batch)
        sqlite_insert(db, rows)
    store.sync()

    def ours() -> tuple[int, float]:
        start = time.perf_counter()
        it: str | None = s.get_shard_iterator("shardId-000000000000", "TRIM_HORIZON")
        count = 0
        while it is not None:
            result = s.get_records(it, limit=10_000)
            if not result.records:
                break
            count += len(result.records)
            it = result.next_shard_iterator
        return count, time.perf_counter() - start

    def baseline() -> tuple[int, float]:
        start = time.perf_counter()
        last, count = 0, 0
        while True:
            page = db.execute(
                "SELECT seq, partition_key, data, arrival_ms FROM records WHERE seq > ? "
                "ORDER BY seq LIMIT 10000",
                (last,),
            ).fetchall()
            if not page:
                break
            count += len(page)
            last = page[-1][0]
        return count, time.perf_counter() - start

    try:
        return paired_rates(ours, baseline, repeats)
    finally:
        store.close()
        db.close()
        shutil.rmtree(path)


PRODUCER = textwrap.dedent(
    """
    import sqlite3, sys, time, tidelog
    kind, path, producer, batches = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    batch = [(b"x" * 100, f"p{producer}-key-{i}") for i in range(500)]
    if kind == "tidelog":
        store = tidelog.open(path)
        s = store.stream("fan")
        put = lambda: s.put_many(batch)
    else:
        db = sqlite3.connect(path, isolation_level=None, timeout=60)
        db.execute("PRAGMA synchronous=FULL")
        rows = [(producer, k, d, 0) for d, k in batch]
        def put():
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT INTO records (shard, partition_key, data, arrival_ms) "
                           "VALUES (?, ?, ?, ?)", rows)
            db.execute("COMMIT")
    sys.stdin.readline()  # start together
    start = time.perf_counter()
    for _ in range(batches):
        put()
    print(start, time.perf_counter(), flush=True)
    """
)


def fan_in(kind: str, path: str, batches: int) -> tuple[int, float]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", PRODUCER, kind, path, str(p), str(batches)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for p in range(4)
    ]
    time.sleep(0.5)  # let every child import and open
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    spans = []
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise SystemExit(f"fan-in producer failed ({kind})")
        spans.append(tuple(map(float, out.split())))
    seconds = max(end for _, end in spans) - min(start for start, _ in spans)
    return 4 * batches * BATCH, seconds


def bench_fan_in(root: str, batches: int, repeats: int) -> tuple[float, float]:
    def ours() -> tuple[int, float]:
        path = tempfile.mkdtemp(dir=root)
        with tidelog.open(path) as store:
            store.create_stream("fan", shards=4)
        result = fan_in("tidelog", path, batches)
        shutil.rmtree(path)
        return result

    def baseline() -> tuple[int, float]:
        path = tempfile.mkdtemp(dir=root)
        sqlite_connect(os.path.join(path, "b.db")).close()
        result = fan_in("sqlite", os.path.join(path, "b.db"), batches)
        shutil.rmtree(path)
        return result

    return paired_rates(ours, baseline, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    parser.add_argument("--json", action="store_true", help="print JSON on stdout")
    parser.add_argument("--data", default=tempfile.gettempdir(), help="scratch directory")
    args = parser.parse_args()
    repeats = 1 if args.quick else 3
    root = tempfile.mkdtemp(prefix="stream-bench-", dir=args.data)
    cases = []
    try:
        log = (lambda m: print(m, file=sys.stderr)) if args.json else print
        put = bench_put_many(root, 20 if args.quick else 100, repeats)
        cases.append(("put_many 500 x 100 B, sync=always", "records/s", put, 3.0))
        log(f"put_many: {put[0]:,.0f} records/s (sqlite3 {put[1]:,.0f})")
        read = bench_get_records(root, 50_000 if args.quick else 500_000, repeats)
        cases.append(("get_records sequential, limit 10,000", "records/s", read, 1.2))
        log(f"get_records: {read[0]:,.0f} records/s (sqlite3 {read[1]:,.0f})")
        fan = bench_fan_in(root, 10 if args.quick else 40, repeats)
        cases.append(("fan-in, 4 producer processes, put_many 500", "records/s", fan, None))
        log(f"fan-in: {fan[0]:,.0f} records/s (sqlite3 {fan[1]:,.0f})")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    results = [
        {
            "case": name,
            "unit": unit,
            "tidelog": round(ours),
            "sqlite3": round(base),
            "ratio": round(ours / base, 2),
            "target": target,  # a ratio to sqlite3 in the same run
            "met": None if target is None else ours / base >= target,
        }
        for name, unit, (ours, base), target in cases
    ]
    if args.json:
        print(json.dumps({"quick": args.quick, "results": results}, indent=2))
        return
    print()
    print(f"{'case':44} {'tidelog':>12} {'sqlite3':>12} {'ratio':>7}  target")
    for r in results:
        target = (
            "-" if r["target"] is None else f">= {r['target']}x {'PASS' if r['met'] else 'MISS'}"
        )
        print(f"{r['case']:44} {r['tidelog']:>12,} {r['sqlite3']:>12,} {r['ratio']:>6}x  {target}")


if __name__ == "__main__":
    main()
