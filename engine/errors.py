"""Public errors. All derive from `tidelog.Error`."""

from tidelog.segments.errors import (
    AlreadyExists,
    Corruption,
    Error,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ReadOnly,
    StoreBusy,
    StoreFailed,
    UnsupportedFormat,
)


class StaleReceipt(Error):
    """A receipt from an earlier receive: the message was received again since."""


__all__ = [
    "AlreadyExists",
    "Corruption",
    "Error",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ReadOnly",
    "StaleReceipt",
    "StoreBusy",
    "StoreFailed",
    "UnsupportedFormat",
]
