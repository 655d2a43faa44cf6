"""Consumer groups on streams: shard leases shared by workers, as the KCL does it.

A consumer group is a named stream consumer (`Stream.consumer(name)`: its
checkpoints are the consumer's, in `stream_checkpoints`) whose workers, in
any number of threads and processes that open the store, share the
stream's shards through *leases* kept in the LMDB database `stream_leases`
(the KCL keeps them in a DynamoDB table). Keys there, all under
`<stream uid><consumer name>\\0`:

    b"G"                      the group: its initial position, when it was made
    b"L" + u64 shard index    a shard's lease (JSON, see `_Lease`)
    b"S" + u64 shard index    a SubscribeToShard subscription (engine/stream_subscriptions.py)

A lease has an owner (a worker id), an expiry (ms by the store's clock), an
epoch (raised at every change of owner, so a worker that lost a lease and
got it back is told apart from its old self) and a counter (raised at every
change of the lease, as the KCL's leaseCounter). Every lease change and
every group checkpoint is one `LogStore.submit` operation, so it is atomic,
serialised with every other process's, and a checkpoint is committed only if
the worker still holds the lease in that same transaction (`LeaseLost`
otherwise). Times come from the store's clock, read inside the write
transaction; LMDB's write lock orders transactions, so a later commit never
sees an earlier time (on one machine's clock).

What a lease round does (`Worker._lease_round`, every lease period / 3 while
a worker runs): renew the worker's leases (noticing lost ones and hand-off
requests), create leases for new shards and forget those retention removed,
then take expired leases until the worker holds its share (the eligible
leases over the live workers, rounded up; live workers are the owners of
unexpired leases, and itself). When no lease is free and another worker holds
more than its share, it asks that worker to hand one over (`handoff_to`):
the owner finishes its batch, calls `shutdown_requested` (the processor may
checkpoint) and transfers the lease in one transaction, so a lease changes
hands without a time when two workers process the shard. A dead worker's
leases are taken once they expire: within one lease period and one round of
its last renewal.

Resharding, as the KCL: a shard's lease is *eligible* only when every parent
(still kept) has reached SHARD_END, the processor's final checkpoint at the
end of a closed shard. So every record of a partition key is processed in put
order across splits and merges.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from tidelog.segments.errors import Error, InvalidArgument, NotFound
from tidelog.segments.writer import WriteContext
from tidelog.streams import (
    CHECKPOINTS_DB,
    FOLLOW_POLL_SECONDS,
    GET_RECORDS_LIMIT_MAX,
    LEASES_DB,
    Consumer,
    ExpiredIterator,
    StreamRecord,
    check_stream_name,
    parse_sequence_number,
    sequence_number,
    shard_id_for,
    shard_index_of,
)

if TYPE_CHECKING:
    from tidelog.streams import Stream

log = logging.getLogger("tidelog.groups")

LEASE_MS_DEFAULT = 10_000  # the KCL's failoverTimeMillis
LEASE_MS_MIN = 100
LEASE_MS_MAX = 3_600_000
BATCH_DEFAULT = 1000  # records a processor is handed at once (at most GetRecords' 10,000)
INITIAL_POSITIONS = ("TRIM_HORIZON", "LATEST")

_GROUP = b"G"
_LEASE = b"L"
_U64 = struct.Struct(">Q")


class LeaseLost(Error):
    """The worker no longer holds the shard's lease: it expired and another worker
    took it, or it was handed over. Nothing was written."""


def group_prefix(uid: bytes, name: str) -> bytes:
    """The key prefix of a consumer's entries in `stream_leases` (see the module doc)."""
    return uid + name.encode() + b"\0"


def _lease_key(prefix: bytes, index: int) -> bytes:
    return prefix + _LEASE + _U64.pack(index)


# -- leases ---------------------------------------------------------------------------


@dataclass
class _Lease:
    """A lease as stored (JSON). `owner` None: free. `ended`: SHARD_END reached."""

    owner: str | None = None
    epoch: int = 0
    counter: int = 0
    expires_ms: int = 0
    ended: bool = False
    handoff_to: str | None = None

    def live(self, now_ms: int) -> bool:
        return self.owner is not None and self.expires_ms >= now_ms

    def dump(self) -> bytes:
        return json.dumps(
            {
                "owner": self.owner,
                "epoch": self.epoch,
                "counter": self.counter,
                "expires_ms": self.expires_ms,
                "ended": self.ended,
                "handoff_to": self.handoff_to,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def load(cls, raw: bytes) -> _Lease:
        data = json.loads(raw)
        return cls(
            data["owner"],
            data["epoch"],
            data["counter"],
            data["expires_ms"],
            data["ended"],
            data["handoff_to"],
        )


@dataclass(frozen=True)
class ShardLease:
    """One shard's lease in a group, as `ConsumerGroup.leases()` reads it.

    `owner` is the worker id holding it (None: free, or ended); `expires_ms`
    is when it lapses unless renewed (the store's clock); `epoch` rises at
    every change of owner, `counter` at every change; `ended` says the shard
    was processed to its end (SHARD_END); `handoff_to` names a worker that
    asked for it; `checkpoint` is the group's checkpoint in the shard.
    """

    shard_id: str
    owner: str | None
    expires_ms: int
    epoch: int
    counter: int
    ended: bool
    handoff_to: str | None
    checkpoint: str | None


def _read_leases(txn: Any, db: Any, prefix: bytes) -> dict[int, _Lease]:
    out: dict[int, _Lease] = {}
    start = prefix + _LEASE
    cursor = txn.cursor(db=db)
    if cursor.set_range(start):
        for key, value in cursor:
            if not key.startswith(start):
                break
            out[_U64.unpack(key[len(start) :])[0]] = _Lease.load(value)
    return out


# -- processors --------------------------------------------------------------------------


class RecordProcessor:
    """What a worker calls for one shard, in the shape of the KCL's ShardRecordProcessor.

    A worker makes one processor per shard lease it takes (from the factory
    given to `ConsumerGroup.worker`) and calls it from one thread, in this
    order: `initialize` once, `process_records` for each batch (in order),
    then exactly one of `lease_lost` (the lease went to another worker: do
    not checkpoint), `shard_ended` (a closed shard is exhausted: checkpoint
    to let its children start) or `shutdown_requested` (the worker stops or
    hands the lease over: checkpoint what is done). Subclass and override;
    the defaults do nothing but checkpoint at the end of a shard.
    """

    def initialize(self, shard_id: str, checkpoint: str | None) -> None:
        """Called before the first batch; `checkpoint` is where processing resumes after."""

    def process_records(self, records: list[StreamRecord], checkpointer: Checkpointer) -> None:
        """A batch of the shard's records, in order. Checkpoint with `checkpointer`
        (the whole batch: `checkpointer.checkpoint()`). An exception here is logged
        and the same batch is delivered again on the next round: never skipped."""

    def lease_lost(self) -> None:
        """The lease is gone; another worker continues from the last checkpoint."""

    def shard_ended(self, checkpointer: Checkpointer) -> None:
        """Every record of the closed shard has been delivered. `checkpointer.checkpoint()`
        marks SHARD_END; until it is called the shard's children do not start (the
        worker calls this again next round)."""
        checkpointer.checkpoint()

    def shutdown_requested(self, checkpointer: Checkpointer) -> None:
        """The worker stops, or hands the lease over: checkpoint what is processed."""


ProcessorFactory = Callable[[], RecordProcessor]


class Checkpointer:
    """Checkpoints for one shard lease, fenced by the lease (as the KCL's checkpointer).

    `checkpoint()` with no argument checkpoints the last record delivered
    (at the end of a shard: SHARD_END); or pass a record or a sequence number
    of the shard. It commits only if the worker still holds the lease in the
    same transaction: raises LeaseLost otherwise, InvalidArgument for a
    record of another shard. Durable as the store's sync mode; blocks.
    """

    def __init__(self, worker: Worker, state: _Owned) -> None:
        self._worker = worker
        self._state = state
        self.shard_id = state.shard_id
        self.epoch = state.epoch

    @property
    def millis_behind_latest(self) -> int:
        """How far the last batch was behind the shard's newest record (GetRecords')."""
        return self._state.millis_behind

    def checkpoint(self, record: StreamRecord | str | None = None) -> None:
        state = self._state
        if record is None:
            if state.at_end:
                self._worker._finish_shard(state)
                return
            if state.last_delivered is None:
                return  # nothing delivered yet: nothing to record
            offset = state.last_delivered
        else:
            seq = record.sequence_number if isinstance(record, StreamRecord) else record
            index, offset = parse_sequence_number(seq)
            if index != state.index:
                raise InvalidArgument(
                    f"checkpoint: sequence number {seq} belongs to {shard_id_for(index)}, "
                    f"not {state.shard_id}"
                )
        self._worker._checkpoint(state, offset)


# -- the worker's view of a lease it holds ---------------------------------------------------


class _Owned:
    """A lease this worker holds, and its processing state (guarded by Worker._lock)."""

    def __init__(self, index: int, epoch: int, expires_ms: int) -> None:
        self.index = index
        self.shard_id = shard_id_for(index)
        self.epoch = epoch
        self.expires_ms = expires_ms
        self.lost = False
        self.handoff_to: str | None = None
        self.processor: RecordProcessor | None = None
        self.iterator: str | None = None
        self.started = False
        self.exhausted = False  # the closed shard's last record is handed out
        self.at_end = False  # in shard_ended: checkpoint() means SHARD_END
        self.finished = False  # SHARD_END committed
        self.last_delivered: int | None = None  # offset of the last record handed out
        self.millis_behind = 0


@dataclass
class _RoundResult:
    taken: dict[int, tuple[int, int]]  # index -> (epoch, expires_ms), new to this worker
    renewed: dict[int, tuple[int, str | None]]  # index -> (expires_ms, handoff_to)
    lost: set[int]
    now_ms: int


# -- the group --------------------------------------------------------------------------------


class ConsumerGroup:
    """A stream consumer whose workers share the shards by leases. Get one from
    `stream.consumer_group(name)`; make workers with `group.worker(...)`.

    Thread- and process-safe: workers of one group may run in any threads
    and processes that open the store. The group's checkpoints are those of
    `stream.consumer(name)` (so `group.consumer.lag()` shows its progress).
    """

    def __init__(
        self, stream: Stream, name: str, *, initial_position: str = "TRIM_HORIZON"
    ) -> None:
        check_stream_name(name, "consumer group name")
        if initial_position not in INITIAL_POSITIONS:
            raise InvalidArgument(
                f"initial_position: {initial_position!r} is not TRIM_HORIZON or LATEST"
            )
        self.stream = stream
        self.name = name
        self.initial_position = initial_position
        self.consumer: Consumer = stream.consumer(name)  # registers it if new

    def __repr__(self) -> str:
        return f"<tidelog.ConsumerGroup {self.name!r} of {self.stream.name!r}>"

    def worker(
        self,
        processor: ProcessorFactory | None = None,
        *,
        worker_id: str | None = None,
        lease_ms: int = LEASE_MS_DEFAULT,
        batch: int = BATCH_DEFAULT,
        max_leases: int | None = None,
    ) -> Worker:
        """A worker of this group (it holds no lease until it runs or steps).

        `processor` makes one RecordProcessor per shard (a class or any
        callable); without it, read with `worker.records()`. `worker_id`
        must be unique among the group's workers (default: host, pid and a
        random part). `lease_ms` is the lease period (100 ms-1 h; 10 s as the
        KCL): a dead worker's shards are taken over within about 1.4 of it.
        `batch` caps the records handed over at once (1-10,000);
        `max_leases` caps the leases this worker holds. Raises InvalidArgument.
        """
        return Worker(
            self,
            processor,
            worker_id=worker_id,
            lease_ms=lease_ms,
            batch=batch,
            max_leases=max_leases,
        )

    def leases(self) -> list[ShardLease]:
        """Every lease of the group, by shard index, with the group's checkpoints.

        One read transaction; writes nothing. Leases appear when a worker
        first runs a lease round.
        """
        stream = self.stream
        logs = stream._logs
        uid = stream._view().uid
        prefix = group_prefix(uid, self.name)
        with logs.env.begin() as txn:
            leases = _read_leases(txn, logs.database(LEASES_DB), prefix)
        checkpoints = self.consumer.checkpoints()
        return [
            ShardLease(
                shard_id_for(index),
                lease.owner,
                lease.expires_ms,
                lease.epoch,
                lease.counter,
                lease.ended,
                lease.handoff_to,
                checkpoints.get(shard_id_for(index)),
            )
            for index, lease in sorted(leases.items())
        ]


def _check_int(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidArgument(f"{name}: {value!r} is outside {low}-{high}")
    return value


class Worker:
    """One member of a consumer group: holds some of the shards' leases and processes them.

    Drive it with `run()` (blocks: a lease thread renews and takes every
    lease period / 3 while this thread processes) or `records()` (the same,
    as an iterator), or one round at a time with `step()` (in the calling
    thread; with an injected clock, tests need no sleeps). `stop()` (any
    thread) ends `run()`/`records()` gracefully: each processor gets
    `shutdown_requested`, then the leases are released for others to take at
    once. A worker is used from one thread at a time (plus its own lease
    thread); make one worker per thread for more.
    """

    def __init__(
        self,
        group: ConsumerGroup,
        processor: ProcessorFactory | None,
        *,
        worker_id: str | None,
        lease_ms: int,
        batch: int,
        max_leases: int | None,
    ) -> None:
        self.group = group
        self.stream = group.stream
        self._logs = self.stream._logs
        self._factory = processor
        if worker_id is None:
            worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.worker_id = worker_id
        if not isinstance(self.worker_id, str) or not 1 <= len(self.worker_id) <= 256:
            raise InvalidArgument(f"worker_id: {worker_id!r} must be a str of 1-256 characters")
        self.lease_ms = _check_int("lease_ms", lease_ms, LEASE_MS_MIN, LEASE_MS_MAX)
        self.batch = _check_int("batch", batch, 1, GET_RECORDS_LIMIT_MAX)
        self.max_leases = (
            None if max_leases is None else _check_int("max_leases", max_leases, 1, 1_000_000)
        )
        self._lock = threading.Lock()
        self._owned: dict[int, _Owned] = {}
        self._stop = threading.Event()
        self._lease_thread: threading.Thread | None = None
        self._lease_error: BaseException | None = None

    def __repr__(self) -> str:
        return f"<tidelog.Worker {self.worker_id!r} of {self.group!r}>"

    def __enter__(self) -> Worker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()

    # -- what the worker holds -----------------------------------------------------

    def owned(self) -> list[str]:
        """The shard ids whose leases this worker holds (as of its last round)."""
        with self._lock:
            return [s.shard_id for i, s in sorted(self._owned.items()) if not s.lost]

    # -- lease rounds ----------------------------------------------------------------

    def _lease_round(self) -> _RoundResult:
        """Renew, create, forget, take and ask for hand-offs in one transaction; then
        bring the in-memory state in line. Raises NotFound if the stream is gone."""
        stream = self.stream
        me = self.worker_id
        lease_ms = self.lease_ms
        with self._lock:
            held = {i: s.epoch for i, s in self._owned.items() if not s.lost and not s.finished}
        group = self.group
        max_leases = self.max_leases

        def op(ctx: WriteContext) -> _RoundResult:
            now = ctx.now_ms
            view = stream._view_in(ctx)
            prefix = group_prefix(view.uid, group.name)
            db = ctx.db(LEASES_DB)
            txn = ctx.txn
            leases = _read_leases(txn, db, prefix)
            dirty: set[int] = set()
            if txn.get(prefix + _GROUP, db=db) is None:
                _init_group(ctx, group, view, leases, dirty)
            for index in view.shards:
                if index not in leases:
                    leases[index] = _Lease()
                    dirty.add(index)
            for index in [i for i in leases if i not in view.shards]:
                txn.delete(_lease_key(prefix, index), db=db)
                del leases[index]

            def ended(index: int) -> bool:
                lease = leases.get(index)
                return lease is None or lease.ended

            eligible = [
                i
                for i in sorted(leases)
                if not leases[i].ended and all(ended(p) for p in view.shards[i].parents)
            ]
            result = _RoundResult({}, {}, set(), now)
            for index, epoch in held.items():
                lease = leases.get(index)
                if lease is None or lease.owner != me or lease.epoch != epoch or lease.ended:
                    result.lost.add(index)
                    continue
                lease.expires_ms = now + lease_ms
                lease.counter += 1
                dirty.add(index)
                result.renewed[index] = (lease.expires_ms, lease.handoff_to)
            # A lease handed over to this worker, or held from before a restart of
            # this worker id: adopt it.
            for index in eligible:
                lease = leases[index]
                if lease.owner == me and lease.live(now) and index not in held:
                    lease.expires_ms = now + lease_ms
                    lease.counter += 1
                    lease.handoff_to = None
                    dirty.add(index)
                    result.taken[index] = (lease.epoch, lease.expires_ms)
            live = [i for i in eligible if leases[i].live(now)]
            workers = {leases[i].owner for i in live} | {me}
            target = math.ceil(len(eligible) / len(workers)) if eligible else 0
            if max_leases is not None:
                target = min(target, max_leases)
            mine = [i for i in live if leases[i].owner == me]
            need = target - len(mine)
            if need > 0:
                for index in [i for i in eligible if not leases[i].live(now)][:need]:
                    lease = leases[index]
                    lease.owner, lease.epoch = me, lease.epoch + 1
                    lease.counter += 1
                    lease.expires_ms = now + lease_ms
                    lease.handoff_to = None
                    dirty.add(index)
                    result.taken[index] = (lease.epoch, lease.expires_ms)
                    need -= 1
            if need > 0 and not any(leases[i].handoff_to == me for i in live):
                _ask_handoff(leases, live, me, target, need, dirty)
            for index in dirty:
                if index in leases:
                    txn.put(_lease_key(prefix, index), leases[index].dump(), db=db)
            return result

        result: _RoundResult = self._logs.submit(op)
        with self._lock:
            for index in result.lost:
                state = self._owned.get(index)
                if state is not None:
                    state.lost = True
            for index, (expires_ms, handoff_to) in result.renewed.items():
                state = self._owned.get(index)
                if state is not None:
                    state.expires_ms = expires_ms
                    state.handoff_to = handoff_to
            for index, (epoch, expires_ms) in result.taken.items():
                self._owned[index] = _Owned(index, epoch, expires_ms)
        for index, (epoch, expires_ms) in sorted(result.taken.items()):
            self._event(
                logging.INFO,
                "acquired",
                index,
                epoch,
                result.now_ms,
                expires_ms=expires_ms,
            )
        for index in sorted(result.lost):
            self._event(logging.INFO, "lost", index, held[index], result.now_ms)
        return result

    def _event(
        self, level: int, what: str, index: int, epoch: int, at_ms: int, **more: Any
    ) -> None:
        """A lease event to the `tidelog.groups` logger, with the facts in `extra`
        (`record.lease_event`: what, worker, shard, epoch, at_ms, ...) for tools."""
        if not log.isEnabledFor(level):
            return
        fields = {
            "what": what,
            "worker": self.worker_id,
            "group": self.group.name,
            "shard": shard_id_for(index),
            "epoch": epoch,
            "at_ms": at_ms,
            **more,
        }
        detail = " ".join(f"{k}={v}" for k, v in more.items())
        log.log(
            level,
            "%s %s %s epoch %d at %d %s",
            self.worker_id,
            what,
            fields["shard"],
            epoch,
            at_ms,
            detail,
            extra={"lease_event": fields},
        )

    # -- fenced writes -----------------------------------------------------------------

    def _fenced(
        self, state: _Owned, change: Callable[[WriteContext, Any, bytes, _Lease], None]
    ) -> None:
        """Run `change` in a transaction that first checks this worker holds the lease."""
        stream = self.stream
        me = self.worker_id
        group_name = self.group.name

        def op(ctx: WriteContext) -> None:
            view = stream._view_in(ctx)
            prefix = group_prefix(view.uid, group_name)
            raw = ctx.txn.get(_lease_key(prefix, state.index), db=ctx.db(LEASES_DB))
            lease = _Lease.load(raw) if raw is not None else None
            if lease is None or lease.owner != me or lease.epoch != state.epoch or lease.ended:
                raise LeaseLost(
                    f"{group_name}/{state.shard_id}: worker {me!r} no longer holds the lease "
                    f"(epoch {state.epoch})"
                )
            change(ctx, view, prefix, lease)

        try:
            self._logs.submit(op)
        except LeaseLost:
            with self._lock:
                state.lost = True
            raise

    def _checkpoint(self, state: _Owned, offset: int) -> None:
        consumer = self.group.consumer

        def change(ctx: WriteContext, view: Any, prefix: bytes, lease: _Lease) -> None:
            key = consumer._key(view.uid, state.index)
            ctx.txn.put(key, _U64.pack(offset), db=ctx.db(CHECKPOINTS_DB))

        self._fenced(state, change)

    def _finish_shard(self, state: _Owned) -> None:
        """SHARD_END: checkpoint the shard's last record and end the lease, atomically."""
        consumer = self.group.consumer
        ended_at: list[int] = []

        def change(ctx: WriteContext, view: Any, prefix: bytes, lease: _Lease) -> None:
            shard = view.shard(state.index)
            if shard.end_offset is None:
                raise InvalidArgument(f"checkpoint: {state.shard_id} is still open")
            if shard.end_offset > 0:
                key = consumer._key(view.uid, state.index)
                ctx.txn.put(key, _U64.pack(shard.end_offset - 1), db=ctx.db(CHECKPOINTS_DB))
            lease.ended, lease.owner, lease.handoff_to = True, None, None
            lease.counter += 1
            ctx.txn.put(_lease_key(prefix, state.index), lease.dump(), db=ctx.db(LEASES_DB))
            ended_at.append(ctx.now_ms)

        self._fenced(state, change)
        with self._lock:
            state.finished = True
        self._event(logging.INFO, "ended", state.index, state.epoch, ended_at[0])

    def _transfer(self, state: _Owned, to: str | None) -> None:
        """Give the lease to `to` (a hand-off) or free it (None), in one fenced commit."""
        lease_ms = self.lease_ms
        at: list[int] = []

        def change(ctx: WriteContext, view: Any, prefix: bytes, lease: _Lease) -> None:
            lease.owner, lease.handoff_to = to, None
            lease.counter += 1
            if to is None:
                lease.expires_ms = 0
            else:
                lease.epoch += 1
                lease.expires_ms = ctx.now_ms + lease_ms
            ctx.txn.put(_lease_key(prefix, state.index), lease.dump(), db=ctx.db(LEASES_DB))
            at.append(ctx.now_ms)

        try:
            self._fenced(state, change)
        except LeaseLost:
            return
        with self._lock:
            self._owned.pop(state.index, None)
        what = "released" if to is None else "handed_off"
        self._event(logging.INFO, what, state.index, state.epoch, at[0], to=to)

    # -- processing ---------------------------------------------------------------------

    def _iterator_after(self, state: _Owned) -> str:
        """A fresh iterator just after the last record handed out (or at the trim horizon)."""
        if state.last_delivered is None:
            return self.stream.get_shard_iterator(state.shard_id, "TRIM_HORIZON")
        return self.stream.get_shard_iterator(
            state.shard_id,
            "AFTER_SEQUENCE_NUMBER",
            sequence_number=sequence_number(state.index, state.last_delivered),
        )

    def _start(self, state: _Owned) -> None:
        checkpoint = self.group.consumer.checkpoints().get(state.shard_id)
        if checkpoint is not None:
            state.last_delivered = parse_sequence_number(checkpoint)[1]
        state.iterator = self._iterator_after(state)
        if self._factory is not None:
            state.processor = self._factory()
            state.processor.initialize(state.shard_id, checkpoint)
        state.started = True

    def _drop(self, state: _Owned) -> None:
        with self._lock:
            if self._owned.get(state.index) is state:
                del self._owned[state.index]

    def _batches(self) -> Iterator[tuple[_Owned, list[StreamRecord]]]:
        """One round over the held shards: settle lost, handed-off and ended leases,
        then fetch one batch from each shard whose lease is unexpired now."""
        with self._lock:
            states = [self._owned[i] for i in sorted(self._owned)]
        for state in states:
            if state.lost:
                self._drop(state)
                if state.processor is not None and state.started:
                    state.processor.lease_lost()
                continue
            if state.handoff_to is not None:
                if state.processor is not None and state.started:
                    state.processor.shutdown_requested(Checkpointer(self, state))
                elif state.processor is None and state.started:
                    self._checkpoint_quietly(state)  # records(): yielded counts as processed
                self._transfer(state, state.handoff_to)
                continue
            if not state.started:
                self._start(state)
            if state.exhausted:
                self._end_shard(state)
                continue
            now = self._logs.now_ms()
            if now >= state.expires_ms:
                # Not renewed in time (a slow round): another worker may take it
                # now, so nothing more is handed out under it.
                with self._lock:
                    state.lost = True
                continue
            if state.iterator is None:
                continue
            try:
                got = self.stream.get_records(state.iterator, self.batch)
            except ExpiredIterator:  # idle for 5 minutes (by the store's clock)
                got = self.stream.get_records(self._iterator_after(state), self.batch)
            if got.records:
                self._event(
                    logging.DEBUG,
                    "delivered",
                    state.index,
                    state.epoch,
                    now,
                    valid_until_ms=state.expires_ms,
                    first=got.records[0].sequence_number,
                    last=got.records[-1].sequence_number,
                    count=len(got.records),
                )
            # Set before the processor runs: `checkpoint()` means "up to this batch".
            state.iterator = got.next_shard_iterator
            state.millis_behind = got.millis_behind_latest
            if got.records:
                state.last_delivered = parse_sequence_number(got.records[-1].sequence_number)[1]
            if state.iterator is None:
                state.exhausted = True
            yield state, got.records

    def _end_shard(self, state: _Owned) -> None:
        state.at_end = True
        if state.processor is None:
            self._finish_shard(state)
        else:
            try:
                state.processor.shard_ended(Checkpointer(self, state))
            except LeaseLost:
                return
            if not state.finished:
                log.warning(
                    "%s: %s ended but shard_ended did not checkpoint; asking again",
                    self.worker_id,
                    state.shard_id,
                )
                return
        self._drop(state)

    def _process_round(self) -> int:
        processed = 0
        for state, records in self._batches():
            if not records or state.processor is None:
                continue
            try:
                state.processor.process_records(records, Checkpointer(self, state))
            except LeaseLost:
                continue
            except Exception:
                log.exception(
                    "%s: process_records failed on %s; delivering the batch again",
                    self.worker_id,
                    state.shard_id,
                )
                first = parse_sequence_number(records[0].sequence_number)[1]
                state.last_delivered = first - 1 if first > 0 else None
                state.iterator = self._iterator_after(state)
                state.exhausted = False
                continue
            processed += len(records)
        return processed

    def step(self) -> int:
        """One lease round, then one batch from each held shard, in this thread.

        Returns how many records the processors were handed. Raises
        InvalidArgument without a processor (use `records()`), NotFound if
        the stream is gone, and what a processor's lease_lost, shard_ended or
        shutdown_requested raise.
        """
        if self._factory is None:
            raise InvalidArgument("step: this worker has no processor (use records())")
        self._lease_round()
        return self._process_round()

    # -- running ---------------------------------------------------------------------

    def _lease_loop(self) -> None:
        interval = self.lease_ms / 3000
        while not self._stop.is_set():
            try:
                self._lease_round()
            except NotFound as exc:
                self._lease_error = exc
                self._stop.set()
                return
            except Exception as exc:  # a failed round is retried; its leases may lapse
                log.warning("%s: lease round failed: %r", self.worker_id, exc)
            self._stop.wait(interval)

    def _start_lease_thread(self) -> None:
        if self._lease_thread is not None and self._lease_thread.is_alive():
            return
        self._stop.clear()
        self._lease_round()  # hold leases before the first batch
        thread = threading.Thread(
            target=self._lease_loop, name=f"tidelog-lease-{self.worker_id}", daemon=True
        )
        self._lease_thread = thread
        thread.start()

    def _idle_wait(self) -> None:
        # Woken at once by appends of this process, within 50 ms by other processes'.
        if not self._stop.is_set():
            self._logs.wait_for_append(FOLLOW_POLL_SECONDS)

    def run(self) -> None:
        """Process the group's shards until `stop()` is called; then shut down gracefully.

        Blocks. The lease thread renews and takes every lease_ms / 3. Raises
        InvalidArgument without a processor, NotFound if the stream is deleted.
        """
        if self._factory is None:
            raise InvalidArgument("run: this worker has no processor (use records())")
        self._start_lease_thread()
        try:
            while not self._stop.is_set():
                if self._process_round() == 0:
                    self._idle_wait()
        finally:
            self.shutdown()
        if self._lease_error is not None:
            raise self._lease_error

    def records(self, *, timeout: float | None = None) -> Iterator[StreamRecord]:
        """The held shards' records, in order within each shard, until `stop()`
        (or `timeout` seconds without a record).

        The iterator form of `run()`. Checkpoint with `worker.checkpoint(record)`.
        A record counts as processed once the next one is asked for: at the end
        of a shard, and when a lease is handed over, the worker checkpoints the
        last record it yielded. Lost leases are dropped silently (their
        records' checkpoints raise LeaseLost). Shuts down gracefully when the
        loop ends or the generator is closed.
        """
        if self._factory is not None:
            raise InvalidArgument("records: this worker has a processor (use run())")
        self._start_lease_thread()
        idle_since = time.monotonic()
        try:
            while not self._stop.is_set():
                got_any = False
                for _state, batch in list(self._batches()):
                    for record in batch:
                        got_any = True
                        yield record
                if got_any:
                    idle_since = time.monotonic()
                    continue
                if timeout is not None and time.monotonic() - idle_since >= timeout:
                    return
                self._idle_wait()
        finally:
            self.shutdown()
            if self._lease_error is not None:
                raise self._lease_error

    def checkpoint(self, record: StreamRecord) -> None:
        """Checkpoint a record that `records()` yielded, fenced by its shard's lease.

        Raises LeaseLost if the lease is no longer held, InvalidArgument for a
        record of a shard this worker does not hold.
        """
        index = shard_index_of(record.shard_id)
        with self._lock:
            state = self._owned.get(index)
        if state is None:
            raise LeaseLost(f"{self.group.name}/{record.shard_id}: not held by {self.worker_id}")
        self._checkpoint(state, parse_sequence_number(record.sequence_number)[1])

    def stop(self) -> None:
        """Ask `run()`/`records()` to finish (from any thread); returns at once."""
        self._stop.set()

    def shutdown(self) -> None:
        """Stop, give each processor `shutdown_requested`, and release the leases.

        Idempotent. Leases released here are free at once, so other workers
        take them on their next round rather than after expiry.
        """
        self._stop.set()
        thread = self._lease_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        with self._lock:
            states = list(self._owned.values())
        for state in states:
            if state.lost or state.finished:
                self._drop(state)
                if state.lost and state.processor is not None and state.started:
                    state.processor.lease_lost()
                continue
            if state.processor is not None and state.started:
                try:
                    state.processor.shutdown_requested(Checkpointer(self, state))
                except LeaseLost:
                    self._drop(state)
                    continue
            # records(): no checkpoint here, since the loop may have stopped mid-batch.
            self._transfer(state, None)
            self._drop(state)
        self._release_unadopted()

    def _release_unadopted(self) -> None:
        """Free the leases handed to this worker that it had not yet adopted."""
        stream = self.stream
        me = self.worker_id
        group_name = self.group.name

        def op(ctx: WriteContext) -> None:
            view = stream._view_in(ctx)
            prefix = group_prefix(view.uid, group_name)
            db = ctx.db(LEASES_DB)
            for index, lease in _read_leases(ctx.txn, db, prefix).items():
                if lease.owner == me:
                    lease.owner, lease.expires_ms, lease.handoff_to = None, 0, None
                    lease.counter += 1
                    ctx.txn.put(_lease_key(prefix, index), lease.dump(), db=db)

        with contextlib.suppress(NotFound):
            self._logs.submit(op)

    def _checkpoint_quietly(self, state: _Owned) -> None:
        if state.last_delivered is None:
            return
        with contextlib.suppress(LeaseLost):
            self._checkpoint(state, state.last_delivered)


def _init_group(
    ctx: WriteContext, group: ConsumerGroup, view: Any, leases: dict[int, _Lease], dirty: set[int]
) -> None:
    """The group's first lease round: apply its initial position to every shard
    without a checkpoint (LATEST: open shards start after their newest record,
    closed ones count as ended), and record the group."""
    prefix = group_prefix(view.uid, group.name)
    consumer = group.consumer
    checkpoints = ctx.db(CHECKPOINTS_DB)
    if group.initial_position == "LATEST":
        for index, shard in view.shards.items():
            key = consumer._key(view.uid, index)
            if ctx.txn.get(key, db=checkpoints) is not None:
                continue
            if shard.closed:
                leases[index] = _Lease(ended=True)
                dirty.add(index)
                continue
            last = ctx.ends(shard.info).next_offset - 1
            if last >= 0:
                ctx.txn.put(key, _U64.pack(last), db=checkpoints)
    meta = {"initial_position": group.initial_position, "created_ms": ctx.now_ms}
    ctx.txn.put(prefix + _GROUP, json.dumps(meta).encode(), db=ctx.db(LEASES_DB))


def _ask_handoff(
    leases: dict[int, _Lease], live: list[int], me: str, target: int, need: int, dirty: set[int]
) -> None:
    """Ask the most loaded other worker for one lease, if it holds more than its share
    (or its share exactly while this worker is two or more short), as the KCL steals."""
    counts: dict[str, list[int]] = {}
    for index in live:
        owner = leases[index].owner
        if owner is not None and owner != me:
            counts.setdefault(owner, []).append(index)
    if not counts:
        return
    owner, held = max(counts.items(), key=lambda item: (len(item[1]), item[0]))
    if len(held) > target or (len(held) == target and need > 1):
        candidates = [i for i in held if leases[i].handoff_to is None]
        if candidates:
            index = candidates[-1]
            leases[index].handoff_to = me
            dirty.add(index)


__all__ = [
    "Checkpointer",
    "ConsumerGroup",
    "LeaseLost",
    "RecordProcessor",
    "ShardLease",
    "Worker",
]
