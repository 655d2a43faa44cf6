"""SIGKILL the deliverer (a child process) at random points: every record lands exactly once."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import tidelog

# The child delivers forever in small batches, as `tidelog deliver` does.
CHILD = """
import sys, tidelog
with tidelog.open(sys.argv[1]) as store:
    ds = store.delivery_stream("f")
    print("ready", flush=True)
    while True:
        if ds.flush() is not None:
            print("batch", flush=True)
"""

RECORD_PAD = "x" * 3000  # ~3 KiB records: a 1 MiB batch holds ~340 of them


def _objects(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_sigkill_deliverer_at_random_points(tmp_path: Path) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    print(f"seed {seed}")  # replay: random.Random(seed)
    data, out = tmp_path / "data", tmp_path / "out"
    with tidelog.open(data) as store:
        ds = store.create_delivery_stream(
            "f",
            destination=out,
            buffering_size_mib=1,
            buffering_interval=0,
            newline_delimiter=True,
        )
    next_id = 0
    kills = interrupted = delivered = 0
    for _round in range(8):
        with tidelog.open(data) as store:
            ds = store.delivery_stream("f")
            # 9-15 batches of ~1 MiB per round: the child needs far longer than
            # the random pause below to deliver them all, so the kill lands
            # mid-way even when the machine is fast.
            for _ in range(rng.randrange(10, 16)):
                batch = [json.dumps({"id": next_id + i, "pad": RECORD_PAD}) for i in range(300)]
                ds.put_record_batch(batch)
                next_id += 300
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(data)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert child.stdout is not None and child.stdout.readline() == "ready\n"
            # After the child's first batch, with more to go: the kill lands at a
            # random point of a later batch (plan, write, rename, commit).
            assert child.stdout.readline() == "batch\n"
            time.sleep(rng.uniform(0.0, 0.01))
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
            if child.stdout is not None:
                child.stdout.close()
        kills += child.returncode == -signal.SIGKILL
        with tidelog.open(data) as store:
            stats = store.delivery_stream("f").stats()
            interrupted += stats.buffered_records > 0 and stats.records_delivered > delivered
            delivered = stats.records_delivered
    assert kills == 8
    # Most kills land mid-delivery (records both delivered and still buffered).
    assert interrupted >= 2, f"only {interrupted} kills interrupted a delivery (seed {seed})"
    with tidelog.open(data) as store:
        ds = store.delivery_stream("f")
        ds.flush_all()
        stats = ds.stats()
        assert store.check() == []
    ids: list[int] = []
    for path in _objects(out):
        assert not path.name.endswith(".tmp"), f"temp file left: {path} (seed {seed})"
        ids.extend(json.loads(line)["id"] for line in path.read_bytes().splitlines())
    assert sorted(ids) == list(range(next_id)), f"lost or duplicated records (seed {seed})"
    assert stats.records_delivered == next_id and stats.objects == len(_objects(out))
