"""Durable message move tasks, retention without receives, exact counts.

Real LMDB, real files, real processes; an injected clock, so nothing sleeps
for a timing rule.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import FakeClock

import tidelog
from tidelog import queues


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "data")


@pytest.fixture
def cstore(path: str, clock: FakeClock) -> Iterator[tidelog.Store]:
    with tidelog.open(path, sync="never", clock=clock) as opened:
        yield opened
        assert opened.check() == []


def fill(queue: tidelog.Queue, count: int, prefix: str = "m") -> list[str]:
    ids: list[str] = []
    for start in range(0, count, 10):
        result = queue.send_many(
            [f"{prefix}{i}".encode() for i in range(start, min(count, start + 10))]
        )
        ids += [r.id for _, r in result.successful]
    return ids


def drain(queue: tidelog.Queue) -> list[tidelog.Message]:
    got: list[tidelog.Message] = []
    while batch := queue.receive(max_messages=10):
        got += batch
        queue.delete_many([m.receipt for m in batch])
    return got


def segment_files(store: tidelog.Store, queue: tidelog.Queue) -> int:
    return len(os.listdir(store._logs.log_dir(queue.log_id)))


# -- move tasks -----------------------------------------------------------------------------------


def test_a_task_is_stored_and_resumed_by_the_next_handle(path: str, clock: FakeClock) -> None:
    with tidelog.open(path, sync="never", clock=clock) as first:
        dlq = first.create_queue("dlq")
        first.create_queue("dest")
        ids = fill(dlq, 50)
        # One message a second: the first handle moves at most a batch of one
        # before it closes, leaving the task RUNNING in the store.
        task = first.start_message_move_task("dlq", "dest", max_messages_per_second=1)
        assert task.status == "RUNNING" and task.to_move == 50
    with tidelog.open(path, sync="never", clock=clock) as second:
        [listed] = second.list_message_move_tasks("dlq")
        assert (listed.handle, listed.status) == (task.handle, "RUNNING")
        assert listed.moved <= 1
        # The first handle's lease (15 s by the store's clock) still holds it.
        assert queues.run_message_move_tasks(second) == 0
        clock.advance(16)
        while queues.run_message_move_tasks(second):
            pass
        assert listed.wait(5) and listed.status == "COMPLETED" and listed.moved == 50
        got = drain(second.queue("dest"))
        assert sorted(m.id for m in got) == sorted(ids)  # each moved exactly once
        assert len(second.queue("dlq")) == 0
        assert second.check() == []


def test_cancel_from_another_handle_stops_the_next_batch(path: str, clock: FakeClock) -> None:
    with (
        tidelog.open(path, sync="never", clock=clock) as a,
        tidelog.open(path, sync="never", clock=clock) as b,
    ):
        dlq = a.create_queue("dlq")
        dest = a.create_queue("dest")
        fill(dlq, 40)
        task = a.start_message_move_task("dlq", "dest", max_messages_per_second=10)
        cancelled = b.cancel_message_move_task(task.handle)
        assert cancelled.status == "CANCELLED"
        moved = cancelled.moved
        assert queues.run_message_move_tasks(a) == 0
        assert task.wait(5) and task.status == "CANCELLED" and task.moved == moved
        assert len(dlq) + len(dest) == 40 and len(dest) == moved
        assert b.cancel_message_move_task(task.handle).status == "CANCELLED"  # idempotent
        with pytest.raises(tidelog.NotFound):
            b.cancel_message_move_task("no-such-task")


def test_one_running_task_per_source_and_listing_is_bounded(
    cstore: tidelog.Store, clock: FakeClock
) -> None:
    dlq = cstore.create_queue("dlq")
    cstore.create_queue("dest")
    for round_ in range(queues.MOVE_TASKS_KEPT + 3):
        fill(dlq, 3, prefix=f"r{round_}-")
        task = cstore.start_message_move_task("dlq", "dest", max_messages_per_second=1)
        if round_ == 0:
            with pytest.raises(tidelog.AlreadyExists):
                cstore.start_message_move_task("dlq", "dest")
        while queues.run_message_move_tasks(cstore):
            pass
        assert task.wait(5) and task.status == "COMPLETED"
        clock.advance(1)
    listed = cstore.list_message_move_tasks("dlq")
    assert len(listed) == queues.MOVE_TASKS_KEPT
    assert [t.started_ms for t in listed] == sorted(t.started_ms for t in listed)
    assert sum(t.moved for t in listed) == 3 * queues.MOVE_TASKS_KEPT
    assert len(cstore.queue("dest")) == 3 * (queues.MOVE_TASKS_KEPT + 3)


def test_a_task_whose_destination_goes_fails_without_losing(
    cstore: tidelog.Store, clock: FakeClock
) -> None:
    dlq = cstore.create_queue("dlq")
    cstore.create_queue("dest")
    fill(dlq, 25)
    task = cstore.start_message_move_task("dlq", "dest", max_messages_per_second=10)
    cstore.delete_queue("dest")
    clock.advance(16)
    queues.run_message_move_tasks(cstore)
    assert task.wait(5) and task.status == "FAILED" and "dest" in (task.error or "")
    assert len(dlq) + task.moved == 25


def test_redrive_to_the_sources_keeps_id_body_and_attributes(
    cstore: tidelog.Store, clock: FakeClock
) -> None:
    dlq = cstore.create_queue("dlq")
    a = cstore.create_queue("a", visibility_timeout=1, dead_letter=("dlq", 1))
    b = cstore.create_queue("b", visibility_timeout=1, dead_letter=("dlq", 1))
    sent = {a.send(b"from-a", attributes={"k": 1}).id: a, b.send(b"from-b").id: b}
    for q in (a, b):
        q.receive()
    clock.advance(2)
    assert a.receive() == [] and b.receive() == []
    assert len(dlq) == 2
    task = cstore.start_message_move_task("dlq")
    assert task.wait(5) and task.status == "COMPLETED" and task.moved == 2
    for q in (a, b):
        [m] = q.receive()
        assert sent[m.id] is q and m.body == f"from-{q.name}".encode()
        assert m.attributes == ({"k": 1} if q is a else {})


MOVER = """
    import sys, time, tidelog
    with tidelog.open(sys.argv[1]) as store:
        task = store.start_message_move_task("dlq", "dest", max_messages_per_second=100)
        print(task.handle, flush=True)
        time.sleep(60)
"""


def test_sigkill_mid_move_neither_loses_nor_duplicates(path: str) -> None:
    total = 300
    with tidelog.open(path, sync="never") as store:
        ids = fill(store.create_queue("dlq"), total)
        store.create_queue("dest")
    # The parent's clock stands still, so the child's lease holds until we advance it.
    clock = FakeClock(time.time())
    with tidelog.open(path, sync="never", clock=clock) as store:
        child = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(MOVER), path],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        handle = child.stdout.readline().strip()
        assert handle, child.stderr.read() if child.stderr else ""
        [task] = store.list_message_move_tasks("dlq")
        deadline = time.monotonic() + 30
        while task.refresh().moved < 50 and time.monotonic() < deadline:
            store._logs.wait_for_append(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        dlq, dest = store.queue("dlq"), store.queue("dest")
        task.refresh()
        assert task.status == "RUNNING" and 50 <= task.moved < total
        # The killed batch either committed whole (and was counted) or not at all.
        assert len(dest) == task.moved and len(dlq) == total - task.moved
        clock.advance(3600)  # the dead driver's lease lapses
        while queues.run_message_move_tasks(store):
            pass
        assert task.wait(10) and task.status == "COMPLETED" and task.moved == total
        got = drain(dest)
        assert len(got) == total and sorted(m.id for m in got) == sorted(ids)
        assert len(dlq) == 0 and drain(dlq) == []
        assert store.check() == []


# -- retention without receives -------------------------------------------------------------------


def test_retention_reclaims_an_idle_queues_segments(
    cstore: tidelog.Store, clock: FakeClock
) -> None:
    q = cstore.create_queue("idle", retention=60, segment_bytes_max=4096)
    fill(q, 700)  # more than 5 segments of 4 KiB (a send_many of 10 is one batch)
    q.send(b"late", delay=30)  # a delayed one expires too
    leased = q.receive(max_messages=10)  # leased ones expire as well (as SQS)
    assert len(leased) == 10 and segment_files(cstore, q) > 5
    assert cstore.enforce_retention() == 0  # nothing has expired yet
    clock.advance(61)
    young = fill(q, 5, prefix="young")
    assert cstore.enforce_retention() >= 5
    assert segment_files(cstore, q) <= 2  # only what holds the young messages
    counts = q.approximate_counts()
    assert (counts.visible, counts.in_flight, counts.delayed) == (5, 0, 0)
    with pytest.raises(tidelog.StaleReceipt):
        q.change_visibility(leased[0].receipt, 5)
    q.delete(leased[0].receipt)  # an expired message's delete succeeds, as SQS
    assert sorted(m.id for m in drain(q)) == sorted(young)
    assert cstore.enforce_retention() == 0


def test_retention_keeps_a_replay_window(cstore: tidelog.Store, clock: FakeClock) -> None:
    q = cstore.create_queue("kept", retention=60, segment_bytes_max=4096, replay_window=600)
    fill(q, 200)
    files = segment_files(cstore, q)
    clock.advance(61)
    assert cstore.enforce_retention() == 0 and segment_files(cstore, q) == files
    assert len(q) == 0 and q.receive() == []
    clock.advance(600)
    assert cstore.enforce_retention() > 0 and segment_files(cstore, q) < files


def test_retention_steps_are_bounded(
    cstore: tidelog.Store, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queues, "RETENTION_STEP_MAX", 7)
    q = cstore.create_queue("steps", retention=60)
    fill(q, 30)
    q.receive(max_messages=10)
    clock.advance(61)
    assert q._retention_step(None) == (0, True)  # 7 entries, then more to do
    assert len(q) == 30 - 7 - 7  # 7 leased entries and 7 never-received records
    q.enforce_retention()
    assert len(q) == 0 and q._retention_step(None) == (0, False)


def test_the_worker_runs_retention_on_its_timer(cstore: tidelog.Store, clock: FakeClock) -> None:
    q = cstore.create_queue("timer", retention=60, segment_bytes_max=4096)
    fill(q, 200)
    clock.advance(61)
    worker = queues._worker(cstore)
    worker._next_retention = 0.0  # the 60 s timer is due
    worker.step()
    assert len(q) == 0 and segment_files(cstore, q) == 1
    assert worker._next_retention > time.monotonic() + 30


# -- counts ---------------------------------------------------------------------------------------


def test_counts_are_exact_for_many_expired_leases(cstore: tidelog.Store, clock: FakeClock) -> None:
    q = cstore.create_queue("counts", visibility_timeout=10)
    fill(q, 120)
    for _ in range(10):
        q.receive(max_messages=10)  # 100 leased
    counts = q.approximate_counts()
    assert (counts.visible, counts.in_flight) == (20, 100)
    clock.advance(11)  # all 100 leases expire, with no receive since
    counts = q.approximate_counts()
    assert (counts.visible, counts.in_flight, counts.delayed) == (120, 0, 0)
