"""Concurrency with real processes and threads: no mocks, sync="always".

Each test checks what a user of a shared log relies on: nothing acknowledged
is lost, nothing is duplicated, offsets are unique and contiguous, each
writer's records keep the writer's order, readers see only committed records
and are not held up by writers, and waiters wake when a record lands.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import complete_lines

import tidelog
from tidelog.segments.writer import WriteContext

# A writer process: opens the store, says "ready", waits for "go" on stdin
# (so all writers start together), appends, printing each call it got back.
WRITER_SOURCE = r"""
import json
import random
import sys

import tidelog

path, log_name, worker, calls, seed = sys.argv[1:6]
worker, calls = int(worker), int(calls)
rng = random.Random(int(seed))
store = tidelog.open(path, sync="always")
# All race to create it. Small segments, so the writers' rolls interleave too.
log = store.create_log(log_name, exist_ok=True, segment_bytes_max=16 * 1024)
print("ready", flush=True)
sys.stdin.readline()
seq = 0
for _ in range(calls):
    count = 1 if rng.random() < 0.7 else rng.randint(2, 5)
    values = []
    for i in range(count):
        size = rng.randint(0, 300)
        values.append(f"w{worker}:{seq + i}:{size}:".encode() + b"x" * size)
    if count == 1:
        first = log.append(values[0])
    else:
        first = log.append_many(values).start
    print(json.dumps([first, seq, count]), flush=True)  # acknowledged
    seq += count
store.close()
print("done", flush=True)
"""

# Appends one record when told to on stdin, then prints its offset.
APPENDER_SOURCE = r"""
import sys

import tidelog

store = tidelog.open(sys.argv[1], sync="always")
log = store.log(sys.argv[2])
print("ready", flush=True)
sys.stdin.readline()
print(log.append(b"from another process"), flush=True)
store.close()
"""

# Reads a log read-only and prints how many records it saw and how long it took.
READER_SOURCE = r"""
import json
import sys
import time

import tidelog

started = time.monotonic()
with tidelog.open(sys.argv[1], readonly=True) as store:
    values = [r.value.decode() for r in store.log(sys.argv[2]).read()]
print(json.dumps({"values": values, "seconds": time.monotonic() - started}), flush=True)
"""


def value_for(worker: int, seq: int, size: int) -> bytes:
    return f"w{worker}:{seq}:{size}:".encode() + b"x" * size


def parse_value(value: bytes) -> tuple[int, int]:
    """(worker, seq) of a value made by value_for; checks the rest of it."""
    worker, seq, size, _ = value.split(b":", 3)
    parsed = int(worker[1:]), int(seq)
    assert value == value_for(parsed[0], parsed[1], int(size)), f"mangled value {value[:60]!r}"
    return parsed


def check_log(records: list[tidelog.Record], acked: dict[int, list[list[int]]], where: str) -> None:
    """Contiguous offsets from 0, every acknowledged record where it was acked,
    nothing else, and each writer's records in the writer's own order."""
    offsets = [r.offset for r in records]
    assert offsets == list(range(len(records))), f"offsets not contiguous {where}"
    expected_total = sum(count for calls in acked.values() for _, _, count in calls)
    assert len(records) == expected_total, (
        f"{len(records)} records but {expected_total} acknowledged {where}"
    )
    owners = [parse_value(r.value) for r in records]
    for worker, calls in acked.items():
        for first, seq, count in calls:
            for i in range(count):
                assert owners[first + i] == (worker, seq + i), (
                    f"offset {first + i} holds {owners[first + i]}, acked for "
                    f"{(worker, seq + i)} {where}"
                )
    order: dict[int, list[int]] = defaultdict(list)
    for worker, seq in owners:
        order[worker].append(seq)
    for worker, seqs in order.items():
        assert seqs == list(range(len(seqs))), f"writer {worker} out of its own order {where}"


def parse_acks(out: str) -> list[list[int]]:
    """[first offset, first seq, count] of each call a writer printed as returned."""
    return [json.loads(line) for line in complete_lines(out) if line.startswith("[")]


def spawn(script: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        _, err = proc.communicate(timeout=30)
        raise AssertionError(f"child failed to start: {line!r} {err[-3000:]}")


@pytest.fixture
def data(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "data"
    yield path
    with tidelog.open(path) as store:
        assert store.check() == []


# -- processes ----------------------------------------------------------------


@pytest.mark.parametrize("shared", [True, False], ids=["one-log", "own-logs"])
def test_processes_append_concurrently_without_loss(
    tmp_path: Path, data: Path, shared: bool
) -> None:
    workers, calls = 4, 120
    seed = random.randrange(1 << 32)
    where = f"(seed={seed})"
    script = tmp_path / "writer.py"
    script.write_text(WRITER_SOURCE)
    names = {w: "shared" if shared else f"own{w}" for w in range(workers)}
    procs = [spawn(script, str(data), names[w], str(w), str(calls), str(seed + w)) for w in names]
    try:
        for proc in procs:
            wait_ready(proc)
        for proc in procs:  # start together, so the commits interleave
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        acked: dict[int, list[list[int]]] = {}
        for w, proc in enumerate(procs):
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, f"writer {w} failed {where}: {err[-3000:]}"
            acked[w] = parse_acks(out)
            assert out.endswith("done\n"), f"writer {w} did not finish {where}"
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    with tidelog.open(data) as store:
        assert store.recovery_report is not None and store.recovery_report.clean
        if shared:
            check_log(list(store.log("shared").read()), acked, where)
            firsts = [first for calls_ in acked.values() for first, _, _ in calls_]
            assert len(set(firsts)) == len(firsts), f"two calls got one offset {where}"
            # The writers really interleaved: the log is not four runs in a row.
            owners = [parse_value(r.value)[0] for r in store.log("shared").read()]
            switches = sum(1 for a, b in zip(owners, owners[1:], strict=False) if a != b)
            assert switches > workers, f"writers never interleaved {where}"
            segments = list((data / "logs").rglob("*.seg"))
            assert len(segments) > 3, f"no segment rolled under concurrent writers {where}"
        else:
            assert sorted(log.name for log in store.logs()) == sorted(names.values())
            for w, name in names.items():
                check_log(list(store.log(name).read()), {w: acked[w]}, f"{name} {where}")


def test_a_writer_killed_mid_append_does_not_stall_or_corrupt_the_others(
    tmp_path: Path, data: Path
) -> None:
    """SIGKILL one of three writers, maybe while it holds LMDB's write lock:
    the others go on (LMDB's lock is robust), and every acknowledged record
    of all three is there."""
    workers, calls = 3, 100
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    where = f"(seed={seed})"
    script = tmp_path / "writer.py"
    script.write_text(WRITER_SOURCE)
    procs = [
        # The victim (writer 0) would append for ever: it cannot finish first.
        spawn(script, str(data), "shared", str(w), str(calls if w else 10**9), str(seed + w))
        for w in range(workers)
    ]
    outputs: dict[int, str] = {}
    try:
        for proc in procs:
            wait_ready(proc)
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        time.sleep(rng.uniform(0.05, 0.3))
        procs[0].kill()
        for w, proc in enumerate(procs):
            out, err = proc.communicate(timeout=60)
            outputs[w] = out
            if w:
                assert proc.returncode == 0, f"writer {w} failed {where}: {err[-3000:]}"
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert procs[0].returncode == -9, f"the victim finished before the kill {where}"
    acked = {w: parse_acks(out) for w, out in outputs.items()}
    with tidelog.open(data) as store:
        report = store.recovery_report
        assert report is not None and report.records_dropped == 0, report
        records = list(store.log("shared").read())
        # The victim's last call may have committed without being acknowledged:
        # if so it is whole, next in the victim's order, and counted here.
        victim = [r.offset for r in records if parse_value(r.value)[0] == 0]
        acked_victim = sum(count for _, _, count in acked[0])
        extra = victim[acked_victim:]
        assert len(extra) <= 5, f"{len(extra)} unacknowledged victim records {where}"
        if extra:
            assert extra == list(range(extra[0], extra[0] + len(extra))), (
                f"the victim's last append_many was split {where}"
            )
            acked[0].append([extra[0], acked_victim, len(extra)])
        check_log(records, acked, where)
        assert store.check() == []


def test_writers_wait_on_the_write_lock_file(tmp_path: Path) -> None:
    """Every write transaction is taken under index.lmdb/write.lock (flock): while
    another holder has it, an append waits; it goes on once the lock is free.
    (Why: LogStore.write_lock. The kill test above is where its absence showed.)"""
    import fcntl

    with tidelog.open(tmp_path / "d") as store:
        log = store.create_log("l")
        fd = os.open(tmp_path / "d" / "index.lmdb" / "write.lock", os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            appender = threading.Thread(target=log.append, args=(b"x",))
            appender.start()
            appender.join(0.5)
            assert appender.is_alive() and log.end_offset == 0
            fcntl.flock(fd, fcntl.LOCK_UN)
            appender.join(10)
            assert not appender.is_alive() and log.end_offset == 1
        finally:
            os.close(fd)


# -- threads in one process -------------------------------------------------------


def test_threads_appending_are_group_committed(data: Path) -> None:
    threads_count, appends_each = 16, 40
    with tidelog.open(data, sync="always") as store:
        log = store.create_log("events")
        logs = store._logs
        commits_before, ops_before = logs.commit_count, logs.op_count
        acked: dict[int, list[list[int]]] = {w: [] for w in range(threads_count)}
        errors: list[BaseException] = []
        barrier = threading.Barrier(threads_count)

        def writer(worker: int) -> None:
            try:
                barrier.wait()
                for seq in range(appends_each):
                    offset = log.append(value_for(worker, seq, seq % 50))
                    acked[worker].append([offset, seq, 1])
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(threads_count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        total = threads_count * appends_each
        check_log(list(log.read()), acked, "(threads)")
        commits = logs.commit_count - commits_before
        ops = logs.op_count - ops_before
        assert ops == total
        # One durable commit per append would be `total` commits; waiting
        # threads must ride along with the commit in flight.
        assert ops / commits > 1.5, f"{ops} appends took {commits} commits: no group commit"


def test_reader_sees_only_committed_contiguous_records_while_writers_append(data: Path) -> None:
    writers_count, calls_each = 4, 120
    with tidelog.open(data, sync="always") as store:
        log = store.create_log("events", segment_bytes_max=64 * 1024)
        done = threading.Event()
        errors: list[BaseException] = []
        acked: dict[int, list[list[int]]] = {w: [] for w in range(writers_count)}
        seen: dict[int, bytes] = {}
        slowest_step = [0.0]
        passes = [0]

        def writer(worker: int) -> None:
            rng = random.Random(worker)
            seq = 0
            try:
                for _ in range(calls_each):
                    count = rng.choice([1, 1, 3])
                    values = [
                        value_for(worker, seq + i, rng.randint(0, 3000)) for i in range(count)
                    ]
                    first = log.append_many(values).start
                    acked[worker].append([first, seq, count])
                    seq += count
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        def reader() -> None:
            # Re-read from 0 each pass, and follow the tail, while writers run.
            try:
                while True:
                    finished = done.is_set()
                    step_start = time.monotonic()
                    for expected, record in enumerate(log.read()):
                        now = time.monotonic()
                        slowest_step[0] = max(slowest_step[0], now - step_start)
                        assert record.offset == expected, (
                            f"reader got offset {record.offset}, expected {expected}"
                        )
                        previous = seen.setdefault(record.offset, record.value)
                        assert previous == record.value, f"offset {record.offset} changed"
                        step_start = time.monotonic()
                    passes[0] += 1
                    if finished:
                        return
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        writers = [threading.Thread(target=writer, args=(w,)) for w in range(writers_count)]
        reading = threading.Thread(target=reader)
        reading.start()
        for thread in writers:
            thread.start()
        for thread in writers:
            thread.join(60)
        done.set()
        reading.join(60)
        assert errors == []
        final = list(log.read())
        check_log(final, acked, "(reader)")
        # Everything the reader saw is what was committed there, and it saw it all.
        assert len(seen) == len(final)
        assert all(seen[r.offset] == r.value for r in final)
        assert passes[0] >= 3, f"the reader made only {passes[0]} passes"
        assert slowest_step[0] < 5.0, f"a read step waited {slowest_step[0]:.2f} s"


def test_readers_are_not_blocked_by_an_open_write_transaction(tmp_path: Path, data: Path) -> None:
    script = tmp_path / "reader.py"
    script.write_text(READER_SOURCE)
    with tidelog.open(data, sync="always") as store:
        log = store.create_log("events")
        log.append_many([b"r%d" % i for i in range(100)])
        entered, release = threading.Event(), threading.Event()
        result: list[int] = []
        info = log.info

        def long_write(ctx: WriteContext) -> int:
            first: int = ctx.append(info, [b"pending"])
            entered.set()
            release.wait(30)  # holds LMDB's write lock, like a huge append would
            return first

        holder = threading.Thread(target=lambda: result.append(store._logs.submit(long_write)))
        holder.start()
        try:
            assert entered.wait(10)
            started = time.monotonic()
            values = [r.value for r in log.read()]
            assert values == [b"r%d" % i for i in range(100)], "saw an uncommitted record"
            assert log.end_offset == 100
            assert log.wait(100, timeout=0.1) is False
            assert time.monotonic() - started < 2.0, "reads waited for the writer"
            # Another process reads too, while the write lock is still held.
            out = subprocess.run(
                [sys.executable, str(script), str(data), "events"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert out.returncode == 0, out.stderr[-3000:]
            report = json.loads(out.stdout)
            assert report["values"] == [f"r{i}" for i in range(100)]
            assert report["seconds"] < 5.0
            assert holder.is_alive(), "the write committed early: the test proved nothing"
        finally:
            release.set()
            holder.join(30)
        assert result == [100]
        assert [r.value for r in log.read(100)] == [b"pending"]


# -- handles, waiting -----------------------------------------------------------------


def test_two_handles_in_one_process_see_each_others_writes(data: Path) -> None:
    first = tidelog.open(data, sync="always")
    second = tidelog.open(data, sync="always")
    try:
        a = first.create_log("events")
        b = second.log("events")
        one, two = value_for(99, 0, 0), value_for(99, 1, 0)
        assert a.append(one) == 0
        assert [r.value for r in b.read()] == [one]
        assert b.append(two) == 1
        assert [r.value for r in a.read()] == [one, two]
        assert b.end_offset == a.end_offset == 2

        # Threads on both handles at once: every append lands exactly once.
        acked: dict[int, list[list[int]]] = {w: [] for w in range(8)}
        acked[99] = [[0, 0, 1], [1, 1, 1]]
        errors: list[BaseException] = []

        def writer(worker: int) -> None:
            log = a if worker % 2 else b
            try:
                for seq in range(40):
                    offset = log.append(value_for(worker, seq, seq))
                    acked[worker].append([offset, seq, 1])
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        records = list(a.read())
        assert records == list(b.read())
        check_log(records, acked, "(two handles)")

        # A waiter on one handle wakes for an append through the other.
        woke: list[bool] = []
        waiter = threading.Thread(target=lambda: woke.append(a.wait(len(records), 30.0)))
        waiter.start()
        b.append(b"through the second handle")
        waiter.join(5)
        assert woke == [True]

        # Closing one handle leaves the other working.
        second.close()
        end = len(records) + 1
        assert a.append(b"after close") == end
        assert [r.value for r in a.read(end)] == [b"after close"]
        assert first.check() == []
    finally:
        second.close()
        first.close()


def test_wait_wakes_for_an_append_from_another_thread(data: Path) -> None:
    with tidelog.open(data, sync="always") as store:
        log = store.create_log("events")
        started = time.monotonic()
        assert log.wait(0, timeout=0.3) is False
        waited = time.monotonic() - started
        assert 0.25 <= waited < 3.0, f"a wait for nothing returned after {waited:.2f} s"

        woke: list[tuple[bool, float]] = []
        waiter = threading.Thread(target=lambda: woke.append((log.wait(0, 30.0), time.monotonic())))
        waiter.start()
        time.sleep(0.2)
        assert woke == [], "wait returned before anything was appended"
        appended_at = time.monotonic()
        log.append(b"wake up")
        waiter.join(30)
        assert woke and woke[0][0] is True
        assert woke[0][1] - appended_at < 1.0, "the waiter was not woken by the append"


def test_wait_wakes_for_an_append_from_another_process(tmp_path: Path, data: Path) -> None:
    script = tmp_path / "appender.py"
    script.write_text(APPENDER_SOURCE)
    with tidelog.open(data, sync="always") as store:
        log = store.create_log("events")
        log.append(b"mine")
        proc = spawn(script, str(data), "events")
        try:
            wait_ready(proc)
            woke: list[tuple[bool, float]] = []
            waiter = threading.Thread(
                target=lambda: woke.append((log.wait(1, 30.0), time.monotonic()))
            )
            waiter.start()
            time.sleep(0.2)
            assert woke == [], "wait returned before anything was appended"
            assert proc.stdin is not None
            sent_at = time.monotonic()
            proc.stdin.write("go\n")
            proc.stdin.flush()
            out, err = proc.communicate(timeout=30)
            assert proc.returncode == 0, err[-3000:]
            waiter.join(30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert out.strip() == "1"
        assert woke and woke[0][0] is True
        assert woke[0][1] - sent_at < 2.0, "the waiter missed another process's append"
        assert [r.value for r in log.read()] == [b"mine", b"from another process"]


def test_writer_processes_leave_no_stray_files(tmp_path: Path, data: Path) -> None:
    """After concurrent writers are gone, a reopen finds nothing to repair."""
    script = tmp_path / "writer.py"
    script.write_text(WRITER_SOURCE)
    procs = [spawn(script, str(data), "shared", str(w), "30", str(w)) for w in range(2)]
    try:
        for proc in procs:
            wait_ready(proc)
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for proc in procs:
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err[-3000:]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    with tidelog.open(data) as store:
        report = store.recovery_report
        assert report is not None
        assert report.logs == [] and report.files_removed == [], report.to_dict()
    assert os.listdir(data / "logs") == ["1"]
