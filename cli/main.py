"""The `tidelog` command (click)."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

import tidelog

DEFAULT_DATA = "tidelog-data"


def data_option(fn: Any) -> Any:
    return click.option(
        "--data",
        "data",
        envvar="TIDELOG_DATA",
        default=DEFAULT_DATA,
        show_default=True,
        help="Data directory (or set TIDELOG_DATA).",
    )(fn)


def json_option(fn: Any) -> Any:
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(fn)


@click.group()
@click.version_option(tidelog.__version__, prog_name="tidelog")
def main() -> None:
    """Inspect and operate a tidelog store."""


@main.command("ls")
@data_option
@json_option
def ls(data: str, as_json: bool) -> None:
    """List the logs of a store (creating the store if it does not exist).

    Example: tidelog ls --data ./tidelog-data --json
    """
    with tidelog.open(data) as store:
        rows = []
        for log in store.logs():
            ends = log.ends()
            rows.append(
                {
                    "name": log.name,
                    "start_offset": ends.start_offset,
                    "end_offset": ends.next_offset,
                    "records": ends.next_offset - ends.start_offset,
                }
            )
        report = store.recovery_report
    if as_json:
        click.echo(
            json.dumps(
                {
                    "data": os.path.abspath(data),
                    "logs": rows,
                    "recovery": report.to_dict() if report else None,
                }
            )
        )
        return
    click.echo(f"store {os.path.abspath(data)}: {len(rows)} logs")
    for row in rows:
        click.echo(f"  {row['name']}\t{row['records']} records (offsets {row['start_offset']}..)")
    if report is not None and report.logs:
        for item in report.logs:
            click.echo(f"  recovered {item.log}: {'; '.join(item.problems) or 'tail truncated'}")


@main.command("verify")
@data_option
@json_option
def verify(data: str, as_json: bool) -> None:
    """Check every record's CRC and the index; exit 3 if anything is damaged.

    Example: tidelog verify --data ./tidelog-data
    """
    try:
        store = tidelog.open(data, readonly=True)
    except tidelog.Error as exc:
        raise click.ClickException(str(exc)) from exc
    with store:
        problems = store.verify()
    found = [str(p) for items in problems.values() for p in items]
    if as_json:
        click.echo(json.dumps({"problems": found, "ok": not found}))
    else:
        for line in found:
            click.echo(line)
        click.echo(f"{len(found)} problems found" if found else "OK")
    if found:
        sys.exit(3)


@main.command("serve")
@data_option
def serve(data: str) -> None:
    """Serve the store over the wire (AWS APIs, STOMP): not built yet."""
    raise click.ClickException(
        "serve: the wire servers are not built yet (see issues 7 and 8); "
        "use the library or `tidelog ls` meanwhile"
    )


if __name__ == "__main__":
    main()
