"""`tidelog run-triggers` and `tidelog triggers` (engine/triggers.py, engine/trigger_runner.py)."""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import asdict
from typing import Any

import click

import tidelog
from tidelog.trigger_runner import TriggerRunner, status

from .output import Output, common_options, iso_ms, open_store, progress_file, silent_option, table

TRIGGER = "trigger"
FUNCTION = "function"


@click.command("run-triggers")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
@silent_option
@common_options
def run_triggers(duration: float | None, silent: bool, out: Output) -> None:
    """Run every enabled trigger (event source mapping) of the store in the foreground.

    What `tidelog serve` runs in the background, for a store served
    elsewhere or not at all. Safe beside other runners, in any process:
    queue and shard leases share the work, and nothing is deleted or
    checkpointed before its handler returned. Triggers created, changed or
    deleted meanwhile are picked up within half a second. Runs until
    interrupted (Ctrl-C or SIGTERM) or for --duration seconds; progress goes to stderr
    (--silent hides it), the totals are printed at the end.

    Example:

    \b
        tidelog run-triggers --data ./data
    """
    progress = progress_file(silent)
    stop = threading.Event()
    # SIGTERM stops as Ctrl-C does: the batches in hand finish, the totals are printed.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    with open_store(out, readonly=False) as store:
        runner = TriggerRunner(store).start()
        deadline = None if duration is None else time.monotonic() + duration
        try:
            while deadline is None or time.monotonic() < deadline:
                wait = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
                if stop.wait(max(0.0, wait)):
                    break
                stats = runner.stats()
                invocations = sum(s.invocations for s in stats.values())
                errors = sum(s.errors for s in stats.values())
                click.echo(
                    f"\r{len(stats)} triggers: {invocations} invocations, {errors} errors",
                    file=progress,
                    nl=False,
                )
        except KeyboardInterrupt:
            pass
        finally:
            stats = runner.stats()
            runner.stop()
            signal.signal(signal.SIGTERM, previous)
    click.echo("", file=progress)
    rows = [asdict(s) for s in stats.values()]
    out.emit(
        {"triggers": rows},
        lines=[f"{len(rows)} triggers ran"] + ([table(_short(rows))] if rows else []),
    )


def _short(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keys = ("uuid", "invocations", "errors", "records", "last_processing_result")
    return [{k: row[k] for k in keys} for row in rows]


@click.command("triggers")
@common_options
def triggers(out: Output) -> None:
    """List functions and triggers: each trigger's state, lag, invocations,
    errors, mean duration and last error (as its runner last recorded them).

    Example:

    \b
        tidelog triggers --json
    """
    with open_store(out, readonly=True) as store:
        registry = tidelog.Triggers(store)
        functions = [function_doc(f) for f in registry.functions()]
        rows = [status(store, t) for t in registry.triggers()]
    lines = [f"{len(functions)} functions, {len(rows)} triggers"]
    if functions:
        lines += ["", table([{k: f[k] for k in ("name", "handler", "code")} for f in functions])]
    if rows:
        keys = ("uuid", "function", "source", "state", "lag", "invocations", "errors")
        lines += ["", table([{k: r[k] for k in keys} for r in rows])]
    out.emit({"functions": functions, "triggers": rows}, lines=lines)


def function_doc(function: tidelog.Function) -> dict[str, Any]:
    doc = asdict(function)
    doc["last_modified"] = iso_ms(doc.pop("last_modified_ms"))
    return doc


def find(store: tidelog.Store, kind: str, name: str) -> Any:
    """The trigger (by UUID) or function (by name); raises tidelog.NotFound."""
    registry = tidelog.Triggers(store)
    return registry.trigger(name) if kind == TRIGGER else registry.function(name)


def info_doc(store: tidelog.Store, kind: str, handle: Any) -> dict[str, Any]:
    """`tidelog info`'s document for a trigger or a function."""
    if kind == FUNCTION:
        doc = function_doc(handle)
        registry = tidelog.Triggers(store)
        mapped = [status(store, t) for t in registry.triggers(function=handle.name)]
        return {
            "kind": FUNCTION,
            "name": handle.name,
            "config": doc,
            "progress": {"triggers": len(mapped), "log": registry.log_path(handle.name)},
        }
    trigger: tidelog.Trigger = handle
    config = asdict(trigger)
    config["created"] = iso_ms(config.pop("created_ms"))
    config["last_modified"] = iso_ms(config.pop("last_modified_ms"))
    progress = status(store, trigger)
    progress["stats_updated"] = iso_ms(progress.pop("stats_updated_ms"))
    return {"kind": TRIGGER, "name": trigger.uuid, "config": config, "progress": progress}


__all__ = ["FUNCTION", "TRIGGER", "find", "info_doc", "run_triggers", "triggers"]
