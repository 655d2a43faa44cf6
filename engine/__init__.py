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
    PermissionDenied,
    ReadOnly,
    StaleReceipt,
    StoreBusy,
    StoreFailed,
    UnsupportedFormat,
)
from tidelog.log import Log
from tidelog.monitor import CommitStats, DiskUsage, StoreStatus
from tidelog.queues import (
    AttributeValue,
    BatchFailure,
    BatchResult,
    Message,
    MoveTask,
    PeekedMessage,
    Queue,
    QueueCounts,
    QueueStats,
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
from tidelog.stream_admin import LimitExceeded, StreamLimits
from tidelog.stream_groups import (
    Checkpointer,
    ConsumerGroup,
    LeaseLost,
    RecordProcessor,
    ShardLease,
    Worker,
)
from tidelog.stream_subscriptions import ShardSubscription, SubscriptionEvent, SubscriptionInUse
from tidelog.streams import (
    Consumer,
    ExpiredIterator,
    GetRecordsResult,
    PutManyResult,
    PutResult,
    ShardDescription,
    ShardLag,
    Stream,
    StreamDescription,
    StreamRecord,
    StreamStats,
)
from tidelog.topics import (
    DeliveryWorker,
    Notification,
    PublishBatchResult,
    PublishedMessage,
    PublishEntry,
    PublishFailure,
    PublishResult,
    Subscription,
    Topic,
)
from tidelog.trigger_pool import Invocation
from tidelog.trigger_runner import TriggerRunner, TriggerStats
from tidelog.triggers import Function, Trigger, Triggers
from tidelog.video import (
    Ack,
    Fragment,
    NoDataRetention,
    StartSelector,
    StoredFragment,
    VersionMismatch,
    VideoStream,
    VideoStreamInfo,
)

__version__ = "0.1.0"

__all__ = [
    "Ack",
    "Fragment",
    "NoDataRetention",
    "StartSelector",
    "StoredFragment",
    "VersionMismatch",
    "VideoStream",
    "VideoStreamInfo",
    "AlreadyExists",
    "Application",
    "ApplicationDescription",
    "AttributeValue",
    "BatchFailure",
    "BatchResult",
    "Checkpointer",
    "CommitStats",
    "Consumer",
    "ConsumerGroup",
    "Corruption",
    "DROPPED",
    "Deliverer",
    "DeliveryPutResult",
    "DeliveryStats",
    "DeliveryStream",
    "DeliveryWorker",
    "DirectoryDestination",
    "DiskUsage",
    "Error",
    "ExpiredIterator",
    "FlushResult",
    "Function",
    "GetRecordsResult",
    "InvalidArgument",
    "Invocation",
    "LeaseLost",
    "LimitExceeded",
    "Log",
    "LogRecovery",
    "Message",
    "MoveTask",
    "NotFound",
    "Notification",
    "Ok",
    "PeekedMessage",
    "Processed",
    "ProcessingFailed",
    "PublishBatchResult",
    "PublishEntry",
    "PublishFailure",
    "PublishResult",
    "PublishedMessage",
    "PutManyResult",
    "PutResult",
    "Queue",
    "QueueCounts",
    "QueueStats",
    "PermissionDenied",
    "ReadOnly",
    "Record",
    "RecordProcessor",
    "RecoveryReport",
    "S3Destination",
    "ScanLimitExceeded",
    "SendEntry",
    "SendResult",
    "ShardDescription",
    "ShardLag",
    "ShardLease",
    "ShardSubscription",
    "SqlError",
    "SqlResult",
    "StaleReceipt",
    "Store",
    "StoreBusy",
    "StoreFailed",
    "StoreStatus",
    "Stream",
    "StreamDescription",
    "StreamLimits",
    "StreamRecord",
    "StreamStats",
    "Subscription",
    "SubscriptionEvent",
    "SubscriptionInUse",
    "Topic",
    "Transaction",
    "Trigger",
    "TriggerRunner",
    "TriggerStats",
    "Triggers",
    "UnsupportedFormat",
    "Worker",
    "open",
]
