"""Test helpers importable from any test module (tests/ is on pythonpath)."""

from __future__ import annotations

from pathlib import Path


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
