"""`tidelog video ...` and `tidelog ls` on a store holding a video stream (CliRunner)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from video_media_helpers import make_mkv, probe

from tidelog.cli.main import main


def run(data: Path, *args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(main, [*args, "--data", str(data)])
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    return result


@pytest.fixture
def media(tmp_path: Path) -> Path:
    path = tmp_path / "in.mkv"
    make_mkv(path, seconds=3)
    return path


def test_create_put_info_ls_clip(tmp_path: Path, media: Path) -> None:
    data = tmp_path / "d"
    created = json.loads(run(data, "video", "create", "cam", "--json").stdout)
    assert created["arn"].startswith("arn:aws:kinesisvideo:")
    acks = [json.loads(line) for line in run(data, "video", "put", "cam", str(media), "--json")
            .stdout.splitlines()]  # fmt: skip
    assert [a["EventType"] for a in acks] == ["BUFFERING", "RECEIVED", "PERSISTED"] * 3
    info = json.loads(run(data, "video", "info", "cam", "--limit", "2", "--json").stdout)
    assert info["config"]["fragments"] == 3 and info["config"]["retention_hours"] == 24
    assert [f["number"] for f in info["fragments"]] == [a["FragmentNumber"] for a in acks[5::3]]
    assert "newest 3 fragments" in run(data, "video", "info", "cam").stdout
    listed = json.loads(run(data, "ls", "--json").stdout)["channels"]
    assert [(c["kind"], c["name"], c["messages"]) for c in listed] == [("video", "cam", 3)]
    rows = json.loads(run(data, "video", "ls", "--json").stdout)["video_streams"]
    assert rows[0]["fragments"] == 3 and rows[0]["bytes"] > 0
    target = tmp_path / "clip.mp4"
    run(data, "video", "clip", "cam", "-o", str(target))
    assert probe(target)["frames"] == 75


def test_errors_are_clear(tmp_path: Path, media: Path) -> None:
    data = tmp_path / "d"
    run(data, "video", "create", "cam")
    assert "not found" in run(data, "video", "info", "ghost", code=1).output
    junk = tmp_path / "junk.mkv"
    junk.write_bytes(b"not a matroska file" * 10)
    failed = run(data, "video", "put", "cam", str(junk), code=1)
    assert "4006" in failed.output
    assert "no fragments" in run(data, "video", "clip", "cam", "-o", str(tmp_path / "x.mp4"),
                                 code=1).output  # fmt: skip
    assert "Invalid value" in run(data, "video", "clip", "cam", "--start", "soon", "-o",
                                  str(tmp_path / "x.mp4"), code=2).output  # fmt: skip
