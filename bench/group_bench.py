#!/usr/bin/env python3
"""Consumer-group throughput beside a single reader, on one 8-shard stream.

    python bench/group_bench.py            # full run (about a minute)
    python bench/group_bench.py --quick    # a few seconds
    python bench/group_bench.py --json     # machine-readable result on stdout

The stream is filled once (100 B records over 64 keys); each contender then
reads every record from the trim horizon and checkpoints after every batch
of 1,000 (sync="always", so each checkpoint is a durable commit), under a
new consumer name each time:

- single reader: `Consumer.read()` in one process (all shards, parents
  before children), `checkpoint` after every 1,000 records;
- group of 1: one `ConsumerGroup` worker process holding all 8 leases;
- group of 4: four worker processes (2 leases each: `max_leases=2`, so they
  start balanced rather than by hand-offs).

Two cases: no per-record work (reading and checkpointing only), and 20
SHA-256 rounds of each record (about 20 µs of CPU a record), where a
group's processes can use more than one core.

Beside them, the machine's own parallel ceiling is measured in the same run
(4 processes of pure CPU work against one): on a shared 2-core machine it
bounds what any group of processes can gain. Times run from a start signal
every process waits for (imports and store opening excluded) to the last
record processed. Contenders are interleaved
in each repeat and rates are medians; the ratio is against the single
reader of the same repeat. Scratch data lives under --data (default /tmp).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import shutil
import statistics
import sys
import tempfile
import threading
import time
from typing import Any

import tidelog

RECORD = b"x" * 100
SHARDS = 8
BATCH = 1000


def fill(path: str, records: int) -> None:
    with tidelog.open(path) as store:
        stream = store.create_stream("g", shards=SHARDS)
        for start in range(0, records, 500):
            stream.put_many([(RECORD, f"key-{i % 64}") for i in range(start, start + 500)])


def work(data: bytes, rounds: int) -> None:
    """Stand-in for a processor's per-record work: `rounds` SHA-256s of the record."""
    for _ in range(rounds):
        hashlib.sha256(data).digest()


def _spin(rounds: int, go: Any, ready: Any) -> None:
    _ready(ready)
    go.wait()
    work(RECORD, rounds)


def cpu_ceiling(processes: int, rounds: int) -> float:
    """How much faster `processes` processes do the same total work than one, now:
    the parallelism this machine offers while the benchmark runs."""
    ctx = multiprocessing.get_context("spawn")
    times = []
    for count in (1, processes):
        go, ready = ctx.Event(), ctx.Value("q", 0)
        procs = [ctx.Process(target=_spin, args=(rounds // count, go, ready)) for _ in range(count)]
        for proc in procs:
            proc.start()
        while ready.value < count:
            time.sleep(0.01)
        started = time.perf_counter()
        go.set()
        for proc in procs:
            proc.join()
        times.append(time.perf_counter() - started)
    return times[0] / times[1]


def _ready(ready: Any) -> None:
    with ready.get_lock():
        ready.value += 1


def _reader(
    path: str, name: str, go: Any, done: Any, counter: Any, ready: Any, rounds: int
) -> None:
    with tidelog.open(path) as store:
        consumer = store.stream("g").consumer(name)
        _ready(ready)
        go.wait()
        count = 0
        for count, record in enumerate(consumer.read(batch=BATCH), 1):  # noqa: B007
            work(record.data, rounds)
            if count % BATCH == 0:
                consumer.checkpoint(record)
        if count % BATCH:
            consumer.checkpoint(record)
        with counter.get_lock():
            counter.value += count
        done.set()


def _worker(
    path: str,
    name: str,
    index: int,
    leases: int,
    go: Any,
    stop: Any,
    counter: Any,
    ready: Any,
    rounds: int,
) -> None:
    class Counter(tidelog.RecordProcessor):
        def process_records(
            self, records: list[tidelog.StreamRecord], checkpointer: tidelog.Checkpointer
        ) -> None:
            for record in records:
                work(record.data, rounds)
            checkpointer.checkpoint()
            with counter.get_lock():
                counter.value += len(records)

    with tidelog.open(path) as store:
        group = store.stream("g").consumer_group(name)
        worker = group.worker(Counter, worker_id=f"{name}-{index}", batch=BATCH, max_leases=leases)
        _ready(ready)
        go.wait()
        # run(): leases are renewed by their own thread every lease period / 3.
        threading.Thread(target=lambda: (stop.wait(), worker.stop()), daemon=True).start()
        worker.run()


def run(path: str, contender: str, name: str, records: int, rounds: int) -> float:
    """Records per second from the start signal to the last record processed."""
    ctx = multiprocessing.get_context("spawn")
    go, stop = ctx.Event(), ctx.Event()
    counter, ready = ctx.Value("q", 0), ctx.Value("q", 0)
    if contender == "single":
        procs = [ctx.Process(target=_reader, args=(path, name, go, stop, counter, ready, rounds))]
    else:
        workers = 1 if contender == "group1" else 4
        leases = SHARDS // workers
        procs = [
            ctx.Process(
                target=_worker,
                args=(path, name, i, leases, go, stop, counter, ready, rounds),
            )
            for i in range(workers)
        ]
    for proc in procs:
        proc.start()
    while ready.value < len(procs):  # every process has imported and opened the store
        if not all(p.is_alive() for p in procs):
            raise RuntimeError(f"{contender}: a process died starting")
        time.sleep(0.01)
    started = time.perf_counter()
    go.set()
    while counter.value < records:
        if not any(p.is_alive() for p in procs):
            raise RuntimeError(f"{contender}: processes ended at {counter.value}/{records}")
        time.sleep(0.002)
    seconds = time.perf_counter() - started
    stop.set()
    for proc in procs:
        proc.join(60)
    return records / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    parser.add_argument("--json", action="store_true", help="print JSON on stdout")
    parser.add_argument("--data", default=None, help="directory for scratch data")
    parser.add_argument(
        "--work",
        type=int,
        default=None,
        help="SHA-256 rounds of per-record work (default: the cases 0 and 20)",
    )
    args = parser.parse_args()
    records = 40_000 if args.quick else 400_000
    repeats = 1 if args.quick else 3
    root = tempfile.mkdtemp(dir=args.data, prefix="tidelog-group-bench-")
    path = f"{root}/data"
    try:
        fill(path, records)
        contenders = ("single", "group1", "group4")
        cases = [args.work] if args.work is not None else [0, 20]
        result: dict[str, Any] = {"records": records, "shards": SHARDS, "repeats": repeats}
        result["cpu_ceiling_4_processes"] = cpu_ceiling(4, 200_000 if args.quick else 2_000_000)
        for rounds in cases:
            rates: dict[str, list[float]] = {c: [] for c in contenders}
            ratios: dict[str, list[float]] = {c: [] for c in contenders}
            for repeat in range(repeats):
                got = {
                    c: run(path, c, f"{c}-{rounds}-{repeat}", records, rounds) for c in contenders
                }
                for c in contenders:
                    rates[c].append(got[c])
                    ratios[c].append(got[c] / got["single"])
            result[f"work_{rounds}"] = {
                "records_per_second": {c: statistics.median(v) for c, v in rates.items()},
                "ratio_to_single_reader": {c: statistics.median(v) for c, v in ratios.items()},
            }
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
        return
    print(f"{records:,} records of 100 B over {SHARDS} shards, median of {repeats}")
    ceiling = result["cpu_ceiling_4_processes"]
    print(f"the machine now: 4 processes do pure CPU work {ceiling:.2f}x as fast as one")
    print(f"{'work':<8}{'contender':<14}{'records/s':>12}{'ratio':>8}")
    for case, figures in result.items():
        if not case.startswith("work_"):
            continue
        for c, rate in figures["records_per_second"].items():
            ratio = figures["ratio_to_single_reader"][c]
            print(f"{case[5:]:<8}{c:<14}{rate:>12,.0f}{ratio:>8.2f}")


if __name__ == "__main__":
    main()
