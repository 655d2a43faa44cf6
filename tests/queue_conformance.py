"""Queue semantics as one suite, run against any queue-like implementation.

Each `check_*` function takes a harness with two members:

- `harness.create(name, **attributes)` -> a queue-like object with tidelog's
  `Queue` methods (send, send_many, receive, delete, delete_many,
  change_visibility, change_visibility_many, purge, approximate_counts);
- `harness.advance(seconds)` moves time on (an injected clock here; a wire
  server run may sleep instead).

tests/test_queues.py runs every check against the library; the wire-server
tests run them again through boto3 with an adapter, so both must agree.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, Protocol


class Harness(Protocol):
    def create(self, name: str, **attributes: Any) -> Any: ...

    def advance(self, seconds: float) -> None: ...


def check_send_receive_delete(h: Harness) -> None:
    q = h.create("conf-basic")
    sent = q.send(b"hello", attributes={"kind": "video", "n": 7, "raw": b"\x00\x01"})
    [m] = q.receive(max_messages=10)
    assert m.id == sent.id
    assert m.body == b"hello"
    assert m.attributes == {"kind": "video", "n": 7, "raw": b"\x00\x01"}
    assert m.receive_count == 1
    assert m.md5_of_body == sent.md5_of_body == "5d41402abc4b2a76b9719d911017c592"
    assert m.md5_of_attributes == sent.md5_of_attributes
    q.delete(m.receipt)
    h.advance(31)
    assert q.receive(max_messages=10) == []


def check_receive_returns_as_many_as_asked(h: Harness) -> None:
    q = h.create("conf-many")
    q.send_many([f"m{i}".encode() for i in range(10)])
    q.send_many([f"m{i}".encode() for i in range(10, 15)])
    first = q.receive(max_messages=10)
    assert len(first) == 10
    second = q.receive(max_messages=10)
    assert len(second) == 5
    assert {m.body for m in first + second} == {f"m{i}".encode() for i in range(15)}


def check_visibility_timeout_redelivers(h: Harness) -> None:
    q = h.create("conf-vis", visibility_timeout=30)
    q.send(b"x")
    [m] = q.receive()
    h.advance(29)
    assert q.receive() == []
    h.advance(2)
    [again] = q.receive()
    assert again.id == m.id and again.receive_count == 2
    assert again.receipt != m.receipt


def check_change_visibility_zero_releases(h: Harness) -> None:
    q = h.create("conf-release", visibility_timeout=300)
    q.send(b"x")
    [m] = q.receive()
    q.change_visibility(m.receipt, 0)
    [again] = q.receive()
    assert again.id == m.id


def check_change_visibility_extends(h: Harness) -> None:
    q = h.create("conf-extend", visibility_timeout=10)
    q.send(b"x")
    [m] = q.receive()
    q.change_visibility(m.receipt, 100)
    h.advance(50)
    assert q.receive() == []
    h.advance(51)
    assert len(q.receive()) == 1


def check_stale_receipt_does_not_delete(h: Harness, stale_error: type[Exception]) -> None:
    q = h.create("conf-stale", visibility_timeout=10)
    q.send(b"x")
    [old] = q.receive()
    h.advance(11)
    [new] = q.receive()
    with contextlib.suppress(stale_error):  # raising or not are both allowed
        q.delete(old.receipt)
    h.advance(11)
    [third] = q.receive()  # the stale delete did not remove the message
    assert third.id == new.id
    q.delete(third.receipt)


def check_delay(h: Harness) -> None:
    q = h.create("conf-delay", delay=60)
    q.send(b"queued")
    q.send(b"now", delay=0)
    [now] = q.receive(max_messages=10)
    assert now.body == b"now"
    q.delete(now.receipt)
    h.advance(61)
    assert [m.body for m in q.receive(max_messages=10)] == [b"queued"]


def check_batch_results(h: Harness) -> None:
    q = h.create("conf-batch")
    result = q.send_many(
        [
            {"id": "a", "body": b"ok"},
            {"id": "b", "body": b"bad", "attributes": {"": "x"}},
        ]
    )
    assert [entry_id for entry_id, _ in result.successful] == ["a"]
    assert [f.entry_id for f in result.failed] == ["b"]
    received = q.receive(max_messages=10)
    deleted = q.delete_many([("x", received[0].receipt), ("y", "garbage")])
    assert [entry_id for entry_id, _ in deleted.successful] == ["x"]
    assert [f.entry_id for f in deleted.failed] == ["y"]


def check_purge(h: Harness) -> None:
    q = h.create("conf-purge")
    q.send_many([b"a", b"b", b"c"])
    q.receive()
    q.purge()
    h.advance(31)
    assert q.receive(max_messages=10) == []
    q.send(b"after")
    assert [m.body for m in q.receive()] == [b"after"]


def check_counts(h: Harness) -> None:
    q = h.create("conf-counts")
    q.send_many([b"a", b"b", b"c"])
    q.send(b"later", delay=100)
    q.receive()
    counts = q.approximate_counts()
    assert (counts.visible, counts.in_flight, counts.delayed) == (2, 1, 1)


def check_fifo_order_and_group_lock(h: Harness) -> None:
    q = h.create("conf-order.fifo", fifo=True, content_based_dedup=True)
    for i in range(3):
        q.send(f"a{i}".encode(), group_id="A")
        q.send(f"b{i}".encode(), group_id="B")
    got = q.receive(max_messages=10)
    by_group: dict[str, list[bytes]] = {}
    for m in got:
        by_group.setdefault(m.group_id, []).append(m.body)
    assert by_group == {"A": [b"a0", b"a1", b"a2"], "B": [b"b0", b"b1", b"b2"]}
    assert got[0].sequence_number < got[-1].sequence_number
    q.send(b"a3", group_id="A")
    assert q.receive(max_messages=10) == []  # group A has messages in flight
    for m in got:
        q.delete(m.receipt)
    assert [m.body for m in q.receive(max_messages=10)] == [b"a3"]


def check_fifo_redelivers_in_order(h: Harness) -> None:
    q = h.create("conf-redeliver.fifo", fifo=True, visibility_timeout=10)
    q.send(b"1", group_id="g", dedup_id="d1")
    [m1] = q.receive()
    q.send(b"2", group_id="g", dedup_id="d2")
    assert q.receive() == []
    h.advance(11)
    assert [m.body for m in q.receive(max_messages=10)] == [b"1", b"2"]


def check_fifo_dedup(h: Harness) -> None:
    q = h.create("conf-dedup.fifo", fifo=True)
    a = q.send(b"x", group_id="g", dedup_id="same")
    b = q.send(b"y", group_id="g", dedup_id="same")
    assert a.id == b.id
    assert len(q.receive(max_messages=10)) == 1
    h.advance(301)
    c = q.send(b"z", group_id="g", dedup_id="same")
    assert c.id != a.id


CHECKS: list[Callable[..., None]] = [
    check_send_receive_delete,
    check_receive_returns_as_many_as_asked,
    check_visibility_timeout_redelivers,
    check_change_visibility_zero_releases,
    check_change_visibility_extends,
    check_stale_receipt_does_not_delete,
    check_delay,
    check_batch_results,
    check_purge,
    check_counts,
    check_fifo_order_and_group_lock,
    check_fifo_redelivers_in_order,
    check_fifo_dedup,
]
