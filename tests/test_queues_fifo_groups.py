"""FIFO queues: no number of messages waiting behind locked groups hides a deliverable one.

A receive once scanned a bounded number of due entries in visible-at order;
messages waiting behind a dead consumer's lease sort before that lease, so
256 of them stopped the queue for good (issue 14, point 13).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import hypothesis.strategies as st
import pytest
from helpers import FakeClock
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import tidelog

VISIBILITY = 30


@pytest.fixture
def fstore(tmp_path: Path, clock: FakeClock) -> Iterator[tidelog.Store]:
    with tidelog.open(tmp_path / "data", sync="never", clock=clock) as opened:
        yield opened
        assert opened.check() == []


def _send(queue: tidelog.Queue, group: str, bodies: list[str]) -> None:
    for start in range(0, len(bodies), 10):
        queue.send_many(
            [{"body": b, "group_id": group, "dedup_id": b} for b in bodies[start : start + 10]]
        )


def _publish(topic: tidelog.Topic, group: str, bodies: list[str]) -> None:
    for start in range(0, len(bodies), 10):
        result = topic.publish_many(
            [{"body": b, "group_id": group, "dedup_id": b} for b in bodies[start : start + 10]]
        )
        assert not result.failed, result.failed


Sender = Callable[[str, list[str]], None]


def _sender(store: tidelog.Store, queue: tidelog.Queue, part: str) -> Sender:
    """Where a test's messages go: the queue's own log, or a FIFO topic the
    queue subscribes to (the queue reads them through its view)."""
    if part == "own":
        return lambda group, bodies: _send(queue, group, bodies)
    topic = store.create_topic(f"{part}.fifo", fifo=True)
    topic.subscribe(queue, raw=True)
    return lambda group, bodies: _publish(topic, group, bodies)


def _drain(queue: tidelog.Queue) -> list[tidelog.Message]:
    """Receive and delete until a receive comes back empty."""
    got: list[tidelog.Message] = []
    while batch := queue.receive(max_messages=10):
        got.extend(batch)
        queue.delete_many([m.receipt for m in batch])
    return got


@pytest.mark.parametrize("part", ["own", "view"])
@pytest.mark.parametrize("waiting", [255, 256, 257, 3000])
def test_an_expired_lease_is_redelivered_before_the_messages_waiting_behind_it(
    fstore: tidelog.Store, clock: FakeClock, waiting: int, part: str
) -> None:
    q = fstore.create_queue("q.fifo", fifo=True, visibility_timeout=VISIBILITY)
    send = _sender(fstore, q, part)
    send("g", ["first"])
    [first] = q.receive()  # the consumer dies holding it
    send("g", [f"m{i}" for i in range(waiting)])
    assert q.receive(max_messages=10) == []  # the group is locked
    clock.advance(VISIBILITY + 1)
    assert q.approximate_counts().visible == waiting + 1
    again = q.receive(max_messages=10)
    assert [m.text for m in again] == ["first"] + [f"m{i}" for i in range(9)]
    assert again[0].id == first.id and again[0].receive_count == 2
    q.delete_many([m.receipt for m in again])
    rest = _drain(q)
    assert [m.text for m in rest] == [f"m{i}" for i in range(9, waiting)]
    assert len(q) == 0


def test_thousands_waiting_across_many_groups_all_deliver_in_group_order(
    fstore: tidelog.Store, clock: FakeClock
) -> None:
    groups, per_group = 60, 80  # 4,800 waiting messages behind 60 dead leases
    q = fstore.create_queue("many.fifo", fifo=True, visibility_timeout=VISIBILITY)
    for g in range(groups):
        _send(q, f"g{g}", [f"g{g}-0"])
    held: list[tidelog.Message] = []
    while len(held) < groups:
        batch = q.receive(max_messages=10)
        assert batch, f"only {len(held)} of {groups} group heads delivered"
        held.extend(batch)
    for g in range(groups):
        _send(q, f"g{g}", [f"g{g}-{i}" for i in range(1, per_group)])
    assert q.receive(max_messages=10) == []  # every group is locked
    # Half the consumers come back and delete; the other half died.
    alive = {m.text for m in held[::2]}
    for m in held[::2]:
        q.delete(m.receipt)
    clock.advance(VISIBILITY + 1)
    got = _drain(q)
    assert len(got) == groups * per_group - len(alive)
    by_group: dict[str, list[int]] = {}
    for m in got:
        group, index = m.text.split("-")
        assert m.group_id == group
        by_group.setdefault(group, []).append(int(index))
    for g in range(groups):
        start = 1 if f"g{g}-0" in alive else 0
        assert by_group[f"g{g}"] == list(range(start, per_group)), f"g{g}"
    assert len(q) == 0 and q.approximate_counts().visible == 0


@pytest.mark.parametrize("part", ["own", "view"])
def test_a_group_released_by_a_delete_serves_its_waiting_messages_at_once(
    fstore: tidelog.Store, part: str
) -> None:
    q = fstore.create_queue("rel.fifo", fifo=True, visibility_timeout=VISIBILITY)
    send = _sender(fstore, q, part)
    send("g", ["head"])
    [head] = q.receive()
    send("g", [f"m{i}" for i in range(600)])
    send("other", ["o0"])
    assert [m.text for m in q.receive(max_messages=10)] == ["o0"]  # the other group is free
    q.delete(head.receipt)
    assert [m.text for m in q.receive(max_messages=3)] == ["m0", "m1", "m2"]


@pytest.mark.parametrize("part", ["own", "view"])
def test_change_visibility_of_an_expired_lease_behind_another_locks_the_group(
    fstore: tidelog.Store, clock: FakeClock, part: str
) -> None:
    q = fstore.create_queue("cv.fifo", fifo=True, visibility_timeout=VISIBILITY)
    _sender(fstore, q, part)("g", ["a", "b", "c"])
    a, b = q.receive(max_messages=2)
    q.change_visibility(a.receipt, 100)
    clock.advance(VISIBILITY + 1)  # b's lease expires; a still holds the group
    assert q.receive(max_messages=10) == []
    q.change_visibility(b.receipt, 200)  # b is in flight again
    q.delete(a.receipt)
    assert q.receive(max_messages=10) == []  # b holds the group now
    q.delete(b.receipt)
    assert [m.text for m in q.receive(max_messages=10)] == ["c"]


def test_every_part_of_a_queue_serves_what_waits_behind_its_dead_leases(
    fstore: tidelog.Store, clock: FakeClock
) -> None:
    """The queue's own log and two topic views, each with groups locked by
    dead leases and hundreds waiting behind them."""
    q = fstore.create_queue("parts.fifo", fifo=True, visibility_timeout=VISIBILITY)
    parts = ("own", "t1", "t2")
    senders = {part: _sender(fstore, q, part) for part in parts}
    groups = [f"{part}_g{g}" for part in parts for g in range(3)]
    per_group = 300
    for group in groups:
        senders[group.split("_")[0]](group, [f"{group}-0"])
    held: list[tidelog.Message] = []
    while len(held) < len(groups):
        batch = q.receive(max_messages=10)
        assert batch, f"only {len(held)} of {len(groups)} group heads delivered"
        held.extend(batch)
    assert sorted(m.text for m in held) == sorted(f"{g}-0" for g in groups)
    for group in groups:
        senders[group.split("_")[0]](group, [f"{group}-{i}" for i in range(1, per_group)])
    assert q.receive(max_messages=10) == []  # every group of every part is locked
    alive = {m.text for m in held[::2]}
    for m in held[::2]:
        q.delete(m.receipt)
    clock.advance(VISIBILITY + 1)
    got = _drain(q)
    assert len(got) == len(groups) * per_group - len(alive)
    by_group: dict[str, list[int]] = {}
    for m in got:
        group, index = m.text.split("-")
        assert m.group_id == group
        by_group.setdefault(group, []).append(int(index))
    for group in groups:
        start = 1 if f"{group}-0" in alive else 0
        assert by_group[group] == list(range(start, per_group)), group
    assert len(q) == 0 and q.approximate_counts().visible == 0


# -- a model with a clock -------------------------------------------------------------------------


class FifoBurstMachine(RuleBasedStateMachine):
    """A FIFO queue against a model, with bursts of hundreds of messages to a
    group and an injected clock: consumers that die (never delete) leave
    leases to expire, and every receive must hand out exactly what the model
    says is deliverable, in group order."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="tidelog-fifo-")
        self.clock = FakeClock()
        self.store = tidelog.open(self.dir, sync="never", clock=self.clock)
        self.queue = self.store.create_queue("m.fifo", fifo=True, visibility_timeout=VISIBILITY)
        self.sent = self.sent_order = 0
        # Per live message, by its unique body (deleted ones are forgotten):
        # send order, group, lease end (once received) and newest receipt.
        self.order: dict[str, int] = {}
        self.leases: dict[str, float] = {}
        self.receipts: dict[str, str] = {}
        self.groups: dict[str, str] = {}

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def deliverable(self) -> list[str]:
        now = self.clock()
        locked = {self.groups[i] for i, until in self.leases.items() if until > now}
        live = sorted(self.order, key=self.order.__getitem__)
        return [i for i in live if self.groups[i] not in locked]

    def send_bodies(self, group: str, bodies: list[str]) -> None:
        """Put the messages into the queue (here: its own log)."""
        _send(self.queue, group, bodies)

    @rule(group=st.sampled_from(["a", "b", "c"]), count=st.sampled_from([1, 5, 300]))
    def send(self, group: str, count: int) -> None:
        bodies = [f"s{self.sent + i}" for i in range(count)]
        self.sent += count
        self.send_bodies(group, bodies)
        for body in bodies:
            self.order[body] = self.sent_order
            self.sent_order += 1
            self.groups[body] = group

    @rule(n=st.integers(1, 10), dies=st.booleans())
    def receive(self, n: int, dies: bool) -> None:
        expected = self.deliverable()
        got = self.queue.receive(max_messages=n)
        assert [m.text for m in got] == expected[: min(n, len(expected))]
        for m in got:
            self.leases[m.text] = self.clock() + VISIBILITY
            self.receipts[m.text] = m.receipt
        if not dies and got:
            self.queue.delete_many([m.receipt for m in got])
            for m in got:
                self.forget(m.text)

    @precondition(lambda self: self.receipts)
    @rule(data=st.data())
    def late_delete(self, data: st.DataObject) -> None:
        """A slow consumer deletes with its receipt (stale if redelivered since)."""
        mid = data.draw(st.sampled_from(sorted(self.receipts, key=self.order.__getitem__)))
        receipt = self.receipts.pop(mid)
        try:
            self.queue.delete(receipt)
        except tidelog.StaleReceipt:
            return
        self.forget(mid)

    @rule(seconds=st.sampled_from([1, 10, VISIBILITY + 1]))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)

    def forget(self, mid: str) -> None:
        self.order.pop(mid, None)
        self.leases.pop(mid, None)
        self.receipts.pop(mid, None)
        self.groups.pop(mid, None)

    @invariant()
    def counts_add_up(self) -> None:
        assert len(self.queue) == len(self.order)
        assert self.store.check() == []


TestFifoBurstMachine = FifoBurstMachine.TestCase
TestFifoBurstMachine.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)


class FifoViewBurstMachine(FifoBurstMachine):
    """The same model with every message published to a FIFO topic the queue
    subscribes to: the queue reads them through its view (another part)."""

    def __init__(self) -> None:
        super().__init__()
        self.topic = self.store.create_topic("t.fifo", fifo=True)
        self.topic.subscribe(self.queue, raw=True)

    def send_bodies(self, group: str, bodies: list[str]) -> None:
        _publish(self.topic, group, bodies)


TestFifoViewBurstMachine = FifoViewBurstMachine.TestCase
TestFifoViewBurstMachine.settings = settings(max_examples=25, stateful_step_count=25, deadline=None)
