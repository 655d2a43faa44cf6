"""The store-wide journal: one entry and one flush per commit.

docs/format.md, "Journal", is the byte layout; docs/guarantees.md, "The
commit point", is the protocol and its crash-safety argument. This module
holds the pieces: encoding and scanning entries, the recording transaction
that turns a commit's LMDB writes into journal ops, replay, and the
checkpoint that lets the journal restart.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from typing import Any

from . import format as fmt
from .crc import crc32c
from .errors import Error
from .fs import OsFileSystem

JOURNAL_NAME = "journal"
CHECKPOINT_NAME = "checkpoint.mdb"
LIVE_LOCK_NAME = "live.lock"
JOURNAL_BYTES = 8 * 1024 * 1024
ZERO_CHUNK_BYTES = 1024 * 1024
META_JOURNAL = b"journal"  # in the meta database: start lsn, next lsn, next position, salt

ENTRY_HEAD = struct.Struct("<IIQ")  # payload length, CRC32C, lsn
ENTRY_HEAD_BYTES = ENTRY_HEAD.size
ROW = struct.Struct(">QQQQ")
LSN = struct.Struct("<Q")

OP_SEGMENT = 1
OP_PUT = 2
OP_DELETE = 3
SEGMENT_OP = struct.Struct("<BQQQI")  # tag, log id, base, position, size
DB_OP = struct.Struct("<BB")  # tag, db name length
U32 = struct.Struct("<I")
_pack_u32 = U32.pack


class JournalRow:
    """Where the current journal cycle starts and ends (LMDB's `journal` row)."""

    __slots__ = ("start_lsn", "next_lsn", "position", "salt")

    def __init__(self, start_lsn: int, next_lsn: int, position: int, salt: int) -> None:
        self.start_lsn, self.next_lsn, self.position, self.salt = (
            start_lsn,
            next_lsn,
            position,
            salt,
        )

    def pack(self) -> bytes:
        return ROW.pack(self.start_lsn, self.next_lsn, self.position, self.salt)

    @classmethod
    def unpack(cls, data: bytes) -> JournalRow:
        return cls(*ROW.unpack(data))

    def salt_bytes(self) -> bytes:
        return self.salt.to_bytes(8, "little")


def new_salt() -> int:
    return int.from_bytes(os.urandom(8), "little")


def encode_entry(row: JournalRow, payload: bytes) -> bytes:
    """The entry for `payload` at row.position with lsn row.next_lsn."""
    body = LSN.pack(row.next_lsn) + payload
    crc = crc32c(row.salt_bytes() + body)
    return _pack_u32(len(payload)) + _pack_u32(crc) + body


class Journal:
    """The journal file of one store directory, opened by one handle."""

    def __init__(self, fs: OsFileSystem, directory: str, capacity: int = JOURNAL_BYTES) -> None:
        self.fs = fs
        self.path = os.path.join(directory, JOURNAL_NAME)
        self.capacity = capacity
        try:
            self.fd = fs.open_append(self.path)
        except FileNotFoundError:
            self.fd = self._create(directory)
        size = fs.size(self.fd)
        if size < capacity:
            # A journal made with a smaller capacity, or cut short by a crash while
            # being zero-filled: only the zeroed part is used.
            self.capacity = size

    def _create(self, directory: str) -> int:
        # Zero-filled and flushed once, written to a temporary name first, so that
        # a commit's fdatasync overwrites allocated blocks and no crash leaves a
        # journal shorter than it says.
        temp = self.path + ".tmp"
        self.fs.unlink(temp)
        fd = self.fs.create(temp)
        zeros = bytes(ZERO_CHUNK_BYTES)
        for position in range(0, self.capacity, ZERO_CHUNK_BYTES):
            self.fs.pwrite(fd, zeros[: self.capacity - position], position)
        self.fs.fdatasync(fd)
        self.fs.close(fd)
        self.fs.rename(temp, self.path)
        self.fs.fsync_dir(directory)
        return self.fs.open_append(self.path)

    def close(self) -> None:
        self.fs.close(self.fd)

    def fits(self, row: JournalRow, payload_bytes: int) -> bool:
        return row.position + ENTRY_HEAD_BYTES + payload_bytes <= self.capacity

    def write(self, row: JournalRow, payload: bytes) -> int:
        """Write the entry for `payload` at the row's position; returns its end."""
        entry = encode_entry(row, payload)
        self.fs.pwrite(self.fd, entry, row.position)
        return row.position + len(entry)

    def erase(self, row: JournalRow) -> None:
        """Zero the header of the entry at the row's position (a failed commit's)."""
        self.fs.pwrite(self.fd, bytes(ENTRY_HEAD_BYTES), row.position)

    def flush(self) -> None:
        self.fs.fdatasync(self.fd)

    def entries(
        self, row: JournalRow, position: int | None = None
    ) -> Iterator[tuple[int, bytes, int]]:
        """(lsn, payload, end position) of each valid entry of the row's cycle.

        From the cycle's start (position 0, lsn row.start_lsn), or from the
        row's tail (`position=row.position`, lsn row.next_lsn); ends at the
        first entry that is zero, torn, from another cycle or out of sequence.
        """
        salt = row.salt_bytes()
        if position is None:
            position, lsn = 0, row.start_lsn
        else:
            lsn = row.next_lsn
        while position + ENTRY_HEAD_BYTES <= self.capacity:
            head = self.fs.pread(self.fd, ENTRY_HEAD_BYTES, position)
            if len(head) < ENTRY_HEAD_BYTES:
                return
            length, crc, entry_lsn = ENTRY_HEAD.unpack(head)
            end = position + ENTRY_HEAD_BYTES + length
            if length == 0 or end > self.capacity or entry_lsn != lsn:
                return
            payload = self.fs.pread(self.fd, length, position + ENTRY_HEAD_BYTES)
            if len(payload) != length or crc32c(salt + head[8:] + payload) != crc:
                return
            yield lsn, payload, end
            lsn += 1
            position = end


# -- ops ------------------------------------------------------------------


def segment_op(log_id: int, base: int, position: int, data: bytes) -> bytes:
    return SEGMENT_OP.pack(OP_SEGMENT, log_id, base, position, len(data)) + data


def decode_ops(payload: bytes) -> Iterator[tuple[int, Any, Any, Any]]:
    """(OP_SEGMENT, (log_id, base), position, data) or (OP_PUT|OP_DELETE, db, key, value)."""
    view = memoryview(payload)
    i = 0
    end = len(payload)
    while i < end:
        tag = payload[i]
        if tag == OP_SEGMENT:
            _, log_id, base, position, size = SEGMENT_OP.unpack_from(payload, i)
            i += SEGMENT_OP.size
            yield OP_SEGMENT, (log_id, base), position, view[i : i + size]
            i += size
        elif tag in (OP_PUT, OP_DELETE):
            name_len = payload[i + 1]
            i += 2
            name = bytes(view[i : i + name_len])
            i += name_len
            (key_len,) = U32.unpack_from(payload, i)
            i += 4
            key = bytes(view[i : i + key_len])
            i += key_len
            value = None
            if tag == OP_PUT:
                (value_len,) = U32.unpack_from(payload, i)
                i += 4
                value = bytes(view[i : i + value_len])
                i += value_len
            yield tag, name, key, value
        else:
            raise Error(f"journal: unknown op {tag} at byte {i} of an entry with a valid CRC")


class RecordingTxn:
    """An LMDB write transaction that also records its puts and deletes as journal ops.

    Engine code gets one as `ctx.txn` and uses it as a py-lmdb Transaction.
    Writes it cannot express as absolute ops (replace, pop, putmulti, drop)
    raise, so nothing can change LMDB without reaching the journal.
    """

    __slots__ = ("raw", "ops", "_names")

    def __init__(self, raw: Any, names: dict[Any, bytes], ops: list[bytes]) -> None:
        self.raw = raw
        self.ops = ops
        self._names = names

    def _name(self, db: Any) -> bytes:
        if db is None:
            return b""
        try:
            return self._names[db]
        except KeyError:
            raise Error("journal: a write to a database not opened by open_databases") from None

    def get(self, key: bytes, default: Any = None, db: Any = None) -> Any:
        return self.raw.get(key, default, db=db)

    def put(
        self,
        key: bytes,
        value: bytes,
        dupdata: bool = True,
        overwrite: bool = True,
        append: bool = False,
        db: Any = None,
    ) -> bool:
        done: bool = self.raw.put(
            key, value, dupdata=dupdata, overwrite=overwrite, append=append, db=db
        )
        if done:
            name = self._name(db)
            self.ops.append(
                DB_OP.pack(OP_PUT, len(name))
                + name
                + _pack_u32(len(key))
                + key
                + _pack_u32(len(value))
                + value
            )
        return done

    def delete(self, key: bytes, value: bytes = b"", db: Any = None) -> bool:
        if value:
            raise Error("journal: deleting one duplicate is not journaled")
        done: bool = self.raw.delete(key, db=db)
        if done:
            self.record_delete(self._name(db), key)
        return done

    def record_delete(self, name: bytes, key: bytes) -> None:
        self.ops.append(DB_OP.pack(OP_DELETE, len(name)) + name + _pack_u32(len(key)) + key)

    def cursor(self, db: Any = None) -> RecordingCursor:
        return RecordingCursor(self, self.raw.cursor(db=db), self._name(db))

    def stat(self, db: Any) -> Any:
        return self.raw.stat(db)

    def id(self) -> int:
        return int(self.raw.id())

    def __getattr__(self, name: str) -> Any:
        if name in ("replace", "pop", "drop", "commit", "abort"):
            raise Error(f"journal: txn.{name} is not available inside a commit")
        return getattr(self.raw, name)


class RecordingCursor:
    """A cursor of a RecordingTxn: reads pass through, deletes are recorded."""

    __slots__ = ("_txn", "_cursor", "_name")

    def __init__(self, txn: RecordingTxn, cursor: Any, name: bytes) -> None:
        self._txn, self._cursor, self._name = txn, cursor, name

    def delete(self, dupdata: bool = False) -> bool:
        key = self._cursor.key()
        done: bool = self._cursor.delete(dupdata=dupdata)
        if done:
            self._txn.record_delete(self._name, bytes(key))
        return done

    def put(self, key: bytes, value: bytes, **flags: Any) -> bool:
        raise Error("journal: cursor.put is not journaled (use txn.put)")

    def __iter__(self) -> Iterator[Any]:
        return iter(self._cursor)

    def __enter__(self) -> RecordingCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self._cursor.close()

    def __getattr__(self, name: str) -> Any:
        if name in ("replace", "pop", "putmulti"):
            raise Error(f"journal: cursor.{name} is not journaled")
        return getattr(self._cursor, name)


def segment_files(journal: Journal, row: JournalRow) -> set[tuple[int, int]]:
    """(log id, base) of every segment the current cycle's entries wrote."""
    files: set[tuple[int, int]] = set()
    for _lsn, payload, end in journal.entries(row):
        if end > row.position:
            break
        for tag, target, _position, _data in decode_ops(payload):
            if tag == OP_SEGMENT:
                files.add(target)
    return files


def segment_path(logs_path: str, log_id: int, base: int) -> str:
    return os.path.join(logs_path, str(log_id), fmt.segment_name(base))
