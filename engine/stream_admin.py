"""Streams' control-plane calls beyond create/describe: shard listings by filter,
the capacity mode, and the account-style limits (Kinesis's ListShards
ShardFilter, UpdateStreamMode and DescribeLimits).

The capacity mode is kept in the stream's configuration ("mode", with the
times of its last switches). tidelog has no throughput quotas, so ON_DEMAND
changes no behaviour but one: `update_shard_count` refuses an ON_DEMAND
stream, as Kinesis does (split and merge stay allowed here). The limits are
Kinesis's defaults: 50 on-demand streams, two mode switches in 24 hours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tidelog.segments.errors import InvalidArgument
from tidelog.segments.writer import WriteContext
from tidelog.streams import SHARDS_MAX, ShardDescription, _to_ms, shard_index_of

if TYPE_CHECKING:
    from tidelog.store import Store
    from tidelog.streams import Stream

STREAM_MODES = ("PROVISIONED", "ON_DEMAND")
ON_DEMAND_STREAMS_MAX = 50
MODE_SWITCHES_MAX = 2  # per rolling 24 hours
MODE_SWITCH_WINDOW_MS = 24 * 3_600_000
SHARD_FILTERS = (
    "AFTER_SHARD_ID",
    "AT_TRIM_HORIZON",
    "FROM_TRIM_HORIZON",
    "AT_LATEST",
    "AT_TIMESTAMP",
    "FROM_TIMESTAMP",
)


class LimitExceeded(InvalidArgument):
    """A request within the limits one at a time, past them together
    (Kinesis's LimitExceededException)."""


@dataclass(frozen=True)
class StreamLimits:
    """The store's shard and on-demand counts and limits (Kinesis's DescribeLimits)."""

    shard_limit: int
    open_shard_count: int
    on_demand_stream_count: int
    on_demand_stream_count_limit: int


def _times(stream: Stream) -> tuple[dict[int, tuple[int | None, int | None]], int, int]:
    """{shard index: (created_ms, closed_ms)}, the stream's creation and trim horizon."""
    view = stream._view()
    times = {
        entry["index"]: (entry.get("created_ms"), entry.get("closed_ms"))
        for entry in view.cfg["shards"]
    }
    horizon = stream._logs.now_ms() - view.retention_ms
    return times, view.created_ms, horizon


def list_shards(
    stream: Stream,
    filter_type: str = "FROM_TRIM_HORIZON",
    *,
    shard_id: str | None = None,
    timestamp: datetime | float | None = None,
) -> list[ShardDescription]:
    """The stream's shards that `filter_type` selects (ListShards' ShardFilter), by index.

    FROM_TRIM_HORIZON: every shard kept (the default); AT_TRIM_HORIZON: those
    open at the trim horizon (now - retention); AT_LATEST: the open ones;
    AT_TIMESTAMP: those open at `timestamp`; FROM_TIMESTAMP: the open ones
    and those closed at or after `timestamp` (no earlier than the trim
    horizon); AFTER_SHARD_ID: those after `shard_id`. A time before the
    stream was created counts as its creation. Raises InvalidArgument for an
    unknown filter or a missing shard id or timestamp.
    """
    if filter_type not in SHARD_FILTERS:
        raise InvalidArgument(
            f"shard filter: {filter_type!r} is not one of {', '.join(SHARD_FILTERS)}"
        )
    shards = list(stream.describe().shards)
    if filter_type == "FROM_TRIM_HORIZON":
        return shards
    if filter_type == "AT_LATEST":
        return [s for s in shards if not s.closed]
    if filter_type == "AFTER_SHARD_ID":
        if shard_id is None:
            raise InvalidArgument("shard filter AFTER_SHARD_ID: needs a ShardId")
        after = shard_index_of(shard_id)
        return [s for s in shards if shard_index_of(s.shard_id) > after]
    times, created_ms, horizon = _times(stream)
    if filter_type == "AT_TRIM_HORIZON":
        at = max(horizon, created_ms)
    else:
        if timestamp is None:
            raise InvalidArgument(f"shard filter {filter_type}: needs a Timestamp")
        at = max(_to_ms(timestamp), created_ms)
    if filter_type == "FROM_TIMESTAMP":
        since = max(at, horizon)
        return [s for s in shards if not s.closed or (_closed(times, s) or 0) >= since]

    def open_at(shard: ShardDescription) -> bool:
        began, ended = times.get(shard_index_of(shard.shard_id), (None, None))
        return (began is None or began <= at) and (ended is None or ended >= at)

    return [s for s in shards if open_at(s)]


def _closed(times: dict[int, tuple[int | None, int | None]], shard: ShardDescription) -> int | None:
    return times.get(shard_index_of(shard.shard_id), (None, None))[1]


def stream_mode(stream: Stream) -> str:
    """The stream's capacity mode: "PROVISIONED" (the default) or "ON_DEMAND"."""
    mode: str = stream._view().cfg.get("mode", "PROVISIONED")
    return mode


def _check_mode(mode: object) -> str:
    if mode not in STREAM_MODES:
        raise InvalidArgument(f"stream mode: {mode!r} is not PROVISIONED or ON_DEMAND")
    return str(mode)


def _on_demand_count(store: Store, excluding: str | None = None) -> int:
    return sum(1 for s in store.streams() if s.name != excluding and stream_mode(s) == "ON_DEMAND")


def set_stream_mode(stream: Stream, mode: str) -> None:
    """Switch the capacity mode. Atomic. The same mode is a no-op.

    Raises InvalidArgument for an unknown mode; LimitExceeded after two
    switches within 24 hours (by the store's clock), or past 50 ON_DEMAND
    streams in the store.
    """
    _check_mode(mode)
    if (
        mode == "ON_DEMAND"
        and stream_mode(stream) != "ON_DEMAND"
        and _on_demand_count(stream._store, stream.name) >= ON_DEMAND_STREAMS_MAX
    ):
        raise LimitExceeded(
            f"stream mode: at most {ON_DEMAND_STREAMS_MAX} ON_DEMAND streams in a store"
        )

    def change(ctx: WriteContext, view: Any, cfg: dict[str, Any]) -> None:
        if cfg.get("mode", "PROVISIONED") == mode:
            return
        since = ctx.now_ms - MODE_SWITCH_WINDOW_MS
        recent = [t for t in cfg.get("mode_switches_ms", []) if t > since]
        if len(recent) >= MODE_SWITCHES_MAX:
            raise LimitExceeded(
                f"stream mode: {stream.name} switched capacity mode {len(recent)} times in the "
                "last 24 hours (at most 2)"
            )
        cfg["mode"] = mode
        cfg["mode_switches_ms"] = [*recent, ctx.now_ms]

    stream._update_config(change)


def describe_limits(store: Store) -> StreamLimits:
    """The store's open shards and on-demand streams against Kinesis's default limits."""
    streams: Sequence[Stream] = store.streams()
    return StreamLimits(
        shard_limit=SHARDS_MAX,
        open_shard_count=sum(s.describe().open_shard_count for s in streams),
        on_demand_stream_count=sum(1 for s in streams if stream_mode(s) == "ON_DEMAND"),
        on_demand_stream_count_limit=ON_DEMAND_STREAMS_MAX,
    )


__all__ = [
    "LimitExceeded",
    "StreamLimits",
    "describe_limits",
    "list_shards",
    "set_stream_mode",
    "stream_mode",
]
