"""Test helpers importable from any test module (tests/ is on pythonpath)."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import IO


class FakeClock:
    """An injected clock (seconds), advanced by hand so tests never sleep."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def objects(root: Path) -> dict[str, bytes]:
    """Every delivered object under `root` by relative key (no temp files may remain)."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            assert not path.name.endswith(".tmp"), path
            out[path.relative_to(root).as_posix()] = path.read_bytes()
    return out


def complete_lines(text: str) -> list[str]:
    """The newline-terminated lines of what a process wrote, without their newlines.

    A process killed while it wrote a line leaves that line cut short and
    unterminated; it was never acknowledged, so it is not among the lines.
    Use this (or `read_complete_lines`, `collect_complete_lines`) for every
    output of a child that a test kills.
    """
    return text.split("\n")[:-1]


def read_complete_lines(path: Path) -> list[str]:
    """`complete_lines` of a file a killed child wrote (none if it never made it)."""
    if not path.exists():
        return []
    return complete_lines(path.read_text())


def collect_complete_lines(stream: IO[str], into: list[str]) -> threading.Thread:
    """Append each complete line (without its newline) read from `stream` to `into`,
    on a daemon thread, until end of file; join the thread after the child is gone."""

    def run() -> None:
        for line in stream:
            if line.endswith("\n"):  # the last one may be cut short by a kill
                into.append(line[:-1])

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def unprivileged() -> list[str]:
    """A command prefix that runs a child as a user whom file permissions bind:
    `nobody` (util-linux's setpriv) when the tests run as root, whom they do not."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def sigint_as_ctrl_c() -> None:
    """A Popen preexec_fn: SIGINT back to its default in the child, so that
    Python turns it into KeyboardInterrupt as at a terminal's Ctrl-C. (A
    suite started in the background by a shell inherits SIGINT ignored, and
    so would every child: its Ctrl-C tests would then wait for ever.)"""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
