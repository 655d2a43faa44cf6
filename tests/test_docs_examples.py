"""Every fenced Python block in README.md and docs/*.md runs (pytest-examples).

Each file's blocks run in order, as a reader would run them, sharing their
globals (a later block may use the store an earlier one opened), in a fresh
working directory. A block not meant to run (one that blocks for ever, say)
is fenced as ```python test="skip"``` and says why beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pytest_examples import CodeExample, EvalExample, find_examples

import tidelog

ROOT = Path(__file__).resolve().parent.parent
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _examples(path: Path) -> list[CodeExample]:
    return [e for e in find_examples(str(path)) if e.path == path]


def test_every_doc_with_python_is_covered() -> None:
    """The markdown files that hold Python blocks are the ones run below."""
    with_python = {p.name for p in FILES if _examples(p)}
    assert {"README.md", "api.md", "scale-out.md", "server.md", "stomp.md"} <= with_python


def test_tx_append_refuses_a_queue(tmp_path: Path) -> None:
    with tidelog.open(tmp_path / "d") as store:
        queue = store.create_queue("jobs")
        log = store.create_log("audit")
        refused = pytest.raises(tidelog.InvalidArgument, match=r"not a Queue \(use queue.send")
        with refused, store.transaction() as tx:
            tx.append(log, b"fine")
            tx.append(queue, b"order 7")  # type: ignore[arg-type]
        assert len(log) == 0 and len(queue) == 0  # nothing of the transaction landed
        with store.transaction() as tx:
            tx.append(log, b"fine")
        assert tx.offsets == [0]


@pytest.mark.parametrize("path", [p for p in FILES if _examples(p)], ids=lambda p: p.name)
def test_python_blocks_run(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, eval_example: EvalExample
) -> None:
    monkeypatch.chdir(tmp_path)
    names: dict[str, Any] = {"__name__": f"docs_{path.stem}"}
    ran = 0
    for example in _examples(path):
        if example.prefix_settings().get("test") == "skip":
            continue
        names = eval_example.run(example, module_globals=names)
        ran += 1
    assert ran > 0
    for value in names.values():  # a store a block left open
        if isinstance(value, tidelog.Store):
            value.close()
