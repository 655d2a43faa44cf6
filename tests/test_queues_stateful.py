"""Hypothesis state machine: a real queue against a small model (standard and FIFO)."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass

import hypothesis.strategies as st
from helpers import FakeClock
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import tidelog

VISIBILITY = 30


@dataclass
class ModelMessage:
    body: bytes
    group: str
    order: int
    receipt: str | None = None
    lease_until: float = 0.0
    receive_count: int = 0
    deleted: bool = False


class QueueMachine(RuleBasedStateMachine):
    fifo = False

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="tidelog-qsm-")
        self.clock = FakeClock()
        self.store = tidelog.open(self.dir, sync="never", clock=self.clock)
        name = "m.fifo" if self.fifo else "m"
        self.queue = self.store.create_queue(name, fifo=self.fifo, visibility_timeout=VISIBILITY)
        self.model: dict[str, ModelMessage] = {}
        self.receipts: list[tuple[str, str]] = []  # (message id, receipt)
        self.sent = 0

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- model helpers -----------------------------------------------------------

    def visible(self, m: ModelMessage) -> bool:
        return not m.deleted and m.lease_until <= self.clock()

    def deliverable(self) -> list[str]:
        live = sorted((m.order, mid) for mid, m in self.model.items() if not m.deleted)
        if not self.fifo:
            return [mid for _, mid in live if self.visible(self.model[mid])]
        locked = {m.group for m in self.model.values() if not m.deleted and not self.visible(m)}
        return [mid for _, mid in live if self.model[mid].group not in locked]

    # -- rules ---------------------------------------------------------------------

    @rule(body=st.binary(min_size=1, max_size=20), group=st.sampled_from(["a", "b", "c"]))
    def send(self, body: bytes, group: str) -> None:
        self.sent += 1
        if self.fifo:
            result = self.queue.send(body, group_id=group, dedup_id=f"d{self.sent}")
        else:
            result = self.queue.send(body)
        assert result.id not in self.model
        self.model[result.id] = ModelMessage(body, group, self.sent)

    @rule(n=st.integers(1, 10))
    def receive(self, n: int) -> None:
        expected = self.deliverable()
        got = self.queue.receive(max_messages=n)
        assert len(got) == min(n, len(expected)), (len(got), expected)
        if self.fifo:
            assert [m.id for m in got] == expected[: len(got)]
        for message in got:
            m = self.model[message.id]
            assert message.id in expected and message.body == m.body
            m.receive_count += 1
            assert message.receive_count == m.receive_count
            m.receipt = message.receipt
            m.lease_until = self.clock() + VISIBILITY
            self.receipts.append((message.id, message.receipt))

    @precondition(lambda self: self.receipts)
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        mid, receipt = data.draw(st.sampled_from(self.receipts))
        m = self.model[mid]
        if m.deleted:
            self.queue.delete(receipt)  # deleting again succeeds
        elif receipt == m.receipt:
            self.queue.delete(receipt)
            m.deleted = True
        else:
            try:
                self.queue.delete(receipt)
            except tidelog.StaleReceipt:
                pass
            else:
                raise AssertionError("a stale receipt deleted")

    @precondition(lambda self: self.receipts)
    @rule(data=st.data(), seconds=st.sampled_from([0, 5, 50]))
    def change_visibility(self, data: st.DataObject, seconds: int) -> None:
        mid, receipt = data.draw(st.sampled_from(self.receipts))
        m = self.model[mid]
        if m.deleted or receipt != m.receipt:
            try:
                self.queue.change_visibility(receipt, seconds)
            except tidelog.StaleReceipt:
                return
            raise AssertionError("change_visibility accepted a stale receipt")
        self.queue.change_visibility(receipt, seconds)
        m.lease_until = self.clock() + seconds

    @rule(seconds=st.sampled_from([1, 10, 31, 60]))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule()
    def crash_and_reopen(self) -> None:
        self.store.close()
        self.store = tidelog.open(self.dir, sync="never", clock=self.clock)
        self.queue = self.store.queue(self.queue.name)

    @invariant()
    def counts_add_up(self) -> None:
        live = sum(1 for m in self.model.values() if not m.deleted)
        assert len(self.queue) == live


class FifoQueueMachine(QueueMachine):
    fifo = True


SETTINGS = settings(max_examples=50, stateful_step_count=30, deadline=None)
TestQueueMachine = QueueMachine.TestCase
TestQueueMachine.settings = SETTINGS
TestFifoQueueMachine = FifoQueueMachine.TestCase
TestFifoQueueMachine.settings = SETTINGS
