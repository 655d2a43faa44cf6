#!/usr/bin/env python3
"""The durable commit path: tidelog beside raw append+fdatasync and sqlite3, interleaved.

    python bench/commit_bench.py                 # 3 repeats of 4 slices of 0.5 s a contender
    python bench/commit_bench.py --slice 0.25 --slices 2   # quicker
    python bench/commit_bench.py --json          # JSON on stdout
    python bench/commit_bench.py --profile CASE  # cProfile one tidelog case (see CASES)

Every figure is the median of the repeats of a rate (operations per second)
measured in short slices, each contender taking its turn within a rotation,
so that this VM's fsync speed, which drifts within seconds, moves all of them
alike. Operations count only when they finished before their slice's
deadline (sqlite3's busy handler leaves threads asleep past it). All writes
are durable: tidelog sync="always"; sqlite3 WAL with synchronous=FULL, one
transaction an operation; raw: write(100 B) + fdatasync of an appended file.

Cases (100 B values):
- append1: one thread, log.append; raw; sqlite3 one INSERT a transaction;
- append16: 16 threads, log.append (group commit); sqlite3 with 16 connections;
- async16: 16 asyncio tasks, await log.append_async;
- queue10: send_many(10) + receive(10) + delete_many, per 10 messages; sqlite3
  lease queue (insert / select + update / delete, one transaction each);
- queue1: send + receive + delete of one message; sqlite3 the same.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import tidelog

VALUE = b"v" * 100
THREADS = 16
now = time.perf_counter

Slice = Callable[[float], int]  # run until the deadline; return operations finished by it


def raw_case(root: str) -> Slice:
    path = os.path.join(root, "raw.bin")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def run(deadline: float) -> int:
        n = 0
        while now() < deadline:
            os.write(fd, VALUE)
            os.fdatasync(fd)
            n += 1
        return n

    return run


def _sqlite(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=60)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def sqlite_append_case(root: str, threads: int) -> Slice:
    path = os.path.join(root, f"append{threads}.sqlite")
    first = _sqlite(path)
    first.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v BLOB)")
    conns = [first] + [_sqlite(path) for _ in range(threads - 1)]
    if threads == 1:

        def run1(deadline: float) -> int:
            n = 0
            while now() < deadline:
                first.execute("INSERT INTO t (v) VALUES (?)", (VALUE,))
                n += 1
            return n

        return run1
    return _threaded(
        [lambda c=c: c.execute("INSERT INTO t (v) VALUES (?)", (VALUE,)) for c in conns]
    )


def _threaded(calls: list[Callable[[], Any]]) -> Slice:
    def run(deadline: float) -> int:
        counts = [0] * len(calls)

        def worker(i: int) -> None:
            call = calls[i]
            while now() < deadline:
                call()
                if now() <= deadline:
                    counts[i] += 1

        workers = [threading.Thread(target=worker, args=(i,)) for i in range(len(calls))]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        return sum(counts)

    return run


def tidelog_append_case(store: tidelog.Store, threads: int) -> Slice:
    log = store.create_log(f"append{threads}")
    if threads == 1:

        def run1(deadline: float) -> int:
            n = 0
            while now() < deadline:
                log.append(VALUE)
                n += 1
            return n

        return run1
    return _threaded([lambda: log.append(VALUE)] * threads)


def tidelog_async_case(store: tidelog.Store, tasks: int) -> Slice:
    log = store.create_log(f"async{tasks}")

    def run(deadline: float) -> int:
        counts = [0] * tasks

        async def worker(i: int) -> None:
            while now() < deadline:
                await log.append_async(VALUE)
                if now() <= deadline:
                    counts[i] += 1

        async def main() -> None:
            await asyncio.gather(*(worker(i) for i in range(tasks)))

        asyncio.run(main())
        return sum(counts)

    return run


def tidelog_queue_case(store: tidelog.Store, batch: int) -> Slice:
    queue = store.create_queue(f"q{batch}")

    def run(deadline: float) -> int:
        n = 0
        while now() < deadline:
            if batch == 1:
                queue.send(VALUE)
                [message] = queue.receive(1)
                queue.delete(message.receipt)
            else:
                queue.send_many([VALUE] * batch)
                messages = queue.receive(batch)
                queue.delete_many([m.receipt for m in messages])
            if now() <= deadline:
                n += batch
        return n

    return run


def sqlite_queue_case(root: str, batch: int) -> Slice:
    conn = _sqlite(os.path.join(root, f"queue{batch}.sqlite"))
    conn.execute(
        "CREATE TABLE IF NOT EXISTS q (id INTEGER PRIMARY KEY, body BLOB, visible_at REAL,"
        " receipt INTEGER, receives INTEGER DEFAULT 0)"
    )
    conn.execute("CREATE INDEX IF NOT EXISTS q_visible ON q (visible_at)")
    receipt = 0

    def run(deadline: float) -> int:
        nonlocal receipt
        n = 0
        while now() < deadline:
            t = time.time()
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT INTO q (body, visible_at) VALUES (?, ?)", [(VALUE, t)] * batch)
            conn.execute("COMMIT")
            receipt += 1
            conn.execute("BEGIN IMMEDIATE")
            rows = conn.execute(
                "SELECT id, body FROM q WHERE visible_at <= ? ORDER BY id LIMIT ?", (t, batch)
            ).fetchall()
            ids = [r[0] for r in rows]
            conn.executemany(
                "UPDATE q SET visible_at = ?, receipt = ?, receives = receives + 1 WHERE id = ?",
                [(t + 30, receipt, i) for i in ids],
            )
            conn.execute("COMMIT")
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "DELETE FROM q WHERE id = ? AND receipt = ?", [(i, receipt) for i in ids]
            )
            conn.execute("COMMIT")
            if now() <= deadline:
                n += batch
        return n

    return run


CASES = ("append1", "append16", "async16", "queue10", "queue1")


def build(root: str, store: tidelog.Store) -> dict[str, dict[str, Slice]]:
    """Each case's contenders; "raw" rides along in every rotation."""
    return {
        "append1": {
            "tidelog": tidelog_append_case(store, 1),
            "sqlite3": sqlite_append_case(root, 1),
        },
        "append16": {
            "tidelog": tidelog_append_case(store, THREADS),
            "sqlite3": sqlite_append_case(root, THREADS),
        },
        "async16": {"tidelog": tidelog_async_case(store, THREADS)},
        "queue10": {
            "tidelog": tidelog_queue_case(store, 10),
            "sqlite3": sqlite_queue_case(root, 10),
        },
        "queue1": {"tidelog": tidelog_queue_case(store, 1), "sqlite3": sqlite_queue_case(root, 1)},
    }


def measure(
    cases: dict[str, dict[str, Slice]], raw: Slice, repeats: int, slices: int, slice_s: float
) -> dict[str, dict[str, list[float]]]:
    rates: dict[str, dict[str, list[float]]] = {
        case: {name: [] for name in ["raw", *contenders]} for case, contenders in cases.items()
    }
    for repeat in range(repeats):
        totals: dict[tuple[str, str], list[float]] = {}
        for _ in range(slices):
            for case, contenders in cases.items():
                for name, run in [("raw", raw), *contenders.items()]:
                    start = now()
                    ops = run(start + slice_s)
                    total = totals.setdefault((case, name), [0.0, 0.0])
                    total[0] += ops
                    total[1] += slice_s
        for (case, name), (ops, seconds) in totals.items():
            rates[case][name].append(ops / seconds)
        print(f"[commit_bench] repeat {repeat + 1}/{repeats} done", file=sys.stderr, flush=True)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--slices", type=int, default=4)
    parser.add_argument("--slice", type=float, default=0.5, dest="slice_s")
    parser.add_argument("--data", default=None, help="scratch parent directory")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--profile", choices=CASES)
    parser.add_argument("--cases", default=",".join(CASES))
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="commit_bench-", dir=args.data)
    try:
        store = tidelog.open(os.path.join(root, "store"))
        cases = build(root, store)
        raw = raw_case(root)
        if args.profile:
            run = cases[args.profile]["tidelog"]
            profiler = cProfile.Profile()
            profiler.enable()
            ops = run(now() + 5.0)
            profiler.disable()
            print(f"{args.profile}: {ops / 5.0:,.0f} ops/s under cProfile", file=sys.stderr)
            pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(30)
            return
        wanted = args.cases.split(",")
        cases = {k: v for k, v in cases.items() if k in wanted}
        rates = measure(cases, raw, args.repeats, args.slices, args.slice_s)
        stats = store.commit_stats()
        store.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    medians = {
        case: {name: statistics.median(values) for name, values in by_name.items()}
        for case, by_name in rates.items()
    }
    if args.json:
        json.dump({"medians": medians, "rates": rates}, sys.stdout, indent=2)
        print()
    out = sys.stderr if args.json else sys.stdout
    print(
        f"{'case':<10} {'tidelog/s':>11} {'raw/s':>9} {'sqlite3/s':>10} "
        f"{'x raw':>7} {'x sqlite3':>10}",
        file=out,
    )
    for case, m in medians.items():
        t, r, q = m["tidelog"], m["raw"], m.get("sqlite3")
        q_text = f"{q:10,.0f}" if q else f"{'-':>10}"
        ratio = f"{t / q:10.2f}" if q else f"{'-':>10}"
        print(f"{case:<10} {t:11,.0f} {r:9,.0f} {q_text} {t / r:7.2f} {ratio}", file=out)
    print(
        f"tidelog commits {stats.commits:,}, operations {stats.operations:,} "
        f"(mean group {stats.operations / max(stats.commits, 1):.1f}), flushes {stats.flushes:,}",
        file=out,
    )


if __name__ == "__main__":
    main()
