"""docs/layers.svg and docs/record.svg are what docs/diagrams/make.py draws from their sources."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAKE = ROOT / "docs" / "diagrams" / "make.py"


def test_committed_svgs_match_their_sources() -> None:
    done = subprocess.run(
        [sys.executable, str(MAKE), "--check"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


def test_svgs_are_well_formed_and_show_what_they_say() -> None:
    for name, words in (
        ("layers.svg", ["adapters", "engine/", "segments/", "S3"]),
        ("record.svg", ["CRC32C", "timestamp", "value"]),
    ):
        root = ElementTree.parse(ROOT / "docs" / name).getroot()
        text = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text"))
        assert all(word in text for word in words), (name, text)
