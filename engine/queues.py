"""Queues: the SQS model as a view over a log (DESIGN.md, "Queues as views over a log").

A queue owns one log, which holds every message sent to it. Its state in
LMDB is small and proportional to the messages *in flight*, never to history:

- `queue_state` (one row per queue): the *head* (lowest offset not yet
  deleted), the *frontier* (lowest offset never looked at by a receive), a
  receipt nonce counter and O(1) counters for the approximate counts.
- `queue_entries` (one row per message between head and frontier that is not
  deleted): visible-at time, original send time, first-receive time, receive
  count, receipt nonce, kind (leased / delayed / waiting) and FIFO group.
- `queue_due`: the entries ordered by visible-at, so a receive finds expired
  leases and matured delays without scanning.
- `queue_groups` (FIFO): per message group, the offsets handed out by the
  group's last receive; the group is locked while one of them is leased.
- `queue_group_waiting` (FIFO): per message group, in offset order, the
  entries a receive found locked behind their group ("parked"). A parked
  entry is out of `queue_due`, so no number of them can hide a deliverable
  message from a receive's scan; when the group's last handed-out message is
  deleted (or dropped), its lowest parked entry goes back into `queue_due`
  (marked "released"), and a receive that takes it takes the parked entries
  after it in order, up to `max_messages`.
- `queue_dedup`, `queue_dedup_expiry` (FIFO): deduplication ids for 5 minutes.
- `queue_tasks`: message-move (redrive) tasks, one JSON row each, advanced
  in the same commit as each batch they move (see "message move tasks").

A queue subscribed to topics has further *parts*: one view per
subscription over the topic's log (docs/format.md, "Topic records and
subscription views"), with the same rows keyed by the view's id instead of
the log id. Every state function here works on one part (`_Config.parts`).

Deleting a message removes its entry; the head becomes the lowest remaining
entry (or the frontier), and sealed segments wholly below the head are
reclaimed in the same commit unless the queue keeps a replay window.

All of this state is primary (it cannot be rebuilt from the log). Every
operation is one `LogStore.submit` op, so each is atomic, group-committed
with concurrent calls and durable as the store's sync mode promises. Times
come from the store's clock (`tidelog.open(clock=...)`), so tests inject one.

Work that no call drives (move tasks, dropping expired messages from an
idle queue) runs in a queue worker: one daemon thread per writable Store
handle (`_QueueWorker`), also callable directly (`run_message_move_tasks`,
`enforce_retention`).
"""

from __future__ import annotations

import array
import base64
import copy
import hashlib
import heapq
import itertools
import json
import os
import re
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypeVar

from tidelog.catalog import (
    CHANNELS_DB,
    channel_key,
    check_fifo_name,
    delete_channel,
    get_channel,
    list_channels,
    log_name,
    put_channel,
)
from tidelog.errors import (
    AlreadyExists,
    Corruption,
    Error,
    InvalidArgument,
    NotFound,
    StaleReceipt,
)
from tidelog.log import as_bytes
from tidelog.segments import keys
from tidelog.segments.format import Record
from tidelog.segments.keys import Ends, Txn
from tidelog.segments.logstore import LogInfo, LogStore, delete_prefix
from tidelog.segments.reader import offset_for_time, read_records
from tidelog.segments.writer import WriteContext
from tidelog.tags import TAGS_MAX, check_tags, merged_tags, remaining_tags

if TYPE_CHECKING:
    from tidelog.store import Store

# -- LMDB databases (added to catalog.ENGINE_DATABASES) -------------------------------------------

STATE_DB = b"queue_state"
ENTRIES_DB = b"queue_entries"
DUE_DB = b"queue_due"
GROUPS_DB = b"queue_groups"
WAITING_DB = b"queue_group_waiting"
DEDUP_DB = b"queue_dedup"
DEDUP_EXPIRY_DB = b"queue_dedup_expiry"
TASKS_DB = b"queue_tasks"
# Which views read a topic's log (key: topic log id + view id, value: queue
# name); written by topics.py, cleaned up here when a queue drops a view.
VIEWS_DB = b"topic_views"
# Per topic log (key: its id), for each slot: (matching records ever, of them
# delayed) as u64 pairs: the one row a publish writes for all its views.
SLOT_TOTALS_DB = b"topic_slot_totals"
QUEUE_DATABASES = (
    STATE_DB,
    ENTRIES_DB,
    DUE_DB,
    GROUPS_DB,
    WAITING_DB,
    DEDUP_DB,
    DEDUP_EXPIRY_DB,
    TASKS_DB,
    VIEWS_DB,
    SLOT_TOTALS_DB,
)

# -- limits (SQS's current ones) ------------------------------------------------------------------

NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,80}")
FIFO_SUFFIX = ".fifo"
BATCH_ENTRIES_MAX = 10
BATCH_BYTES_MAX = 1024 * 1024
MESSAGE_BYTES_MIN = 1024
MESSAGE_BYTES_MAX = 1024 * 1024
VISIBILITY_SECONDS_MAX = 12 * 3600
DELAY_SECONDS_MAX = 15 * 60
WAIT_SECONDS_MAX = 20
# SQS's limit on permission statements (stored, not enforced); tag limits are in tidelog.tags.
PERMISSIONS_MAX = 100
RETENTION_SECONDS_MIN = 60
RETENTION_SECONDS_MAX = 14 * 24 * 3600
RETENTION_SECONDS_DEFAULT = 4 * 24 * 3600
MAX_RECEIVE_COUNT_MAX = 1000
ATTRIBUTES_PER_MESSAGE_MAX = 10
ATTRIBUTE_NAME_BYTES_MAX = 256
ID_CHARS_MAX = 128  # group ids, deduplication ids and batch entry ids
DEDUP_WINDOW_MS = 5 * 60 * 1000
REPLAY_WINDOW_SECONDS_MAX = 14 * 24 * 3600
PURGE_INTERVAL_SECONDS = 60  # SQS: one PurgeQueue per queue in any 60 s (Queue.purge)
# A receive looks at no more than this many due entries and new records, so
# a FIFO queue whose backlog sits behind locked groups costs a bounded scan.
SCAN_ENTRIES_MAX = 256
SCAN_RECORDS_MAX = 1024
COUNT_PEEK_MAX = 1024  # due entries re-classified by approximate_counts() (exact up to this)
DEDUP_EXPIRE_PER_SEND = 16
CROSS_PROCESS_POLL_SECONDS = 0.05
READ_CHUNK_BYTES_FIRST = 4096  # a receive reads a few KiB first; the reader doubles it
READ_CHUNK_BYTES_MAX = 256 * 1024  # a bulk copy (a deleted topic's views) starts big
PEEK_MESSAGES_MAX = 1000
# delete_at walks the undelivered messages before its offset in commits of
# at most this many records, so one operator delete never makes a huge commit.
MATERIALIZE_RECORDS_MAX = 4096

_ATTR_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,256}")
_ID_RE = re.compile(r"[\x21-\x7e]{1,128}")  # SQS: alphanumerics and punctuation
_ENTRY_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,80}")
# SQS's characters (XML 1.0's Char production): what a str body or a String or
# Number attribute may hold. Others, U+0000, U+FFFF and lone surrogates among
# them, cannot travel in the query protocol's XML, and SQS refuses them.
_NOT_SQS_TEXT = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
SQS_CHARACTERS = "#x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF"

# Views over topic logs (docs/format.md, "Topic records and subscription views").
VIEW_ID_FLAG = 1 << 63
VIEW_NUMBER_MAX = 0xFFFF
VIEW_OFFSET_SHIFT = 48  # a view message's public offset: number << 48 | topic offset
# A receive over a view passes at most this many topic records of other
# subscriptions, so a rarely matching filter costs a bounded scan per receive.
VIEW_SCAN_RECORDS_MAX = 4096

# -- row layouts ----------------------------------------------------------------------------------

U64 = struct.Struct(">Q")
KEY2 = struct.Struct(">QQ")
KEY3 = struct.Struct(">QQQ")
# head, frontier, next nonce, leased, delayed, waiting, delayed beyond the frontier
STATE = struct.Struct(">QQQqqqq")
# a view's: the same, then matching records past the frontier, and all matching ever
STATE_VIEW = struct.Struct(">QQQqqqqqq")
# visible_at_ms, sent_at_ms, first_received_ms, receive_count, nonce, kind (+ group bytes)
ENTRY = struct.Struct(">QQQIIB")
DEDUP = struct.Struct(">QQ16s")  # expires_ms, offset, message id
KIND_LEASED = 1
KIND_DELAYED = 2
KIND_WAITING = 3
_KIND_BYTES = {KIND_LEASED: b"\x01", KIND_DELAYED: b"\x02", KIND_WAITING: b"\x03"}


class _State:
    __slots__ = (
        "head",
        "frontier",
        "nonce",
        "leased",
        "delayed",
        "waiting",
        "pending_delayed",
        "unscanned",
        "matched",
    )

    def __init__(self, raw: bytes | None, view: bool = False) -> None:
        # unscanned, matched: a view's counters (None for a queue's own log).
        # An open view's unscanned, matched and pending_delayed are stored
        # relative to its slot's totals (SLOT_TOTALS_DB), so that a publish
        # writes one row for all its views; `_effective` adds them back.
        self.unscanned: int | None = 0 if view else None
        self.matched = 0
        values: tuple[int, ...]
        if raw is None:
            values = (0,) * 7
        elif len(raw) == STATE_VIEW.size:
            *queue_fields, self.unscanned, self.matched = STATE_VIEW.unpack(raw)
            values = tuple(queue_fields)
        else:
            values = STATE.unpack(raw)
        (
            self.head,
            self.frontier,
            self.nonce,
            self.leased,
            self.delayed,
            self.waiting,
            self.pending_delayed,
        ) = values

    def pack(self) -> bytes:
        values = (
            self.head,
            self.frontier,
            self.nonce,
            self.leased,
            self.delayed,
            self.waiting,
            self.pending_delayed,
        )
        if self.unscanned is None:
            return STATE.pack(*values)
        return STATE_VIEW.pack(*values, self.unscanned, self.matched)

    def passed(self) -> None:
        """The frontier passed one message of the part (a view counts them)."""
        if self.unscanned is not None:
            self.unscanned -= 1

    def count(self, kind: int, delta: int) -> None:
        if kind == KIND_LEASED:
            self.leased += delta
        elif kind == KIND_DELAYED:
            self.delayed += delta
        else:
            self.waiting += delta


class _Entry:
    __slots__ = (
        "visible_at",
        "sent_at",
        "first_received",
        "receive_count",
        "nonce",
        "kind",
        "group",
    )

    def __init__(
        self,
        visible_at: int,
        sent_at: int,
        first_received: int,
        receive_count: int,
        nonce: int,
        kind: int,
        group: bytes,
    ) -> None:
        self.visible_at = visible_at
        self.sent_at = sent_at
        self.first_received = first_received
        self.receive_count = receive_count
        self.nonce = nonce
        self.kind = kind
        self.group = group

    @classmethod
    def unpack(cls, raw: bytes) -> _Entry:
        visible_at, sent_at, first_received, count, nonce, kind = ENTRY.unpack_from(raw)
        return cls(visible_at, sent_at, first_received, count, nonce, kind, raw[ENTRY.size :])

    def pack(self) -> bytes:
        return (
            ENTRY.pack(
                self.visible_at,
                self.sent_at,
                self.first_received,
                self.receive_count,
                self.nonce,
                self.kind,
            )
            + self.group
        )


# -- attributes and digests -----------------------------------------------------------------------


class AttributeValue(NamedTuple):
    """A typed message attribute as SQS holds it.

    `data_type` is "String", "Number" or "Binary", optionally with a custom
    suffix ("Number.float", "Binary.png"). `value` is `str` for String and
    Number (the number's exact text) and `bytes` for Binary.
    """

    data_type: str
    value: str | bytes

    @property
    def python(self) -> str | int | float | bytes:
        """The value as a plain Python object (Number -> int or float)."""
        if isinstance(self.value, bytes):
            return self.value
        if self.data_type.split(".", 1)[0] == "Number":
            try:
                return int(self.value)
            except ValueError:
                return float(self.value)
        return self.value


AttributeInput = str | int | float | bytes | AttributeValue | tuple[str, Any] | Mapping[str, Any]


def _typed_attribute(name: str, raw: AttributeInput) -> AttributeValue:
    """One attribute value as SQS would type it; raises InvalidArgument."""
    if isinstance(raw, AttributeValue):
        data_type, value = raw
    elif isinstance(raw, bool):
        raise InvalidArgument(f"attribute {name!r}: bool is not an SQS type (use str or int)")
    elif isinstance(raw, str):
        data_type, value = "String", raw
    elif isinstance(raw, int):
        data_type, value = "Number", str(raw)
    elif isinstance(raw, float):
        if raw != raw or raw in (float("inf"), float("-inf")):
            raise InvalidArgument(f"attribute {name!r}: {raw} is not a finite number")
        data_type, value = "Number", repr(raw)
    elif isinstance(raw, bytes | bytearray | memoryview):
        data_type, value = "Binary", bytes(raw)
    elif isinstance(raw, tuple) and len(raw) == 2:
        data_type, value = raw
    elif isinstance(raw, Mapping):
        # boto3's shape: {"DataType": ..., "StringValue": ...} or "BinaryValue".
        data_type = raw.get("DataType", "")
        value = raw["BinaryValue"] if "BinaryValue" in raw else raw.get("StringValue", "")
    else:
        raise InvalidArgument(
            f"attribute {name!r}: {type(raw).__name__} is not str, int, float, bytes "
            "or a typed (data_type, value) pair"
        )
    if not isinstance(data_type, str) or not data_type:
        raise InvalidArgument(f"attribute {name!r}: data type missing")
    base = data_type.split(".", 1)[0]
    if (
        base not in ("String", "Number", "Binary")
        or len(data_type) > 256
        or _NOT_SQS_TEXT.search(data_type)
        or len(data_type.encode()) > 256
    ):
        raise InvalidArgument(
            f"attribute {name!r}: data type {data_type!r} must be String, Number or Binary "
            "with an optional .suffix"
        )
    if base == "Binary":
        if isinstance(value, str):
            raise InvalidArgument(f"attribute {name!r}: Binary values are bytes")
        if not isinstance(value, bytes | bytearray | memoryview):
            raise InvalidArgument(f"attribute {name!r}: Binary values are bytes")
        value = bytes(value)
    else:
        if isinstance(value, int | float) and not isinstance(value, bool) and base == "Number":
            value = str(value)
        if not isinstance(value, str):
            raise InvalidArgument(f"attribute {name!r}: {base} values are str")
        check_text(f"attribute {name!r}", value, "InvalidParameterValue")
        if base == "Number":
            _check_number(name, value)
    if not value:
        raise InvalidArgument(f"attribute {name!r}: value must not be empty")
    return AttributeValue(data_type, value)


def _check_number(name: str, text: str) -> None:
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise InvalidArgument(f"attribute {name!r}: {text!r} is not a number") from None
    if not number.is_finite():
        raise InvalidArgument(f"attribute {name!r}: {text!r} is not a finite number")
    if number and not (Decimal("1e-128") <= abs(number) <= Decimal("1e126")):
        raise InvalidArgument(f"attribute {name!r}: {text!r} is outside SQS's range 1e-128..1e126")
    if len(number.as_tuple().digits) > 38:
        raise InvalidArgument(f"attribute {name!r}: {text!r} has over 38 digits of precision")


def _check_attribute_name(name: object) -> str:
    if not isinstance(name, str) or not _ATTR_NAME_RE.fullmatch(name):
        raise InvalidArgument(
            f"attribute name {name!r}: must be 1-256 characters of A-Z a-z 0-9 _ - ."
        )
    lowered = name.lower()
    if lowered.startswith(("aws.", "amazon.")):
        raise InvalidArgument(
            f"attribute name {name!r}: the AWS. and Amazon. prefixes are reserved"
        )
    if name.startswith(".") or name.endswith(".") or ".." in name:
        raise InvalidArgument(
            f"attribute name {name!r}: must not start or end with a period or hold two in a row"
        )
    return name


def typed_attributes(attributes: Mapping[str, AttributeInput] | None) -> dict[str, AttributeValue]:
    """Type a user's attribute mapping as SQS does; raises InvalidArgument."""
    if not attributes:
        return {}
    if len(attributes) > ATTRIBUTES_PER_MESSAGE_MAX:
        raise InvalidArgument(
            f"attributes: {len(attributes)} given, over SQS's {ATTRIBUTES_PER_MESSAGE_MAX}"
        )
    return {
        _check_attribute_name(name): _typed_attribute(name, raw) for name, raw in attributes.items()
    }


def md5_of_body(body: bytes) -> str:
    """SQS's MD5OfMessageBody: the hex MD5 of the body's bytes."""
    return hashlib.md5(body, usedforsecurity=False).hexdigest()


def md5_of_attributes(attributes: Mapping[str, AttributeValue]) -> str:
    """SQS's MD5OfMessageAttributes ("" when there are none).

    For each attribute in name order: the name, the data type and the value,
    each prefixed with its 4-byte big-endian length, with a transport byte
    (1 for String and Number, 2 for Binary) between type and value.
    """
    if not attributes:
        return ""
    digest = hashlib.md5(usedforsecurity=False)
    pack = U32.pack
    for name in sorted(attributes):
        data_type, value = attributes[name]
        name_bytes = name.encode()
        type_bytes = data_type.encode()
        if isinstance(value, bytes):
            transport, value_bytes = b"\x02", value
        else:
            transport, value_bytes = b"\x01", value.encode()
        digest.update(pack(len(name_bytes)) + name_bytes + pack(len(type_bytes)) + type_bytes)
        digest.update(transport + pack(len(value_bytes)) + value_bytes)
    return digest.hexdigest()


U32 = struct.Struct(">I")


def attributes_size(attributes: Mapping[str, AttributeValue]) -> int:
    """Bytes SQS counts toward the message size: names, types and values."""
    total = 0
    for name, (data_type, value) in attributes.items():
        total += len(name.encode()) + len(data_type.encode())
        total += len(value) if isinstance(value, bytes) else len(value.encode())
    return total


def _select_attributes(
    attributes: dict[str, AttributeValue], names: Sequence[str] | None
) -> dict[str, AttributeValue]:
    """SQS's MessageAttributeNames: "All" or ".*", exact names, or "prefix.*"."""
    if names is None or not attributes:
        return attributes
    out: dict[str, AttributeValue] = {}
    for wanted in names:
        if wanted in ("All", ".*"):
            return attributes
        if wanted.endswith(".*"):
            prefix = wanted[:-1]
            out.update({k: v for k, v in attributes.items() if k.startswith(prefix)})
        elif wanted in attributes:
            out[wanted] = attributes[wanted]
    return out


# -- the message record (docs/format.md, "Queue messages") ----------------------------------------
#
# key: the message id (16 bytes, a UUID). headers: empty for a plain message
# (no attributes, no delay, no group), else a JSON object with any of
#   a: [[name, data_type, "s" | "b", value (text or base64)], ...]
#   d: delay in ms    g: group id    dd: deduplication id
#   t: original send time in ms (moved or replayed messages)
#   src: the queue a dead-lettered message came from


def _encode_meta(
    attributes: Mapping[str, AttributeValue],
    delay_ms: int,
    group_id: str | None,
    dedup_id: str | None,
    sent_at_ms: int | None = None,
    source: str | None = None,
) -> bytes:
    meta: dict[str, Any] = {}
    if attributes:
        meta["a"] = encode_attributes(attributes)
    if delay_ms:
        meta["d"] = delay_ms
    if group_id is not None:
        meta["g"] = group_id
    if dedup_id is not None:
        meta["dd"] = dedup_id
    if sent_at_ms is not None:
        meta["t"] = sent_at_ms
    if source is not None:
        meta["src"] = source
    return json.dumps(meta, separators=(",", ":")).encode() if meta else b""


def encode_attributes(attributes: Mapping[str, AttributeValue]) -> list[list[str]]:
    """The record metadata's "a" field (queues and topics); `meta_attributes` reads it back."""
    return [
        [n, t, "b", base64.b64encode(v).decode()] if isinstance(v, bytes) else [n, t, "s", v]
        for n, (t, v) in attributes.items()
    ]


_EMPTY_META: dict[str, Any] = {}


def decode_meta(headers: bytes) -> dict[str, Any]:
    """A record's metadata (queues and topics); the empty dict is shared, so do not change it."""
    if not headers:
        return _EMPTY_META
    meta: dict[str, Any] = json.loads(headers)
    return meta


def meta_attributes(meta: Mapping[str, Any]) -> dict[str, AttributeValue]:
    raw = meta.get("a")
    if not raw:
        return {}
    return {
        name: AttributeValue(data_type, base64.b64decode(value) if kind == "b" else value)
        for name, data_type, kind, value in raw
    }


def _message_id(raw: bytes) -> str:
    return str(uuid.UUID(bytes=raw)) if len(raw) == 16 else raw.decode()


def _new_message_id() -> bytes:
    return uuid.uuid4().bytes


# -- public records -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """A received message. `receipt` names this receive's lease.

    `sent_at_ms` is when it was first sent (kept across dead-letter moves),
    `first_received_at_ms` when any receive first took it. `attributes` gives
    plain values (String -> str, Number -> int or float, Binary -> bytes);
    `typed_attributes` keeps SQS's types and the exact number text.
    """

    id: str
    body: bytes
    typed_attributes: dict[str, AttributeValue]
    receipt: str
    receive_count: int
    sent_at_ms: int
    first_received_at_ms: int
    group_id: str | None = None
    dedup_id: str | None = None
    sequence_number: str | None = None
    offset: int = 0

    @property
    def attributes(self) -> dict[str, str | int | float | bytes]:
        return {name: value.python for name, value in self.typed_attributes.items()}

    @property
    def sent_at(self) -> float:
        """Seconds since the epoch."""
        return self.sent_at_ms / 1000

    @property
    def first_received_at(self) -> float:
        return self.first_received_at_ms / 1000

    @property
    def md5_of_body(self) -> str:
        return md5_of_body(self.body)

    @property
    def md5_of_attributes(self) -> str:
        return md5_of_attributes(self.typed_attributes)

    @property
    def text(self) -> str:
        """The body decoded as UTF-8."""
        return self.body.decode()


@dataclass(frozen=True, slots=True)
class SendResult:
    """What a send returns. `duplicate` is True when FIFO deduplication kept the original."""

    id: str
    md5_of_body: str
    md5_of_attributes: str
    sequence_number: str | None = None
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class BatchFailure:
    """A failed entry of a batch call. `code` is SQS's error code."""

    entry_id: str
    code: str
    message: str
    sender_fault: bool = True


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Per-entry outcome of send_many / delete_many / change_visibility_many."""

    successful: list[tuple[str, Any]] = field(default_factory=list)
    failed: list[BatchFailure] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class QueueCounts:
    """Approximate counts, read in O(1) (SQS's ApproximateNumberOfMessages*)."""

    visible: int
    in_flight: int
    delayed: int


@dataclass(frozen=True, slots=True)
class QueueStats:
    """A queue's counts and running totals (`Queue.stats()`), read in O(1).

    `visible`, `in_flight` and `delayed` are `approximate_counts()`.
    `sent_total` counts every message appended to the queue's log (sends,
    fan-out, dead-letter and redrive arrivals, replays); `received_total`
    every lease a receive took (a message received twice counts twice);
    `deleted_total` every message that left the queue: deleted, purged,
    expired, or moved to its dead-letter queue or by a move task. Each only
    grows while the queue exists (Prometheus counters).
    """

    visible: int
    in_flight: int
    delayed: int
    sent_total: int
    received_total: int
    deleted_total: int


PeekState = Literal["visible", "in_flight", "delayed", "expired"]


@dataclass(frozen=True, slots=True)
class PeekedMessage:
    """A message as `Queue.peek` sees it, without receiving it.

    `state` is "visible" (a receive would take it; FIFO messages waiting
    behind their group count here, as in SQS's counts), "in_flight"
    (leased until `visible_at_ms`), "delayed" (until `visible_at_ms`) or
    "expired" (past the queue's retention; the next receive or retention
    pass drops it). `receive_count` and `first_received_at_ms` (0: never
    received) are as a receive would report them. `offset` names the
    message for `Queue.delete_at`.
    """

    offset: int
    id: str
    body: bytes
    typed_attributes: dict[str, AttributeValue]
    state: PeekState
    receive_count: int
    sent_at_ms: int
    visible_at_ms: int
    first_received_at_ms: int
    group_id: str | None = None
    dedup_id: str | None = None
    sequence_number: str | None = None

    @property
    def attributes(self) -> dict[str, str | int | float | bytes]:
        return {name: value.python for name, value in self.typed_attributes.items()}


@dataclass(frozen=True, slots=True)
class SendEntry:
    """One entry of send_many. Plain bytes or str in the list mean SendEntry(body=...)."""

    body: bytes | str
    attributes: Mapping[str, AttributeInput] | None = None
    delay: int | None = None
    group_id: str | None = None
    dedup_id: str | None = None
    id: str | None = None


# -- configuration --------------------------------------------------------------------------------

DedupScope = Literal["queue", "messageGroup"]
ThroughputLimit = Literal["perQueue", "perMessageGroupId"]

# The attribute names users may read and change after creation.
MUTABLE_ATTRIBUTES = (
    "visibility_timeout",
    "delay",
    "retention",
    "max_message_size",
    "receive_wait",
    "dead_letter",
    "content_based_dedup",
    "dedup_scope",
    "fifo_throughput_limit",
    "replay_window",
)


def check_queue_name(name: object, fifo: bool) -> str:
    """SQS's rule: 1-80 of [A-Za-z0-9_-], plus ".fifo" exactly for FIFO queues."""
    return check_fifo_name("queue", name, fifo, 80)


def check_int(name: str, value: object, low: int, high: int) -> int:
    """`value` if it is an int (not a bool) in low..high; else InvalidArgument naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{name}: must be an int, got {value!r}")
    if not low <= value <= high:
        raise InvalidArgument(f"{name}: {value} is outside {low}..{high}")
    return value


def _validate_config(config: dict[str, Any]) -> None:
    check_int("visibility_timeout", config["visibility_timeout"], 0, VISIBILITY_SECONDS_MAX)
    check_int("delay", config["delay"], 0, DELAY_SECONDS_MAX)
    check_int("retention", config["retention"], RETENTION_SECONDS_MIN, RETENTION_SECONDS_MAX)
    check_int("max_message_size", config["max_message_size"], MESSAGE_BYTES_MIN, MESSAGE_BYTES_MAX)
    check_int("receive_wait", config["receive_wait"], 0, WAIT_SECONDS_MAX)
    if config["replay_window"] is not None:
        check_int("replay_window", config["replay_window"], 0, REPLAY_WINDOW_SECONDS_MAX)
    dead_letter = config["dead_letter"]
    if dead_letter is not None:
        if (
            not isinstance(dead_letter, list | tuple)
            or len(dead_letter) != 2
            or not isinstance(dead_letter[0], str)
        ):
            raise InvalidArgument("dead_letter: must be (queue_name, max_receive_count)")
        check_int("dead_letter max_receive_count", dead_letter[1], 1, MAX_RECEIVE_COUNT_MAX)
        config["dead_letter"] = [dead_letter[0], dead_letter[1]]
    if not isinstance(config["content_based_dedup"], bool):
        raise InvalidArgument("content_based_dedup: must be a bool")
    fifo = config["fifo"]
    if config["content_based_dedup"] and not fifo:
        raise InvalidArgument("content_based_dedup: only FIFO queues deduplicate")
    if config["dedup_scope"] not in ("queue", "messageGroup"):
        raise InvalidArgument("dedup_scope: must be 'queue' or 'messageGroup'")
    if config["fifo_throughput_limit"] not in ("perQueue", "perMessageGroupId"):
        raise InvalidArgument("fifo_throughput_limit: must be 'perQueue' or 'perMessageGroupId'")
    if not fifo and (
        config["dedup_scope"] != "queue" or config["fifo_throughput_limit"] != "perQueue"
    ):
        raise InvalidArgument("dedup_scope, fifo_throughput_limit: FIFO queues only")
    if config["fifo_throughput_limit"] == "perMessageGroupId" and config["dedup_scope"] != (
        "messageGroup"
    ):
        # SQS's rule for high-throughput FIFO.
        raise InvalidArgument(
            "fifo_throughput_limit: 'perMessageGroupId' needs dedup_scope='messageGroup'"
        )


class View(NamedTuple):
    """A queue's view over a topic log (one per queue subscription).

    `id` keys the view's rows in the queue databases; `number` (1-65535)
    places its messages' public offsets; the view reads the topic log's
    records in [start, until) that carry `slot`.
    """

    id: int
    number: int
    topic: str
    topic_log: int
    slot: int
    subscription: str
    start: int
    until: int | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> View:
        return cls(
            data["id"],
            data["n"],
            data["topic"],
            data["topic_log"],
            data["slot"],
            data["sub"],
            data["from"],
            data["until"],
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "n": self.number,
            "topic": self.topic,
            "topic_log": self.topic_log,
            "slot": self.slot,
            "sub": self.subscription,
            "from": self.start,
            "until": self.until,
        }


def view_id(queue_log_id: int, number: int) -> int:
    """The id of a queue's view `number`: never a log id (docs/format.md)."""
    return VIEW_ID_FLAG | queue_log_id << 16 | number


def _is_view_of(state_id: int, queue_log_id: int) -> bool:
    return bool(state_id & VIEW_ID_FLAG) and (state_id & ~VIEW_ID_FLAG) >> 16 == queue_log_id


class _Config:
    """A queue's parsed configuration (the catalog row), cached by its bytes.

    A queue has parts: its own log (this config) and one per view (a copy
    whose `log_id` is the view's id and whose `view` is set); the state
    functions below work on a part.
    """

    __slots__ = (
        "raw",
        "name",
        "view",
        "views",
        "_parts",
        "log_id",
        "fifo",
        "visibility_ms",
        "delay_ms",
        "retention_ms",
        "max_message_size",
        "receive_wait",
        "dead_letter",
        "content_based_dedup",
        "dedup_scope",
        "replay_window_ms",
        "data",
    )

    def __init__(self, name: str, data: dict[str, Any]) -> None:
        self.name = name
        self.data = data
        self.log_id: int = data["log_id"]
        self.fifo: bool = data["fifo"]
        self.visibility_ms: int = data["visibility_timeout"] * 1000
        self.delay_ms: int = data["delay"] * 1000
        self.retention_ms: int = data["retention"] * 1000
        self.max_message_size: int = data["max_message_size"]
        self.receive_wait: int = data["receive_wait"]
        dl = data["dead_letter"]
        self.dead_letter: tuple[str, int] | None = (dl[0], dl[1]) if dl else None
        self.content_based_dedup: bool = data["content_based_dedup"]
        self.dedup_scope: str = data["dedup_scope"]
        rw = data["replay_window"]
        self.replay_window_ms: int | None = None if rw is None else rw * 1000
        self.view: View | None = None
        self.views = tuple(View.from_json(v) for v in data.get("views", ()))
        self._parts: tuple[_Config, ...] | None = None

    def parts(self) -> tuple[_Config, ...]:
        """The queue's own part, then one per view (by view number)."""
        if self._parts is None:
            parts = [self]
            for view in sorted(self.views, key=lambda v: v.number):
                part = copy.copy(self)
                part.log_id, part.view, part.views, part._parts = view.id, view, (), None
                parts.append(part)
            self._parts = tuple(parts)
        return self._parts

    def part(self, state_id: int) -> _Config | None:
        for part in self.parts():
            if part.log_id == state_id:
                return part
        return None

    def public_offset(self, offset: int) -> int:
        """The offset callers see: a view's messages are placed above 2^48 by view."""
        return offset if self.view is None else self.view.number << VIEW_OFFSET_SHIFT | offset


_config_cache: dict[tuple[str, bytes], _Config] = {}
_config_cache_lock = threading.Lock()


def _load_config(logs: LogStore, txn: Txn, name: str) -> _Config | None:
    db = logs.database(CHANNELS_DB)
    if db is None:
        return None
    raw = txn.get(channel_key("queue", name), db=db)
    if raw is None:
        return None
    key = (name, bytes(raw))
    cached = _config_cache.get(key)
    if cached is None:
        cached = _Config(name, json.loads(raw))
        with _config_cache_lock:
            if len(_config_cache) > 4096:
                _config_cache.clear()
            _config_cache[key] = cached
    return cached


# -- reading messages back from the log -----------------------------------------------------------


def _read_records(
    logs: LogStore, info: LogInfo, start: int, stop: int, chunk: int = READ_CHUNK_BYTES_FIRST
) -> Iterator[Record]:
    """Committed records in [start, stop), read in small growing chunks.

    The log layer's reader starts at `chunk` bytes and doubles, so a receive
    that wants ten records reads a few KiB. Records below the log's start
    (reclaimed) are skipped silently.
    """
    if start >= stop:
        return iter(())
    return read_records(logs, info, start, stop, first_chunk_bytes=chunk)


def _read_record(logs: LogStore, info: LogInfo, offset: int) -> Record | None:
    for record in _read_records(logs, info, offset, offset + 1, 8192):
        return record
    return None


# -- reading a part: the queue's own log, or a view over a topic log ----------------------------

_topic_infos: dict[tuple[str, int], LogInfo] = {}


def _part_info(logs: LogStore, txn: Txn, config: _Config, own: LogInfo) -> LogInfo:
    """The log a part reads: the queue's own (`own`) or the view's topic log."""
    if config.view is None:
        return own
    key = (logs.path, config.view.topic_log)
    info = _topic_infos.get(key)
    if info is None:
        raw = txn.get(keys.log_key(config.view.topic_log), db=logs.dbs[keys.DB_LOGS])
        if raw is None:
            raise NotFound(f"topic {config.view.topic!r} of queue {config.name!r}: log not found")
        info = LogInfo.from_json(config.view.topic_log, raw)
        if len(_topic_infos) > 4096:
            _topic_infos.clear()
        _topic_infos[key] = info
    return info


def _parts_in(ctx: WriteContext, config: _Config, own: LogInfo) -> list[tuple[_Config, LogInfo]]:
    return [(part, _part_info(ctx.store, ctx.txn, part, own)) for part in config.parts()]


def _part_end(end: int, config: _Config) -> int:
    """The end of what a part can read, given its log's next offset `end`."""
    view = config.view
    if view is None:
        return end
    return end if view.until is None else min(end, view.until)


def _scan_end(end: int, config: _Config, frontier: int) -> int:
    """Where one frontier scan of a part stops (a view's is bounded)."""
    end = _part_end(end, config)
    return end if config.view is None else min(end, frontier + VIEW_SCAN_RECORDS_MAX)


def _view_record(view: View, record: Record, meta: Mapping[str, Any]) -> Record:
    """A topic record as the view's queue message (docs/format.md): the
    formatted body and the queue's metadata; a MessageId fixed by (view, offset)."""
    from tidelog.topics import view_message  # topics imports this module

    value, headers = view_message(view, record, meta)
    key = hashlib.blake2b(KEY2.pack(view.id, record.offset), digest_size=16).digest()
    return Record(record.offset, record.timestamp_ms, record.flags, key, headers, value)


def _part_records(
    logs: LogStore,
    config: _Config,
    info: LogInfo,
    start: int,
    stop: int,
    chunk: int = READ_CHUNK_BYTES_FIRST,
) -> Iterator[Record]:
    """The part's messages in [start, stop): `_read_records` of the queue's
    log, or the view's records of the topic log, formatted for the queue."""
    view = config.view
    if view is None:
        yield from _read_records(logs, info, start, stop, chunk)
        return
    start = max(start, view.start)
    stop = _part_end(stop, config)
    slot = view.slot
    for record in _read_records(logs, info, start, stop, chunk):
        meta = decode_meta(record.headers)
        if slot in meta.get("v", ()):
            yield _view_record(view, record, meta)


def view_records(view: View, records: Iterable[Record]) -> list[Record]:
    """The records of `records` (read from the view's topic log) that the
    view holds, as the queue's messages: for readers that read the topic log
    themselves (SQL, the CLI). Offsets stay topic offsets."""
    out = []
    slot, start = view.slot, view.start
    until = view.until if view.until is not None else 1 << 64
    for record in records:
        if start <= record.offset < until:
            meta = decode_meta(record.headers)
            if slot in meta.get("v", ()):
                out.append(_view_record(view, record, meta))
    return out


def queue_views(logs: LogStore, name: str) -> tuple[View, ...]:
    """The views of queue `name` (one per subscription, open or draining). Read-only."""
    with logs.env.begin() as txn:
        config = _load_config(logs, txn, name)
    return () if config is None else config.views


def _part_record(logs: LogStore, config: _Config, info: LogInfo, offset: int) -> Record | None:
    for record in _part_records(logs, config, info, offset, offset + 1, 8192):
        return record
    return None


# -- keys -----------------------------------------------------------------------------------------


def _entry_key(log_id: int, offset: int) -> bytes:
    return KEY2.pack(log_id, offset)


def undeleted_offsets(logs: LogStore, log_id: int) -> tuple[int, int, frozenset[int]]:
    """What of a queue's log is not deleted: (head, frontier, kept).

    Offsets below the head are deleted; between the head and the frontier
    only those in `kept` (the entries still leased, delayed or waiting) are
    not; every offset at or past the frontier is not. Read in one read
    transaction; the set is as large as the messages in flight. Read-only.
    """
    prefix = U64.pack(log_id)
    state_db = logs.database(STATE_DB)
    if state_db is None:  # read-only, and no queue ever written
        return 0, 0, frozenset()
    with logs.env.begin() as txn:
        state = _State(txn.get(prefix, db=state_db))
        kept = []
        cursor = txn.cursor(db=logs.database(ENTRIES_DB))
        if cursor.set_range(prefix):
            for key in cursor.iternext(values=False):
                if key[:8] != prefix:
                    break
                kept.append(KEY2.unpack(key)[1])
    return state.head, state.frontier, frozenset(kept)


def _due_key(log_id: int, visible_at: int, offset: int) -> bytes:
    return KEY3.pack(log_id, visible_at, offset)


def _group_key(log_id: int, group: bytes) -> bytes:
    return U64.pack(log_id) + group


def _waiting_prefix(log_id: int, group: bytes) -> bytes:
    # Group ids are printable ASCII (check_id): NUL ends one unambiguously.
    return U64.pack(log_id) + group + b"\x00"


def _waiting_key(log_id: int, group: bytes, offset: int) -> bytes:
    return _waiting_prefix(log_id, group) + U64.pack(offset)


_PARKED = b"\x00"  # queue_group_waiting values: out of queue_due,
_RELEASED = b"\x01"  # or the group's lowest, put back into queue_due


def _lowest_waiting(ctx: WriteContext, log_id: int, group: bytes) -> tuple[int, bytes] | None:
    """(offset, value) of the group's lowest parked or released entry, if any."""
    prefix = _waiting_prefix(log_id, group)
    cursor = ctx.txn.cursor(db=ctx.db(WAITING_DB))
    if not cursor.set_range(prefix) or not cursor.key().startswith(prefix):
        return None
    return U64.unpack(cursor.key()[len(prefix) :])[0], cursor.value()


def _group_offsets_without(ctx: WriteContext, log_id: int, group: bytes, offset: int) -> bool:
    """Take `offset` out of the group's handed-out offsets; True if none remain."""
    gkey = _group_key(log_id, group)
    groups_db = ctx.db(GROUPS_DB)
    raw = ctx.txn.get(gkey, db=groups_db)
    if raw is None:
        return True
    rest = [o for o in _unpack_offsets(raw) if o != offset]
    if rest:
        ctx.txn.put(gkey, _pack_offsets(rest), db=groups_db)
        return False
    ctx.txn.delete(gkey, db=groups_db)
    return True


def _release_group(ctx: WriteContext, log_id: int, group: bytes) -> None:
    """With nothing of `group` handed out, put its lowest parked entry back into
    queue_due (once: a released one stays so until a receive takes it)."""
    lowest = _lowest_waiting(ctx, log_id, group)
    if lowest is None or lowest[1] == _RELEASED:
        return
    offset = lowest[0]
    raw = ctx.txn.get(_entry_key(log_id, offset), db=ctx.db(ENTRIES_DB))
    if raw is None:  # cannot happen (dropping an entry unparks it); mend it if it does
        ctx.txn.delete(_waiting_key(log_id, group, offset), db=ctx.db(WAITING_DB))
        return
    entry = _Entry.unpack(raw)
    if entry.visible_at > ctx.now_ms:  # due at once (its due key must match the entry)
        entry.visible_at = ctx.now_ms
        ctx.txn.put(_entry_key(log_id, offset), entry.pack(), db=ctx.db(ENTRIES_DB))
    ctx.txn.put(_waiting_key(log_id, group, offset), _RELEASED, db=ctx.db(WAITING_DB))
    ctx.txn.put(
        _due_key(log_id, entry.visible_at, offset), _KIND_BYTES[KIND_WAITING], db=ctx.db(DUE_DB)
    )


def _park(ctx: WriteContext, log_id: int, offset: int, entry: _Entry, state: _State) -> None:
    """FIFO: move a due entry that its group locks out of queue_due into
    queue_group_waiting (kind waiting: it counts as visible, as in SQS)."""
    ctx.txn.delete(_due_key(log_id, entry.visible_at, offset), db=ctx.db(DUE_DB))
    state.count(entry.kind, -1)
    entry.kind = KIND_WAITING
    state.count(KIND_WAITING, 1)
    ctx.txn.put(_entry_key(log_id, offset), entry.pack(), db=ctx.db(ENTRIES_DB))
    ctx.txn.put(_waiting_key(log_id, entry.group, offset), _PARKED, db=ctx.db(WAITING_DB))
    # An expired lease parked behind another message is no longer handed out:
    # the group's release must not wait for it.
    if _group_offsets_without(ctx, log_id, entry.group, offset):
        _release_group(ctx, log_id, entry.group)


def _unpark(ctx: WriteContext, log_id: int, offset: int, entry: _Entry) -> None:
    """Undo _park for a handed-out entry whose lease is changed again."""
    if ctx.txn.delete(_waiting_key(log_id, entry.group, offset), db=ctx.db(WAITING_DB)):
        gkey = _group_key(log_id, entry.group)
        raw = ctx.txn.get(gkey, db=ctx.db(GROUPS_DB))
        offsets = set(_unpack_offsets(raw)) if raw else set()
        ctx.txn.put(gkey, _pack_offsets(sorted(offsets | {offset})), db=ctx.db(GROUPS_DB))


def _pack_offsets(offsets: Sequence[int]) -> bytes:
    return struct.pack(f">{len(offsets)}Q", *offsets)


def _unpack_offsets(raw: bytes) -> tuple[int, ...]:
    return struct.unpack(f">{len(raw) // 8}Q", raw)


# -- receipts -------------------------------------------------------------------------------------

_RECEIPT_PREFIX = "tl1"
# tl1.<log id>.<offset>.<nonce>, each lowercase hex that fits the 64-bit fields
# it is packed into: a handle is decoded here, before any commit, so that a
# field out of range is a bad handle and never a struct.error inside one.
_RECEIPT = re.compile(r"tl1\.([0-9a-f]{1,16})\.([0-9a-f]{1,16})\.([0-9a-f]{1,16})")


def _make_receipt(log_id: int, offset: int, nonce: int) -> str:
    return f"{_RECEIPT_PREFIX}.{log_id:x}.{offset:x}.{nonce:x}"


def _parse_receipt(receipt: object) -> tuple[int, int, int]:
    """(log id, offset, nonce) of a receipt handle; InvalidArgument if it is not one."""
    if isinstance(receipt, Message):
        receipt = receipt.receipt
    if not isinstance(receipt, str):
        raise InvalidArgument(f"receipt: expected str, got {type(receipt).__name__}")
    match = _RECEIPT.fullmatch(receipt)
    if match is None:
        raise InvalidArgument(
            f"receipt {receipt!r:.100}: not a receipt handle (ReceiptHandleIsInvalid)"
        )
    log_id, offset, nonce = (int(field, 16) for field in match.groups())
    return log_id, offset, nonce


# -- the prepared message (validated outside any commit) ------------------------------------------


class _Outgoing:
    __slots__ = ("id", "body", "attributes", "meta", "group", "dedup", "delay_ms", "entry_id")

    def __init__(
        self,
        body: bytes,
        attributes: dict[str, AttributeValue],
        delay_ms: int,
        group: str | None,
        dedup: str | None,
        entry_id: str,
        message_id: bytes | None = None,
        sent_at_ms: int | None = None,
        source: str | None = None,
    ) -> None:
        self.id = message_id or _new_message_id()
        self.body = body
        self.attributes = attributes
        self.group = group
        self.dedup = dedup
        self.delay_ms = delay_ms
        self.entry_id = entry_id
        self.meta = _encode_meta(attributes, delay_ms, group, dedup, sent_at_ms, source)


def check_text(what: str, text: str, code: str) -> None:
    """Raise InvalidArgument (naming `code`) if `text` holds a character SQS refuses."""
    bad = _NOT_SQS_TEXT.search(text)
    if bad is not None:
        raise InvalidArgument(
            f"{what}: character U+{ord(bad.group()):04X} at index {bad.start()} is not one "
            f"SQS carries ({SQS_CHARACTERS}) ({code})"
        )


def check_id(what: str, value: object) -> str:
    """A group or deduplication id: 1-128 printable ASCII characters (SQS's and SNS's rule)."""
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        raise InvalidArgument(
            f"{what}: {value!r} must be 1-{ID_CHARS_MAX} printable ASCII characters"
        )
    return value


def _prepare(
    config: _Config,
    body: object,
    attributes: Mapping[str, AttributeInput] | None,
    delay: int | None,
    group_id: str | None,
    dedup_id: str | None,
    entry_id: str = "0",
) -> _Outgoing:
    """Validate one send against the queue's configuration (SQS's rules)."""
    if isinstance(body, str):
        check_text("body", body, "InvalidMessageContents")
    data = as_bytes(body, "body")
    if not data:
        raise InvalidArgument("body: must not be empty (SQS needs at least one character)")
    typed = typed_attributes(attributes)
    size = len(data) + attributes_size(typed)
    if size > config.max_message_size:
        raise InvalidArgument(
            f"message: {size} bytes is over the queue's max_message_size {config.max_message_size}"
        )
    if config.fifo:
        if delay is not None and delay != 0:
            raise InvalidArgument(
                "delay: FIFO queues take no per-message delay (set the queue's delay)"
            )
        if group_id is None:
            raise InvalidArgument("group_id: FIFO queues need a message group id")
        check_id("group_id", group_id)
        if dedup_id is None:
            if not config.content_based_dedup:
                raise InvalidArgument(
                    "dedup_id: give one, or create the queue with content_based_dedup=True"
                )
        else:
            check_id("dedup_id", dedup_id)
        delay_ms = config.delay_ms
    else:
        if dedup_id is not None:
            raise InvalidArgument("dedup_id: only FIFO queues deduplicate")
        if group_id is not None:
            check_id("group_id", group_id)  # SQS accepts (and ignores order for) it
        if delay is None:
            delay_ms = config.delay_ms
        else:
            delay_ms = check_int("delay", delay, 0, DELAY_SECONDS_MAX) * 1000
    return _Outgoing(data, typed, delay_ms, group_id, dedup_id, entry_id)


def _dedup_key(log_id: int, config: _Config, message: _Outgoing) -> bytes:
    token = message.dedup
    if token is None:
        token = hashlib.sha256(message.body).hexdigest()
    scope = (message.group or "") if config.dedup_scope == "messageGroup" else ""
    return U64.pack(log_id) + scope.encode() + b"\x00" + token.encode()


# -- operations inside a commit -------------------------------------------------------------------


def _state(ctx: WriteContext, log_id: int) -> _State:
    return _State(ctx.txn.get(U64.pack(log_id), db=ctx.db(STATE_DB)), bool(log_id & VIEW_ID_FLAG))


def _put_state(ctx: WriteContext, log_id: int, state: _State) -> None:
    ctx.txn.put(U64.pack(log_id), state.pack(), db=ctx.db(STATE_DB))


def _config_in(ctx: WriteContext, name: str, log_id: int | None = None) -> _Config:
    config = _load_config(ctx.store, ctx.txn, name)
    if config is None or (log_id is not None and config.log_id != log_id):
        raise NotFound(f"queue {name!r}: not found (deleted?)")
    return config


def _log_info(ctx: WriteContext, config: _Config) -> LogInfo:
    raw = ctx.txn.get(keys.log_key(config.log_id), db=ctx.store.dbs[keys.DB_LOGS])
    if raw is None:
        raise NotFound(f"queue {config.name!r}: its log is gone")
    return LogInfo.from_json(config.log_id, raw)


def send_in(
    ctx: WriteContext, queue: Queue | str, messages: Sequence[_Outgoing]
) -> list[SendResult]:
    """Append prepared messages to a queue inside another operation's commit.

    For engine code that must land several writes in one commit (a topic
    fanning out to many queues): prepare each message with `Queue.prepare`
    outside the op, then call this inside it. FIFO deduplication applies.
    Raises NotFound if the queue was deleted.
    """
    name = queue.name if isinstance(queue, Queue) else queue
    config = _config_in(ctx, name, queue.log_id if isinstance(queue, Queue) else None)
    return _append(ctx, config, _log_info(ctx, config), messages)


def delete_in(
    ctx: WriteContext, queue: Queue, receipts: Sequence[str | Message]
) -> list[Error | None]:
    """Delete received messages inside another operation's commit (a STOMP
    transaction's acks with its sends): `Queue.delete_many`'s work without
    its own commit. Returns one result per receipt (None, or the error).
    Raises InvalidArgument for a malformed receipt or one of another
    queue, NotFound if the queue was deleted."""
    items = [queue._parse(receipt) for receipt in receipts]
    config = _config_in(ctx, queue.name, queue.log_id)
    return _acknowledge_in(ctx, config, _log_info(ctx, config), items, _delete_and_advance_in)


def prepare_in(
    ctx: WriteContext,
    queue: str,
    body: bytes | str,
    attributes: Mapping[str, AttributeInput] | None = None,
    *,
    group_id: str | None = None,
    dedup_id: str | None = None,
) -> _Outgoing:
    """`Queue.prepare` inside a commit, against the queue's configuration as
    this transaction sees it (for topics, whose subscriber list is read in
    the same transaction). Pure: writes nothing. Raises InvalidArgument, NotFound.
    """
    return _prepare(_config_in(ctx, queue), body, attributes, None, group_id, dedup_id)


def deliver_in(
    ctx: WriteContext,
    queue: str,
    body: bytes | str,
    attributes: Mapping[str, AttributeInput] | None = None,
    *,
    group_id: str | None = None,
    dedup_id: str | None = None,
) -> None:
    """`prepare_in` then `send_in` of one message, for a fan-out that has no
    use for the SendResult: one configuration lookup, and no result (message
    id text, MD5s) built. Raises InvalidArgument, NotFound."""
    config = _config_in(ctx, queue)
    message = _prepare(config, body, attributes, None, group_id, dedup_id)
    _append(ctx, config, _log_info(ctx, config), [message], results=False)


def _append(
    ctx: WriteContext,
    config: _Config,
    info: LogInfo,
    messages: Sequence[_Outgoing],
    *,
    results: bool = True,
) -> list[SendResult]:
    """Append `messages`; their SendResults, or [] without `results`."""
    now = ctx.now_ms
    log_id = config.log_id
    if not config.fifo:
        values = [m.body for m in messages]
        ctx.append(info, values, [m.id for m in messages], [m.meta for m in messages])
        _count_pending_delayed(ctx, log_id, sum(1 for m in messages if m.delay_ms))
        return [_send_result(m, m.id) for m in messages] if results else []
    # FIFO: deduplicate one by one, so a duplicate within the batch is caught too.
    txn = ctx.txn
    dedup_db = ctx.db(DEDUP_DB)
    expiry_db = ctx.db(DEDUP_EXPIRY_DB)
    _expire_dedup(ctx, log_id, now)
    out: list[SendResult] = []
    delayed = 0
    for message in messages:
        dkey = _dedup_key(log_id, config, message)
        raw = txn.get(dkey, db=dedup_db)
        if raw is not None:
            expires, offset, original = DEDUP.unpack(raw)
            if expires > now:
                if results:
                    out.append(_send_result(message, original, offset, duplicate=True))
                continue
            txn.delete(U64.pack(log_id) + U64.pack(expires) + dkey[8:], db=expiry_db)
        offset = ctx.append(info, [message.body], [message.id], [message.meta])
        expires = now + DEDUP_WINDOW_MS
        txn.put(dkey, DEDUP.pack(expires, offset, message.id), db=dedup_db)
        txn.put(U64.pack(log_id) + U64.pack(expires) + dkey[8:], b"", db=expiry_db)
        if message.delay_ms:
            delayed += 1
        if results:
            out.append(_send_result(message, message.id, offset))
    _count_pending_delayed(ctx, log_id, delayed)
    return out


def _send_result(
    message: _Outgoing, message_id: bytes, offset: int | None = None, duplicate: bool = False
) -> SendResult:
    """What a send returns for `message`, stored as `message_id` (the original's for a
    duplicate) at `offset` (FIFO queues, whose messages carry a sequence number)."""
    return SendResult(
        _message_id(message_id),
        md5_of_body(message.body),
        md5_of_attributes(message.attributes),
        None if offset is None else _sequence_number(offset),
        duplicate=duplicate,
    )


def _count_pending_delayed(ctx: WriteContext, log_id: int, delayed: int) -> None:
    """Count `delayed` newly appended delayed messages in the queue's state."""
    if delayed:
        state = _state(ctx, log_id)
        state.pending_delayed += delayed
        _put_state(ctx, log_id, state)


def _expire_dedup(ctx: WriteContext, log_id: int, now: int) -> None:
    """Forget up to DEDUP_EXPIRE_PER_SEND deduplication ids past their window."""
    expire_dedup_ids(ctx, DEDUP_DB, DEDUP_EXPIRY_DB, log_id, now, DEDUP_EXPIRE_PER_SEND)


def expire_dedup_ids(
    ctx: WriteContext, dedup_name: bytes, expiry_name: bytes, log_id: int, now: int, limit: int
) -> None:
    """Forget up to `limit` ids of a dedup table (DEDUP rows keyed by log id + id,
    with an expiry index keyed by log id + expiry + id) whose window has passed.
    Queues and FIFO topics keep their dedup tables in this one layout."""
    txn = ctx.txn
    expiry_db = ctx.db(expiry_name)
    dedup_db = ctx.db(dedup_name)
    prefix = U64.pack(log_id)
    cursor = txn.cursor(db=expiry_db)
    if not cursor.set_range(prefix):
        return
    for _ in range(limit):
        key = cursor.key()
        if not key.startswith(prefix) or U64.unpack_from(key, 8)[0] > now:
            return
        dkey = prefix + key[16:]
        raw = txn.get(dkey, db=dedup_db)
        if raw is not None and DEDUP.unpack(raw)[0] <= now:
            txn.delete(dkey, db=dedup_db)
        if not cursor.delete():
            return


def _sequence_number(offset: int) -> str:
    return f"{offset:020d}"


class _Delivery(NamedTuple):
    record: Record
    nonce: int
    receive_count: int
    first_received: int
    sent_at: int


def _record_sent_at(record: Record, meta: Mapping[str, Any]) -> int:
    sent: int = meta.get("t", record.timestamp_ms)
    return sent


def _receive_in(
    ctx: WriteContext,
    config: _Config,
    info: LogInfo,
    max_messages: int,
    visibility_ms: int,
) -> list[_Delivery]:
    """Take up to `max_messages` leases: expired leases first, then new messages."""
    txn = ctx.txn
    now = ctx.now_ms
    log_id = config.log_id
    logs = ctx.store
    entries_db = ctx.db(ENTRIES_DB)
    due_db = ctx.db(DUE_DB)
    state = _state(ctx, log_id)
    out: list[_Delivery] = []
    fifo = config.fifo
    retention = config.retention_ms
    lease_until = now + visibility_ms
    waiting_db = ctx.db(WAITING_DB)
    # Per receive: groups taken in this receive, groups found locked, offsets leased.
    taken: dict[bytes, list[int]] = {}
    blocked: set[bytes] = set()
    delivered: set[int] = set()
    changed = False

    def group_ok(group: bytes, offset: int) -> bool:
        """May this receive hand out the group's message at `offset` now?"""
        if group in taken:
            return True
        if group in blocked:
            return False
        raw = txn.get(_group_key(log_id, group), db=ctx.db(GROUPS_DB))
        if raw is not None:
            for other in _unpack_offsets(raw):
                if other == offset:
                    continue
                raw_entry = txn.get(_entry_key(log_id, other), db=entries_db)
                if raw_entry is None:
                    continue  # deleted (or dead-lettered)
                entry = _Entry.unpack(raw_entry)
                if entry.visible_at > now or other < offset:
                    blocked.add(group)
                    return False
        # An earlier message of the group is parked: it goes first. (Not cached:
        # the group's released entry, lowest of all, is not blocked by it.)
        lowest = _lowest_waiting(ctx, log_id, group)
        return lowest is None or lowest[0] >= offset

    def take_group(group: bytes, offset: int) -> None:
        taken.setdefault(group, []).append(offset)

    def lease(offset: int, entry: _Entry) -> bool:
        """Hand out the entry (or drop it: expired, reclaimed, dead-lettered)."""
        nonlocal changed
        changed = True
        if entry.sent_at + retention <= now:
            _drop_entry(ctx, log_id, offset, entry, state)
            blocked.discard(entry.group)  # the drop may have released the group
            return False
        record = _part_record(logs, config, info, offset)
        if record is None:  # reclaimed under us (purge in another process): forget it
            _drop_entry(ctx, log_id, offset, entry, state)
            blocked.discard(entry.group)
            return False
        if (
            config.dead_letter is not None
            and entry.receive_count >= config.dead_letter[1]
            and _dead_letter(ctx, config, record, entry)
        ):
            _drop_entry(ctx, log_id, offset, entry, state)
            blocked.discard(entry.group)
            return False
        txn.delete(_due_key(log_id, entry.visible_at, offset), db=due_db)
        if fifo:
            txn.delete(_waiting_key(log_id, entry.group, offset), db=waiting_db)
        state.count(entry.kind, -1)
        state.nonce += 1
        entry.nonce = state.nonce & 0xFFFFFFFF
        entry.receive_count += 1
        entry.first_received = entry.first_received or now
        entry.visible_at = lease_until
        entry.kind = KIND_LEASED
        state.count(KIND_LEASED, 1)
        txn.put(_entry_key(log_id, offset), entry.pack(), db=entries_db)
        txn.put(_due_key(log_id, lease_until, offset), b"\x01", db=due_db)
        delivered.add(offset)
        if fifo:
            take_group(entry.group, offset)
        out.append(
            _Delivery(record, entry.nonce, entry.receive_count, entry.first_received, entry.sent_at)
        )
        return True

    # 1. Due entries: expired leases, matured delays, released FIFO groups.
    # A FIFO receive parks each entry it finds locked behind its group (out of
    # queue_due), so it reads due entries in chunks until it has enough or
    # none is due: every entry looked at leaves the due range (leased, parked
    # or dropped), and a deliverable message can sit behind no number of
    # locked ones. A group it takes brings its parked entries along, merged
    # with the chunk in offset order.
    # A standard queue looks at as many due entries as it still wants, and
    # looks again when some of them were dropped (expired, dead-lettered):
    # receive returns every available message asked for.
    prefix = U64.pack(log_id)
    scan_max = SCAN_ENTRIES_MAX if fifo else max_messages
    parked_next: list[tuple[int, bytes]] = []  # heap: the next parked entry of taken groups
    queued: set[bytes] = set()

    def queue_parked(group: bytes) -> None:
        if group not in queued:
            lowest = _lowest_waiting(ctx, log_id, group)
            if lowest is not None:
                heapq.heappush(parked_next, (lowest[0], group))
                queued.add(group)

    while len(out) < max_messages:
        candidates: list[int] = []
        more = False
        cursor = txn.cursor(db=due_db)
        if cursor.set_range(prefix):
            for key in cursor.iternext(values=False):
                if not key.startswith(prefix):
                    break
                _, visible_at, offset = KEY3.unpack(key)
                if visible_at > now:
                    break
                if len(candidates) >= scan_max:
                    more = True
                    break
                if offset in delivered:  # leased by this receive with visibility 0
                    continue
                if txn.get(_entry_key(log_id, offset), db=entries_db) is not None:
                    candidates.append(offset)
        if fifo:
            candidates.sort()  # per-group order within the chunk
        index = 0
        delivered_before = len(out)
        while len(out) < max_messages:
            from_parked = bool(parked_next) and (
                index >= len(candidates) or parked_next[0][0] < candidates[index]
            )
            if from_parked:
                offset, group = heapq.heappop(parked_next)
                queued.discard(group)
            elif index < len(candidates):
                offset = candidates[index]
                index += 1
            else:
                break
            raw_entry = txn.get(_entry_key(log_id, offset), db=entries_db)
            if raw_entry is None or offset in delivered:
                if from_parked:  # cannot happen (a drop unparks); mend it if it does
                    txn.delete(_waiting_key(log_id, group, offset), db=waiting_db)
                    queue_parked(group)
                continue
            entry = _Entry.unpack(raw_entry)
            if (
                fifo
                and not from_parked
                and entry.sent_at + retention > now
                and not group_ok(entry.group, offset)
            ):
                _park(ctx, log_id, offset, entry, state)
                changed = True
                continue
            lease(offset, entry)
            if fifo and (from_parked or entry.group in taken):
                queue_parked(entry.group)
        if fifo:
            if not (more and candidates):
                break
        elif not more or len(out) - delivered_before == len(candidates):
            break  # none due past the scan, or it ended at max_messages
        else:
            scan_max = max_messages - len(out)

    # 2. New messages from the frontier, up to the committed end.
    if len(out) < max_messages:
        frontier = state.frontier
        end = _scan_end(logs.ends(info).next_offset, config, frontier)
        if frontier < end:
            scanned = 0
            for record in _part_records(logs, config, info, frontier, end):
                scanned += 1
                offset = record.offset
                frontier = offset + 1
                state.passed()
                meta = decode_meta(record.headers)
                sent_at = _record_sent_at(record, meta)
                delay_ms: int = meta.get("d", 0)
                if delay_ms:
                    state.pending_delayed -= 1
                group = meta["g"].encode() if fifo and "g" in meta else b""
                if sent_at + retention <= now:
                    continue  # expired: never delivered
                visible_at = record.timestamp_ms + delay_ms
                if visible_at > now:
                    entry = _Entry(visible_at, sent_at, 0, 0, 0, KIND_DELAYED, group)
                    txn.put(_entry_key(log_id, offset), entry.pack(), db=entries_db)
                    txn.put(_due_key(log_id, visible_at, offset), b"\x02", db=due_db)
                    state.count(KIND_DELAYED, 1)
                elif fifo and not group_ok(group, offset):
                    entry = _Entry(visible_at, sent_at, 0, 0, 0, KIND_WAITING, group)
                    txn.put(_entry_key(log_id, offset), entry.pack(), db=entries_db)
                    txn.put(_waiting_key(log_id, group, offset), _PARKED, db=waiting_db)
                    state.count(KIND_WAITING, 1)
                else:
                    state.nonce += 1
                    nonce = state.nonce & 0xFFFFFFFF
                    entry = _Entry(lease_until, sent_at, now, 1, nonce, KIND_LEASED, group)
                    txn.put(_entry_key(log_id, offset), entry.pack(), db=entries_db)
                    txn.put(_due_key(log_id, lease_until, offset), b"\x01", db=due_db)
                    state.count(KIND_LEASED, 1)
                    if fifo:
                        take_group(group, offset)
                    out.append(_Delivery(record, nonce, 1, now, sent_at))
                if len(out) >= max_messages or scanned >= SCAN_RECORDS_MAX:
                    break
            else:
                frontier = end  # a view's scan passed records of other subscriptions too
            state.frontier = frontier
            changed = True
    if fifo:
        groups_db = ctx.db(GROUPS_DB)
        for group, offsets in taken.items():
            gkey = _group_key(log_id, group)
            raw = txn.get(gkey, db=groups_db)
            # Keep earlier offsets of the group that are still undeleted: they
            # were handed out before and must lock the group until deleted.
            kept = [
                o
                for o in (_unpack_offsets(raw) if raw else ())
                if o not in offsets and txn.get(_entry_key(log_id, o), db=entries_db) is not None
            ]
            txn.put(gkey, _pack_offsets(sorted(kept + offsets)), db=groups_db)
    if changed:
        _advance_head(ctx, config, info, state)
        _put_state(ctx, log_id, state)
    return out


def _receive_parts_in(
    ctx: WriteContext, config: _Config, info: LogInfo, max_messages: int, visibility_ms: int
) -> list[tuple[_Config, _Delivery]]:
    """_receive_in over every part of the queue, from a rotating first part
    so that neither the queue's own log nor any view starves the others."""
    parts = config.parts()
    if len(parts) == 1:
        return [(config, d) for d in _receive_in(ctx, config, info, max_messages, visibility_ms)]
    out: list[tuple[_Config, _Delivery]] = []
    first = next(_part_rotation) % len(parts)
    for index in range(len(parts)):
        part = parts[(first + index) % len(parts)]
        part_info = _part_info(ctx.store, ctx.txn, part, info)
        got = _receive_in(ctx, part, part_info, max_messages - len(out), visibility_ms)
        out += [(part, d) for d in got]
        if len(out) >= max_messages:
            break
    return out


_part_rotation = itertools.count()


def drop_drained_views(ctx: WriteContext, name: str) -> None:
    """Remove the closed views of queue `name` (unsubscribed) that hold no
    message any more: their rows, registry row and catalog entry."""
    config = _load_config(ctx.store, ctx.txn, name)
    if config is None:
        return
    drained = []
    for part in config.parts()[1:]:
        view = part.view
        assert view is not None
        if view.until is None:
            continue
        state = _state(ctx, view.id)  # closed: its counters are absolute
        if (state.unscanned or 0) > 0 or state.leased + state.delayed + state.waiting > 0:
            continue
        drained.append(view)
    if drained:
        drop_views(ctx, config, drained)


def drop_views(ctx: WriteContext, config: _Config, views: Sequence[View]) -> None:
    """Forget `views` of the queue: rows, registry rows and catalog entries."""
    for view in views:
        _delete_part_rows(ctx, view.id)
        ctx.txn.delete(KEY2.pack(view.topic_log, view.id), db=ctx.db(VIEWS_DB))
    gone = {view.id for view in views}
    data = dict(config.data)
    data["views"] = [v for v in data.get("views", ()) if v["id"] not in gone]
    if not data["views"]:
        del data["views"]
    put_channel(ctx, "queue", config.name, data)


def _delete_part_rows(ctx: WriteContext, state_id: int) -> None:
    prefix = U64.pack(state_id)
    for db_name in (ENTRIES_DB, DUE_DB, GROUPS_DB, WAITING_DB, DEDUP_DB, DEDUP_EXPIRY_DB):
        delete_prefix(ctx.txn, ctx.db(db_name), prefix)
    ctx.txn.delete(prefix, db=ctx.db(STATE_DB))


# -- views: what topics.py calls inside its commits ----------------------------------------------


def view_target_in(
    ctx: WriteContext, queue: str, topic: str, topic_log: int, slot: int, subscription: str
) -> tuple[View, _Config] | None:
    """The open view of `subscription` in `queue` and the queue's config, for
    a publish; None if the queue does not exist. A queue created again since
    it was subscribed gets a fresh view here, from the topic's next offset."""
    config = _load_config(ctx.store, ctx.txn, queue)
    if config is None:
        return None
    for view in config.views:
        if view.subscription == subscription and view.until is None:
            return view, config
    start = ctx.ends(_topic_log_info(ctx, topic_log)).next_offset
    view = add_view_in(ctx, queue, topic, topic_log, slot, subscription, start)
    config = _load_config(ctx.store, ctx.txn, queue)
    assert config is not None
    return view, config


def _topic_log_info(ctx: WriteContext, topic_log: int) -> LogInfo:
    raw = ctx.txn.get(keys.log_key(topic_log), db=ctx.store.dbs[keys.DB_LOGS])
    if raw is None:
        raise NotFound(f"topic log {topic_log}: not found")
    return LogInfo.from_json(topic_log, raw)


def add_view_in(
    ctx: WriteContext,
    queue: str,
    topic: str,
    topic_log: int,
    slot: int,
    subscription: str,
    start: int,
) -> View:
    """Give `queue` a view reading the topic log from offset `start`: its
    catalog entry, its state row (head = frontier = start) and the topic's
    registry row. Raises NotFound, InvalidArgument (65,535 views)."""
    config = _config_in(ctx, queue)
    used = {v.number for v in config.views}
    number = next((n for n in range(1, VIEW_NUMBER_MAX + 1) if n not in used), None)
    if number is None:
        raise InvalidArgument(f"queue {queue!r}: at most {VIEW_NUMBER_MAX} subscriptions")
    view = View(
        view_id(config.log_id, number), number, topic, topic_log, slot, subscription, start, None
    )
    state = _State(None, view=True)
    state.head = state.frontier = start
    matched, delayed = _view_totals(ctx.txn, ctx.db(SLOT_TOTALS_DB), view)
    state.unscanned, state.matched, state.pending_delayed = -matched, -matched, -delayed
    _put_state(ctx, view.id, state)
    ctx.txn.put(KEY2.pack(topic_log, view.id), queue.encode(), db=ctx.db(VIEWS_DB))
    data = dict(config.data)
    data["views"] = [*data.get("views", ()), view.to_json()]
    put_channel(ctx, "queue", queue, data)
    return view


def _slot_totals(txn: Txn, db: Any, topic_log: int) -> array.array[int]:
    raw = None if db is None else txn.get(U64.pack(topic_log), db=db)
    totals = array.array("Q")
    if raw:
        totals.frombytes(raw)
    return totals


def count_slots_in(
    ctx: WriteContext, topic_log: int, matched: Sequence[int], delayed: Sequence[int]
) -> None:
    """A publish appended one message for the views of slots `matched` (of
    them `delayed` get the queue's delay): one row, same commit."""
    db = ctx.db(SLOT_TOTALS_DB)
    totals = _slot_totals(ctx.txn, db, topic_log)
    need = 2 * (max(matched) + 1)
    if len(totals) < need:
        totals.extend([0] * (need - len(totals)))
    for slot in matched:
        totals[2 * slot] += 1
    for slot in delayed:
        totals[2 * slot + 1] += 1
    ctx.txn.put(U64.pack(topic_log), totals.tobytes(), db=db)


def _view_totals(txn: Txn, db: Any, view: View) -> tuple[int, int]:
    """(matching, delayed) records of the view's slot to add to its stored
    counters: its slot's totals while open, nothing once closed (frozen)."""
    if view.until is not None:
        return 0, 0
    totals = _slot_totals(txn, db, view.topic_log)
    if len(totals) <= 2 * view.slot:
        return 0, 0
    return totals[2 * view.slot], totals[2 * view.slot + 1]


def _effective(txn: Txn, db: Any, view: View | None, state: _State) -> _State:
    """`state` with a view's counters made absolute (for reading only)."""
    if view is None or state.unscanned is None:
        return state
    matched, delayed = _view_totals(txn, db, view)
    state.unscanned += matched
    state.matched += matched
    state.pending_delayed += delayed
    return state


def close_view_in(ctx: WriteContext, queue: str, subscription: str, until: int) -> None:
    """Unsubscribe: the view of `subscription` reads no record at or past
    `until`; dropped now if it holds nothing, else once drained."""
    config = _load_config(ctx.store, ctx.txn, queue)
    if config is None:
        return
    for view in config.views:
        if view.subscription == subscription and view.until is None:
            # Freeze the counters: later publishes to the slot are not this view's.
            state = _effective(ctx.txn, ctx.db(SLOT_TOTALS_DB), view, _state(ctx, view.id))
            _put_state(ctx, view.id, state)
    data = dict(config.data)
    data["views"] = [
        dict(v, until=until) if v["sub"] == subscription and v["until"] is None else v
        for v in data.get("views", ())
    ]
    put_channel(ctx, "queue", queue, data)
    drop_drained_views(ctx, queue)


def absorb_view_in(ctx: WriteContext, queue: str, state_id: int) -> int:
    """Copy the undeleted messages of a view into the queue's own log (same
    id, body, attributes, group, first send time; no lease), then drop the
    view: for deleting its topic. Returns how many were copied."""
    config = _load_config(ctx.store, ctx.txn, queue)
    part = None if config is None else config.part(state_id)
    if config is None or part is None or part.view is None:
        return 0
    own = _log_info(ctx, config)
    info = _part_info(ctx.store, ctx.txn, part, own)
    state = _state(ctx, state_id)
    entries_db = ctx.db(ENTRIES_DB)
    end = _part_end(ctx.ends(info).next_offset, part)
    copied: list[_Outgoing] = []
    for record in _part_records(ctx.store, part, info, state.head, end, READ_CHUNK_BYTES_MAX):
        sent_at = record.timestamp_ms
        if record.offset < state.frontier:
            raw = ctx.txn.get(_entry_key(state_id, record.offset), db=entries_db)
            if raw is None:
                continue  # deleted
            sent_at = _Entry.unpack(raw).sent_at
        copied.append(_outgoing_from_record(record, decode_meta(record.headers), sent_at))
    if copied:
        ctx.append(own, [m.body for m in copied], [m.id for m in copied], [m.meta for m in copied])
    drop_views(ctx, config, [part.view])
    return len(copied)


def _drop_entry(ctx: WriteContext, log_id: int, offset: int, entry: _Entry, state: _State) -> None:
    ctx.txn.delete(_entry_key(log_id, offset), db=ctx.db(ENTRIES_DB))
    ctx.txn.delete(_due_key(log_id, entry.visible_at, offset), db=ctx.db(DUE_DB))
    state.count(entry.kind, -1)
    if entry.group:
        ctx.txn.delete(_waiting_key(log_id, entry.group, offset), db=ctx.db(WAITING_DB))
        if _group_offsets_without(ctx, log_id, entry.group, offset):
            _release_group(ctx, log_id, entry.group)


def _advance_head(ctx: WriteContext, config: _Config, info: LogInfo, state: _State) -> None:
    """Move the head to the lowest undeleted offset; reclaim segments below it."""
    log_id = config.log_id
    cursor = ctx.txn.cursor(db=ctx.db(ENTRIES_DB))
    head = state.frontier
    if cursor.set_range(U64.pack(log_id)):
        key = cursor.key()
        if key[:8] == U64.pack(log_id):
            head = min(head, KEY2.unpack(key)[1])
    if head == state.head:
        return
    state.head = head
    _reclaim(ctx, config, info, head)


def _reclaim(ctx: WriteContext, config: _Config, info: LogInfo, head: int) -> None:
    """Trim the sealed segments wholly below `head` that the replay window lets go.

    A view trims nothing: the topic's retention pass trims its log below
    every view's head (topics.enforce_retention)."""
    if config.view is not None:
        return
    sealed = ctx.sealed_segments(info)
    if not sealed or sealed[0][1].end_offset > head:
        return
    cutoff = None if config.replay_window_ms is None else ctx.now_ms - config.replay_window_ms
    trim_to = 0
    for _base, row in sealed:
        if row.end_offset > head or (cutoff is not None and row.last_timestamp_ms >= cutoff):
            break
        trim_to = row.end_offset
    if trim_to:
        ctx.trim_before(info, trim_to)


def _dead_letter(ctx: WriteContext, config: _Config, record: Record, entry: _Entry) -> bool:
    """Append the message to the queue's DLQ (same commit). False if the DLQ is gone."""
    assert config.dead_letter is not None
    dlq = _load_config(ctx.store, ctx.txn, config.dead_letter[0])
    if dlq is None:
        return False
    _append_moved(ctx, dlq, record, decode_meta(record.headers), entry.sent_at, config.name)
    return True


def _outgoing_from_record(
    record: Record,
    meta: Mapping[str, Any],
    sent_at_ms: int | None = None,
    source: str | None = None,
) -> _Outgoing:
    """A stored message to append again as itself: same id, body, attributes,
    group and dedup id, no delay (replay, dead-letter moves, move tasks)."""
    return _Outgoing(
        record.value,
        meta_attributes(meta),
        0,
        meta.get("g"),
        meta.get("dd"),
        "0",
        message_id=record.key,
        sent_at_ms=sent_at_ms,
        source=source,
    )


def _append_moved(
    ctx: WriteContext,
    target: _Config,
    record: Record,
    meta: Mapping[str, Any],
    sent_at_ms: int,
    source: str | None = None,
) -> None:
    """Append a received message to `target` keeping its first send time
    (dead-letter moves and message move tasks). `source` names the queue it
    is moved from, for a move task's return trip."""
    message = _outgoing_from_record(record, meta, sent_at_ms, source)
    # A moved message skips deduplication: SQS moves it whatever its id.
    ctx.append(_log_info(ctx, target), [message.body], [message.id], [message.meta])


def _stale_receipt(config: _Config, offset: int, nonce: int, entry: _Entry) -> StaleReceipt | None:
    """StaleReceipt unless `nonce` names the entry's current lease (delete, change_visibility)."""
    if entry.nonce == nonce and entry.receive_count != 0:
        return None
    return StaleReceipt(
        f"receipt for offset {offset} of queue {config.name!r}: the message was "
        "received again since (use the newest receipt)"
    )


def _delete_in(
    ctx: WriteContext,
    config: _Config,
    info: LogInfo,
    receipts: Sequence[tuple[int, int]],
    state: _State,
) -> list[Error | None]:
    txn = ctx.txn
    log_id = config.log_id
    entries_db = ctx.db(ENTRIES_DB)
    results: list[Error | None] = []
    for offset, nonce in receipts:
        raw = txn.get(_entry_key(log_id, offset), db=entries_db)
        if raw is None:
            results.append(None)  # already deleted: deleting again succeeds, as in SQS
            continue
        entry = _Entry.unpack(raw)
        stale = _stale_receipt(config, offset, nonce, entry)
        if stale is not None:
            results.append(stale)
            continue
        _drop_entry(ctx, log_id, offset, entry, state)
        results.append(None)
    return results


def _delete_and_advance_in(
    ctx: WriteContext,
    config: _Config,
    info: LogInfo,
    receipts: Sequence[tuple[int, int]],
    state: _State,
) -> list[Error | None]:
    """_delete_in, then move the head past what it deleted (delete and delete_many)."""
    errors = _delete_in(ctx, config, info, receipts, state)
    _advance_head(ctx, config, info, state)
    return errors


def _change_visibility_in(
    ctx: WriteContext,
    config: _Config,
    info: LogInfo,
    items: Sequence[tuple[int, int, int]],
    state: _State,
) -> list[Error | None]:
    txn = ctx.txn
    now = ctx.now_ms
    log_id = config.log_id
    entries_db = ctx.db(ENTRIES_DB)
    due_db = ctx.db(DUE_DB)
    results: list[Error | None] = []
    for offset, nonce, seconds in items:
        raw = txn.get(_entry_key(log_id, offset), db=entries_db)
        if raw is None:
            results.append(
                StaleReceipt(
                    f"receipt for offset {offset}: the message was deleted (MessageNotInflight)"
                )
            )
            continue
        entry = _Entry.unpack(raw)
        stale = _stale_receipt(config, offset, nonce, entry)
        if stale is not None:
            results.append(stale)
            continue
        txn.delete(_due_key(log_id, entry.visible_at, offset), db=due_db)
        if entry.group:
            _unpark(ctx, log_id, offset, entry)
        state.count(entry.kind, -1)
        entry.visible_at = now + seconds * 1000
        entry.kind = KIND_LEASED if seconds else KIND_WAITING
        state.count(entry.kind, 1)
        txn.put(_entry_key(log_id, offset), entry.pack(), db=entries_db)
        txn.put(_due_key(log_id, entry.visible_at, offset), _KIND_BYTES[entry.kind], db=due_db)
        results.append(None)
    return results


def _purge_in(ctx: WriteContext, config: _Config, info: LogInfo) -> None:
    txn = ctx.txn
    log_id = config.log_id
    prefix = U64.pack(log_id)
    for db_name in (ENTRIES_DB, DUE_DB, GROUPS_DB, WAITING_DB):
        delete_prefix(txn, ctx.db(db_name), prefix)
    state = _state(ctx, log_id)
    state.frontier = max(state.frontier, _part_end(ctx.ends(info).next_offset, config))
    state.leased = state.delayed = state.waiting = state.pending_delayed = 0
    if state.unscanned is not None:
        assert config.view is not None
        matched, delayed = _view_totals(ctx.txn, ctx.db(SLOT_TOTALS_DB), config.view)
        state.unscanned, state.pending_delayed = -matched, -delayed
    _advance_head(ctx, config, info, state)
    _put_state(ctx, log_id, state)


# -- looking without receiving; an operator's delete ---------------------------------------------


def _peeked(config: _Config, record: Record, entry: _Entry | None, now: int) -> PeekedMessage:
    """The message at `record` as peek shows it: its entry's state, or (past the
    frontier, never looked at) the state a receive's scan would give it."""
    meta = decode_meta(record.headers)
    sent_at = _record_sent_at(record, meta)
    state: PeekState
    if entry is None:
        visible_at = record.timestamp_ms + meta.get("d", 0)
        receive_count = first_received = 0
        state = "delayed" if visible_at > now else "visible"
    else:
        visible_at = entry.visible_at
        receive_count, first_received = entry.receive_count, entry.first_received
        if visible_at > now and entry.kind == KIND_LEASED:
            state = "in_flight"
        elif visible_at > now and entry.kind == KIND_DELAYED:
            state = "delayed"
        else:
            state = "visible"
    if sent_at + config.retention_ms <= now:
        state = "expired"
    return PeekedMessage(
        offset=config.public_offset(record.offset),
        id=_message_id(record.key),
        body=record.value,
        typed_attributes=meta_attributes(meta),
        state=state,
        receive_count=receive_count,
        sent_at_ms=sent_at,
        visible_at_ms=visible_at,
        first_received_at_ms=first_received,
        group_id=meta.get("g"),
        dedup_id=meta.get("dd"),
        sequence_number=_sequence_number(config.public_offset(record.offset))
        if config.fifo
        else None,
    )


def _materialize_in(
    ctx: WriteContext, config: _Config, info: LogInfo, state: _State, stop: int
) -> None:
    """Move the frontier to `stop`, giving every undelivered message before it
    the entry a receive's scan gives a message it does not take (waiting, or
    delayed until its delay ends). No message changes state, count or order
    class; expired ones are dropped as that scan drops them."""
    txn = ctx.txn
    now = ctx.now_ms
    log_id = config.log_id
    entries_db = ctx.db(ENTRIES_DB)
    due_db = ctx.db(DUE_DB)
    for record in _part_records(ctx.store, config, info, state.frontier, stop):
        state.passed()
        meta = decode_meta(record.headers)
        delay_ms: int = meta.get("d", 0)
        if delay_ms:
            state.pending_delayed -= 1
        sent_at = _record_sent_at(record, meta)
        if sent_at + config.retention_ms <= now:
            continue
        visible_at = record.timestamp_ms + delay_ms
        kind = KIND_DELAYED if visible_at > now else KIND_WAITING
        group = meta["g"].encode() if config.fifo and "g" in meta else b""
        entry = _Entry(visible_at, sent_at, 0, 0, 0, kind, group)
        txn.put(_entry_key(log_id, record.offset), entry.pack(), db=entries_db)
        txn.put(_due_key(log_id, visible_at, record.offset), _KIND_BYTES[kind], db=due_db)
        state.count(kind, 1)
    state.frontier = max(state.frontier, stop)


def _delete_at_in(ctx: WriteContext, config: _Config, info: LogInfo, offset: int) -> bool | None:
    """One step of Queue.delete_at: True or False when done, None when it only
    moved the frontier closer to `offset` (call again)."""
    log_id = config.log_id
    state = _state(ctx, log_id)
    end = _part_end(ctx.ends(info).next_offset, config)
    if offset < state.head or offset >= end:
        return False
    if offset < state.frontier:
        raw = ctx.txn.get(_entry_key(log_id, offset), db=ctx.db(ENTRIES_DB))
        if raw is None:
            return False
        _drop_entry(ctx, log_id, offset, _Entry.unpack(raw), state)
        deleted = True
    else:
        ahead = offset - state.frontier
        if config.fifo and state.waiting + ahead > SCAN_ENTRIES_MAX:
            # A FIFO receive looks at SCAN_ENTRIES_MAX waiting entries at a time:
            # more of them could let a later message of a group pass an earlier one.
            raise InvalidArgument(
                f"delete_at: offset {offset} of FIFO queue {config.name!r} is {ahead} "
                f"messages past the delivered frontier (at most "
                f"{max(0, SCAN_ENTRIES_MAX - state.waiting)} here; receive some first)"
            )
        if ahead > 0:
            _materialize_in(
                ctx, config, info, state, min(offset, state.frontier + MATERIALIZE_RECORDS_MAX)
            )
            if state.frontier < offset:
                _put_state(ctx, log_id, state)
                return None
        record = _part_record(ctx.store, config, info, offset)
        deleted = False
        if record is not None:
            state.passed()
            meta = decode_meta(record.headers)
            if meta.get("d", 0):
                state.pending_delayed -= 1
            deleted = _record_sent_at(record, meta) + config.retention_ms > ctx.now_ms
        state.frontier = offset + 1
    _advance_head(ctx, config, info, state)
    _put_state(ctx, log_id, state)
    return deleted


# -- Queue ----------------------------------------------------------------------------------------


def _check_visibility(value: object) -> int:
    return check_int("visibility_timeout", value, 0, VISIBILITY_SECONDS_MAX)


# What Queue._acknowledge applies in its commit: _delete_and_advance_in or
# _change_visibility_in, each given one part's parsed receipts without their
# state id: (offset, nonce) or (offset, nonce, seconds).
_Ack = tuple[int, ...]
_AckApply = Callable[[WriteContext, _Config, LogInfo, Any, _State], list[Error | None]]


def _acknowledge_in(
    ctx: WriteContext,
    config: _Config,
    info: LogInfo,
    items: Sequence[_Ack],
    apply: _AckApply,
) -> list[Error | None]:
    """Queue._acknowledge's commit: `apply` to the items of each part they name."""
    results: list[Error | None] = [None] * len(items)
    by_part: dict[int, list[int]] = {}
    for index, item in enumerate(items):
        by_part.setdefault(item[0], []).append(index)
    for state_id, indexes in by_part.items():
        part = config.part(state_id)
        if part is None:
            if apply is _change_visibility_in:
                for index in indexes:
                    results[index] = StaleReceipt(
                        "receipt: the message is no longer in flight (MessageNotInflight)"
                    )
            continue
        state = _state(ctx, state_id)
        part_items = [items[index][1:] for index in indexes]
        errors = apply(ctx, part, _part_info(ctx.store, ctx.txn, part, info), part_items, state)
        _put_state(ctx, state_id, state)
        for index, error in zip(indexes, errors, strict=True):
            results[index] = error
    return results


class Queue:
    """A handle on one queue. Get one from `store.create_queue` or `store.queue`.

    Thread- and process-safe: any number of handles in any threads and
    processes may send, receive and delete at once. Every call is one atomic
    commit (group-committed with concurrent calls) and durable as the store's
    sync mode promises when it returns. Delivery is at least once; see
    docs/guarantees.md, "Queues".
    """

    def __init__(self, store: Store, name: str, config: dict[str, Any]) -> None:
        self._store = store
        self._logs: LogStore = store._logs
        self.name = name
        self.log_id: int = config["log_id"]
        self.fifo: bool = config["fifo"]
        self._info: LogInfo | None = None
        # The handle's worker runs the retention pass in long-lived processes.
        start_worker(store)

    def __repr__(self) -> str:
        return f"<tidelog.Queue {self.name!r}{' fifo' if self.fifo else ''}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Queue) and (other.name, other.log_id) == (self.name, self.log_id)

    def __hash__(self) -> int:
        return hash((self.name, self.log_id))

    # -- helpers ---------------------------------------------------------------

    def _config(self) -> _Config:
        with self._logs.env.begin() as txn:
            config = _load_config(self._logs, txn, self.name)
        if config is None or config.log_id != self.log_id:
            raise NotFound(f"queue {self.name!r}: not found (deleted?)")
        return config

    @property
    def info(self) -> LogInfo:
        """The queue's log (its history, readable with `store.log`-style reads)."""
        if self._info is None:
            self._info = self._logs.get_log(log_name("queue", self.name))
            if self._info.id != self.log_id:
                raise NotFound(f"queue {self.name!r}: not found (deleted?)")
        return self._info

    def _op(
        self, fn: Callable[[WriteContext, _Config, LogInfo], Any]
    ) -> Callable[[WriteContext], Any]:
        name, log_id = self.name, self.log_id
        info = self.info

        def op(ctx: WriteContext) -> Any:
            return fn(ctx, _config_in(ctx, name, log_id), info)

        return op

    def _submit(self, fn: Callable[[WriteContext, _Config, LogInfo], Any]) -> Any:
        return self._logs.submit(self._op(fn))

    async def _submit_async(self, fn: Callable[[WriteContext, _Config, LogInfo], Any]) -> Any:
        return await self._logs.submit_async(self._op(fn))

    # -- sending -------------------------------------------------------------------

    def prepare(
        self,
        body: bytes | str,
        attributes: Mapping[str, AttributeInput] | None = None,
        *,
        delay: int | None = None,
        group_id: str | None = None,
        dedup_id: str | None = None,
    ) -> _Outgoing:
        """Validate a message for `send_in` (used by topics). Raises InvalidArgument."""
        return _prepare(self._config(), body, attributes, delay, group_id, dedup_id)

    def send(
        self,
        body: bytes | str,
        attributes: Mapping[str, AttributeInput] | None = None,
        *,
        delay: int | None = None,
        group_id: str | None = None,
        dedup_id: str | None = None,
    ) -> SendResult:
        """Send one message; returns its id, digests and (FIFO) sequence number.

        `body` is bytes (str is sent as UTF-8). `attributes` map names to
        str (String), int/float (Number), bytes (Binary), or a typed
        `AttributeValue(data_type, value)` / `(data_type, value)` / boto3's
        {"DataType": ..., "StringValue" | "BinaryValue": ...}. `delay` (0-900 s)
        overrides the queue's; FIFO queues take none but need `group_id` and
        a `dedup_id` unless content_based_dedup. A duplicate within 5 minutes
        returns the original's id with `duplicate=True` and stores nothing.

        Atomic and durable on return. Raises InvalidArgument (limits, types),
        NotFound (queue deleted), StoreFailed.
        """
        message = _prepare(self._config(), body, attributes, delay, group_id, dedup_id)
        result: list[SendResult] = self._submit(
            lambda ctx, config, info: _append(ctx, config, info, [message])
        )
        return result[0]

    async def send_async(
        self,
        body: bytes | str,
        attributes: Mapping[str, AttributeInput] | None = None,
        *,
        delay: int | None = None,
        group_id: str | None = None,
        dedup_id: str | None = None,
    ) -> SendResult:
        """`send` for coroutines: awaits the commit (group-committed with the
        sends of other tasks and threads) instead of blocking. Same result,
        atomicity, durability and errors as `send`."""
        message = _prepare(self._config(), body, attributes, delay, group_id, dedup_id)
        result: list[SendResult] = await self._submit_async(
            lambda ctx, config, info: _append(ctx, config, info, [message])
        )
        return result[0]

    def send_many(
        self, entries: Iterable[SendEntry | bytes | str | Mapping[str, Any]]
    ) -> BatchResult:
        """Send up to 10 messages in one commit (SQS's SendMessageBatch).

        Entries are SendEntry, bytes/str bodies, or dicts with SendEntry's
        fields. Entry ids default to "0", "1", ...; they must be unique.
        An entry that fails validation is reported in `failed` and the rest
        are sent; the ones sent land atomically together. Raises
        InvalidArgument for an empty batch, over 10 entries, over 1 MiB in
        total, or repeated entry ids (SQS's batch-level errors).
        """

        def split(index: int, item: Any) -> tuple[str, SendEntry]:
            entry = coerce_entry(index, item, SendEntry, "send_many")
            entry_id = entry.id if entry.id is not None else str(index)
            if not _ENTRY_ID_RE.fullmatch(entry_id):
                raise InvalidArgument(
                    f"send_many: entry id {entry_id!r} must be 1-80 of A-Z a-z 0-9 _ - "
                    "(InvalidBatchEntryId)"
                )
            return entry_id, entry

        batch = batch_entries(list(entries), "send_many", split)
        config = self._config()
        prepared, failed = prepare_entries(
            batch,
            lambda entry_id, entry: _prepare(
                config,
                entry.body,
                entry.attributes,
                entry.delay,
                entry.group_id,
                entry.dedup_id,
                entry_id,
            ),
            "InvalidParameterValue",
        )
        total = sum(len(m.body) + attributes_size(m.attributes) for m in prepared)
        if total > BATCH_BYTES_MAX:
            raise InvalidArgument(
                f"send_many: {total} bytes in total, over {BATCH_BYTES_MAX} (BatchRequestTooLong)"
            )
        successful: list[tuple[str, Any]] = []
        if prepared:
            results: list[SendResult] = self._submit(
                lambda ctx, cfg, info: _append(ctx, cfg, info, prepared)
            )
            successful = [(m.entry_id, r) for m, r in zip(prepared, results, strict=True)]
        return BatchResult(successful, failed)

    # -- receiving -------------------------------------------------------------------

    def receive(
        self,
        max_messages: int = 1,
        *,
        wait: float | None = None,
        visibility_timeout: int | None = None,
        attribute_names: Sequence[str] | None = None,
    ) -> list[Message]:
        """Lease up to `max_messages` (1-10) messages; returns as many as are available.

        Expired leases come first, then new messages in log order (FIFO:
        per-group order, and no group with a message in flight is served).
        Each message's lease lasts `visibility_timeout` seconds (0-43200;
        default the queue's); delete it before then or it is delivered again.
        `wait` (0-20 s, default the queue's receive_wait) long-polls: the
        call blocks until a message is available or the wait ends, waking
        within milliseconds for sends in this process and within 50 ms for
        sends in other processes, without spinning. `attribute_names` picks
        attributes as SQS's MessageAttributeNames does ("All", names,
        "prefix.*"); None returns all.

        A message received more than max_receive_count times is moved to the
        dead-letter queue in the commit of the receive that would exceed it.
        Atomic per call. Raises InvalidArgument, NotFound, StoreFailed.
        """
        if isinstance(max_messages, bool) or not isinstance(max_messages, int):
            raise InvalidArgument("max_messages: must be an int 1-10")
        if not 1 <= max_messages <= BATCH_ENTRIES_MAX:
            raise InvalidArgument(f"max_messages: {max_messages} is outside 1..10")
        if visibility_timeout is not None:
            _check_visibility(visibility_timeout)
        config = self._config()
        if wait is None:
            wait = config.receive_wait
        if isinstance(wait, bool) or not isinstance(wait, int | float) or not 0 <= wait <= 20:
            raise InvalidArgument(f"wait: {wait!r} is outside 0..20 seconds")
        deadline = time.monotonic() + wait
        while True:
            messages = self._receive_once(max_messages, visibility_timeout, attribute_names)
            if messages:
                return messages
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            self._wait_for_change(self._poll_state()[1], left)

    def _receive_once(
        self,
        max_messages: int,
        visibility_timeout: int | None,
        attribute_names: Sequence[str] | None,
    ) -> list[Message]:

        def fn(
            ctx: WriteContext, config: _Config, info: LogInfo
        ) -> list[tuple[_Config, _Delivery]]:
            visibility = (
                config.visibility_ms if visibility_timeout is None else visibility_timeout * 1000
            )
            return _receive_parts_in(ctx, config, info, max_messages, visibility)

        deliveries: list[tuple[_Config, _Delivery]] = self._submit(fn)
        out = []
        for part, (record, nonce, count, first, sent) in deliveries:
            meta = decode_meta(record.headers)
            attributes = meta_attributes(meta)
            if attribute_names is not None:
                attributes = _select_attributes(attributes, attribute_names)
            offset = part.public_offset(record.offset)
            out.append(
                Message(
                    _message_id(record.key),
                    record.value,
                    attributes,
                    _make_receipt(part.log_id, record.offset, nonce),
                    count,
                    sent,
                    first,
                    meta.get("g"),
                    meta.get("dd"),
                    _sequence_number(offset) if self.fifo else None,
                    offset,
                )
            )
        return out

    def receive_state(self) -> tuple[bool, tuple[Any, ...]]:
        """A read-only look for a long poll that waits outside `receive` (the
        wire server's event loop): (might a receive find something now?, a
        signature that changes when a send, receive, delete or visibility
        change commits). One read transaction, no write. Raises NotFound."""
        return self._poll_state()

    def _poll_state(self) -> tuple[bool, tuple[Any, ...]]:
        """A read-only look: (might a receive find something now?, a signature).

        The signature changes when a send, receive, delete or visibility
        change commits, so a waiter whose receive came back empty (say, every
        FIFO group locked) retries only when something changed.
        """
        logs = self._logs
        now = logs.now_ms()
        available = False
        signature: list[Any] = []
        with logs.env.begin() as txn:
            config = _load_config(logs, txn, self.name)
            if config is None or config.log_id != self.log_id:
                raise NotFound(f"queue {self.name!r}: not found (deleted?)")
            for part in config.parts():
                prefix = U64.pack(part.log_id)
                raw_state = txn.get(prefix, db=logs.database(STATE_DB))
                state = _effective(
                    txn,
                    logs.database(SLOT_TOTALS_DB),
                    part.view,
                    _State(raw_state, part.view is not None),
                )
                log_id = self.log_id if part.view is None else part.view.topic_log
                raw_ends = txn.get(keys.log_key(log_id), db=logs.dbs[keys.DB_ENDS])
                if raw_ends is None:
                    raise NotFound(f"queue {self.name!r}: not found (deleted?)")
                end = Ends.unpack(raw_ends).next_offset
                first_due = None
                cursor = txn.cursor(db=logs.database(DUE_DB))
                if cursor.set_range(prefix):
                    key = cursor.key()
                    if key[:8] == prefix:
                        first_due = key
                due = first_due is not None and KEY3.unpack(first_due)[1] <= now
                # a view counts what it has not scanned; the own log compares ends
                fresh = end > state.frontier if state.unscanned is None else state.unscanned > 0
                available = available or fresh or due
                signature += (end, raw_state, first_due, due)
        return available, tuple(signature)

    def _wait_for_change(self, signature: tuple[Any, ...], timeout: float) -> None:
        """Sleep until a receive may find something new, or `timeout` passes.

        Commits in this process wake the waiter at once
        (LogStore.wait_for_append); other processes' commits are seen by a
        read-only look every 50 ms. No write transaction is made while idle.
        """
        start = time.monotonic()
        deadline = start + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._logs.wait_for_append(min(left, CROSS_PROCESS_POLL_SECONDS))
            available, now_signature = self._poll_state()
            # A lease deep in the due index may expire without changing the
            # signature: retry once a second whatever it says.
            if available and (now_signature != signature or time.monotonic() - start >= 1.0):
                return

    # -- acknowledging ------------------------------------------------------------------

    def _parse(self, receipt: object) -> tuple[int, int, int]:
        """(state id: the queue's log id or one of its views', offset, nonce)."""
        log_id, offset, nonce = _parse_receipt(receipt)
        if log_id != self.log_id and not _is_view_of(log_id, self.log_id):
            raise InvalidArgument(
                f"receipt {receipt!r}: belongs to another queue (ReceiptHandleIsInvalid)"
            )
        return log_id, offset, nonce

    def delete(self, receipt: str | Message) -> None:
        """Delete a received message (acknowledge it). Atomic and durable on return.

        Deleting an already deleted message succeeds. A receipt from an
        earlier receive of a message that has been received again since
        raises StaleReceipt and deletes nothing (SQS accepts the call but may
        not delete; tidelog says so). Raises InvalidArgument for a malformed
        receipt or one of another queue.
        """
        error = self._acknowledge([self._parse(receipt)], _delete_and_advance_in)[0]
        if error is not None:
            raise error

    def delete_many(self, receipts: Sequence[str | Message | tuple[str, str]]) -> BatchResult:
        """Delete up to 10 messages in one commit, with per-entry results.

        Entries are receipts (ids "0", "1", ...) or (entry_id, receipt)
        pairs. Failures (stale or malformed receipts) are listed in
        `failed` with SQS's codes; the others are deleted atomically.
        """
        entries = batch_entries(receipts, "delete_many", _split_receipt_entry)
        return self._acknowledge_many(
            entries, self._parse, _delete_and_advance_in, "ReceiptHandleIsInvalid"
        )

    def change_visibility(self, receipt: str | Message, visibility_timeout: int) -> None:
        """Set a leased message's remaining lease to `visibility_timeout` s from now.

        0 releases it at once. Atomic and durable on return. Raises
        StaleReceipt if the message was deleted or received again since this
        receipt, InvalidArgument for a bad receipt or a timeout outside
        0-43200 seconds.
        """
        seconds = _check_visibility(visibility_timeout)
        state_id, offset, nonce = self._parse(receipt)
        error = self._acknowledge([(state_id, offset, nonce, seconds)], _change_visibility_in)[0]
        if error is not None:
            raise error

    def change_visibility_many(
        self, items: Sequence[tuple[str | Message, int] | tuple[str, str | Message, int]]
    ) -> BatchResult:
        """change_visibility for up to 10 (receipt, seconds) or (entry_id, receipt, seconds)."""
        entries = batch_entries(items, "change_visibility_many", _split_visibility_entry)

        def parse(entry: tuple[object, object]) -> tuple[int, int, int, int]:
            # A bad timeout fails its entry as a bad receipt does.
            receipt, seconds = entry
            state_id, offset, nonce = self._parse(receipt)
            return state_id, offset, nonce, _check_visibility(seconds)

        return self._acknowledge_many(entries, parse, _change_visibility_in, "MessageNotInflight")

    def _acknowledge(self, items: list[_Ack], apply: _AckApply) -> list[Error | None]:
        """`apply` to `items` in one commit, between reading and writing the state
        of each part the items name (their first field, a receipt's state id).

        Returns one result per item: None where it was applied, else the
        error. A receipt of a view the queue no longer has (its topic was
        deleted, its messages copied into the queue's log) deletes nothing
        and succeeds, as for a deleted message; its change_visibility is stale.
        """

        def fn(ctx: WriteContext, config: _Config, info: LogInfo) -> list[Error | None]:
            return _acknowledge_in(ctx, config, info, items, apply)

        errors: list[Error | None] = self._submit(fn)
        return errors

    def _acknowledge_many(
        self,
        entries: list[tuple[str, Any]],
        parse: Callable[[Any], _Ack],
        apply: _AckApply,
        failure_code: str,
    ) -> BatchResult:
        """The batch form of `_acknowledge`, for entries checked by `batch_entries`.

        An entry that `parse` rejects (InvalidArgument) fails as
        ReceiptHandleIsInvalid, one that `apply` rejects fails with
        `failure_code`; the others are applied together in one commit.
        """
        parsed: list[tuple[str, _Ack]] = []
        failed: list[BatchFailure] = []
        for entry_id, entry in entries:
            try:
                parsed.append((entry_id, parse(entry)))
            except InvalidArgument as exc:
                failed.append(BatchFailure(entry_id, "ReceiptHandleIsInvalid", str(exc)))
        errors = self._acknowledge([item for _, item in parsed], apply) if parsed else []
        successful: list[tuple[str, Any]] = []
        for (entry_id, _), error in zip(parsed, errors, strict=True):
            if error is None:
                successful.append((entry_id, None))
            else:
                failed.append(BatchFailure(entry_id, failure_code, str(error)))
        return BatchResult(successful, failed)

    # -- management --------------------------------------------------------------------

    def purge(self, *, min_interval: float = 0) -> None:
        """Delete every message sent before the call (SQS's PurgeQueue). Atomic.

        Their segments are reclaimed unless the queue keeps a replay window,
        so `replay` can still reach purged messages inside it. With
        `min_interval` (seconds), a purge within that long of the queue's
        last one (by any handle, in any process) raises InvalidArgument
        naming PurgeQueueInProgress and deletes nothing: SQS allows one
        PurgeQueue per queue every PURGE_INTERVAL_SECONDS, and its endpoint
        purges with that interval. The library's default is no limit.
        """
        if isinstance(min_interval, bool) or not isinstance(min_interval, int | float):
            raise InvalidArgument(f"min_interval: {min_interval!r} is not a number of seconds")
        name = self.name

        def fn(ctx: WriteContext, config: _Config, info: LogInfo) -> None:
            last = config.data.get("purged_ms")
            if last is not None and ctx.now_ms - last < min_interval * 1000:
                raise InvalidArgument(
                    f"purge: queue {name!r} was purged {(ctx.now_ms - last) / 1000:.1f} s ago, "
                    f"under min_interval {min_interval} s (PurgeQueueInProgress)"
                )
            for part, part_info in _parts_in(ctx, config, info):
                _purge_in(ctx, part, part_info)
            put_channel(ctx, "queue", name, {**config.data, "purged_ms": ctx.now_ms})

        self._submit(fn)

    def attributes(self) -> dict[str, Any]:
        """The queue's configuration (the `create_queue` arguments) and counts."""
        config = self._config()
        data = dict(config.data)
        data.pop("log_id", None)
        data.pop("views", None)
        data["dead_letter"] = tuple(data["dead_letter"]) if data["dead_letter"] else None
        data["name"] = self.name
        counts = self.approximate_counts()
        data["approximate_visible"] = counts.visible
        data["approximate_in_flight"] = counts.in_flight
        data["approximate_delayed"] = counts.delayed
        return data

    def set_attributes(self, **changes: Any) -> None:
        """Change attributes (any of MUTABLE_ATTRIBUTES). Atomic; seen by every handle.

        Raises InvalidArgument for an unknown or immutable attribute (fifo
        cannot change, as in SQS), a value out of range, or a dead-letter
        queue of the wrong type; NotFound for a missing dead-letter queue.
        """
        for key in changes:
            if key not in MUTABLE_ATTRIBUTES:
                raise InvalidArgument(
                    f"set_attributes: {key!r} cannot be changed "
                    f"(changeable: {', '.join(MUTABLE_ATTRIBUTES)})"
                )
        name = self.name

        def fn(ctx: WriteContext, config: _Config, info: LogInfo) -> None:
            data = dict(config.data)
            data.update(changes)
            if "dead_letter" in changes and changes["dead_letter"] is not None:
                data["dead_letter"] = list(changes["dead_letter"])
            _validate_config(data)
            _check_dead_letter_target(ctx, name, data)
            data["modified_ms"] = ctx.now_ms
            put_channel(ctx, "queue", name, data)

        self._submit(fn)

    # -- tags and permissions: kept in the queue's configuration, not enforced ---------

    def tags(self) -> dict[str, str]:
        """The queue's tags (SQS's ListQueueTags)."""
        return dict(self._config().data.get("tags") or {})

    def tag(self, tags: Mapping[str, str]) -> None:
        """Add or replace tags (SQS's TagQueue). Atomic.

        Raises InvalidArgument for a key or value that is not a str, a key
        over 128 or a value over 256 characters, or more than 50 tags in all.
        """
        check_tags(tags)

        def change(data: dict[str, Any]) -> None:
            data["tags"] = merged_tags(data, tags, f"tag: a queue has at most {TAGS_MAX} tags")

        self._change_metadata(change)

    def untag(self, tag_keys: Sequence[str]) -> None:
        """Remove tags by key (SQS's UntagQueue); missing keys are ignored. Atomic."""

        def change(data: dict[str, Any]) -> None:
            data["tags"] = remaining_tags(data, tag_keys)

        self._change_metadata(change)

    def permissions(self) -> dict[str, dict[str, list[str]]]:
        """Stored permission statements by label: {"accounts": [...], "actions": [...]}."""
        return {k: dict(v) for k, v in (self._config().data.get("permissions") or {}).items()}

    def add_permission(self, label: str, accounts: Sequence[str], actions: Sequence[str]) -> None:
        """Store a permission statement under `label` (SQS's AddPermission). Atomic.

        Permissions are stored and listed, never enforced: the store has no
        principals. Raises InvalidArgument for an empty or taken label, empty
        lists, or more than PERMISSIONS_MAX statements.
        """
        if not isinstance(label, str) or not NAME_RE.fullmatch(label) or len(label) > 80:
            raise InvalidArgument(f"permission label {label!r}: 1-80 of A-Z a-z 0-9 _ -")
        if not accounts or not actions:
            raise InvalidArgument("add_permission: accounts and actions must not be empty")

        def change(data: dict[str, Any]) -> None:
            held = dict(data.get("permissions") or {})
            if label in held:
                raise InvalidArgument(f"permission label {label!r}: already exists")
            if len(held) >= PERMISSIONS_MAX:
                raise InvalidArgument(f"add_permission: at most {PERMISSIONS_MAX} statements")
            held[label] = {"accounts": list(accounts), "actions": list(actions)}
            data["permissions"] = held

        self._change_metadata(change)

    def remove_permission(self, label: str) -> None:
        """Remove the statement under `label`. Atomic. Raises InvalidArgument if none."""

        def change(data: dict[str, Any]) -> None:
            held = dict(data.get("permissions") or {})
            if held.pop(label, None) is None:
                raise InvalidArgument(f"permission label {label!r}: does not exist")
            data["permissions"] = held

        self._change_metadata(change)

    def _change_metadata(self, change: Callable[[dict[str, Any]], None]) -> None:
        """Apply `change` to the stored configuration inside one commit."""
        name = self.name

        def fn(ctx: WriteContext, config: _Config, info: LogInfo) -> None:
            data = dict(config.data)
            change(data)
            data["modified_ms"] = ctx.now_ms
            put_channel(ctx, "queue", name, data)

        self._submit(fn)

    def approximate_counts(self) -> QueueCounts:
        """Visible, in-flight and delayed counts from O(1) counters.

        The counters are corrected by a look at the due index: leases that
        expired and delays that ended since the last receive count as
        visible, exactly while there are at most COUNT_PEEK_MAX (1,024) of
        them; beyond that the rest keep their old class (approximate, as
        SQS's counts are). Messages past retention count until a receive or
        the retention pass (`enforce_retention`) drops them. Read-only.
        """
        return self._read_counts()[0]

    def _read_counts(self) -> tuple[QueueCounts, QueueStats]:
        """approximate_counts, and the totals of stats(), over every part of the queue."""
        logs = self._logs
        now = logs.now_ms()
        visible = in_flight = delayed_total = 0
        sent = received = deleted = 0
        with logs.env.begin() as txn:
            config = _load_config(logs, txn, self.name)
            if config is None or config.log_id != self.log_id:
                raise NotFound(f"queue {self.name!r}: not found (deleted?)")
            for part in config.parts():
                prefix = U64.pack(part.log_id)
                view = part.view
                state = _effective(
                    txn,
                    logs.database(SLOT_TOTALS_DB),
                    view,
                    _State(txn.get(prefix, db=logs.database(STATE_DB)), view is not None),
                )
                log_id = self.log_id if view is None else view.topic_log
                raw_ends = txn.get(keys.log_key(log_id), db=logs.dbs[keys.DB_ENDS])
                if raw_ends is None:
                    raise NotFound(f"queue {self.name!r}: not found (deleted?)")
                end = Ends.unpack(raw_ends).next_offset
                leased, delayed = state.leased, state.delayed
                moved = peeked = 0
                cursor = txn.cursor(db=logs.database(DUE_DB))
                if cursor.set_range(prefix):
                    for key, kind in cursor:
                        if key[:8] != prefix or peeked >= COUNT_PEEK_MAX:
                            break
                        if KEY3.unpack(key)[1] > now:
                            break
                        peeked += 1
                        if kind == b"\x01":
                            leased -= 1
                            moved += 1
                        elif kind == b"\x02":
                            delayed -= 1
                            moved += 1
                entries = state.leased + state.delayed + state.waiting
                if state.unscanned is None:
                    unscanned = max(0, end - state.frontier)
                    part_sent, passed = end, state.frontier
                else:
                    unscanned = max(0, state.unscanned)
                    part_sent, passed = state.matched, state.matched - unscanned
                visible += max(0, state.waiting + moved + max(0, unscanned - state.pending_delayed))
                in_flight += max(0, leased)
                delayed_total += max(0, delayed + max(0, min(state.pending_delayed, unscanned)))
                sent += part_sent
                received += state.nonce
                deleted += max(0, passed - entries)
        counts = QueueCounts(visible=visible, in_flight=in_flight, delayed=delayed_total)
        return counts, QueueStats(
            visible=visible,
            in_flight=in_flight,
            delayed=delayed_total,
            sent_total=sent,
            received_total=received,
            deleted_total=deleted,
        )

    @property
    def dead_letter(self) -> tuple[str, int] | None:
        """(dead-letter queue, max_receive_count), or None: the configuration as
        every handle sees it now (one catalog read, no JSON parse when unchanged)."""
        target = self._config().dead_letter
        return None if target is None else (target[0], target[1])

    def stats(self) -> QueueStats:
        """The approximate counts and the running totals (see QueueStats), in O(1).

        One read transaction, no write: safe to call as often as a
        monitoring page or a Prometheus scrape wants. Raises NotFound.
        """
        return self._read_counts()[1]

    def peek(self, limit: int = 100, *, start_offset: int = 0) -> list[PeekedMessage]:
        """Up to `limit` (1-1000) undeleted messages at or after `start_offset`,
        in log order, visible, in flight and delayed alike, without receiving them.

        Nothing is written: receive counts, leases, visibility, the
        frontier and the counters stay as they were (LocalStack's and Kafka
        UIs' peek). The queue's state is read in one snapshot, then the
        messages' records; a message deleted in between may still be listed.
        Page on with `start_offset=messages[-1].offset + 1`. Thread- and
        process-safe. Raises InvalidArgument (limit, start_offset), NotFound,
        Corruption.
        """
        limit = check_int("limit", limit, 1, PEEK_MESSAGES_MAX)
        start_offset = check_int("start_offset", start_offset, 0, 2**63 - 1)
        info = self.info
        config = self._config()
        out: list[PeekedMessage] = []
        for part in config.parts():
            number = 0 if part.view is None else part.view.number
            if start_offset >> VIEW_OFFSET_SHIFT > number:
                continue  # the page starts in a later part
            if start_offset >> VIEW_OFFSET_SHIFT == number:
                start = start_offset & ((1 << VIEW_OFFSET_SHIFT) - 1)
            else:
                start = 0
            out += self._peek_part(part, info, limit - len(out), start)
            if len(out) >= limit:
                break
        return out

    def _peek_part(
        self, config: _Config, own: LogInfo, limit: int, start_offset: int
    ) -> list[PeekedMessage]:
        """Queue.peek over one part of the queue."""
        logs = self._logs
        now = logs.now_ms()
        prefix = U64.pack(config.log_id)
        found: list[tuple[int, _Entry]] = []
        with logs.env.begin() as txn:
            info = _part_info(logs, txn, config, own)
            state = _State(txn.get(prefix, db=logs.database(STATE_DB)), config.view is not None)
            raw_ends = txn.get(keys.log_key(info.id), db=logs.dbs[keys.DB_ENDS])
            if raw_ends is None:
                raise NotFound(f"queue {self.name!r}: not found (deleted?)")
            end = _part_end(Ends.unpack(raw_ends).next_offset, config)
            start = max(start_offset, state.head)
            cursor = txn.cursor(db=logs.database(ENTRIES_DB))
            if start < state.frontier and cursor.set_range(_entry_key(config.log_id, start)):
                for key, raw in cursor:
                    offset = KEY2.unpack(key)[1] if key[:8] == prefix else state.frontier
                    if offset >= state.frontier or len(found) >= limit:
                        break
                    found.append((offset, _Entry.unpack(raw)))
        out: list[PeekedMessage] = []
        if found:
            first, last = found[0][0], found[-1][0]
            wanted = dict(found)
            if last - first < 4 * len(found):  # dense: one pass over the range
                records: Iterable[Record | None] = _part_records(
                    logs, config, info, first, last + 1
                )
            else:
                records = (_part_record(logs, config, info, offset) for offset in wanted)
            for record in records:
                entry = wanted.get(record.offset) if record is not None else None
                if record is not None and entry is not None:
                    out.append(_peeked(config, record, entry, now))
        if len(out) < limit:
            for record in _part_records(logs, config, info, max(start, state.frontier), end):
                out.append(_peeked(config, record, None, now))
                if len(out) >= limit:
                    break
        return out

    def delete_at(self, offset: int) -> bool:
        """Delete the message at `offset` (a PeekedMessage's) in whatever state,
        without a receipt: an operator's delete (the console's "delete").

        Returns False when no undeleted message is there (deleted, purged,
        expired, or past the end). The delete is one atomic commit. A message
        past the delivered frontier is reached by first recording the
        undelivered messages before it as a receive's scan would (commits of
        at most MATERIALIZE_RECORDS_MAX records that change no message's
        state or count); on a FIFO queue at most SCAN_ENTRIES_MAX messages
        may wait that way, else InvalidArgument. A receiver holding the
        message's lease then finds its delete succeeding (already deleted)
        and change_visibility raising StaleReceipt. Raises InvalidArgument,
        NotFound.
        """
        offset = check_int("offset", offset, 0, 2**63 - 1)
        number = offset >> VIEW_OFFSET_SHIFT
        part_offset = offset & ((1 << VIEW_OFFSET_SHIFT) - 1)

        def step(ctx: WriteContext, config: _Config, info: LogInfo) -> bool | None:
            if not number:
                return _delete_at_in(ctx, config, info, offset)
            for part in config.parts():
                if part.view is not None and part.view.number == number:
                    part_info = _part_info(ctx.store, ctx.txn, part, info)
                    return _delete_at_in(ctx, part, part_info, part_offset)
            return False

        while True:
            done: bool | None = self._submit(step)
            if done is not None:
                return done

    def enforce_retention(self, now_ms: int | None = None) -> int:
        """Drop this queue's expired messages from the head (see queues.enforce_retention).

        Returns segments reclaimed. Each step is one bounded commit.
        """
        reclaimed = 0
        for _ in range(RETENTION_STEPS_MAX):
            segments, more = self._retention_step(now_ms)
            reclaimed += segments
            if not more:
                break
        return reclaimed

    def _retention_step(self, now_ms: int | None) -> tuple[int, bool]:
        def fn(ctx: WriteContext, config: _Config, info: LogInfo) -> tuple[int, bool]:
            now = ctx.now_ms if now_ms is None else now_ms
            reclaimed, more = 0, False
            for part, part_info in _parts_in(ctx, config, info):
                segments, part_more = _retention_in(ctx, part, part_info, now)
                reclaimed += segments
                more = more or part_more
            drop_drained_views(ctx, config.name)
            return reclaimed, more

        result: tuple[int, bool] = self._submit(fn)
        return result

    def __len__(self) -> int:
        """Approximate number of undeleted messages (visible + in flight + delayed)."""
        counts = self.approximate_counts()
        return counts.visible + counts.in_flight + counts.delayed

    # -- replay -------------------------------------------------------------------------

    def replay(
        self,
        *,
        from_time: float | None = None,
        from_offset: int | None = None,
        into: Queue | None = None,
        batch_size: int = 500,
    ) -> int:
        """Send the queue's retained history again, into itself or `into`.

        Reads the log from `from_offset` (or the first message at or after
        `from_time`, seconds since the epoch; default the oldest retained)
        up to its end when the call starts, including deleted messages, and
        sends each again with its id, body, attributes and group, `batch_size`
        per commit, skipping FIFO deduplication. Returns how many were sent.
        Each commit is atomic; the whole replay is not (a crash part way
        leaves the first batches sent). Retained history is what the replay
        window (or the active segment) keeps; see `create_queue`.
        """
        target = into if into is not None else self
        if target.fifo != self.fifo:
            raise InvalidArgument("replay: FIFO history replays into FIFO queues only")
        info = self.info
        if from_offset is not None:
            start = from_offset
        elif from_time is not None:
            start = offset_for_time(self._logs, info, int(from_time * 1000))
        else:
            start = 0
        end = self._logs.ends(info).next_offset
        sent = 0
        batch: list[_Outgoing] = []
        for record in _read_records(self._logs, info, max(0, start), end):
            batch.append(_outgoing_from_record(record, decode_meta(record.headers)))
            if len(batch) >= batch_size:
                sent += target._append_raw(batch)
                batch = []
        if batch:
            sent += target._append_raw(batch)
        return sent

    def _append_raw(self, messages: list[_Outgoing]) -> int:
        def fn(ctx: WriteContext, config: _Config, info: LogInfo) -> int:
            ctx.append(
                info,
                [m.body for m in messages],
                [m.id for m in messages],
                [m.meta for m in messages],
            )
            return len(messages)

        count: int = self._submit(fn)
        return count


def batch_entries(
    items: Sequence[Any],
    what: str,
    split: Callable[[int, Any], tuple[str, Any]],
) -> list[tuple[str, Any]]:
    """A batch's entries as (entry_id, rest), `split` taking apart the one at each index.

    Raises InvalidArgument for an empty batch, over BATCH_ENTRIES_MAX
    entries or a repeated entry id, each naming its SQS error code
    (server/errors.py answers with it).
    """
    if not items:
        raise InvalidArgument(f"{what}: no entries (EmptyBatchRequest)")
    if len(items) > BATCH_ENTRIES_MAX:
        raise InvalidArgument(
            f"{what}: {len(items)} entries, over the batch limit of {BATCH_ENTRIES_MAX} "
            "(TooManyEntriesInBatchRequest)"
        )
    entries: list[tuple[str, Any]] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        entry_id, rest = split(index, item)
        if entry_id in seen:
            raise InvalidArgument(
                f"{what}: entry id {entry_id!r} repeated (BatchEntryIdsNotDistinct)"
            )
        seen.add(entry_id)
        entries.append((entry_id, rest))
    return entries


_BatchEntry = TypeVar("_BatchEntry")
_Prepared = TypeVar("_Prepared")


def coerce_entry(index: int, item: object, entry_type: type[_BatchEntry], what: str) -> _BatchEntry:
    """A send_many / publish_many entry as `entry_type` (SendEntry, PublishEntry):
    such an entry, a bytes or str body, or a mapping of its fields. Raises
    InvalidArgument for anything else, or (TypeError) a mapping with unknown keys."""
    if isinstance(item, bytes | str | bytearray | memoryview):
        return entry_type(body=item if isinstance(item, str) else bytes(item))  # type: ignore[call-arg]
    if isinstance(item, entry_type):
        return item
    if isinstance(item, Mapping):
        return entry_type(**item)
    raise InvalidArgument(f"{what}: entry {index} is a {type(item).__name__}")


def prepare_entries(
    batch: Sequence[tuple[str, _BatchEntry]],
    prepare: Callable[[str, _BatchEntry], _Prepared],
    failure_code: str,
) -> tuple[list[_Prepared], list[BatchFailure]]:
    """`prepare(entry_id, entry)` for each entry of a send_many / publish_many batch.
    An entry it rejects with InvalidArgument is left out and reported as a
    BatchFailure with `failure_code` (SQS's or SNS's error code)."""
    prepared: list[_Prepared] = []
    failed: list[BatchFailure] = []
    for entry_id, entry in batch:
        try:
            prepared.append(prepare(entry_id, entry))
        except InvalidArgument as exc:
            text = str(exc)
            code = _ENTRY_CODE.search(text)
            failed.append(BatchFailure(entry_id, code.group(1) if code else failure_code, text))
    return prepared, failed


# Entry failures that SQS reports under a code of their own, not the batch's usual one.
_ENTRY_CODE = re.compile(r"\((InvalidMessageContents)\)$")


def _split_receipt_entry(index: int, item: Any) -> tuple[str, Any]:
    """delete_many's entry: a receipt, or (entry_id, receipt)."""
    if isinstance(item, tuple):
        entry_id, receipt = item
        return entry_id, receipt
    return str(index), item


def _split_visibility_entry(index: int, item: Any) -> tuple[str, Any]:
    """change_visibility_many's entry: (receipt, seconds), or (entry_id, receipt, seconds)."""
    if len(item) == 3:
        entry_id, receipt, seconds = item
        return str(entry_id), (receipt, seconds)
    receipt, seconds = item
    return str(index), (receipt, seconds)


def _check_dead_letter_target(ctx: WriteContext, name: str, data: dict[str, Any]) -> None:
    dead_letter = data.get("dead_letter")
    if not dead_letter:
        return
    target = dead_letter[0]
    if target == name:
        raise InvalidArgument("dead_letter: a queue cannot be its own dead-letter queue")
    dlq = _load_config(ctx.store, ctx.txn, target)
    if dlq is None:
        raise NotFound(f"dead_letter: queue {target!r} not found (create it first)")
    if dlq.fifo != data["fifo"]:
        raise InvalidArgument(
            f"dead_letter: {target!r} is {'FIFO' if dlq.fifo else 'standard'}; "
            "a dead-letter queue must be of the same type as its source"
        )


# -- store-level calls (Store's "queues" section delegates here) ----------------------------------


def create_queue(
    store: Store,
    name: str,
    *,
    visibility_timeout: int = 30,
    delay: int = 0,
    retention: int = RETENTION_SECONDS_DEFAULT,
    max_message_size: int = MESSAGE_BYTES_MAX,
    receive_wait: int = 0,
    dead_letter: tuple[str, int] | None = None,
    fifo: bool = False,
    content_based_dedup: bool = False,
    dedup_scope: DedupScope = "queue",
    fifo_throughput_limit: ThroughputLimit = "perQueue",
    replay_window: int | None = None,
    segment_bytes_max: int | None = None,
    exist_ok: bool = False,
) -> Queue:
    logs = store._logs
    check_queue_name(name, fifo)
    data: dict[str, Any] = {
        "visibility_timeout": visibility_timeout,
        "delay": delay,
        "retention": retention,
        "max_message_size": max_message_size,
        "receive_wait": receive_wait,
        "dead_letter": list(dead_letter) if dead_letter is not None else None,
        "fifo": fifo,
        "content_based_dedup": content_based_dedup,
        "dedup_scope": dedup_scope,
        "fifo_throughput_limit": fifo_throughput_limit,
        "replay_window": replay_window,
    }
    _validate_config(data)
    segment_bytes = logs.segment_bytes_default if segment_bytes_max is None else segment_bytes_max

    def op(ctx: WriteContext) -> dict[str, Any]:
        existing = get_channel(logs, ctx.txn, "queue", name)
        if existing is not None:
            same = all(existing.get(k) == v for k, v in data.items())
            if exist_ok and same:
                return dict(existing)
            raise AlreadyExists(
                f"queue {name!r}: already exists"
                + ("" if same else " with different attributes (QueueNameExists)")
            )
        _check_dead_letter_target(ctx, name, data)
        info = logs.create_log_in(
            ctx,
            log_name("queue", name),
            segment_bytes_max=segment_bytes,
            retention_ms=None,
            retention_bytes=None,
            meta={"kind": "queue"},
            exist_ok=False,
        )
        config = dict(data, log_id=info.id, created_ms=ctx.now_ms, modified_ms=ctx.now_ms)
        put_channel(ctx, "queue", name, config)
        _put_state(ctx, info.id, _State(None))
        return config

    return Queue(store, name, logs.submit(op))


def get_queue(store: Store, name: str) -> Queue:
    logs = store._logs
    with logs.env.begin() as txn:
        config = _load_config(logs, txn, name)
    if config is None:
        raise NotFound(f"queue {name!r}: not found (AWS.SimpleQueueService.NonExistentQueue)")
    return Queue(store, name, config.data)


def list_queues(store: Store, prefix: str = "") -> list[Queue]:
    return [Queue(store, name, data) for name, data in list_channels(store._logs, "queue", prefix)]


def delete_queue(store: Store, name: str) -> None:
    logs = store._logs

    def op(ctx: WriteContext) -> None:
        config = _load_config(logs, ctx.txn, name)
        if config is None:
            raise NotFound(f"queue {name!r}: not found")
        _delete_part_rows(ctx, config.log_id)
        for view in config.views:  # the subscriptions stay; their publishes skip the queue
            _delete_part_rows(ctx, view.id)
            ctx.txn.delete(KEY2.pack(view.topic_log, view.id), db=ctx.db(VIEWS_DB))
        delete_channel(ctx, "queue", name)
        logs.delete_log_in(ctx, log_name("queue", name))

    logs.submit(op)


def dead_letter_source_queues(store: Store, name: str) -> list[Queue]:
    """Queues whose dead_letter names `name` (SQS's ListDeadLetterSourceQueues)."""
    get_queue(store, name)
    return [
        Queue(store, source, data)
        for source, data in list_channels(store._logs, "queue")
        if data.get("dead_letter") and data["dead_letter"][0] == name
    ]


# -- message move tasks (redrive) -----------------------------------------------------------------
#
# A task is one row of `queue_tasks`, keyed by its handle, holding JSON:
#   source, source_log_id, destination (None: each message's source queue),
#   rate (messages per second or None), status, moved, to_move, started_ms,
#   error, driver (the worker running it) and driver_until_ms (its lease).
# Each batch takes up to MOVE_BATCH_MAX messages from the source, appends
# them to their targets, deletes them from the source and adds their number
# to the row's `moved`, all in one commit: a crash at any byte leaves every
# message either moved (and counted) or still in the source, never both and
# never neither. The batch reads the row in the same transaction, so a
# cancel that commits is obeyed by the next batch in any process.

MOVE_BATCH_MAX = 10
MOVE_RATE_MAX = 500  # SQS's MaxNumberOfMessagesPerSecond limit
MOVE_DRIVER_LEASE_MS = 15_000  # a task whose driver is silent this long is taken over
MOVE_TASKS_KEPT = 10  # finished tasks listed per source (SQS lists the newest 10)
WORKER_IDLE_SECONDS = 1.0  # the worker's look for tasks to run (read-only) when idle
RETENTION_INTERVAL_SECONDS = 60.0  # the worker's retention pass, in long-lived processes
RETENTION_STEP_MAX = 1024  # entries and records looked at per retention commit
RETENTION_STEPS_MAX = 64  # commits per queue per retention pass


@dataclass
class MoveTask:
    """A message move task (SQS's StartMessageMoveTask): a snapshot of its row.

    The task lives in the store (`queue_tasks`), not in the process: it
    survives crashes and restarts, and `cancel`, `refresh` and `wait` work
    from any process. `status` is RUNNING, COMPLETED, CANCELLED or FAILED
    (with `error`); `moved` counts messages moved so far, `to_move` the
    source's approximate size when the task started.
    """

    handle: str
    source: str
    destination: str | None
    max_messages_per_second: int | None
    status: str = "RUNNING"
    moved: int = 0
    to_move: int = 0
    error: str | None = None
    started_ms: int = 0
    _store: Store | None = field(default=None, repr=False, compare=False)

    def refresh(self) -> MoveTask:
        """Re-read status and progress from the store; returns self."""
        if self._store is not None:
            fresh = _read_task(self._store, self.handle)
            if fresh is not None:
                self.status, self.moved, self.error = fresh.status, fresh.moved, fresh.error
        return self

    def cancel(self) -> None:
        """Cancel the task (one commit; no batch commits after it, in any process)."""
        if self._store is None:
            raise InvalidArgument(f"move task {self.handle!r}: not bound to a store")
        fresh = cancel_message_move_task(self._store, self.handle)
        self.status, self.moved, self.error = fresh.status, fresh.moved, fresh.error

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the task is no longer RUNNING; True if it ended within `timeout`.

        Wakes on this process's commits and looks again every 50 ms for
        other processes' (read-only looks, no spinning).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self.refresh()
            if self.status != "RUNNING" or self._store is None:
                return True
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            wait = CROSS_PROCESS_POLL_SECONDS if left is None else min(left, 0.05)
            self._store._logs.wait_for_append(wait)


def _task_from_row(store: Store, handle: bytes, row: Mapping[str, Any]) -> MoveTask:
    return MoveTask(
        bytes(handle).decode(),
        row["source"],
        row["destination"],
        row["rate"],
        row["status"],
        row["moved"],
        row["to_move"],
        row.get("error"),
        row["started_ms"],
        store,
    )


def _task_rows(logs: LogStore, txn: Txn) -> list[tuple[bytes, dict[str, Any]]]:
    db = logs.database(TASKS_DB)
    if db is None:
        return []
    return [(bytes(key), json.loads(value)) for key, value in txn.cursor(db=db)]


def _read_task(store: Store, handle: str) -> MoveTask | None:
    logs = store._logs
    db = logs.database(TASKS_DB)
    if db is None:
        return None
    with logs.env.begin() as txn:
        raw = txn.get(handle.encode(), db=db)
    return None if raw is None else _task_from_row(store, handle.encode(), json.loads(raw))


def _put_task(ctx: WriteContext, handle: bytes, row: Mapping[str, Any]) -> None:
    ctx.txn.put(handle, json.dumps(row, separators=(",", ":")).encode(), db=ctx.db(TASKS_DB))


def start_message_move_task(
    store: Store,
    source: str,
    destination: str | None = None,
    *,
    max_messages_per_second: int | None = None,
) -> MoveTask:
    """Move messages out of a dead-letter queue (to their source queues, or `destination`).

    Records the task in the store (one commit) and starts this handle's
    queue worker, which moves MOVE_BATCH_MAX messages a commit at up to
    `max_messages_per_second` (1-500, default as fast as it can) until the
    source has none available. If this process dies, the next process that
    opens the store (or any open handle's worker) resumes it once the
    driver's lease (15 s) has lapsed. Raises NotFound, InvalidArgument
    (a rate outside 1-500, a type mismatch, the source no queue's DLQ when
    no destination is given), or AlreadyExists if a task for the source is
    already running.
    """
    src = get_queue(store, source)
    if max_messages_per_second is not None:
        check_int("max_messages_per_second", max_messages_per_second, 1, MOVE_RATE_MAX)
    if destination is not None:
        dest = get_queue(store, destination)
        if dest.fifo != src.fifo:
            raise InvalidArgument("destination: must be of the same type as the source")
    elif not dead_letter_source_queues(store, source):
        raise InvalidArgument(f"source {source!r}: is no queue's dead-letter queue")
    worker = _worker(store)
    handle = base64.urlsafe_b64encode(os.urandom(12)).decode().encode()
    to_move = len(src)

    def op(ctx: WriteContext) -> dict[str, Any]:
        config = _config_in(ctx, source, src.log_id)
        db = ctx.db(TASKS_DB)
        finished: list[tuple[int, bytes]] = []
        for key, other in _task_rows(ctx.store, ctx.txn):
            if other["source"] != source:
                continue
            if other["status"] == "RUNNING":
                raise AlreadyExists(f"move task for {source!r}: already running ({key.decode()})")
            finished.append((other["started_ms"], key))
        # Keep the newest MOVE_TASKS_KEPT - 1 finished ones, so the table stays bounded.
        for _, key in sorted(finished)[: max(0, len(finished) - (MOVE_TASKS_KEPT - 1))]:
            ctx.txn.delete(key, db=db)
        row: dict[str, Any] = {
            "source": source,
            "source_log_id": config.log_id,
            "destination": destination,
            "rate": max_messages_per_second,
            "status": "RUNNING",
            "moved": 0,
            "to_move": to_move,
            "started_ms": ctx.now_ms,
            "error": None,
            "driver": worker.driver,
            "driver_until_ms": ctx.now_ms + MOVE_DRIVER_LEASE_MS,
        }
        _put_task(ctx, handle, row)
        return row

    row = store._logs.submit(op)
    worker.start()
    worker.wake()
    return _task_from_row(store, handle, row)


def cancel_message_move_task(store: Store, handle: str) -> MoveTask:
    """Cancel a running move task (one commit). Raises NotFound for an unknown handle.

    No batch commits after the cancel, in any process; messages moved
    before it stay moved. Cancelling a finished task changes nothing.
    """
    key = handle.encode() if isinstance(handle, str) else b""

    def op(ctx: WriteContext) -> dict[str, Any]:
        raw = ctx.txn.get(key, db=ctx.db(TASKS_DB)) if key else None
        if raw is None:
            raise NotFound(f"move task {handle!r}: not found (ResourceNotFoundException)")
        row: dict[str, Any] = json.loads(raw)
        if row["status"] == "RUNNING":
            row["status"] = "CANCELLED"
            _put_task(ctx, key, row)
        return row

    return _task_from_row(store, key, store._logs.submit(op))


def list_message_move_tasks(store: Store, source: str) -> list[MoveTask]:
    """The source's move tasks (running and the last finished ones), oldest first."""
    logs = store._logs
    with logs.env.begin() as txn:
        rows = _task_rows(logs, txn)
    tasks = [_task_from_row(store, key, row) for key, row in rows if row["source"] == source]
    return sorted(tasks, key=lambda t: (t.started_ms, t.handle))


def run_message_move_tasks(store: Store, driver: str | None = None) -> int:
    """One batch of every running task this handle may drive, in the caller's thread.

    Ignores the tasks' rates (the worker paces them); for tests and scripts.
    Returns the messages moved.
    """
    driver = driver or _worker(store).driver
    logs = store._logs
    with logs.env.begin() as txn:
        rows = _task_rows(logs, txn)
    moved = 0
    for key, row in rows:
        if row["status"] == "RUNNING":
            moved += _move_step(store, key, driver) or 0
    return moved


def _move_step(store: Store, handle: bytes, driver: str) -> int | None:
    """Run one batch of a task in one commit with its progress.

    Returns the messages moved, or None when the task is not this driver's
    to run (finished, cancelled, or leased by a live driver elsewhere). A
    batch that fails (a target queue deleted, a message with no source
    queue and no destination) commits nothing, and the task is marked FAILED.
    """
    logs = store._logs

    def op(ctx: WriteContext) -> int | None:
        db = ctx.db(TASKS_DB)
        raw = ctx.txn.get(handle, db=db)
        if raw is None:
            return None
        row: dict[str, Any] = json.loads(raw)
        if row["status"] != "RUNNING":
            return None
        if row["driver"] != driver and row["driver_until_ms"] > ctx.now_ms:
            return None
        config = _load_config(logs, ctx.txn, row["source"])
        if config is None or config.log_id != row["source_log_id"]:
            row.update(status="FAILED", error=f"source queue {row['source']!r} was deleted")
            _put_task(ctx, handle, row)
            return 0
        rate = row["rate"]
        count = min(MOVE_BATCH_MAX, rate) if rate else MOVE_BATCH_MAX
        moved = _move_batch_in(ctx, config, row["destination"], count)
        row["moved"] += moved
        row["driver"] = driver
        row["driver_until_ms"] = ctx.now_ms + MOVE_DRIVER_LEASE_MS
        if moved == 0:
            row["status"] = "COMPLETED"
        _put_task(ctx, handle, row)
        return moved

    try:
        result: int | None = logs.submit(op)
        return result
    except (NotFound, InvalidArgument) as exc:
        reason = str(exc)

    def fail(ctx: WriteContext) -> None:
        raw = ctx.txn.get(handle, db=ctx.db(TASKS_DB))
        if raw is not None:
            row = json.loads(raw)
            if row["status"] == "RUNNING":
                row.update(status="FAILED", error=reason)
                _put_task(ctx, handle, row)

    logs.submit(fail)
    return 0


def _move_batch_in(ctx: WriteContext, config: _Config, destination: str | None, count: int) -> int:
    """Receive up to `count` from a queue (all its parts), append them to
    their targets and delete them."""
    moved = 0
    for part, info in _parts_in(ctx, config, _log_info(ctx, config)):
        moved += _move_part_in(ctx, part, info, destination, count - moved)
        if moved >= count:
            break
    return moved


def _move_part_in(
    ctx: WriteContext, config: _Config, info: LogInfo, destination: str | None, count: int
) -> int:
    deliveries = _receive_in(ctx, config, info, count, VISIBILITY_SECONDS_MAX * 1000)
    state = _state(ctx, config.log_id)
    for delivery in deliveries:
        record = delivery.record
        meta = decode_meta(record.headers)
        target_name = destination or meta.get("src")
        if target_name is None:
            raise InvalidArgument(
                f"move: message at offset {record.offset} has no source queue; give a destination"
            )
        target = _config_in(ctx, target_name)
        if target.fifo != config.fifo:
            raise InvalidArgument(f"move: {target_name!r} is not of the source's type")
        _append_moved(ctx, target, record, meta, delivery.sent_at)
    errors = _delete_in(ctx, config, info, [(d.record.offset, d.nonce) for d in deliveries], state)
    for error in errors:
        if error is not None:
            raise Corruption(f"move: could not delete what it received: {error}", log=info.name)
    _advance_head(ctx, config, info, state)
    _put_state(ctx, config.log_id, state)
    return len(deliveries)


# -- retention without receives -------------------------------------------------------------------


def enforce_retention(store: Store, now_ms: int | None = None) -> int:
    """Drop every queue's expired messages from its head; returns segments reclaimed.

    For each queue, in commits of at most RETENTION_STEP_MAX entries and
    records (and at most RETENTION_STEPS_MAX commits a queue a call): drops
    the entries at the head whose message is past the queue's retention
    (leased or not, as SQS does), moves the frontier past never-received
    expired records, advances the head and reclaims the sealed segments
    below it (unless a replay window keeps them). It stops at the first
    message still within retention, so an expired message behind a live one
    is dropped when a receive reaches it. Counts stay right. `now_ms`
    defaults to the store's clock. Store.enforce_retention calls this, and
    each Store handle's queue worker runs it every 60 s.
    """
    reclaimed = 0
    for name, data in list_channels(store._logs, "queue"):
        queue = Queue(store, name, data)
        for _ in range(RETENTION_STEPS_MAX):
            try:
                segments, more = queue._retention_step(now_ms)
            except NotFound:
                break  # deleted meanwhile
            reclaimed += segments
            if not more:
                break
    return reclaimed


def _retention_in(ctx: WriteContext, config: _Config, info: LogInfo, now: int) -> tuple[int, bool]:
    """One bounded retention step in a commit: (segments reclaimed, more to do?)."""
    txn = ctx.txn
    log_id = config.log_id
    prefix = U64.pack(log_id)
    retention = config.retention_ms
    state = _state(ctx, log_id)
    before = (state.head, state.frontier)
    more = False
    # 1. Entries in offset order from the head.
    victims: list[tuple[int, _Entry]] = []
    cursor = txn.cursor(db=ctx.db(ENTRIES_DB))
    if cursor.set_range(prefix):
        for key, raw in cursor:
            if key[:8] != prefix:
                break
            if len(victims) >= RETENTION_STEP_MAX:
                more = True
                break
            entry = _Entry.unpack(raw)
            if entry.sent_at + retention > now:
                break
            victims.append((KEY2.unpack(key)[1], entry))
    for offset, entry in victims:
        _drop_entry(ctx, log_id, offset, entry, state)
    # 2. Records never received, from the frontier.
    end = _part_end(ctx.store.ends(info).next_offset, config)
    scan_end = _scan_end(end, config, state.frontier)
    if state.frontier < scan_end:
        for scanned, record in enumerate(
            _part_records(ctx.store, config, info, state.frontier, scan_end), start=1
        ):
            meta = decode_meta(record.headers)
            if _record_sent_at(record, meta) + retention > now:
                break
            if meta.get("d", 0):
                state.pending_delayed -= 1
            state.passed()
            state.frontier = record.offset + 1
            if scanned >= RETENTION_STEP_MAX:
                more = True
                break
        else:
            # Every message of the scanned range was expired (a view's range
            # also holds other subscriptions' records): pass all of it.
            state.frontier = scan_end
            more = more or scan_end < end
    sealed_before = len(ctx.sealed_segments(info))
    if not victims and (state.head, state.frontier) == before:
        if config.replay_window_ms is not None:
            _reclaim(ctx, config, info, state.head)  # the window may have passed since
        return sealed_before - len(ctx.sealed_segments(info)), False
    _advance_head(ctx, config, info, state)
    _put_state(ctx, log_id, state)
    return sealed_before - len(ctx.sealed_segments(info)), more


# -- the queue worker (one per Store handle) ------------------------------------------------------


class _QueueWorker:
    """Drives move tasks and runs the retention pass for one writable Store handle.

    A daemon thread, started by the first queue handle or move task of the
    Store, or by opening a store with a running task; Store.close stops it.
    Idle, it makes one read-only look at `queue_tasks` a second. A task is
    driven by one worker at a time: the batch commit renews the worker's
    15 s lease on the task, and another worker takes a task over only once
    that lease has lapsed (its process died), by the store's clock.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.driver = f"{os.getpid()}-{os.urandom(6).hex()}"
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._next_batch: dict[bytes, float] = {}
        self._next_retention = time.monotonic() + RETENTION_INTERVAL_SECONDS

    def start(self) -> None:
        with self._lock:
            if self._stop.is_set() or (self._thread is not None and self._thread.is_alive()):
                return
            self._thread = threading.Thread(
                target=self._loop, name="tidelog-queue-worker", daemon=True
            )
            self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        with self._lock:
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                delay = self.step()
            except Exception as exc:
                # The store closed under us (its LMDB environment with it), or
                # a commit failed: a later look retries; a bug surfaces.
                if self.store._logs._closed:
                    return
                if not isinstance(exc, Error):
                    raise
                delay = WORKER_IDLE_SECONDS
            self._wake.wait(delay)
            self._wake.clear()

    def step(self) -> float:
        """Run what is due; returns seconds until something may be due again."""
        logs = self.store._logs
        now = time.monotonic()
        if now >= self._next_retention:
            self._next_retention = now + RETENTION_INTERVAL_SECONDS
            enforce_retention(self.store)
        wait = min(WORKER_IDLE_SECONDS, max(0.0, self._next_retention - now))
        with logs.env.begin() as txn:
            rows = _task_rows(logs, txn)
        now_ms = logs.now_ms()
        for key, row in rows:
            if self._stop.is_set():
                break
            if row["status"] != "RUNNING":
                self._next_batch.pop(key, None)
                continue
            if row["driver"] != self.driver and row["driver_until_ms"] > now_ms:
                continue  # driven elsewhere: look again when idle
            due = self._next_batch.get(key, 0.0)
            now = time.monotonic()
            if due > now:
                wait = min(wait, due - now)
                continue
            moved = _move_step(self.store, key, self.driver)
            rate = row["rate"]
            pause = (moved or 0) / rate if rate else 0.0
            self._next_batch[key] = now + pause
            wait = min(wait, pause)
        return wait


_workers: dict[int, _QueueWorker] = {}
_workers_lock = threading.Lock()


def _worker(store: Store) -> _QueueWorker:
    worker = _workers.get(id(store))
    if worker is None or worker.store is not store:
        with _workers_lock:
            worker = _workers.get(id(store))
            if worker is None or worker.store is not store:
                worker = _workers[id(store)] = _QueueWorker(store)
    return worker


def start_worker(store: Store) -> None:
    """Start the handle's queue worker (retention timer, move tasks) if writable."""
    if not store._logs.readonly and not store._logs._closed:
        _worker(store).start()


def resume_move_tasks(store: Store) -> None:
    """At open: start the worker if the store holds a running move task."""
    if store._logs.readonly:
        return
    with store._logs.env.begin() as txn:
        running = any(row["status"] == "RUNNING" for _, row in _task_rows(store._logs, txn))
    if running:
        start_worker(store)


def stop_worker(store: Store) -> None:
    """Stop the handle's queue worker, if any (Store.close calls this first)."""
    with _workers_lock:
        worker = _workers.pop(id(store), None)
    if worker is not None and worker.store is store:
        worker.stop()


__all__ = [
    "AttributeValue",
    "BatchFailure",
    "BatchResult",
    "Message",
    "MoveTask",
    "Queue",
    "PeekedMessage",
    "QueueCounts",
    "QueueStats",
    "SendEntry",
    "SendResult",
    "md5_of_attributes",
    "md5_of_body",
    "enforce_retention",
    "prepare_in",
    "run_message_move_tasks",
    "send_in",
    "typed_attributes",
]
