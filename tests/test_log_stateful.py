"""Stateful tests: tidelog logs against a small in-memory model.

`LogMachine` drives a real store (real LMDB, real files, an injected clock,
4 KiB segments so they roll often) with appends, transactions, reads, rolls,
retention, trims, time lookups, a second handle on the same directory, and
three kinds of restart: a clean close, a power cut (FaultyFileSystem forgets
every write that was not synced) and a writer that died mid-commit (uncommitted
bytes and files left on disk). After every step the store must agree with the
model: a dict of log name -> records (offset, key, headers, value, timestamp)
plus the log's start offset.

`TwoHandlesMachine` is the smaller one, after Hypothesis' own
test_database_agreement.py: two Store objects open on one directory, writing
in turn and at once from two threads, must always read the same thing.

A failure prints `@reproduce_failure(...)` (print_blob=True): paste it above
the test to replay that exact run.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from unittest import mock

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

import tidelog
from tidelog.segments import format as fmt
from tidelog.segments import recovery
from tidelog.segments.fs import FaultyFileSystem

SEGMENT_BYTES = 4096
HEADER_BYTES = 32  # docs/format.md, "Header"
FRAME_BYTES = 44  # docs/format.md, "Record batch": one record alone is a 40-byte header + 4
START_MS = 1_700_000_000_000
# Steps of 125 ms keep the clock's float seconds exact, so that the store's
# conversion to milliseconds and the model's agree to the millisecond.
CLOCK_STEP_MS = 125
NAMES = ("a", "b", "c", "ü/../x")  # names never reach paths, so any name is safe
MODES = ("always", "interval", "never")
# Small and large, leaning large so that 4 KiB segments fill and roll.
SIZES = st.one_of(st.integers(0, 40), st.integers(0, 3000), st.integers(1500, 3000))


class Clock:
    """An injected clock (seconds, as time.time), advanced by hand."""

    def __init__(self) -> None:
        self.ms = START_MS

    def __call__(self) -> float:
        return self.ms / 1000

    def advance(self, ms: int) -> None:
        self.ms += ms


@dataclass
class Rec:
    offset: int
    key: bytes
    headers: bytes
    value: bytes
    timestamp_ms: int


@dataclass
class ModelLog:
    segment_bytes_max: int
    retention_ms: int | None
    retention_bytes: int | None
    records: list[Rec] = field(default_factory=list)  # every record ever appended, from 0
    start: int = 0  # first offset still retained
    last_ts: int = 0  # the log's newest timestamp (appends never go below it)
    durable: int = 0  # records below this offset must survive a power cut
    garbage: int = 0  # bytes a dead writer left past the active segment's committed end
    garbage_end: int = 0  # the file position where they end (0: none left)
    garbage_base: int = -1  # the segment that holds them

    @property
    def end(self) -> int:
        return len(self.records)

    def retained(self) -> list[Rec]:
        return self.records[self.start :]


class _Abort(Exception):
    """Raised inside a transaction's with-block to abandon it."""


def as_tuples(records: list[tidelog.Record]) -> list[tuple[int, bytes, bytes, bytes, int]]:
    return [(r.offset, r.key, r.headers, r.value, r.timestamp_ms) for r in records]


def model_tuples(records: list[Rec]) -> list[tuple[int, bytes, bytes, bytes, int]]:
    return [(r.offset, r.key, r.headers, r.value, r.timestamp_ms) for r in records]


class LogMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.path = tempfile.mkdtemp(prefix="tidelog-stateful-")
        self.clock = Clock()
        self.boot = 0  # a power cut is a reboot: recovery sees a new boot id
        self.serial = 0
        self.mode = "always"
        self.fs = FaultyFileSystem()
        self.store: tidelog.Store = self._open("always", fs=self.fs)
        self.other: tidelog.Store | None = None  # a second handle on the same directory
        self.model: dict[str, ModelLog] = {}

    # -- helpers -----------------------------------------------------------

    def _open(
        self, mode: str, *, fs: FaultyFileSystem | None = None, readonly: bool = False
    ) -> tidelog.Store:
        with mock.patch.object(recovery, "boot_id", lambda: b"boot-%d" % self.boot):
            return tidelog.open(
                self.path,
                mode,  # type: ignore[arg-type]
                clock=self.clock,
                segment_bytes_max=SEGMENT_BYTES,
                readonly=readonly,
                fs=fs,
            )

    def _payload(self, tag: bytes, size: int) -> bytes:
        """`size` bytes that differ from every other payload of that size (when size >= 6)."""
        self.serial += 1
        pattern = tag + self.serial.to_bytes(5, "big")
        return (pattern * (size // len(pattern) + 1))[:size]

    def _pick(self, data: st.DataObject) -> str:
        return data.draw(st.sampled_from(sorted(self.model)), label="log")

    def _writer(self, data: st.DataObject) -> tidelog.Store:
        writable = self.other is not None and not self.other.readonly
        if writable and data.draw(st.booleans(), label="use second handle"):
            assert self.other is not None
            return self.other
        return self.store

    def _reader(self, data: st.DataObject) -> tidelog.Store:
        if self.other is not None and data.draw(st.booleans(), label="use second handle"):
            return self.other
        return self.store

    def _appended(self, m: ModelLog, key: bytes, headers: bytes, value: bytes, ts: int) -> None:
        m.records.append(Rec(m.end, key, headers, value, ts))
        m.last_ts = ts
        if self.mode == "always":
            m.durable = m.end

    def _default_ts(self, m: ModelLog) -> int:
        """The timestamp an append without one gets: now, but never below the log's last."""
        return max(self.clock.ms, m.last_ts)

    def _log_dir(self, name: str) -> str:
        return os.path.join(self.path, "logs", str(self.store.log(name).info.id))

    def _files(self, name: str) -> list[tuple[int, int]]:
        """(base offset, size in bytes) of each segment file of the log, in order."""
        directory = self._log_dir(name)
        out = []
        for entry in os.listdir(directory):
            base = fmt.parse_segment_name(entry)
            if base is not None:
                out.append((base, os.path.getsize(os.path.join(directory, entry))))
        return sorted(out)

    def _segments(self, name: str) -> list[tuple[int, int, int]]:
        """(base, end offset, committed size) of each segment on disk: a sealed
        file's size, the active one's committed end (_check_files checks both
        against the batches the files hold)."""
        m = self.model[name]
        files = self._files(name)
        active_position = self.store.log(name).ends().active_position
        out = []
        for i, (base, size) in enumerate(files):
            end = files[i + 1][0] if i + 1 < len(files) else m.end
            out.append((base, end, active_position if i + 1 == len(files) else size))
        return out

    def _batches_of(self, name: str, base: int, committed: int) -> tuple[list[int], bytes]:
        """Record offsets of the batches in the file's first `committed` bytes
        (every batch checked), and the bytes past them."""
        path = os.path.join(self._log_dir(name), fmt.segment_name(base))
        with open(path, "rb") as handle:
            raw = handle.read()
        header = fmt.decode_segment_header(raw)
        assert header is not None and header.base_offset == base, (name, base)
        batches, used, error = fmt.decode_batches(
            raw, fmt.SEGMENT_HEADER_BYTES, committed, header.salt, base
        )
        assert error is None and used == committed, (name, base, error, used, committed)
        return [o for b in batches for o in range(b.base_offset, b.end_offset)], raw[committed:]

    def _settle_garbage(self, name: str) -> None:
        """A dead writer's bytes are gone once a commit covered them or sealed the file."""
        m = self.model[name]
        if m.garbage:
            ends = self.store.log(name).ends()
            if ends.active_base != m.garbage_base or ends.active_position >= m.garbage_end:
                m.garbage = m.garbage_end = 0
            else:
                m.garbage = m.garbage_end - ends.active_position

    def _check_log(self, store: tidelog.Store, name: str) -> None:
        m = self.model[name]
        log = store.log(name)
        ends = log.ends()
        assert (ends.start_offset, ends.next_offset) == (m.start, m.end), name
        assert log.start_offset == m.start
        assert log.end_offset == m.end
        assert len(log) == m.end - m.start

    def _check_files(self, name: str) -> None:
        """Segment files tile the retained offsets; their committed bytes are
        exactly the batches of their records; past them lie only the
        pre-written zeros (and what a dead writer left) of the active one."""
        self._settle_garbage(name)
        m = self.model[name]
        files = self._files(name)
        assert files, f"{name}: no segment file"
        assert files[0][0] == m.start, f"{name}: first segment {files[0][0]}, start {m.start}"
        assert files[-1][0] <= m.end
        for (base, size), (_, end, expected) in zip(files, self._segments(name), strict=True):
            active = base == files[-1][0]
            if not active:
                assert end > base, f"{name}: empty sealed segment {base}"
            offsets, past = self._batches_of(name, base, expected)
            assert offsets == list(range(base, end)), (name, base, end)
            if not active:
                assert size == expected and past == b"", (name, base, size, expected)
            else:
                junk = len(past.rstrip(b"\x00"))
                assert junk <= m.garbage, (name, base, junk, m.garbage)
            # A segment passes segment_bytes_max only when one record alone does.
            assert expected <= m.segment_bytes_max or end - base == 1, (name, base, expected)

    def _read_all_agrees(self, store: tidelog.Store) -> None:
        assert sorted(log.name for log in store.logs()) == sorted(self.model)
        for name, m in self.model.items():
            got = list(store.log(name).read())
            assert all(r.flags == 0 for r in got)
            assert as_tuples(got) == model_tuples(m.retained()), name

    def _close_other(self) -> None:
        if self.other is not None:
            other, self.other = self.other, None
            other.close()

    # -- invariants -------------------------------------------------------------

    @invariant()
    def ends_agree(self) -> None:
        for name in self.model:
            self._check_log(self.store, name)
            if self.other is not None:
                self._check_log(self.other, name)
            self._check_files(name)

    # -- catalog --------------------------------------------------------------------

    @initialize(
        mode=st.sampled_from(MODES),
        name=st.sampled_from(NAMES),
        # Mostly age alone: the bytes rule, when set, tends to delete the same segments.
        retention_ms=st.sampled_from([None, 0, 1000, 5000]),
        retention_bytes=st.sampled_from([None, None, None, 12000]),
    )
    def start(
        self, mode: str, name: str, retention_ms: int | None, retention_bytes: int | None
    ) -> None:
        """Start in any sync mode, with one log (most rules need one)."""
        if mode != self.mode:
            self.store.close()
            self.mode = mode
            self.fs = FaultyFileSystem()
            self.store = self._open(mode, fs=self.fs)
        self.store.create_log(name, retention_ms=retention_ms, retention_bytes=retention_bytes)
        self.model[name] = ModelLog(SEGMENT_BYTES, retention_ms, retention_bytes)

    @rule(
        name=st.sampled_from(NAMES),
        segment_bytes_max=st.sampled_from([None, 4096, 8192]),
        retention_ms=st.sampled_from([None, 0, 250, 1000, 5000]),
        retention_bytes=st.sampled_from([None, 0, 6000, 12000, 30000]),
    )
    def create_log(
        self,
        name: str,
        segment_bytes_max: int | None,
        retention_ms: int | None,
        retention_bytes: int | None,
    ) -> None:
        if name in self.model:
            with pytest.raises(tidelog.AlreadyExists):
                self.store.create_log(name)
            again = self.store.create_log(name, retention_ms=1, exist_ok=True)
            assert again.info == self.store.log(name).info  # the old log, unchanged
            return
        log = self.store.create_log(
            name,
            segment_bytes_max=segment_bytes_max,
            retention_ms=retention_ms,
            retention_bytes=retention_bytes,
        )
        assert (log.start_offset, log.end_offset) == (0, 0)
        self.model[name] = ModelLog(
            segment_bytes_max or SEGMENT_BYTES, retention_ms, retention_bytes
        )

    @precondition(lambda self: len(self.model) > 1)  # keep one: most rules need a log
    @rule(data=st.data())
    def delete_log(self, data: st.DataObject) -> None:
        name = self._pick(data)
        self._writer(data).delete_log(name)
        del self.model[name]
        with pytest.raises(tidelog.NotFound):
            self.store.log(name)
        if self.other is not None:
            with pytest.raises(tidelog.NotFound):
                self.other.log(name)

    # -- writes ------------------------------------------------------------------------

    @precondition(lambda self: self.model)
    @rule(
        data=st.data(),
        key_size=SIZES,
        value_size=SIZES,
        header_size=st.sampled_from([0, 0, 7]),
        ts_step=st.none() | st.integers(0, 3000),
    )
    def append(
        self,
        data: st.DataObject,
        key_size: int,
        value_size: int,
        header_size: int,
        ts_step: int | None,
    ) -> None:
        name = self._pick(data)
        log = self._writer(data).log(name)
        m = self.model[name]
        key = self._payload(b"k", key_size)
        value = self._payload(b"v", value_size)
        headers = self._payload(b"h", header_size)
        if ts_step is None:
            ts = self._default_ts(m)
            offset = log.append(value, key=key, headers=headers)
        else:
            # An explicit timestamp may lie below the clock, never below the log's last.
            ts = (m.last_ts or START_MS - 10_000) + ts_step
            offset = log.append(value, key=key, headers=headers, timestamp_ms=ts)
        assert offset == m.end
        self._appended(m, key, headers, value, ts)

    @precondition(lambda self: any(m.last_ts > 0 for m in self.model.values()))
    @rule(data=st.data())
    def append_below_last_timestamp_is_refused(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(n for n, m in self.model.items() if m.last_ts)))
        m = self.model[name]
        with pytest.raises(tidelog.InvalidArgument):
            self._writer(data).log(name).append(b"late", timestamp_ms=m.last_ts - 1)

    @precondition(lambda self: self.model)
    @rule(
        data=st.data(),
        sizes=st.lists(st.tuples(SIZES, SIZES), max_size=6),
        with_keys=st.booleans(),
    )
    def append_many(
        self, data: st.DataObject, sizes: list[tuple[int, int]], with_keys: bool
    ) -> None:
        name = self._pick(data)
        log = self._writer(data).log(name)
        m = self.model[name]
        keys = [self._payload(b"k", k) if with_keys else b"" for k, _ in sizes]
        values = [self._payload(b"v", v) for _, v in sizes]
        ts = self._default_ts(m)
        offsets = log.append_many(values, keys if with_keys else None)
        assert offsets == range(m.end, m.end + len(values))
        for key, value in zip(keys, values, strict=True):
            self._appended(m, key, b"", value, ts)

    @precondition(lambda self: self.model)
    @rule(
        data=st.data(),
        items=st.lists(st.tuples(st.integers(0, 3), SIZES, SIZES), max_size=6),
        outcome=st.sampled_from(["commit", "commit", "raise", "invalid"]),
    )
    def transaction(
        self, data: st.DataObject, items: list[tuple[int, int, int]], outcome: str
    ) -> None:
        """Appends to several logs land all together or not at all."""
        names = sorted(self.model)
        store = self._writer(data)
        planned: list[tuple[str, bytes, bytes, int]] = []
        tx = store.transaction()
        try:
            with tx:
                for which, key_size, value_size in items:
                    name = names[which % len(names)]
                    key = self._payload(b"k", key_size)
                    value = self._payload(b"v", value_size)
                    planned.append((name, key, value, tx.append(store.log(name), value, key=key)))
                if outcome == "invalid":  # a key over 65,535 bytes fails the whole commit
                    tx.append(store.log(names[-1]), b"x", key=b"k" * 65_536)
                if outcome == "raise":
                    raise _Abort
        except _Abort:
            assert outcome == "raise"
        except tidelog.InvalidArgument:
            assert outcome == "invalid"
        if outcome != "commit":
            assert tx.offsets == []
            return  # the invariant checks that no log moved
        assert len(tx.offsets) == len(planned)
        for name, key, value, index in planned:
            m = self.model[name]
            assert tx.offsets[index] == m.end, (name, index)
            self._appended(m, key, b"", value, self._default_ts(m))

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def roll(self, data: st.DataObject) -> None:
        name = self._pick(data)
        m = self.model[name]
        self._writer(data).log(name).roll()
        assert self._files(name)[-1][0] == m.end, (name, self._files(name))
        self._settle_garbage(name)  # sealing truncated what a dead writer left

    @rule(steps=st.integers(0, 80))
    def advance_clock(self, steps: int) -> None:
        self.clock.advance(steps * CLOCK_STEP_MS)

    @precondition(lambda self: self.model)
    @rule(data=st.data(), size=st.integers(1, 200))
    def dead_writer_leaves_garbage(self, data: st.DataObject, size: int) -> None:
        """Another process wrote past the committed end and died before its commit."""
        name = self._pick(data)
        m = self.model[name]
        self._settle_garbage(name)
        base = self._files(name)[-1][0]
        ends = self.store.log(name).ends()
        at = ends.active_position + m.garbage
        # Ends with a byte that is not zero, so recovery's zeroing counts all of it.
        ghost = fmt.encode_batch(1, m.end, self.clock.ms, 0, [b"ghost" * size])[: size - 1] + b"!"
        path = os.path.join(self._log_dir(name), fmt.segment_name(base))
        with open(path, "r+b") as handle:
            handle.seek(at)
            handle.write(ghost)
        m.garbage += len(ghost)
        m.garbage_end, m.garbage_base = at + len(ghost), base

    # -- retention ---------------------------------------------------------------------

    def _check_retention(
        self,
        name: str,
        before: list[tuple[int, int, int]],
        new_start: int,
        now_ms: int,
        deleted: int,
    ) -> None:
        m = self.model[name]
        old_start = m.start
        bases = [base for base, _, _ in before]
        active_base = bases[-1]
        sealed = before[:-1]
        assert old_start <= new_start <= active_base, (name, old_start, new_start, active_base)
        assert new_start in bases, (name, new_start, bases)  # whole segments only
        assert deleted == sum(1 for base in bases if base < new_start)
        age_floor = old_start
        if m.retention_ms is not None:
            cutoff = now_ms - m.retention_ms
            # Every sealed segment whose newest record is older than the cutoff goes ...
            for _, end, _ in sealed:
                if m.records[end - 1].timestamp_ms < cutoff:
                    age_floor = max(age_floor, end)
            assert new_start >= age_floor, (name, new_start, age_floor)
            if m.retention_bytes is None:
                # ... and no record newer than retention_ms does.
                newer = [r.offset for r in m.retained() if r.timestamp_ms >= cutoff]
                if newer:
                    assert new_start <= newer[0], (name, new_start, newer[0], cutoff)
        if m.retention_bytes is None:
            assert new_start == age_floor, (name, new_start, age_floor)
            return
        kept = sum(size for base, _, size in before if base >= new_start)
        assert kept <= m.retention_bytes or new_start == active_base, (name, kept)
        if new_start > age_floor:
            # Bytes deleted no more than needed: without the last segment it took, the log
            # was still over the limit.
            last = next(size for _, end, size in before if end == new_start)
            assert kept + last > m.retention_bytes, (name, kept, last)

    @precondition(lambda self: self.model)
    @rule(
        data=st.data(),
        scope=st.sampled_from(["store", "log"]),
        now_steps=st.none() | st.integers(-20, 200),
    )
    def enforce_retention(self, data: st.DataObject, scope: str, now_steps: int | None) -> None:
        store = self._writer(data)
        now_ms = None if now_steps is None else self.clock.ms + now_steps * CLOCK_STEP_MS
        names = sorted(self.model) if scope == "store" else [self._pick(data)]
        before = {name: self._segments(name) for name in names}
        if scope == "store":
            total = store.enforce_retention(now_ms)
        else:
            total = store.log(names[0]).enforce_retention(now_ms)
        effective_now = self.clock.ms if now_ms is None else now_ms
        counted = 0
        for name in names:
            m = self.model[name]
            new_start = self.store.log(name).start_offset
            deleted = sum(1 for base, _, _ in before[name] if base < new_start)
            counted += deleted
            self._check_retention(name, before[name], new_start, effective_now, deleted)
            if deleted:
                event("retention deleted segments")
            m.start = new_start
        assert total == counted

    def _retention_at(self, store: tidelog.Store, name: str, now_ms: int) -> int:
        """Run one log's retention at `now_ms`, check it, move the model; returns deletions."""
        m = self.model[name]
        before = self._segments(name)
        deleted = store.log(name).enforce_retention(now_ms)
        new_start = self.store.log(name).start_offset
        self._check_retention(name, before, new_start, now_ms, deleted)
        m.start = new_start
        return deleted

    @precondition(
        lambda self: any(m.retention_ms is not None and m.retained() for m in self.model.values())
    )
    @rule(data=st.data(), past=st.integers(0, 1), sweep=st.booleans())
    def enforce_retention_at_a_record(self, data: st.DataObject, past: int, sweep: bool) -> None:
        """Retention whose cutoff is a record's own timestamp, or 1 ms past it.

        With `sweep`, the cutoff walks over every segment boundary in turn: the
        oldest sealed segment's last timestamp (it must stay), then 1 ms past it
        (it must go). A segment whose stored last timestamp is off either way shows.
        Otherwise the cutoff sits at one record, mostly one beside a boundary.
        """
        candidates = sorted(
            n for n, m in self.model.items() if m.retention_ms is not None and m.retained()
        )
        # Prefer a log with sealed segments: only those can go.
        candidates = [n for n in candidates if len(self._segments(n)) > 1] or candidates
        name = data.draw(st.sampled_from(candidates), label="log")
        m = self.model[name]
        assert m.retention_ms is not None
        store = self._writer(data)
        if sweep:
            for _ in range(len(self._segments(name)) - 1):
                sealed = self._segments(name)[:-1]
                if not sealed:
                    break
                last_ts = m.records[sealed[0][1] - 1].timestamp_ms
                self._retention_at(store, name, last_ts + m.retention_ms)
                if self._retention_at(store, name, last_ts + 1 + m.retention_ms):
                    event("retention sweep deleted segments")
            return
        boundaries = [
            m.records[offset]
            for _, end, _ in self._segments(name)[:-1]
            for offset in (end - 1, end)
            if offset < m.end
        ]
        if boundaries and data.draw(st.integers(0, 3), label="boundary") > 0:
            record = data.draw(st.sampled_from(boundaries), label="record")
        else:
            record = data.draw(st.sampled_from(m.retained()), label="record")
        if self._retention_at(store, name, record.timestamp_ms + past + m.retention_ms):
            event("retention at a record deleted segments")

    @precondition(lambda self: any(m.retention_bytes for m in self.model.values()))
    @rule(data=st.data())
    def fill_to_retention_bytes(self, data: st.DataObject) -> None:
        """Bring a log to exactly retention_bytes, then apply retention: nothing may go."""
        name = data.draw(
            st.sampled_from(sorted(n for n, m in self.model.items() if m.retention_bytes)),
            label="log",
        )
        m = self.model[name]
        assert m.retention_bytes is not None
        store = self._writer(data)

        def neutral_now() -> int:
            """A time at which the age rule, if any, keeps every record."""
            retained = m.retained()
            first = retained[0].timestamp_ms if retained else self.clock.ms
            return first + (m.retention_ms or 0)

        self._retention_at(store, name, neutral_now())  # get under the limit first
        segments = self._segments(name)
        room = m.retention_bytes - sum(size for _, _, size in segments)
        active = segments[-1][2]
        value_size = room - FRAME_BYTES
        if active + FRAME_BYTES + value_size > m.segment_bytes_max:
            value_size -= HEADER_BYTES  # the record rolls: a new segment, a new header
            if active == HEADER_BYTES or active + FRAME_BYTES + value_size <= m.segment_bytes_max:
                return  # no single record lands on the limit exactly
        if value_size < 0:
            return
        value = self._payload(b"v", value_size)
        ts = self._default_ts(m)
        assert store.log(name).append(value) == m.end
        self._appended(m, b"", b"", value, ts)
        assert sum(size for _, _, size in self._segments(name)) == m.retention_bytes
        if self._retention_at(store, name, neutral_now()):
            raise AssertionError(f"{name}: retention deleted at exactly retention_bytes")
        event("log filled to exactly retention_bytes")

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def trim_before(self, data: st.DataObject) -> None:
        name = self._pick(data)
        m = self.model[name]
        offset = data.draw(st.integers(0, m.end + 2), label="offset")
        sealed = self._segments(name)[:-1]
        expected = max([m.start] + [end for _, end, _ in sealed if end <= offset])
        assert self._writer(data).log(name).trim_before(offset) == expected
        event("trim moved the start" if expected > m.start else "trim kept the start")
        m.start = expected

    # -- reads -------------------------------------------------------------------------

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def read(self, data: st.DataObject) -> None:
        name = self._pick(data)
        m = self.model[name]
        start = data.draw(st.integers(0, m.end + 2), label="start")
        stop = data.draw(st.none() | st.integers(0, m.end + 2), label="stop")
        got = list(self._reader(data).log(name).read(start, stop))
        low = max(start, m.start)
        high = m.end if stop is None else min(stop, m.end)
        assert as_tuples(got) == model_tuples(m.records[low:high]), (name, start, stop)

    @precondition(lambda self: self.model)
    @rule(data=st.data(), delta=st.integers(-1, 1))
    def offset_for_time(self, data: st.DataObject, delta: int) -> None:
        name = self._pick(data)
        m = self.model[name]
        candidates = [r.timestamp_ms for r in m.records] + [0, self.clock.ms, m.last_ts + 5]
        target = max(0, data.draw(st.sampled_from(candidates), label="time") + delta)
        expected = next((r.offset for r in m.retained() if r.timestamp_ms >= target), m.end)
        log = self._reader(data).log(name)
        assert log.offset_for_time(target) == expected, (name, target)
        got = list(log.read_from_time(target))
        assert as_tuples(got) == model_tuples(m.records[expected:])

    @rule()
    def check(self) -> None:
        assert self.store.check() == []
        self._read_all_agrees(self.store)

    @rule()
    def sync(self) -> None:
        """store.sync() makes everything this handle wrote durable, in every sync mode."""
        self.store.sync()
        for m in self.model.values():
            m.durable = m.end

    # -- a second handle -----------------------------------------------------------------

    @precondition(lambda self: self.other is None)
    @rule(writable=st.booleans())
    def open_second_handle(self, writable: bool) -> None:
        # The model tracks durability per store, so a second writer is only allowed
        # where every append is durable when it returns.
        if writable and self.mode == "always":
            event("second handle: writable")
            self.other = self._open("always")
            # A writable open runs recovery, which truncates what dead writers left.
            report = self.other.recovery_report
            assert report is not None and report.clean, report
            truncated = {item.log: item.uncommitted_bytes_truncated for item in report.logs}
            for name, m in self.model.items():
                assert truncated.get(name, 0) == m.garbage, (name, truncated, m.garbage)
                m.garbage = m.garbage_end = 0
        else:
            self.other = self._open(self.mode, readonly=True)
            with pytest.raises(tidelog.ReadOnly):
                self.other.create_log("never-created")
        self._read_all_agrees(self.other)

    @precondition(lambda self: self.other is not None)
    @rule()
    def close_second_handle(self) -> None:
        assert self.other is not None
        self._read_all_agrees(self.other)
        self._close_other()

    # -- restarts ----------------------------------------------------------------------

    @rule(
        kind=st.sampled_from(["clean", "power_cut", "dead_writer"]),
        mode=st.sampled_from(MODES),
        sync_first=st.booleans(),
    )
    def crash_and_reopen(self, kind: str, mode: str, sync_first: bool) -> None:
        self._close_other()
        if sync_first:
            self.sync()
        active = {name: self._files(name)[-1][0] for name in self.model}
        directories = {name: self._log_dir(name) for name in self.model}
        for name in self.model:
            self._settle_garbage(name)
        committed = {name: self.store.log(name).ends().active_position for name in self.model}
        self.store.close()
        # Only a power cut after "never" may lose records (or damage a new segment's
        # header, which recovery repairs and reports).
        lossy = kind == "power_cut" and self.mode == "never"
        crashed_mode = self.mode
        if self.mode != "never":
            # "interval" flushes on close; "always" flushed before every return.
            for m in self.model.values():
                m.durable = m.end
        garbage = {name: m.garbage for name, m in self.model.items() if m.garbage}
        injected: list[str] = []
        if kind == "power_cut":
            self.fs.crash()
            self.boot += 1
        elif kind == "dead_writer":
            injected = self._leave_dead_writer_files(directories, active, committed, garbage)
        self.fs = FaultyFileSystem()
        self.mode = mode
        self.store = self._open(mode, fs=self.fs)
        report = self.store.recovery_report
        assert report is not None
        assert set(injected) <= set(report.files_removed), (injected, report.files_removed)
        by_log = {item.log: item for item in report.logs}
        lost = 0
        for name, m in self.model.items():
            item = by_log.get(name)
            truncated = item.uncommitted_bytes_truncated if item is not None else 0
            if kind != "power_cut":
                assert truncated == garbage.get(name, 0), (name, truncated, garbage)
            m.garbage = m.garbage_end = 0
            log = self.store.log(name)
            end = log.end_offset
            # Sealed segments are synced when sealed; what a power cut may take is the
            # unsynced tail of the active segment, and nothing acknowledged as durable.
            floor = max(m.durable, active[name])
            assert floor <= end <= m.end, (name, floor, end, m.end, crashed_mode)
            assert log.start_offset == m.start
            lost += m.end - end
            if end < m.end:
                del m.records[end:]
                m.last_ts = log.ends().last_timestamp_ms
                assert m.last_ts >= max((r.timestamp_ms for r in m.records), default=0)
        # Commits a power cut took never reached the disk: their journal entries
        # are gone, so nothing is left to count or report (docs/guarantees.md).
        assert report.records_dropped == 0, (report, lost)
        event(f"reopen: {kind}" + (", records lost" if lost else ""))
        if not lossy:
            assert report.clean, report
        assert self.store.check() == []
        self._read_all_agrees(self.store)

    def _leave_dead_writer_files(
        self,
        directories: dict[str, str],
        actives: dict[str, int],
        committed: dict[str, int],
        garbage: dict[str, int],
    ) -> list[str]:
        """Files a writer that died mid-commit (or mid-cleanup) leaves behind."""
        injected = []
        for name, m in self.model.items():
            directory, active = directories[name], actives[name]
            # A fully framed record past the committed end: written, never committed.
            ghost = fmt.encode_batch(1, m.end, self.clock.ms, 0, [b"ghost"])
            with open(os.path.join(directory, fmt.segment_name(active)), "r+b") as handle:
                handle.seek(committed[name] + garbage.get(name, 0))
                handle.write(ghost)
            garbage[name] = garbage.get(name, 0) + len(ghost)
            # A roll that died before its commit.
            rolled = os.path.join(directory, fmt.segment_name(max(m.end, active + 1)))
            with open(rolled, "wb") as handle:
                handle.write(fmt.encode_segment_header(max(m.end, active + 1), 1) + ghost)
            injected.append(rolled)
            if m.start > 0:
                # Retention that died between its commit and the unlink.
                stale = os.path.join(directory, fmt.segment_name(0))
                with open(stale, "wb") as handle:
                    handle.write(fmt.encode_segment_header(0, 1))
                injected.append(stale)
        return injected

    def teardown(self) -> None:
        # Hypothesis tears down in a `finally`: after a failed step the model is
        # half-updated, and comparing it again would only bury the real error.
        step_failed = sys.exc_info()[1] is not None
        try:
            if not step_failed:
                assert self.store.check() == []
                self._read_all_agrees(self.store)
                if self.other is not None:
                    assert self.other.check() == []
                    self._read_all_agrees(self.other)
        finally:
            try:
                self._close_other()
            finally:
                try:
                    self.store.close()
                finally:
                    shutil.rmtree(self.path, ignore_errors=True)


LogMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("TIDELOG_STATEFUL_EXAMPLES", "200")),
    stateful_step_count=int(os.environ.get("TIDELOG_STATEFUL_STEPS", "50")),
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
TestLogMachine = LogMachine.TestCase


class TwoHandlesMachine(RuleBasedStateMachine):
    """Two Store objects on one directory agree with each other and with a model."""

    def __init__(self) -> None:
        super().__init__()
        self.path = tempfile.mkdtemp(prefix="tidelog-handles-")
        self.clock = Clock()
        self.handles = [self._open(), self._open()]
        self.model: dict[str, list[bytes]] = {}  # name -> values by offset
        self.starts: dict[str, int] = {}
        self.serial = 0

    def _open(self) -> tidelog.Store:
        return tidelog.open(self.path, clock=self.clock, segment_bytes_max=SEGMENT_BYTES)

    def _value(self, size: int) -> bytes:
        self.serial += 1
        return self.serial.to_bytes(4, "big") * (size // 4 + 1)

    @rule(handle=st.integers(0, 1), name=st.sampled_from(NAMES[:2]))
    def create(self, handle: int, name: str) -> None:
        self.handles[handle].create_log(name, exist_ok=True)
        self.model.setdefault(name, [])
        self.starts.setdefault(name, 0)

    @precondition(lambda self: self.model)
    @rule(
        handle=st.integers(0, 1),
        which=st.integers(0, 1),
        sizes=st.lists(st.integers(0, 2000), min_size=1, max_size=4),
    )
    def append_many(self, handle: int, which: int, sizes: list[int]) -> None:
        name = sorted(self.model)[which % len(self.model)]
        values = [self._value(size) for size in sizes]
        offsets = self.handles[handle].log(name).append_many(values)
        assert offsets.start == len(self.model[name])
        self.model[name].extend(values)

    @precondition(lambda self: self.model)
    @rule(handle=st.integers(0, 1), which=st.integers(0, 1), count=st.integers(1, 8))
    def append_from_both_at_once(self, handle: int, which: int, count: int) -> None:
        """Two threads, one per handle, append to one log at the same time."""
        name = sorted(self.model)[which % len(self.model)]
        results: list[list[tuple[int, bytes]]] = [[], []]
        errors: list[BaseException] = []

        def work(index: int) -> None:
            try:
                log = self.handles[index].log(name)
                for i in range(count):
                    value = b"%d-%d-%d" % (self.serial, index, i) * 50
                    results[index].append((log.append(value), value))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        self.serial += 1
        threads = [threading.Thread(target=work, args=(i,)) for i in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        landed = sorted(results[0] + results[1])
        first = len(self.model[name])
        assert [offset for offset, _ in landed] == list(range(first, first + 2 * count))
        # Each thread's own appends keep their order.
        for own in results:
            assert [offset for offset, _ in own] == sorted(offset for offset, _ in own)
        self.model[name].extend(value for _, value in landed)

    @precondition(lambda self: self.model)
    @rule(handle=st.integers(0, 1), which=st.integers(0, 1))
    def roll(self, handle: int, which: int) -> None:
        name = sorted(self.model)[which % len(self.model)]
        self.handles[handle].log(name).roll()

    @precondition(lambda self: self.model)
    @rule(handle=st.integers(0, 1), which=st.integers(0, 1), back=st.integers(0, 5))
    def trim_before(self, handle: int, which: int, back: int) -> None:
        name = sorted(self.model)[which % len(self.model)]
        start = self.handles[handle].log(name).trim_before(max(0, len(self.model[name]) - back))
        assert self.starts[name] <= start <= len(self.model[name])
        self.starts[name] = start

    @rule(handle=st.integers(0, 1))
    def reopen(self, handle: int) -> None:
        """Close one handle and open it again while the other stays open."""
        self.handles[handle].close()
        self.handles[handle] = self._open()
        report = self.handles[handle].recovery_report
        assert report is not None and report.clean, report

    @invariant()
    def handles_agree(self) -> None:
        for name, values in self.model.items():
            seen = []
            for store in self.handles:
                log = store.log(name)
                assert (log.start_offset, log.end_offset) == (self.starts[name], len(values))
                seen.append([(r.offset, r.value) for r in log.read()])
            assert seen[0] == seen[1]
            start = self.starts[name]
            assert seen[0] == list(enumerate(values))[start:]

    def teardown(self) -> None:
        try:
            for store in self.handles:
                assert store.check() == []
        finally:
            try:
                for store in self.handles:
                    store.close()
            finally:
                shutil.rmtree(self.path, ignore_errors=True)


TwoHandlesMachine.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=25,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
TestTwoHandles = TwoHandlesMachine.TestCase


def test_handles_share_lmdb_each_with_its_own_sync_mode(tmp_path: os.PathLike[str]) -> None:
    """Handles in one process share LMDB (opened without syncs in every mode: the
    journal is what is flushed); each handle flushes its own commits as its mode says.
    A writable handle beside a read-only one that opened LMDB first is refused."""
    fs = FaultyFileSystem()
    journal = os.path.join(tmp_path, "journal")
    with tidelog.open(tmp_path, "never") as weak:
        weak.create_log("x").append(b"1")
        with tidelog.open(tmp_path, "always", fs=fs) as strong:
            strong.log("x").append(b"2")
            assert fs.unsynced_bytes(journal) == 0  # flushed before append returned
        weak.log("x").append(b"3")
        with tidelog.open(tmp_path, "never") as same, tidelog.open(tmp_path, readonly=True) as ro:
            assert [r.value for r in same.log("x").read()] == [b"1", b"2", b"3"]
            assert [r.value for r in ro.log("x").read()] == [b"1", b"2", b"3"]
    with tidelog.open(tmp_path, readonly=True) as ro:
        with pytest.raises(tidelog.InvalidArgument):
            tidelog.open(tmp_path)
        with tidelog.open(tmp_path, readonly=True) as ro2:
            assert len(ro2.log("x")) == len(ro.log("x")) == 3
