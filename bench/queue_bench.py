#!/usr/bin/env python3
"""tidelog queue benchmark, beside two baselines measured in the same run.

    python bench/queue_bench.py              # full run
    python bench/queue_bench.py --quick      # small counts (about a minute)
    python bench/queue_bench.py --json       # JSON on stdout (the table goes to stderr)
    python bench/queue_bench.py --flat N     # messages for the LMDB-size case (default 1e6)
    python bench/queue_bench.py --churn N    # only the LMDB-size case, N messages, printed live

All contenders run at the same durability: every acknowledged call is on
stable storage (tidelog sync="always"; sqlite3 WAL with synchronous=FULL;
persist-queue's SQLiteAckQueue, which commits each put/get/ack, in WAL mode
with SQLite's default synchronous=FULL for WAL... as set below). 100-byte
messages. Cases:

- send in batches of 10 (persist-queue has no batch put: one put each);
- receive + delete in batches of 10 (persist-queue: get + ack each);
- single-message round trip: send 1, receive 1, delete 1;
- 16 threads each sending single messages (tidelog group-commits them);
- LMDB size after N messages have passed through (send, receive, delete),
  sampled every N/10: it should stay flat.

Baselines: persist-queue 1.1 SQLiteAckQueue (pip install 'tidelog[bench]')
and a stdlib sqlite3 WAL queue with leases (receive sets visible_at, delete
removes the row).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import tidelog

BODY = b"x" * 100


def rate(count: int, fn: Callable[[], None]) -> float:
    started = time.perf_counter()
    fn()
    return count / (time.perf_counter() - started)


# -- tidelog -------------------------------------------------------------------------


def tidelog_cases(root: str, n: int, threads_n: int) -> dict[str, float]:
    out: dict[str, float] = {}
    with tidelog.open(os.path.join(root, "tl"), sync="always") as store:
        q = store.create_queue("bench")

        def send() -> None:
            for _ in range(n // 10):
                q.send_many([BODY] * 10)

        def recv_delete() -> None:
            while batch := q.receive(max_messages=10):
                q.delete_many([m.receipt for m in batch])

        out["send_batch10"] = rate(n, send)
        out["receive_delete_batch10"] = rate(n, recv_delete)
        out["send_receive_delete_batch10"] = 1 / (
            1 / out["send_batch10"] + 1 / out["receive_delete_batch10"]
        )

        def round_trip() -> None:
            for _ in range(n // 20):
                q.send(BODY)
                [m] = q.receive()
                q.delete(m.receipt)

        out["round_trip_single"] = rate(n // 20, round_trip)
        per_thread = n // threads_n

        def sender() -> None:
            for _ in range(per_thread):
                q.send(BODY)

        def threaded() -> None:
            workers = [threading.Thread(target=sender) for _ in range(threads_n)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()

        out["send_single_16_threads"] = rate(per_thread * threads_n, threaded)
        q.purge()
    return out


def lmdb_flat(root: str, total: int) -> list[tuple[int, int]]:
    """(messages passed through, data.mdb bytes) every total/10 messages."""
    path = os.path.join(root, "flat")
    samples = []
    with tidelog.open(path, sync="never", segment_bytes_max=16 * 1024 * 1024) as store:
        q = store.create_queue("flat")
        step = max(total // 10, 100)
        done = 0
        while done < total:
            for _ in range(step // 100):
                for _ in range(10):
                    q.send_many([BODY] * 10)
                for _ in range(10):
                    q.delete_many([m.receipt for m in q.receive(max_messages=10)])
            done += step
            size = os.path.getsize(os.path.join(path, "index.lmdb", "data.mdb"))
            samples.append((done, size))
    return samples


def churn(root: str, total: int, samples: int = 20) -> list[dict[str, float]]:
    """Send, receive and delete `total` messages in batches of 10 (sync="never").

    Prints a line to stderr every total/samples messages as it goes: messages
    passed through, data.mdb bytes, bytes of segment files left, the rate.
    Size only: sync="never" keeps fsync out of a run of millions.
    """
    path = os.path.join(root, "churn")
    out: list[dict[str, float]] = []
    with tidelog.open(path, sync="never", segment_bytes_max=16 * 1024 * 1024) as store:
        q = store.create_queue("churn")
        step = max(total // samples // 10 * 10, 10)
        done = 0
        started = time.perf_counter()
        print(
            f"{'messages':>12} {'data.mdb bytes':>15} {'segment bytes':>14} {'msgs/s':>8}",
            file=sys.stderr,
            flush=True,
        )
        while done < total:
            for _ in range(step // 10):
                q.send_many([BODY] * 10)
                q.delete_many([m.receipt for m in q.receive(max_messages=10)])
            done += step
            elapsed = time.perf_counter() - started
            size = os.path.getsize(os.path.join(path, "index.lmdb", "data.mdb"))
            segments = sum(
                os.path.getsize(os.path.join(d, f))
                for d, _, files in os.walk(os.path.join(path, "logs"))
                for f in files
            )
            out.append(
                {
                    "messages": done,
                    "data_mdb_bytes": size,
                    "segment_bytes": segments,
                    "seconds": round(elapsed, 1),
                }
            )
            print(
                f"{done:>12,} {size:>15,} {segments:>14,} {done / elapsed:>8,.0f}",
                file=sys.stderr,
                flush=True,
            )
        if len(q) != 0:
            raise RuntimeError(f"churn: {len(q)} messages left in the queue")
    return out


# -- sqlite3 WAL queue with leases --------------------------------------------------------


def sqlite_connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=120000")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS q (id INTEGER PRIMARY KEY, body BLOB, visible_at REAL,"
        " receive_count INTEGER DEFAULT 0)"
    )
    conn.execute("CREATE INDEX IF NOT EXISTS q_visible ON q (visible_at)")
    return conn


def sqlite_send(conn: sqlite3.Connection, bodies: list[bytes]) -> None:
    now = time.time()
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT INTO q (body, visible_at) VALUES (?, ?)", [(b, now) for b in bodies])
    conn.execute("COMMIT")


def sqlite_receive(conn: sqlite3.Connection, count: int) -> list[tuple[int, bytes]]:
    now = time.time()
    conn.execute("BEGIN IMMEDIATE")
    rows = conn.execute(
        "SELECT id, body FROM q WHERE visible_at <= ? ORDER BY visible_at LIMIT ?", (now, count)
    ).fetchall()
    conn.executemany(
        "UPDATE q SET visible_at = ?, receive_count = receive_count + 1 WHERE id = ?",
        [(now + 30, r[0]) for r in rows],
    )
    conn.execute("COMMIT")
    return rows


def sqlite_delete(conn: sqlite3.Connection, ids: list[int]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("DELETE FROM q WHERE id = ?", [(i,) for i in ids])
    conn.execute("COMMIT")


def sqlite_cases(root: str, n: int, threads_n: int) -> dict[str, float]:
    path = os.path.join(root, "q.sqlite")
    conn = sqlite_connect(path)
    out: dict[str, float] = {}

    def send() -> None:
        for _ in range(n // 10):
            sqlite_send(conn, [BODY] * 10)

    def recv_delete() -> None:
        while rows := sqlite_receive(conn, 10):
            sqlite_delete(conn, [r[0] for r in rows])

    out["send_batch10"] = rate(n, send)
    out["receive_delete_batch10"] = rate(n, recv_delete)
    out["send_receive_delete_batch10"] = 1 / (
        1 / out["send_batch10"] + 1 / out["receive_delete_batch10"]
    )

    def round_trip() -> None:
        for _ in range(n // 20):
            sqlite_send(conn, [BODY])
            [row] = sqlite_receive(conn, 1)
            sqlite_delete(conn, [row[0]])

    out["round_trip_single"] = rate(n // 20, round_trip)
    per_thread = n // threads_n

    def sender() -> None:
        own = sqlite_connect(path)
        for _ in range(per_thread):
            sqlite_send(own, [BODY])
        own.close()

    def threaded() -> None:
        workers = [threading.Thread(target=sender) for _ in range(threads_n)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()

    out["send_single_16_threads"] = rate(per_thread * threads_n, threaded)
    conn.close()
    return out


# -- persist-queue ---------------------------------------------------------------------------


def persistqueue_cases(root: str, n: int) -> dict[str, float]:
    try:
        from persistqueue import SQLiteAckQueue
    except ImportError:
        return {}
    q = SQLiteAckQueue(os.path.join(root, "pq"), auto_commit=True, multithreading=True)
    # Same durability as the others: every commit fsynced.
    q._putter.execute("PRAGMA synchronous=FULL")  # noqa: SLF001 - its own connection
    out: dict[str, float] = {}
    count = max(n // 10, 100)

    def send() -> None:
        for _ in range(count):
            q.put(BODY)

    def recv_ack() -> None:
        for _ in range(count):
            item = q.get(block=False)
            q.ack(item)

    out["send_batch10"] = rate(count, send)
    out["receive_delete_batch10"] = rate(count, recv_ack)
    out["send_receive_delete_batch10"] = 1 / (
        1 / out["send_batch10"] + 1 / out["receive_delete_batch10"]
    )

    def round_trip() -> None:
        for _ in range(count // 2):
            q.put(BODY)
            item = q.get(block=False)
            q.ack(item)

    out["round_trip_single"] = rate(count // 2, round_trip)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--flat", type=int, default=None)
    parser.add_argument("--churn", type=int, default=None)
    parser.add_argument("--data", default=None)
    args = parser.parse_args()
    if args.churn:
        root = tempfile.mkdtemp(prefix="tidelog-qchurn-", dir=args.data)
        try:
            samples = churn(root, args.churn)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        if args.json:
            print(json.dumps({"churn": samples}, indent=2))
        return 0
    n = 5_000 if args.quick else 50_000
    flat_total = args.flat or (20_000 if args.quick else 1_000_000)
    root = tempfile.mkdtemp(prefix="tidelog-qbench-", dir=args.data)
    try:
        results: dict[str, Any] = {
            "messages": n,
            "tidelog": tidelog_cases(root, n, 16),
            "sqlite3": sqlite_cases(root, n, 16),
            "persist-queue": persistqueue_cases(root, n),
            "lmdb_flat": lmdb_flat(root, flat_total),
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
    tl, sq, pq = results["tidelog"], results["sqlite3"], results["persist-queue"]
    lines = [f"{'case (msgs/s, 100 B)':34} {'tidelog':>10} {'sqlite3':>10} {'persist-q':>10}"]
    for case in tl:
        lines.append(
            f"{case:34} {tl[case]:10,.0f} {sq.get(case, 0):10,.0f} {pq.get(case, 0):10,.0f}"
        )
    key = "send_receive_delete_batch10"
    if pq:
        lines.append(f"send+receive+delete vs persist-queue: {tl[key] / pq[key]:.1f}x (target 20x)")
    lines.append(f"send+receive+delete vs sqlite3: {tl[key] / sq[key]:.2f}x (target 1x)")
    lines.append(f"16-thread single sends: {tl['send_single_16_threads']:,.0f}/s (target 50,000/s)")
    lines.append("LMDB data.mdb bytes as messages pass through:")
    lines += [f"  {done:>12,} {size:>14,}" for done, size in results["lmdb_flat"]]
    print("\n".join(lines), file=sys.stderr)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
