"""SQL benchmark: a GROUP BY over a stream, beside sqlite3 and a plain Python loop.

    python bench/sql_bench.py            # 10,000,000 records, 2 GiB memory run
    python bench/sql_bench.py --quick    # 1,000,000 records, 256 MiB memory run
    python bench/sql_bench.py --json     # figures as JSON on stdout

The stream holds JSON records `{"user": "u<k>", "n": <i>}` (about 30 bytes)
over 4 shards. One query, three ways, in the same run:

- tidelog: `store.sql(...)`, reading the log and streaming Arrow batches to DuckDB
  (scan worker processes, one a core, for a large scan; then again with
  scan_workers=1, in this process only);
- sqlite3: the same rows already loaded in a table (loading not timed), the
  same GROUP BY with json_extract;
- Python: a loop over `stream.read` of every shard with json.loads and a dict.

Then, in a child process, a GROUP BY over a multi-GiB stream of 1 KiB
records, reporting the child's peak RSS (bounded memory).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from typing import Any

import tidelog

USERS = 1000
SHARDS = 4
QUERY = (
    "SELECT data->>'user' AS user, count(*) AS n, sum((data->>'n')::BIGINT) AS total "
    "FROM bench GROUP BY 1 ORDER BY 1"
)
SQLITE_QUERY = (
    "SELECT json_extract(data, '$.user') AS user, count(*), sum(json_extract(data, '$.n')) "
    "FROM bench GROUP BY 1 ORDER BY 1"
)


def _load(store: tidelog.Store, records: int, body_bytes: int = 0) -> None:
    stream = store.create_stream("bench", shards=SHARDS)
    tail = f',"pad":"{"x" * body_bytes}"' if body_bytes else ""
    batch: list[tuple[str, str]] = []
    for i in range(records):
        user = f"u{i % USERS}"
        body = f'{{"user":"{user}","n":{i}{tail}}}'
        batch.append((body, user))
        if len(batch) == 500:
            stream.put_many(batch)
            batch = []
    if batch:
        stream.put_many(batch)


def _python_loop(store: tidelog.Store) -> dict[str, tuple[int, int]]:
    stream = store.stream("bench")
    out: dict[str, list[int]] = {}
    loads = json.loads
    for shard in stream.shards():
        for record in stream.read(shard.shard_id):
            doc = loads(record.data)
            entry = out.get(doc["user"])
            if entry is None:
                out[doc["user"]] = entry = [0, 0]
            entry[0] += 1
            entry[1] += doc["n"]
    return {k: (v[0], v[1]) for k, v in out.items()}


def _sqlite(store: tidelog.Store, path: str) -> tuple[float, list[Any]]:
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE bench (shard_id TEXT, sequence_number TEXT, partition_key TEXT, "
        "data TEXT, arrival_time INTEGER)"
    )
    stream = store.stream("bench")
    for shard in stream.shards():
        rows = (
            (
                r.shard_id,
                r.sequence_number,
                r.partition_key,
                r.data.decode(),
                r.arrival_timestamp_ms,
            )
            for r in stream.read(shard.shard_id)
        )
        db.executemany("INSERT INTO bench VALUES (?, ?, ?, ?, ?)", rows)
    db.commit()
    started = time.perf_counter()
    rows_out = db.execute(SQLITE_QUERY).fetchall()
    elapsed = time.perf_counter() - started
    db.close()
    return elapsed, rows_out


def _rss_child(path: str, gib: float) -> None:
    """Load `gib` GiB of 1 KiB records, then GROUP BY over them; print figures."""
    records = int(gib * (1 << 30) / 1024)
    with tidelog.open(path, sync="never") as store:
        started = time.perf_counter()
        _load(store, records, body_bytes=990)
        load_s = time.perf_counter() - started
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        started = time.perf_counter()
        result = store.sql(QUERY)
        query_s = time.perf_counter() - started
        rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        worker_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    log_bytes = sum(
        os.path.getsize(os.path.join(root, f))
        for root, _dirs, files in os.walk(os.path.join(path, "logs"))
        for f in files
    )
    print(
        json.dumps(
            {
                "records": records,
                "log_bytes": log_bytes,
                "load_s": round(load_s, 2),
                "query_s": round(query_s, 2),
                "groups": len(result),
                "rss_before_query_bytes": rss_before,
                "rss_peak_bytes": rss_peak,
                "scan_worker_rss_peak_bytes": worker_peak,  # the largest worker's
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 M records, 256 MiB memory run")
    parser.add_argument("--json", action="store_true", help="print figures as JSON")
    parser.add_argument("--records", type=int, default=None)
    parser.add_argument("--rss-gib", type=float, default=None)
    parser.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        _rss_child(args.rss_child, args.rss_gib or 0.25)
        return
    records = args.records or (1_000_000 if args.quick else 10_000_000)
    rss_gib = args.rss_gib or (0.25 if args.quick else 2.0)
    figures: dict[str, Any] = {"records": records, "shards": SHARDS, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        with tidelog.open(os.path.join(tmp, "store"), sync="never") as store:
            started = time.perf_counter()
            _load(store, records)
            figures["load_s"] = round(time.perf_counter() - started, 2)
            started = time.perf_counter()
            result = store.sql(QUERY)
            figures["tidelog_sql_s"] = round(time.perf_counter() - started, 3)
            started = time.perf_counter()
            in_process = store.sql(QUERY, scan_workers=1)
            figures["tidelog_sql_one_process_s"] = round(time.perf_counter() - started, 3)
            if in_process.rows != result.rows:
                raise SystemExit("results differ between scan workers and one process")
            started = time.perf_counter()
            loop = _python_loop(store)
            figures["python_loop_s"] = round(time.perf_counter() - started, 3)
            sqlite_s, sqlite_rows = _sqlite(store, os.path.join(tmp, "bench.sqlite"))
            figures["sqlite3_query_s"] = round(sqlite_s, 3)
        expected = sorted((k, v[0], v[1]) for k, v in loop.items())
        if [tuple(r) for r in result.rows] != expected or [tuple(r) for r in sqlite_rows] != [
            tuple(r) for r in expected
        ]:
            raise SystemExit("results differ between tidelog, sqlite3 and the Python loop")
        figures["vs_sqlite3"] = round(figures["sqlite3_query_s"] / figures["tidelog_sql_s"], 2)
        figures["vs_python_loop"] = round(figures["python_loop_s"] / figures["tidelog_sql_s"], 2)
        figures["target_faster_than_sqlite3"] = figures["vs_sqlite3"] > 1
        figures["target_10x_python_loop"] = figures["vs_python_loop"] >= 10
        child = subprocess.run(
            [
                sys.executable,
                __file__,
                "--rss-child",
                os.path.join(tmp, "rss"),
                "--rss-gib",
                str(rss_gib),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        figures["memory"] = json.loads(child.stdout.strip().splitlines()[-1])
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    mem = figures["memory"]
    print(f"GROUP BY over {records:,} stream records ({SHARDS} shards, {USERS} groups)")
    print(f"  load (put_many 500, sync=never): {figures['load_s']} s")
    print(f"  tidelog store.sql (reads the log): {figures['tidelog_sql_s']} s")
    print(f"  the same, scan_workers=1:          {figures['tidelog_sql_one_process_s']} s")
    print(
        f"  sqlite3, rows already in a table:  {figures['sqlite3_query_s']} s "
        f"-> tidelog {figures['vs_sqlite3']}x"
    )
    print(
        f"  Python loop over stream.read:      {figures['python_loop_s']} s "
        f"-> tidelog {figures['vs_python_loop']}x"
    )
    print(
        f"memory: GROUP BY over {mem['log_bytes'] / (1 << 30):.2f} GiB ({mem['records']:,} "
        f"records of 1 KiB): {mem['query_s']} s, peak RSS {mem['rss_peak_bytes'] / (1 << 20):.0f}"
        f" MiB (before the query {mem['rss_before_query_bytes'] / (1 << 20):.0f} MiB), largest"
        f" scan worker {mem['scan_worker_rss_peak_bytes'] / (1 << 20):.0f} MiB"
    )


if __name__ == "__main__":
    main()
