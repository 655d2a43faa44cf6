"""Topics: the SNS model (DESIGN.md, "Topics").

A topic owns one log holding every published message for the topic's
retention (default 24 h; 0 keeps none beyond the active segment and what
subscribed queues still need, and replay reaches nothing). Publishing
appends each message once, to the topic log, with the slots of the queue
subscriptions whose filter matched; each subscribed queue reads the topic
log through a *view* (engine/queues.py, docs/format.md "Topic records and
subscription views") with its own cursor, leases and counts, whose
counters the same `LogStore.submit` op bumps. After any crash a message
reaches all matching queues or none.

State in LMDB (all primary):

- the catalog row `topic:<name>`: log id, fifo, retention, display name,
  content-based deduplication;
- `topic_subscriptions`: key = topic log id (8 bytes) + subscription id,
  value = the subscription as JSON (protocol, endpoint, filter policy and
  scope, raw flag, status, `effective_offset`, delivery policy, DLQ);
- `topic_state`: key = topic log id, value = a generation number bumped by
  every subscription change; compiled subscriber lists are cached per
  (store, topic, generation), so a publish reads one LMDB row, not all
  subscriptions, and a change made by another process is seen at once;
- `topic_dedup`, `topic_dedup_expiry` (FIFO topics): deduplication ids for
  5 minutes, as queues keep theirs;
- `topic_views`: key = topic log id + view id, value = queue name: every
  view reading the topic log (for retention and topic deletion).

Subscription changes and publishes are serialised by LMDB's single writer.
A change records `effective_offset`, the topic log's next offset when it
committed: messages at offsets >= it are filtered and formatted with the
new settings, earlier ones with the old. Replay applies the *current*
settings to history.

Callback and HTTP/HTTPS subscriptions deliver through a per-subscription
*delivery queue* (an ordinary tidelog queue named `tidelog-sub-<id>`),
appended to in the publish commit like any subscribed queue. A background
`DeliveryWorker` receives from it, calls the callback or POSTs to the URL,
deletes on success, and on failure leaves the message leased for the retry
delay of SNS's delivery policy. Pending deliveries therefore live in the
log, survive restarts, and are at-least-once; when retries run out the
message goes to the subscription's dead-letter queue (if any) and is
dropped from the delivery queue.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import math
import re
import secrets
import struct
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from tidelog import json_limits
from tidelog.catalog import (
    check_fifo_name,
    delete_channel,
    get_channel,
    list_channels,
    log_name,
    put_channel,
    read_channel,
)
from tidelog.errors import AlreadyExists, Error, InvalidArgument, NotFound
from tidelog.log import as_bytes
from tidelog.queues import (
    KEY2,
    SLOT_TOTALS_DB,
    VIEWS_DB,
    AttributeInput,
    AttributeValue,
    BatchFailure,
    Queue,
    View,
    absorb_view_in,
    add_view_in,
    attributes_size,
    batch_entries,
    check_id,
    check_int,
    close_view_in,
    coerce_entry,
    count_slots_in,
    decode_meta,
    deliver_in,
    encode_attributes,
    expire_dedup_ids,
    meta_attributes,
    prepare_entries,
    typed_attributes,
    view_target_in,
)
from tidelog.queues import (
    STATE_DB as QUEUE_STATE_DB,
)
from tidelog.segments import keys
from tidelog.segments.format import Record
from tidelog.segments.logstore import LogInfo, delete_prefix
from tidelog.segments.reader import offset_for_time
from tidelog.segments.writer import WriteContext
from tidelog.tags import TAGS_MAX, check_tags, merged_tags, remaining_tags
from tidelog.topic_filters import (
    NESTING_MAX,
    FilterPolicy,
    FilterScope,
    attribute_view,
    body_view,
)

if TYPE_CHECKING:
    from tidelog.store import Store

MESSAGES_PEEK_MAX = 1000  # Topic.messages' page size limit

# -- LMDB databases (listed in catalog.ENGINE_DATABASES) -----------------------------------------

SUBSCRIPTIONS_DB = b"topic_subscriptions"
STATE_DB = b"topic_state"
DEDUP_DB = b"topic_dedup"
DEDUP_EXPIRY_DB = b"topic_dedup_expiry"
TOPIC_DATABASES = (SUBSCRIPTIONS_DB, STATE_DB, DEDUP_DB, DEDUP_EXPIRY_DB)

# -- limits and constants (SNS's) ---------------------------------------------------------------

NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,256}")
FIFO_SUFFIX = ".fifo"
MESSAGE_BYTES_MAX = 256 * 1024
SUBJECT_CHARS_MAX = 100
BATCH_ENTRIES_MAX = 10
RETENTION_SECONDS_DEFAULT = 24 * 3600
RETENTION_SECONDS_MAX = 365 * 24 * 3600
TOPIC_TAGS_MAX = TAGS_MAX  # SNS's tag limit per topic
DEDUP_WINDOW_MS = 5 * 60 * 1000
DEDUP_EXPIRE_PER_PUBLISH = 16
REPLAY_BATCH = 100
REGION = "us-east-1"
ACCOUNT = "000000000000"
# Where UnsubscribeURL and SubscribeURL point: `tidelog serve`'s default address.
ENDPOINT_URL = "http://127.0.0.1:4566"
SIGNING_CERT_URL = f"https://sns.{REGION}.amazonaws.com/SimpleNotificationService-tidelog.pem"
DELIVERY_QUEUE_PREFIX = "tidelog-sub-"
DELIVERY_LEASE_SECONDS = 60
Protocol = Literal["sqs", "callback", "http", "https"]

U64 = struct.Struct(">Q")
DEDUP = struct.Struct(">QQ16s")  # expires_ms, offset, message id

# SNS's default delivery policy for HTTP/S (3 retries, 20 s apart) and
# tidelog's for callbacks (3 retries, exponential from 1 s to 20 s).
HTTP_RETRY_POLICY_DEFAULT: dict[str, Any] = {
    "minDelayTarget": 20,
    "maxDelayTarget": 20,
    "numRetries": 3,
    "numNoDelayRetries": 0,
    "numMinDelayRetries": 0,
    "numMaxDelayRetries": 0,
    "backoffFunction": "linear",
}
CALLBACK_RETRY_POLICY_DEFAULT: dict[str, Any] = dict(
    HTTP_RETRY_POLICY_DEFAULT, minDelayTarget=1, maxDelayTarget=20, backoffFunction="exponential"
)
RETRY_SECONDS_TOTAL_MAX = 3600  # SNS's hard limit on an HTTP/S policy's total retry time
BACKOFF_FUNCTIONS = ("linear", "arithmetic", "geometric", "exponential")


def set_account(account_id: str) -> None:
    """Make `account_id` (12 digits) the account of every topic, subscription and
    queue ARN the library writes from now on, in this process (`tidelog serve
    --account-id`). Envelopes already stored keep the account they were
    written with. Raises InvalidArgument for anything but 12 digits."""
    global ACCOUNT
    if not isinstance(account_id, str) or not re.fullmatch(r"[0-9]{12}", account_id):
        raise InvalidArgument(f"account id: {account_id!r} is not 12 digits")
    ACCOUNT = account_id


def topic_arn(name: str) -> str:
    return f"arn:aws:sns:{REGION}:{ACCOUNT}:{name}"


def queue_arn(name: str) -> str:
    return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"


def check_topic_name(name: object, fifo: bool) -> str:
    """SNS's rule: 1-256 of [A-Za-z0-9_-], ending in ".fifo" exactly for FIFO topics."""
    return check_fifo_name("topic", name, fifo, 256)


# -- delivery (retry) policies --------------------------------------------------------------------


def check_retry_policy(
    policy: Mapping[str, Any] | None, default: Mapping[str, Any]
) -> dict[str, Any]:
    """Validate an SNS healthyRetryPolicy (or a DeliveryPolicy holding one).

    Raises InvalidArgument naming the field: counts 0-100, the phases
    summing to at most numRetries, 1 <= minDelayTarget <= maxDelayTarget
    <= 3600, a known backoffFunction, total retry time <= 3600 s.
    """
    if policy is None:
        return dict(default)
    if not isinstance(policy, Mapping):
        raise InvalidArgument("delivery_policy: must be a dict")
    inner = policy.get("healthyRetryPolicy", policy)
    unknown = set(inner) - set(HTTP_RETRY_POLICY_DEFAULT)
    if unknown:
        raise InvalidArgument(f"delivery_policy: unknown fields {sorted(unknown)}")
    merged = dict(default)
    merged.update(inner)
    for name in ("numRetries", "numNoDelayRetries", "numMinDelayRetries", "numMaxDelayRetries"):
        check_int(f"delivery_policy {name}", merged[name], 0, 100)
    check_int("delivery_policy minDelayTarget", merged["minDelayTarget"], 1, 3600)
    check_int(
        "delivery_policy maxDelayTarget", merged["maxDelayTarget"], merged["minDelayTarget"], 3600
    )
    phases = merged["numNoDelayRetries"] + merged["numMinDelayRetries"]
    if phases + merged["numMaxDelayRetries"] > merged["numRetries"]:
        raise InvalidArgument(
            "delivery_policy: numNoDelayRetries + numMinDelayRetries + numMaxDelayRetries "
            "exceed numRetries"
        )
    function = str(merged["backoffFunction"]).lower()
    if function not in BACKOFF_FUNCTIONS:
        raise InvalidArgument(
            f"delivery_policy backoffFunction: {function!r} is not one of {BACKOFF_FUNCTIONS}"
        )
    merged["backoffFunction"] = function
    total = sum(retry_delay(merged, n) for n in range(1, merged["numRetries"] + 1))
    if total > RETRY_SECONDS_TOTAL_MAX:
        raise InvalidArgument(
            f"delivery_policy: retries take {total} s in total, over SNS's "
            f"{RETRY_SECONDS_TOTAL_MAX} s"
        )
    return merged


def retry_delay(policy: Mapping[str, Any], retry: int) -> int:
    """Seconds before retry number `retry` (1-based), by SNS's four phases:
    immediate, pre-backoff (min delay), backoff (min to max by the backoff
    function), post-backoff (max delay)."""
    no_delay = policy["numNoDelayRetries"]
    min_phase = policy["numMinDelayRetries"]
    max_phase = policy["numMaxDelayRetries"]
    backoff = policy["numRetries"] - no_delay - min_phase - max_phase
    low, high = policy["minDelayTarget"], policy["maxDelayTarget"]
    if retry <= no_delay:
        return 0
    if retry <= no_delay + min_phase:
        return int(low)
    step = retry - no_delay - min_phase
    if step > backoff or backoff <= 0:
        return int(high)
    # The first backoff retry waits minDelayTarget and the last maxDelayTarget.
    fraction = (step - 1) / (backoff - 1) if backoff > 1 else 1.0
    function = policy["backoffFunction"]
    if function == "linear":
        delay = low + (high - low) * fraction
    elif function == "arithmetic":
        delay = low + (high - low) * fraction * fraction
    elif function == "geometric":
        delay = low * (high / low) ** math.sqrt(fraction)
    else:  # exponential
        delay = low * (high / low) ** fraction
    seconds: int = max(int(low), min(int(high), math.ceil(delay)))
    return seconds


# -- public records ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Subscription:
    """A subscription (SNS's Subscribe result and GetSubscriptionAttributes).

    `arn` is ARN-shaped (topic ARN + ":" + id) for wire servers. `status`
    is "confirmed", or "pending" for an HTTP/S endpoint that has not
    confirmed. `effective_offset` is the topic log offset from which the
    current filter policy, scope and raw flag apply.
    """

    id: str
    arn: str
    topic: str
    protocol: str
    endpoint: str
    filter_policy: dict[str, Any] | None
    filter_scope: str
    raw: bool
    status: str
    effective_offset: int
    created_ms: int
    delivery_policy: dict[str, Any] | None = None
    dead_letter: str | None = None
    delivery_queue: str | None = None

    @property
    def confirmed(self) -> bool:
        return self.status == "confirmed"

    @property
    def endpoint_arn(self) -> str:
        """The endpoint as SNS names it (a queue's ARN for "sqs")."""
        return queue_arn(self.endpoint) if self.protocol == "sqs" else self.endpoint


@dataclass(frozen=True, slots=True)
class PublishResult:
    """What publish returns: the SNS MessageId, the FIFO sequence number, and
    how many subscriptions the message was delivered into (queues appended
    to, or delivery queues of callback/HTTP subscriptions). `duplicate` is
    True when FIFO deduplication kept an earlier message."""

    id: str
    sequence_number: str | None = None
    delivered: int = 0
    duplicate: bool = False
    offset: int = -1


@dataclass(frozen=True, slots=True)
class PublishEntry:
    """One entry of publish_many. Plain bytes or str mean PublishEntry(body=...)."""

    body: bytes | str
    attributes: Mapping[str, Any] | None = None
    subject: str | None = None
    group_id: str | None = None
    dedup_id: str | None = None
    id: str | None = None


# A failed entry of publish_many: the same shape as a queue batch's failure.
PublishFailure = BatchFailure


@dataclass(frozen=True, slots=True)
class PublishedMessage:
    """A message in a topic's retained history (`Topic.messages`)."""

    offset: int
    id: str
    body: bytes
    typed_attributes: dict[str, AttributeValue]
    subject: str | None
    group_id: str | None
    dedup_id: str | None
    sequence_number: str | None  # FIFO topics
    published_at_ms: int

    @property
    def attributes(self) -> dict[str, str | int | float | bytes]:
        return {name: value.python for name, value in self.typed_attributes.items()}


@dataclass(frozen=True, slots=True)
class PublishBatchResult:
    """Per-entry outcome of publish_many (SNS's PublishBatch)."""

    successful: list[tuple[str, PublishResult]] = field(default_factory=list)
    failed: list[PublishFailure] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Notification:
    """What a callback subscription's function receives.

    `type` is "Notification" (or "SubscriptionConfirmation" for HTTP);
    `body` is the raw message (raw subscriptions) or SNS's JSON envelope;
    `attributes` are the message attributes on raw subscriptions (in the
    envelope otherwise); `attempt` counts deliveries of this message, from 1.
    """

    message_id: str
    type: str
    body: bytes
    attributes: dict[str, AttributeValue]
    subscription_arn: str
    topic_arn: str
    attempt: int

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self) -> Any:
        """The envelope (or a JSON raw body) parsed."""
        return json.loads(self.body)


# -- the topic record (docs/format.md-style: key = message id, headers = JSON meta) ------------
#
# value: the message body. key: the 16-byte message id. headers: JSON with any of
#   a: [[name, data_type, "s" | "b", value (text or base64)], ...]
#   s: subject    g: group id    dd: deduplication id


def _meta_fields(
    attributes: Mapping[str, AttributeValue],
    subject: str | None,
    group_id: str | None,
    dedup_id: str | None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if attributes:
        meta["a"] = encode_attributes(attributes)
    if subject is not None:
        meta["s"] = subject
    if group_id is not None:
        meta["g"] = group_id
    if dedup_id is not None:
        meta["dd"] = dedup_id
    return meta


def _encode_meta(meta: Mapping[str, Any]) -> bytes:
    return json.dumps(meta, separators=(",", ":")).encode() if meta else b""


def _iso_timestamp(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _signature(fields: Sequence[tuple[str, str]]) -> str:
    # SNS signs with an RSA key tidelog does not have; this is a stable
    # digest of SNS's canonical string, shaped like a signature, and is not
    # verifiable against any certificate.
    canonical = "".join(f"{name}\n{value}\n" for name, value in fields)
    return base64.b64encode(hashlib.sha256(canonical.encode()).digest()).decode()


def _attributes_json(attributes: Mapping[str, AttributeValue]) -> dict[str, dict[str, str]]:
    return {
        name: {
            "Type": data_type,
            "Value": base64.b64encode(value).decode() if isinstance(value, bytes) else value,
        }
        for name, (data_type, value) in attributes.items()
    }


_SUB_PLACEHOLDER = "@@tidelog-subscription-arn@@"


def _render(document: Mapping[str, Any]) -> str:
    # SNS writes its envelopes with two-space indents and " : " separators.
    return json.dumps(document, indent=2, separators=(",", " : "), ensure_ascii=False)


def notification_envelope(
    *,
    topic_arn_: str,
    message_id: str,
    message: str,
    timestamp_ms: int,
    subject: str | None,
    attributes: Mapping[str, AttributeValue],
    subscription_arn: str,
    sequence_number: str | None = None,
) -> str:
    """SNS's JSON envelope for a notification, fields in SNS's order.

    Type, MessageId, [SequenceNumber], TopicArn, [Subject], Message,
    Timestamp, SignatureVersion, Signature, SigningCertURL, UnsubscribeURL,
    [MessageAttributes {name: {Type, Value}}] (Binary values in base64).
    """
    return _envelope_template(
        topic_arn_, message_id, message, timestamp_ms, subject, attributes, sequence_number
    ).replace(_SUB_PLACEHOLDER, subscription_arn)


def _envelope_template(
    arn: str,
    message_id: str,
    message: str,
    timestamp_ms: int,
    subject: str | None,
    attributes: Mapping[str, AttributeValue],
    sequence_number: str | None,
) -> str:
    stamp = _iso_timestamp(timestamp_ms)
    signed: list[tuple[str, str]] = [("Message", message), ("MessageId", message_id)]
    if subject is not None:
        signed.append(("Subject", subject))
    signed += [("Timestamp", stamp), ("TopicArn", arn), ("Type", "Notification")]
    document: dict[str, Any] = {"Type": "Notification", "MessageId": message_id}
    if sequence_number is not None:
        document["SequenceNumber"] = sequence_number
    document["TopicArn"] = arn
    if subject is not None:
        document["Subject"] = subject
    document["Message"] = message
    document["Timestamp"] = stamp
    document["SignatureVersion"] = "1"
    document["Signature"] = _signature(signed)
    document["SigningCertURL"] = SIGNING_CERT_URL
    document["UnsubscribeURL"] = (
        f"{ENDPOINT_URL}/?Action=Unsubscribe&SubscriptionArn={_SUB_PLACEHOLDER}"
    )
    if attributes:
        document["MessageAttributes"] = _attributes_json(attributes)
    return _render(document)


def _confirmation_envelope(arn: str, message_id: str, token: str, timestamp_ms: int) -> str:
    stamp = _iso_timestamp(timestamp_ms)
    message = (
        f"You have chosen to subscribe to the topic {arn}.\n"
        "To confirm the subscription, visit the SubscribeURL included in this message."
    )
    subscribe_url = f"{ENDPOINT_URL}/?Action=ConfirmSubscription&TopicArn={arn}&Token={token}"
    signed = [
        ("Message", message),
        ("MessageId", message_id),
        ("SubscribeURL", subscribe_url),
        ("Timestamp", stamp),
        ("Token", token),
        ("TopicArn", arn),
        ("Type", "SubscriptionConfirmation"),
    ]
    return _render(
        {
            "Type": "SubscriptionConfirmation",
            "MessageId": message_id,
            "Token": token,
            "TopicArn": arn,
            "Message": message,
            "SubscribeURL": subscribe_url,
            "Timestamp": stamp,
            "SignatureVersion": "1",
            "Signature": _signature(signed),
            "SigningCertURL": SIGNING_CERT_URL,
        }
    )


# -- prepared messages ----------------------------------------------------------------------------


class _Outgoing:
    """A validated publish, ready for the commit."""

    __slots__ = (
        "id",
        "id_text",
        "body",
        "text",
        "attributes",
        "subject",
        "group",
        "dedup",
        "meta",
        "fields",
        "entry_id",
        "_attribute_view",
        "_body_view",
        "_body_parsed",
    )

    def __init__(
        self,
        body: bytes,
        attributes: dict[str, AttributeValue],
        subject: str | None,
        group: str | None,
        dedup: str | None,
        entry_id: str = "0",
        message_id: bytes | None = None,
    ) -> None:
        self.id = message_id or uuid.uuid4().bytes
        self.id_text = str(uuid.UUID(bytes=self.id))
        self.body = body
        self.text = body.decode()
        self.attributes = attributes
        self.subject = subject
        self.group = group
        self.dedup = dedup
        self.entry_id = entry_id
        self.fields = _meta_fields(attributes, subject, group, dedup)
        self.meta = _encode_meta(self.fields)
        self._attribute_view: dict[str, Any] | None = None
        self._body_view: dict[str, Any] | None = None
        self._body_parsed = False

    def view(self, scope: str) -> Mapping[str, Any] | None:
        """The message as filters see it; built once per message and scope."""
        if scope == "body":
            if not self._body_parsed:
                self._body_view = body_view(self.body)
                self._body_parsed = True
            return self._body_view
        if self._attribute_view is None:
            self._attribute_view = attribute_view(self.attributes)
        return self._attribute_view


def _as_body(body: object) -> bytes:
    data = as_bytes(body, "body")
    if not data:
        raise InvalidArgument("body: must not be empty (SNS needs a message)")
    try:
        data.decode()
    except UnicodeDecodeError:
        raise InvalidArgument("body: SNS messages are UTF-8 text") from None
    return data


def _topic_attributes(attributes: Mapping[str, Any] | None) -> dict[str, AttributeValue]:
    """SQS's attribute typing plus SNS's String.Array (a Python list or JSON text)."""
    if not attributes:
        return {}
    converted: dict[str, AttributeInput] = {}
    for name, value in attributes.items():
        if isinstance(value, list | tuple) and not (
            isinstance(value, tuple)
            and len(value) == 2
            and isinstance(value[0], str)
            and value[0].split(".", 1)[0] in ("String", "Number", "Binary")
        ):
            if json_limits.depth_exceeds(list(value), NESTING_MAX):
                raise InvalidArgument(f"attribute {name!r}: nested deeper than {NESTING_MAX}")
            converted[name] = AttributeValue("String.Array", json.dumps(list(value)))
        else:
            converted[name] = value
    typed = typed_attributes(converted)
    for name, (data_type, value) in typed.items():
        if data_type == "String.Array":
            try:
                items = json_limits.loads(value, NESTING_MAX)
            except ValueError:  # malformed, too deep, NaN
                items = None
            if not isinstance(items, list):
                raise InvalidArgument(f"attribute {name!r}: String.Array must be a JSON array")
    return typed


def _prepare(
    fifo: bool,
    content_based_dedup: bool,
    body: object,
    attributes: Mapping[str, Any] | None,
    subject: str | None,
    group_id: str | None,
    dedup_id: str | None,
    entry_id: str = "0",
) -> _Outgoing:
    data = _as_body(body)
    typed = _topic_attributes(attributes)
    size = len(data) + attributes_size(typed)
    if size > MESSAGE_BYTES_MAX:
        raise InvalidArgument(f"message: {size} bytes is over SNS's 256 KiB ({MESSAGE_BYTES_MAX})")
    if subject is not None:
        if not isinstance(subject, str) or not subject or len(subject) > SUBJECT_CHARS_MAX:
            raise InvalidArgument("subject: must be 1-100 characters")
        if any(ch in subject for ch in "\r\n") or not subject.isprintable():
            raise InvalidArgument("subject: must be printable ASCII without line breaks")
    if fifo:
        if group_id is None:
            raise InvalidArgument("group_id: FIFO topics need a message group id")
        if dedup_id is None:
            if not content_based_dedup:
                raise InvalidArgument(
                    "dedup_id: give one, or create the topic with content_based_dedup=True"
                )
            dedup_id = hashlib.sha256(data).hexdigest()
        check_id("group_id", group_id)
        check_id("dedup_id", dedup_id)
    elif group_id is not None or dedup_id is not None:
        raise InvalidArgument("group_id, dedup_id: FIFO topics only")
    return _Outgoing(data, typed, subject, group_id, dedup_id, entry_id)


# -- compiled subscriber lists --------------------------------------------------------------------


class _Target:
    """A subscription as publish uses it (compiled once per generation)."""

    __slots__ = ("id", "arn", "protocol", "queue", "policy", "scope", "raw", "active", "slot")

    def __init__(self, topic_name: str, data: Mapping[str, Any]) -> None:
        self.id: str = data["id"]
        self.arn = f"{topic_arn(topic_name)}:{self.id}"
        self.protocol: str = data["protocol"]
        self.queue: str = data["delivery_queue"] or data["endpoint"]
        policy = data.get("filter_policy")
        self.policy = FilterPolicy(policy, data["filter_scope"]) if policy else None
        self.scope: str = data["filter_scope"]
        self.raw: bool = data["raw"]
        self.active = data["status"] == "confirmed"
        # A queue subscription's slot: its queue reads the topic log as a view.
        # None for callback/HTTP (delivery queues get copies) and for queue
        # subscriptions made before views, which keep getting copies.
        self.slot: int | None = data.get("slot")


_targets_cache: dict[tuple[str, int, int], list[_Target]] = {}
_targets_lock = threading.Lock()


def _sub_key(log_id: int, sub_id: str) -> bytes:
    return U64.pack(log_id) + sub_id.encode()


def _generation(ctx: WriteContext, log_id: int) -> int:
    raw = ctx.txn.get(U64.pack(log_id), db=ctx.db(STATE_DB))
    return U64.unpack(raw)[0] if raw else 0


def _bump(ctx: WriteContext, log_id: int) -> None:
    ctx.txn.put(U64.pack(log_id), U64.pack(_generation(ctx, log_id) + 1), db=ctx.db(STATE_DB))


def _subscriptions_in(txn: Any, db: Any, log_id: int) -> list[dict[str, Any]]:
    prefix = U64.pack(log_id)
    out = []
    cursor = txn.cursor(db=db)
    if cursor.set_range(prefix):
        for key, value in cursor:
            if not key.startswith(prefix):
                break
            out.append(json.loads(value))
    out.sort(key=lambda s: (s["created_ms"], s["id"]))
    return out


def _targets(ctx: WriteContext, topic_name: str, log_id: int) -> list[_Target]:
    generation = _generation(ctx, log_id)
    key = (ctx.store.path, log_id, generation)
    cached = _targets_cache.get(key)
    if cached is None:
        subs = _subscriptions_in(ctx.txn, ctx.db(SUBSCRIPTIONS_DB), log_id)
        cached = [_Target(topic_name, data) for data in subs]
        with _targets_lock:
            if len(_targets_cache) > 1024:
                _targets_cache.clear()
            _targets_cache[key] = cached
    return cached


def _subscription(topic_name: str, data: Mapping[str, Any]) -> Subscription:
    return Subscription(
        id=data["id"],
        arn=f"{topic_arn(topic_name)}:{data['id']}",
        topic=topic_name,
        protocol=data["protocol"],
        endpoint=data["endpoint"],
        filter_policy=data.get("filter_policy"),
        filter_scope=data["filter_scope"],
        raw=data["raw"],
        status=data["status"],
        effective_offset=data["effective_offset"],
        created_ms=data["created_ms"],
        delivery_policy=data.get("delivery_policy"),
        dead_letter=data.get("dead_letter"),
        delivery_queue=data.get("delivery_queue"),
    )


# -- fan-out inside a commit --------------------------------------------------------------------


def _deliver_in(
    ctx: WriteContext,
    arn: str,
    target: _Target,
    message: _Outgoing,
    timestamp_ms: int,
    sequence_number: str | None,
    template: list[str | None],
    fifo_dedup: str | None = None,
) -> bool:
    """Append one message to one subscription's queue. False if it could not
    be delivered there (queue deleted, or over the queue's size limit): SNS
    would count a failed delivery; the publish itself still commits."""
    if target.raw:
        payload: bytes = message.body
        attributes: Mapping[str, AttributeValue] | None = message.attributes
    else:
        envelope = template[0]
        if envelope is None:
            envelope = template[0] = _envelope_template(
                arn,
                message.id_text,
                message.text,
                timestamp_ms,
                message.subject,
                message.attributes,
                sequence_number,
            )
        payload = envelope.replace(_SUB_PLACEHOLDER, target.arn).encode()
        attributes = None
    if target.protocol == "sqs":
        group, dedup = message.group, fifo_dedup if fifo_dedup is not None else message.dedup
    else:
        # Delivery queues are standard queues; the group id carries the
        # message type and SNS message id to the delivery worker.
        group, dedup = f"Notification:{message.id_text}", None
    try:
        deliver_in(ctx, target.queue, payload, attributes, group_id=group, dedup_id=dedup)
    except (InvalidArgument, NotFound):
        return False
    return True


# -- subscription queues as views over the topic log (docs/format.md) ----------------------------


def view_message(view: View, record: Record, meta: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """A topic record as `view`'s queue receives it: (body, queue metadata).

    The body is the published one (raw subscriptions) or SNS's envelope,
    rendered from the record as the publish would have rendered it; the
    metadata carries the attributes (raw only), the queue's delay fixed at
    publish, and the FIFO group and deduplication ids.
    """
    fields: dict[str, Any] = {}
    slot = view.slot
    arn = topic_arn(view.topic)
    if slot in meta.get("vr", ()):
        value = record.value
        if "a" in meta:
            fields["a"] = meta["a"]
    else:
        value = (
            _envelope_template(
                arn,
                str(uuid.UUID(bytes=record.key)),
                record.value.decode(),
                record.timestamp_ms,
                meta.get("s"),
                meta_attributes(meta),
                f"{record.offset:020d}" if "g" in meta else None,
            )
            .replace(_SUB_PLACEHOLDER, f"{arn}:{view.subscription}")
            .encode()
        )
    delay = meta.get("vd", {}).get(str(slot))
    if delay:
        fields["d"] = delay
    if "g" in meta:
        fields["g"] = meta["g"]
    if "dd" in meta:
        fields["dd"] = meta["dd"]
    return value, (json.dumps(fields, separators=(",", ":")).encode() if fields else b"")


def _free_slot(subscriptions: Iterable[Mapping[str, Any]]) -> int:
    """The lowest slot no current subscription of the topic holds. A closed
    view that still reads an old slot stops at its `until`, before any
    record a new holder of the slot is marked in."""
    used = {s["slot"] for s in subscriptions if s.get("slot") is not None}
    return next(n for n in range(len(used) + 1) if n not in used)


def _formatted_size(target: _Target, raw_bytes: int, envelope_bytes: int) -> int:
    """The size the queue's max_message_size is checked against."""
    if target.raw:
        return raw_bytes
    return envelope_bytes - len(_SUB_PLACEHOLDER) + len(target.arn)


# -- Topic ----------------------------------------------------------------------------------------


class Topic:
    """A handle on one topic. Get one from `store.create_topic` or `store.topic`.

    Thread- and process-safe: any number of handles in any threads and
    processes may publish and change subscriptions at once. Every call is
    one atomic commit (group-committed with concurrent calls) and durable as
    the store's sync mode promises when it returns. Calls raise NotFound once
    the topic is deleted.
    """

    def __init__(self, store: Store, name: str, config: Mapping[str, Any]) -> None:
        self._store = store
        self._logs = store._logs
        self.name = name
        self.arn = topic_arn(name)
        self.log_id: int = config["log_id"]
        self.fifo: bool = config["fifo"]
        self._info: LogInfo | None = None

    def __repr__(self) -> str:
        return f"<tidelog.Topic {self.name!r}{' fifo' if self.fifo else ''}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Topic) and (other.name, other.log_id) == (self.name, self.log_id)

    def __hash__(self) -> int:
        return hash(("topic", self.name, self.log_id))

    # -- helpers -------------------------------------------------------------------

    @property
    def info(self) -> LogInfo:
        """The topic's log (its retained history)."""
        if self._info is None:
            info = self._logs.get_log(log_name("topic", self.name))
            if info.id != self.log_id:
                raise NotFound(f"topic {self.name!r}: not found (deleted?)")
            self._info = info
        return self._info

    def _config(self) -> dict[str, Any]:
        config = read_channel(self._logs, "topic", self.name)
        if config is None or config["log_id"] != self.log_id:
            raise NotFound(f"topic {self.name!r}: not found (deleted?) (NotFound)")
        return config

    def _config_in(self, ctx: WriteContext) -> dict[str, Any]:
        config = get_channel(self._logs, ctx.txn, "topic", self.name)
        if config is None or config["log_id"] != self.log_id:
            raise NotFound(f"topic {self.name!r}: not found (deleted?) (NotFound)")
        return config

    # -- attributes --------------------------------------------------------------------

    def attributes(self) -> dict[str, Any]:
        """Configuration and counts (SNS's GetTopicAttributes, in Python names)."""
        config = self._config()
        subs = self.subscriptions()
        return {
            "name": self.name,
            "arn": self.arn,
            "fifo": config["fifo"],
            "retention": config["retention"],
            "content_based_dedup": config["content_based_dedup"],
            "display_name": config["display_name"],
            "created_ms": config["created_ms"],
            "subscriptions_confirmed": sum(s.confirmed for s in subs),
            "subscriptions_pending": sum(not s.confirmed for s in subs),
        }

    def set_attributes(
        self,
        *,
        display_name: str | None = None,
        retention: int | None = None,
        content_based_dedup: bool | None = None,
    ) -> None:
        """Change display_name, retention (seconds, 0-365 days) or (FIFO)
        content_based_dedup. Atomic. Raises InvalidArgument, NotFound."""
        if retention is not None:
            check_int("retention", retention, 0, RETENTION_SECONDS_MAX)
        if content_based_dedup is not None and not self.fifo:
            raise InvalidArgument("content_based_dedup: FIFO topics only")
        if display_name is not None and (
            not isinstance(display_name, str) or len(display_name) > 100
        ):
            raise InvalidArgument("display_name: at most 100 characters")
        name, info = self.name, self.info

        def op(ctx: WriteContext) -> None:
            config = dict(self._config_in(ctx))
            if display_name is not None:
                config["display_name"] = display_name
            if content_based_dedup is not None:
                config["content_based_dedup"] = content_based_dedup
            if retention is not None:
                config["retention"] = retention
                # The log layer enforces the topic's retention (Store.enforce_retention).
                raw = ctx.txn.get(keys.log_key(info.id), db=ctx.store.dbs[keys.DB_LOGS])
                if raw is None:
                    raise NotFound(f"topic {name!r}: its log is gone")
                doc = json.loads(raw)
                doc["retention_ms"] = retention * 1000
                ctx.txn.put(
                    keys.log_key(info.id),
                    json.dumps(doc, sort_keys=True).encode(),
                    db=ctx.store.dbs[keys.DB_LOGS],
                )
            config["modified_ms"] = ctx.now_ms
            put_channel(ctx, "topic", name, config)

        self._logs.submit(op)

    # -- tags: kept in the topic's configuration ---------------------------------------

    def tags(self) -> dict[str, str]:
        """The topic's tags (SNS's ListTagsForResource)."""
        return dict(self._config().get("tags") or {})

    def tag(self, tags: Mapping[str, str]) -> None:
        """Add or replace tags. Atomic. Raises InvalidArgument past SNS's limits
        (keys 1-128 and values up to 256 characters, 50 tags a topic)."""
        check_tags(tags)

        def change(config: dict[str, Any]) -> None:
            too_many = f"tag: at most {TOPIC_TAGS_MAX} tags a topic (TagLimitExceeded)"
            config["tags"] = merged_tags(config, tags, too_many)

        self._change_config(change)

    def untag(self, tag_keys: Sequence[str]) -> None:
        """Remove tags by key; missing keys are ignored. Atomic."""

        def change(config: dict[str, Any]) -> None:
            config["tags"] = remaining_tags(config, tag_keys)

        self._change_config(change)

    def _change_config(self, change: Callable[[dict[str, Any]], None]) -> None:
        name = self.name

        def op(ctx: WriteContext) -> None:
            config = dict(self._config_in(ctx))
            change(config)
            config["modified_ms"] = ctx.now_ms
            put_channel(ctx, "topic", name, config)

        self._logs.submit(op)

    def delete(self) -> None:
        """Delete the topic, its history and its subscriptions (not the
        subscribed queues). Atomic. Raises NotFound."""
        delete_topic(self._store, self.name)

    # -- subscriptions -----------------------------------------------------------------

    def subscriptions(self) -> list[Subscription]:
        """Every subscription, oldest first (SNS's ListSubscriptionsByTopic)."""
        self._config()
        db = self._logs.database(SUBSCRIPTIONS_DB)
        with self._logs.env.begin() as txn:
            subs = _subscriptions_in(txn, db, self.log_id)
        return [_subscription(self.name, data) for data in subs]

    def subscription(self, subscription: Subscription | str) -> Subscription:
        """Look one up by id, ARN or Subscription. Raises NotFound."""
        sub_id = _sub_id(subscription)
        for sub in self.subscriptions():
            if sub.id == sub_id:
                return sub
        raise NotFound(f"subscription {sub_id!r} of topic {self.name!r}: not found")

    def subscribe(
        self,
        queue: Queue | str,
        filter_policy: Mapping[str, Any] | str | None = None,
        filter_scope: FilterScope = "attributes",
        raw: bool = False,
    ) -> Subscription:
        """Subscribe a queue (SNS's Subscribe with protocol "sqs"). Atomic.

        Messages published after this call returns reach the queue (it
        reads them from the topic log through a view), when `filter_policy` matches (on the
        message attributes, or the JSON body with filter_scope="body").
        `raw=True` delivers the body and attributes as published; otherwise
        the queue receives SNS's JSON envelope. Subscribing the same queue
        again with the same settings returns the existing subscription.

        Raises InvalidArgument (a bad policy, naming the rule; a FIFO topic
        with a standard queue or the reverse; the queue already subscribed
        with other settings), NotFound (topic or queue).
        """
        name = queue.name if isinstance(queue, Queue) else queue
        policy = _compile_policy(filter_policy, filter_scope)
        return self._subscribe("sqs", name, policy, filter_scope, raw, None, None, queue_check=True)

    def subscribe_callback(
        self,
        name: str,
        function: Callable[[Notification], Any],
        *,
        filter_policy: Mapping[str, Any] | str | None = None,
        filter_scope: FilterScope = "attributes",
        raw: bool = False,
        delivery_policy: Mapping[str, Any] | None = None,
        dead_letter: Queue | str | None = None,
        start_worker: bool = True,
    ) -> Subscription:
        """Subscribe an in-process function under a durable `name`.

        Matching messages are stored in the subscription's delivery queue in
        the publish commit and passed to `function` by this process's
        DeliveryWorker (started here if needed): at least once, in a
        background thread, retried with backoff (`delivery_policy`, SNS's
        healthyRetryPolicy fields; default 3 retries, 1-20 s exponential)
        when the function raises, then moved to `dead_letter` (a standard
        queue) if given. The subscription outlives the process: call
        subscribe_callback again with the same name after a restart to
        re-attach a function; deliveries made meanwhile wait in the log.
        With start_worker=False no thread is started: deliver with your own
        `DeliveryWorker(store).run_once()`. Standard topics only. Raises
        InvalidArgument, NotFound.
        """
        if self.fifo:
            raise InvalidArgument("subscribe_callback: FIFO topics deliver to FIFO queues only")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,256}", name):
            raise InvalidArgument("callback name: 1-256 characters of A-Z a-z 0-9 _ . -")
        if not callable(function):
            raise InvalidArgument("function: must be callable")
        policy = _compile_policy(filter_policy, filter_scope)
        retry = check_retry_policy(delivery_policy, CALLBACK_RETRY_POLICY_DEFAULT)
        dlq = _dead_letter_name(self._store, dead_letter)
        sub = self._subscribe("callback", name, policy, filter_scope, raw, retry, dlq)
        _callbacks[(self._logs.path, sub.id)] = function
        if start_worker:
            start_delivery(self._store)
        return sub

    def subscribe_http(
        self,
        url: str,
        *,
        filter_policy: Mapping[str, Any] | str | None = None,
        filter_scope: FilterScope = "attributes",
        raw: bool = False,
        delivery_policy: Mapping[str, Any] | None = None,
        dead_letter: Queue | str | None = None,
    ) -> Subscription:
        """Subscribe an HTTP or HTTPS endpoint, with SNS's confirmation handshake.

        The subscription starts "pending": a SubscriptionConfirmation
        (with Token and SubscribeURL) is POSTed to `url` by the delivery
        worker (started here; after a restart `tidelog serve` runs it, or call
        `store.start_topic_delivery()`). Messages are delivered once
        `confirm_subscription(token)` (or the wire server's
        ConfirmSubscription) confirms it. Failed POSTs (no answer, or a
        status outside 2xx) are retried per `delivery_policy` (SNS's
        default: 3 retries, 20 s apart), then dead-lettered if
        `dead_letter` is given. Standard topics only. Raises InvalidArgument, NotFound.
        """
        if self.fifo:
            raise InvalidArgument("subscribe_http: FIFO topics deliver to FIFO queues only")
        if not isinstance(url, str) or not re.fullmatch(r"https?://[^\s]+", url):
            raise InvalidArgument(f"url {url!r}: must be an http:// or https:// URL")
        protocol = url.split(":", 1)[0]
        policy = _compile_policy(filter_policy, filter_scope)
        retry = check_retry_policy(delivery_policy, HTTP_RETRY_POLICY_DEFAULT)
        dlq = _dead_letter_name(self._store, dead_letter)
        sub = self._subscribe(protocol, url, policy, filter_scope, raw, retry, dlq)
        start_delivery(self._store)
        return sub

    def _subscribe(
        self,
        protocol: str,
        endpoint: str,
        policy: FilterPolicy | None,
        scope: str,
        raw: bool,
        retry: dict[str, Any] | None,
        dead_letter: str | None,
        queue_check: bool = False,
    ) -> Subscription:
        if not isinstance(raw, bool):
            raise InvalidArgument("raw: must be a bool")
        topic_name, info, fifo = self.name, self.info, self.fifo
        sub_id = str(uuid.uuid4())
        delivery_queue = None
        if protocol != "sqs":
            # A subscription with the same endpoint reuses its delivery queue.
            for existing in self.subscriptions():
                if existing.protocol == protocol and existing.endpoint == endpoint:
                    sub_id = existing.id
            delivery_queue = DELIVERY_QUEUE_PREFIX + sub_id.replace("-", "")
            self._store.create_queue(
                delivery_queue,
                visibility_timeout=DELIVERY_LEASE_SECONDS,
                retention=14 * 24 * 3600,
                exist_ok=True,
            )
        data: dict[str, Any] = {
            "id": sub_id,
            "protocol": protocol,
            "endpoint": endpoint,
            "filter_policy": policy.policy if policy else None,
            "filter_scope": scope,
            "raw": raw,
            "status": "pending" if protocol in ("http", "https") else "confirmed",
            "delivery_policy": retry,
            "dead_letter": dead_letter,
            "delivery_queue": delivery_queue,
        }
        same_fields = ("filter_policy", "filter_scope", "raw", "delivery_policy", "dead_letter")
        logs = self._logs

        def op(ctx: WriteContext) -> dict[str, Any]:
            self._config_in(ctx)
            db = ctx.db(SUBSCRIPTIONS_DB)
            current = _subscriptions_in(ctx.txn, db, self.log_id)
            for existing in current:
                if existing["protocol"] == protocol and existing["endpoint"] == endpoint:
                    if all(existing.get(k) == data[k] for k in same_fields):
                        return existing
                    raise InvalidArgument(
                        f"subscribe: {endpoint!r} is already subscribed to {topic_name!r} with "
                        "other attributes (change them with update_subscription)"
                    )
            if queue_check:
                queue_config = get_channel(logs, ctx.txn, "queue", endpoint)
                if queue_config is None:
                    raise NotFound(f"queue {endpoint!r}: not found")
                if queue_config["fifo"] != fifo:
                    raise InvalidArgument(
                        f"subscribe: {'FIFO' if fifo else 'standard'} topics deliver to "
                        f"{'FIFO' if fifo else 'standard'} queues only; {endpoint!r} is not one"
                    )
            start = ctx.ends(info).next_offset
            record = dict(
                data,
                created_ms=ctx.now_ms,
                effective_offset=start,
                token=secrets.token_hex(64) if data["status"] == "pending" else None,
            )
            if protocol == "sqs":
                # The queue reads this topic's log through a view from here on.
                record["slot"] = _free_slot(current)
                add_view_in(ctx, endpoint, topic_name, self.log_id, record["slot"], sub_id, start)
            ctx.txn.put(_sub_key(self.log_id, sub_id), json.dumps(record).encode(), db=db)
            _bump(ctx, self.log_id)
            if record["token"] is not None and delivery_queue is not None:
                message_id = str(uuid.uuid4())
                envelope = _confirmation_envelope(
                    topic_arn(topic_name), message_id, record["token"], ctx.now_ms
                )
                deliver_in(
                    ctx,
                    delivery_queue,
                    envelope,
                    group_id=f"SubscriptionConfirmation:{message_id}",
                )
            return record

        return _subscription(topic_name, logs.submit(op))

    def confirm_subscription(self, token: str) -> Subscription:
        """Confirm a pending HTTP/S subscription by the Token it was sent
        (SNS's ConfirmSubscription). Atomic; messages published after it
        are delivered. Confirming twice is harmless. Raises NotFound for an
        unknown token."""
        info = self.info

        def op(ctx: WriteContext) -> dict[str, Any]:
            self._config_in(ctx)
            db = ctx.db(SUBSCRIPTIONS_DB)
            for record in _subscriptions_in(ctx.txn, db, self.log_id):
                if record.get("token") == token and token:
                    if record["status"] != "confirmed":
                        record["status"] = "confirmed"
                        record["effective_offset"] = ctx.ends(info).next_offset
                        ctx.txn.put(
                            _sub_key(self.log_id, record["id"]), json.dumps(record).encode(), db=db
                        )
                        _bump(ctx, self.log_id)
                    return record
            raise NotFound(f"confirm_subscription: no subscription of {self.name!r} has that token")

        return _subscription(self.name, self._logs.submit(op))

    def update_subscription(
        self,
        subscription: Subscription | str,
        *,
        filter_policy: Mapping[str, Any] | str | None | Literal[False] = False,
        filter_scope: FilterScope | None = None,
        raw: bool | None = None,
        delivery_policy: Mapping[str, Any] | None = None,
        dead_letter: Queue | str | None | Literal[False] = False,
    ) -> Subscription:
        """Change a subscription (SNS's SetSubscriptionAttributes). Atomic.

        `filter_policy=None` removes the policy (False, the default, keeps
        it). The change takes effect at a definite log position: the
        returned `effective_offset` is the topic log's next offset when the
        change committed; every message at that offset or later is filtered
        and formatted with the new settings, every earlier one was with the
        old. Raises InvalidArgument, NotFound.
        """
        sub = self.subscription(subscription)
        scope: FilterScope = (
            filter_scope if filter_scope is not None else sub.filter_scope  # type: ignore[assignment]
        )
        if filter_policy is False:
            policy_data = sub.filter_policy
            _compile_policy(policy_data, scope)
        else:
            compiled = _compile_policy(filter_policy, scope)
            policy_data = compiled.policy if compiled else None
        if raw is not None and not isinstance(raw, bool):
            raise InvalidArgument("raw: must be a bool")
        retry = None
        if delivery_policy is not None:
            if sub.protocol == "sqs":
                raise InvalidArgument("delivery_policy: callback and HTTP/S subscriptions only")
            default = (
                CALLBACK_RETRY_POLICY_DEFAULT
                if sub.protocol == "callback"
                else HTTP_RETRY_POLICY_DEFAULT
            )
            retry = check_retry_policy(delivery_policy, default)
        dlq = (
            sub.dead_letter if dead_letter is False else _dead_letter_name(self._store, dead_letter)
        )
        info = self.info

        def op(ctx: WriteContext) -> dict[str, Any]:
            self._config_in(ctx)
            db = ctx.db(SUBSCRIPTIONS_DB)
            key = _sub_key(self.log_id, sub.id)
            raw_record = ctx.txn.get(key, db=db)
            if raw_record is None:
                raise NotFound(f"subscription {sub.id!r}: not found (unsubscribed?)")
            record = json.loads(raw_record)
            record["filter_policy"] = policy_data
            record["filter_scope"] = scope
            if raw is not None:
                record["raw"] = raw
            if retry is not None:
                record["delivery_policy"] = retry
            record["dead_letter"] = dlq
            record["effective_offset"] = ctx.ends(info).next_offset
            ctx.txn.put(key, json.dumps(record).encode(), db=db)
            _bump(ctx, self.log_id)
            return dict(record)

        return _subscription(self.name, self._logs.submit(op))

    def unsubscribe(self, subscription: Subscription | str) -> None:
        """Remove a subscription (SNS's Unsubscribe). Atomic: no message
        published after it returns reaches the endpoint. A callback or
        HTTP subscription's undelivered messages are dropped with its
        delivery queue. Raises NotFound."""
        sub = self.subscription(subscription)
        info = self.info

        def op(ctx: WriteContext) -> None:
            self._config_in(ctx)
            if not ctx.txn.delete(_sub_key(self.log_id, sub.id), db=ctx.db(SUBSCRIPTIONS_DB)):
                raise NotFound(f"subscription {sub.id!r}: not found")
            if sub.protocol == "sqs":
                # Messages published so far stay in the queue; none after this.
                close_view_in(ctx, sub.endpoint, sub.id, ctx.ends(info).next_offset)
            _bump(ctx, self.log_id)

        self._logs.submit(op)
        _callbacks.pop((self._logs.path, sub.id), None)
        if sub.delivery_queue:
            with contextlib.suppress(NotFound):
                self._store.delete_queue(sub.delivery_queue)

    # -- publishing ----------------------------------------------------------------------

    def publish(
        self,
        body: bytes | str,
        attributes: Mapping[str, Any] | None = None,
        *,
        subject: str | None = None,
        group_id: str | None = None,
        dedup_id: str | None = None,
    ) -> PublishResult:
        """Publish one message (SNS's Publish) and fan it out, in one commit.

        The message is appended once, to the topic log, marked for every
        confirmed queue subscription whose filter policy matches (the
        queues read it through their views); callback/HTTP subscriptions'
        deliveries are appended to their delivery queues. All of it
        commits atomically: after a crash the message is everywhere it
        matched or nowhere. Blocks until durable (store's sync mode).

        `body`: UTF-8 text up to 256 KiB with the attributes. `attributes`
        as for queues (str, int/float, bytes, typed), plus lists for SNS's
        String.Array. FIFO topics need `group_id`, and `dedup_id` unless
        content_based_dedup; a duplicate within 5 minutes returns the
        original's id with duplicate=True and delivers nothing. A
        subscribed queue that was deleted, or whose max_message_size is too
        small, is skipped (counted out of `delivered`).

        Raises InvalidArgument, NotFound (topic deleted), StoreFailed.
        """
        config = self._config()
        message = _prepare(
            self.fifo,
            config["content_based_dedup"],
            body,
            attributes,
            subject,
            group_id,
            dedup_id,
        )
        return self._publish([message])[0]

    def publish_many(
        self, entries: Iterable[PublishEntry | bytes | str | Mapping[str, Any]]
    ) -> PublishBatchResult:
        """Publish up to 10 messages and their whole fan-out in ONE commit
        (SNS's PublishBatch). Entries failing validation are reported in
        `failed`; the rest commit atomically together. Raises
        InvalidArgument for an empty batch, over 10 entries, repeated ids,
        or over 256 KiB in total (SNS's batch-level errors)."""

        def split(index: int, item: Any) -> tuple[str, PublishEntry]:
            entry = coerce_entry(index, item, PublishEntry, "publish_many")
            return (entry.id if entry.id is not None else str(index)), entry

        batch = batch_entries(list(entries), "publish_many", split)
        config = self._config()
        prepared, failed = prepare_entries(
            batch,
            lambda entry_id, entry: _prepare(
                self.fifo,
                config["content_based_dedup"],
                entry.body,
                entry.attributes,
                entry.subject,
                entry.group_id,
                entry.dedup_id,
                entry_id,
            ),
            "InvalidParameter",
        )
        total = sum(len(m.body) for m in prepared)
        if total > MESSAGE_BYTES_MAX:
            raise InvalidArgument(
                f"publish_many: {total} bytes in total, over {MESSAGE_BYTES_MAX} "
                "(BatchRequestTooLong)"
            )
        successful: list[tuple[str, PublishResult]] = []
        if prepared:
            results = self._publish(prepared)
            successful = [(m.entry_id, r) for m, r in zip(prepared, results, strict=True)]
        return PublishBatchResult(successful, failed)

    def _publish(self, messages: list[_Outgoing]) -> list[PublishResult]:
        _ = self.info  # cached now, so publish_in does not look it up inside the commit
        op = partial(self.publish_in, messages=messages)
        results: list[PublishResult] = self._logs.submit(op)
        return results

    def prepare_in(
        self, ctx: WriteContext, body: bytes | str, group_id: str | None, dedup_id: str | None
    ) -> _Outgoing:
        """`publish`'s checks of a message without attributes or subject,
        inside a commit, against the topic's configuration as this
        transaction sees it. Pure: writes nothing. Raises InvalidArgument,
        NotFound."""
        dedup_by_content = self._config_in(ctx)["content_based_dedup"]
        return _prepare(self.fifo, dedup_by_content, body, None, None, group_id, dedup_id)

    def publish_in(self, ctx: WriteContext, messages: Sequence[_Outgoing]) -> list[PublishResult]:
        """Publish prepared messages (`prepare_in`) and their fan-out inside
        another operation's commit, exactly as `publish_many` does in its own.

        For engine code that must land a publish with other writes in one
        commit (a continuous query's window output and its checkpoint).
        Raises NotFound if the topic was deleted.
        """
        info, name, arn, fifo, log_id = self.info, self.name, self.arn, self.fifo, self.log_id
        self._config_in(ctx)
        targets = _targets(ctx, name, log_id)
        results: list[PublishResult] = []
        now = ctx.now_ms
        if fifo:
            _expire_dedup(ctx, log_id, now)
        for message in messages:
            dkey = b""
            if fifo:
                assert message.dedup is not None
                dkey = U64.pack(log_id) + message.dedup.encode()
                raw = ctx.txn.get(dkey, db=ctx.db(DEDUP_DB))
                if raw is not None:
                    expires, offset, original = DEDUP.unpack(raw)
                    if expires > now:
                        results.append(
                            PublishResult(
                                str(uuid.UUID(bytes=original)),
                                f"{offset:020d}",
                                0,
                                duplicate=True,
                                offset=offset,
                            )
                        )
                        continue
            # Match first: the record carries the slots of the views it reaches.
            views: list[tuple[_Target, View, int]] = []  # target, view, queue delay
            copies: list[_Target] = []
            envelope_bytes = -1
            raw_bytes = len(message.body) + attributes_size(message.attributes)
            for target in targets:
                if not target.active:
                    continue
                policy = target.policy
                if policy is not None and not policy.matches(message.view(policy.scope)):
                    continue
                if target.slot is None:
                    copies.append(target)
                    continue
                found = view_target_in(ctx, target.queue, name, log_id, target.slot, target.id)
                if found is None:
                    continue  # the queue was deleted: not reached
                view, queue_config = found
                if not target.raw and envelope_bytes < 0:
                    envelope_bytes = len(
                        _envelope_template(
                            arn,
                            message.id_text,
                            message.text,
                            now,
                            message.subject,
                            message.attributes,
                            f"{ctx.ends(info).next_offset:020d}" if fifo else None,
                        ).encode()
                    )
                size = _formatted_size(target, raw_bytes, envelope_bytes)
                if size > queue_config.max_message_size:
                    continue  # as a send to that queue would fail
                views.append((target, view, queue_config.delay_ms))
            meta = message.meta
            if views:
                fields = dict(message.fields, v=[t.slot for t, _, _ in views])
                raw_slots = [t.slot for t, _, _ in views if t.raw]
                if raw_slots:
                    fields["vr"] = raw_slots
                delays = {str(t.slot): delay for t, _, delay in views if delay}
                if delays:
                    fields["vd"] = delays
                meta = _encode_meta(fields)
            offset = ctx.append(info, [message.body], [message.id], [meta])
            if views:
                count_slots_in(
                    ctx,
                    log_id,
                    [view.slot for _, view, _ in views],
                    [view.slot for _, view, delay in views if delay],
                )
            timestamp = ctx.ends(info).last_timestamp_ms
            sequence = f"{offset:020d}" if fifo else None
            if fifo:
                expires = now + DEDUP_WINDOW_MS
                ctx.txn.put(dkey, DEDUP.pack(expires, offset, message.id), db=ctx.db(DEDUP_DB))
                ctx.txn.put(
                    U64.pack(log_id) + U64.pack(expires) + dkey[8:],
                    b"",
                    db=ctx.db(DEDUP_EXPIRY_DB),
                )
            delivered = len(views)
            template: list[str | None] = [None]
            for target in copies:
                if _deliver_in(ctx, arn, target, message, timestamp, sequence, template):
                    delivered += 1
            results.append(PublishResult(message.id_text, sequence, delivered, offset=offset))
        return results

    # -- replay ---------------------------------------------------------------------------------

    def replay(
        self,
        subscription: Subscription | str,
        *,
        from_time: float,
        to_time: float | None = None,
    ) -> int:
        """Deliver the topic's retained history again to one subscription.

        Reads the topic log from the first message at or after `from_time`
        (seconds since the epoch; clamped to the topic's retention) up to
        `to_time` or the end when the call starts, applies the
        subscription's *current* filter policy, scope and raw flag, and
        appends each match to the subscription's queue (or delivery queue)
        with its original MessageId and Timestamp, REPLAY_BATCH per commit.
        FIFO replays keep group order and get fresh deduplication ids, so
        the queue does not drop them as duplicates. Each commit is atomic;
        the whole replay is not (a crash part way leaves earlier batches
        delivered; replay again from the same time for at-least-once).
        Returns the number of messages delivered. Raises NotFound.
        """
        sub = self.subscription(subscription)
        config = self._config()
        info = self.info
        now_ms = self._logs.now_ms()
        start_ms = int(from_time * 1000)
        start_ms = max(start_ms, now_ms - config["retention"] * 1000)
        start = offset_for_time(self._logs, info, start_ms)
        end = self._logs.ends(info).next_offset
        if config["retention"] == 0:
            start = end
        stop_ms = None if to_time is None else int(to_time * 1000)
        target = _Target(self.name, _sub_record(sub))
        target.active = True
        nonce = secrets.token_hex(4)
        delivered = 0
        batch: list[tuple[_Outgoing, int, int]] = []
        for record in self._logs.read(info, start, end):
            if record.offset < start:
                continue
            if stop_ms is not None and record.timestamp_ms > stop_ms:
                break
            meta = decode_meta(record.headers)
            message = _Outgoing(
                record.value,
                meta_attributes(meta),
                meta.get("s"),
                meta.get("g"),
                meta.get("dd"),
                message_id=record.key,
            )
            policy = target.policy
            if policy is not None and not policy.matches(message.view(policy.scope)):
                continue
            batch.append((message, record.offset, record.timestamp_ms))
            if len(batch) >= REPLAY_BATCH:
                delivered += self._replay_batch(target, batch, nonce)
                batch = []
        if batch:
            delivered += self._replay_batch(target, batch, nonce)
        return delivered

    def _replay_batch(
        self, target: _Target, batch: list[tuple[_Outgoing, int, int]], nonce: str
    ) -> int:
        arn, fifo = self.arn, self.fifo

        def op(ctx: WriteContext) -> int:
            self._config_in(ctx)
            count = 0
            for message, offset, timestamp in batch:
                sequence = f"{offset:020d}" if fifo else None
                dedup = f"{message.id.hex()}.replay.{nonce}" if fifo else None
                if _deliver_in(ctx, arn, target, message, timestamp, sequence, [None], dedup):
                    count += 1
            return count

        count: int = self._logs.submit(op)
        return count

    def messages(
        self,
        limit: int = 100,
        *,
        start_offset: int | None = None,
        from_time: float | None = None,
    ) -> list[PublishedMessage]:
        """Up to `limit` (1-1000) published messages of the retained history, oldest
        first, from `start_offset` or the first at or after `from_time` (seconds
        since the epoch), else from the oldest within the topic's retention.

        Reads the topic's log only: no subscription sees anything, nothing is
        written. Page on with `start_offset=messages[-1].offset + 1`. Raises
        InvalidArgument, NotFound, Corruption.
        """
        limit = check_int("limit", limit, 1, MESSAGES_PEEK_MAX)
        config = self._config()
        info = self.info
        logs = self._logs
        oldest_ms = logs.now_ms() - config["retention"] * 1000
        start = offset_for_time(logs, info, oldest_ms)
        if start_offset is not None:
            start = max(start, check_int("start_offset", start_offset, 0, 2**63 - 1))
        if from_time is not None:
            if not isinstance(from_time, int | float) or not math.isfinite(from_time):
                raise InvalidArgument(f"from_time: {from_time!r} is not a number of seconds")
            start = max(start, offset_for_time(logs, info, max(0, int(from_time * 1000))))
        end = logs.ends(info).next_offset
        out: list[PublishedMessage] = []
        for record in logs.read(info, start, end):
            if record.offset < start:
                continue
            meta = decode_meta(record.headers)
            out.append(
                PublishedMessage(
                    offset=record.offset,
                    id=str(uuid.UUID(bytes=record.key)) if len(record.key) == 16 else "",
                    body=record.value,
                    typed_attributes=meta_attributes(meta),
                    subject=meta.get("s"),
                    group_id=meta.get("g"),
                    dedup_id=meta.get("dd"),
                    sequence_number=f"{record.offset:020d}" if self.fifo else None,
                    published_at_ms=record.timestamp_ms,
                )
            )
            if len(out) >= limit:
                break
        return out


def _sub_record(sub: Subscription) -> dict[str, Any]:
    return {
        "id": sub.id,
        "protocol": sub.protocol,
        "endpoint": sub.endpoint,
        "delivery_queue": sub.delivery_queue,
        "filter_policy": sub.filter_policy,
        "filter_scope": sub.filter_scope,
        "raw": sub.raw,
        "status": sub.status,
    }


def _sub_id(subscription: Subscription | str) -> str:
    if isinstance(subscription, Subscription):
        return subscription.id
    if not isinstance(subscription, str):
        raise InvalidArgument("subscription: a Subscription, its id or its ARN")
    return subscription.rsplit(":", 1)[-1]


def _compile_policy(
    policy: Mapping[str, Any] | str | None, scope: FilterScope
) -> FilterPolicy | None:
    if scope not in ("attributes", "body"):
        raise InvalidArgument(f"filter_scope: {scope!r} is not 'attributes' or 'body'")
    if policy is None:
        return None
    compiled = FilterPolicy(policy, scope)
    return compiled if compiled.policy else None


def _dead_letter_name(store: Store, dead_letter: Queue | str | None) -> str | None:
    if dead_letter is None:
        return None
    name = dead_letter.name if isinstance(dead_letter, Queue) else dead_letter
    queue = store.queue(name)
    if queue.fifo:
        raise InvalidArgument("dead_letter: must be a standard queue")
    return name


def _expire_dedup(ctx: WriteContext, log_id: int, now: int) -> None:
    """Forget up to DEDUP_EXPIRE_PER_PUBLISH deduplication ids past their window."""
    expire_dedup_ids(ctx, DEDUP_DB, DEDUP_EXPIRY_DB, log_id, now, DEDUP_EXPIRE_PER_PUBLISH)


# -- store-level calls (Store's "topics" section delegates here) ----------------------------------


def create_topic(
    store: Store,
    name: str,
    *,
    fifo: bool = False,
    retention: int = RETENTION_SECONDS_DEFAULT,
    content_based_dedup: bool = False,
    display_name: str = "",
    exist_ok: bool = False,
) -> Topic:
    logs = store._logs
    check_topic_name(name, fifo)
    check_int("retention", retention, 0, RETENTION_SECONDS_MAX)
    if content_based_dedup and not fifo:
        raise InvalidArgument("content_based_dedup: FIFO topics only")
    if not isinstance(display_name, str) or len(display_name) > 100:
        raise InvalidArgument("display_name: at most 100 characters")
    data = {
        "fifo": fifo,
        "retention": retention,
        "content_based_dedup": content_based_dedup,
        "display_name": display_name,
    }

    def op(ctx: WriteContext) -> dict[str, Any]:
        existing = get_channel(logs, ctx.txn, "topic", name)
        if existing is not None:
            if exist_ok and all(existing.get(k) == v for k, v in data.items()):
                return existing
            raise AlreadyExists(f"topic {name!r}: already exists")
        info = logs.create_log_in(
            ctx,
            log_name("topic", name),
            segment_bytes_max=logs.segment_bytes_default,
            retention_ms=retention * 1000,
            retention_bytes=None,
            meta={"kind": "topic"},
            exist_ok=False,
        )
        config = dict(data, log_id=info.id, created_ms=ctx.now_ms, modified_ms=ctx.now_ms)
        put_channel(ctx, "topic", name, config)
        return config

    return Topic(store, name, logs.submit(op))


def get_topic(store: Store, name: str) -> Topic:
    if isinstance(name, str) and name.startswith("arn:"):
        name = name.rsplit(":", 1)[-1]
    config = read_channel(store._logs, "topic", name)
    if config is None:
        raise NotFound(f"topic {name!r}: not found (NotFound)")
    return Topic(store, name, config)


def list_topics(store: Store, prefix: str = "") -> list[Topic]:
    return [Topic(store, name, data) for name, data in list_channels(store._logs, "topic", prefix)]


def delete_topic(store: Store, name: str) -> None:
    logs = store._logs
    topic = get_topic(store, name)
    subs = topic.subscriptions()

    def op(ctx: WriteContext) -> None:
        config = get_channel(logs, ctx.txn, "topic", name)
        if config is None:
            raise NotFound(f"topic {name!r}: not found")
        prefix = U64.pack(config["log_id"])
        # Queues keep what their views were given: copied into their own logs.
        for queue, state_id in _views_of(ctx.txn, ctx.db(VIEWS_DB), config["log_id"]):
            absorb_view_in(ctx, queue, state_id)
        for db_name in (SUBSCRIPTIONS_DB, DEDUP_DB, DEDUP_EXPIRY_DB, VIEWS_DB, SLOT_TOTALS_DB):
            delete_prefix(ctx.txn, ctx.db(db_name), prefix)
        ctx.txn.delete(prefix, db=ctx.db(STATE_DB))
        delete_channel(ctx, "topic", name)
        logs.delete_log_in(ctx, log_name("topic", name))

    logs.submit(op)
    for sub in subs:
        _callbacks.pop((logs.path, sub.id), None)
        if sub.delivery_queue:
            with contextlib.suppress(NotFound):
                store.delete_queue(sub.delivery_queue)


def _views_of(txn: Any, db: Any, log_id: int) -> list[tuple[str, int]]:
    """(queue name, view id) of every view reading topic log `log_id`."""
    out: list[tuple[str, int]] = []
    if db is None:
        return out
    prefix = U64.pack(log_id)
    cursor = txn.cursor(db=db)
    if cursor.set_range(prefix):
        for key, value in cursor:
            if key[:8] != prefix:
                break
            out.append((bytes(value).decode(), KEY2.unpack(key)[1]))
    return out


def enforce_retention(store: Store, now_ms: int | None = None) -> int:
    """Apply each topic's retention to its log; returns segments deleted.

    A sealed segment goes once it is older than the topic's retention and
    every view reading the topic (subscribed queues, also unsubscribed ones
    not yet drained) has its head past it. One commit per topic.
    """
    logs = store._logs
    deleted = 0
    for topic in list_topics(store):

        def op(ctx: WriteContext, topic: Topic = topic) -> int:
            config = get_channel(logs, ctx.txn, "topic", topic.name)
            if config is None or config["log_id"] != topic.log_id:
                return 0
            info = topic.info
            now = ctx.now_ms if now_ms is None else now_ms
            cutoff = now - config["retention"] * 1000
            floor = ctx.ends(info).next_offset
            for _queue, state_id in _views_of(ctx.txn, ctx.db(VIEWS_DB), topic.log_id):
                raw = ctx.txn.get(U64.pack(state_id), db=ctx.db(QUEUE_STATE_DB))
                if raw is not None:
                    floor = min(floor, U64.unpack(raw[:8])[0])  # the view's head
            trim_to = 0
            for _base, row in ctx.sealed_segments(info):
                if row.end_offset > floor or row.last_timestamp_ms >= cutoff:
                    break
                trim_to = row.end_offset
            if not trim_to:
                return 0
            before = len(ctx.sealed_segments(info))
            ctx.trim_before(info, trim_to)
            return before - len(ctx.sealed_segments(info))

        try:
            deleted += logs.submit(op)
        except NotFound:
            continue  # deleted meanwhile
    return deleted


# -- delivery to callbacks and HTTP/S endpoints ---------------------------------------------------

_callbacks: dict[tuple[str, str], Callable[[Notification], Any]] = {}
_workers: dict[int, DeliveryWorker] = {}
_workers_lock = threading.Lock()


class DeliveryWorker:
    """Delivers callback and HTTP/S subscriptions' pending messages.

    One per Store handle (`store.start_topic_delivery()`), running in a
    daemon thread; `run_once()` does one pass in the caller's thread (for
    tests and scripts). Pending messages live in each subscription's
    delivery queue, so a worker in any process that opens the store picks
    them up, including after a crash; leases keep two workers from
    delivering one message at once (a worker dying mid-delivery means the
    message is delivered again after DELIVERY_LEASE_SECONDS). Callbacks are
    delivered only by the process that attached them.

    Counters: `delivered`, `failed_attempts`, `dead_lettered`, `dropped`.
    """

    def __init__(
        self, store: Store, *, poll_interval: float = 0.05, http_timeout: float = 15.0
    ) -> None:
        self._store = store
        self.poll_interval = poll_interval
        self.http_timeout = http_timeout
        self.delivered = 0
        self.failed_attempts = 0
        self.dead_lettered = 0
        self.dropped = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._queues: dict[str, Queue] = {}

    def start(self) -> DeliveryWorker:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._loop, name="tidelog-topic-delivery", daemon=True
            )
            self._thread.start()
        return self

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop the thread after its current delivery (blocks up to `timeout`)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                worked = self.run_once()
            except Error:
                if self._store._logs._closed:
                    return
                worked = 0
            if not worked:
                self._stop.wait(self.poll_interval)

    def _endpoint_subscriptions(self) -> list[Subscription]:
        logs = self._store._logs
        db = logs.database(SUBSCRIPTIONS_DB)
        topics = {data["log_id"]: name for name, data in list_channels(logs, "topic")}
        out: list[Subscription] = []
        with logs.env.begin() as txn:
            for key, value in txn.cursor(db=db):
                name = topics.get(U64.unpack_from(key)[0])
                if name is None:
                    continue
                data = json.loads(value)
                if data["protocol"] != "sqs":
                    out.append(_subscription(name, data))
        return out

    def _fresh(self, sub: Subscription) -> Subscription | None:
        logs = self._store._logs
        config = read_channel(logs, "topic", sub.topic)
        if config is None:
            return None
        with logs.env.begin() as txn:
            raw = txn.get(_sub_key(config["log_id"], sub.id), db=logs.database(SUBSCRIPTIONS_DB))
        return None if raw is None else _subscription(sub.topic, json.loads(raw))

    def run_once(self) -> int:
        """One pass over every endpoint subscription; returns the delivery
        attempts made. Blocks for the HTTP requests it makes."""
        attempts = 0
        path = self._store._logs.path
        for sub in self._endpoint_subscriptions():
            if self._stop.is_set():
                break
            if sub.protocol == "callback" and (path, sub.id) not in _callbacks:
                continue
            assert sub.delivery_queue is not None
            queue = self._queues.get(sub.delivery_queue)
            try:
                if queue is None:
                    queue = self._queues[sub.delivery_queue] = self._store.queue(sub.delivery_queue)
                if not queue._poll_state()[0]:
                    continue
                messages = queue.receive(10, wait=0, visibility_timeout=DELIVERY_LEASE_SECONDS)
            except NotFound:
                self._queues.pop(sub.delivery_queue, None)
                continue
            if messages:
                # The list above may predate a confirm or update that came
                # before these messages were published: read the record again.
                fresh = self._fresh(sub)
                if fresh is None:
                    continue  # unsubscribed meanwhile; its delivery queue goes too
                sub = fresh
            for message in messages:
                attempts += 1
                self._deliver(sub, queue, message)
        return attempts

    def _deliver(self, sub: Subscription, queue: Queue, message: Any) -> None:
        kind, _, message_id = (message.group_id or "Notification:").partition(":")
        policy = sub.delivery_policy or HTTP_RETRY_POLICY_DEFAULT
        attempts_max = 1 + policy["numRetries"]
        if message.receive_count > attempts_max:
            self._give_up(sub, queue, message)
            return
        if kind == "Notification" and not sub.confirmed:
            self.dropped += 1  # published while confirmed, then made pending: SNS drops
            queue.delete(message.receipt)
            return
        if sub.protocol == "callback":
            ok = self._call(sub, kind, message_id, message)
        else:
            ok = self._post(sub, kind, message_id, message)
        try:
            if ok:
                queue.delete(message.receipt)
                self.delivered += 1
            elif message.receive_count >= attempts_max:
                self._give_up(sub, queue, message)
            else:
                self.failed_attempts += 1
                queue.change_visibility(message.receipt, retry_delay(policy, message.receive_count))
        except (NotFound, Error):
            pass  # unsubscribed meanwhile, or a stale lease: the queue redelivers

    def _call(self, sub: Subscription, kind: str, message_id: str, message: Any) -> bool:
        function = _callbacks.get((self._store._logs.path, sub.id))
        if function is None:
            return False
        notification = Notification(
            message_id,
            kind,
            message.body,
            dict(message.typed_attributes),
            sub.arn,
            topic_arn(sub.topic),
            message.receive_count,
        )
        try:
            function(notification)
        except Exception:  # noqa: BLE001 - any failure of user code means "retry"
            return False
        return True

    def _post(self, sub: Subscription, kind: str, message_id: str, message: Any) -> bool:
        headers = {
            "Content-Type": "text/plain; charset=UTF-8",
            "User-Agent": "Amazon Simple Notification Service Agent",
            "x-amz-sns-message-type": kind,
            "x-amz-sns-message-id": message_id,
            "x-amz-sns-topic-arn": topic_arn(sub.topic),
        }
        if kind == "Notification":
            headers["x-amz-sns-subscription-arn"] = sub.arn
            if sub.raw:
                headers["x-amz-sns-rawdelivery"] = "true"
        request = urllib.request.Request(sub.endpoint, data=message.body, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.http_timeout) as response:
                status: int = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except (OSError, ValueError):
            return False
        return 200 <= status < 300

    def _give_up(self, sub: Subscription, queue: Queue, message: Any) -> None:
        if sub.dead_letter:
            try:
                self._store.queue(sub.dead_letter).send(
                    message.body, message.typed_attributes or None
                )
                self.dead_lettered += 1
            except (NotFound, InvalidArgument):
                self.dropped += 1
        else:
            self.dropped += 1
        queue.delete(message.receipt)  # counted above: a crash here re-sends to the DLQ


def start_delivery(store: Store, **options: Any) -> DeliveryWorker:
    """The store handle's delivery worker, started if it is not running."""
    with _workers_lock:
        worker = _workers.get(id(store))
        if worker is None or worker._store is not store:
            worker = _workers[id(store)] = DeliveryWorker(store, **options)
        for name, value in options.items():
            setattr(worker, name, value)
        return worker.start()


def stop_delivery(store: Store) -> None:
    """Stop the store handle's delivery worker, if any (Store.close calls this)."""
    with _workers_lock:
        worker = _workers.pop(id(store), None)
    if worker is not None:
        worker.stop()


__all__ = [
    "DeliveryWorker",
    "FilterPolicy",
    "Notification",
    "PublishBatchResult",
    "PublishEntry",
    "PublishFailure",
    "PublishResult",
    "Subscription",
    "Topic",
    "check_retry_policy",
    "notification_envelope",
    "retry_delay",
]
