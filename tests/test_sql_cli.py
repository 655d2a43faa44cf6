"""`tidelog sql`, `tidelog apps` and `tidelog run-app` through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

pytest.importorskip("duckdb")
pytest.importorskip("pyarrow")

import tidelog  # noqa: E402
from tidelog.cli.main import main  # noqa: E402


def run(data: Path, *args: str) -> Result:
    return CliRunner().invoke(main, [*args, "--data", str(data)])


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    with tidelog.open(path) as store:
        stream = store.create_stream("clicks", shards=2)
        stream.put_many([(json.dumps({"user": f"u{i % 2}", "n": i}), f"k{i}") for i in range(10)])
        store.create_queue("out")
    return path


QUERY = "SELECT data->>'user' AS user, count(*) AS n FROM clicks GROUP BY 1 ORDER BY 1"


def test_sql_outputs(data: Path) -> None:
    table = run(data, "sql", QUERY)
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert lines[0].split() == ["user", "n"] and lines[2].split() == ["u0", "5"]
    as_json = run(data, "sql", QUERY, "--json")
    assert json.loads(as_json.output) == {
        "columns": ["user", "n"],
        "rows": [{"user": "u0", "n": 5}, {"user": "u1", "n": 5}],
    }
    as_csv = run(data, "sql", QUERY, "--csv")
    assert as_csv.output == "user,n\nu0,5\nu1,5\n"
    # Two scan workers (the stream's two shards) and a memory bound: the same rows.
    bounded = run(data, "sql", QUERY, "--json", "--scan-workers", "2", "--memory-limit", "200MB")
    assert bounded.exit_code == 0, bounded.output
    assert json.loads(bounded.output) == json.loads(as_json.output)
    bad = run(data, "sql", QUERY, "--memory-limit", "plenty")
    assert bad.exit_code != 0 and "memory_limit" in bad.output


def test_sql_errors(data: Path) -> None:
    unknown = run(data, "sql", "SELECT * FROM nothing")
    assert unknown.exit_code == 1 and "unknown channel 'nothing'" in unknown.output
    bound = run(data, "sql", "SELECT count(*) FROM clicks", "--scan-bytes-max", "10")
    assert bound.exit_code == 1 and "scan_bytes_max=10" in bound.output


def test_run_app_once_and_apps(data: Path) -> None:
    with tidelog.open(data) as store:
        store.create_application(
            "per-user",
            "clicks",
            "SELECT data->>'user' AS user, count(*) AS n FROM clicks GROUP BY 1",
            size=0.001,
            destination="queue:out",
        )
    result = run(data, "run-app", "per-user", "--once", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["windows_this_run"] >= 1 and doc["lag"] == 0
    listing = json.loads(run(data, "apps", "--json").output)["applications"]
    assert [a["name"] for a in listing] == ["per-user"]
    with tidelog.open(data) as store:
        total = store.sql("SELECT sum((data->>'n')::INT) FROM out").rows
    assert total == [(10,)]
    missing = run(data, "run-app", "nope", "--once")
    assert missing.exit_code == 1 and "not found" in missing.output
