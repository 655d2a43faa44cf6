"""Streams across real processes: fan-in, SIGKILL, iterators and follow between processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from collections import defaultdict
from pathlib import Path

from helpers import collect_complete_lines

import tidelog

PRODUCER = textwrap.dedent(
    """
    import sys, tidelog
    path, producer, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    with tidelog.open(path) as store:
        s = store.stream("fan")
        i = 0
        while i < count:
            if i % 3 == 0:
                s.put(f"{producer}:{i}".encode(), f"p{producer}-k{i % 5}")
                i += 1
            else:
                batch = [(f"{producer}:{j}".encode(), f"p{producer}-k{j % 5}")
                         for j in range(i, min(i + 7, count))]
                assert s.put_many(batch).failed_record_count == 0
                i += len(batch)
    """
)


def run(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True)


def test_four_producer_processes_lose_and_reorder_nothing(tmp_path: Path) -> None:
    path = tmp_path / "d"
    with tidelog.open(path) as store:
        store.create_stream("fan", shards=3)
    count = 150
    procs = [run(PRODUCER, str(path), str(p), str(count)) for p in range(4)]
    for proc in procs:
        assert proc.wait(60) == 0
    with tidelog.open(path) as store:
        per_key: dict[str, list[int]] = defaultdict(list)
        seen = set()
        for record in store.stream("fan").consumer("check").read():
            producer, i = record.data.decode().split(":")
            assert record.partition_key == f"p{producer}-k{int(i) % 5}"
            per_key[record.partition_key].append(int(i))
            seen.add((int(producer), int(i)))
        assert seen == {(p, i) for p in range(4) for i in range(count)}
        assert sum(map(len, per_key.values())) == 4 * count  # no duplicates
        for values in per_key.values():
            assert values == sorted(values)
        assert store.check() == []


KILLED = textwrap.dedent(
    """
    import sys, tidelog
    with tidelog.open(sys.argv[1]) as store:
        s = store.stream("k")
        i = 0
        while True:
            r = s.put(b"rec-%d" % i, "key-%d" % (i % 4))
            print(r.shard_id, r.sequence_number, i, flush=True)
            i += 1
    """
)


def test_sigkill_of_producer_loses_no_returned_put(tmp_path: Path) -> None:
    path = tmp_path / "d"
    with tidelog.open(path) as store:
        store.create_stream("k", shards=2)
    proc = run(KILLED, str(path))
    assert proc.stdout is not None
    lines: list[str] = []
    reader = collect_complete_lines(proc.stdout, lines)
    deadline = time.monotonic() + 30
    while len(lines) < 40 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    reader.join(timeout=30)
    acked = [line.split() for line in lines]
    assert len(acked) >= 40
    with tidelog.open(path) as store:
        s = store.stream("k")
        for shard_id, seq, i in acked:
            got = next(s.read(shard_id, ("AT_SEQUENCE_NUMBER", seq)))
            assert got.sequence_number == seq and got.data == b"rec-%d" % int(i)
        # Nothing after the kill is half-there: every record reads whole.
        total = sum(len(list(s.read(sh.shard_id))) for sh in s.shards())
        assert total >= len(acked)
        assert store.check() == []


def test_iterator_works_in_another_process_and_follow_sees_other_process(tmp_path: Path) -> None:
    path = tmp_path / "d"
    with tidelog.open(path) as store:
        s = store.create_stream("x")
        s.put(b"first", "k")
        iterator = s.get_shard_iterator("shardId-000000000000", "TRIM_HORIZON")
        reader = textwrap.dedent(
            """
            import json, sys, tidelog
            with tidelog.open(sys.argv[1]) as store:
                got = store.stream("x").get_records(sys.argv[2])
                print(json.dumps([r.data.decode() for r in got.records]))
                store.stream("x").put(b"from-child", "k")
            """
        )
        started = time.monotonic()
        follower = s.read("shardId-000000000000", "LATEST", follow=True, timeout=15)
        child = run(reader, str(path), iterator)
        record = next(follower)
        assert record.data == b"from-child"
        assert time.monotonic() - started < 15
        out, _ = child.communicate(timeout=30)
        assert json.loads(out) == ["first"]
