"""Which broker holds which STOMP lease, on disk, so that a successor can release them.

A STOMP broker leases every message it delivers (a queue receive with a
long visibility timeout, renewed while the connection lives). When a
connection goes, the broker releases its leases at once; when the broker
itself goes (SIGKILL, a crash), nobody would until the leases ran out.
ActiveMQ redelivers such messages as soon as a broker is back, so tidelog
keeps, per broker process, a journal of the receipts it holds:

    <store>/stomp/<session>.lock     flock'ed (exclusive) for the broker's life
    <store>/stomp/<session>.leases   lines "queue-name receipt", appended

A lock file that can be locked belongs to a broker that is gone. Any broker
on the store (at start, then every few seconds) takes such a lock, releases
every receipt of that session's journal and deletes the session's temporary
queues (see Broker). A receipt that was acknowledged or released since is
refused by the queue as stale, which is harmless: receipts carry a nonce, so
an old one can never touch a later delivery of the same message.

The journal is written without fsync: a killed process's writes are in the
page cache and survive it; after a machine crash the leases simply run out.
Thread-safe.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO

DIRECTORY = "stomp"
LOCK_SUFFIX = ".lock"
JOURNAL_SUFFIX = ".leases"
_COMPACT_SLACK = 1000  # lines a journal may hold beyond twice the live leases


class LeaseJournal:
    """The receipts one broker holds, mirrored to `<store>/stomp/<session>.leases`."""

    def __init__(self, store_path: str | os.PathLike[str], session: str) -> None:
        self.directory = Path(store_path) / DIRECTORY
        self.session = session
        self._lock_path = self.directory / (session + LOCK_SUFFIX)
        self._journal_path = self.directory / (session + JOURNAL_SUFFIX)
        self._lock_file: IO[bytes] | None = None
        self._journal: IO[bytes] | None = None
        self._live: dict[tuple[str, str], None] = {}
        self._lines = 0
        self._mutex = threading.Lock()

    def open(self) -> None:
        """Create and lock this session's files. Raises OSError if the store's
        directory cannot be written."""
        self.directory.mkdir(exist_ok=True)
        while True:
            handle = open(self._lock_path, "ab")  # noqa: SIM115 - held for the broker's life
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                # Another broker took the new file for a dead one's; it will
                # unlink it in a moment. Then lock a fresh one.
                handle.close()
                time.sleep(0.01)
                continue
            with contextlib.suppress(FileNotFoundError):
                if os.stat(self._lock_path).st_ino == os.fstat(handle.fileno()).st_ino:
                    break
            handle.close()
        self._lock_file = handle
        self._journal = open(self._journal_path, "ab", buffering=0)  # noqa: SIM115

    def add(self, queue: str, receipts: Iterable[str]) -> None:
        """Record leases just taken on `queue` (call before delivering them)."""
        keys = [(queue, receipt) for receipt in receipts]
        if not keys:
            return
        with self._mutex:
            for key in keys:
                self._live[key] = None
            if self._journal is not None:
                self._journal.write(b"".join(f"{q} {r}\n".encode() for q, r in keys))
                self._lines += len(keys)
                if self._lines > 2 * len(self._live) + _COMPACT_SLACK:
                    self._compact()

    def discard(self, queue: str, receipts: Iterable[str]) -> None:
        """Forget leases that were deleted or released. The journal keeps their
        lines until the next compaction (a successor's release of them is a no-op)."""
        with self._mutex:
            for receipt in receipts:
                self._live.pop((queue, receipt), None)

    def _compact(self) -> None:
        # Rewrite the journal with the live leases only: a new file renamed
        # over the old one, so a kill mid-way leaves one or the other whole.
        staging = self._journal_path.with_suffix(JOURNAL_SUFFIX + ".new")
        with open(staging, "wb") as out:
            out.write(b"".join(f"{q} {r}\n".encode() for q, r in self._live))
        os.replace(staging, self._journal_path)
        if self._journal is not None:
            self._journal.close()
        self._journal = open(self._journal_path, "ab", buffering=0)  # noqa: SIM115
        self._lines = len(self._live)

    def close(self) -> None:
        """Remove this session's files (every lease was released or settled)."""
        with self._mutex:
            if self._journal is not None:
                self._journal.close()
                self._journal = None
            with contextlib.suppress(FileNotFoundError):
                self._journal_path.unlink()
            if self._lock_file is not None:
                with contextlib.suppress(FileNotFoundError):
                    self._lock_path.unlink()
                self._lock_file.close()
                self._lock_file = None


def session_alive(store_path: str | os.PathLike[str], session: str) -> bool:
    """True while the broker of `session` runs (its lock file is locked)."""
    path = Path(store_path) / DIRECTORY / (session + LOCK_SUFFIX)
    try:
        handle = open(path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False


def _journal_lines(path: Path) -> Iterator[tuple[str, str]]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    for line in data.split(b"\n")[:-1]:  # a torn last line has no newline: skipped
        queue, _, receipt = line.decode(errors="replace").partition(" ")
        if queue and receipt:
            yield queue, receipt


def reclaim_dead(
    store_path: str | os.PathLike[str],
    release: Callable[[str, list[str]], None],
    forget_session: Callable[[str], None],
) -> list[str]:
    """Release the leases of every broker session that is gone; return those sessions.

    For each unlocked lock file: `release(queue, receipts)` per queue of its
    journal, then `forget_session(session)` (its temporary queues), then the
    files go. Safe to run from several brokers at once (a lock being
    reclaimed by one is locked, so the others skip it).
    """
    directory = Path(store_path) / DIRECTORY
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    reclaimed = []
    for name in names:
        if not name.endswith(LOCK_SUFFIX):
            continue
        session = name[: -len(LOCK_SUFFIX)]
        try:
            handle = open(directory / name, "ab")  # noqa: SIM115
        except FileNotFoundError:
            continue
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # alive, or being reclaimed by another broker
            journal = directory / (session + JOURNAL_SUFFIX)
            by_queue: dict[str, list[str]] = {}
            staging = journal.with_suffix(JOURNAL_SUFFIX + ".new")
            for path in (journal, staging):
                for queue, receipt in _journal_lines(path):
                    by_queue.setdefault(queue, []).append(receipt)
            for queue, receipts in by_queue.items():
                release(queue, list(dict.fromkeys(receipts)))
            forget_session(session)
            for path in (journal, staging, directory / name):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        reclaimed.append(session)
    return reclaimed
