"""Hypothesis state machine: a topic, subscribed queues (views) and direct sends
against a small in-memory model, with crash_and_reopen."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass

import hypothesis.strategies as st
from helpers import FakeClock
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import tidelog

VISIBILITY = 30
MAX_RECEIVES = 3
# name: (filter on "kind", raw)
QUEUES = {"all": (None, True), "only-a": (["a"], False), "only-b": (["b"], True)}


@dataclass
class Held:
    """A message as the model holds it in one queue."""

    text: str
    lease_until: float = 0.0
    receive_count: int = 0
    receipt: str | None = None


def text_of(message: tidelog.Message | tidelog.PeekedMessage) -> str:
    body = message.body.decode()
    return str(json.loads(body)["Message"]) if body.startswith("{") else body


class TopicViewsMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="tidelog-tvsm-")
        self.clock = FakeClock()
        self.store = tidelog.open(self.dir, sync="never", clock=self.clock)
        self.topic = self.store.create_topic("t")
        self.store.create_queue("dlq")
        self.subscribed: dict[str, tidelog.Subscription | None] = {}
        for name in QUEUES:
            self.store.create_queue(
                name, visibility_timeout=VISIBILITY, dead_letter=("dlq", MAX_RECEIVES)
            )
            self.subscribed[name] = None
            self._subscribe(name)
        self.model: dict[str, dict[str, Held]] = {name: {} for name in QUEUES}
        self.dead: Counter[str] = Counter()
        self.count = 0

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _subscribe(self, name: str) -> None:
        policy, raw = QUEUES[name]
        self.subscribed[name] = self.topic.subscribe(
            self.store.queue(name),
            filter_policy={"kind": policy} if policy else None,
            raw=raw,
        )

    def _next(self, what: str) -> str:
        self.count += 1
        return f"{what}-{self.count}"

    def _visible(self, name: str) -> set[str]:
        now = self.clock()
        return {t for t, held in self.model[name].items() if held.lease_until <= now}

    # -- rules ---------------------------------------------------------------------------

    @rule(kind=st.sampled_from(["a", "b", "c"]), many=st.booleans())
    def publish(self, kind: str, many: bool) -> None:
        texts = [self._next(f"pub{kind}") for _ in range(3 if many else 1)]
        if many:
            self.topic.publish_many([tidelog.PublishEntry(t, {"kind": kind}) for t in texts])
        else:
            self.topic.publish(texts[0], {"kind": kind})
        for name, (policy, _raw) in QUEUES.items():
            if self.subscribed[name] is not None and (policy is None or kind in policy):
                for text in texts:
                    self.model[name][text] = Held(text)

    @rule(name=st.sampled_from(list(QUEUES)))
    def send_direct(self, name: str) -> None:
        text = self._next("direct")
        self.store.queue(name).send(text)
        self.model[name][text] = Held(text)

    @rule(name=st.sampled_from(list(QUEUES)), count=st.integers(1, 10))
    def receive(self, name: str, count: int) -> None:
        queue = self.store.queue(name)
        visible = self._visible(name)
        # A published text reaches several queues: the DLQ is a multiset.
        dead_before = Counter(text_of(m) for m in self.store.queue("dlq").peek(1000))
        got = queue.receive(count)
        moved_counts = Counter(text_of(m) for m in self.store.queue("dlq").peek(1000))
        moved_counts.subtract(dead_before)
        assert all(n in (0, 1) for n in moved_counts.values())
        moved = {text for text, n in moved_counts.items() if n}
        texts = [text_of(m) for m in got]
        assert len(texts) == len(set(texts))
        assert set(texts) <= visible, "received a message that is not visible"
        assert moved <= visible and not moved & set(texts)
        for text in moved:
            assert self.model[name][text].receive_count >= MAX_RECEIVES
            del self.model[name][text]
            self.dead[text] += 1
        # As many as asked for, or every visible one (none is held back).
        assert len(got) == min(count, len(visible) - len(moved))
        for message, text in zip(got, texts, strict=True):
            held = self.model[name][text]
            held.receive_count += 1
            assert message.receive_count == held.receive_count
            held.lease_until = self.clock() + VISIBILITY
            held.receipt = message.receipt

    @rule(name=st.sampled_from(list(QUEUES)), data=st.data())
    def delete(self, name: str, data: st.DataObject) -> None:
        leased = sorted(t for t, h in self.model[name].items() if h.receipt is not None)
        if not leased:
            return
        text = data.draw(st.sampled_from(leased))
        held = self.model[name][text]
        assert held.receipt is not None
        self.store.queue(name).delete(held.receipt)
        del self.model[name][text]

    @rule(name=st.sampled_from(list(QUEUES)), data=st.data())
    def release(self, name: str, data: st.DataObject) -> None:
        now = self.clock()
        leased = sorted(
            t for t, h in self.model[name].items() if h.receipt is not None and h.lease_until > now
        )
        if not leased:
            return
        text = data.draw(st.sampled_from(leased))
        held = self.model[name][text]
        assert held.receipt is not None
        self.store.queue(name).change_visibility(held.receipt, 0)
        held.lease_until = now

    @rule(seconds=st.sampled_from([1, VISIBILITY + 1]))
    def tick(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule(name=st.sampled_from(list(QUEUES)))
    def toggle_subscription(self, name: str) -> None:
        sub = self.subscribed[name]
        if sub is None:
            self._subscribe(name)
        else:
            self.topic.unsubscribe(sub)  # what was published stays in the queue
            self.subscribed[name] = None

    @rule(name=st.sampled_from(list(QUEUES)))
    def purge(self, name: str) -> None:
        self.store.queue(name).purge()
        self.model[name].clear()

    @precondition(lambda self: self.count > 0)
    @rule()
    def crash_and_reopen(self) -> None:
        self.store.close()
        self.store = tidelog.open(self.dir, sync="never", clock=self.clock)
        self.topic = self.store.topic("t")

    @rule()
    def retention_pass(self) -> None:
        self.store.enforce_retention()

    # -- invariants ----------------------------------------------------------------------

    @invariant()
    def queues_hold_what_the_model_holds(self) -> None:
        for name in QUEUES:
            queue = self.store.queue(name)
            peeked = queue.peek(1000)
            assert sorted(text_of(m) for m in peeked) == sorted(self.model[name])
            counts = queue.approximate_counts()
            visible = self._visible(name)
            assert counts.visible == len(visible)
            assert counts.in_flight == len(self.model[name]) - len(visible)
            assert counts.delayed == 0

    @invariant()
    def dead_letters_are_kept(self) -> None:
        dead = Counter(text_of(m) for m in self.store.queue("dlq").peek(1000))
        assert +dead == +self.dead


TopicViewsMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=40, deadline=None
)
test_topic_views_against_the_model = TopicViewsMachine.TestCase
