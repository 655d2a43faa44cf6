"""A consumer group across real processes (issue 20's "Must show").

Four worker processes (tests/group_worker.py) share an 8-shard stream while
the test puts records, splits a shard, SIGKILLs one worker and merges two
shards. Everything is checked from the workers' own logs (one JSON line per
lease event, batch and checkpoint): every record processed, per-shard order,
no shard processed by two workers at once, the killed worker's shards taken
over within 2 lease periods with only records after its last checkpoint
processed twice, and children started only after their parents ended.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from helpers import read_complete_lines

import tidelog
from tidelog.streams import HASH_KEY_MAX

WORKER = Path(__file__).with_name("group_worker.py")
LEASE_MS = 3000
WORKERS = 4
DEADLINE_SECONDS = 120


def start_worker(data: Path, worker_id: str, logs: Path) -> subprocess.Popen[bytes]:
    err = open(logs / f"{worker_id}.err", "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [
            sys.executable,
            str(WORKER),
            str(data),
            "s",
            "app",
            worker_id,
            str(logs / f"{worker_id}.jsonl"),
            str(LEASE_MS),
            "50",  # records a batch
            "3",  # checkpoint every third batch: a killed worker leaves work to redo
        ],
        stderr=err,
    )


def events(logs: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted(logs.glob("*.jsonl")):
        # A line cut by SIGKILL is not an event.
        out.extend(json.loads(line) for line in read_complete_lines(path))
    return out


def wait_for(what: str, condition: Callable[[], bool], procs: list[Any]) -> None:
    """Poll a condition on the store or the logs (the events a test waits for)."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        for proc in procs:
            alive = proc.poll() is None or proc.returncode == -signal.SIGKILL
            assert alive, f"a worker died waiting for {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def put(stream: tidelog.Stream, count: int, tag: str, puts: dict[str, list[str]]) -> None:
    for start in range(0, count, 50):
        batch = [(f"{tag}{i}".encode(), f"key-{i % 64}") for i in range(start, start + 50)]
        for result in stream.put_many(batch):
            assert result.shard_id is not None and result.sequence_number is not None
            puts[result.shard_id].append(result.sequence_number)


def test_four_worker_processes_share_an_8_shard_stream(tmp_path: Path) -> None:
    data, logs = tmp_path / "data", tmp_path / "logs"
    logs.mkdir()
    puts: dict[str, list[str]] = defaultdict(list)
    with tidelog.open(data) as store:
        stream = store.create_stream("s", shards=8)
        group = stream.consumer_group("app")
        put(stream, 1000, "a", puts)
        procs = {f"w{i}": start_worker(data, f"w{i}", logs) for i in range(WORKERS)}
        try:
            # Balanced: each worker holds 2 of the 8 leases.
            def balanced() -> bool:
                held: dict[str | None, int] = defaultdict(int)
                for lease in group.leases():
                    held[lease.owner] += 1
                return sorted(held.items(), key=str) == [(f"w{i}", 2) for i in range(WORKERS)]

            wait_for("balance", balanced, list(procs.values()))
            put(stream, 500, "b", puts)
            # Split shard 0 (so a partition key moves to a child mid-run).
            first = stream.shards()[0]
            middle = (first.starting_hash_key + first.ending_hash_key) // 2
            left, right = stream.split_shard(first.shard_id, middle)
            put(stream, 500, "c", puts)

            # SIGKILL a worker that holds leases and has checkpointed in them.
            victim = next(lease.owner for lease in group.leases() if lease.owner)
            assert victim is not None

            def victim_checkpointed() -> bool:
                return any(
                    e["what"] == "checkpointed" and e["worker"] == victim for e in events(logs)
                )

            wait_for("a checkpoint of the victim", victim_checkpointed, list(procs.values()))
            procs[victim].send_signal(signal.SIGKILL)
            killed_ms = int(time.time() * 1000)
            procs[victim].wait(30)
            # The leases it held at its death, with their epochs.
            victim_leases = {
                lease.shard_id: lease.epoch for lease in group.leases() if lease.owner == victim
            }

            # Merge two adjacent open shards, and put more.
            opened = sorted(stream.shards(open_only=True), key=lambda s: s.starting_hash_key)
            a, b = opened[-2], opened[-1]
            assert a.ending_hash_key + 1 == b.starting_hash_key
            assert b.ending_hash_key == HASH_KEY_MAX
            merged = stream.merge_shards(a.shard_id, b.shard_id)
            put(stream, 1000, "d", puts)
            total = sum(map(len, puts.values()))

            def all_processed() -> bool:
                seen = set()
                for e in events(logs):
                    if e["what"] == "processed":
                        seen.update((e["shard"], seq) for seq in e["seqs"])
                return len(seen) == total

            wait_for("every record processed", all_processed, list(procs.values()))
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs.values():
                proc.wait(60)
        for worker_id, proc in procs.items():
            if worker_id != victim:
                assert proc.returncode == 0, (logs / f"{worker_id}.err").read_text()[-3000:]
        assert store.check() == []

    log = events(logs)
    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in log:
        by_kind[e["what"]].append(e)

    # 1. Every record processed; and per (shard, epoch) in put order, without gaps.
    processed: dict[str, list[tuple[int, list[str]]]] = defaultdict(list)
    for e in by_kind["processed"]:
        processed[e["shard"]].append((e["epoch"], e["seqs"]))
    for shard, seqs in puts.items():
        got = [seq for _, batch in processed[shard] for seq in batch]
        assert set(got) == set(seqs), shard
        by_epoch: dict[int, list[str]] = defaultdict(list)
        for epoch, batch in processed[shard]:
            by_epoch[epoch] += batch
        for epoch, batch in by_epoch.items():
            positions = [seqs.index(seq) for seq in batch]
            assert positions == list(range(positions[0], positions[0] + len(batch))), (
                shard,
                epoch,
            )

    # 2. No shard processed by two workers at once: every batch of epoch e was
    # handed out while its lease was valid, before epoch e + 1 was acquired.
    acquired = {(e["shard"], e["epoch"]): e for e in by_kind["acquired"]}
    for e in by_kind["delivered"]:
        assert e["at_ms"] < e["valid_until_ms"]
        assert acquired[(e["shard"], e["epoch"])]["worker"] == e["worker"]
        later = acquired.get((e["shard"], e["epoch"] + 1))
        if later is not None:
            assert e["at_ms"] <= later["at_ms"], (e, later)

    # 3. The victim's shards were taken over within 2 lease periods of the kill.
    assert victim_leases
    for shard, epoch in victim_leases.items():
        taker = acquired.get((shard, epoch + 1))
        assert taker is not None, (shard, epoch, [e for e in log if e.get("shard") == shard][-12:])
        assert taker["worker"] != victim
        assert taker["at_ms"] - killed_ms <= 2 * LEASE_MS, (shard, taker["at_ms"] - killed_ms)

    # 4. Records processed twice are only those after the last checkpoint of the
    # epoch that processed them first: the victim's (hand-offs and stops checkpoint
    # in shutdown_requested, so they repeat nothing; a worker whose lease lapsed on
    # a slow machine would repeat its own tail, the same rule).
    last_checkpoint: dict[tuple[str, int], str] = {}
    for e in by_kind["checkpointed"]:
        last_checkpoint[(e["shard"], e["epoch"])] = e["seq"]
    counts: dict[tuple[str, str], int] = defaultdict(int)
    tails: set[tuple[str, str]] = set()
    for e in by_kind["processed"]:
        for seq in e["seqs"]:
            counts[(e["shard"], seq)] += 1
        done = int(last_checkpoint.get((e["shard"], e["epoch"]), "0"))
        tails.update((e["shard"], seq) for seq in e["seqs"] if int(seq) > done)
    twice = {key for key, count in counts.items() if count > 1}
    assert all(counts[key] == 2 for key in twice)
    assert twice <= tails, sorted(twice - tails)[:5]
    victim_tail = {
        (e["shard"], seq)
        for e in by_kind["processed"]
        if e["worker"] == victim
        for seq in e["seqs"]
        if int(seq) > int(last_checkpoint.get((e["shard"], e["epoch"]), "0"))
    }
    assert {key for key in twice if key[0] in victim_leases} <= victim_tail

    # 5. Parents before children: a child's lease is first acquired after every
    # parent's SHARD_END, and nothing of the child is handed out before that.
    ended = {e["shard"]: e["at_ms"] for e in by_kind["ended"]}
    lineage = {
        left: [first.shard_id],
        right: [first.shard_id],
        merged: [a.shard_id, b.shard_id],
    }
    for child, parents in lineage.items():
        start = acquired[(child, 1)]["at_ms"]
        for parent in parents:
            assert ended[parent] <= start, (child, parent)
        assert all(
            e["at_ms"] >= max(ended[p] for p in parents)
            for e in by_kind["delivered"]
            if e["shard"] == child
        )
