"""Shared fixtures. Tests use real LMDB environments and real files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import tidelog


class FakeClock:
    """An injected clock (seconds), advanced by hand so tests never sleep."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tidelog.Store]:
    with tidelog.open(tmp_path / "data") as opened:
        yield opened
        assert opened.check() == []
