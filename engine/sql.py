"""SQL over streams, queues and topics (DuckDB), one-off and continuous.

One-off queries (`store.sql`): every channel named in a query becomes a table
whose rows are streamed to DuckDB as bounded Arrow record batches, read from
the channel's logs by `segments.reader.read_records`. Before reading, the
query is parsed by DuckDB (`json_serialize_sql`) and the top-level AND terms
of the WHERE clause that bound `arrival_time`, `shard_id` or
`sequence_number` against constant expressions are turned into offset ranges
with the log's indexes (`offset_for_time`, sequence number -> offset), so a
query over the last hour opens only that hour's segments. DuckDB still
applies the whole WHERE clause: pushdown only narrows what is read. Only the
columns the query names are built.

Continuous queries (applications, the Kinesis Data Analytics model): an
application reads one source channel in windows of arrival time and runs its
SQL over each window's rows; each result row becomes one message of the
destination. A window's output and the application's source checkpoint are
written in one LMDB commit, so a crash (even SIGKILL) neither loses nor
repeats a window. See docs/api.md and docs/guarantees.md, "SQL".
"""

from __future__ import annotations

import atexit
import base64
import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import compress
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Literal

from tidelog.catalog import Kind, read_channel
from tidelog.segments import keys
from tidelog.segments.errors import Error, InvalidArgument, NotFound
from tidelog.segments.format import Record
from tidelog.segments.fs import OsFileSystem
from tidelog.segments.logstore import LogInfo, LogStore
from tidelog.segments.reader import (
    offset_for_time,
    read_chunks,
    read_columns,
    read_records,
)
from tidelog.segments.writer import WriteContext

if TYPE_CHECKING:
    import duckdb

    from tidelog.queues import Queue
    from tidelog.store import Store
    from tidelog.streams import Stream
    from tidelog.topics import Topic

APPLICATIONS_DB = b"sql_applications"
BATCH_ROWS_DEFAULT = 65_536  # rows per Arrow batch handed to DuckDB
BATCH_BYTES_MAX = 1024 * 1024  # payload bytes per batch, whatever the record size
SCAN_BYTES_MAX_DEFAULT: int | None = None  # no bound unless asked for
WINDOW_RECORDS_MAX = 1_000_000  # rows one window may hold in memory
OUTPUT_ROWS_MAX = 10_000  # result rows one window may write
# `history.NAME`: a queue's whole retained log, deleted messages included.
HISTORY_SCHEMA = "history"
APP_NAME_RE = re.compile(r"[a-zA-Z0-9_.-]{1,128}")
WindowKind = Literal["tumbling", "sliding", "session"]

_SEQUENCE_TOP = 1 << 127
_OFFSET_MASK = (1 << 64) - 1
_NO_END = 1 << 63
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)


class SqlError(InvalidArgument):
    """A query DuckDB rejected, or one tidelog refuses (unknown channel, scan bound).

    `application` names the continuous query it came from, if any.
    """

    def __init__(self, message: str, application: str | None = None) -> None:
        super().__init__(
            message if application is None else f"application {application!r}: {message}"
        )
        self.application = application


class ScanLimitExceeded(SqlError):
    """A query would read more bytes of log than its `scan_bytes_max` allows."""


def _require_modules() -> tuple[Any, Any]:
    try:
        import duckdb
        import pyarrow
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise Error(f"sql: needs the optional dependencies: {exc} (install tidelog[sql])") from None
    return duckdb, pyarrow


# -- channels as tables ---------------------------------------------------------------------------

COLUMNS: dict[Kind, tuple[str, ...]] = {
    "stream": ("shard_id", "sequence_number", "partition_key", "data", "arrival_time"),
    "queue": ("message_id", "sequence_number", "data", "attributes", "group_id", "arrival_time"),
    "topic": (
        "message_id",
        "sequence_number",
        "data",
        "attributes",
        "subject",
        "group_id",
        "arrival_time",
    ),
}


@dataclass
class _Part:
    """One log of a channel and the offset range a query reads of it."""

    info: LogInfo
    shard_index: int | None  # streams only
    start: int = 0
    stop: int | None = None
    # A queue's undeleted messages only (one-off queries): offsets below
    # `floor` are deleted, and below `frontier` only those in `kept` are not.
    floor: int = 0
    frontier: int = 0
    kept: frozenset[int] | None = None
    # A queue's view over a topic log (tidelog.queues.View): `info` is the
    # topic's log, read through the view; offsets shown are the view's.
    view: Any = None

    @property
    def sequence_base(self) -> int:
        from tidelog.queues import VIEW_OFFSET_SHIFT

        return 0 if self.view is None else int(self.view.number) << VIEW_OFFSET_SHIFT


@dataclass
class _Channel:
    kind: Kind
    name: str
    parts: list[_Part]


def _resolve(store: Store, table: str) -> _Channel:
    """The channel a table name means: `name`, or `stream.name` / `queue.name` / `topic.name`.

    `history.name` is a queue's whole retained log (its deleted messages too).
    """
    logs = store._logs
    schema, _, bare = table.rpartition(".")
    kinds: tuple[Kind, ...] = ("stream", "queue", "topic")
    if schema == HISTORY_SCHEMA:
        kinds = ("queue",)
    elif schema:
        if schema not in kinds:
            raise SqlError(
                f"unknown channel {table!r}: the schema must be stream, queue, topic or history"
            )
        kinds = tuple(k for k in kinds if k == schema)
    found = [(kind, cfg) for kind in kinds if (cfg := read_channel(logs, kind, bare)) is not None]
    if not found:
        raise SqlError(f"unknown channel {table!r}: no stream, queue or topic of that name")
    if len(found) > 1:
        names = ", ".join(f"{kind}.{bare}" for kind, _ in found)
        raise SqlError(f"ambiguous table {table!r}: write one of {names}")
    kind, cfg = found[0]
    if kind == "stream":
        from tidelog.catalog import log_name
        from tidelog.streams import shard_id_for

        parts = [
            _Part(
                LogInfo(
                    id=s["log_id"],
                    name=log_name("stream", bare, shard_id_for(s["index"])),
                    segment_bytes_max=s["segment_bytes_max"],
                ),
                s["index"],
            )
            for s in sorted(cfg["shards"], key=lambda s: s["index"])
        ]
    else:
        from tidelog.catalog import log_name

        parts = [_Part(logs.get_log(log_name(kind, bare)), None)]
        if kind == "queue":
            from tidelog.queues import queue_views

            for view in queue_views(logs, bare):
                topic_log = next(i for i in logs.list_logs() if i.id == view.topic_log)
                parts.append(_Part(topic_log, None, view=view))
    return _Channel(kind, bare, parts)


def _undeleted_only(logs: LogStore, channel: _Channel) -> None:
    """Make a queue's table hold only its undeleted messages (the default).

    The deleted messages a queue's segments still hold (a replay window, or
    a segment not yet reclaimed) are left out, as SQS would no longer
    deliver them: what remains is what `tidelog ls` counts as the queue's
    messages (visible, in flight, delayed).
    """
    from tidelog.queues import undeleted_offsets

    for part in channel.parts:
        state_id = part.info.id if part.view is None else part.view.id
        part.floor, part.frontier, part.kept = undeleted_offsets(logs, state_id)


def _read_part(logs: LogStore, part: _Part, start: int, stop: int) -> Iterator[Record]:
    """A part's records in [start, stop): a queue view's as the queue's messages."""
    if part.view is None:
        yield from read_records(logs, part.info, start, stop)
        return
    from tidelog.queues import view_records

    for record in read_records(logs, part.info, start, stop):
        yield from view_records(part.view, [record])


def _utf8(values: list[bytes], pa: Any) -> Any:
    array = pa.array(values, pa.binary())
    try:
        return array.cast(pa.string())
    except Exception:  # pyarrow raises ArrowInvalid for bad UTF-8; decode with replacement
        return pa.array([v.decode("utf-8", "replace") for v in values], pa.string())


def _attributes_json(meta: dict[str, Any]) -> str | None:
    raw = meta.get("a")
    if not raw:
        return None
    return json.dumps({name: value for name, _type, _kind, value in raw})


def _message_id(raw: bytes) -> str:
    import uuid

    return str(uuid.UUID(bytes=raw)) if len(raw) == 16 else raw.decode("utf-8", "replace")


# Records and format.ValueRow share these positions (value is last in both).
_values = itemgetter(-1)
_keys = itemgetter(3)  # Record.key
_stamps = itemgetter(1)
_offsets = itemgetter(0)
# Columns built from (offset, timestamp, value) alone: read with reader.read_columns.
_VALUE_COLUMNS = frozenset(("data", "arrival_time", "sequence_number", "shard_id"))


def _batch(
    pa: Any,
    kind: Kind,
    part: _Part,
    records: list[Any],
    columns: Sequence[str],
    extra: dict[str, Any] | None = None,
) -> Any:
    """One Arrow record batch of `columns` for records of one log.

    `records` are Records, or ValueRows when every column is in
    _VALUE_COLUMNS. Columns are pulled out with itemgetter maps (C loops);
    only the columns a query names are built.
    """
    arrays: list[Any] = []
    metas: list[dict[str, Any]] | None = None
    if isinstance(records, _Columns):
        offsets, stamps, values = records.offsets, records.stamps, records.values
    else:
        offsets = list(map(_offsets, records))
        stamps = list(map(_stamps, records))
        values = list(map(_values, records))
    count = len(values)
    for column in columns:
        if column == "data":
            arrays.append(_utf8(values, pa))
        elif column == "arrival_time":
            times = pa.array(stamps, pa.int64())
            arrays.append(times.cast(pa.timestamp("ms", tz="UTC")))
        elif column == "shard_id":
            shard = f"shardId-{part.shard_index or 0:012d}"
            arrays.append(pa.array([shard], pa.string()).take(pa.array([0] * count, pa.int32())))
        elif column == "sequence_number" and kind == "stream":
            base = _SEQUENCE_TOP | (part.shard_index or 0) << 64
            arrays.append(pa.array(list(map(str, map(base.__or__, offsets)))))
        elif column == "sequence_number":
            if part.view is not None:
                offsets = list(map(part.sequence_base.__or__, offsets))
            arrays.append(pa.array(offsets, pa.int64()))
        elif column == "partition_key":
            arrays.append(_utf8(list(map(_keys, records)), pa))
        elif column == "message_id":
            arrays.append(pa.array([_message_id(r.key) for r in records], pa.string()))
        else:  # attributes, group_id, subject: from the JSON headers
            if metas is None:
                metas = [json.loads(r.headers) if r.headers else {} for r in records]
            if column == "attributes":
                arrays.append(pa.array([_attributes_json(m) for m in metas], pa.string()))
            else:
                short = "g" if column == "group_id" else "s"
                arrays.append(pa.array([m.get(short) for m in metas], pa.string()))
    names = list(columns)
    for name, value in (extra or {}).items():
        arrays.append(pa.array([value] * count, pa.timestamp("ms", tz="UTC")))
        names.append(name)
    return pa.RecordBatch.from_arrays(arrays, names=names)


def _schema(pa: Any, kind: Kind, columns: Sequence[str], extra: Sequence[str] = ()) -> Any:
    types = {
        "arrival_time": pa.timestamp("ms", tz="UTC"),
        "sequence_number": pa.string() if kind == "stream" else pa.int64(),
    }
    fields = [pa.field(c, types.get(c, pa.string())) for c in columns]
    fields += [pa.field(name, pa.timestamp("ms", tz="UTC")) for name in extra]
    return pa.schema(fields)


class _Columns:
    """Offsets, times and values of a run of records, as lists (the columnar read)."""

    __slots__ = ("offsets", "stamps", "values")

    def __init__(self, offsets: list[int], stamps: list[int], values: list[bytes]) -> None:
        self.offsets, self.stamps, self.values = offsets, stamps, values


def _column_batches(
    logs: LogStore, channel: _Channel, columns: Sequence[str], batch_rows: int, pa: Any
) -> Iterator[Any]:
    """`_batches` for queries of _VALUE_COLUMNS only: from reader.read_columns,
    with no Record or row tuple made per record."""
    for part in channel.parts:
        offsets: list[int] = []
        stamps: list[int] = []
        values: list[bytes] = []
        size = 0
        for first, ts, vals in read_columns(logs, part.info, part.start, part.stop):
            offs: Iterable[int] = range(first, first + len(vals))
            if part.kept is not None and first < part.frontier:
                kept, frontier = part.kept, part.frontier
                keep = [o >= frontier or o in kept for o in offs]
                offs, vals = list(compress(offs, keep)), list(compress(vals, keep))
            offsets += offs
            stamps += [ts] * len(vals)
            values += vals
            size += sum(map(len, vals))
            while values and (len(values) >= batch_rows or size >= BATCH_BYTES_MAX):
                cut = min(batch_rows, len(values))
                run = _Columns(offsets[:cut], stamps[:cut], values[:cut])
                yield _batch(pa, channel.kind, part, run, columns)  # type: ignore[arg-type]
                del offsets[:cut], stamps[:cut], values[:cut]
                size = sum(map(len, values))
        if values:
            run = _Columns(offsets, stamps, values)
            yield _batch(pa, channel.kind, part, run, columns)  # type: ignore[arg-type]


def _batches(
    logs: LogStore, channel: _Channel, columns: Sequence[str], batch_rows: int, pa: Any
) -> Iterator[Any]:
    if _VALUE_COLUMNS.issuperset(columns) and all(part.view is None for part in channel.parts):
        yield from _column_batches(logs, channel, columns, batch_rows, pa)
        return
    for part in channel.parts:
        pending: list[Any] = []
        size = 0
        read = read_chunks
        for chunk in read(logs, part.info, part.start, part.stop):
            if part.view is not None:
                from tidelog.queues import view_records

                chunk = view_records(part.view, chunk)
            # A chunk is one batch's records (at most about BATCH_TARGET_BYTES).
            if part.kept is not None and chunk and _offsets(chunk[0]) < part.frontier:
                kept, frontier = part.kept, part.frontier
                chunk = [r for r in chunk if _offsets(r) >= frontier or _offsets(r) in kept]
            pending += chunk
            size += sum(map(len, map(_values, chunk)))
            while len(pending) >= batch_rows:
                yield _batch(pa, channel.kind, part, pending[:batch_rows], columns)
                del pending[:batch_rows]
                size = sum(map(len, map(_values, pending)))
            if size >= BATCH_BYTES_MAX:
                yield _batch(pa, channel.kind, part, pending, columns)
                pending, size = [], 0
        if pending:
            yield _batch(pa, channel.kind, part, pending, columns)


# -- pushdown -------------------------------------------------------------------------------------

_OPS = {
    "COMPARE_EQUAL": "=",
    "COMPARE_GREATERTHAN": ">",
    "COMPARE_GREATERTHANOREQUALTO": ">=",
    "COMPARE_LESSTHAN": "<",
    "COMPARE_LESSTHANOREQUALTO": "<=",
}
_FLIP = {"=": "=", ">": "<", ">=": "<=", "<": ">", "<=": ">="}


@dataclass
class _Bounds:
    """What a query's WHERE clause says of one table, as inclusive/exclusive limits."""

    time_low_ms: int | None = None  # arrival_time >= this
    time_high_ms: int | None = None  # arrival_time < this
    shards: set[str] | None = None
    seq_low: int | None = None  # sequence number >= this (the integer)
    seq_high: int | None = None  # sequence number < this
    fields: set[str] = field(default_factory=set)


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _has_column(node: Any) -> bool:
    return any(n.get("class") in ("COLUMN_REF", "SUBQUERY", "STAR") for n in _walk(node))


class _Analyzer:
    """Reads a query's parse tree (DuckDB's JSON form) for tables, columns and bounds."""

    def __init__(self, con: duckdb.DuckDBPyConnection, query: str) -> None:
        self._con = con
        raw = con.execute("SELECT json_serialize_sql(?)", [query]).fetchall()
        tree = json.loads(raw[0][0]) if raw else {"error": True}
        if tree.get("error"):
            # Not a plain SELECT (or a parse error): no pushdown; DuckDB reports errors itself.
            self.tree: dict[str, Any] = {}
        else:
            self.tree = tree
        self.star = any(n.get("class") == "STAR" for n in _walk(self.tree)) or not self.tree
        self.columns = {
            n["column_names"][-1] for n in _walk(self.tree) if n.get("class") == "COLUMN_REF"
        }
        self._template: dict[str, Any] | None = None

    def tables(self) -> list[tuple[str, str, str]]:
        """(schema, table, alias) of every base table reference."""
        return [
            (n.get("schema_name", ""), n["table_name"], n.get("alias", ""))
            for n in _walk(self.tree)
            if n.get("type") == "BASE_TABLE" and "table_name" in n
        ]

    def _evaluate(self, expr: dict[str, Any]) -> Any:
        """The value of a constant expression, computed by DuckDB."""
        if self._template is None:
            raw = self._con.execute("SELECT json_serialize_sql('SELECT 1')").fetchall()
            self._template = json.loads(raw[0][0]) if raw else {}
        tree = json.loads(json.dumps(self._template))
        tree["statements"][0]["node"]["select_list"] = [expr]
        text = self._con.execute("SELECT json_deserialize_sql(?)", [json.dumps(tree)]).fetchall()
        if not text:
            return None
        row = self._con.execute(text[0][0]).fetchall()
        return row[0][0] if row else None

    def bounds(self, table: str, alias: str, kind: Kind) -> _Bounds:
        """Limits on `table` from the top-level AND terms of the SELECTs that scan it alone."""
        bounds = _Bounds()
        names = {table.rpartition(".")[2], alias} - {""}
        for node in _walk(self.tree):
            if node.get("type") != "SELECT_NODE":
                continue
            source = node.get("from_table") or {}
            if source.get("type") != "BASE_TABLE" or source.get("table_name") not in names:
                continue
            terms = [node.get("where_clause")]
            flat: list[dict[str, Any]] = []
            while terms:
                term = terms.pop()
                if not term:
                    continue
                if term.get("type") == "CONJUNCTION_AND":
                    terms.extend(term["children"])
                else:
                    flat.append(term)
            for term in flat:
                try:
                    self._apply(term, names, kind, bounds)
                except Exception:  # an expression we cannot evaluate: just no pushdown
                    continue
        return bounds

    def _column(self, node: dict[str, Any], names: set[str]) -> str | None:
        if node.get("class") != "COLUMN_REF":
            return None
        path = node["column_names"]
        if len(path) == 2 and path[0] not in names:
            return None
        return str(path[-1]) if len(path) <= 2 else None

    def _apply(self, term: dict[str, Any], names: set[str], kind: Kind, b: _Bounds) -> None:
        kind_type = term.get("type", "")
        if kind_type == "COMPARE_BETWEEN":
            column = self._column(term["input"], names)
            if column and not _has_column(term["lower"]) and not _has_column(term["upper"]):
                self._limit(column, ">=", self._evaluate(term["lower"]), kind, b)
                self._limit(column, "<=", self._evaluate(term["upper"]), kind, b)
            return
        if kind_type == "COMPARE_IN":
            children = term["children"]
            column = self._column(children[0], names)
            if column == "shard_id" and not any(_has_column(c) for c in children[1:]):
                values = {str(self._evaluate(c)) for c in children[1:]}
                b.shards = values if b.shards is None else b.shards & values
            return
        op = _OPS.get(kind_type)
        if op is None:
            return
        left, right = term["left"], term["right"]
        column = self._column(left, names)
        if column is None:
            column, op, right = self._column(right, names), _FLIP[op], left
        if column is None or _has_column(right):
            return
        self._limit(column, op, self._evaluate(right), kind, b)

    def _limit(self, column: str, op: str, value: Any, kind: Kind, b: _Bounds) -> None:
        if value is None:
            return
        if column == "arrival_time":
            # Whole milliseconds, widened: a bound too wide reads a little more, never less.
            ms = _to_ms(value)
            if op in (">", ">=", "="):
                b.time_low_ms = ms if b.time_low_ms is None else max(b.time_low_ms, ms)
            if op in ("<", "<=", "="):
                b.time_high_ms = ms + 1 if b.time_high_ms is None else min(b.time_high_ms, ms + 1)
        elif column == "shard_id" and op == "=":
            b.shards = {str(value)} if b.shards is None else b.shards & {str(value)}
        elif column == "sequence_number":
            number = int(value)
            if op in (">", ">=", "="):
                low = number if op != ">" else number + 1
                b.seq_low = low if b.seq_low is None else max(b.seq_low, low)
            if op in ("<", "<=", "="):
                high = number if op == "<" else number + 1
                b.seq_high = high if b.seq_high is None else min(b.seq_high, high)
        del kind


def _to_ms(value: Any) -> int:
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.UTC)
        # Integer arithmetic: a float product could land a millisecond low.
        ms: int = (value - _EPOCH) // _dt.timedelta(milliseconds=1)
        return ms
    if isinstance(value, _dt.date):
        return _to_ms(_dt.datetime(value.year, value.month, value.day, tzinfo=_dt.UTC))
    if isinstance(value, int | float):
        return int(value)
    raise TypeError(f"not a time: {value!r}")


def _narrow(logs: LogStore, channel: _Channel, bounds: _Bounds) -> None:
    """Turn bounds into offset ranges per log, with the log's indexes."""
    kept: list[_Part] = []
    for part in channel.parts:
        shard_id = f"shardId-{part.shard_index or 0:012d}"
        if channel.kind == "stream" and bounds.shards is not None and shard_id not in bounds.shards:
            continue
        ends = logs.ends(part.info)
        start, stop = max(ends.start_offset, part.floor), ends.next_offset
        if part.view is not None:
            start = max(start, part.view.start)
            if part.view.until is not None:
                stop = min(stop, part.view.until)
        if bounds.seq_low is not None or bounds.seq_high is not None:
            if part.view is not None:
                base = part.sequence_base
                if bounds.seq_low is not None:
                    start = max(start, min(max(bounds.seq_low - base, 0), _NO_END))
                if bounds.seq_high is not None:
                    stop = min(stop, min(max(bounds.seq_high - base, 0), _NO_END))
            elif channel.kind == "stream":
                base = _SEQUENCE_TOP | (part.shard_index or 0) << 64
                low = bounds.seq_low if bounds.seq_low is not None else 0
                high = bounds.seq_high if bounds.seq_high is not None else 1 << 128
                start = max(start, min(max(low - base, 0), _NO_END))
                stop = min(stop, min(max(high - base, 0), _NO_END))
            else:
                if bounds.seq_low is not None:
                    start = max(start, bounds.seq_low)
                if bounds.seq_high is not None:
                    stop = min(stop, max(bounds.seq_high, 0))
        if bounds.time_low_ms is not None and start < stop:
            start = max(start, offset_for_time(logs, part.info, bounds.time_low_ms))
        if bounds.time_high_ms is not None and start < stop:
            stop = min(stop, offset_for_time(logs, part.info, bounds.time_high_ms))
        part.start, part.stop = start, max(start, stop)
        kept.append(part)
    channel.parts = kept


def _scan_bytes(logs: LogStore, part: _Part) -> int:
    """Bytes of the segments that hold [start, stop) of a log (an upper estimate)."""
    stop = part.stop if part.stop is not None else _NO_END
    if stop <= part.start:
        return 0
    total = 0
    prefix = keys.log_key(part.info.id)
    with logs.env.begin() as txn:
        raw_ends = txn.get(prefix, db=logs.dbs[keys.DB_ENDS])
        if raw_ends is None:
            return 0
        ends = keys.Ends.unpack(raw_ends)
        cursor = txn.cursor(db=logs.dbs[keys.DB_SEGMENTS])
        if cursor.set_range(prefix):
            for key, value in cursor:
                if not key.startswith(prefix):
                    break
                base = keys.U64_PAIR.unpack(key)[1]
                row = keys.SegmentRow.unpack(value)
                if base == ends.active_base:
                    continue
                if base < stop and row.end_offset > part.start:
                    total += row.size
    if ends.active_base < stop and ends.next_offset > part.start:
        total += ends.active_position
    return total


# -- one-off queries ------------------------------------------------------------------------------


@dataclass
class SqlResult:
    """A query's result: column names, DuckDB type names, and the rows as tuples."""

    columns: list[str]
    types: list[str]
    rows: list[tuple[Any, ...]]
    bytes_scanned_max: int = 0  # the scan estimate the bound was checked against

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


_MEMORY_LIMIT_RE = re.compile(r"[0-9]+(\.[0-9]+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)", re.IGNORECASE)
_spill: list[str] = []  # this process's spill directory, made on first use
_spill_lock = threading.Lock()


def _spill_dir() -> str:
    """A private directory for what DuckDB spills past its memory limit.

    DuckDB's default for an in-memory database is `.tmp` in the current
    directory; a query must not write into whatever directory its caller
    runs in. Removed at exit (DuckDB removes its files as queries end).
    """
    with _spill_lock:
        if not _spill:
            path = tempfile.mkdtemp(prefix="tidelog-sql-spill-")
            atexit.register(shutil.rmtree, path, True)
            _spill.append(path)
        return _spill[0]


def _connect(
    module: Any, threads: int | None, memory_limit: str | None = None, files: bool = True
) -> duckdb.DuckDBPyConnection:
    con: duckdb.DuckDBPyConnection = module.connect(":memory:")
    if threads is not None:
        con.execute(f"SET threads = {int(threads)}")
    con.execute("SET temp_directory = '{}'".format(_spill_dir().replace("'", "''")))
    if memory_limit is not None:
        if not isinstance(memory_limit, str) or not _MEMORY_LIMIT_RE.fullmatch(memory_limit):
            con.close()
            raise InvalidArgument(f"memory_limit: {memory_limit!r} is not a size like '512MB'")
        con.execute(f"SET memory_limit = '{memory_limit}'")
    # Naive timestamps in queries mean UTC, as pushdown reads them (arrival_time is UTC).
    con.execute("SET TimeZone = 'UTC'")
    if not files:
        # No COPY TO, read_csv, ATTACH or extension loads: the query sees the
        # channels only (spilling to temp_directory still works). Cannot be undone.
        con.execute("SET enable_external_access = false")
    return con


def run_sql(
    store: Store,
    query: str,
    *,
    scan_bytes_max: int | None = SCAN_BYTES_MAX_DEFAULT,
    batch_rows: int = BATCH_ROWS_DEFAULT,
    threads: int | None = None,
    scan_workers: int | None = None,
    memory_limit: str | None = None,
    files: bool = True,
) -> SqlResult:
    """Run one SQL query (DuckDB's dialect) over the store's channels; see the module doc.

    A table whose scan reads over PARALLEL_SCAN_BYTES_MIN bytes of segments
    is read by up to one worker process a core, each reading some of its
    logs (sql_scan.py); `scan_workers` sets how many (1: read in this process).
    `memory_limit` (DuckDB's, e.g. "1GB"; default 80% of RAM) bounds what
    DuckDB holds: past it, tables (a self-join's), sorts, joins and
    aggregates spill to a private temporary directory. `files=False` turns
    DuckDB's file access off (COPY TO, read_csv, ATTACH, extensions): for
    queries from users who must not reach the server's files.

    Reads a snapshot: records committed after the query starts are not seen.
    Memory is bounded by `batch_rows` per table plus what DuckDB's operators
    hold (an aggregate's groups, a sort's rows) and the result itself.
    Raises SqlError (DuckDB's message; an unknown or ambiguous channel),
    ScanLimitExceeded (the segments to read exceed `scan_bytes_max` bytes),
    Corruption. Thread-safe; opens its own DuckDB connection.
    """
    duckdb, pa = _require_modules()
    if not isinstance(query, str) or not query.strip():
        raise SqlError("sql: the query is empty")
    if not isinstance(batch_rows, int) or not 1 <= batch_rows <= 1_000_000:
        raise InvalidArgument(f"batch_rows: {batch_rows!r} is outside 1-1000000")
    if scan_workers is not None and (not isinstance(scan_workers, int) or scan_workers < 1):
        raise InvalidArgument(f"scan_workers: {scan_workers!r} is not a positive integer")
    options = (scan_bytes_max, batch_rows, threads, scan_workers, memory_limit, files)
    try:
        return _run(store, query, *options)
    except _Pruned:
        # A column the parse-tree walk missed (COLUMNS(...), USING, ...): build them all.
        return _run(store, query, *options, prune=False)


class _Failures:
    """The first tidelog error raised while DuckDB pulled batches (a Corruption).

    DuckDB wraps what a batch iterator raises in its own error; the query
    raises the original instead.
    """

    def __init__(self) -> None:
        self.error: Error | None = None

    def watch(self, batches: Iterator[Any]) -> Iterator[Any]:
        try:
            yield from batches
        except Error as exc:
            if self.error is None:
                self.error = exc
            raise


class _Pruned(Exception):
    """DuckDB could not bind a column that pruning left out."""


def _scan_workers(logs: LogStore, channel: _Channel, sizes: list[int], asked: int | None) -> int:
    """How many worker processes read this table (1: this process does)."""
    from tidelog import sql_scan  # not at the top: `python -m tidelog.sql_scan` imports us

    if asked is not None:
        return min(asked, len(channel.parts))
    if sum(sizes) < sql_scan.PARALLEL_SCAN_BYTES_MIN or type(logs.fs) is not OsFileSystem:
        return 1  # small, or a test's file system the workers would not see
    return min(os.cpu_count() or 1, len(channel.parts))


def _run(
    store: Store,
    query: str,
    scan_bytes_max: int | None,
    batch_rows: int,
    threads: int | None,
    scan_workers: int | None,
    memory_limit: str | None,
    files: bool = True,
    prune: bool = True,
) -> SqlResult:
    duckdb, pa = _require_modules()
    con = _connect(duckdb, threads, memory_limit, files)
    try:
        try:
            bare_names = duckdb.get_table_names(query, qualified=False)  # CTEs left out
        except duckdb.Error as exc:
            raise SqlError(str(exc)) from None
        analyzer = _Analyzer(con, query)
        refs = analyzer.tables()
        names = {f"{schema}.{name}" if schema else name for schema, name, _ in refs}
        names = {n for n in names if n.rpartition(".")[2] in bare_names} or set(bare_names)
        logs = store._logs
        total = 0
        failures = _Failures()
        for index, table in enumerate(sorted(names)):
            channel = _resolve(store, table)
            if channel.kind == "queue" and table.rpartition(".")[0] != HISTORY_SCHEMA:
                _undeleted_only(logs, channel)
            aliases = [
                alias
                for schema, name, alias in refs
                if (f"{schema}.{name}" if schema else name) == table
            ]
            bounds = (
                analyzer.bounds(table, aliases[0], channel.kind) if len(aliases) == 1 else _Bounds()
            )
            _narrow(logs, channel, bounds)
            sizes = [_scan_bytes(logs, part) for part in channel.parts]
            total += sum(sizes)
            if scan_bytes_max is not None and total > scan_bytes_max:
                raise ScanLimitExceeded(
                    f"sql: the query would read {total} bytes of segments, over "
                    f"scan_bytes_max={scan_bytes_max} (narrow it by arrival_time, shard_id "
                    "or sequence_number, or raise the bound)"
                )
            all_columns = COLUMNS[channel.kind]
            columns = [
                c for c in all_columns if not prune or analyzer.star or c in analyzer.columns
            ] or list(all_columns[:1])
            workers = _scan_workers(logs, channel, sizes, scan_workers)
            if any(part.view is not None for part in channel.parts):
                workers = 1  # views are formatted here; the parallel scan reads plain logs
            if workers > 1:
                from tidelog import sql_scan

                groups = sql_scan.split_parts(channel.parts, sizes, workers)
                batches = sql_scan.parallel_batches(
                    logs.path, channel.kind, groups, columns, batch_rows
                )
            else:
                batches = _batches(logs, channel, columns, batch_rows, pa)
            reader = pa.RecordBatchReader.from_batches(
                _schema(pa, channel.kind, columns), failures.watch(batches)
            )
            hidden = f"__tidelog_{index}"
            con.register(hidden, reader)
            schema, _, bare = table.rpartition(".")
            quoted = '"' + bare.replace('"', '""') + '"'
            if schema:
                con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
                quoted = f'"{schema}".{quoted}'
            # A reader streams once: a table named more than once (a self-join) is
            # loaded into DuckDB first; otherwise it is a view over the stream of batches.
            what = "TABLE" if len(aliases) > 1 else "VIEW"
            con.execute(f"CREATE {what} {quoted} AS SELECT * FROM {hidden}")
        try:
            cursor = con.execute(query)
            description = cursor.description or []
            rows = cursor.fetchall()
        except duckdb.BinderException as exc:
            if prune and not analyzer.star:
                raise _Pruned() from None
            raise SqlError(str(exc)) from None
        except duckdb.Error as exc:
            if failures.error is not None:  # reading the log failed: raise that, not DuckDB's
                raise failures.error from None
            raise SqlError(str(exc)) from None
        return SqlResult([d[0] for d in description], [str(d[1]) for d in description], rows, total)
    finally:
        con.close()


# -- continuous queries (applications) ------------------------------------------------------------


@dataclass(frozen=True)
class ApplicationDescription:
    """An application's configuration and progress (`Application.describe()`)."""

    name: str
    source: str
    sql: str
    window: WindowKind
    size_ms: int
    slide_ms: int
    gap_ms: int
    allowed_lateness_ms: int
    destination: tuple[str, str]
    running: bool
    windows_emitted: int
    rows_emitted: int
    late_records: int
    last_window: tuple[int, int] | None  # (start ms, end ms) of the last window computed
    lag_records: int  # source records after the checkpoint
    error: str | None


def _app_key(name: str) -> bytes:
    return name.encode()


def _load(logs: LogStore, name: str) -> dict[str, Any]:
    with logs.env.begin() as txn:
        raw = txn.get(_app_key(name), db=logs.database(APPLICATIONS_DB))
    if raw is None:
        raise NotFound(f"application {name!r}: not found")
    doc: dict[str, Any] = json.loads(raw)
    return doc


def _put(ctx: WriteContext, doc: dict[str, Any]) -> None:
    ctx.txn.put(
        _app_key(doc["name"]),
        json.dumps(doc, sort_keys=True).encode(),
        db=ctx.db(APPLICATIONS_DB),
    )


def _get_in(ctx: WriteContext, name: str) -> dict[str, Any]:
    raw = ctx.txn.get(_app_key(name), db=ctx.db(APPLICATIONS_DB))
    if raw is None:
        raise NotFound(f"application {name!r}: not found")
    doc: dict[str, Any] = json.loads(raw)
    return doc


def _seconds_ms(value: float, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise InvalidArgument(f"{what}: {value!r} must be a number of seconds >= 0")
    return int(round(value * 1000))


def _parse_destination(destination: str | tuple[str, str]) -> tuple[str, str]:
    if isinstance(destination, str):
        kind, _, name = destination.partition(":")
        if not name:
            kind, _, name = destination.partition(".")
    else:
        kind, name = destination
    if kind not in ("stream", "queue", "topic") or not name:
        raise InvalidArgument(
            f"destination: {destination!r} must be 'stream:NAME', 'queue:NAME' or "
            "'topic:NAME' (or a (kind, name) pair)"
        )
    return kind, name


def _destination(store: Store, kind: str, name: str) -> Stream | Queue | Topic:
    """The destination's handle. Raises NotFound."""
    if kind == "stream":
        return store.stream(name)
    if kind == "queue":
        return store.queue(name)
    return store.topic(name)


def _validate_sql(store: Store, name: str, kind: Kind, table: str, query: str) -> None:
    """Run the query over an empty window so bad SQL fails at create time."""
    duckdb, pa = _require_modules()
    con = _connect(duckdb, 1)
    try:
        empty = pa.Table.from_batches(
            [], schema=_schema(pa, kind, COLUMNS[kind], ("window_start", "window_end"))
        )
        con.register(table, empty)
        try:
            con.execute(query).fetchall()
        except duckdb.Error as exc:
            raise SqlError(str(exc), application=name) from None
    finally:
        con.close()


def create_application(
    store: Store,
    name: str,
    source: str,
    sql: str,
    *,
    window: WindowKind = "tumbling",
    size: float = 60.0,
    slide: float | None = None,
    gap: float | None = None,
    allowed_lateness: float = 0.0,
    destination: str | tuple[str, str],
    start: bool = True,
) -> Application:
    """Create a continuous query; see `Application` and docs/api.md, "SQL"."""
    if not isinstance(name, str) or not APP_NAME_RE.fullmatch(name):
        raise InvalidArgument(
            f"application name: {name!r} must be 1-128 characters of a-z, A-Z, 0-9, '_', '.', '-'"
        )
    if window not in ("tumbling", "sliding", "session"):
        raise InvalidArgument(f"window: {window!r} is not tumbling, sliding or session")
    size_ms = _seconds_ms(size, "size")
    slide_ms = size_ms if window == "tumbling" else _seconds_ms(slide or size, "slide")
    gap_ms = _seconds_ms(gap if gap is not None else size, "gap") if window == "session" else 0
    if window != "session" and (size_ms <= 0 or slide_ms <= 0 or size_ms % slide_ms):
        raise InvalidArgument(
            f"window: size {size_ms} ms must be > 0 and a multiple of slide {slide_ms} ms"
        )
    if window == "session" and gap_ms <= 0:
        raise InvalidArgument("gap: a session window needs a gap > 0 seconds")
    lateness_ms = _seconds_ms(allowed_lateness, "allowed_lateness")
    channel = _resolve(store, source)
    dest_kind, dest_name = _parse_destination(destination)
    _destination(store, dest_kind, dest_name)
    table = source.rpartition(".")[2]
    _validate_sql(store, name, channel.kind, table, sql)
    doc = {
        "name": name,
        "source": source,
        "source_kind": channel.kind,
        "table": table,
        "sql": sql,
        "window": window,
        "size_ms": size_ms,
        "slide_ms": slide_ms,
        "gap_ms": gap_ms,
        "allowed_lateness_ms": lateness_ms,
        "destination": [dest_kind, dest_name],
        "running": bool(start),
        "checkpoints": {},
        "next_end_ms": None,
        "windows_emitted": 0,
        "rows_emitted": 0,
        "late_records": 0,
        "last_window": None,
        "error": None,
    }

    def op(ctx: WriteContext) -> None:
        if ctx.txn.get(_app_key(name), db=ctx.db(APPLICATIONS_DB)) is not None:
            from tidelog.segments.errors import AlreadyExists

            raise AlreadyExists(f"application {name!r}: already exists")
        _put(ctx, doc)

    store._logs.submit(op)
    return Application(store, name)


def list_applications(store: Store) -> list[Application]:
    logs = store._logs
    with logs.env.begin() as txn:
        names = [
            key.decode()
            for key in txn.cursor(db=logs.database(APPLICATIONS_DB)).iternext(values=False)
        ]
    return [Application(store, name) for name in names]


def delete_application(store: Store, name: str) -> None:
    def op(ctx: WriteContext) -> None:
        if not ctx.txn.delete(_app_key(name), db=ctx.db(APPLICATIONS_DB)):
            raise NotFound(f"application {name!r}: not found")

    store._logs.submit(op)


class _Conflict(Exception):
    """Another runner advanced the application first; this window is theirs."""


@dataclass
class _Pending:
    records: list[tuple[int, int, Record]]  # (timestamp, part index, record)
    next_offsets: dict[int, int]  # part index -> offset after what was taken


class Application:
    """A continuous query: `sql` over windows of `source`, results into `destination`.

    Windows are of arrival time (the store's commit time, by the store's
    clock). The watermark is that clock minus allowed_lateness: a window
    [start, end) is computed once the watermark passes end (a session once
    it passes the session's last arrival + gap), so every record stamped
    inside the window that is readable by then is in it. Its result rows (as
    JSON objects) are written to the destination (a stream, a queue, or a
    topic's publish with its fan-out) and the source checkpoint advanced in
    one commit, so each window is written exactly once even across kill -9.
    A window is computed once and never revised: a record that becomes
    readable only after every window holding it was written is late; it is
    counted in `late_records` and dropped. Any number of processes may run
    the same application: the commit checks the progress it started from,
    so only one of them writes each window.
    """

    def __init__(self, store: Store, name: str) -> None:
        self._store = store
        self._logs = store._logs
        self.name = name
        self._con: duckdb.DuckDBPyConnection | None = None
        _load(self._logs, name)

    def __repr__(self) -> str:
        return f"<tidelog.Application {self.name!r}>"

    # -- management ----------------------------------------------------------------

    def describe(self) -> ApplicationDescription:
        doc = _load(self._logs, self.name)
        lag = 0
        try:
            channel = _resolve(self._store, doc["source"])
            for index, part in enumerate(channel.parts):
                ends = self._logs.ends(part.info)
                done = doc["checkpoints"].get(str(index), ends.start_offset)
                lag += max(0, ends.next_offset - max(done, ends.start_offset))
        except Error:
            lag = -1
        last = doc["last_window"]
        return ApplicationDescription(
            name=doc["name"],
            source=doc["source"],
            sql=doc["sql"],
            window=doc["window"],
            size_ms=doc["size_ms"],
            slide_ms=doc["slide_ms"],
            gap_ms=doc["gap_ms"],
            allowed_lateness_ms=doc["allowed_lateness_ms"],
            destination=(doc["destination"][0], doc["destination"][1]),
            running=doc["running"],
            windows_emitted=doc["windows_emitted"],
            rows_emitted=doc["rows_emitted"],
            late_records=doc["late_records"],
            last_window=None if last is None else (last[0], last[1]),
            lag_records=lag,
            error=doc["error"],
        )

    def _set(self, change: Callable[[dict[str, Any]], None]) -> None:
        def op(ctx: WriteContext) -> None:
            doc = _get_in(ctx, self.name)
            change(doc)
            _put(ctx, doc)

        self._logs.submit(op)

    def stop(self) -> None:
        """Mark the application stopped: runners compute no windows until `start`."""
        self._set(lambda doc: doc.update(running=False))

    def start(self) -> None:
        """Mark the application running (runners pick it up at their next poll)."""
        self._set(lambda doc: doc.update(running=True, error=None))

    @property
    def running(self) -> bool:
        return bool(_load(self._logs, self.name)["running"])

    def delete(self) -> None:
        delete_application(self._store, self.name)

    # -- running -------------------------------------------------------------------

    def run_once(self) -> int:
        """Compute every window that is due by the store's clock; returns how many.

        Each window is one commit. Raises SqlError (with this application's
        name) if DuckDB rejects the query on real data, NotFound if the
        source or destination was deleted, InvalidArgument if the
        destination refuses a result row (too large for it); the error is
        also recorded in `describe().error` and the application stops.
        """
        emitted = 0
        while True:
            doc = _load(self._logs, self.name)
            if not doc["running"]:
                return emitted
            try:
                windows = self._step(doc)
            except _Conflict:
                continue
            except SqlError as exc:
                self._set(partial(_record_error, message=str(exc)))
                raise
            except (InvalidArgument, NotFound) as exc:
                message = f"application {self.name!r}: {exc}"
                self._set(partial(_record_error, message=message))
                raise (NotFound if isinstance(exc, NotFound) else InvalidArgument)(message) from exc
            if windows is None:
                return emitted
            emitted += windows

    def run(
        self,
        stop: threading.Event | None = None,
        *,
        poll_interval: float = 0.2,
        timeout: float | None = None,
    ) -> None:
        """Run windows as they come due until `stop` is set (or `timeout` seconds pass)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        stop = stop or threading.Event()
        while not stop.is_set():
            self.run_once()
            if deadline is not None and time.monotonic() >= deadline:
                return
            stop.wait(poll_interval)

    def run_in_background(self, *, poll_interval: float = 0.2) -> ApplicationWorker:
        """Start a daemon thread running this application; `.close()` stops it."""
        return ApplicationWorker(self, poll_interval)

    def _take(self, channel: _Channel, checkpoints: dict[str, int], until_ms: int) -> _Pending:
        """Records after the checkpoints with arrival time < until_ms, in time order."""
        taken: list[tuple[int, int, Record]] = []
        next_offsets: dict[int, int] = {}
        for index, part in enumerate(channel.parts):
            ends = self._logs.ends(part.info)
            start = max(checkpoints.get(str(index), ends.start_offset), ends.start_offset)
            next_offsets[index] = start
            for record in _read_part(self._logs, part, start, ends.next_offset):
                if record.timestamp_ms >= until_ms:
                    break  # a log's arrival times never decrease (segments/writer.py)
                taken.append((record.timestamp_ms, index, record))
                next_offsets[index] = record.offset + 1
                if len(taken) > WINDOW_RECORDS_MAX:
                    raise SqlError(
                        f"a window holds more than {WINDOW_RECORDS_MAX} records; "
                        "use a smaller window",
                        application=self.name,
                    )
        taken.sort(key=lambda item: (item[0], item[1], item[2].offset))
        return _Pending(taken, next_offsets)

    def _first_pending_ms(self, channel: _Channel, checkpoints: dict[str, int]) -> int | None:
        first: int | None = None
        for index, part in enumerate(channel.parts):
            ends = self._logs.ends(part.info)
            start = max(checkpoints.get(str(index), ends.start_offset), ends.start_offset)
            for record in _read_part(self._logs, part, start, ends.next_offset):
                if first is None or record.timestamp_ms < first:
                    first = record.timestamp_ms
                break
        return first

    def _step(self, doc: dict[str, Any]) -> int | None:
        """Compute and commit the next due window: 1, or 0 if it held only
        late records (committed to count them and pass them); None if no
        window is due."""
        now = self._logs.now_ms()
        watermark = now - doc["allowed_lateness_ms"]
        channel = _resolve(self._store, doc["source"])
        checkpoints: dict[str, int] = doc["checkpoints"]
        first = self._first_pending_ms(channel, checkpoints)
        if first is None:
            return None
        late = 0
        next_offsets = dict(checkpoints)
        if doc["window"] == "session":
            gap = doc["gap_ms"]
            # For sessions next_end_ms is the last emitted session's last
            # arrival + gap: a record before it would have joined a session
            # already written, so it is late.
            floor = doc["next_end_ms"]
            rows = self._take(channel, checkpoints, watermark).records
            while floor is not None and late < len(rows) and rows[late][0] < floor:
                next_offsets[str(rows[late][1])] = rows[late][2].offset + 1
                late += 1
            rows = rows[late:]  # sorted by arrival, so the late ones were a prefix
            if not rows:
                if not late:
                    return None
                self._commit(doc, checkpoints, next_offsets, floor, [], late, None)
                return 0
            end_index = 0
            while end_index + 1 < len(rows) and rows[end_index + 1][0] - rows[end_index][0] < gap:
                end_index += 1
            last_ts = rows[end_index][0]
            if end_index + 1 == len(rows) and last_ts + gap > watermark:
                return None  # the session may still grow
            window_rows = rows[: end_index + 1]
            start_ms, end_ms = rows[0][0], last_ts + 1
            for _ts, index, record in window_rows:
                next_offsets[str(index)] = record.offset + 1
            next_end = last_ts + gap
        else:
            size, slide = doc["size_ms"], doc["slide_ms"]
            next_end = doc["next_end_ms"]
            earliest_end = (first // slide + 1) * slide  # the first window holding `first`
            if next_end is None or next_end < earliest_end:
                next_end = earliest_end
            if next_end > watermark:
                return None
            start_ms, end_ms = next_end - size, next_end
            pending = self._take(channel, checkpoints, end_ms)
            window_rows = []
            next_start = start_ms + slide  # records before this are needed by no later window
            for ts, index, record in pending.records:
                if ts < start_ms:
                    late += 1  # its windows were all computed before it was read
                    next_offsets[str(index)] = record.offset + 1
                    continue
                window_rows.append((ts, index, record))
            for ts, index, record in sorted(window_rows, key=lambda r: (r[1], r[2].offset)):
                if ts < next_start:
                    next_offsets[str(index)] = record.offset + 1
            next_end = next_end + slide
        if not window_rows:  # only late records: pass them, but write no window
            self._commit(doc, checkpoints, next_offsets, next_end, [], late, None)
            return 0
        output = self._compute(doc, channel, window_rows, start_ms, end_ms)
        self._commit(doc, checkpoints, next_offsets, next_end, output, late, (start_ms, end_ms))
        return 1

    def _compute(
        self,
        doc: dict[str, Any],
        channel: _Channel,
        rows: list[tuple[int, int, Record]],
        start_ms: int,
        end_ms: int,
    ) -> list[dict[str, Any]]:
        if not rows:
            return []
        duckdb, pa = _require_modules()
        kind: Kind = doc["source_kind"]
        columns = COLUMNS[kind]
        start = _dt.datetime.fromtimestamp(start_ms / 1000, tz=_dt.UTC)
        end = _dt.datetime.fromtimestamp(end_ms / 1000, tz=_dt.UTC)
        batches = []
        by_part: dict[int, list[Record]] = {}
        for _ts, index, record in rows:
            by_part.setdefault(index, []).append(record)
        for index, records in sorted(by_part.items()):
            batches.append(
                _batch(
                    pa,
                    kind,
                    channel.parts[index],
                    records,
                    columns,
                    {"window_start": start, "window_end": end},
                )
            )
        table = pa.Table.from_batches(
            batches, schema=_schema(pa, kind, columns, ("window_start", "window_end"))
        )
        if self._con is None:
            self._con = _connect(duckdb, 1)  # kept: a new connection costs ~50 ms
        con = self._con
        con.register(doc["table"], table)
        try:
            cursor = con.execute(doc["sql"])
            names = [d[0] for d in cursor.description or []]
            result = cursor.fetchall()
        except duckdb.Error as exc:
            raise SqlError(str(exc), application=self.name) from None
        finally:
            con.unregister(doc["table"])
        if len(result) > OUTPUT_ROWS_MAX:
            raise SqlError(
                f"a window's result has more than {OUTPUT_ROWS_MAX} rows", application=self.name
            )
        return [dict(zip(names, row, strict=True)) for row in result]

    def _commit(
        self,
        doc: dict[str, Any],
        checkpoints: dict[str, int],
        next_offsets: dict[str, int],
        next_end: int | None,
        output: list[dict[str, Any]],
        late: int,
        window: tuple[int, int] | None,
    ) -> None:
        bodies = [
            json.dumps(row, default=_json_default, sort_keys=False).encode() for row in output
        ]
        keys_ = [str(row.get("partition_key") or self.name) for row in output]
        # Ids for FIFO queues and topics: each row's own, so content-based
        # deduplication never drops a row that equals one of an earlier window.
        dedup_ids = [
            hashlib.sha256(f"{self.name}\0{window}\0{i}".encode()).hexdigest()
            for i in range(len(bodies))
        ]
        name = self.name
        destination = _destination(self._store, *doc["destination"]) if bodies else None
        # Compared in the commit: any runner's commit changes at least one of these.
        progress = (checkpoints, doc["next_end_ms"], doc["windows_emitted"])

        def op(ctx: WriteContext) -> None:
            current = _get_in(ctx, name)
            if not current["running"] or progress != (
                current["checkpoints"],
                current["next_end_ms"],
                current["windows_emitted"],
            ):
                raise _Conflict()
            if destination is not None:
                _write_in(ctx, destination, bodies, keys_, name, dedup_ids)
            current["checkpoints"] = next_offsets
            current["next_end_ms"] = next_end
            current["rows_emitted"] += len(bodies)
            current["late_records"] += late
            if window is not None:
                current["windows_emitted"] += 1
                current["last_window"] = list(window)
            _put(ctx, current)

        self._logs.submit(op)


def _write_in(
    ctx: WriteContext,
    destination: Stream | Queue | Topic,
    bodies: list[bytes],
    keys_: list[str],
    group: str,
    dedup_ids: list[str],
) -> None:
    """Append one window's result rows to the destination inside the commit.

    Stream records are keyed by each row's `partition_key` column (else
    `group`, the application's name); FIFO queues and topics get all rows in
    one message group, `group`, so windows keep their order."""
    from tidelog.queues import Queue, prepare_in, send_in
    from tidelog.topics import Topic

    if isinstance(destination, Queue):
        fifo = destination.fifo
        messages = [
            prepare_in(
                ctx,
                destination.name,
                body,
                group_id=group if fifo else None,
                dedup_id=dedup if fifo else None,
            )
            for body, dedup in zip(bodies, dedup_ids, strict=True)
        ]
        send_in(ctx, destination, messages)
    elif isinstance(destination, Topic):
        # The topic's own publish path: its log, then every matching
        # subscription, all in this commit.
        fifo = destination.fifo
        published = [
            destination.prepare_in(ctx, body, group if fifo else None, dedup if fifo else None)
            for body, dedup in zip(bodies, dedup_ids, strict=True)
        ]
        destination.publish_in(ctx, published)
    else:
        view = destination._view_in(ctx)
        groups: dict[int, list[int]] = {}
        shards: dict[int, Any] = {}
        for i, key in enumerate(keys_):
            hash_key = int.from_bytes(hashlib.md5(key.encode()).digest(), "big")
            shard = view.route(hash_key)
            shards[shard.index] = shard
            groups.setdefault(shard.index, []).append(i)
        for shard_index, members in groups.items():
            ctx.append(
                shards[shard_index].info,
                [bodies[i] for i in members],
                [keys_[i].encode() for i in members],
            )


def _record_error(doc: dict[str, Any], *, message: str) -> None:
    doc.update(running=False, error=message)


def _json_default(value: Any) -> Any:
    if isinstance(value, _dt.datetime | _dt.date | _dt.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    return str(value)  # Decimal, UUID, and other DuckDB values


class ApplicationWorker:
    """A daemon thread running one application (`Application.run_in_background`)."""

    def __init__(self, application: Application, poll_interval: float) -> None:
        self.application = application
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._main, args=(poll_interval,), name=f"tidelog-app-{application.name}"
        )
        self._thread.daemon = True
        self._thread.start()

    def _main(self, poll_interval: float) -> None:
        try:
            self.application.run(self._stop, poll_interval=poll_interval)
        except BaseException as exc:  # kept for the owner to see; the thread ends
            self.error = exc

    def close(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
