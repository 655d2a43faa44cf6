"""Shared options and output for every command (as sqlite-utils' output_options).

Every command takes `--data DIR` and `--json` (`--json` may also come
before the command: `tidelog --json ls`). A command builds a JSON-able
document and hands it to `Output.emit` with a way to show it to people (a
table or lines); `--json` prints the document instead. Library errors become
click errors here, in one place: `Corruption` exits 3, every other
`tidelog.Error` and OS error exits 1 (`CommandError`), usage errors exit 2
(click's own). Under `--json` an error is one JSON object on stderr (see
`error_document`), so scripts never parse prose.
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


class CommandError(click.ClickException):
    """A command failed (exit 1); `code` names the error for --json (e.g. NotFound)."""

    def __init__(self, message: str, code: str = "Error") -> None:
        super().__init__(message)
        self.code = code


class CorruptionFound(CommandError):
    """Corruption reached the command line: printed, and the exit code is 3."""

    exit_code = EXIT_CORRUPTION

    def __init__(self, message: str) -> None:
        super().__init__(message, "Corruption")


def error_document(exc: click.ClickException) -> dict[str, Any]:
    """The stable JSON shape of an error under --json (one line on stderr).

    {"error": {"code": ..., "message": ..., "exit_code": ...}}: `code` is the
    library error's class name (NotFound, AlreadyExists, InvalidArgument,
    StaleReceipt, Corruption, ...), "UsageError" for bad usage (exit 2),
    "OSError" for a file system error, or "Error".
    """
    if isinstance(exc, CommandError):
        code = exc.code
    elif isinstance(exc, click.UsageError):
        code = "UsageError"
    else:
        code = "Error"
    return {"error": {"code": code, "message": exc.format_message(), "exit_code": exc.exit_code}}


def json_requested(ctx: click.Context | None = None) -> bool:
    """Whether --json was given, before the command (`tidelog --json ls`) or after it."""
    ctx = ctx or click.get_current_context(silent=True)
    while ctx is not None:
        if ctx.params.get("as_json") or (isinstance(ctx.obj, dict) and ctx.obj.get("json")):
            return True
        ctx = ctx.parent
    return False


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
    return show(value)


def show(value: Any) -> str:
    """A value for people: dicts and lists as JSON (a filter policy), the rest as str."""
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, default=str)
    return str(value)


def data_path(data: str) -> str:
    return os.path.abspath(data)


def common_options(fn: F) -> F:
    """--data and --json, an `out: Output` argument, and errors mapped to exit codes."""

    @functools.wraps(fn)
    def wrapper(*args: Any, data: str, as_json: bool, **kwargs: Any) -> Any:
        out = Output(data, as_json or json_requested())
        try:
            return fn(*args, out=out, **kwargs)
        except tidelog.Corruption as exc:
            raise CorruptionFound(f"corruption: {exc}") from exc
        except tidelog.Error as exc:
            raise CommandError(str(exc), type(exc).__name__) from exc
        except OSError as exc:
            message = f"{exc.strerror or exc}: {exc.filename or ''}"
            raise CommandError(message, "OSError") from exc

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
        try:
            os.stat(os.path.join(out.data, "index.lmdb"))
        except PermissionError:
            pass  # a store this user may not search: tidelog.open says so (PermissionDenied)
        except OSError:
            raise click.ClickException(
                f"no tidelog store at {data_path(out.data)} (see --data)"
            ) from None
    store = tidelog.open(out.data, readonly=readonly)
    if not store._logs.reader_lock and not out.json:
        click.echo(
            f"note: {data_path(out.data)} is read without LMDB's reader lock (this user may "
            "not write index.lmdb/lock.mdb): what is shown may be torn if another user "
            "writes meanwhile",
            err=True,
        )
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


class Group(click.Group):
    """click's Group, printing errors as JSON on stderr when --json is anywhere in argv.

    The check is on the raw arguments because a usage error (a bad option)
    happens before click has parsed any --json; `error_document` gives the
    shape. Without --json, errors print as click prints them.
    """

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        if not standalone_mode or "--json" not in argv:
            return super().main(argv, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(argv, prog_name, complete_var, False, **extra)
        except click.ClickException as exc:
            click.echo(json.dumps(error_document(exc)), err=True)
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            doc = {"error": {"code": "Aborted", "message": "aborted", "exit_code": 1}}
            click.echo(json.dumps(doc), err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)
