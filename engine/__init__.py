"""tidelog: an embedded, durable, log-structured message store.

    import tidelog
    with tidelog.open("data") as store:
        log = store.create_log("events")
        log.append(b"hello")
        for record in log.read():
            ...

See docs/api.md for the whole contract.
"""

from tidelog.errors import (
    AlreadyExists,
    Corruption,
    Error,
    InvalidArgument,
    NotFound,
    ReadOnly,
    StaleReceipt,
    StoreFailed,
    UnsupportedFormat,
)
from tidelog.log import Log
from tidelog.segments.format import Record
from tidelog.segments.recovery import LogRecovery, RecoveryReport
from tidelog.store import Store, Transaction, open

__version__ = "0.1.0"

__all__ = [
    "AlreadyExists",
    "Corruption",
    "Error",
    "InvalidArgument",
    "Log",
    "LogRecovery",
    "NotFound",
    "ReadOnly",
    "Record",
    "RecoveryReport",
    "StaleReceipt",
    "Store",
    "StoreFailed",
    "Transaction",
    "UnsupportedFormat",
    "open",
]
