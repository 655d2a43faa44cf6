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

import json
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


# -- settings kept and reported, which a local store does not act on --------------------------
#
# Kinesis's enhanced (shard-level) monitoring, server-side encryption and
# resource policy are recorded in the stream's configuration ("metrics",
# "encryption", "policy") so that DescribeStream and GetResourcePolicy
# report what was set, across restarts. tidelog publishes no CloudWatch
# metrics, encrypts nothing and checks no policy (docs/compatibility.md).

SHARD_LEVEL_METRICS = (
    "IncomingBytes",
    "IncomingRecords",
    "OutgoingBytes",
    "OutgoingRecords",
    "WriteProvisionedThroughputExceeded",
    "ReadProvisionedThroughputExceeded",
    "IteratorAgeMilliseconds",
    "ALL",
)
ENCRYPTION_TYPES = ("NONE", "KMS")
POLICY_BYTES_MAX = 20 * 1024  # Kinesis's resource policy limit


def shard_level_metrics(stream: Stream) -> list[str]:
    """The shard-level metrics enabled on the stream (EnhancedMonitoring), in order set."""
    return list(stream._view().cfg.get("metrics", []))


def change_shard_level_metrics(
    stream: Stream, metrics: Sequence[str], *, enable: bool
) -> tuple[list[str], list[str]]:
    """Enable or disable `metrics`; returns (before, after). Atomic.

    "ALL" disables every metric; enabled, it is kept as given. Raises
    InvalidArgument for a name not in SHARD_LEVEL_METRICS or an empty list.
    """
    if not metrics:
        raise InvalidArgument("shard level metrics: at least one is needed")
    for name in metrics:
        if name not in SHARD_LEVEL_METRICS:
            raise InvalidArgument(f"shard level metrics: {name!r} is not one of Kinesis's")

    def change(ctx: WriteContext, view: Any, cfg: dict[str, Any]) -> tuple[list[str], list[str]]:
        before = list(cfg.get("metrics", []))
        if enable:
            after = before + [m for m in metrics if m not in before]
        elif "ALL" in metrics:
            after = []
        else:
            after = [m for m in before if m not in metrics]
        cfg["metrics"] = after
        return before, after

    result: tuple[list[str], list[str]] = stream._update_config(change)
    return result


def stream_encryption(stream: Stream) -> tuple[str, str | None]:
    """(encryption type, key id) recorded for the stream: ("NONE", None) by default."""
    recorded = stream._view().cfg.get("encryption")
    if not recorded:
        return "NONE", None
    return str(recorded[0]), recorded[1]


def set_stream_encryption(stream: Stream, encryption_type: str, key_id: str | None) -> None:
    """Record server-side encryption ("KMS" and a key id) or its end ("NONE"). Atomic.

    Raises InvalidArgument for another type, or KMS without a key id.
    """
    if encryption_type not in ENCRYPTION_TYPES:
        raise InvalidArgument(f"encryption type: {encryption_type!r} is not KMS or NONE")
    if encryption_type == "KMS" and not key_id:
        raise InvalidArgument("encryption: KMS needs a key id")

    def change(ctx: WriteContext, view: Any, cfg: dict[str, Any]) -> None:
        if encryption_type == "NONE":
            cfg.pop("encryption", None)
        else:
            cfg["encryption"] = [encryption_type, key_id]

    stream._update_config(change)


def resource_policy(stream: Stream) -> str | None:
    """The stream's resource policy document as it was put, or None."""
    policy = stream._view().cfg.get("policy")
    return None if policy is None else str(policy)


def set_resource_policy(stream: Stream, policy: str | None) -> bool:
    """Put (a JSON text) or, with None, delete the stream's resource policy. Atomic.

    Returns whether a policy was there before. Raises InvalidArgument for a
    policy that is not a JSON object or is over 20 KiB.
    """
    if policy is not None:
        if len(policy.encode()) > POLICY_BYTES_MAX:
            raise InvalidArgument(f"resource policy: over {POLICY_BYTES_MAX} bytes")
        try:
            document = json.loads(policy)
        except ValueError:
            raise InvalidArgument("resource policy: not JSON") from None
        if not isinstance(document, dict):
            raise InvalidArgument("resource policy: not a JSON object")

    def change(ctx: WriteContext, view: Any, cfg: dict[str, Any]) -> bool:
        existed = "policy" in cfg
        if policy is None:
            cfg.pop("policy", None)
        else:
            cfg["policy"] = policy
        return existed

    existed: bool = stream._update_config(change)
    return existed


__all__ = [
    "ENCRYPTION_TYPES",
    "SHARD_LEVEL_METRICS",
    "LimitExceeded",
    "StreamLimits",
    "change_shard_level_metrics",
    "describe_limits",
    "list_shards",
    "resource_policy",
    "set_resource_policy",
    "set_stream_encryption",
    "set_stream_mode",
    "shard_level_metrics",
    "stream_encryption",
    "stream_mode",
]
