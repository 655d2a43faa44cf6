"""The error hierarchy. `tidelog.Error` is `Error` here; the engine adds leaves.

Messages read "what: reason (hint)".
"""

from __future__ import annotations


class Error(Exception):
    """Root of every error tidelog raises on purpose."""


class NotFound(Error):
    """A named log, channel or item does not exist."""


class AlreadyExists(Error):
    """A create call named something that exists already."""


class InvalidArgument(Error, ValueError):
    """A name, size, count or limit is out of range; the message says which."""


class ReadOnly(Error):
    """A write was attempted on a store opened read-only, or opened for
    writing where this user may not write (the message says which)."""


class PermissionDenied(Error):
    """This user may not read the store's directory or files."""


class UnsupportedFormat(Error):
    """The files were written by a newer format this build cannot read."""


class StoreBusy(Error):
    """An operation that needs the store to itself (repair) found another
    process with it open for writing; the message says what to stop."""


class StoreFailed(Error):
    """An I/O failure (such as fsync returning EIO) stopped writes to this store.

    After a failed fsync the state of the page cache is unknown, so the store
    refuses every further write rather than risk acknowledging lost data.
    Close it and open it again: recovery truncates what was never committed.
    """


class Corruption(Error):
    """A damaged record or file. Carries where, so an operator can find it."""

    def __init__(
        self,
        message: str,
        *,
        log: str | None = None,
        path: str | None = None,
        offset: int | None = None,
        position: int | None = None,
    ) -> None:
        where = ", ".join(
            f"{k}={v}"
            for k, v in (("log", log), ("path", path), ("offset", offset), ("position", position))
            if v is not None
        )
        super().__init__(f"{message} ({where})" if where else message)
        self.reason = message
        self.log = log
        self.path = path
        self.offset = offset
        self.position = position


def check(condition: bool, message: str) -> None:
    """Raise Error if an internal invariant does not hold (unlike assert, never stripped)."""
    if not condition:
        raise Error(f"invariant broken: {message} (a bug in tidelog; please report it)")
