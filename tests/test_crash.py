"""Crash safety by doing it: a child process appends with sync="always" and is
SIGKILLed at a random moment, again and again, on one data directory.

After every kill the parent reopens the store and checks what a user relies
on: every append that returned is there byte for byte, at the offset it
returned, in order; offsets are contiguous; append_many and transactions are
all-or-nothing; nothing but records the child really wrote is visible;
`store.check()` is clean and the recovery report shows no loss.

The child is a script started with `sys.executable` (never fork: LMDB handles
must not cross a fork). It acknowledges each call after it returns by one
`os.write` to an ack file: a SIGKILL cannot lose a completed write(2), since
the bytes are in the page cache, and a line without its newline is ignored.

`bench/crash_soak.py` runs the same harness for many more rounds. A failure
names its seed; TIDELOG_CRASH_SEED=<seed> replays the same choices (sizes,
child seeds, sleeps before the kill), though the byte the kill lands on still
depends on timing.
"""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import read_complete_lines

import tidelog

# The child's source. The parent execs the same text to regenerate values,
# so the two can never disagree on what a record should hold.
CHILD_SOURCE = r'''
import hashlib
import os
import random
import sys
import threading
import time

SEGMENT_BYTES = 64 * 1024
SINGLE_LOG = "crash"
FANOUT_LOGS = 5
THREADS = {"single": 1, "threads": 4, "fanout": 1}  # appending threads per mode
CHILD_SECONDS_MAX = 60  # a child the parent forgot to kill stops by itself


def make_value(round_no, call, index, count, size, keyed):
    """A self-describing value: its tag says how to rebuild it byte for byte."""
    tag = f"{round_no}.{call}.{index}.{count}.{size}.{int(keyed)}|".encode()
    return tag + hashlib.shake_128(tag).digest(size)


def key_for(value):
    return b"k" + value.split(b"|", 1)[0]


def pick_size(rng):
    roll = rng.random()
    if roll < 0.55:
        return rng.randint(0, 200)
    if roll < 0.85:
        return rng.randint(200, 3000)
    return rng.randint(4097, 20000)  # over the 4 KiB index interval and the page size


def digest(values):
    hasher = hashlib.sha256()
    for value in values:
        hasher.update(len(value).to_bytes(4, "little"))
        hasher.update(value)
    return hasher.hexdigest()[:32]


def recovery_summary(store):
    """What this child's own open repaired: records dropped, and whether clean."""
    report = store.recovery_report
    return f"{report.records_dropped} {int(report.clean)}"


def run_single(store, rng, round_no, say, deadline, threads=1):
    """Append until killed; with threads > 1, concurrently (group commit).

    Thread t numbers its calls t + threads, t + 2 * threads, ...: unique in
    the round, and increasing in the thread's own order.
    """
    log = store.create_log(SINGLE_LOG, exist_ok=True, segment_bytes_max=SEGMENT_BYTES)
    say(f"ready {log.end_offset} {recovery_summary(store)}")
    if threads == 1:
        append_loop(log, rng, round_no, say, deadline, 0, 1)
        return
    workers = [
        threading.Thread(
            target=append_loop,
            args=(log, random.Random(rng.random()), round_no, say, deadline, t, threads),
        )
        for t in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def append_loop(log, rng, round_no, say, deadline, thread, threads):
    call = thread
    while time.monotonic() < deadline:
        call += threads
        count = 1 if rng.random() < 0.55 else rng.randint(2, 12)
        keyed = rng.random() < 0.3
        values = [
            make_value(round_no, call, i, count, pick_size(rng), keyed) for i in range(count)
        ]
        keys = [key_for(v) for v in values] if keyed else None
        if count == 1 and rng.random() < 0.7:
            first = log.append(values[0], key=keys[0] if keys else b"")
        else:
            first = log.append_many(values, keys=keys).start
        say(f"ack {first} {count} {call} {digest(values)}")


def run_fanout(store, rng, round_no, say, deadline):
    # Different segment sizes, so the five logs roll at different moments.
    logs = [
        store.create_log(f"fan{j}", exist_ok=True, segment_bytes_max=SEGMENT_BYTES + j * 8192)
        for j in range(FANOUT_LOGS)
    ]
    say(f"ready {logs[0].end_offset} {recovery_summary(store)}")
    call = 0
    while time.monotonic() < deadline:
        call += 1
        count = 1 if rng.random() < 0.7 else rng.randint(2, 3)
        values = [make_value(round_no, call, i, count, pick_size(rng), False) for i in range(count)]
        with store.transaction() as tx:
            for value in values:
                for log in logs:
                    tx.append(log, value)
        offsets = ",".join(str(o) for o in tx.offsets)
        say(f"ack {offsets} {count} {call} {digest(values)}")


def main():
    mode, path, ack_path, seed, round_no = sys.argv[1:6]
    ack_fd = os.open(ack_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def say(line):
        os.write(ack_fd, (line + "\n").encode())

    deadline = time.monotonic() + CHILD_SECONDS_MAX
    import tidelog

    store = tidelog.open(path, sync="always", segment_bytes_max=SEGMENT_BYTES)
    rng = random.Random(int(seed))
    if mode == "fanout":
        run_fanout(store, rng, int(round_no), say, deadline)
    else:
        run_single(store, rng, int(round_no), say, deadline, THREADS[mode])
    sys.exit(3)  # only reached when nobody killed us in time


if __name__ == "__main__":
    main()
'''

CHILD: dict[str, Any] = {"__name__": "tidelog_crash_child"}
exec(compile(CHILD_SOURCE, "tidelog_crash_child", "exec"), CHILD)  # noqa: S102
make_value: Callable[..., bytes] = CHILD["make_value"]
key_for: Callable[[bytes], bytes] = CHILD["key_for"]
digest: Callable[[list[bytes]], str] = CHILD["digest"]
SINGLE_LOG: str = CHILD["SINGLE_LOG"]
FANOUT_LOGS: int = CHILD["FANOUT_LOGS"]
THREADS: dict[str, int] = CHILD["THREADS"]


@dataclasses.dataclass
class Ack:
    round_no: int
    call: int
    offsets: list[int]  # first offset of the call in each log written
    count: int
    digest: str


@dataclasses.dataclass
class Stats:
    rounds: int = 0
    kills_before_ready: int = 0
    readonly_checks: int = 0
    acked_calls: int = 0
    unacked_calls_found: int = 0
    uncommitted_bytes_truncated: int = 0
    files_removed: int = 0
    records: int = 0
    segment_files: int = 0


class CrashHarness:
    """Spawn, kill at random, reopen and verify; one instance per data directory.

    `mode` is "single" (append / append_many to one log), "threads" (the
    same from four threads at once, so the kill lands in group commits) or
    "fanout" (transactions over five logs). Every failure message carries
    the seed.
    """

    def __init__(self, workdir: Path, mode: str, seed: int) -> None:
        self.workdir = workdir
        self.mode = mode
        self.seed = seed
        self.rng = random.Random(seed)
        self.data = workdir / "data"
        self.script = workdir / "crash_child.py"
        self.script.write_text(CHILD_SOURCE)
        self.acks: list[Ack] = []
        self.end = 0  # the committed end seen by the last verification
        self.ever_ready = False
        self.last_check_readonly = False
        self.stats = Stats()

    def where(self, round_no: int) -> str:
        return f"(mode={self.mode} seed={self.seed} round={round_no})"

    # -- one round --------------------------------------------------------

    def run_round(self, round_no: int) -> None:
        ack_path = self.workdir / f"ack-{round_no}"
        err_path = self.workdir / f"stderr-{round_no}"
        child_seed = self.rng.getrandbits(32)
        with open(err_path, "wb") as err:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    str(self.script),
                    self.mode,
                    str(self.data),
                    str(ack_path),
                    str(child_seed),
                    str(round_no),
                ],
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        try:
            if self.rng.random() < 0.15:
                # Anywhere from start-up on: during open, recovery or creation.
                time.sleep(self.rng.uniform(0.0, 0.3))
            else:
                self._wait_ready(proc, ack_path, err_path, round_no)
                time.sleep(self.rng.uniform(0.0, 0.3))
        finally:
            with_kill(proc)
        assert proc.returncode == -signal.SIGKILL, (
            f"child exited by itself with {proc.returncode} {self.where(round_no)}: "
            f"{err_path.read_text()[-3000:]}"
        )
        lines = read_complete_lines(ack_path)
        ready = [line for line in lines if line.startswith("ready ")]
        if ready:
            self.ever_ready = True
            _, end, dropped, clean = ready[0].split()
            assert (dropped, clean) == ("0", "1"), (
                f"the child's own recovery lost data: {ready[0]} {self.where(round_no)}"
            )
            # A read-only verification does not replay the journal: the killed
            # child's last journaled, unacknowledged call may still be committed
            # by the next writable open (docs/guarantees.md, read-only handles);
            # the next verification checks those records call by call.
            grew_ok = self.last_check_readonly and int(end) >= self.end
            assert int(end) == self.end or grew_ok, (
                f"child saw end {ready[0]} but the last verification saw {self.end} "
                f"{self.where(round_no)}"
            )
        else:
            self.stats.kills_before_ready += 1
        new_acks = [self._parse_ack(line, round_no) for line in lines if line.startswith("ack ")]
        self.acks.extend(new_acks)
        self.stats.acked_calls += len(new_acks)
        self.stats.rounds += 1
        # Verify read-only on some rounds, so the next child's own open
        # recovers the dirty directory (and may itself be killed doing it).
        readonly = self.ever_ready and self.rng.random() < 0.35
        self.last_check_readonly = readonly
        verify = self._verify_fanout if self.mode == "fanout" else self._verify_single
        try:
            verify(round_no, new_acks, readonly)
        except tidelog.Error as exc:
            # Corruption and the like from the store itself: say how to replay it.
            raise AssertionError(f"{exc!r} {self.where(round_no)}") from exc

    def _wait_ready(
        self, proc: subprocess.Popen[bytes], ack_path: Path, err_path: Path, round_no: int
    ) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if ack_path.exists() and ack_path.read_bytes().startswith(b"ready "):
                return
            if proc.poll() is not None:
                raise AssertionError(
                    f"child died before ready {self.where(round_no)}: "
                    f"{err_path.read_text()[-3000:]}"
                )
            time.sleep(0.005)
        raise AssertionError(f"child not ready within 30 s {self.where(round_no)}")

    def _parse_ack(self, line: str, round_no: int) -> Ack:
        _, offsets, count, call, value_digest = line.split()
        return Ack(
            round_no, int(call), [int(o) for o in offsets.split(",")], int(count), value_digest
        )

    # -- verification -----------------------------------------------------

    def _check_report(self, store: tidelog.Store, round_no: int) -> None:
        where = self.where(round_no)
        report = store.recovery_report
        assert report is not None, where
        assert report.records_dropped == 0, f"{report.to_dict()} {where}"
        assert report.bytes_dropped == 0, f"{report.to_dict()} {where}"
        assert report.clean, f"{report.to_dict()} {where}"
        assert not report.full_tail_scan, f"{report.to_dict()} {where}"
        for item in report.logs:
            assert item.problems == [], f"{report.to_dict()} {where}"
            assert item.broken_copy is None, f"{report.to_dict()} {where}"
            assert item.uncommitted_bytes_truncated >= 0, f"{report.to_dict()} {where}"
            self.stats.uncommitted_bytes_truncated += item.uncommitted_bytes_truncated
        logs_dir = str(self.data / "logs")
        for path in report.files_removed:
            # Only a roll that died before its commit leaves a file behind.
            assert path.startswith(logs_dir) and path.endswith(".seg"), (
                f"recovery removed {path} {where}"
            )
        self.stats.files_removed += len(report.files_removed)

    def _open(self, readonly: bool) -> tidelog.Store:
        if readonly:
            self.stats.readonly_checks += 1
            return tidelog.open(self.data, readonly=True)
        return tidelog.open(self.data, sync="always")

    def _check_groups(
        self, records: list[tidelog.Record], round_no: int, expect_keys: bool
    ) -> list[tuple[int, int, int, int]]:
        """Check every record is one the child made, whole calls only, in order.

        Returns (round, call, first offset, count) for each call found.
        """
        where = self.where(round_no)
        threads = THREADS[self.mode]
        groups: list[tuple[int, int, int, int]] = []
        open_group: tuple[int, int, int, int] | None = None
        last_round = -1
        last_call: dict[tuple[int, int], int] = {}  # (round, thread) -> its last call
        for position, record in enumerate(records):
            assert record.offset == position, (
                f"offset {record.offset} at position {position}: not contiguous {where}"
            )
            tag = record.value.split(b"|", 1)[0].decode()
            r, c, i, n, size, keyed = (int(part) for part in tag.split("."))
            expected = make_value(r, c, i, n, size, bool(keyed))
            assert record.value == expected, f"offset {record.offset}: value differs {where}"
            want_key = key_for(expected) if keyed and expect_keys else b""
            assert record.key == want_key, f"offset {record.offset}: key differs {where}"
            if i == 0:
                assert open_group is None, (
                    f"offset {record.offset}: call {open_group} is incomplete (not atomic) {where}"
                )
                # Rounds never mix; within one, each thread's calls keep its order.
                assert r >= last_round, f"offset {record.offset}: round {r} after {last_round}"
                lane = (r, c % threads)
                assert c > last_call.get(lane, 0), (
                    f"offset {record.offset}: call {(r, c)} after {(r, last_call[lane])} {where}"
                )
                last_round, last_call[lane] = r, c
                open_group = (r, c, record.offset, n)
                groups.append(open_group)
            else:
                assert open_group is not None and open_group[:2] == (r, c), (
                    f"offset {record.offset}: stray record of call {(r, c)} {where}"
                )
                assert record.offset == open_group[2] + i, f"offset {record.offset} {where}"
            if i == n - 1:
                open_group = None
        assert open_group is None, f"last call {open_group} is incomplete (not atomic) {where}"
        return groups

    def _check_acks(
        self,
        groups: list[tuple[int, int, int, int]],
        records: list[tidelog.Record],
        new_acks: list[Ack],
        round_no: int,
    ) -> None:
        where = self.where(round_no)
        found = {(r, c): (first, n) for r, c, first, n in groups}
        for ack in self.acks:
            first = ack.offsets[0]
            assert found.get((ack.round_no, ack.call)) == (first, ack.count), (
                f"acknowledged call {ack} missing or moved (found "
                f"{found.get((ack.round_no, ack.call))}) {where}"
            )
            values = [r.value for r in records[first : first + ack.count]]
            assert digest(values) == ack.digest, f"acknowledged call {ack}: bytes differ {where}"
        # Of this round's calls, only the one each thread had in flight at the
        # kill may be there unacknowledged.
        threads = THREADS[self.mode]
        acked_calls = {ack.call for ack in new_acks}
        this_round = [c for r, c, _, _ in groups if r == round_no]
        for thread in range(threads):
            last_acked = max((c for c in acked_calls if c % threads == thread), default=thread)
            unacked = [c for c in this_round if c % threads == thread and c not in acked_calls]
            assert unacked in ([], [last_acked + threads]), (
                f"unacknowledged calls {unacked} of thread {thread} survived; "
                f"last acked {last_acked} {where}"
            )
            self.stats.unacked_calls_found += len(unacked)

    def _verify_single(self, round_no: int, new_acks: list[Ack], readonly: bool) -> None:
        where = self.where(round_no)
        if not self.ever_ready and not (self.data / "index.lmdb").exists():
            return  # killed before the store existed
        with self._open(readonly) as store:
            if not readonly:
                self._check_report(store, round_no)
            try:
                log = store.log(SINGLE_LOG)
            except tidelog.NotFound:
                assert not self.acks, f"log missing after acknowledged appends {where}"
                return
            records = list(log.read())
            assert log.start_offset == 0, where
            assert log.end_offset == len(records), f"end {log.end_offset} {where}"
            assert len(records) >= self.end, (
                f"log shrank from {self.end} to {len(records)} records {where}"
            )
            groups = self._check_groups(records, round_no, expect_keys=True)
            self._check_acks(groups, records, new_acks, round_no)
            assert store.check() == [], where
            self.end = len(records)
            self.stats.records = len(records)
        self._check_files(round_no)

    def _verify_fanout(self, round_no: int, new_acks: list[Ack], readonly: bool) -> None:
        where = self.where(round_no)
        if not self.ever_ready and not (self.data / "index.lmdb").exists():
            return
        with self._open(readonly) as store:
            if not readonly:
                self._check_report(store, round_no)
            names = {log.name for log in store.logs()}
            wanted = [f"fan{j}" for j in range(FANOUT_LOGS)]
            present = [name for name in wanted if name in names]
            if len(present) < FANOUT_LOGS:
                # Killed while creating the logs: no transaction can have run.
                assert not self.acks, f"only {present} exist after acks {where}"
                assert all(len(store.log(name)) == 0 for name in present), where
                return
            logs = [store.log(name) for name in wanted]
            contents = [list(log.read()) for log in logs]
            lengths = [len(records) for records in contents]
            assert len(set(lengths)) == 1, f"fan-out logs differ in length: {lengths} {where}"
            assert [log.end_offset for log in logs] == lengths, where
            for j in range(1, FANOUT_LOGS):
                for a, b in zip(contents[0], contents[j], strict=True):
                    assert a.value == b.value, (
                        f"offset {a.offset}: fan0 and fan{j} hold different payloads {where}"
                    )
            groups = self._check_groups(contents[0], round_no, expect_keys=False)
            for ack in new_acks:
                # A transaction returns one offset per (payload, log): all equal per payload.
                for p in range(ack.count):
                    per_log = ack.offsets[p * FANOUT_LOGS : (p + 1) * FANOUT_LOGS]
                    assert per_log == [ack.offsets[0] + p] * FANOUT_LOGS, f"{ack} {where}"
            self._check_acks(groups, contents[0], new_acks, round_no)
            assert store.check() == [], where
            assert lengths[0] >= self.end, f"logs shrank to {lengths[0]} {where}"
            self.end = lengths[0]
            self.stats.records = lengths[0]
        self._check_files(round_no)

    def _check_files(self, round_no: int) -> None:
        broken = list(self.data.rglob("*.broken"))
        assert broken == [], (
            f"recovery copied damaged segments aside: {broken} {self.where(round_no)}"
        )
        self.stats.segment_files = len(list(self.data.rglob("*.seg")))


def with_kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def run_rounds(workdir: Path, mode: str, seed: int, rounds: int) -> CrashHarness:
    harness = CrashHarness(workdir, mode, seed)
    for round_no in range(rounds):
        harness.run_round(round_no)
    return harness


def test_sigkill_never_loses_acknowledged_appends(tmp_path: Path) -> None:
    seed = int(os.environ.get("TIDELOG_CRASH_SEED", random.randrange(1 << 32)))
    harness = run_rounds(tmp_path, "single", seed, rounds=22)
    where = f"(seed={seed}) {harness.stats}"
    assert harness.stats.acked_calls > 50, f"too little was written to prove much {where}"
    assert harness.stats.records >= harness.stats.acked_calls, where
    # The test is only worth its time if segments rolled while being killed.
    assert harness.stats.segment_files >= 3, where


def test_sigkill_during_group_commits_loses_no_acknowledged_append(tmp_path: Path) -> None:
    seed = int(os.environ.get("TIDELOG_CRASH_SEED", random.randrange(1 << 32)))
    harness = run_rounds(tmp_path, "threads", seed, rounds=10)
    where = f"(seed={seed}) {harness.stats}"
    assert harness.stats.acked_calls > 50, f"too little was written to prove much {where}"
    assert harness.stats.segment_files >= 3, where


def test_sigkill_keeps_multi_log_transactions_atomic(tmp_path: Path) -> None:
    seed = int(os.environ.get("TIDELOG_CRASH_SEED", random.randrange(1 << 32)))
    harness = run_rounds(tmp_path, "fanout", seed, rounds=12)
    where = f"(seed={seed}) {harness.stats}"
    assert harness.stats.acked_calls > 20, f"too little was written to prove much {where}"
    assert harness.stats.segment_files >= 2 * FANOUT_LOGS, where


@pytest.mark.parametrize("mode", ["single", "threads", "fanout"])
def test_harness_detects_a_lost_acknowledged_append(tmp_path: Path, mode: str) -> None:
    """The checks can fail: forge an ack the store never saw, and they must object."""
    harness = run_rounds(tmp_path, mode, seed=1234, rounds=1)
    harness.acks.append(Ack(0, 10_000, [harness.end] * FANOUT_LOGS, 1, "0" * 32))
    verify = harness._verify_fanout if mode == "fanout" else harness._verify_single
    with pytest.raises(AssertionError, match="acknowledged call"):
        verify(0, [], False)
