"""The CLI through click's CliRunner and, where it matters, a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

import tidelog
from tidelog.cli.docs import render
from tidelog.cli.main import main

ROOT = Path(__file__).resolve().parent.parent


def test_ls_json_lists_logs(tmp_path: Path) -> None:
    data = tmp_path / "d"
    with tidelog.open(data) as store:
        store.create_log("events").append_many([b"a", b"b"])
    result = CliRunner().invoke(main, ["ls", "--data", str(data), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert [(log["name"], log["records"]) for log in out["logs"]] == [("events", 2)]


def test_ls_uses_tidelog_data_env(tmp_path: Path) -> None:
    data = tmp_path / "env-data"
    result = CliRunner().invoke(main, ["ls", "--json"], env={"TIDELOG_DATA": str(data)})
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["data"] == str(data)
    assert (data / "index.lmdb").is_dir()


def test_verify_finds_bit_flip_and_exits_3(tmp_path: Path) -> None:
    data = tmp_path / "d"
    with tidelog.open(data, segment_bytes_max=4096) as store:
        log = store.create_log("events")
        log.append_many([bytes([i]) * 200 for i in range(40)])
        log.roll()
    runner = CliRunner()
    ok = runner.invoke(main, ["verify", "--data", str(data)])
    assert ok.exit_code == 0 and ok.output.strip().endswith("OK")
    segment = sorted((data / "logs").glob("*/*.seg"))[0]
    raw = bytearray(segment.read_bytes())
    raw[200] ^= 0x10
    segment.write_bytes(bytes(raw))
    bad = runner.invoke(main, ["verify", "--data", str(data), "--json"])
    assert bad.exit_code == 3
    report = json.loads(bad.output)
    assert not report["ok"] and str(segment) in report["problems"][0]


def test_verify_in_a_real_subprocess(tmp_path: Path) -> None:
    data = tmp_path / "d"
    with tidelog.open(data) as store:
        store.create_log("events").append(b"x")
    done = subprocess.run(
        [sys.executable, "-m", "tidelog.cli.main", "verify", "--data", str(data)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "OK"


def test_serve_says_it_is_not_built_yet(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["serve", "--data", str(tmp_path)])
    assert result.exit_code == 1
    assert "not built yet" in result.output


def test_docs_cli_md_is_generated_from_help() -> None:
    assert (ROOT / "docs" / "cli.md").read_text() == render(), (
        "docs/cli.md is stale: run python -m tidelog.cli.docs > docs/cli.md"
    )
