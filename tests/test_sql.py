"""SQL over streams, queues and topics (engine/sql.py): one-off queries and pushdown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from helpers import FakeClock

pytest.importorskip("duckdb")
pytest.importorskip("pyarrow")

import tidelog  # noqa: E402
from tidelog.segments import format as fmt  # noqa: E402
from tidelog.segments.fs import OsFileSystem  # noqa: E402


class CountingFileSystem(OsFileSystem):
    """Counts segment opens and preads, by file, to prove what a query read."""

    def __init__(self) -> None:
        self.opened: list[str] = []
        self.preads = 0

    def open_read(self, path: str) -> int:
        self.opened.append(path)
        return super().open_read(path)

    def pread(self, fd: int, size: int, position: int) -> bytes:
        self.preads += 1
        return super().pread(fd, size, position)


def test_stream_json_group_by(store: tidelog.Store) -> None:
    stream = store.create_stream("clicks", shards=3)
    stream.put_many([(json.dumps({"user": f"u{i % 4}", "n": i}), f"key-{i}") for i in range(200)])
    result = store.sql(
        "SELECT data->>'user' AS user, count(*) AS c, sum((data->>'n')::INT) AS total "
        "FROM clicks GROUP BY 1 ORDER BY 1"
    )
    assert result.columns == ["user", "c", "total"]
    expected = [(f"u{k}", 50, sum(i for i in range(200) if i % 4 == k)) for k in range(4)]
    assert result.rows == expected
    rows = store.sql(
        "SELECT shard_id, sequence_number, partition_key, arrival_time FROM clicks "
        "WHERE partition_key = 'key-7'"
    ).dicts()
    assert len(rows) == 1
    put = stream.put("{}", "key-7")
    shard = rows[0]["shard_id"]
    assert shard == put.shard_id  # the same key routes to the same shard
    assert rows[0]["sequence_number"] < put.sequence_number
    assert rows[0]["arrival_time"].tzinfo is not None
    records = list(stream.read(shard))
    assert rows[0]["sequence_number"] in {r.sequence_number for r in records}


def test_queue_and_topic_tables(store: tidelog.Store) -> None:
    queue = store.create_queue("jobs")
    queue.send(json.dumps({"kind": "video", "size": 3}), attributes={"prio": "high", "n": 2})
    queue.send(json.dumps({"kind": "audio", "size": 5}))
    topic = store.create_topic("orders")
    topic.publish(json.dumps({"total": 7}), attributes={"region": "eu"}, subject="new order")
    topic.publish(json.dumps({"total": 5}), attributes={"region": "us"})
    jobs = store.sql(
        "SELECT data->>'kind' AS kind, attributes->>'prio' AS prio, sequence_number, message_id "
        "FROM jobs ORDER BY sequence_number"
    ).rows
    assert [(k, p, s) for k, p, s, _ in jobs] == [("video", "high", 0), ("audio", None, 1)]
    assert len(jobs[0][3]) == 36  # a UUID, as Message.message_id
    orders = store.sql(
        "SELECT sum((data->>'total')::INT), max(subject) FROM orders "
        "WHERE attributes->>'region' IN ('eu', 'us')"
    ).rows
    assert orders == [(12, "new order")]
    # A query may join channels; a stream and a queue may share a name (schema-qualified).
    store.create_stream("jobs")
    store.stream("jobs").put(json.dumps({"kind": "video"}), "k")
    with pytest.raises(tidelog.SqlError, match="ambiguous"):
        store.sql("SELECT * FROM jobs")
    joined = store.sql(
        "SELECT count(*) FROM queue.jobs q JOIN stream.jobs s ON q.data->>'kind' = s.data->>'kind'"
    ).rows
    assert joined == [(1,)]


def test_errors(store: tidelog.Store) -> None:
    store.create_stream("s")
    with pytest.raises(tidelog.SqlError, match="unknown channel 'nope'"):
        store.sql("SELECT * FROM nope")
    with pytest.raises(tidelog.SqlError, match="Parser Error"):
        store.sql("SELEC 1 FROM s")
    with pytest.raises(tidelog.SqlError, match='"nope" not found'):
        store.sql("SELECT nope FROM s")
    with pytest.raises(tidelog.SqlError, match="empty"):
        store.sql("  ")
    assert isinstance(tidelog.SqlError("x"), tidelog.InvalidArgument)


def test_scan_bound(store: tidelog.Store) -> None:
    stream = store.create_stream("s")
    stream.put_many([("x" * 1000, "k")] * 100)
    with pytest.raises(tidelog.ScanLimitExceeded, match="scan_bytes_max=10000"):
        store.sql("SELECT count(*) FROM s", scan_bytes_max=10_000)
    assert store.sql("SELECT count(*) FROM s", scan_bytes_max=1 << 20).rows == [(100,)]


def _hourly_store(path: Path, fs: OsFileSystem, clock: FakeClock) -> tidelog.Store:
    store = tidelog.open(path, sync="never", clock=clock, fs=fs, segment_bytes_max=8192)
    stream = store.create_stream("events", shards=2)
    for hour in range(24):
        for minute in range(0, 60, 2):
            body = {"hour": hour, "minute": minute, "pad": "x" * 400}
            stream.put(json.dumps(body), f"k{minute % 7}")
            clock.advance(120)
    return store


def test_time_range_reads_only_that_hours_segments(tmp_path: Path) -> None:
    fs = CountingFileSystem()
    clock = FakeClock(1_700_000_000.0)
    store = _hourly_store(tmp_path / "data", fs, clock)
    try:
        fs.opened.clear()
        everything = store.sql("SELECT count(*) FROM events").rows
        all_segments = set(fs.opened)
        assert everything == [(24 * 30,)]
        assert len(all_segments) >= 40  # a day of records over many small segments

        fs.opened.clear()
        fs.preads = 0
        last_hour = store.sql(
            "SELECT count(*), min((data->>'hour')::INT) FROM events "
            "WHERE arrival_time >= to_timestamp(?) - INTERVAL 1 HOUR".replace("?", str(clock.now))
        ).rows
        assert last_hour == [(30, 23)]
        # Two shards: the hour's segment(s) per shard, plus the time index's landing segment.
        assert 1 <= len(set(fs.opened)) <= 8, sorted(set(fs.opened))
        assert set(fs.opened) < all_segments

        # BETWEEN, and a shard filter, push down too; results match a full scan.
        start = clock.now - 10 * 3600
        fs.opened.clear()
        window = store.sql(
            f"SELECT count(*) FROM events WHERE shard_id = 'shardId-000000000001' AND "
            f"arrival_time BETWEEN to_timestamp({start}) AND to_timestamp({start + 3599.999})"
        ).rows
        assert all("/" in p for p in fs.opened) and len(set(fs.opened)) <= 4
        full = store.sql(
            "SELECT count(*) FROM (SELECT * FROM events) e WHERE "
            f"shard_id = 'shardId-000000000001' AND arrival_time >= to_timestamp({start}) "
            f"AND arrival_time < to_timestamp({start + 3600})"
        ).rows
        assert window == full and window[0][0] > 0
    finally:
        store.close()


def test_sequence_number_pushdown(tmp_path: Path) -> None:
    fs = CountingFileSystem()
    with tidelog.open(tmp_path / "d", sync="never", fs=fs, segment_bytes_max=4096) as store:
        stream = store.create_stream("s")
        # 2,000 records fill about 10 segments of 4 KiB (format 2 frames them in 12 B each).
        results = [
            result
            for chunk in range(0, 2000, 500)
            for result in stream.put_many(
                [(f'{{"i": {i}}}', "k") for i in range(chunk, chunk + 500)]
            )
        ]
        middle = results[1000].sequence_number
        fs.opened.clear()
        rows = store.sql(
            f"SELECT (data->>'i')::INT FROM s WHERE sequence_number >= '{middle}' "
            "ORDER BY 1 LIMIT 3"
        ).rows
        assert rows == [(1000,), (1001,), (1002,)]
        opened_after = len(set(fs.opened))
        fs.opened.clear()
        store.sql("SELECT count(*) FROM s")
        assert opened_after < len(set(fs.opened))
        queue = store.create_queue("q")
        for i in range(10):
            queue.send(str(i))
        assert store.sql("SELECT data FROM q WHERE sequence_number > 7").rows == [("8",), ("9",)]


def test_binary_payloads_are_decoded_with_replacement(store: tidelog.Store) -> None:
    store.create_stream("bin").put(b"\xff\xfe{}", "k")
    (value,) = store.sql("SELECT data FROM bin").rows[0]
    assert value.endswith("{}") and "\ufffd" in value


_RSS_CHILD = """
import json, resource, sys, tidelog
with tidelog.open(sys.argv[1], sync="never") as store:
    s = store.create_stream("big", shards=2)
    body = json.dumps({"user": "u", "pad": "x" * 4000})
    for i in range(int(sys.argv[2]) // 500):
        s.put_many([(body, f"k{j}") for j in range(500)])
    from tidelog import sql
    sql.run_sql(store, "SELECT count(*) FROM big WHERE sequence_number < ''")  # imports, warm-up
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    query = "SELECT data->>'user', count(*) FROM big GROUP BY 1"
    rows = sql.run_sql(store, query, threads=1, scan_workers=1).rows
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # The same scan in two worker processes: each must stay bounded too.
    parallel = sql.run_sql(store, query, threads=1, scan_workers=2).rows
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"rows": rows, "parallel_rows": parallel, "before_kib": before,
                  "after_kib": after, "worker_kib": workers}))
"""


_IDLE_WORKER = """
import resource, pyarrow, tidelog.sql, tidelog.sql_scan
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def test_memory_stays_bounded_over_a_large_stream(tmp_path: Path) -> None:
    """A GROUP BY over ~240 MiB of log grows the process by far less than that.

    (Peak RSS over a multi-GiB stream is in bench/sql_bench.py.)
    """
    records = 60_000  # x ~4 KiB = ~240 MiB
    out = subprocess.run(
        [sys.executable, "-c", _RSS_CHILD, str(tmp_path / "d"), str(records)],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures["rows"] == figures["parallel_rows"] == [["u", records]]
    log_mib = sum(
        os.path.getsize(os.path.join(root, f))
        for root, _dirs, files in os.walk(tmp_path / "d" / "logs")
        for f in files
    ) / (1 << 20)
    growth_mib = (figures["after_kib"] - figures["before_kib"]) / 1024
    assert log_mib > 200
    assert growth_mib < log_mib / 3, (growth_mib, log_mib)
    # A scan worker grows from an interpreter with tidelog and pyarrow loaded
    # by far less than the ~116 MiB of log it read.
    idle = subprocess.run(
        [sys.executable, "-c", _IDLE_WORKER], check=True, capture_output=True, text=True
    )
    worker_growth_mib = (figures["worker_kib"] - int(idle.stdout)) / 1024
    assert worker_growth_mib < log_mib / 6, (worker_growth_mib, log_mib)


def test_self_join_reads_the_table_for_each_reference(store: tidelog.Store) -> None:
    stream = store.create_stream("s")
    stream.put_many([(json.dumps({"i": i}), "k") for i in range(5)])
    rows = store.sql(
        "SELECT count(*) FROM s a JOIN s b ON (a.data->>'i')::INT + 1 = (b.data->>'i')::INT"
    ).rows
    assert rows == [(4,)]


def test_time_bounds_with_sub_millisecond_constants(tmp_path: Path) -> None:
    clock = FakeClock(1_700_000_000.25)
    with tidelog.open(tmp_path / "d", sync="never", clock=clock) as store:
        stream = store.create_stream("s")
        stream.put("a", "k")
        clock.advance(0.001)
        stream.put("b", "k")
        at = "TIMESTAMPTZ '2023-11-14 22:13:20.2505+00'"  # between the two records
        assert store.sql(f"SELECT data FROM s WHERE arrival_time < {at}").rows == [("a",)]
        assert store.sql(f"SELECT data FROM s WHERE arrival_time > {at}").rows == [("b",)]
        exact = "TIMESTAMP '2023-11-14 22:13:20.250'"  # naive: UTC
        assert store.sql(f"SELECT data FROM s WHERE arrival_time = {exact}").rows == [("a",)]
        assert store.sql(f"SELECT data FROM s WHERE arrival_time <= {exact}").rows == [("a",)]


def _scan_workers_running() -> list[int]:
    """Pids of this process's children that are SQL scan workers."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if ppid == os.getpid() and b"tidelog.sql_scan" in cmdline:
            found.append(int(entry))
    return found


def test_worker_processes_read_the_same_rows(tmp_path: Path) -> None:
    clock = FakeClock(1_700_000_000.0)
    with tidelog.open(tmp_path / "d", sync="never", clock=clock) as store:
        stream = store.create_stream("clicks", shards=4)
        for _hour in range(3):
            stream.put_many(
                [(json.dumps({"user": f"u{i % 7}", "n": i}), f"k{i}") for i in range(300)]
            )
            clock.advance(3600)
        queries = [
            "SELECT shard_id, sequence_number, partition_key, data, arrival_time FROM clicks "
            "ORDER BY sequence_number",
            "SELECT data->>'user' AS u, count(*), sum((data->>'n')::INT) FROM clicks "
            "WHERE arrival_time >= TIMESTAMPTZ '2023-11-14 23:13:20+00' GROUP BY 1 ORDER BY 1",
        ]
        for query in queries:
            here = store.sql(query, scan_workers=1)
            there = store.sql(query, scan_workers=3)
            assert there.rows == here.rows and there.columns == here.columns
            assert len(here.rows) > 0
        assert store.sql("SELECT count(*) FROM clicks", scan_workers=2).rows == [(900,)]
        # A LIMIT met early stops the workers; none is left running.
        assert len(store.sql("SELECT * FROM clicks LIMIT 3", scan_workers=2).rows) == 3
        assert _scan_workers_running() == []
        with pytest.raises(tidelog.InvalidArgument, match="scan_workers"):
            store.sql("SELECT 1", scan_workers=0)


def test_a_damaged_record_raises_corruption_not_a_duckdb_error(tmp_path: Path) -> None:
    with tidelog.open(tmp_path / "d", sync="never") as store:
        stream = store.create_stream("s", shards=2)
        stream.put_many([(json.dumps({"i": i}), f"k{i}") for i in range(200)])
        stream.put_many([(json.dumps({"i": i}), f"k{i}") for i in range(200, 400)])
    segment = sorted((tmp_path / "d" / "logs").rglob("*.seg"))[0]
    data = bytearray(segment.read_bytes())
    # A bit flip inside the shard's second batch (each put_many is one batch a shard).
    first_batch = fmt.BATCH_PREFIX_BYTES + int.from_bytes(data[32:36], "little")
    data[fmt.SEGMENT_HEADER_BYTES + first_batch + 60] ^= 0x40
    segment.write_bytes(bytes(data))
    with tidelog.open(tmp_path / "d", sync="never", readonly=True) as store:
        for workers in (1, 2):  # in this process, then in workers: the same error
            with pytest.raises(tidelog.Corruption) as raised:
                store.sql("SELECT count(*) FROM s", scan_workers=workers)
            assert raised.value.log is not None and raised.value.log.startswith("stream")
            assert raised.value.offset is not None and 0 < raised.value.offset < 400
            assert raised.value.path == str(segment)
            assert _scan_workers_running() == []


def test_memory_limit_spills_to_a_private_directory_not_the_cwd(
    store: tidelog.Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past memory_limit DuckDB spills; never into `.tmp` of the caller's directory
    (DuckDB's default for an in-memory database)."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    store.create_stream("s").put("{}", "k")
    big_aggregate = (  # ~290 MB of distinct keys
        "SELECT count(DISTINCT repeat(md5(i::VARCHAR), 6)) FROM range(1500000) r(i)"
    )
    seen: set[str] = set()
    done = threading.Event()

    def watch() -> None:  # DuckDB removes its spill files when the query ends: look during
        while not done.wait(0.005):
            seen.update(p.name for p in cwd.iterdir())

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        assert store.sql(big_aggregate, memory_limit="100MB").rows == [(1_500_000,)]
    finally:
        done.set()
        watcher.join()
    assert seen == set() and list(cwd.iterdir()) == []
    with pytest.raises(tidelog.SqlError, match="Out of Memory"):
        store.sql(
            "SELECT length(string_agg(repeat('x', 1000), '')) FROM s, range(100000)",
            memory_limit="20MB",
        )
    with pytest.raises(tidelog.InvalidArgument, match="memory_limit"):
        store.sql("SELECT 1", memory_limit="lots")
