#!/usr/bin/env python3
"""tidelog log-layer benchmark: each figure beside a baseline measured in the same run.

    python bench/log_bench.py            # full run (about 5 minutes, ~3 GB of scratch)
    python bench/log_bench.py --quick    # about a second per case, smaller logs
    python bench/log_bench.py --json     # JSON on stdout (the table goes to stderr)
    python bench/log_bench.py --profile  # cProfile of the two hottest paths
    python bench/log_bench.py --data DIR # scratch parent directory (default /tmp)
    python bench/log_bench.py --only batched,reopen  # some case groups only

Cases, for 100 B and 1 KiB records (64 KiB for the bandwidth case):

- the machine: append + fdatasync and overwrite-in-place + fdatasync (ops/s);
  sequential write + fsync, O_DIRECT read and page-cache read of a large file (MB/s);
- batched append, 1,000 records per commit, sync="always"
  (baseline: stdlib sqlite3, WAL, synchronous=FULL, 1,000 inserts a transaction);
- single durable append from 1 thread (also as % of the fdatasync rate) and from
  16 threads (group commit) (baseline: sqlite3 WAL FULL, one insert a
  transaction, one connection a thread);
- sequential replay, log.read(0) (baseline: sqlite3 SELECT scan), and for
  64 KiB records as % of the disk's sequential bandwidth;
- reopen after SIGKILL of a child appending to a ~1 GiB log
  (baseline: sqlite3 reopen after SIGKILL of an inserting child, same volume);
- peak RSS (VmHWM) of a child replaying a ~2 GiB log (baseline: the same
  child opening the store without replaying).

MB/s counts record payload bytes (values), 1 MB = 1e6 bytes. Rates are the
median of the repeats; within a repeat the contenders take turns in short
slices (this VM's fsync and CPU speed drift within seconds). The page cache
is never dropped: replays and the cached read-back are warm reads of data
just written. Timing uses only the stdlib; scratch data lives in a fresh
directory under --data that is removed at the end, and each case deletes its
data when done. docs/performance.md has the method, the figures and the targets.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import mmap
import os
import platform
import pstats
import resource
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import tidelog

SIZES = (100, 1024)
BIG = 64 * 1024
FRAME = 4  # tidelog framing a record in a batch (docs/format.md, "Record batch"), roughly
MIB = 1 << 20
GIB = 1 << 30
BATCH = 1000
THREADS = 16
KILL_RECORD = 1024  # record size of the reopen / RSS logs

now = time.perf_counter


def log_progress(msg: str) -> None:
    print(f"[log_bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- configuration and results ------------------------------------------------------


@dataclass
class Config:
    quick: bool
    secs: float  # seconds each contender runs per repeat of a rate case
    repeats: int  # timed runs per case (median reported)
    data: str  # scratch directory (created here, removed at the end)
    reopen_bytes: int  # log size for the reopen-after-kill case
    rss_bytes: int  # log size for the peak-RSS replay case
    big_bytes: int  # bytes of 64 KiB records for the bandwidth case
    disk_bytes: int  # file size for the disk bandwidth reference
    slices: int  # turns per repeat when contenders alternate (see interleave)
    threads: int = THREADS


def make_config(quick: bool, data: str) -> Config:
    if quick:
        return Config(True, 1.0, 1, data, 128 * MIB, 256 * MIB, 256 * MIB, 256 * MIB, 4)
    return Config(False, 3.0, 3, data, GIB, 2 * GIB, GIB, GIB, 6)


@dataclass
class Row:
    case: str
    size: int  # record payload bytes (0: not per record)
    unit: str
    tidelog: float
    baseline: float | None = None
    baseline_name: str = ""
    target: str = ""  # e.g. ">= 1,000,000"
    passed: bool | None = None
    higher_is_better: bool = True
    runs: list[float] = field(default_factory=list)
    baseline_runs: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.tidelog / self.baseline


ROWS: list[Row] = []


def add(row: Row) -> Row:
    ROWS.append(row)
    base = f" | {row.baseline_name} {fmt_num(row.baseline)}" if row.baseline is not None else ""
    verdict = f" | target {row.target}: {verdict_text(row)}" if row.target else ""
    log_progress(
        f"{row.case} | {size_text(row.size)} | {fmt_num(row.tidelog)} {row.unit}{base}{verdict}"
    )
    return row


def check(value: float, op: str, limit: float) -> bool:
    return value >= limit if op == ">=" else value < limit


def verdict_text(row: Row) -> str:
    if row.passed is None:
        return ""
    return "PASS" if row.passed else "MISS"


def fmt_num(x: float | None) -> str:
    if x is None:
        return "-"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:,.1f}"
    return f"{x:,.2f}" if abs(x) >= 0.1 else f"{x:,.3f}"


def size_text(size: int) -> str:
    if size == 0:
        return "-"
    if size % 1024 == 0:
        return f"{size // 1024} KiB"
    return f"{size} B"


def med(values: list[float]) -> float:
    return statistics.median(values)


Runner = Callable[[float], tuple[int, float]]  # run for about `secs`: (units done, seconds)


def stepper(step: Callable[[], int]) -> Runner:
    """A Runner calling step() (which returns the units it did) until the time is up."""

    def runner(secs: float) -> tuple[int, float]:
        done = 0
        t0 = now()
        deadline = t0 + secs
        while True:
            done += step()
            t = now()
            if t >= deadline:
                return done, t - t0

    return runner


def interleave(
    cfg: Config, runners: dict[str, Runner], slices: int | None = None
) -> dict[str, float]:
    """One repeat: each contender runs cfg.secs in all, in cfg.slices turns taken in rotation.

    This VM's fsync and CPU speed drift within seconds; short alternating slices
    give each contender the same weather. Returns units/s per contender.
    """
    done = dict.fromkeys(runners, 0)
    spent = dict.fromkeys(runners, 0.0)
    slices = slices or cfg.slices
    piece = cfg.secs / slices
    for _ in range(slices):
        for name, runner in runners.items():
            n, dt = runner(piece)
            done[name] += n
            spent[name] += dt
    return {name: done[name] / spent[name] for name in runners}


def cpu_ref(n: int = 400_000) -> float:
    """A pure-Python loop (iterations/s): shows how far this VM's CPU speed drifted."""
    t0 = now()
    acc = 0
    for i in range(n):
        acc = (acc + i * 7) & 0xFFFF
    return n / (now() - t0)


def scratch(cfg: Config, name: str) -> str:
    path = os.path.join(cfg.data, name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def remove(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.exists(path):
        os.remove(path)


def dir_bytes(path: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            total += os.path.getsize(os.path.join(root, name))
    return total


# -- sqlite3 baseline helpers ----------------------------------------------------------


def sqlite_connect(path: str, create: bool = True) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=60, check_same_thread=False)
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    assert mode == "wal", mode
    conn.execute("PRAGMA synchronous=FULL")
    if create:
        conn.execute("CREATE TABLE IF NOT EXISTS q (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
    return conn


def sqlite_insert_batch(conn: sqlite3.Connection, rows: list[tuple[bytes]]) -> int:
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO q (body) VALUES (?)", rows)
    conn.execute("COMMIT")
    return len(rows)


def sqlite_scan(conn: sqlite3.Connection) -> tuple[int, int]:
    count = nbytes = 0
    for _id, body in conn.execute("SELECT id, body FROM q"):
        count += 1
        nbytes += len(body)
    return count, nbytes


def tidelog_scan(log: tidelog.Log) -> tuple[int, int]:
    count = nbytes = 0
    for record in log.read(0):
        count += 1
        nbytes += len(record.value)
    return count, nbytes


def sqlite_values_scan(conn: sqlite3.Connection) -> tuple[int, int]:
    count = nbytes = 0
    for (body,) in conn.execute("SELECT body FROM q"):
        count += 1
        nbytes += len(body)
    return count, nbytes


def tidelog_values_scan(log: tidelog.Log) -> tuple[int, int]:
    """The values-only read (Log.read_columns): every value touched, no Record made."""
    count = nbytes = 0
    for columns in log.read_columns(0):
        count += len(columns.values)
        nbytes += sum(map(len, columns.values))
    return count, nbytes


# -- the machine ----------------------------------------------------------------------


def append_fdatasync_step(fd: int, size: int) -> Callable[[], int]:
    """append `size` bytes + fdatasync (fd opened O_APPEND): the file grows, as a log's does."""
    buf = os.urandom(size)

    def step() -> int:
        os.write(fd, buf)
        os.fdatasync(fd)
        return 1

    return step


OVERWRITE_AREA = 16 * MIB


def overwrite_fdatasync_step(fd: int, size: int) -> Callable[[], int]:
    """overwrite `size` bytes in place in a written, fsynced file + fdatasync.

    No size change, so no metadata for the journal: how SQLite syncs its WAL
    once the WAL is reused, and how a preallocated, zero-filled segment would be.
    """
    os.write(fd, bytes(OVERWRITE_AREA))
    os.fsync(fd)
    buf = os.urandom(size)
    where = [0]

    def step() -> int:
        os.pwrite(fd, buf, where[0])
        os.fdatasync(fd)
        where[0] = (where[0] + size) % (OVERWRITE_AREA - size)
        return 1

    return step


def disk_bandwidth(cfg: Config) -> dict[str, list[float]]:
    """The disk's sequential bandwidth, MB/s, from one file of cfg.disk_bytes.

    "write": 1 MiB writes then fsync, timed together. "direct": the file read
    back with O_DIRECT, 1 MiB reads (the device's read rate: the page cache is
    bypassed, nothing is dropped). "cached": the file read back through the page
    cache, 1 MiB readinto (what a warm replay of fresh data could reach at best).
    """
    directory = scratch(cfg, "disk")
    path = os.path.join(directory, "f")
    chunk = os.urandom(MIB)
    total = cfg.disk_bytes
    out: dict[str, list[float]] = {"write": [], "direct": [], "cached": []}
    aligned = mmap.mmap(-1, MIB)  # page-aligned, as O_DIRECT wants
    for _ in range(cfg.repeats):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        t0 = now()
        for _ in range(total // MIB):
            os.write(fd, chunk)
        os.fsync(fd)
        out["write"].append(total / (now() - t0) / 1e6)
        os.close(fd)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECT", 0))
        except OSError:
            fd = -1  # no O_DIRECT here (tmpfs): no device figure
        if fd >= 0:
            got = 0
            t0 = now()
            try:
                while True:
                    n = os.preadv(fd, [aligned], got)
                    if not n:
                        break
                    got += n
                out["direct"].append(got / (now() - t0) / 1e6)
            except OSError:
                pass  # O_DIRECT accepted at open but not for reads: no device figure
            finally:
                os.close(fd)
        buf = bytearray(MIB)
        passes = []
        for _ in range(2):  # the first pass after a write is sometimes slow on this VM
            got = 0
            with open(path, "rb", buffering=0) as f:
                t0 = now()
                while True:
                    n = f.readinto(buf)
                    if not n:
                        break
                    got += n
                passes.append(got / (now() - t0) / 1e6)
            assert got == total
        out["cached"].append(max(passes))
        os.remove(path)
    aligned.close()
    remove(directory)
    return out


# -- batched append and replay ------------------------------------------------------------


def batched_and_replay(cfg: Config, size: int) -> None:
    data = os.urandom(size)
    values = [data] * BATCH

    # tidelog: one store; every repeat appends to the same log, which is then replayed.
    path = scratch(cfg, f"batched-tidelog-{size}")
    store = tidelog.open(path, sync="always")
    log = store.create_log("bench")

    def tl_step() -> int:
        log.append_many(values)
        return BATCH

    # sqlite3: one database, the same way.
    db_dir = scratch(cfg, f"batched-sqlite-{size}")
    conn = sqlite_connect(os.path.join(db_dir, "q.db"))
    rows = [(data,)] * BATCH

    def sq_step() -> int:
        return sqlite_insert_batch(conn, rows)

    tl_step()
    sq_step()
    runners = {"tidelog": stepper(tl_step), "sqlite": stepper(sq_step)}
    tl_runs, sq_runs = [], []
    for _ in range(cfg.repeats):
        rates = interleave(cfg, runners)
        tl_runs.append(rates["tidelog"])
        sq_runs.append(rates["sqlite"])

    rate, base = med(tl_runs), med(sq_runs)
    row = Row(
        "batched append, 1,000/commit, sync=always",
        size,
        "records/s",
        rate,
        base,
        "sqlite3 WAL FULL 1,000/txn",
        runs=tl_runs,
        baseline_runs=sq_runs,
    )
    if size == 100:
        row.target = ">= 5x sqlite3 and >= 2,000,000"
        row.passed = check(rate, ">=", 2_000_000) and check(rate / base, ">=", 5)
    add(row)
    add(
        Row(
            "batched append, 1,000/commit, sync=always",
            size,
            "MB/s",
            rate * size / 1e6,
            base * size / 1e6,
            "sqlite3 WAL FULL 1,000/txn",
        )
    )

    # replay what was just written (warm page cache), both sides, taking turns;
    # then the values-only read beside a SELECT of the value column alone.
    tl_count = log.end_offset
    tl_replay, sq_replay, tl_values, sq_values = [], [], [], []
    sq_count = conn.execute("SELECT count(*) FROM q").fetchone()[0]
    for _ in range(cfg.repeats):
        for scan, runs, want in (
            (lambda: tidelog_scan(log), tl_replay, tl_count),
            (lambda: sqlite_scan(conn), sq_replay, sq_count),
            (lambda: tidelog_values_scan(log), tl_values, tl_count),
            (lambda: sqlite_values_scan(conn), sq_values, sq_count),
        ):
            t0 = now()
            count, _nbytes = scan()
            runs.append(count / (now() - t0))
            assert count == want, (count, want)
    store.close()
    conn.close()
    remove(path)
    remove(db_dir)
    rate, base = med(tl_replay), med(sq_replay)
    note = f"{tl_count:,} records (sqlite3: {sq_count:,})"
    row = Row(
        "replay from offset 0",
        size,
        "records/s",
        rate,
        base,
        "sqlite3 SELECT scan",
        runs=tl_replay,
        baseline_runs=sq_replay,
        note=note,
    )
    if size == 100:
        row.target, row.passed = ">= 1.2x sqlite3", check(rate / base, ">=", 1.2)
    add(row)
    values_rate, values_base = med(tl_values), med(sq_values)
    # Judged against the same SELECT scan as the replay (the bar); a
    # SELECT of the body column alone, a stricter one, is in the note.
    row = Row(
        "values-only replay from offset 0 (read_columns)",
        size,
        "records/s",
        values_rate,
        base,
        "sqlite3 SELECT scan",
        runs=tl_values,
        baseline_runs=sq_replay,
        note=f"{note}; sqlite3 SELECT body alone {values_base:,.0f} records/s "
        f"({values_rate / values_base:.2f}x)",
    )
    if size == 100:
        row.target = ">= 2x sqlite3 SELECT scan"
        row.passed = check(values_rate / base, ">=", 2)
    add(row)
    add(
        Row(
            "replay from offset 0",
            size,
            "MB/s",
            rate * size / 1e6,
            base * size / 1e6,
            "sqlite3 SELECT scan",
        )
    )


def replay_bandwidth(cfg: Config, disk: dict[str, Any]) -> None:
    """64 KiB records: replay MB/s against the disk's sequential bandwidth."""
    data = os.urandom(BIG)
    per_commit = 16  # 1 MiB a commit
    n_commits = max(1, cfg.big_bytes // (BIG * per_commit))
    path = scratch(cfg, "big-tidelog")
    store = tidelog.open(path, sync="always")
    log = store.create_log("big")
    values = [data] * per_commit
    t0 = now()
    for _ in range(n_commits):
        log.append_many(values)
    tl_build = n_commits * per_commit * BIG / (now() - t0) / 1e6
    db_dir = scratch(cfg, "big-sqlite")
    conn = sqlite_connect(os.path.join(db_dir, "q.db"))
    rows = [(data,)] * per_commit
    t0 = now()
    for _ in range(n_commits):
        sqlite_insert_batch(conn, rows)
    sq_build = n_commits * per_commit * BIG / (now() - t0) / 1e6
    tl_runs, sq_runs = [], []
    for _ in range(cfg.repeats):
        t0 = now()
        _count, nbytes = tidelog_scan(log)
        tl_runs.append(nbytes / (now() - t0) / 1e6)
        t0 = now()
        _count, nbytes = sqlite_scan(conn)
        sq_runs.append(nbytes / (now() - t0) / 1e6)
    store.close()
    conn.close()
    remove(path)
    remove(db_dir)
    total = f"{n_commits * per_commit * BIG / MIB:,.0f} MiB"
    add(
        Row(
            "append 64 KiB, 16/commit (builds the replay log)",
            BIG,
            "MB/s",
            tl_build,
            sq_build,
            "sqlite3 WAL FULL 16/txn",
            note=total,
        )
    )
    rate = med(tl_runs)
    add(
        Row(
            "replay from offset 0",
            BIG,
            "MB/s",
            rate,
            med(sq_runs),
            "sqlite3 SELECT scan",
            runs=tl_runs,
            baseline_runs=sq_runs,
            note=total,
        )
    )
    # The target: >= 50% of the disk's sequential bandwidth, the better of its
    # read (O_DIRECT) and write (+ fsync) rates. The page-cache read-back is
    # shown beside it: a stricter bar (memory copy speed), not the target.
    device = max(disk["direct"] + [disk["write"]])
    pct = 100 * rate / device
    add(
        Row(
            "replay MB/s as % of disk sequential bandwidth",
            BIG,
            "%",
            pct,
            target=">= 50%",
            passed=check(pct, ">=", 50),
            note=(
                f"disk {device:,.0f} MB/s = best of O_DIRECT read "
                f"{fmt_num(disk['direct'][0] if disk['direct'] else None)} MB/s "
                f"and write + fsync {disk['write']:,.0f} MB/s"
            ),
        )
    )
    pct_cached = 100 * rate / disk["cached"]
    add(
        Row(
            "replay MB/s as % of page-cache read-back (stricter, no target)",
            BIG,
            "%",
            pct_cached,
            note=f"plain 1 MiB readinto of a warm file: {disk['cached']:,.0f} MB/s",
        )
    )


# -- single durable appends ------------------------------------------------------------------


def single_appends(cfg: Config, size: int) -> None:
    data = os.urandom(size)

    # one thread
    path = scratch(cfg, f"single-tidelog-{size}")
    store = tidelog.open(path, sync="always")
    log = store.create_log("bench")

    def tl_step() -> int:
        log.append(data)
        return 1

    db_dir = scratch(cfg, f"single-sqlite-{size}")
    conn = sqlite_connect(os.path.join(db_dir, "q.db"))
    row = (data,)

    def sq_step() -> int:
        conn.execute("BEGIN")
        conn.execute("INSERT INTO q (body) VALUES (?)", row)
        conn.execute("COMMIT")
        return 1

    # The machine's fdatasync rate is measured in the same rotation (see interleave).
    sync_dir = scratch(cfg, f"fdatasync-{size}")
    append_fd = os.open(os.path.join(sync_dir, "append"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    over_fd = os.open(os.path.join(sync_dir, "overwrite"), os.O_RDWR | os.O_CREAT)
    runners = {
        "append": stepper(append_fdatasync_step(append_fd, size)),
        "overwrite": stepper(overwrite_fdatasync_step(over_fd, size)),
        "tidelog": stepper(tl_step),
        "sqlite": stepper(sq_step),
    }
    tl_step()
    sq_step()
    sync_runs, tl_runs, sq_runs, pcts, sq_pcts, over_runs = [], [], [], [], [], []
    for _ in range(cfg.repeats):
        rates = interleave(cfg, runners)
        sync_runs.append(rates["append"])
        over_runs.append(rates["overwrite"])
        tl_runs.append(rates["tidelog"])
        sq_runs.append(rates["sqlite"])
        pcts.append(100 * rates["tidelog"] / rates["append"])
        sq_pcts.append(100 * rates["sqlite"] / rates["append"])
    os.close(append_fd)
    os.close(over_fd)
    remove(sync_dir)
    store.close()
    remove(path)
    conn.close()
    remove(db_dir)
    fsync_rate = med(sync_runs)
    add(Row("append + fdatasync (the machine)", size, "ops/s", fsync_rate, runs=sync_runs))
    add(
        Row(
            "overwrite in place + fdatasync (the machine)",
            size,
            "ops/s",
            med(over_runs),
            runs=over_runs,
            note="preallocated, fsynced file: no metadata to commit (as SQLite's reused WAL)",
        )
    )
    rate, base = med(tl_runs), med(sq_runs)
    add(
        Row(
            "single durable append, 1 thread",
            size,
            "appends/s",
            rate,
            base,
            "sqlite3 WAL FULL 1/txn",
            runs=tl_runs,
            baseline_runs=sq_runs,
        )
    )
    pct = med(pcts)
    add(
        Row(
            "single durable append, 1 thread, % of fdatasync rate",
            size,
            "%",
            pct,
            med(sq_pcts),
            "sqlite3 WAL FULL 1/txn",
            target=">= 40%",
            passed=check(pct, ">=", 40),
            runs=pcts,
            baseline_runs=sq_pcts,
            note="per repeat, against the append + fdatasync rate measured in the same rotation",
        )
    )

    # many threads: tidelog shares one store (group commit); sqlite3 gets one connection each.
    threads = cfg.threads
    tl_runs, sq_runs, groups = [], [], []
    path = scratch(cfg, f"threads-tidelog-{size}")
    store = tidelog.open(path, sync="always")
    log = store.create_log("bench")
    log.append(data)

    def tl_worker(counts: list[int], i: int, barrier: threading.Barrier, stop: list[float]) -> None:
        append = log.append
        barrier.wait()
        deadline = stop[0]
        n = 0
        while now() < deadline:
            append(data)
            n += 1
        counts[i] = n

    db_dir = scratch(cfg, f"threads-sqlite-{size}")
    db_path = os.path.join(db_dir, "q.db")
    sqlite_connect(db_path).close()

    def sq_worker(counts: list[int], i: int, barrier: threading.Barrier, stop: list[float]) -> None:
        c = sqlite_connect(db_path, create=False)
        barrier.wait()
        deadline = stop[0]
        n = 0
        while now() < deadline:
            c.execute("BEGIN IMMEDIATE")
            c.execute("INSERT INTO q (body) VALUES (?)", row)
            c.execute("COMMIT")
            n += 1
        counts[i] = n
        c.close()

    def threads_runner(worker: Any) -> Runner:
        def runner(secs: float) -> tuple[int, float]:
            counts = [0] * threads
            stop = [0.0]
            barrier = threading.Barrier(threads + 1)
            pool = [
                threading.Thread(target=worker, args=(counts, i, barrier, stop))
                for i in range(threads)
            ]
            for t in pool:
                t.start()
            t0 = now()
            stop[0] = t0 + secs
            barrier.wait()
            for t in pool:
                t.join()
            return sum(counts), now() - t0

        return runner

    logs = store._logs  # commit counters (the `tidelog stats` figures)
    runners = {"tidelog": threads_runner(tl_worker), "sqlite": threads_runner(sq_worker)}
    for _ in range(cfg.repeats):
        commits, ops = logs.commit_count, logs.op_count
        # Longer turns here: sqlite3's busy handler backs off (sleeps up to 100 ms)
        # under 16 writers, and a short turn would mostly time its last sleeps.
        rates = interleave(cfg, runners, slices=max(1, cfg.slices // 3))
        tl_runs.append(rates["tidelog"])
        sq_runs.append(rates["sqlite"])
        groups.append((logs.op_count - ops) / max(1, logs.commit_count - commits))
    store.close()
    remove(path)
    remove(db_dir)
    rate = med(tl_runs)
    row16 = Row(
        f"single durable append, {threads} threads",
        size,
        "appends/s",
        rate,
        med(sq_runs),
        f"sqlite3 WAL FULL 1/txn, {threads} conns",
        runs=tl_runs,
        baseline_runs=sq_runs,
        note=f"mean group size {med(groups):.1f} appends/commit",
    )
    if size == 100:
        row16.target, row16.passed = ">= 50,000", check(rate, ">=", 50_000)
    add(row16)


# -- reopen after a kill, and peak RSS of a replay (child processes) -------------------------


def child_cmd(*args: str) -> list[str]:
    return [sys.executable, os.path.abspath(__file__), "--child", *args]


def run_child(*args: str) -> tuple[dict[str, Any], float, int]:
    """Run a child to completion: (its JSON reply, wall seconds, its own peak RSS in KiB)."""
    t0 = now()
    proc = subprocess.Popen(child_cmd(*args), stdout=subprocess.PIPE)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _pid, status, usage = os.wait4(proc.pid, 0)  # this child's rusage, not all children's
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = now() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"child {args} failed with {proc.returncode}")
    return json.loads(out), wall, usage.ru_maxrss


def build_and_kill(*args: str) -> dict[str, Any]:
    """Start a builder child, wait until it says 'ready', let it append a little more, SIGKILL."""
    proc = subprocess.Popen(child_cmd(*args), stdout=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait()
        raise RuntimeError(f"builder {args} exited early ({proc.returncode})")
    info: dict[str, Any] = json.loads(line)
    time.sleep(0.3)  # appends are in flight
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL, proc.returncode
    return info


def reopen_and_rss(cfg: Config) -> None:
    label = "1 GiB" if cfg.reopen_bytes == GIB else f"{cfg.reopen_bytes / MIB:,.0f} MiB"
    quick_note = " (--quick: smaller log)" if cfg.quick else ""
    path = scratch(cfg, "crash-tidelog")
    log_progress(f"building a {label} log in a child, then SIGKILL while it appends")
    built = build_and_kill("build", path, str(cfg.reopen_bytes), "spin")
    size_on_disk = dir_bytes(path)
    reply, wall, _rss = run_child("reopen", path)
    assert reply["end_offset"] >= built["records"], (reply, built)

    db_dir = scratch(cfg, "crash-sqlite")
    db_path = os.path.join(db_dir, "q.db")
    log_progress(f"building a {label} sqlite3 database in a child, then SIGKILL while it inserts")
    sq_built = build_and_kill("sqlite-build", db_path, str(cfg.reopen_bytes), "spin")
    sq_reply, sq_wall, _ = run_child("sqlite-reopen", db_path)
    assert sq_reply["rows"] >= sq_built["records"], (sq_reply, sq_built)
    remove(db_dir)
    note = (
        f"{size_on_disk / MIB:,.0f} MiB on disk{quick_note}; recovery truncated "
        f"{reply['truncated_bytes']:,} uncommitted bytes, dropped {reply['records_dropped']} "
        f"records; whole child process {wall:.2f} s (sqlite3 {sq_wall:.2f} s)"
    )
    target_ok = reply["open_s"] < 1.0
    add(
        Row(
            f"reopen after SIGKILL, {label} log",
            0,
            "s",
            reply["open_s"],
            sq_reply["open_s"],
            "sqlite3 open + count after SIGKILL",
            target="< 1 s (1 GiB)",
            passed=target_ok,
            higher_is_better=False,
            note=note,
        )
    )

    # Peak RSS: grow the same log, then replay it all in a fresh child.
    label = "2 GiB" if cfg.rss_bytes == 2 * GIB else f"{cfg.rss_bytes / MIB:,.0f} MiB"
    log_progress(f"growing the log to {label} for the peak-RSS replay")
    run_child("build", path, str(cfg.rss_bytes), "close")
    size_on_disk = dir_bytes(path)
    idle, _, _ = run_child("idle", path)
    replay, _, ru_maxrss = run_child("replay", path)
    assert replay["records"] == idle["end_offset"]
    remove(path)
    mib = replay["peak_rss_kib"] / 1024
    idle_mib = idle["peak_rss_kib"] / 1024
    note = (
        f"{replay['records']:,} records of {KILL_RECORD} B, {size_on_disk / MIB:,.0f} MiB on disk"
        f"{quick_note}; replayed at {replay['records'] / replay['seconds']:,.0f} records/s, "
        f"{replay['bytes'] / replay['seconds'] / 1e6:,.0f} MB/s; peak RSS is the child's "
        f"VmHWM (its wait4 ru_maxrss, {ru_maxrss / 1024:,.1f} MiB, includes this parent's peak)"
    )
    add(
        Row(
            f"peak RSS replaying a {label} log",
            0,
            "MiB",
            mib,
            idle_mib,
            "same child, open only",
            target="< 100 MiB",
            passed=mib < 100,
            higher_is_better=False,
            note=note,
        )
    )


# child entry points (run as: log_bench.py --child NAME ARGS...)


def peak_rss_kib() -> int:
    """This process's peak resident set (VmHWM), KiB.

    ru_maxrss of a child (RUSAGE_CHILDREN or wait4) is no good here: Linux
    carries the parent's peak RSS over into a child spawned by (v)fork + exec,
    so every child would report at least this benchmark's own peak.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child_build(path: str, target: str, then: str) -> None:
    """Append 1 KiB records, 1,000 a commit, until the log holds `target` bytes.

    then == "spin": say ready on stdout, then go on appending until killed.
    then == "close": close the store and reply.
    """
    target_bytes = int(target)
    data = os.urandom(KILL_RECORD)
    values = [data] * BATCH
    store = tidelog.open(path, sync="always")
    log = store.create_log("crash", exist_ok=True)
    held = log.end_offset * (FRAME + KILL_RECORD)
    while held < target_bytes:
        log.append_many(values)
        held += BATCH * (FRAME + KILL_RECORD)
    reply = {"records": log.end_offset, "bytes": held}
    if then == "spin":
        print(json.dumps(reply), flush=True)
        while True:
            log.append_many(values)
    store.close()
    print(json.dumps(reply), flush=True)


def child_reopen(path: str) -> None:
    t0 = now()
    store = tidelog.open(path, sync="always")
    end = store.log("crash").end_offset
    seconds = now() - t0
    report = store.recovery_report
    truncated = sum(item.uncommitted_bytes_truncated for item in report.logs) if report else 0
    dropped = report.records_dropped if report else 0
    store.close()
    reply = {"open_s": seconds, "end_offset": end, "truncated_bytes": truncated}
    reply["records_dropped"] = dropped
    print(json.dumps(reply), flush=True)


def child_idle(path: str) -> None:
    store = tidelog.open(path, sync="always")
    end = store.log("crash").end_offset
    store.close()
    print(json.dumps({"end_offset": end, "peak_rss_kib": peak_rss_kib()}), flush=True)


def child_replay(path: str) -> None:
    store = tidelog.open(path, sync="always")
    log = store.log("crash")
    t0 = now()
    count, nbytes = tidelog_scan(log)
    seconds = now() - t0
    store.close()
    reply = {"records": count, "bytes": nbytes, "seconds": seconds, "peak_rss_kib": peak_rss_kib()}
    print(json.dumps(reply), flush=True)


def child_sqlite_build(db_path: str, target: str, then: str) -> None:
    target_bytes = int(target)
    rows = [(os.urandom(KILL_RECORD),)] * BATCH
    conn = sqlite_connect(db_path)
    held = 0
    while held < target_bytes:
        sqlite_insert_batch(conn, rows)
        held += BATCH * KILL_RECORD
    records = conn.execute("SELECT max(id) FROM q").fetchone()[0]
    print(json.dumps({"records": records, "bytes": held}), flush=True)
    if then == "spin":
        while True:
            sqlite_insert_batch(conn, rows)
    conn.close()


def child_sqlite_reopen(db_path: str) -> None:
    t0 = now()
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("PRAGMA synchronous=FULL")
    rows = conn.execute("SELECT max(id) FROM q").fetchone()[0]
    seconds = now() - t0
    conn.close()
    print(json.dumps({"open_s": seconds, "rows": rows}), flush=True)


CHILDREN = {
    "build": child_build,
    "reopen": child_reopen,
    "idle": child_idle,
    "replay": child_replay,
    "sqlite-build": child_sqlite_build,
    "sqlite-reopen": child_sqlite_reopen,
}


# -- profile of the hot paths -----------------------------------------------------------------


def profile_hot_paths(cfg: Config, top: int = 15) -> str:
    """cProfile of batched append (100 B, 1,000/commit) and of its replay."""
    data = os.urandom(100)
    values = [data] * BATCH
    path = scratch(cfg, "profile")
    store = tidelog.open(path, sync="always")
    log = store.create_log("bench")
    commits = 300 if cfg.quick else 1500
    out = io.StringIO()

    def report(title: str, prof: cProfile.Profile, seconds: float, records: int) -> None:
        out.write(f"\n## {title}: {records:,} records in {seconds:.2f} s under cProfile\n")
        stats = pstats.Stats(prof, stream=out)
        stats.sort_stats("tottime").print_stats(top)

    prof = cProfile.Profile()
    t0 = now()
    prof.enable()
    for _ in range(commits):
        log.append_many(values)
    prof.disable()
    report("batched append 100 B, 1,000/commit, sync=always", prof, now() - t0, commits * BATCH)
    prof = cProfile.Profile()
    t0 = now()
    prof.enable()
    count, _ = tidelog_scan(log)
    prof.disable()
    report("replay 100 B from offset 0", prof, now() - t0, count)
    store.close()
    remove(path)
    return out.getvalue()


# -- machine description and output ----------------------------------------------------------


def machine(cfg: Config) -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    fstype, device, mountpoint = "", "", ""
    real = os.path.realpath(cfg.data)
    try:
        with open("/proc/mounts") as f:
            for line in f:
                dev, mnt, kind = line.split()[:3]
                inside = real == mnt or real.startswith(mnt.rstrip("/") + "/")
                if inside and len(mnt) >= len(mountpoint):
                    fstype, device, mountpoint = kind, dev, mnt
    except OSError:
        pass
    from tidelog.segments import crc

    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "filesystem": f"{fstype} on {device} (mounted at {mountpoint})",
        "data_dir": real,
        "sqlite": sqlite3.sqlite_version,
        "tidelog": f"{tidelog.__version__} from {os.path.dirname(tidelog.__file__)}",
        "crc32c": crc.IMPLEMENTATION,
    }


def print_table(meta: dict[str, Any], cfg: Config, file: Any = None) -> None:
    out = file or sys.stdout

    def emit(*args: Any) -> None:
        print(*args, file=out)

    emit(f"tidelog log benchmark ({'quick' if cfg.quick else 'full'} run)")
    emit(
        f"machine: {meta['nproc']} cores, {meta['cpu_model']}, Python {meta['python']}, "
        f"{meta['filesystem']}, SQLite {meta['sqlite']}, crc32c via {meta['crc32c']}"
    )
    emit(f"tidelog {meta['tidelog']}")
    emit(
        f"each rate: median of {cfg.repeats} run(s) of {cfg.secs:g} s; MB = 1e6 bytes of payload; "
        "ratio = tidelog / baseline (for s and MiB lower is better)"
    )
    emit(
        f"cpu reference (pure-Python loop, drifts): start {meta['cpu_ref_start']:,.0f}/s, "
        f"end {meta['cpu_ref_end']:,.0f}/s"
    )
    head = ("case", "size", "tidelog", "unit", "baseline", "ratio", "target", "")
    table = [head]
    for r in ROWS:
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else "-"
        base = f"{fmt_num(r.baseline)} ({r.baseline_name})" if r.baseline is not None else "-"
        table.append(
            (
                r.case,
                size_text(r.size),
                fmt_num(r.tidelog),
                r.unit,
                base,
                ratio,
                r.target,
                verdict_text(r),
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(head))]
    right = {2, 5}
    for n, line in enumerate(table):
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(line)
        ]
        emit("  ".join(cells).rstrip())
        if n == 0:
            emit("  ".join("-" * w for w in widths))
    notes = [(r.case, r.size, r.note) for r in ROWS if r.note]
    if notes:
        emit("\nnotes:")
        for case, size, note in notes:
            emit(f"- {case} ({size_text(size)}): {note}")


# -- main -------------------------------------------------------------------------------------


CASES = ("batched", "bandwidth", "single", "reopen")


def run(cfg: Config, only: tuple[str, ...] = CASES) -> None:
    if "batched" in only:
        for size in SIZES:
            log_progress(f"batched append and replay, {size} B")
            batched_and_replay(cfg, size)
    if "bandwidth" in only:
        log_progress("disk sequential bandwidth: write + fsync, O_DIRECT read, cached read")
        bw = disk_bandwidth(cfg)
        size_note = f"{cfg.disk_bytes / MIB:,.0f} MiB file, 1 MiB writes / reads"
        disk: dict[str, Any] = {"write": med(bw["write"]), "cached": med(bw["cached"])}
        disk["direct"] = [med(bw["direct"])] if bw["direct"] else []
        for key, case in (
            ("write", "sequential write + fsync (the machine)"),
            ("direct", "sequential read, O_DIRECT (the machine)"),
            ("cached", "sequential read-back from page cache (the machine)"),
        ):
            if bw[key]:
                add(Row(case, MIB, "MB/s", med(bw[key]), runs=bw[key], note=size_note))
        log_progress("64 KiB records: replay bandwidth")
        replay_bandwidth(cfg, disk)
    if "single" in only:
        for size in SIZES:
            log_progress(f"single durable appends, {size} B (with the machine's fdatasync rate)")
            single_appends(cfg, size)
    if "reopen" in only:
        reopen_and_rss(cfg)


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        CHILDREN[sys.argv[2]](*sys.argv[3:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short run, smaller logs")
    parser.add_argument(
        "--json", action="store_true", help="results as JSON on stdout (the table goes to stderr)"
    )
    parser.add_argument("--data", default=tempfile.gettempdir(), help="scratch parent (/tmp)")
    parser.add_argument(
        "--profile", action="store_true", help="only profile batched append and replay (cProfile)"
    )
    parser.add_argument(
        "--only",
        default=",".join(CASES),
        help=f"comma-separated case groups to run (default: all of {','.join(CASES)})",
    )
    args = parser.parse_args()
    os.makedirs(args.data, exist_ok=True)
    data = tempfile.mkdtemp(prefix="tidelog-bench-", dir=args.data)
    cfg = make_config(args.quick, data)
    try:
        if args.profile:
            print(profile_hot_paths(cfg))
            return 0
        meta = machine(cfg)
        meta["cpu_ref_start"] = cpu_ref()
        t0 = now()
        only = tuple(name.strip() for name in args.only.split(","))
        unknown = set(only) - set(CASES)
        if unknown:
            parser.error(f"--only: unknown case groups {sorted(unknown)}")
        run(cfg, only)
        meta["cpu_ref_end"] = cpu_ref()
        meta["seconds"] = round(now() - t0, 1)
        meta["peak_rss_self_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    finally:
        shutil.rmtree(data, ignore_errors=True)
    if args.json:
        doc = {
            "machine": meta,
            "config": asdict(cfg),
            "rows": [dict(asdict(r), ratio=r.ratio) for r in ROWS],
        }
        json.dump(doc, sys.stdout, indent=1)
        print()
        print_table(meta, cfg, file=sys.stderr)  # the human view, beside the progress lines
    else:
        print_table(meta, cfg)
        print(f"\ntotal {meta['seconds']:,.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
