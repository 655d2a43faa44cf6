"""Power cuts and failing fsyncs, through segments.fs.FaultyFileSystem.

LevelDB's fault-injection env, in small: the file system remembers what was
written since each file's last sync and forgets it on `crash()` (or keeps a
torn prefix of it). The store is closed first, as a dead process would be,
and reopened on the plain file system. LMDB is real and not behind the seam.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import tidelog
from tidelog.segments import recovery
from tidelog.segments.format import encode_batch, segment_name
from tidelog.segments.fs import FaultyFileSystem

SMALL_SEGMENT = 4096


def value_of(n: int, size: int = 90) -> bytes:
    head = f"record {n:06d} ".encode()
    return (head * (size // len(head) + 1))[:size]


def contents(store: tidelog.Store) -> dict[str, list[bytes]]:
    return {log.name: [r.value for r in log.read()] for log in store.logs()}


@pytest.fixture
def reboot(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Call after fs.crash(): a power cut reboots the machine, so the boot id changes."""

    def reboot() -> None:
        monkeypatch.setattr(recovery, "boot_id", lambda: b"boot-after-the-power-cut")

    return reboot


# -- sync="always": what returned survives --------------------------------------------


@pytest.mark.parametrize("keep_bytes", [None, 0, 1, 31, 4000])
def test_always_mode_acknowledged_writes_survive_power_cut(
    tmp_path: Path, keep_bytes: int | None, reboot: Callable[[], None]
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    data = tmp_path / "data"
    fs = FaultyFileSystem()
    expected: dict[str, list[bytes]] = {"a": [], "b": []}
    with tidelog.open(data, sync="always", fs=fs, segment_bytes_max=SMALL_SEGMENT) as store:
        logs = {name: store.create_log(name) for name in expected}
        assert fs.unsynced_bytes() == 0
        # Open at the writer's close, so that it takes no checkpoint then (as a
        # killed writer would not): the cut meets what the journal holds.
        witness = tidelog.open(data, readonly=True)
        for step in range(120):
            choice = rng.randrange(5)
            name = rng.choice(["a", "b"])
            log = logs[name]
            if choice == 0:
                values = [rng.randbytes(rng.randrange(0, 300)) for _ in range(rng.randrange(1, 9))]
                assert log.append_many(values).start == len(expected[name])
                expected[name] += values
            elif choice == 1:
                with store.transaction() as tx:
                    tx.append(logs["a"], value_of(step))
                    tx.append(logs["b"], value_of(step))
                assert tx.offsets == [len(expected["a"]), len(expected["b"])]
                expected["a"].append(value_of(step))
                expected["b"].append(value_of(step))
            elif choice == 2 and step % 7 == 0:
                log.roll()
            else:
                value = rng.randbytes(rng.randrange(0, 500))
                assert log.append(value) == len(expected[name])
                expected[name].append(value)
            # "always": everything a returned call wrote is in the flushed journal
            # (segment bytes are flushed later, by a checkpoint).
            assert fs.unsynced_bytes(str(data / "journal")) == 0, f"seed {seed}, step {step}"
        sealed = store.log("a").ends().active_base
        assert sealed > 0, "the test should cover sealed segments too"
    witness.close()
    fs.crash(keep_bytes=keep_bytes)
    reboot()

    with tidelog.open(data) as store:
        assert store._logs.journal_entries_replayed > 0, f"seed {seed}"
        report = store.recovery_report
        assert report is not None
        assert report.logs == [], f"seed {seed}: {report}"
        assert contents(store) == expected, f"seed {seed}"
        assert store.check() == []


# -- sync="never": a power cut may lose unsynced records, never the store --------------


def _never_mode_run(
    data: Path, fs: FaultyFileSystem, rng: random.Random
) -> tuple[list[bytes], int, int]:
    """Append in "never" mode with one store.sync() midway.

    Returns the values appended, how many were appended when store.sync()
    returned, and how many when the last call that rolled a segment returned
    (a commit that seals a segment is flushed whole, in every mode).
    """
    values: list[bytes] = []
    rolled_end = 0
    with tidelog.open(data, sync="never", fs=fs, segment_bytes_max=SMALL_SEGMENT) as store:
        log = store.create_log("events")

        def append(batch: list[bytes]) -> None:
            nonlocal rolled_end
            base = log.ends().active_base
            log.append_many(batch)
            values.extend(batch)
            if log.ends().active_base != base:
                rolled_end = len(values)

        for phase in range(2):
            for _ in range(rng.randrange(20, 60)):
                append([value_of(len(values) + i, rng.randrange(10, 200)) for i in range(3)])
            if phase == 0:
                store.sync()
                synced = len(values)
        for _ in range(rng.randrange(1, 6)):
            append([value_of(len(values))])
        assert fs.unsynced_bytes() > 0  # else the crash below tests nothing
    return values, synced, rolled_end


@pytest.mark.parametrize("keep_bytes", [None, 0, 1, 7, 33, 150, 2000])
def test_never_mode_power_cut_keeps_a_clean_prefix(
    tmp_path: Path, keep_bytes: int | None, reboot: Callable[[], None]
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    data = tmp_path / "data"
    fs = FaultyFileSystem()
    values, synced, rolled_end = _never_mode_run(data, fs, rng)
    fs.crash(keep_bytes=keep_bytes)
    reboot()

    with tidelog.open(data) as store:
        log = store.log("events")
        got = [r.value for r in log.read()]
        where = f"seed {seed}: {len(got)} of {len(values)} kept, {synced} synced"
        assert got == values[: len(got)], where
        # What store.sync() returned for, and every sealed segment, survives.
        assert len(got) >= max(synced, rolled_end), where
        if keep_bytes is None:
            # Nothing written after that survives a cut that keeps no unsynced byte.
            assert len(got) == max(synced, rolled_end), where
        report = store.recovery_report
        assert report is not None
        assert report.full_tail_scan
        # Commits that never reached the disk leave no trace to count (their
        # journal entries are gone); nothing that did reach it was dropped.
        assert report.records_dropped == 0, where
        assert log.end_offset == len(got)
        assert store.check() == []
        assert log.append(b"after the cut") == len(got)
    with tidelog.open(data) as store:
        report = store.recovery_report
        assert report is not None and report.clean
        assert [r.value for r in store.log("events").read()][-1] == b"after the cut"
        assert store.check() == []


def test_never_mode_store_sync_makes_earlier_appends_durable(
    tmp_path: Path, reboot: Callable[[], None]
) -> None:
    """store.sync() forces everything written so far to stable storage, in any mode."""
    data = tmp_path / "data"
    fs = FaultyFileSystem()
    with tidelog.open(data, sync="never", fs=fs) as store:
        log = store.create_log("events")
        other = store.create_log("other")
        log.append_many([value_of(n) for n in range(10)])
        other.append(b"synced too")
        store.sync()
        journal = str(data / "journal")
        assert fs.unsynced_bytes(journal) == 0
        log.append_many([value_of(n) for n in range(10, 15)])
        assert fs.unsynced_bytes(journal) > 0
        assert log.ends().active_base == 0  # no roll: only store.sync() made it durable
    fs.crash()
    reboot()

    with tidelog.open(data) as store:
        assert [r.value for r in store.log("events").read()] == [value_of(n) for n in range(10)]
        assert [r.value for r in store.log("other").read()] == [b"synced too"]
        report = store.recovery_report
        assert report is not None and report.records_dropped == 0  # lost whole, unseen
        assert store.check() == []


def test_never_mode_power_cut_right_after_a_roll(
    tmp_path: Path, reboot: Callable[[], None]
) -> None:
    """The new segment's header was never synced: later "always" appends must not pay."""
    data = tmp_path / "data"
    fs = FaultyFileSystem()
    with tidelog.open(data, sync="never", fs=fs) as store:
        log = store.create_log("events")
        log.append_many([b"one", b"two"])
        log.roll()  # seals (and syncs) segment 0, starts an empty segment 2
    fs.crash()
    reboot()

    with tidelog.open(data) as store:
        log = store.log("events")
        assert [r.value for r in log.read()] == [b"one", b"two"]
        assert log.append(b"three") == 2
        assert store.check() == []
    with tidelog.open(data) as store:
        report = store.recovery_report
        assert report is not None and report.records_dropped == 0
        assert [r.value for r in store.log("events").read()] == [b"one", b"two", b"three"]
        assert store.check() == []


# -- a failing fsync stops the store ---------------------------------------------------


def _write_calls(store: tidelog.Store, log: tidelog.Log) -> dict[str, Callable[[], object]]:
    def transaction() -> None:
        with store.transaction() as tx:
            tx.append(log, b"tx")

    return {
        "append": lambda: log.append(b"x"),
        "append_many": lambda: log.append_many([b"x", b"y"]),
        "transaction": transaction,
        "roll": log.roll,
        "trim_before": lambda: log.trim_before(1),
        "enforce_retention": log.enforce_retention,
        "store_enforce_retention": store.enforce_retention,
        "create_log": lambda: store.create_log("another"),
        "delete_log": lambda: store.delete_log(log.name),
    }


FAILING_CALLS = ["append", "append_many", "transaction", "append_that_rolls"]


@pytest.mark.parametrize("failing", FAILING_CALLS)
def test_failed_fsync_raises_store_failed_and_stops_writes(tmp_path: Path, failing: str) -> None:
    data = tmp_path / "data"
    fs = FaultyFileSystem()
    acked = [value_of(n) for n in range(25)]  # leaves room in the segment for the failed call
    with tidelog.open(data, fs=fs, segment_bytes_max=SMALL_SEGMENT) as store:
        log = store.create_log("events")
        for value in acked:
            log.append(value)
        committed = log.ends()
        fs.fail_fsync = True
        with pytest.raises(tidelog.StoreFailed):
            if failing == "append":
                log.append(b"failed")
            elif failing == "append_many":
                log.append_many([b"failed", b"also failed"])
            elif failing == "transaction":
                with store.transaction() as tx:
                    tx.append(log, b"failed")
            else:
                log.append(b"f" * (SMALL_SEGMENT - 100))  # does not fit: rolls
        fs.fail_fsync = False  # the disk is fine again; the store must not trust it
        for name, call in _write_calls(store, log).items():
            with pytest.raises(tidelog.StoreFailed):
                call()
            assert log.ends() == committed, name
        # Reads keep working and show only what was acknowledged.
        assert [r.value for r in log.read()] == acked
        assert store.check() == []
    after = (data / "logs" / str(log.info.id) / segment_name(committed.active_base)).read_bytes()

    # The journal is flushed before any segment byte is written: the failed
    # call left nothing past the committed end.
    assert len(after) == committed.active_position

    with tidelog.open(data) as store:
        report = store.recovery_report
        assert report is not None and report.records_dropped == 0
        assert report.logs == []  # and its zeroed journal entry was not replayed
        log = store.log("events")
        assert [r.value for r in log.read()] == acked
        assert log.ends() == committed
        assert log.append(b"after reopen") == len(acked)
        assert store.check() == []


def test_failed_fsync_in_create_log_stops_the_store(tmp_path: Path) -> None:
    data = tmp_path / "data"
    fs = FaultyFileSystem()
    with tidelog.open(data, fs=fs) as store:
        log = store.create_log("events")
        log.append(b"kept")
        fs.fail_fsync = True
        with pytest.raises(tidelog.StoreFailed):
            store.create_log("new")
        fs.fail_fsync = False
        with pytest.raises(tidelog.StoreFailed):
            log.append(b"refused")
        with pytest.raises(tidelog.StoreFailed):
            store.create_log("new")
        with pytest.raises(tidelog.NotFound):
            store.log("new")
    with tidelog.open(data) as store:
        assert [log.name for log in store.logs()] == ["events"]
        assert [r.value for r in store.log("events").read()] == [b"kept"]
        # The half-made log's directory is not left behind.
        assert sorted(os.listdir(data / "logs")) == [str(store.log("events").info.id)]
        assert store.check() == []


@pytest.mark.parametrize("keep_bytes", [None, 0, 1, 20, 40, 60, 10_000])
def test_failed_fsync_then_power_cut_tears_only_the_failed_append(
    tmp_path: Path, keep_bytes: int | None, reboot: Callable[[], None]
) -> None:
    data = tmp_path / "data"
    fs = FaultyFileSystem()
    failed = b"f" * 40
    frame = len(encode_batch(1, 10, 0, 0, [failed]))
    with tidelog.open(data, fs=fs) as store:
        log = store.create_log("events")
        acked = [log.append(value_of(n)) for n in range(10)]
        assert acked == list(range(10))
        committed = log.ends().active_position
        fs.fail_fsync = True
        with pytest.raises(tidelog.StoreFailed):
            log.append(failed)
        # Only the failed append's journal entry (then its zeroed header) is
        # unflushed there; its frame never reached the segment.
        journal = str(data / "journal")
        assert fs.unsynced_bytes(journal) > frame + 16
        path = data / "logs" / str(log.info.id) / segment_name(0)
    fs.crash(keep_bytes=keep_bytes)
    reboot()
    # What survived of the torn batch, up to its last byte that is not zero.
    survived = path.read_bytes()[committed:]
    torn = len(survived.rstrip(b"\x00"))
    assert torn <= min(keep_bytes or 0, frame)

    with tidelog.open(data) as store:
        report = store.recovery_report
        assert report is not None and report.records_dropped == 0
        assert report.logs == []  # a torn or zeroed entry is never replayed
        log = store.log("events")
        assert [r.value for r in log.read()] == [value_of(n) for n in range(10)]
        assert log.append(b"next") == 10
        assert store.check() == []


def test_failed_fsync_under_concurrent_appends(tmp_path: Path, reboot: Callable[[], None]) -> None:
    """Group commit: every caller gets an offset or StoreFailed; acks are a prefix."""
    data = tmp_path / "data"
    fs = FaultyFileSystem()
    acked: dict[int, bytes] = {}
    offsets: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    enough = threading.Event()

    with tidelog.open(data, fs=fs, segment_bytes_max=SMALL_SEGMENT) as store:
        log = store.create_log("events")

        def writer(thread: int) -> None:
            n = 0
            while True:
                value = f"thread {thread} value {n}".encode()
                try:
                    offset = log.append(value)
                except tidelog.StoreFailed as exc:
                    with lock:
                        errors.append(exc)
                    return
                except BaseException as exc:  # noqa: BLE001 - reported below
                    with lock:
                        errors.append(exc)
                    return
                with lock:
                    offsets.append(offset)
                    acked[offset] = value
                    if len(acked) >= 150:
                        enough.set()
                n += 1

        threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        assert enough.wait(30)
        fs.fail_fsync = True
        for thread in threads:
            thread.join(30)
            assert not thread.is_alive()
        assert len(errors) == 4
        assert all(isinstance(exc, tidelog.StoreFailed) for exc in errors), errors
        assert sorted(offsets) == list(range(len(offsets)))  # dense, no offset twice
        assert log.end_offset == len(acked)
    fs.crash()
    reboot()

    with tidelog.open(data) as store:
        log = store.log("events")
        assert {r.offset: r.value for r in log.read()} == acked
        assert store.check() == []


def test_failed_flush_of_a_multi_log_commit_commits_nothing(tmp_path: Path) -> None:
    # A commit that wrote several logs is one journal entry and one flush;
    # its failure must fail the whole commit.
    data = tmp_path / "data"
    fs = FaultyFileSystem()
    with tidelog.open(data, fs=fs) as store:
        logs = [store.create_log(f"q{i}") for i in range(40)]  # over SYNC_BATCH_MAX
        with store.transaction() as tx:
            for log in logs:
                tx.append(log, b"kept")
        assert fs.unsynced_bytes(str(data / "journal")) == 0  # one flush covered all 40
        fs.fail_fsync = True
        with pytest.raises(tidelog.StoreFailed), store.transaction() as tx:
            for log in logs:
                tx.append(log, b"lost")
        fs.fail_fsync = False
    with tidelog.open(data) as store:
        assert all([r.value for r in log.read()] == [b"kept"] for log in store.logs())
        assert store.check() == []


# -- queue state: leases and deletes are in the journal too ----------------------------


@pytest.mark.parametrize("keep_bytes", [None, 0, 50, 5000])
def test_queue_sends_and_deletes_survive_a_power_cut(
    tmp_path: Path, keep_bytes: int | None, reboot: Callable[[], None]
) -> None:
    """LMDB's file is scrambled by the cut (it is never flushed): the checkpoint and
    the journal bring back every acknowledged send, and no acknowledged delete."""
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    data = tmp_path / "data"
    fs = FaultyFileSystem()
    sent: set[bytes] = set()
    deleted: set[bytes] = set()
    with tidelog.open(data, fs=fs) as store:
        queue = store.create_queue("jobs")
        # A second handle still open when the writer closes: the writer is not the
        # last, so it takes no checkpoint at close and the cut meets the journal.
        witness = tidelog.open(data, readonly=True)
        for step in range(60):
            if rng.random() < 0.6:
                bodies = [b"m%d.%d" % (step, i) for i in range(rng.choice([1, 10]))]
                if len(bodies) == 1:
                    queue.send(bodies[0])
                else:
                    queue.send_many(bodies)
                sent.update(bodies)
            else:
                for message in queue.receive(max_messages=5, visibility_timeout=1):
                    queue.delete(message.receipt)
                    deleted.add(message.body)
            assert fs.unsynced_bytes(str(data / "journal")) == 0, f"seed {seed}"
        assert deleted, f"seed {seed}: the test should delete something"
    witness.close()
    fs.crash(keep_bytes=keep_bytes)
    reboot()
    ahead = time.time() + 3600  # every lease has expired, no message's retention has
    with tidelog.open(data, clock=lambda: ahead) as store:
        assert store._logs.journal_entries_replayed > 0, f"seed {seed}"
        queue = store.queue("jobs")
        found: set[bytes] = set()
        while batch := queue.receive(max_messages=10, visibility_timeout=600):
            found.update(m.body for m in batch)
        assert found == sent - deleted, f"seed {seed}"
        assert store.check() == []
