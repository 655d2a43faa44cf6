"""Shared fixtures. Tests use real LMDB environments and real files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import FakeClock

import tidelog


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tidelog.Store]:
    with tidelog.open(tmp_path / "data") as opened:
        yield opened
        assert opened.check() == []
