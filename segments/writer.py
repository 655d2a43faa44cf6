"""WriteContext: everything done inside one LMDB write transaction.

A WriteContext frames records into memory, assigns offsets and index
entries, and at commit hands the frames and LMDB rows to the store, which
commits them through its journal (docs/guarantees.md, "The commit point").
"""

from __future__ import annotations

import os
from bisect import bisect_right
from collections.abc import Callable, Sequence
from itertools import accumulate
from operator import add
from typing import TYPE_CHECKING, Any

from . import format as fmt
from . import keys
from .errors import InvalidArgument, NotFound
from .keys import Ends, SegmentRow, Txn
from .scan import segment_salt

if TYPE_CHECKING:
    from .logstore import LogInfo, LogStore

# Fewer than the writer fd cache holds (WRITER_FDS_MAX), so no fd waiting
# for its sync is closed by the cache.
SYNC_BATCH_MAX = 32
NO_INDEX = 0  # last_index_position when the active segment has no index entry yet


class _SegmentWrite:
    """Frames bound for one segment file in this transaction."""

    __slots__ = ("base", "start_position", "frames", "new", "sealed", "salt")

    def __init__(self, base: int, start_position: int, new: bool, salt: int) -> None:
        self.base = base
        self.salt = salt  # of the segment's header (docs/format.md, "The salt")
        self.start_position = start_position
        self.frames: list[bytes] = []
        self.new = new
        self.sealed = False


class _LogState:
    """A log's end as this transaction sees it, plus what it will write."""

    __slots__ = (
        "info",
        "start_offset",
        "next_offset",
        "base",
        "position",
        "last_ts",
        "last_index_position",
        "writes",
        "index",
        "segment_rows",
        "dirty",
    )

    def __init__(self, info: LogInfo, ends: Ends) -> None:
        self.info = info
        self.start_offset = ends.start_offset
        self.next_offset = ends.next_offset
        self.base = ends.active_base
        self.position = ends.active_position
        self.last_ts = ends.last_timestamp_ms
        self.last_index_position = ends.last_index_position
        self.writes: list[_SegmentWrite] = []
        self.index: list[tuple[int, int, int, int]] = []  # offset, base, position, ts
        self.segment_rows: dict[int, SegmentRow] = {}
        self.dirty = False

    def ends(self) -> Ends:
        return Ends(
            self.start_offset,
            self.next_offset,
            self.base,
            self.position,
            self.last_ts,
            self.last_index_position,
        )


class WriteContext:
    """One LMDB write transaction with pending appends to any number of logs.

    Not thread-safe: it belongs to the thread leading a commit group. Engine
    code receives one in the operations it submits to `LogStore.submit` and
    may read and write its own named databases through `txn` and `db()`.
    """

    def __init__(self, store: LogStore, txn: Txn, now_ms: int) -> None:
        self.store = store
        self.txn = txn
        self.now_ms = now_ms
        self._states: dict[int, _LogState] = {}
        self._after_commit: list[Callable[[], None]] = []
        self.slow_commit = False  # set by the store: flush in place (too big for the journal)
        # Flush this commit's journal entry in every sync mode: set by commits that
        # delete files after committing (a lost commit must not outlive its unlinks)
        # or change the catalog.
        self.flush_always = False

    # -- engine access ---------------------------------------------------

    def db(self, name: bytes) -> Any:
        """An engine-owned LMDB database (see LogStore.open_databases)."""
        return self.store.database(name)

    def after_commit(self, fn: Callable[[], None]) -> None:
        """Run `fn` once the transaction has committed (for file deletions, wakeups)."""
        self._after_commit.append(fn)

    # -- reads of the in-transaction state ---------------------------------

    def _state(self, log: LogInfo) -> _LogState:
        state = self._states.get(log.id)
        if state is None:
            raw = self.txn.get(keys.log_key(log.id), db=self.store.dbs[keys.DB_ENDS])
            if raw is None:
                raise NotFound(f"log {log.name!r}: not found (deleted?)")
            state = _LogState(log, Ends.unpack(raw))
            self._states[log.id] = state
        return state

    def ends(self, log: LogInfo) -> Ends:
        """The log's end including this transaction's pending appends."""
        return self._state(log).ends()

    # -- appends -----------------------------------------------------------

    def append(
        self,
        log: LogInfo,
        values: Sequence[bytes],
        keys_: Sequence[bytes] | None = None,
        headers: Sequence[bytes] | None = None,
        flags: int = 0,
        timestamp_ms: int | None = None,
    ) -> int:
        """Append records; returns the offset of the first. All get one timestamp.

        Raises InvalidArgument for a record over RECORD_BYTES_MAX, a key over
        65,535 bytes, or a timestamp below the log's last one.
        """
        self.store.check_writable()
        state = self._state(log)
        count_ = len(values)
        if count_ == 0:
            return state.next_offset
        if keys_ is not None and len(keys_) != count_:
            raise InvalidArgument("append: keys and values differ in number")
        if headers is not None and len(headers) != count_:
            raise InvalidArgument("append: headers and values differ in number")
        if not 0 <= flags <= 255:
            raise InvalidArgument(f"append: flags {flags} out of range 0-255")
        if timestamp_ms is None:
            ts = self.now_ms if self.now_ms > state.last_ts else state.last_ts
        else:
            if timestamp_ms < state.last_ts or timestamp_ms < 0:
                raise InvalidArgument(
                    f"append: timestamp {timestamp_ms} is below the log's last "
                    f"timestamp {state.last_ts} (timestamps never decrease within a log)"
                )
            ts = timestamp_ms
        segment_max = log.segment_bytes_max
        interval = fmt.INDEX_INTERVAL_BYTES
        header_bytes = fmt.BATCH_HEADER_BYTES
        has_keys = keys_ is not None
        has_headers = headers is not None
        # Limits are checked once over the whole call (C loops), not per record.
        if has_keys:
            longest_key = max(map(len, keys_))  # type: ignore[arg-type]
            if longest_key > fmt.KEY_BYTES_MAX:
                raise InvalidArgument(f"append: key of {longest_key} bytes is over 65,535")
        sizes: list[int] = list(map(len, values))
        if has_keys:
            sizes = list(map(add, sizes, map(len, keys_)))  # type: ignore[arg-type]
        if has_headers:
            sizes = list(map(add, sizes, map(len, headers)))  # type: ignore[arg-type]
        longest = max(sizes)
        if longest > fmt.RECORD_BYTES_MAX:
            raise InvalidArgument(
                f"append: record of {longest} bytes is over the {fmt.RECORD_BYTES_MAX}-byte limit"
            )
        per_record = fmt.LENGTH_BYTES * (1 + has_keys + has_headers)
        total = sum(sizes) + per_record * count_ + header_bytes
        offset = first = state.next_offset
        position = state.position
        last_index_position = state.last_index_position
        index = state.index
        write = self._current_write(state)
        next_index_at = (
            position if last_index_position == NO_INDEX else last_index_position + interval
        )
        if total <= fmt.BATCH_TARGET_BYTES and position + total <= segment_max:
            # The common case: the whole call is one batch in the active segment.
            if position >= next_index_at:
                index.append((offset, state.base, position, ts))
                last_index_position = position
            write.frames.append(
                fmt.encode_batch(write.salt, offset, ts, flags, values, keys_, headers)
            )
            position += total
            offset += count_
        else:
            # Cut into batches of at most BATCH_TARGET_BYTES that fit the room
            # left in the segment (at least one record each), rolling when
            # not even the next record fits.
            ends_at = list(accumulate((size + per_record for size in sizes), initial=0))
            i = 0
            while i < count_:
                room = min(fmt.BATCH_TARGET_BYTES, segment_max - position) - header_bytes
                j = bisect_right(ends_at, ends_at[i] + room, i + 1) - 1
                if j == i:
                    if position > fmt.SEGMENT_HEADER_BYTES and (
                        position + header_bytes + ends_at[i + 1] - ends_at[i] > segment_max
                    ):
                        state.next_offset, state.position = offset, position
                        state.last_index_position = last_index_position
                        if offset > first:  # the sealed segment ends with a record of this call
                            state.last_ts = ts
                        self._roll(state, ts)
                        position = next_index_at = state.position
                        last_index_position = NO_INDEX
                        write = state.writes[-1]
                        continue
                    j = i + 1  # one record larger than a batch target: a batch of its own
                if position >= next_index_at:
                    index.append((offset, state.base, position, ts))
                    last_index_position = position
                    next_index_at = position + interval
                frame = fmt.encode_batch(
                    write.salt,
                    offset,
                    ts,
                    flags,
                    values[i:j],
                    keys_[i:j] if keys_ is not None else None,
                    headers[i:j] if headers is not None else None,
                )
                write.frames.append(frame)
                position += len(frame)
                offset += j - i
                i = j
        state.next_offset = offset
        state.position = position
        state.last_index_position = last_index_position
        state.last_ts = ts
        state.dirty = True
        return first

    def _current_write(self, state: _LogState) -> _SegmentWrite:
        if state.writes and state.writes[-1].base == state.base:
            return state.writes[-1]
        salt = segment_salt_of(self.store, state.info, state.base)
        write = _SegmentWrite(state.base, state.position, new=False, salt=salt)
        state.writes.append(write)
        return write

    def _roll(self, state: _LogState, now_ts: int) -> None:
        """Seal the active segment and start a new one at next_offset."""
        if state.next_offset == state.base:
            return  # empty active segment: nothing to seal
        first_ts = self._first_ts(state)
        state.segment_rows[state.base] = SegmentRow(
            state.next_offset, state.position, first_ts, state.last_ts or now_ts, 1
        )
        if state.writes and state.writes[-1].base == state.base:
            state.writes[-1].sealed = True
        else:
            sealed = _SegmentWrite(state.base, state.position, new=False, salt=0)
            sealed.sealed = True
            state.writes.append(sealed)
        state.base = state.next_offset
        state.position = fmt.SEGMENT_HEADER_BYTES
        state.last_index_position = NO_INDEX
        state.segment_rows[state.base] = SegmentRow(0, 0, 0, 0, 0)
        state.writes.append(
            _SegmentWrite(state.base, state.position, new=True, salt=fmt.new_salt())
        )
        state.dirty = True

    def _first_ts(self, state: _LogState) -> int:
        """Timestamp of the active segment's first record (its index entry)."""
        for offset, _base, _position, ts in state.index:
            if offset == state.base:
                return ts
        raw = self.txn.get(
            keys.log_offset_key(state.info.id, state.base), db=self.store.dbs[keys.DB_INDEX]
        )
        return keys.INDEX_ROW.unpack(raw)[2] if raw is not None else state.last_ts

    def roll(self, log: LogInfo) -> None:
        """Seal the log's active segment now (if it holds any record)."""
        self.store.check_writable()
        state = self._state(log)
        self._roll(state, self.now_ms)

    # -- trimming ------------------------------------------------------------

    def sealed_segments(self, log: LogInfo) -> list[tuple[int, SegmentRow]]:
        """(base, row) of each sealed segment still on disk, oldest first."""
        state = self._state(log)
        rows: dict[int, SegmentRow] = {}
        prefix = keys.log_key(log.id)
        cursor = self.txn.cursor(db=self.store.dbs[keys.DB_SEGMENTS])
        if cursor.set_range(prefix):
            for key, value in cursor:
                if not key.startswith(prefix):
                    break
                rows[keys.U64_PAIR.unpack(key)[1]] = SegmentRow.unpack(value)
        rows.update(state.segment_rows)
        return sorted(
            (base, row) for base, row in rows.items() if row.sealed and base >= state.start_offset
        )

    def trim_before(self, log: LogInfo, offset: int) -> int:
        """Delete every sealed segment whose records all lie below `offset`.

        Returns the log's new start offset. The files are unlinked after the
        commit; the commit itself moves the start, so a crash in between only
        leaves files that the next open removes.
        """
        self.store.check_writable()
        state = self._state(log)
        victims = [base for base, row in self.sealed_segments(log) if row.end_offset <= offset]
        if victims:
            self._drop_segments(state, victims)
        return state.start_offset

    def enforce_retention(self, log: LogInfo, now_ms: int | None = None) -> int:
        """Apply the log's retention (age, then total bytes) to sealed segments.

        Returns the number of segments deleted.
        """
        self.store.check_writable()
        state = self._state(log)
        now = self.now_ms if now_ms is None else now_ms
        sealed = self.sealed_segments(log)
        victims: list[int] = []
        if log.retention_ms is not None:
            for base, row in sealed:
                if row.last_timestamp_ms < now - log.retention_ms:
                    victims.append(base)
                else:
                    break
        if log.retention_bytes is not None:
            total = sum(row.size for _, row in sealed) + state.position
            for base, row in sealed:
                if base in victims:
                    total -= row.size
                    continue
                if total <= log.retention_bytes:
                    break
                victims.append(base)
                total -= row.size
        if victims:
            self._drop_segments(state, victims)
        return len(victims)

    def _drop_segments(self, state: _LogState, bases: list[int]) -> None:
        bases = sorted(bases)
        log_id = state.info.id
        dbs = self.store.dbs
        rows = dict(self.sealed_segments(state.info))
        new_start = rows[bases[-1]].end_offset
        for base in bases:
            self.txn.delete(keys.log_offset_key(log_id, base), db=dbs[keys.DB_SEGMENTS])
            state.segment_rows.pop(base, None)
        _delete_range(
            self.txn,
            dbs[keys.DB_INDEX],
            keys.log_offset_key(log_id, 0),
            keys.log_offset_key(log_id, new_start),
        )
        cursor = self.txn.cursor(db=dbs[keys.DB_TIMEINDEX])
        prefix = keys.log_key(log_id)
        if cursor.set_range(prefix):
            while cursor.key().startswith(prefix):
                if keys.U64_TRIPLE.unpack(cursor.key())[2] >= new_start:
                    break
                if not cursor.delete():
                    break
        state.start_offset = new_start
        state.dirty = True
        self.flush_always = True  # the unlinks below must not outlive a lost commit
        paths = [self.store.segment_path(log_id, base) for base in bases]
        fs = self.store.fs

        def unlink() -> None:
            for path in paths:
                fs.unlink(path)

        self.after_commit(unlink)

    # -- commit --------------------------------------------------------------

    def commit(self) -> None:
        """Hand the segment writes and LMDB rows to the store's journal commit.

        No I/O here: LogStore.commit_writes writes one journal entry, flushes
        it, writes the segments and commits LMDB (docs/guarantees.md, "The
        commit point").
        """
        store = self.store
        dbs = store.dbs
        txn = self.txn
        writes: list[tuple[int, int, int, bytes, bool]] = []
        for state in self._states.values():
            if not state.dirty:
                continue
            log_id = state.info.id
            for write in state.writes:
                frames = b"".join(write.frames)
                if write.new:
                    data = fmt.encode_segment_header(write.base, write.salt) + frames
                    store.segment_salts[(log_id, write.base)] = write.salt
                    writes.append((log_id, write.base, 0, data, True))
                    end = len(data)
                elif frames:
                    writes.append((log_id, write.base, write.start_position, frames, False))
                    end = write.start_position + len(frames)
                else:
                    end = write.start_position
                if write.sealed:
                    # An empty write is a seal: the file is cut at its committed size.
                    writes.append((log_id, write.base, end, b"", False))
            txn.put(keys.log_key(log_id), state.ends().pack(), db=dbs[keys.DB_ENDS])
            for offset, base, position, ts in state.index:
                txn.put(
                    keys.log_offset_key(log_id, offset),
                    keys.INDEX_ROW.pack(base, position, ts),
                    db=dbs[keys.DB_INDEX],
                )
                txn.put(keys.time_key(log_id, ts, offset), b"", db=dbs[keys.DB_TIMEINDEX])
            for base, row in state.segment_rows.items():
                txn.put(keys.log_offset_key(log_id, base), row.pack(), db=dbs[keys.DB_SEGMENTS])
        store.commit_writes(self, writes)
        for fn in self._after_commit:
            fn()


def _delete_range(txn: Txn, db: Any, start: bytes, stop: bytes) -> None:
    """Delete keys in [start, stop)."""
    cursor = txn.cursor(db=db)
    if not cursor.set_range(start):
        return
    while cursor.key() < stop:
        if not cursor.delete():
            break


def ensure_dir(path: str) -> None:
    os.makedirs(path, exist_ok=True)


def segment_salt_of(store: LogStore, info: LogInfo, base: int) -> int:
    """The salt of a log's segment, read from its header once per handle."""
    key = (info.id, base)
    salt = store.segment_salts.get(key)
    if salt is None:
        fd = store.writer_fd(info.id, base)
        path = store.segment_path(info.id, base)
        salt = store.segment_salts[key] = segment_salt(store.fs, fd, base, log=info.name, path=path)
    return salt
