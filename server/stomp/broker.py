"""The STOMP broker: an asyncio socket server over the engine's queues and topics.

One asyncio loop serves every connection; engine calls block (fsync, LMDB
commits, long polls), so they run in a thread pool. Each subscription has
one task that long-polls its tidelog queue (a real receive with `wait`, so
an idle subscription costs no CPU) and writes MESSAGE frames. What each
STOMP notion maps onto is in docs/stomp.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import tidelog
from tidelog import queues as engine_queues
from tidelog.queues import Message, Queue
from tidelog.segments.writer import WriteContext
from tidelog.server.stomp.frames import (
    COMMANDS_CLIENT,
    Frame,
    FrameError,
    FrameLimits,
    encode,
    parse_decimal,
    read_frame,
)
from tidelog.server.stomp.leases import LeaseJournal, reclaim_dead, session_alive
from tidelog.server.stomp.selector import Headers, SelectorError, compile_selector
from tidelog.topics import Topic, check_topic_name

T = TypeVar("T")
log = logging.getLogger("tidelog.server.stomp")

VERSIONS = ("1.0", "1.1", "1.2")
HEADERS_ATTRIBUTE = "stomp-headers"
DLQ_NAME = "ActiveMQ.DLQ"
DURABLE_PREFIX = "stomp-durable-"
TEMPORARY_PREFIX = "stomp-tmp-"
SERVER_NAME = f"tidelog/{tidelog.__version__}" if hasattr(tidelog, "__version__") else "tidelog"
# Headers that steer one frame and are not kept with the message.
_FRAME_HEADERS = frozenset(
    {"destination", "content-length", "receipt", "transaction", "AMQ_SCHEDULED_DELAY"}
)
_ACK_MODES = ("auto", "client", "client-individual")
_PRIORITY_DEFAULT = 4
_PREFETCH_MAX = 32767  # ActiveMQ's ceiling (Short.MAX_VALUE); larger asks get this
_PRIORITIES = frozenset("0123456789")
_BATCH_MAX = 500  # fire-and-forget SENDs committed together at most


class StompError(Exception):
    """A client error: answered with an ERROR frame, then the connection closes."""


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """Settings of one broker.

    heart_beat_min_ms: the shortest heart-beat interval the broker agrees to,
    either way; CONNECTED otherwise answers the client's heart-beat header
    as ActiveMQ does (see docs/stomp.md). heart_beat_grace: a client silent
    for this many times the interval it promised is dropped (ActiveMQ's
    hbGracePeriodMultiplier). lease_seconds: how long a
    delivered, unacked message stays leased if the broker dies; leases of
    live connections are renewed. users: login -> passcode, or None for no
    authentication. reclaim_seconds: how often the broker looks for other
    brokers on the store that are gone, to release their leases at once.
    """

    heart_beat_min_ms: int = 100
    heart_beat_grace: float = 1.5
    lease_seconds: int = 300
    prefetch_default: int = 1000
    poll_wait_seconds: float = 1.0
    users: dict[str, str] | None = None
    limits: FrameLimits = field(default_factory=FrameLimits)
    threads: int = 128
    reclaim_seconds: float = 2.0


def load_users(path: str | Path) -> dict[str, str]:
    """Read `login:passcode` lines (blank lines and # comments skipped).

    Raises InvalidArgument naming the line for a line without a colon.
    """
    users: dict[str, str] = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        login, colon, passcode = text.partition(":")
        if not colon:
            raise tidelog.InvalidArgument(f"{path}:{number}: expected login:passcode")
        users[login] = passcode
    return users


def queue_name(name: str, kind: str = "queue") -> str:
    """The tidelog queue (or, for kind "topic", topic) name of an ActiveMQ name.

    tidelog names are SQS's and SNS's (A-Z a-z 0-9 _ -); ActiveMQ's often
    hold dots, which separate the parts of a name and become hyphens:
    /queue/orders.new is queue "orders-new" (so "orders.new" and
    "orders-new" are one queue). Raises StompError for an empty part
    ("..", ".a", "a.") and for other characters, naming the kind.
    """
    parts = name.split(".")
    if "" in parts:
        raise StompError(f"destination name {name!r}: a dot must separate two non-empty parts")
    mapped = "-".join(parts)
    try:
        if kind == "topic":
            return check_topic_name(mapped, False)
        return engine_queues.check_queue_name(mapped, False)
    except tidelog.InvalidArgument as exc:
        raise StompError(f"destination name {name!r}: {exc}") from exc


def _durable_name(client_id: str, subscription: str) -> str:
    digest = hashlib.sha256(f"{client_id}\0{subscription}".encode()).hexdigest()[:12]
    readable = "".join(
        c if c.isalnum() or c in "_-" else "-" for c in f"{client_id}-{subscription}"
    )
    return f"{DURABLE_PREFIX}{readable[:50]}-{digest}"


def _stored_headers(message: Message) -> dict[str, str]:
    """The STOMP headers a message carries, from STOMP or from SQS/SNS attributes."""
    headers: dict[str, str] = {}
    for name, value in message.attributes.items():
        if name == HEADERS_ATTRIBUTE and isinstance(value, str):
            with contextlib.suppress(ValueError):
                headers.update(json.loads(value))
        elif not isinstance(value, bytes):
            headers.setdefault(name, str(value))
    return headers


def _selector_view(headers: dict[str, str], message_id: str, timestamp_ms: int) -> Headers:
    view: dict[str, Any] = dict(headers)
    view["JMSMessageID"] = message_id
    view["JMSTimestamp"] = timestamp_ms
    view["JMSCorrelationID"] = headers.get("correlation-id")
    view["JMSType"] = headers.get("type")
    view["JMSPriority"] = _int(headers.get("priority"), _PRIORITY_DEFAULT)
    view["JMSExpiration"] = _int(headers.get("expires"), 0)
    view["JMSDeliveryMode"] = (
        "NON_PERSISTENT" if headers.get("persistent") == "false" else "PERSISTENT"
    )
    return view


def _int(text: str | None, default: int) -> int:
    """A stored header as a number, `default` when absent or not ASCII digits."""
    try:
        return parse_decimal(text, "") if text is not None else default
    except FrameError:
        return default


@dataclass(slots=True)
class _Pending:
    """A delivered message awaiting ACK or NACK."""

    ack_id: str
    message_id: str
    subscription: _Subscription
    message: Message
    headers: dict[str, str]


@dataclass(slots=True)
class _Subscription:
    id: str
    destination: str
    queue: Queue
    ack: str
    prefetch: int
    selector: Callable[[Headers], bool] | None
    owned: bool  # the copy is this subscription's (topics): a non-match is dropped
    temporary: Topic | None = None
    subscription_arn: str | None = None
    unacked: dict[str, _Pending] = field(default_factory=dict)
    room: asyncio.Event = field(default_factory=asyncio.Event)
    active: bool = True
    task: asyncio.Task[None] | None = None
    deleting: asyncio.Future[None] | None = None


class Broker:
    """A STOMP server over an open store (which the caller owns).

    `start` binds and serves on the running loop; `stop` closes every
    connection (releasing unacked messages for redelivery) and the listener.
    """

    def __init__(self, store: tidelog.Store, config: BrokerConfig | None = None) -> None:
        self.store = store
        self.config = config or BrokerConfig()
        self.executor = ThreadPoolExecutor(self.config.threads, thread_name_prefix="tidelog-stomp")
        self.connections: set[Connection] = set()
        self.client_ids: dict[str, Connection] = {}
        self._queues: dict[str, Queue] = {}
        self._topics: dict[str, Topic] = {}
        self._server: asyncio.Server | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._reclaimer: asyncio.Task[None] | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self._ids = itertools.count(1)
        self.session_prefix = uuid.uuid4().hex[:12]
        self.leases = LeaseJournal(store.path, self.session_prefix)

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, lambda: fn(*args, **kwargs))

    async def start(self, sock: Any) -> None:
        """Serve on a bound, listening socket (see tidelog.server.run.bind).

        First takes this broker's lease journal and releases what brokers
        that are gone left leased (see leases.py), so their unacknowledged
        messages go at once to the next subscriber.
        """
        await self.call(self._claim)
        self._server = await asyncio.start_server(
            self._accept, sock=sock, limit=self.config.limits.body_bytes_max + 2
        )
        self._renewer = asyncio.create_task(self._renew_leases())
        self._reclaimer = asyncio.create_task(self._reclaim_periodically())

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in (self._renewer, self._reclaimer):
            if task is not None:
                task.cancel()
        for connection in list(self.connections):
            await connection.close()
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=10)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.leases.close()

    # -- brokers that are gone ------------------------------------------------------------

    def _claim(self) -> None:
        self.leases.open()
        self._reclaim()
        # Temporary queues named for no live broker (one that died before
        # its journal existed, or a tidelog before journals): nobody can
        # ever read them.
        self._remove_temporaries(
            lambda session: not session_alive(self.store.path, session), TEMPORARY_PREFIX
        )

    def _reclaim(self) -> None:
        for session in reclaim_dead(self.store.path, self._release_receipts, self._forget_session):
            log.info("STOMP: released the leases of broker session %s, which is gone", session)

    async def _reclaim_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.config.reclaim_seconds)
            try:
                await self.call(self._reclaim)
            except Exception:
                log.exception("STOMP: reclaiming the leases of gone brokers failed")

    def _release_receipts(self, name: str, receipts: Sequence[str]) -> None:
        try:
            queue = self.store.queue(name)
        except tidelog.NotFound:
            return
        for start in range(0, len(receipts), 10):
            with contextlib.suppress(tidelog.Error):
                queue.change_visibility_many([(r, 0) for r in receipts[start : start + 10]])

    def _forget_session(self, session: str) -> None:
        self._remove_temporaries(lambda _: True, f"{TEMPORARY_PREFIX}{session}-")

    def _remove_temporaries(self, gone: Callable[[str], bool], prefix: str) -> None:
        """Delete the temporary queues under `prefix` whose broker session is `gone`.

        A temporary queue is named stomp-tmp-<session>-<random>: each broker
        deletes only its own, or those of brokers that are gone, so several
        brokers can serve one store (docs/stomp.md).
        """

        def session_of(name: str) -> str:
            return name[len(TEMPORARY_PREFIX) :].partition("-")[0]

        for topic in self.store.topics():
            for subscription in topic.subscriptions():
                endpoint = subscription.endpoint
                if (
                    subscription.protocol == "sqs"
                    and endpoint.startswith(prefix)
                    and gone(session_of(endpoint))
                ):
                    with contextlib.suppress(tidelog.NotFound):
                        topic.unsubscribe(subscription)
        for queue in self.store.queues(prefix):
            if gone(session_of(queue.name)):
                with contextlib.suppress(tidelog.NotFound):
                    self.store.delete_queue(queue.name)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = Connection(self, reader, writer)
        self.connections.add(connection)
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            await connection.run()
        finally:
            self.connections.discard(connection)
            if task is not None:
                self._handlers.discard(task)

    async def _renew_leases(self) -> None:
        interval = max(1.0, self.config.lease_seconds / 3)
        while True:
            await asyncio.sleep(interval)
            for connection in list(self.connections):
                for subscription in list(connection.subscriptions.values()):
                    receipts = [p.message.receipt for p in subscription.unacked.values()]
                    for start in range(0, len(receipts), 10):
                        chunk = [
                            (receipt, self.config.lease_seconds)
                            for receipt in receipts[start : start + 10]
                        ]
                        with contextlib.suppress(tidelog.Error):
                            await self.call(subscription.queue.change_visibility_many, chunk)

    # -- engine handles ---------------------------------------------------------------

    def queue(self, name: str) -> Queue:
        """The queue, created on first use as ActiveMQ does (call in a worker thread)."""
        queue = self._queues.get(name)
        if queue is None:
            # Look up first: a queue made over SQS with other attributes is
            # used as it is (create with exist_ok would refuse it).
            try:
                queue = self.store.queue(name)
            except tidelog.NotFound:
                try:
                    queue = self.store.create_queue(name, exist_ok=True)
                except tidelog.AlreadyExists:
                    queue = self.store.queue(name)
            self._queues[name] = queue
        return queue

    def topic(self, name: str) -> Topic:
        topic = self._topics.get(name)
        if topic is None:
            try:
                topic = self.store.topic(name)
            except tidelog.NotFound:
                try:
                    topic = self.store.create_topic(name, exist_ok=True)
                except tidelog.AlreadyExists:
                    topic = self.store.topic(name)
            self._topics[name] = topic
        return topic

    def forget(self, name: str) -> None:
        self._queues.pop(name, None)

    def commit(
        self,
        sends: Sequence[tuple[Queue, Any]],
        deletes: Sequence[tuple[Queue, str]],
    ) -> None:
        """Queue sends (prepared messages) and deletes (receipts) in one commit.

        This is what makes a STOMP transaction atomic: the engine's queue
        operations composed into one op of the log layer, so the whole set
        lands in one LMDB commit or none of it does.
        """
        parsed: dict[Queue, list[str]] = {}
        for queue, receipt in deletes:
            parsed.setdefault(queue, []).append(receipt)

        def op(ctx: WriteContext) -> None:
            for queue, message in sends:
                engine_queues.send_in(ctx, queue, [message])
            for queue, receipts in parsed.items():
                engine_queues.delete_in(ctx, queue, receipts)

        if sends or parsed:
            self.store._logs.submit(op)
        for queue, receipt in deletes:
            self.leases.discard(queue.name, [receipt])

    def receive(self, queue: Queue, count: int) -> list[Message]:
        """Lease up to `count` messages for delivery, journaled (see leases.py)."""
        messages = queue.receive(
            count, wait=self.config.poll_wait_seconds, visibility_timeout=self.config.lease_seconds
        )
        self.leases.add(queue.name, [m.receipt for m in messages])
        return messages

    def release(self, queue: Queue, messages: Sequence[Message]) -> None:
        """Make leased messages visible again at once, for the next subscriber."""
        entries = [(m.receipt, 0) for m in messages]
        for start in range(0, len(entries), 10):
            with contextlib.suppress(tidelog.Error):
                queue.change_visibility_many(entries[start : start + 10])
        self.leases.discard(queue.name, [m.receipt for m in messages])

    def delete_leased(self, queue: Queue, messages: Sequence[Message]) -> None:
        for start in range(0, len(messages), 10):
            queue.delete_many([m.receipt for m in messages[start : start + 10]])
        self.leases.discard(queue.name, [m.receipt for m in messages])


class Connection:
    """One client connection: its frames in order, its subscriptions, its transactions."""

    def __init__(
        self, broker: Broker, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.broker = broker
        self.reader = reader
        self.writer = writer
        self.version = "1.2"
        self.connected = False
        self.client_id: str | None = None
        self.subscriptions: dict[str, _Subscription] = {}
        self.pending: dict[str, _Pending] = {}
        self.transactions: dict[str, list[tuple[str, Any]]] = {}
        self.session = f"ID:tidelog-{broker.session_prefix}-{next(broker._ids)}"
        self._acks = itertools.count(1)
        self.last_read = time.monotonic()
        self._heart_tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self._close_done = asyncio.Event()
        self._batch: list[tuple[str, str, bytes, dict[str, str], int | None]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._send_failure: Exception | None = None

    # -- the read loop ------------------------------------------------------------------

    async def run(self) -> None:
        limits = self.broker.config.limits
        try:
            while not self._closed:
                try:
                    frame = await read_frame(self.reader, self.version, limits)
                except (asyncio.IncompleteReadError, ConnectionError):
                    break
                self.last_read = time.monotonic()
                if frame is None:
                    continue
                if await self.handle(frame) is False:
                    break
        except FrameError as exc:
            await self.error(str(exc), exc.receipt)
        except Exception as exc:
            log.exception("STOMP: reading a frame failed")
            await self.error(f"internal error reading a frame ({type(exc).__name__})", None)
        finally:
            await self.close()

    async def handle(self, frame: Frame) -> bool:
        """Process one frame; False ends the connection.

        Every failure is answered with an ERROR frame before the close, a
        bug of the broker's included (logged, and reported as an internal
        error): a client never sees its connection dropped without a word.
        """
        receipt = frame.headers.get("receipt")
        try:
            if frame.command not in COMMANDS_CLIENT:
                raise StompError(f"unknown command {frame.command[:64]!r}")
            if not self.connected:
                if frame.command not in ("CONNECT", "STOMP"):
                    raise StompError(f"{frame.command} before CONNECT")
                await self.on_connect(frame)
                return True
            if frame.command in ("CONNECT", "STOMP"):
                raise StompError(f"{frame.command}: already connected")
            if frame.command != "SEND" or "receipt" in frame.headers:
                await self._flush_wait()
            handler = getattr(self, "on_" + frame.command.lower())
            keep: bool = await handler(frame)
        except (StompError, SelectorError, FrameError) as exc:
            await self.error(str(exc), receipt)
            return False
        except tidelog.Error as exc:
            await self.error(f"{frame.command}: {exc}", receipt)
            return False
        except ConnectionError:
            return False
        except Exception as exc:
            log.exception("STOMP %s failed", frame.command)
            await self.error(f"{frame.command}: internal error ({type(exc).__name__})", receipt)
            return False
        if receipt is not None:
            await self.send_frame(Frame("RECEIPT", {"receipt-id": receipt}))
        return keep

    async def error(self, message: str, receipt: str | None) -> None:
        headers = {"message": message.splitlines()[0][:200], "content-type": "text/plain"}
        if receipt is not None:
            headers["receipt-id"] = receipt
        with contextlib.suppress(Exception):
            await self.send_frame(Frame("ERROR", headers, message.encode()))

    async def send_frame(self, frame: Frame) -> None:
        if self._closed:
            return
        self.writer.write(encode(frame, self.version))
        await self.writer.drain()

    def _require(self, frame: Frame, *names: str) -> list[str]:
        values = []
        for name in names:
            value = frame.headers.get(name)
            if value is None:
                raise StompError(f"{frame.command}: missing the {name!r} header")
            values.append(value)
        return values

    # -- connecting and heart-beats ----------------------------------------------------

    async def on_connect(self, frame: Frame) -> None:
        offered = frame.headers.get("accept-version", "1.0").split(",")
        common = [v for v in VERSIONS if v in (o.strip() for o in offered)]
        if not common:
            self.version = "1.2"
            raise StompError("Supported protocol versions are " + ",".join(VERSIONS))
        self.version = common[-1]
        users = self.broker.config.users
        if users is not None:
            login = frame.headers.get("login", "")
            if users.get(login) != frame.headers.get("passcode"):
                raise StompError(f"User name [{login}] or password is invalid.")
        client_id = frame.headers.get("client-id")
        if client_id is not None:
            if client_id in self.broker.client_ids:
                raise StompError(
                    f"Broker: tidelog - Client: {client_id} already connected (InvalidClientID)"
                )
            self.broker.client_ids[client_id] = self
            self.client_id = client_id
        send_ms, expect_ms = self._heart_beats(frame.headers.get("heart-beat", "0,0"))
        headers = {
            "version": self.version,
            "session": self.session,
            "server": "tidelog",
            "heart-beat": f"{send_ms},{expect_ms}",
        }
        self.connected = True
        await self.send_frame(Frame("CONNECTED", headers))
        if send_ms:
            self._heart_tasks.append(asyncio.create_task(self._beat(send_ms / 1000)))
        if expect_ms:
            self._heart_tasks.append(asyncio.create_task(self._watch(expect_ms / 1000)))

    def _heart_beats(self, text: str) -> tuple[int, int]:
        """(send every, expect every) in ms for the client's `cx,cy`.

        As ActiveMQ 5.17: the broker beats as often as the client wants (cy)
        and expects beats as often as the client promises (cx), so CONNECTED
        answers `cy,cx`; 0 turns a direction off, and so does no header.
        Intervals under heart_beat_min_ms are raised to it.
        """
        parts = text.split(",")
        if len(parts) != 2:
            raise StompError(f"heart-beat {text[:40]!r}: expected two numbers, cx,cy")
        client_send, client_want = (parse_decimal(p.strip(), "heart-beat") for p in parts)
        floor = self.broker.config.heart_beat_min_ms
        return (max(client_want, floor) if client_want else 0), (
            max(client_send, floor) if client_send else 0
        )

    async def _beat(self, interval: float) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            while not self._closed:
                await asyncio.sleep(interval)
                self.writer.write(b"\n")
                await self.writer.drain()

    async def _watch(self, interval: float) -> None:
        # A client silent for grace x the interval it promised is gone
        # (ActiveMQ's read check, with its default multiplier of 1.5).
        allowed = interval * self.broker.config.heart_beat_grace
        while not self._closed:
            silent = time.monotonic() - self.last_read
            if silent > allowed:
                why = (
                    f"heart-beat: nothing received for {silent:.1f} s"
                    f" (promised every {interval * 1000:.0f} ms)"
                )
                log.info("STOMP %s: %s, dropped", self.session, why)
                await self.error(why, None)
                await self.close()
                return
            await asyncio.sleep(min(interval / 2, allowed - silent + 0.01))

    async def on_disconnect(self, frame: Frame) -> bool:
        return False  # `handle` sends the RECEIPT, then the connection closes

    # -- sending -----------------------------------------------------------------------

    def _destination(self, destination: str) -> tuple[str, str]:
        for prefix, kind in (("/queue/", "queue"), ("/topic/", "topic")):
            if destination.startswith(prefix) and len(destination) > len(prefix):
                return kind, queue_name(destination[len(prefix) :], kind)
        raise StompError(f"destination {destination!r}: tidelog serves /queue/NAME and /topic/NAME")

    def _outgoing(self, frame: Frame) -> tuple[dict[str, str], int | None]:
        headers = {k: v for k, v in frame.headers.items() if k not in _FRAME_HEADERS}
        delay = None
        scheduled = frame.headers.get("AMQ_SCHEDULED_DELAY")
        if scheduled is not None:
            delay_ms = parse_decimal(scheduled, "AMQ_SCHEDULED_DELAY (ms)")
            # The engine delays in whole seconds, at most 15 minutes (SQS's limit).
            delay = min(900, -(-delay_ms // 1000))
        priority = headers.get("priority")
        if priority is not None and priority not in _PRIORITIES:
            raise StompError(f"priority {priority[:40]!r}: must be one digit, 0-9")
        return headers, delay

    def _prepare_send(self, frame: Frame) -> tuple[str, str, bytes, dict[str, str], int | None]:
        (destination,) = self._require(frame, "destination")
        kind, name = self._destination(destination)
        headers, delay = self._outgoing(frame)
        headers["stomp-destination"] = destination
        return kind, name, frame.body, headers, delay

    def _send_now(
        self, kind: str, name: str, body: bytes, headers: dict[str, str], delay: int | None
    ) -> None:
        attributes = {HEADERS_ATTRIBUTE: json.dumps(headers, separators=(",", ":"))}
        if kind == "queue":
            self.broker.queue(name).send(body, attributes, delay=delay)
        else:
            try:
                text = body.decode()
            except UnicodeDecodeError as exc:
                raise StompError("topic messages must be UTF-8 text (SNS's rule)") from exc
            self.broker.topic(name).publish(text, attributes)

    async def on_send(self, frame: Frame) -> bool:
        prepared = self._prepare_send(frame)
        transaction = frame.headers.get("transaction")
        if transaction is not None:
            self._transaction(transaction).append(("send", prepared))
            return True
        if prepared[0] == "queue" and "receipt" not in frame.headers:
            # Fire-and-forget sends are batched: whatever arrives while one
            # commit runs goes into the next, so a fast producer pays one
            # durable commit per batch instead of one per message. Order is
            # kept: batches commit one after another, and every other frame
            # waits for the batch before it (see `handle`).
            self._batch.append(prepared)
            if self._flusher is None or self._flusher.done():
                self._flusher = asyncio.create_task(self._flush())
            if len(self._batch) >= _BATCH_MAX:
                await self._flush_wait()
            return True
        await self.broker.call(self._send_now, *prepared)
        return True

    async def _flush(self) -> None:
        while self._batch and self._send_failure is None:
            batch, self._batch = self._batch[:_BATCH_MAX], self._batch[_BATCH_MAX:]
            try:
                await self.broker.call(self._send_batch, batch)
            except (StompError, tidelog.Error) as exc:
                self._send_failure = exc
                self._batch.clear()
                # Nothing may follow from the client to report this on: say
                # it now and close, as for any other failed frame.
                await self.error(f"SEND: {exc}", None)
                self.writer.close()

    async def _flush_wait(self) -> None:
        flusher = self._flusher
        if flusher is not None and flusher is not asyncio.current_task():
            await flusher
        failure, self._send_failure = self._send_failure, None
        if failure is not None:
            raise StompError(f"SEND: {failure}")

    def _send_batch(
        self, batch: Sequence[tuple[str, str, bytes, dict[str, str], int | None]]
    ) -> None:
        sends: list[tuple[Queue, Any]] = []
        try:
            for _, name, body, headers, delay in batch:
                queue = self.broker.queue(name)
                attributes = {HEADERS_ATTRIBUTE: json.dumps(headers, separators=(",", ":"))}
                sends.append((queue, queue.prepare(body, attributes, delay=delay)))
        finally:
            self.broker.commit(sends, [])  # the valid ones before a bad one still land

    # -- subscribing ---------------------------------------------------------------------

    async def on_subscribe(self, frame: Frame) -> bool:
        (destination,) = self._require(frame, "destination")
        if self.version == "1.0":
            sub_id = frame.headers.get("id", destination)
        else:
            (sub_id,) = self._require(frame, "id")
        if sub_id in self.subscriptions:
            raise StompError(f"SUBSCRIBE: subscription id {sub_id!r} is already in use")
        ack = frame.headers.get("ack", "auto")
        if ack not in _ACK_MODES:
            raise StompError(f"SUBSCRIBE: ack {ack!r} is not auto, client or client-individual")
        selector_text = frame.headers.get("selector")
        selector = compile_selector(selector_text) if selector_text else None
        prefetch_text = frame.headers.get("activemq.prefetchSize")
        prefetch = self.broker.config.prefetch_default
        if prefetch_text is not None:
            prefetch = min(parse_decimal(prefetch_text, "activemq.prefetchSize"), _PREFETCH_MAX)
            if prefetch < 1:
                raise StompError(f"activemq.prefetchSize {prefetch_text!r}: must be 1 or more")
        kind, name = self._destination(destination)
        durable = frame.headers.get("activemq.subscriptionName") or frame.headers.get(
            "durable-subscription-name"
        )
        subscription = await self.broker.call(
            self._open_subscription,
            sub_id,
            destination,
            kind,
            name,
            ack,
            prefetch,
            selector,
            durable,
        )
        self.subscriptions[sub_id] = subscription
        subscription.task = asyncio.create_task(self._deliver(subscription))
        return True

    def _open_subscription(
        self,
        sub_id: str,
        destination: str,
        kind: str,
        name: str,
        ack: str,
        prefetch: int,
        selector: Callable[[Headers], bool] | None,
        durable: str | None,
    ) -> _Subscription:
        if kind == "queue":
            return _Subscription(sub_id, destination, self.broker.queue(name), ack, prefetch,
                                 selector, owned=False)  # fmt: skip
        topic = self.broker.topic(name)
        if durable is not None:
            if self.client_id is None:
                raise StompError("a durable subscription needs client-id on CONNECT")
            queue = self.broker.queue(_durable_name(self.client_id, durable))
            arn = topic.subscribe(queue, raw=True).arn
            return _Subscription(sub_id, destination, queue, ack, prefetch, selector,
                                 owned=True, subscription_arn=arn)  # fmt: skip
        queue = self.broker.store.create_queue(
            f"{TEMPORARY_PREFIX}{self.broker.session_prefix}-{uuid.uuid4().hex[:16]}"
        )
        arn = topic.subscribe(queue, raw=True).arn
        return _Subscription(sub_id, destination, queue, ack, prefetch, selector,
                             owned=True, temporary=topic, subscription_arn=arn)  # fmt: skip

    async def on_unsubscribe(self, frame: Frame) -> bool:
        sub_id = frame.headers.get("id")
        if sub_id is None and self.version == "1.0":
            sub_id = frame.headers.get("destination")
        if sub_id is None:
            raise StompError("UNSUBSCRIBE: missing the 'id' header")
        subscription = self.subscriptions.pop(sub_id, None)
        durable = frame.headers.get("activemq.subscriptionName") or frame.headers.get(
            "durable-subscription-name"
        )
        if subscription is not None:
            await self._end(subscription)
        if durable is not None:
            # ActiveMQ: UNSUBSCRIBE naming the durable subscription deletes it;
            # a plain UNSUBSCRIBE (or a disconnect) only deactivates it.
            if self.client_id is None:
                raise StompError("UNSUBSCRIBE of a durable subscription needs client-id")
            await self.broker.call(self._delete_durable, self.client_id, durable)
        elif subscription is None:
            raise StompError(f"UNSUBSCRIBE: no subscription with id {sub_id!r}")
        return True

    def _delete_durable(self, client_id: str, durable: str) -> None:
        name = _durable_name(client_id, durable)
        for topic in self.broker.store.topics():
            for subscription in topic.subscriptions():
                if subscription.protocol == "sqs" and subscription.endpoint == name:
                    topic.unsubscribe(subscription)
        self.broker.forget(name)
        with contextlib.suppress(tidelog.NotFound):
            self.broker.store.delete_queue(name)

    async def _end(self, subscription: _Subscription) -> None:
        """Stop delivering; unacked messages go back for redelivery."""
        subscription.active = False
        subscription.room.set()
        if subscription.task is not None:
            # Not cancelled: a receive already running in a worker thread
            # would lease messages nobody then releases. The task sees
            # `active` turn False after at most one long poll and hands back
            # whatever that poll took.
            with contextlib.suppress(Exception):
                await subscription.task
        if subscription.deleting is not None:
            with contextlib.suppress(Exception):
                await subscription.deleting
        pending = list(subscription.unacked.values())
        subscription.unacked.clear()
        for item in pending:
            self.pending.pop(item.ack_id, None)
            self.pending.pop(item.message_id, None)
        await self.broker.call(self._release, subscription, [p.message for p in pending])
        if subscription.temporary is not None:
            await self.broker.call(self._drop_temporary, subscription)

    def _release(self, subscription: _Subscription, messages: Sequence[Message]) -> None:
        self.broker.release(subscription.queue, messages)

    def _drop_temporary(self, subscription: _Subscription) -> None:
        topic = subscription.temporary
        if topic is not None and subscription.subscription_arn is not None:
            with contextlib.suppress(tidelog.Error):
                topic.unsubscribe(subscription.subscription_arn)
        with contextlib.suppress(tidelog.Error):
            self.broker.store.delete_queue(subscription.queue.name)

    # -- delivering ---------------------------------------------------------------------

    async def _deliver(self, subscription: _Subscription) -> None:
        config = self.broker.config
        idle = 0.0
        while subscription.active and not self._closed:
            room = subscription.prefetch - len(subscription.unacked)
            if subscription.ack != "auto" and room <= 0:
                subscription.room.clear()
                await subscription.room.wait()
                continue
            want = max(1, min(10, room))
            try:
                messages = await self.broker.call(self.broker.receive, subscription.queue, want)
            except tidelog.NotFound:
                # The queue was deleted under us (over SQS, say): ActiveMQ
                # recreates a destination on use, and so does this.
                await asyncio.sleep(config.poll_wait_seconds)
                name = subscription.queue.name
                self.broker.forget(name)
                subscription.queue = await self.broker.call(self.broker.queue, name)
                continue
            if not subscription.active or self._closed:
                await self.broker.call(self._release, subscription, messages)
                return
            delivered = await self._dispatch(subscription, messages)
            if messages and not delivered:
                # Only messages this selector declines: leave them to other
                # consumers for a moment instead of taking them back at once.
                idle = min(1.0, idle * 2 or 0.05)
                await asyncio.sleep(idle)
            else:
                idle = 0.0

    async def _dispatch(self, subscription: _Subscription, messages: Sequence[Message]) -> int:
        now_ms = int(time.time() * 1000)
        drop: list[Message] = []
        decline: list[Message] = []
        auto: list[Message] = []
        delivered = 0
        for message in messages:
            headers = _stored_headers(message)
            expires = _int(headers.get("expires"), 0)
            if expires and expires <= now_ms:
                drop.append(message)  # expired messages are never delivered
                continue
            message_id = headers.pop("message-id", None) or f"ID:tidelog-{message.id}"
            if subscription.selector is not None and not subscription.selector(
                _selector_view(headers, message_id, message.sent_at_ms)
            ):
                (drop if subscription.owned else decline).append(message)
                continue
            out = self._message_headers(subscription, message, headers, message_id)
            if subscription.ack == "auto":
                auto.append(message)
            else:
                ack_id = f"{self.session}-{next(self._acks)}"
                if self.version == "1.2":
                    out["ack"] = ack_id
                pending = _Pending(ack_id, message_id, subscription, message, headers)
                subscription.unacked[ack_id] = pending
                self.pending[ack_id] = pending
                self.pending[message_id] = pending
            self.writer.write(encode(Frame("MESSAGE", out, message.body), self.version))
            delivered += 1
        with contextlib.suppress(ConnectionError):
            await self.writer.drain()
        if drop or auto:
            # Not awaited: the delete commits while the next receive runs, so
            # the two share a group commit. At most one is outstanding.
            if subscription.deleting is not None:
                await subscription.deleting
            subscription.deleting = asyncio.ensure_future(
                self.broker.call(self.broker.delete_leased, subscription.queue, drop + auto)
            )
        if decline:
            await self.broker.call(self._release, subscription, decline)
        return delivered

    def _message_headers(
        self,
        subscription: _Subscription,
        message: Message,
        headers: dict[str, str],
        message_id: str,
    ) -> dict[str, str]:
        out = {
            "subscription": subscription.id,
            "destination": headers.pop("stomp-destination", subscription.destination),
            "message-id": message_id,
            "timestamp": str(message.sent_at_ms),
            "expires": headers.pop("expires", "0"),
            "priority": headers.pop("priority", str(_PRIORITY_DEFAULT)),
        }
        if message.receive_count > 1:
            out["redelivered"] = "true"
        headers.pop("content-length", None)
        out.update(headers)
        return out

    # -- acknowledging --------------------------------------------------------------------

    def _find(self, frame: Frame) -> _Pending:
        if self.version == "1.2":
            (key,) = self._require(frame, "id")
        else:
            (key,) = self._require(frame, "message-id")
        pending = self.pending.get(key)
        if pending is None:
            raise StompError(f"{frame.command}: no unacknowledged message {key!r}")
        return pending

    def _covered(self, pending: _Pending) -> list[_Pending]:
        """What an ACK of `pending` acknowledges: all before it in client mode."""
        subscription = pending.subscription
        if subscription.ack != "client":
            return [pending]
        covered = []
        for item in subscription.unacked.values():
            covered.append(item)
            if item is pending:
                break
        return covered

    def _settle(self, items: Iterable[_Pending]) -> None:
        for item in items:
            item.subscription.unacked.pop(item.ack_id, None)
            self.pending.pop(item.ack_id, None)
            self.pending.pop(item.message_id, None)
            item.subscription.room.set()

    async def on_ack(self, frame: Frame) -> bool:
        pending = self._find(frame)
        covered = self._covered(pending)
        transaction = frame.headers.get("transaction")
        if transaction is not None:
            self._transaction(transaction).append(("ack", covered))
            self._settle(covered)
            return True
        deletes = [(p.subscription.queue, p.message.receipt) for p in covered]
        await self.broker.call(self.broker.commit, [], deletes)
        self._settle(covered)
        return True

    def _dead_letter(self, items: Sequence[_Pending]) -> list[tuple[Queue, Any]]:
        dlq = self.broker.queue(queue_name(DLQ_NAME))
        sends = []
        for item in items:
            headers = dict(item.headers)
            headers["message-id"] = item.message_id
            headers["original-destination"] = item.headers.get(
                "stomp-destination", item.subscription.destination
            )
            headers["stomp-destination"] = "/queue/" + DLQ_NAME
            headers["originalExpiration"] = item.headers.get("expires", "0")
            attributes = {HEADERS_ATTRIBUTE: json.dumps(headers, separators=(",", ":"))}
            sends.append((dlq, dlq.prepare(item.message.body, attributes)))
        return sends

    async def on_nack(self, frame: Frame) -> bool:
        # ActiveMQ 5.x answers a STOMP NACK with a poison ack: the message
        # goes straight to ActiveMQ.DLQ (unlike a disconnect, which
        # redelivers). Only the named message is NACKed, in every ack mode.
        pending = self._find(frame)
        transaction = frame.headers.get("transaction")
        if transaction is not None:
            self._transaction(transaction).append(("nack", [pending]))
            self._settle([pending])
            return True
        sends = await self.broker.call(self._dead_letter, [pending])
        deletes = [(pending.subscription.queue, pending.message.receipt)]
        await self.broker.call(self.broker.commit, sends, deletes)
        self._settle([pending])
        return True

    # -- transactions ---------------------------------------------------------------------

    def _transaction(self, name: str) -> list[tuple[str, Any]]:
        actions = self.transactions.get(name)
        if actions is None:
            raise StompError(f"transaction {name!r} is not open (no BEGIN)")
        return actions

    async def on_begin(self, frame: Frame) -> bool:
        (name,) = self._require(frame, "transaction")
        if name in self.transactions:
            raise StompError(f"BEGIN: transaction {name!r} is already open")
        self.transactions[name] = []
        return True

    async def on_commit(self, frame: Frame) -> bool:
        (name,) = self._require(frame, "transaction")
        actions = self._transaction(name)
        del self.transactions[name]
        await self.broker.call(self._commit, actions)
        return True

    def _commit(self, actions: Sequence[tuple[str, Any]]) -> None:
        sends: list[tuple[Queue, Any]] = []
        deletes: list[tuple[Queue, str]] = []
        publishes = []
        for kind, value in actions:
            if kind == "send":
                destination_kind, name, body, headers, delay = value
                if destination_kind == "queue":
                    queue = self.broker.queue(name)
                    attributes = {HEADERS_ATTRIBUTE: json.dumps(headers, separators=(",", ":"))}
                    sends.append((queue, queue.prepare(body, attributes, delay=delay)))
                else:
                    publishes.append(value)
            else:
                if kind == "nack":
                    sends.extend(self._dead_letter(value))
                deletes.extend((p.subscription.queue, p.message.receipt) for p in value)
        self.broker.commit(sends, deletes)
        # Topic publishes fan out in their own commits (see docs/stomp.md).
        for value in publishes:
            self._send_now(*value)

    async def on_abort(self, frame: Frame) -> bool:
        (name,) = self._require(frame, "transaction")
        actions = self._transaction(name)
        del self.transactions[name]
        await self._abort(actions)
        return True

    async def _abort(self, actions: Sequence[tuple[str, Any]]) -> None:
        # Sends are dropped. Messages acked or nacked inside the transaction
        # are redelivered, as ActiveMQ does after a rollback.
        by_subscription: dict[str, list[Message]] = {}
        subs: dict[str, _Subscription] = {}
        for kind, value in actions:
            if kind in ("ack", "nack"):
                for item in value:
                    by_subscription.setdefault(item.subscription.id, []).append(item.message)
                    subs[item.subscription.id] = item.subscription
        for sub_id, messages in by_subscription.items():
            await self.broker.call(self._release, subs[sub_id], messages)

    # -- closing --------------------------------------------------------------------------

    async def close(self) -> None:
        """Abort open transactions, release unacked messages, close the socket.

        Safe to call more than once: later calls wait for the first to finish.
        """
        if self._closed:
            await self._close_done.wait()
            return
        self._closed = True
        try:
            await self._close()
        finally:
            self._close_done.set()

    async def _close(self) -> None:
        with contextlib.suppress(Exception):
            await self._flush_wait()  # sends that arrived before the close still land
        for task in self._heart_tasks:
            if task is not asyncio.current_task():
                task.cancel()
        for actions in list(self.transactions.values()):
            await self._abort(actions)  # a disconnect aborts open transactions
        self.transactions.clear()
        for subscription in list(self.subscriptions.values()):
            await self._end(subscription)
        self.subscriptions.clear()
        if self.client_id is not None and self.broker.client_ids.get(self.client_id) is self:
            del self.broker.client_ids[self.client_id]
        with contextlib.suppress(Exception):
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), 1)
