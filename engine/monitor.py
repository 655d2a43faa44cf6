"""What a monitoring page or a metrics scrape asks of a store, without writing.

`Store.status()`, `Store.disk_usage()`, `Store.commit_stats()` and
`Store.observe_commits()` are defined here and exposed on `Store`. Every
call is read-only and cheap enough to run every second: the figures come
from counters, the LMDB catalog and a directory listing per log, never
from reading records.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from tidelog.segments.errors import Error, ReadOnly, StoreFailed

if TYPE_CHECKING:
    from tidelog.store import Store

log = logging.getLogger("tidelog.monitor")

StoreState = Literal["ok", "readonly", "failed", "closed"]
# The kinds a channel's log name starts with (catalog.log_name); other logs are "log".
CHANNEL_KINDS = ("queue", "topic", "stream", "delivery")


@dataclass(frozen=True, slots=True)
class StoreStatus:
    """A store handle's state (`Store.status()`).

    `state` is "ok" (reads and writes work), "readonly" (opened read-only,
    or written by a newer format version), "failed" (an I/O failure stopped
    writes: `error` says which; close and reopen) or "closed".
    """

    state: StoreState
    path: str
    sync_mode: str
    error: str | None = None


@dataclass(frozen=True, slots=True)
class CommitStats:
    """This handle's commit counters since it opened (`Store.commit_stats()`).

    `commits` group commits made, `operations` the calls they carried
    (operations / commits is the mean group size), `flushes` the fdatasync
    and fsync calls this handle made: one journal flush a durable commit,
    plus checkpoints' and new files' (LMDB itself is never flushed; see
    docs/guarantees.md, "The commit point").
    """

    commits: int
    operations: int
    flushes: int


@dataclass(frozen=True, slots=True)
class DiskUsage:
    """Bytes on disk (`Store.disk_usage()`), as `du` counts them (allocated blocks).

    `channels` maps (kind, name) to the bytes of the channel's logs: kind
    "queue", "topic", "stream" (all its shards), "delivery" (a direct
    delivery stream's buffer) or "log" (a plain log). `index_bytes` is the
    LMDB environment; `total_bytes` the logs and the index together.
    """

    total_bytes: int
    index_bytes: int
    channels: dict[tuple[str, str], int]


def status(store: Store) -> StoreStatus:
    logs = store._logs
    try:
        logs.check_writable()
    except ReadOnly:
        return StoreStatus("readonly", store.path, logs.sync_mode)
    except StoreFailed as exc:
        return StoreStatus("failed", store.path, logs.sync_mode, str(exc))
    except Error as exc:  # closed
        return StoreStatus("closed", store.path, logs.sync_mode, str(exc))
    return StoreStatus("ok", store.path, logs.sync_mode)


def commit_stats(store: Store) -> CommitStats:
    logs = store._logs
    return CommitStats(logs.commit_count, logs.op_count, logs.fs.flush_count)


def observe_commits(store: Store, observer: Callable[[float, int], None]) -> Callable[[], None]:
    def safe(seconds: float, operations: int) -> None:
        # The commit leader calls this: an exception here must not strand the
        # callers whose commit just landed.
        try:
            observer(seconds, operations)
        except Exception:  # noqa: BLE001
            log.exception("commit observer %r failed", observer)

    observers = store._logs.commit_observers
    # Replace the list rather than append to it: the leader may be iterating it.
    store._logs.commit_observers = [*observers, safe]

    def remove() -> None:
        current = store._logs.commit_observers
        store._logs.commit_observers = [o for o in current if o is not safe]

    return remove


def _allocated(path: str) -> int:
    """Allocated bytes of the files directly in `path` (0 if it is gone)."""
    total = 0
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                try:
                    total += entry.stat(follow_symlinks=False).st_blocks * 512
                except FileNotFoundError:
                    continue  # deleted by retention while we looked
    except FileNotFoundError:
        return 0
    return total


def channel_of(log_name: str) -> tuple[str, str]:
    """The (kind, name) a log belongs to, from its catalog name."""
    kind, _, rest = log_name.partition("/")
    if kind in CHANNEL_KINDS and rest:
        return kind, rest.partition("/")[0] if kind == "stream" else rest
    return "log", log_name


def disk_usage(store: Store) -> DiskUsage:
    logs = store._logs
    channels: dict[tuple[str, str], int] = {}
    for info in logs.list_logs():
        key = channel_of(info.name)
        channels[key] = channels.get(key, 0) + _allocated(logs.log_dir(info.id))
    index = _allocated(os.path.join(store.path, "index.lmdb"))
    return DiskUsage(sum(channels.values()) + index, index, channels)
