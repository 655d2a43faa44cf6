"""The file-system seam: every byte the log layer writes or reads passes here.

`OsFileSystem` is the real one. `FaultyFileSystem` wraps it for tests: it
remembers what was written since the last sync of each file, and can forget
it (a simulated power cut), tear it at a chosen byte, or fail fsync with EIO.
LMDB does its own I/O: the store declares its LMDB file with `unflushed`
(it is written without flushes and never trusted after a crash), and
`FaultyFileSystem.crash` scrambles it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from dataclasses import dataclass, field


class OsFileSystem:
    """Plain POSIX calls. Thread-safe as the OS calls are."""

    def open_append(self, path: str) -> int:
        """Open an existing segment file for writing (no O_APPEND: we pwrite)."""
        return os.open(path, os.O_RDWR | os.O_CLOEXEC)

    def create(self, path: str) -> int:
        """Create a new file, failing if it exists."""
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)

    def open_read(self, path: str) -> int:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)

    def close(self, fd: int) -> None:
        os.close(fd)

    def pwrite(self, fd: int, data: bytes, position: int) -> None:
        view = memoryview(data)
        while view:
            written = os.pwrite(fd, view, position)
            view = view[written:]
            position += written

    def pread(self, fd: int, size: int, position: int) -> bytes:
        return os.pread(fd, size, position)

    def size(self, fd: int) -> int:
        return os.fstat(fd).st_size

    def truncate(self, fd: int, size: int) -> None:
        os.ftruncate(fd, size)

    flush_count = 0  # fdatasync and fsync calls done (for metrics; see Store.commit_stats)

    def fdatasync(self, fd: int) -> None:
        os.fdatasync(fd)
        self.flush_count += 1

    def fsync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self.flush_count += 1

    def rename(self, source: str, dest: str) -> None:
        """Rename atomically (durable once the directory is fsynced)."""
        os.replace(source, dest)

    def makedirs(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def unflushed(self, path: str) -> None:
        """Declare a file written outside this seam and never flushed (LMDB's)."""

    def listdir(self, path: str) -> list[str]:
        try:
            return os.listdir(path)
        except FileNotFoundError:
            return []

    def unlink(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    def rmtree(self, path: str) -> None:
        shutil.rmtree(path, ignore_errors=True)

    def copy_aside(self, path: str, dest: str) -> None:
        """Copy a file and fsync the copy (kept before a repair changes `path`)."""
        shutil.copyfile(path, dest)
        fd = os.open(dest, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@dataclass
class _Unsynced:
    path: str
    # (position, bytes that were there before the write, file size before)
    undo: list[tuple[int, bytes, int]] = field(default_factory=list)
    written: list[tuple[int, bytes]] = field(default_factory=list)


class FaultyFileSystem(OsFileSystem):
    """A test file system that can lose or tear what was not yet synced.

    - `crash(keep_bytes=None)`: undo every write not followed by an fdatasync
      of its file; with `keep_bytes=n`, the first n unsynced bytes of each
      file survive (a torn write). Files created since the last fsync of
      their directory vanish.
    - `fail_fsync = True`: the next fdatasync/fsync raises EIO.
    """

    def __init__(self) -> None:
        self.fail_fsync = False
        self._fds: dict[int, _Unsynced] = {}
        self._by_path: dict[str, _Unsynced] = {}
        self._new_files: dict[str, set[str]] = {}  # dir -> files created, dir not synced
        self._unflushed: set[str] = set()

    def _track(self, fd: int, path: str) -> int:
        self._fds[fd] = self._by_path.setdefault(path, _Unsynced(path))
        return fd

    def open_append(self, path: str) -> int:
        return self._track(super().open_append(path), path)

    def open_read(self, path: str) -> int:
        # Tracked too: store.sync() fdatasyncs segments through a read fd.
        return self._track(super().open_read(path), path)

    def create(self, path: str) -> int:
        fd = super().create(path)
        self._new_files.setdefault(os.path.dirname(path), set()).add(path)
        return self._track(fd, path)

    def close(self, fd: int) -> None:
        self._fds.pop(fd, None)
        super().close(fd)

    def pwrite(self, fd: int, data: bytes, position: int) -> None:
        state = self._fds.get(fd)
        if state is not None:
            old_size = os.fstat(fd).st_size
            old = os.pread(fd, len(data), position)
            state.undo.append((position, old, old_size))
            state.written.append((position, bytes(data)))
        super().pwrite(fd, data, position)

    def truncate(self, fd: int, size: int) -> None:
        state = self._fds.get(fd)
        if state is not None:
            old_size = os.fstat(fd).st_size
            if size < old_size:
                state.undo.append((size, os.pread(fd, old_size - size, size), old_size))
        super().truncate(fd, size)

    def _check_fsync(self) -> None:
        if self.fail_fsync:
            raise OSError(errno.EIO, "injected fsync failure")

    def fdatasync(self, fd: int) -> None:
        self._check_fsync()
        super().fdatasync(fd)
        state = self._fds.get(fd)
        if state is not None:
            state.undo.clear()
            state.written.clear()

    def fsync_dir(self, path: str) -> None:
        self._check_fsync()
        super().fsync_dir(path)
        self._new_files.pop(path, None)

    def unflushed(self, path: str) -> None:
        self._unflushed.add(path)

    def rename(self, source: str, dest: str) -> None:
        super().rename(source, dest)
        state = self._by_path.pop(source, None)
        if state is not None:
            state.path = dest
            self._by_path[dest] = state
        for files in self._new_files.values():
            if source in files:
                files.discard(source)
                files.add(dest)

    def unsynced_bytes(self, path: str | None = None) -> int:
        """Bytes written and not yet synced (of one file, or of all)."""
        return sum(
            len(data)
            for s in self._by_path.values()
            if path is None or s.path == path
            for _, data in s.written
        )

    def crash(self, keep_bytes: int | None = None) -> None:
        """Forget unsynced writes, as a power cut would. Close the store first."""
        for state in self._by_path.values():
            if not os.path.exists(state.path):
                continue
            fd = os.open(state.path, os.O_RDWR)
            try:
                for position, old, old_size in reversed(state.undo):
                    os.pwrite(fd, old, position)
                    if os.fstat(fd).st_size > old_size:
                        os.ftruncate(fd, old_size)
                budget = keep_bytes or 0
                for position, data in state.written:
                    if budget <= 0:
                        break
                    piece = data[:budget]
                    os.pwrite(fd, piece, position)
                    budget -= len(piece)
            finally:
                os.close(fd)
            state.undo.clear()
            state.written.clear()
        for files in self._new_files.values():
            for path in files:
                if os.path.exists(path):
                    os.unlink(path)
        self._new_files.clear()
        self._fds.clear()
        # Files written without flushes (LMDB's): any page may or may not have
        # reached the disk, so assume the worst, none of it is readable.
        for path in self._unflushed:
            if os.path.exists(path):
                size = os.path.getsize(path)
                with open(path, "r+b") as handle:
                    handle.write(os.urandom(min(size, 1 << 20)))
