"""Test helpers importable from any test module (tests/ is on pythonpath)."""

from __future__ import annotations


class FakeClock:
    """An injected clock (seconds), advanced by hand so tests never sleep."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
