"""tidelog: an embedded, durable, log-structured message store.

    import tidelog
    with tidelog.open("data") as store:
        log = store.create_log("events")
        log.append(b"hello")
        for record in log.read():
            ...

See docs/api.md for the whole contract.
"""

from tidelog.delivery import (
    DROPPED,
    Deliverer,
    DeliveryPutResult,
    DeliveryStats,
    DeliveryStream,
    DirectoryDestination,
    FlushResult,
    Ok,
    Processed,
    ProcessingFailed,
    S3Destination,
)
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
from tidelog.queues import (
    AttributeValue,
    BatchFailure,
    BatchResult,
    Message,
    MoveTask,
    Queue,
    QueueCounts,
    SendEntry,
    SendResult,
)
from tidelog.segments.format import Record
from tidelog.segments.recovery import LogRecovery, RecoveryReport
from tidelog.sql import (
    Application,
    ApplicationDescription,
    ScanLimitExceeded,
    SqlError,
    SqlResult,
)
from tidelog.store import Store, Transaction, open
from tidelog.streams import (
    Consumer,
    ExpiredIterator,
    GetRecordsResult,
    PutManyResult,
    PutResult,
    ShardDescription,
    Stream,
    StreamDescription,
    StreamRecord,
)
from tidelog.topics import (
    DeliveryWorker,
    Notification,
    PublishBatchResult,
    PublishEntry,
    PublishFailure,
    PublishResult,
    Subscription,
    Topic,
)

__version__ = "0.1.0"

__all__ = [
    "AlreadyExists",
    "Application",
    "ApplicationDescription",
    "AttributeValue",
    "BatchFailure",
    "BatchResult",
    "Consumer",
    "DROPPED",
    "Deliverer",
    "DeliveryPutResult",
    "DeliveryStats",
    "DeliveryStream",
    "DirectoryDestination",
    "FlushResult",
    "Ok",
    "Processed",
    "ProcessingFailed",
    "S3Destination",
    "Corruption",
    "DeliveryWorker",
    "Error",
    "ExpiredIterator",
    "GetRecordsResult",
    "InvalidArgument",
    "Log",
    "LogRecovery",
    "Message",
    "MoveTask",
    "NotFound",
    "Notification",
    "PublishBatchResult",
    "PublishEntry",
    "PublishFailure",
    "PublishResult",
    "PutManyResult",
    "PutResult",
    "Queue",
    "QueueCounts",
    "ReadOnly",
    "Record",
    "RecoveryReport",
    "ScanLimitExceeded",
    "SendEntry",
    "SendResult",
    "ShardDescription",
    "SqlError",
    "SqlResult",
    "StaleReceipt",
    "Store",
    "StoreFailed",
    "Stream",
    "StreamDescription",
    "StreamRecord",
    "Subscription",
    "Topic",
    "Transaction",
    "UnsupportedFormat",
    "open",
]
