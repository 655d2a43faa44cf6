"""Log: a handle on one named log of a Store."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from tidelog.segments.errors import Corruption, InvalidArgument
from tidelog.segments.format import Record
from tidelog.segments.keys import Ends
from tidelog.segments.logstore import LogInfo
from tidelog.segments.reader import Columns, offset_for_time, read_columns
from tidelog.segments.rebuild import rebuild_indexes
from tidelog.segments.recovery import verify_log
from tidelog.segments.writer import WriteContext

if TYPE_CHECKING:
    from tidelog.store import Store

BytesLike = bytes | bytearray | memoryview


def as_bytes(value: object, what: str) -> bytes:
    """Accept bytes-likes, and str as UTF-8; reject everything else clearly."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise InvalidArgument(f"{what}: expected bytes or str, got {type(value).__name__}")


class Log:
    """A numbered, append-only sequence of records (offset 0, 1, 2, ...).

    Thread- and process-safe: any number of handles, in any threads or
    processes, may append and read at once. Appends are atomic and durable as
    the store's sync mode promises when they return. Reads never block writers
    and see only committed records.
    """

    def __init__(self, store: Store, info: LogInfo) -> None:
        self._store = store
        self._logs = store._logs
        self.info = info

    @property
    def name(self) -> str:
        return self.info.name

    def __repr__(self) -> str:
        return f"<tidelog.Log {self.name!r}>"

    # -- writes ------------------------------------------------------------------

    def append(
        self,
        value: BytesLike | str,
        key: BytesLike | str = b"",
        headers: BytesLike = b"",
        *,
        flags: int = 0,
        timestamp_ms: int | None = None,
    ) -> int:
        """Append one record; returns its offset.

        Atomic. Blocks until committed (group-committed with concurrent
        appends from other threads). Raises InvalidArgument for oversized
        records or keys, StoreFailed after an I/O failure.
        """
        return self._logs.submit(self._one_op(value, key, headers, flags, timestamp_ms))

    def append_many(
        self,
        values: Sequence[BytesLike | str],
        keys: Sequence[BytesLike | str] | None = None,
        headers: Sequence[BytesLike] | None = None,
        *,
        flags: int = 0,
        timestamp_ms: int | None = None,
    ) -> range:
        """Append records in one commit; returns their offsets (consecutive).

        Atomic: all are committed or none. All records get one timestamp.
        """
        op, count = self._many_op(values, keys, headers, flags, timestamp_ms)
        first = self._logs.submit(op)
        return range(first, first + count)

    async def append_async(
        self,
        value: BytesLike | str,
        key: BytesLike | str = b"",
        headers: BytesLike = b"",
        *,
        flags: int = 0,
        timestamp_ms: int | None = None,
    ) -> int:
        """`append` for coroutines: awaits the commit instead of blocking.

        Appends from many tasks of one event loop (and from threads) are
        group-committed together; the loop runs while the journal is flushed.
        Same atomicity, durability and errors as `append`.
        """
        return await self._logs.submit_async(self._one_op(value, key, headers, flags, timestamp_ms))

    async def append_many_async(
        self,
        values: Sequence[BytesLike | str],
        keys: Sequence[BytesLike | str] | None = None,
        headers: Sequence[BytesLike] | None = None,
        *,
        flags: int = 0,
        timestamp_ms: int | None = None,
    ) -> range:
        """`append_many` for coroutines (see append_async)."""
        op, count = self._many_op(values, keys, headers, flags, timestamp_ms)
        first = await self._logs.submit_async(op)
        return range(first, first + count)

    def _one_op(
        self,
        value: BytesLike | str,
        key: BytesLike | str,
        headers: BytesLike,
        flags: int,
        timestamp_ms: int | None,
    ) -> Callable[[WriteContext], int]:
        """The commit op of `append` / `append_async` (arguments checked here)."""
        values = [as_bytes(value, "value")]
        keys = [as_bytes(key, "key")] if key else None
        heads = [as_bytes(headers, "headers")] if headers else None
        info = self.info

        def op(ctx: WriteContext) -> int:
            return ctx.append(info, values, keys, heads, flags, timestamp_ms)

        return op

    def _many_op(
        self,
        values: Sequence[BytesLike | str],
        keys: Sequence[BytesLike | str] | None,
        headers: Sequence[BytesLike] | None,
        flags: int,
        timestamp_ms: int | None,
    ) -> tuple[Callable[[WriteContext], int], int]:
        """The commit op of `append_many` / `append_many_async`, and its record count."""
        given = list(values)
        # Checking types with one C-level pass keeps the common all-bytes case fast.
        vals: list[bytes] = (
            [as_bytes(v, "value") for v in given] if set(map(type, given)) - {bytes} else given  # type: ignore[assignment]
        )
        ks = [as_bytes(k, "key") for k in keys] if keys is not None else None
        hs = [as_bytes(h, "headers") for h in headers] if headers is not None else None
        info = self.info

        def op(ctx: WriteContext) -> int:
            return ctx.append(info, vals, ks, hs, flags, timestamp_ms)

        return op, len(vals)

    def roll(self) -> None:
        """Seal the active segment now; the next append starts a new one."""
        info = self.info
        self._logs.submit(lambda ctx: ctx.roll(info))

    def enforce_retention(self, now_ms: int | None = None) -> int:
        """Delete sealed segments past the log's retention; returns how many."""
        info = self.info
        return self._logs.submit(lambda ctx: ctx.enforce_retention(info, now_ms))

    def trim_before(self, offset: int) -> int:
        """Delete sealed segments wholly below `offset`; returns the new start offset."""
        info = self.info
        return self._logs.submit(lambda ctx: ctx.trim_before(info, offset))

    # -- reads ---------------------------------------------------------------------

    def ends(self) -> Ends:
        return self._logs.ends(self.info)

    @property
    def start_offset(self) -> int:
        """The oldest offset still retained."""
        return self.ends().start_offset

    @property
    def end_offset(self) -> int:
        """The offset the next append will get (one past the last committed)."""
        return self.ends().next_offset

    def __len__(self) -> int:
        ends = self.ends()
        return ends.next_offset - ends.start_offset

    def read(self, start: int = 0, stop: int | None = None) -> Iterator[Record]:
        """Stream committed records from offset `start` (clamped to the oldest kept).

        Stops at `stop` (exclusive) or at the end committed when the reader
        gets there. Memory stays bounded whatever the log's size. Raises
        Corruption on a damaged record.
        """
        if start < 0:
            raise InvalidArgument(f"read: start offset {start} is negative")
        return self._logs.read(self.info, start, stop)

    def read_columns(self, start: int = 0, stop: int | None = None) -> Iterator[Columns]:
        """The values-only read: for each stored batch, (first_offset, timestamp_ms,
        values), the values a list of bytes; no Record is made per record.

        The same range, bounds and Corruption as `read`; for columnar readers
        (SQL scans, delivery) that need values and offsets only.
        """
        if start < 0:
            raise InvalidArgument(f"read_columns: start offset {start} is negative")
        return read_columns(self._logs, self.info, start, stop)

    def offset_for_time(self, timestamp_ms: int) -> int:
        """The first offset with a timestamp >= `timestamp_ms` (end_offset if none)."""
        return offset_for_time(self._logs, self.info, timestamp_ms)

    def read_from_time(self, timestamp_ms: int) -> Iterator[Record]:
        return self.read(self.offset_for_time(timestamp_ms))

    def wait(self, offset: int, timeout: float) -> bool:
        """Block until a record at `offset` is committed, up to `timeout` seconds.

        Appends from this process wake the waiter at once; appends from other
        processes are seen within 50 ms.
        """
        deadline = time.monotonic() + timeout
        while self.end_offset <= offset:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._logs.wait_for_append(min(left, 0.05))
        return True

    def rebuild_indexes(self) -> int:
        """Recreate the log's derived index rows from its segment files.

        Holds the write lock while it scans. Returns the index entries
        written; raises Corruption if a segment cannot be read to its end.
        """
        info = self.info
        return self._logs.submit(lambda ctx: rebuild_indexes(ctx, info))

    def verify(self) -> list[Corruption]:
        """Read and check every record and index entry; returns problems found."""
        return verify_log(self._logs, self.info)
