"""Render docs/cli.md from the commands' --help texts.

    python -m tidelog.cli.docs > docs/cli.md

tests/test_cli.py fails when docs/cli.md and this output differ.
"""

from __future__ import annotations

import click

from tidelog.cli.main import main


def render() -> str:
    lines = [
        "# Command line",
        "",
        "Generated from `--help` by `python -m tidelog.cli.docs > docs/cli.md`;",
        "do not edit by hand. Exit codes: 0 ok, 1 error, 2 usage, 3 corruption found.",
        "",
    ]
    context = click.Context(main, info_name="tidelog")
    lines += ["## tidelog", "", "```", main.get_help(context), "```", ""]
    lines += _commands(main, context, "tidelog")
    return "\n".join(lines)


def _commands(group: click.Group, context: click.Context, prefix: str) -> list[str]:
    """A section per command, recursing into groups (`tidelog create queue`)."""
    lines: list[str] = []
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        if command is None:
            continue
        title = f"{prefix} {name}"
        sub = click.Context(command, info_name=title, parent=None)
        lines += [f"## {title}", "", "```", command.get_help(sub), "```", ""]
        if isinstance(command, click.Group):
            lines += _commands(command, sub, title)
    return lines


if __name__ == "__main__":
    print(render(), end="")
