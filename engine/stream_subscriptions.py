"""Shard subscriptions: enhanced fan-out (Kinesis's SubscribeToShard) in the library.

`consumer.subscribe(shard, start)` pushes a shard's records to a registered
consumer as they are committed, for up to 5 minutes, with Kinesis's limits:
one subscription per consumer and shard; a second `subscribe` within 5 s of
a successful one raises SubscriptionInUse, a later one takes the
subscription over, and the old one raises SubscriptionInUse at its next
event. The registry is one entry per consumer and shard in `stream_leases`
(key `<stream uid><consumer>\\0` + b"S" + u64 shard index, see
engine/stream_groups.py), so the limits hold across every process that
opens the store. Times are the store's clock.

Events (`SubscriptionEvent`) carry the records read since the last event,
the continuation sequence number (subscribe again AFTER it to resume),
MillisBehindLatest, and at the end of a closed shard its children (then the
continuation is None and the subscription ends). An event without records
is sent after HEARTBEAT_MS without any, once a record precedes the position
(a continuation needs a record to name).
"""

from __future__ import annotations

import json
import os
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tidelog.segments.errors import AlreadyExists, InvalidArgument, NotFound
from tidelog.segments.writer import WriteContext
from tidelog.stream_groups import group_prefix
from tidelog.streams import (
    CHECKPOINTS_DB,
    FOLLOW_POLL_SECONDS,
    GET_RECORDS_LIMIT_MAX,
    ITERATOR_TYPES,
    LEASES_DB,
    ExpiredIterator,
    ShardDescription,
    StreamRecord,
    parse_sequence_number,
    sequence_number,
    shard_index_of,
)

if TYPE_CHECKING:
    from tidelog.streams import Consumer

SUBSCRIPTION_MS = 5 * 60 * 1000  # a subscription's life, as Kinesis's
TAKEOVER_MS = 5000  # a second subscribe within this of the first is refused
HEARTBEAT_MS = 5000  # an event without records after this long without any

_SUBSCRIPTION = b"S"
_U64 = struct.Struct(">Q")


class SubscriptionInUse(AlreadyExists):
    """A subscription of the consumer to the shard began less than 5 s ago, or this
    one was taken over by a later subscribe (Kinesis's ResourceInUseException)."""


@dataclass(frozen=True)
class SubscriptionEvent:
    """What a subscription pushes (Kinesis's SubscribeToShardEvent).

    `continuation_sequence_number`: subscribe again with
    ("AFTER_SEQUENCE_NUMBER", it) to resume; None only in the last event of
    a closed shard, which names the shard's children in `child_shards`.
    """

    records: list[StreamRecord]
    continuation_sequence_number: str | None
    millis_behind_latest: int
    child_shards: tuple[ShardDescription, ...] = ()


def _key(uid: bytes, consumer: str, index: int) -> bytes:
    return group_prefix(uid, consumer) + _SUBSCRIPTION + _U64.pack(index)


class ShardSubscription:
    """A live subscription: `next_event(timeout)`, or iterate for events until it ends.

    It ends after 5 minutes by the store's clock, after the last event of a
    closed shard, or on `close()`. Used from one thread at a time; not
    shared between processes (the registry entry is).
    """

    def __init__(
        self, consumer: Consumer, shard_id: str, iterator: str, token: str, started_ms: int
    ) -> None:
        self.consumer = consumer
        self.stream = consumer.stream
        self.shard_id = shard_id
        self._index = shard_index_of(shard_id)
        self._logs = self.stream._logs
        self._iterator: str | None = iterator
        self._token = token
        self.started_ms = started_ms
        self.expires_ms = started_ms + SUBSCRIPTION_MS
        self._uid = self.stream._view().uid
        self._last: int | None = None  # offset of the last record pushed
        self._last_event_ms = started_ms
        self.ended = False

    def __repr__(self) -> str:
        return f"<tidelog.ShardSubscription {self.consumer.name!r} to {self.shard_id}>"

    def __iter__(self) -> Iterator[SubscriptionEvent]:
        while not self.ended:
            event = self.next_event(1.0)
            if event is not None:
                yield event

    def close(self) -> None:
        """End the subscription here (its registry entry stays for the 5 s rule)."""
        self.ended = True

    def _check_current(self) -> None:
        key = _key(self._uid, self.consumer.name, self._index)
        with self._logs.env.begin() as txn:
            raw = txn.get(key, db=self._logs.database(LEASES_DB))
        if raw is None:
            self.ended = True
            raise NotFound(
                f"consumer {self.consumer.name!r} of stream {self.stream.name!r}: "
                "deregistered while subscribed"
            )
        if json.loads(raw)["token"] != self._token:
            self.ended = True
            raise SubscriptionInUse(
                f"{self.consumer.name}/{self.shard_id}: the subscription was taken over by a "
                "later SubscribeToShard"
            )

    def next_event(self, timeout: float) -> SubscriptionEvent | None:
        """The next event, waiting up to `timeout` seconds for records; None if none yet.

        Woken at once by appends of this process, within 50 ms by other
        processes'. Returns None once the subscription has ended (see
        `ended`). Raises SubscriptionInUse if taken over, NotFound if the
        consumer, stream or shard is gone (both end it), Corruption.
        """
        deadline = time.monotonic() + max(timeout, 0.0)
        while not self.ended:
            now_ms = self._logs.now_ms()
            if now_ms >= self.expires_ms:
                self.ended = True
                return None
            self._check_current()
            event = self._read(now_ms)
            if event is not None:
                return event
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._logs.wait_for_append(min(left, FOLLOW_POLL_SECONDS))
        return None

    def _read(self, now_ms: int) -> SubscriptionEvent | None:
        stream = self.stream
        if self._iterator is None:
            return None
        try:
            got = stream.get_records(self._iterator, GET_RECORDS_LIMIT_MAX)
        except ExpiredIterator:  # only if polled less than every 5 minutes
            if self._last is None:
                raise
            self._iterator = stream.get_shard_iterator(
                self.shard_id,
                "AFTER_SEQUENCE_NUMBER",
                sequence_number=sequence_number(self._index, self._last),
            )
            got = stream.get_records(self._iterator, GET_RECORDS_LIMIT_MAX)
        self._iterator = got.next_shard_iterator
        if got.records:
            self._last = parse_sequence_number(got.records[-1].sequence_number)[1]
        if got.next_shard_iterator is None:  # the end of a closed shard
            self.ended = True
            by_id = {s.shard_id: s for s in stream.describe().shards}
            children = tuple(by_id[c] for c in got.child_shards if c in by_id)
            return SubscriptionEvent(got.records, None, 0, children)
        if not got.records and (self._last is None or now_ms - self._last_event_ms < HEARTBEAT_MS):
            return None
        self._last_event_ms = now_ms
        continuation = sequence_number(self._index, self._last) if self._last is not None else None
        return SubscriptionEvent(got.records, continuation, got.millis_behind_latest)


def subscribe(
    consumer: Consumer,
    shard: str | int,
    start: str | tuple[str, Any] | datetime = "LATEST",
) -> ShardSubscription:
    """Subscribe `consumer` to `shard` from `start` (as Stream.read's); see Consumer.subscribe."""
    stream = consumer.stream
    view = stream._view()
    found = view.shard(shard)
    if isinstance(start, datetime):
        start = ("AT_TIMESTAMP", start)
    kind, argument = (start, None) if isinstance(start, str) else start
    argument_: Any = argument
    if kind not in ITERATOR_TYPES:
        raise InvalidArgument(f"start: {kind!r} is not one of {', '.join(ITERATOR_TYPES)}")
    iterator = stream.get_shard_iterator(
        found.shard_id,
        kind,
        sequence_number=argument_ if "SEQUENCE" in kind else None,
        timestamp=argument_ if kind == "AT_TIMESTAMP" else None,
    )
    # What precedes the start names the position in heartbeats before any record.
    position = stream._open_iterator(iterator)[2]
    token = os.urandom(8).hex()
    registration = consumer.name.encode() + b"\0"

    def op(ctx: WriteContext) -> int:
        current = stream._view_in(ctx)
        if current.uid != view.uid:
            raise NotFound(f"stream {stream.name!r}: not found (deleted?)")
        current.shard(found.index)
        if ctx.txn.get(current.uid + registration, db=ctx.db(CHECKPOINTS_DB)) is None:
            raise NotFound(f"consumer {consumer.name!r} of stream {stream.name!r}: not found")
        key = _key(current.uid, consumer.name, found.index)
        db = ctx.db(LEASES_DB)
        raw = ctx.txn.get(key, db=db)
        if raw is not None:
            began = json.loads(raw)["started_ms"]
            if ctx.now_ms - began < TAKEOVER_MS:
                raise SubscriptionInUse(
                    f"Another active subscription exists for consumer {consumer.name} on "
                    f"{found.shard_id}: a subscription began {ctx.now_ms - began} ms ago "
                    f"(a new one may take over {TAKEOVER_MS // 1000} s after it)"
                )
        entry = {"token": token, "started_ms": ctx.now_ms}
        ctx.txn.put(key, json.dumps(entry).encode(), db=db)
        return ctx.now_ms

    started_ms: int = stream._logs.submit(op)
    subscription = ShardSubscription(consumer, found.shard_id, iterator, token, started_ms)
    if position > 0:
        subscription._last = position - 1
    return subscription


__all__ = [
    "HEARTBEAT_MS",
    "SUBSCRIPTION_MS",
    "TAKEOVER_MS",
    "ShardSubscription",
    "SubscriptionEvent",
    "SubscriptionInUse",
    "subscribe",
]
