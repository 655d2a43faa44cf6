"""`tidelog sql QUERY`, `tidelog apps` and `tidelog run-app NAME` (engine/sql.py)."""

from __future__ import annotations

import csv
import io
import json
import sys
import threading
import time
from typing import Any

import click

from .output import Output, common_options, iso_ms, open_store, table


def _cell(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)  # timestamps, decimals, lists: as DuckDB prints them


@click.command("sql")
@click.argument("query")
@click.option("--csv", "as_csv", is_flag=True, help="CSV output (with a header row).")
@click.option(
    "--scan-bytes-max",
    type=click.IntRange(0),
    default=None,
    help="Refuse queries that would read more bytes of segments than this.",
)
@click.option(
    "--memory-limit",
    default=None,
    help="DuckDB's memory bound (e.g. 1GB); past it, work spills to a temporary directory.",
)
@click.option(
    "--scan-workers",
    type=click.IntRange(1),
    default=None,
    help="Processes that read a large table's logs (default: one a core; 1: none).",
)
@common_options
def sql(
    query: str,
    as_csv: bool,
    scan_bytes_max: int | None,
    memory_limit: str | None,
    scan_workers: int | None,
    out: Output,
) -> None:
    """Run a SQL query (DuckDB's dialect) over streams, queues and topics.

    Each channel is a table: streams have shard_id, sequence_number,
    partition_key, data, arrival_time; queues and topics message_id,
    sequence_number, data, attributes (JSON), group_id (topics: subject),
    arrival_time. `data` is text, so DuckDB's JSON operators apply
    (data->>'field'). Filters on arrival_time, shard_id and sequence_number
    read only the matching segments. Where a stream and a queue share a
    name, write stream.NAME or queue.NAME. A queue's table holds its
    undeleted messages (visible, in flight or delayed: what `tidelog ls`
    counts); history.NAME is its whole retained log, deleted messages
    included. Opens the store read-only.

    Example:

    \b
        tidelog sql "SELECT data->>'user' AS user, count(*) FROM clicks
                     WHERE arrival_time > now() - INTERVAL 1 HOUR GROUP BY 1"
    """
    with open_store(out, readonly=True) as store:
        result = store.sql(
            query,
            scan_bytes_max=scan_bytes_max,
            memory_limit=memory_limit,
            scan_workers=scan_workers,
        )
    rows = [{c: _cell(v) for c, v in zip(result.columns, row, strict=True)} for row in result]
    if as_csv:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(result.columns)
        writer.writerows([[row[c] for c in result.columns] for row in rows])
        click.echo(buffer.getvalue(), nl=False)
        return
    if out.json:
        click.echo(json.dumps({"columns": result.columns, "rows": rows}, default=str))
        return
    click.echo(table(rows, result.columns) if rows else "(no rows)")


@click.command("apps")
@common_options
def apps(out: Output) -> None:
    """List SQL applications (continuous queries): state, windows, lag.

    Example:

    \b
        tidelog apps --json
    """
    with open_store(out, readonly=True) as store:
        docs = [_describe(app.describe()) for app in store.applications()]
    out.emit(
        {"applications": docs},
        rows=docs,
        columns=["name", "source", "window", "destination", "running", "windows", "lag", "error"],
    )


def _describe(info: Any) -> dict[str, Any]:
    last = info.last_window
    return {
        "name": info.name,
        "source": info.source,
        "window": f"{info.window} {info.size_ms if info.window != 'session' else info.gap_ms} ms",
        "destination": ":".join(info.destination),
        "running": info.running,
        "windows": info.windows_emitted,
        "rows": info.rows_emitted,
        "late_records": info.late_records,
        "last_window": None if last is None else [iso_ms(last[0]), iso_ms(last[1])],
        "lag": info.lag_records,
        "error": info.error,
        "sql": info.sql,
    }


@click.command("run-app")
@click.argument("name")
@click.option(
    "--poll", type=click.FloatRange(0.01, 60), default=0.5, show_default=True, help="Seconds."
)
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
@click.option("--once", is_flag=True, help="Compute the windows due now, then stop.")
@common_options
def run_app(name: str, poll: float, duration: float | None, once: bool, out: Output) -> None:
    """Run SQL application NAME in the foreground, computing windows as they fall due.

    Runs until interrupted (Ctrl-C), for --duration seconds, or with --once
    until no window is due. Safe beside other runners of the same
    application in any process, and across kill -9: each window's result
    and checkpoint are one commit, so every window lands exactly once.

    Example:

    \b
        tidelog run-app clicks-per-minute --duration 3600
    """
    with open_store(out, readonly=False) as store:
        app = store.application(name)
        if once:
            emitted = app.run_once()
        else:
            before = app.describe().windows_emitted
            stop = threading.Event()
            started = time.monotonic()
            try:
                while not stop.is_set():
                    app.run_once()
                    if duration is not None and time.monotonic() - started >= duration:
                        break
                    stop.wait(poll)
            except KeyboardInterrupt:
                print("interrupted", file=sys.stderr)
            emitted = app.describe().windows_emitted - before
        doc = _describe(app.describe())
    doc["windows_this_run"] = emitted
    out.emit(doc, lines=[f"{name}: {emitted} windows computed, lag {doc['lag']} records"])
