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
    group = main
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        if command is None:
            continue
        sub = click.Context(command, info_name=f"tidelog {name}", parent=None)
        lines += [f"## tidelog {name}", "", "```", command.get_help(sub), "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(), end="")
