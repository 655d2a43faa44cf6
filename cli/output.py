"""Shared options and output for every command (as sqlite-utils' output_options).

Every command takes `--data DIR` and `--json`. A command builds a JSON-able
document and hands it to `Output.emit` with a way to show it to people (a
table or lines); `--json` prints the document instead. Library errors become
click errors here, in one place: `Corruption` exits 3, every other
`tidelog.Error` and OS error exits 1 (click.ClickException), usage errors
exit 2 (click's own).
"""

from __future__ import annotations

import base64
import functools
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

import tidelog

DEFAULT_DATA = "tidelog-data"
EXIT_CORRUPTION = 3

F = TypeVar("F", bound=Callable[..., Any])


class CorruptionFound(click.ClickException):
    """Corruption reached the command line: printed, and the exit code is 3."""

    exit_code = EXIT_CORRUPTION


class Output:
    """Where a command's answer goes: JSON for machines, tables for people."""

    def __init__(self, data: str, as_json: bool) -> None:
        self.data = data
        self.json = as_json

    def emit(
        self,
        document: Any,
        *,
        rows: Sequence[Mapping[str, Any]] | None = None,
        columns: Sequence[str] | None = None,
        lines: Sequence[str] = (),
    ) -> None:
        """Print `document` as JSON (--json), else `lines` then `rows` as a table."""
        if self.json:
            click.echo(json.dumps(document, default=str))
            return
        for line in lines:
            click.echo(line)
        if rows is not None:
            click.echo(table(rows, columns))

    def line(self, document: Mapping[str, Any], text: str) -> None:
        """One item of a stream of results: a JSON line, or text."""
        click.echo(json.dumps(document, default=str) if self.json else text)


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A plain aligned text table (no dependency beyond click)."""
    if not rows:
        return "(none)"
    names = list(columns) if columns is not None else list(rows[0])
    cells = [[_cell(row.get(name)) for name in names] for row in rows]
    widths = [max(len(name), *(len(r[i]) for r in cells)) for i, name in enumerate(names)]
    out = ["  ".join(name.ljust(widths[i]) for i, name in enumerate(names)).rstrip()]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in cells]
    return "\n".join(out)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return str(value)


def data_path(data: str) -> str:
    return os.path.abspath(data)


def common_options(fn: F) -> F:
    """--data and --json, an `out: Output` argument, and errors mapped to exit codes."""

    @functools.wraps(fn)
    def wrapper(*args: Any, data: str, as_json: bool, **kwargs: Any) -> Any:
        out = Output(data, as_json)
        try:
            return fn(*args, out=out, **kwargs)
        except tidelog.Corruption as exc:
            raise CorruptionFound(f"corruption: {exc}") from exc
        except tidelog.Error as exc:
            raise click.ClickException(str(exc)) from exc
        except OSError as exc:
            raise click.ClickException(f"{exc.strerror or exc}: {exc.filename or ''}") from exc

    wrapped: Any = click.option(
        "--json", "as_json", is_flag=True, help="Machine-readable JSON output."
    )(wrapper)
    wrapped = click.option(
        "--data",
        "data",
        envvar="TIDELOG_DATA",
        default=DEFAULT_DATA,
        show_default=True,
        metavar="DIR",
        help="Data directory (or set TIDELOG_DATA).",
    )(wrapped)
    return wrapped  # type: ignore[no-any-return]


def silent_option(fn: F) -> F:
    return click.option("--silent", is_flag=True, help="Hide the progress bar (stderr).")(fn)


@contextmanager
def open_store(out: Output, *, readonly: bool) -> Iterator[tidelog.Store]:
    """Open the store: read-only for inspection (never creates, never blocks writers)."""
    if readonly and not os.path.isdir(os.path.join(out.data, "index.lmdb")):
        raise click.ClickException(f"no tidelog store at {data_path(out.data)} (see --data)")
    store = tidelog.open(out.data, readonly=readonly)
    try:
        yield store
    finally:
        store.close()


# -- value rendering ---------------------------------------------------------------------------


def text_or_base64(data: bytes) -> dict[str, str]:
    """{"text": ...} for UTF-8 bytes, else {"base64": ...} (lossless either way)."""
    try:
        return {"text": data.decode()}
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode()}


def from_text_or_base64(item: Mapping[str, str]) -> bytes:
    if "base64" in item:
        return base64.b64decode(item["base64"])
    return item.get("text", "").encode()


def printable(data: bytes, limit: int = 0) -> str:
    """UTF-8 text as is; binary as a short marker with its length."""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return f"<binary {len(data)} bytes: {data[:16].hex()}{'...' if len(data) > 16 else ''}>"
    if limit and len(text) > limit:
        return text[: limit - 3] + "..."
    return text


def iso_ms(ms: int | None) -> str | None:
    if not ms:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def progress_file(silent: bool) -> Any:
    """The progress bar's stream: stderr, or nothing with --silent."""
    return open(os.devnull, "w") if silent else sys.stderr  # noqa: SIM115
