"""The channel catalog: streams, queues and topics by kind and name.

One LMDB database, `channels`, maps (kind, name) to a JSON document holding
the channel's configuration. AWS keeps streams, queues and topics in separate
namespaces, so a stream and a queue may share a name; the key is
`<kind>:<name>`. Channel state beyond configuration (leases, checkpoints,
subscriptions) lives in each model's own databases.

All functions take a WriteContext (inside a commit) or a read transaction.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from tidelog.segments.errors import InvalidArgument
from tidelog.segments.keys import Txn
from tidelog.segments.logstore import LogStore
from tidelog.segments.writer import WriteContext

CHANNELS_DB = b"channels"

# Every engine-owned LMDB database, opened when a Store opens. A model adds
# its databases here (LMDB handles must not be created inside a commit).
ENGINE_DATABASES: tuple[bytes, ...] = (
    CHANNELS_DB,
    b"stream_checkpoints",  # streams
    b"stream_leases",  # stream_groups.py, stream_subscriptions.py
    b"queue_state",  # queues
    b"queue_entries",
    b"queue_due",
    b"queue_groups",
    b"queue_group_waiting",
    b"queue_dedup",
    b"queue_dedup_expiry",
    b"queue_tasks",
    b"topic_subscriptions",  # topics
    b"topic_state",
    b"topic_dedup",
    b"topic_dedup_expiry",
    b"topic_views",
    b"topic_slot_totals",
    b"sql_applications",  # sql.py: continuous queries and their checkpoints
    b"delivery_streams",  # delivery streams
    b"delivery_state",
)
Kind = Literal["stream", "queue", "topic"]


FIFO_SUFFIX = ".fifo"
_NAME_CHARS = re.compile(r"[A-Za-z0-9_-]+")


def check_fifo_name(kind: Kind, name: object, fifo: bool, length_max: int) -> str:
    """AWS's rule for queue and topic names: 1-length_max of [A-Za-z0-9_-],
    with ".fifo" at the end exactly when the channel is FIFO."""
    if not isinstance(name, str):
        raise InvalidArgument(f"{kind} name: must be a str")
    stem = name[: -len(FIFO_SUFFIX)] if name.endswith(FIFO_SUFFIX) else name
    if not _NAME_CHARS.fullmatch(stem) or len(name) > length_max:
        raise InvalidArgument(
            f"{kind} name {name!r}: must be 1-{length_max} characters of A-Z a-z 0-9 _ - "
            f"(with .fifo for FIFO {kind}s)"
        )
    if fifo != name.endswith(FIFO_SUFFIX):
        raise InvalidArgument(
            f"{kind} name {name!r}: FIFO {kind} names must end in .fifo and others must not"
        )
    return name


def channel_key(kind: Kind, name: str) -> bytes:
    return f"{kind}:{name}".encode()


def log_name(kind: Kind, name: str, part: str = "") -> str:
    """Internal name of a channel's log (a shard's, for streams)."""
    return f"{kind}/{name}/{part}" if part else f"{kind}/{name}"


def get_channel(logs: LogStore, txn: Txn, kind: Kind, name: str) -> dict[str, Any] | None:
    db = logs.database(CHANNELS_DB)
    if db is None:
        return None
    raw = txn.get(channel_key(kind, name), db=db)
    return None if raw is None else json.loads(raw)


def read_channel(logs: LogStore, kind: Kind, name: str) -> dict[str, Any] | None:
    """The channel's configuration, in a short read transaction."""
    db = logs.database(CHANNELS_DB)
    if db is None:
        return None
    with logs.env.begin() as txn:
        raw = txn.get(channel_key(kind, name), db=db)
    return None if raw is None else json.loads(raw)


def put_channel(ctx: WriteContext, kind: Kind, name: str, config: dict[str, Any]) -> None:
    ctx.txn.put(
        channel_key(kind, name), json.dumps(config, sort_keys=True).encode(), db=ctx.db(CHANNELS_DB)
    )


def delete_channel(ctx: WriteContext, kind: Kind, name: str) -> bool:
    return bool(ctx.txn.delete(channel_key(kind, name), db=ctx.db(CHANNELS_DB)))


def list_channels(logs: LogStore, kind: Kind, prefix: str = "") -> list[tuple[str, dict[str, Any]]]:
    """(name, config) of every channel of `kind` whose name starts with `prefix`."""
    db = logs.database(CHANNELS_DB)
    if db is None:
        return []
    start = channel_key(kind, prefix)
    head = f"{kind}:".encode()
    out = []
    with logs.env.begin() as txn:
        cursor = txn.cursor(db=db)
        if cursor.set_range(start):
            for key, value in cursor:
                if not key.startswith(start):
                    break
                out.append((key[len(head) :].decode(), json.loads(value)))
    return out
