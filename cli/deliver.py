"""`tidelog deliver NAME`: run a delivery stream's deliverer in the foreground."""

from __future__ import annotations

import time

import click

from tidelog.delivery import FlushResult

from .output import Output, common_options, iso_ms, open_store, progress_file, silent_option


@click.command("deliver")
@click.argument("name")
@click.option(
    "--poll", type=click.FloatRange(0.01, 60), default=0.5, show_default=True, help="Seconds."
)
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
@click.option("--once", is_flag=True, help="Deliver the batches due now, then stop.")
@click.option("--all", "flush_all", is_flag=True, help="Deliver everything buffered, due or not.")
@click.option("--processor", metavar="MODULE:FUNCTION", help="Record processor to use.")
@silent_option
@common_options
def deliver(
    name: str,
    poll: float,
    duration: float | None,
    once: bool,
    flush_all: bool,
    processor: str | None,
    silent: bool,
    out: Output,
) -> None:
    """Deliver delivery stream NAME's batches as its buffering hints fall due.

    Runs until interrupted (Ctrl-C), for --duration seconds, or, with --once
    or --all, until nothing is due. Safe beside other deliverers of the same
    stream, in any process: each batch lands exactly once. Progress goes to
    stderr (--silent hides it); the totals are printed at the end.

    Example:

    \b
        tidelog deliver clickstream-to-s3 --duration 3600
    """
    delivered = batches = 0
    keys: list[str] = []
    progress = progress_file(silent)
    with open_store(out, readonly=False) as store:
        ds = store.delivery_stream(name)
        if processor is not None:
            from tidelog.delivery import _load_processor

            ds.set_processor(_load_processor(processor))

        def show(result: FlushResult) -> None:
            nonlocal delivered, batches
            batches += 1
            delivered += result.records
            keys.extend(result.keys)
            click.echo(
                f"\r{name}: {batches} batches, {delivered} records; last {result.keys[-1:]}",
                file=progress,
                nl=False,
            )

        deadline = None if duration is None else time.monotonic() + duration
        try:
            while deadline is None or time.monotonic() < deadline:
                while (result := ds.flush(force=flush_all)) is not None:
                    show(result)
                if once or flush_all:
                    break
                time.sleep(poll)
        except KeyboardInterrupt:
            pass
        stats = ds.stats()
    if batches:
        click.echo("", file=progress)
    doc = {
        "name": name,
        "batches": batches,
        "records": delivered,
        "keys": keys,
        "buffered_records": stats.buffered_records,
        "buffered_bytes": stats.buffered_bytes,
        "last_delivery": iso_ms(stats.last_delivery_ms),
    }
    out.emit(
        doc,
        lines=[
            f"{name}: delivered {delivered} records in {batches} batches; "
            f"{stats.buffered_records} records ({stats.buffered_bytes} bytes) still buffered"
        ],
    )


__all__ = ["deliver"]
