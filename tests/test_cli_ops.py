"""The CLI as a new user meets it (issue 18): tail -n, progress bars, the
operating commands, --json anywhere with JSON errors, queue counts.

Each command runs for people and with --json; errors under --json are parsed
as JSON from stderr. The progress bars are checked on a pseudo-terminal.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from helpers import sigint_as_ctrl_c

import tidelog
from tidelog.cli.main import main

CLI = [sys.executable, "-m", "tidelog.cli.main"]


def run(data: Path, *args: str, input: str | None = None, code: int = 0) -> Result:
    result = CliRunner().invoke(main, [*args, "--data", str(data)], input=input)
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    return result


def run_json(data: Path, *args: str, input: str | None = None) -> Any:
    return json.loads(run(data, *args, "--json", input=input).stdout)


def json_error(data: Path, *args: str, code: int, input: str | None = None) -> dict[str, Any]:
    """The JSON error a failing command prints on stderr under --json (nothing on stdout)."""
    result = run(data, *args, input=input, code=code)
    assert result.stdout == ""
    doc = json.loads(result.stderr.splitlines()[-1])  # after a prompt, if one was asked
    assert set(doc) == {"error"} and set(doc["error"]) == {"code", "message", "exit_code"}
    assert doc["error"]["exit_code"] == code
    return doc["error"]  # type: ignore[no-any-return]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "d"
    with tidelog.open(path) as store:
        queue = store.create_queue("jobs")
        for i in range(6):
            queue.send(f"m{i}")
        store.create_stream("clicks", shards=2).put_many(
            [(f"c{i}".encode(), f"user-{i}") for i in range(10)]
        )
    return path


# -- tail -n ---------------------------------------------------------------------------------------


def test_tail_n_prints_the_newest_records(data: Path) -> None:
    lines = run(data, "tail", "jobs", "-n", "2").output.splitlines()
    assert [line.split()[-1] for line in lines] == ["m4", "m5"]
    lines = run(data, "tail", "jobs", "-n", "2", "--json").stdout.splitlines()
    docs = [json.loads(x) for x in lines]
    assert [d["offset"] for d in docs] == [4, 5]
    # A stream's shards are merged by arrival time: the newest 3 of all shards, oldest first.
    lines = run(data, "--json", "tail", "clicks", "-n", "3").stdout.splitlines()
    docs = [json.loads(x) for x in lines]
    with tidelog.open(data) as store:
        stream = store.stream("clicks")
        every = [r for s in stream.shards() for r in stream.read(s.shard_id)]
    every.sort(key=lambda r: (r.arrival_timestamp_ms, r.shard_id, int(r.sequence_number)))
    assert [d["data"]["text"] for d in docs] == [r.data.decode() for r in every[-3:]]
    assert len(run(data, "tail", "jobs", "-n", "100").output.splitlines()) == 6
    assert run(data, "tail", "jobs", "-n", "0").output == ""
    # --from chooses the range, -n its newest records, --max stops early.
    assert len(run(data, "tail", "jobs", "--from", "4", "-n", "5").output.splitlines()) == 2
    assert len(run(data, "tail", "jobs", "--max", "2").output.splitlines()) == 2
    assert run(data, "tail", "jobs", "--max", "2").output.split()[3] == "m0"


def test_tail_n_follow_prints_the_newest_then_new_records(data: Path) -> None:
    proc = subprocess.Popen(
        [*CLI, "tail", "jobs", "-n", "2", "-f", "--json", "--data", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=sigint_as_ctrl_c,
    )
    try:
        assert proc.stdout is not None
        first = [json.loads(proc.stdout.readline())["offset"] for _ in range(2)]
        assert first == [4, 5]
        with tidelog.open(data) as store:
            store.queue("jobs").send("after")
        assert json.loads(proc.stdout.readline())["body"]["text"] == "after"
        proc.send_signal(2)  # SIGINT: tail stops cleanly
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err


# -- progress bars -------------------------------------------------------------------------------


def _on_a_terminal(args: list[str], stdin: bytes = b"") -> tuple[int, bytes, bytes]:
    """Run the CLI with stderr on a pseudo-terminal: (exit code, stdout, what the terminal got)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [*CLI, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=follower,
        env={**os.environ, "COLUMNS": "100"},
    )
    os.close(follower)
    assert proc.stdin is not None
    proc.stdin.write(stdin)
    proc.stdin.close()
    terminal = b""
    out_chunks: list[bytes] = []
    assert proc.stdout is not None
    streams = {leader, proc.stdout.fileno()}
    while streams:
        ready, _, _ = select.select(list(streams), [], [], 60)
        assert ready, "the CLI hung"
        for fd in ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the terminal's last holder closed it
                chunk = b""
            if not chunk:
                streams.discard(fd)
            elif fd == leader:
                terminal += chunk
            else:
                out_chunks.append(chunk)
    os.close(leader)
    return proc.wait(timeout=60), b"".join(out_chunks), terminal


def test_dump_and_load_draw_progress_bars_on_a_terminal(data: Path, tmp_path: Path) -> None:
    with tidelog.open(data) as store:
        store.create_log("big").append_many([b"x" * 100] * 20_000)
    code, dumped, terminal = _on_a_terminal(["dump", "big", "--data", str(data)])
    assert code == 0, terminal
    assert b"dumping log big" in terminal and b"100%" in terminal and b"#" in terminal
    assert len(dumped.splitlines()) == 20_001  # the records went to stdout, not the bar
    code, loaded, terminal = _on_a_terminal(
        ["load", "big", "--json", "--data", str(tmp_path / "copy")], stdin=dumped
    )
    assert code == 0, terminal
    assert b"loading log big" in terminal and b"100%" in terminal
    assert json.loads(loaded)["records"] == 20_000
    code, _, terminal = _on_a_terminal(["dump", "big", "--silent", "--data", str(data)])
    assert code == 0 and terminal == b""


# -- --json anywhere, JSON errors ----------------------------------------------------------------


def test_json_is_a_global_option_too(data: Path) -> None:
    before = CliRunner().invoke(main, ["--json", "ls", "--data", str(data)])
    after = CliRunner().invoke(main, ["ls", "--json", "--data", str(data)])
    assert before.exit_code == after.exit_code == 0
    assert json.loads(before.stdout) == json.loads(after.stdout)


def test_errors_under_json_are_json_on_stderr(data: Path, tmp_path: Path) -> None:
    error = json_error(data, "send", "nosuch", "x", "--json", code=1)
    assert error["code"] == "NotFound" and "nosuch" in error["message"]
    error = json_error(data, "--json", "create", "queue", "jobs", code=1)
    assert error["code"] == "AlreadyExists"
    error = json_error(data, "--json", "create", "queue", "bad name!", code=1)
    assert error["code"] == "InvalidArgument"
    error = json_error(data, "--json", "ls", "--kind", "bogus", code=2)
    assert error["code"] == "UsageError" and "bogus" in error["message"]
    error = json_error(data, "--json", "nosuchcommand", code=2)
    assert error["code"] == "UsageError"
    error = json_error(tmp_path / "none", "ls", "--json", code=1)
    assert "no tidelog store" in error["message"]
    error = json_error(data, "delete", "jobs", "--json", input="n\n", code=1)
    assert error["code"] == "Aborted"
    # Without --json, errors stay text for people.
    text = run(data, "send", "nosuch", "x", code=1).output
    assert text.startswith("Error: ") and "{" not in text


def test_corruption_under_json_exits_3_with_a_json_error(tmp_path: Path) -> None:
    data = tmp_path / "d"
    with tidelog.open(data, segment_bytes_max=4096) as store:
        log = store.create_log("events")
        for i in range(30):
            log.append(bytes([i]) * 200)
    segment = sorted((data / "logs").glob("*/*.seg"))[0]
    raw = bytearray(segment.read_bytes())
    raw[500] ^= 0x01
    segment.write_bytes(bytes(raw))
    result = run(data, "dump", "events", "--json", "--silent", code=3)
    assert json.loads(result.stderr)["error"]["code"] == "Corruption"


# -- ls / info / delete --------------------------------------------------------------------------


def test_ls_counts_undeleted_messages_of_a_queue(data: Path) -> None:
    with tidelog.open(data) as store:
        queue = store.queue("jobs")
        got = queue.receive(4)
        for message in got[:3]:
            queue.delete(message.receipt)  # 3 deleted, 1 in flight, 2 visible
    row = next(c for c in run_json(data, "ls")["channels"] if c["name"] == "jobs")
    assert (row["messages"], row["records"]) == (3, 6)
    assert (row["visible"], row["in_flight"], row["delayed"]) == (2, 1, 0)
    table = run(data, "ls", "--kind", "queue").output.splitlines()
    assert table[1].split()[:4] == ["kind", "name", "messages", "records"]
    assert table[3].split()[:4] == ["queue", "jobs", "3", "6"]


def test_sql_over_a_queue_has_undeleted_messages_and_history_has_all(data: Path) -> None:
    pytest.importorskip("duckdb")
    with tidelog.open(data) as store:
        queue = store.queue("jobs")
        got = queue.receive(3)
        queue.delete(got[0].receipt)
        queue.delete(got[2].receipt)  # m0 and m2 deleted; m1 in flight
    rows = run_json(data, "sql", "SELECT data FROM jobs ORDER BY sequence_number")["rows"]
    assert [r["data"] for r in rows] == ["m1", "m3", "m4", "m5"]
    rows = run_json(data, "sql", "SELECT data FROM history.jobs ORDER BY sequence_number")["rows"]
    assert [r["data"] for r in rows] == [f"m{i}" for i in range(6)]
    with tidelog.open(data) as store:
        assert store.sql("SELECT count(*) FROM queue.jobs").rows == [(4,)]
        assert store.sql("SELECT count(*) FROM jobs WHERE sequence_number >= 2").rows == [(3,)]


def test_info_prints_filter_policies_as_json(tmp_path: Path) -> None:
    data = tmp_path / "d"
    with tidelog.open(data) as store:
        queue = store.create_queue("video")
        topic = store.create_topic("orders")
        topic.subscribe(queue, filter_policy={"kind": ["video"], "size": [{"numeric": [">", 3]}]})
    text = run(data, "info", "orders").output
    assert '{"kind": ["video"], "size": [{"numeric": [">", 3]}]}' in text
    assert "{'kind'" not in text  # not a Python repr


def test_delete_asks_unless_yes(data: Path) -> None:
    prompt = run(data, "delete", "jobs", input="n\n", code=1).output
    assert "delete queue jobs and its 6 records? [y/N]" in prompt and "Aborted" in prompt
    assert run(data, "delete", "jobs", code=1)  # no terminal, no --yes: refused
    with tidelog.open(data) as store:
        assert [q.name for q in store.queues()] == ["jobs"]
    run(data, "delete", "jobs", input="y\n")
    doc = run_json(data, "delete", "clicks", "--yes")
    assert doc["deleted"] == {"kind": "stream", "name": "clicks"}


# -- delete-message / purge ----------------------------------------------------------------------


def test_delete_message_by_receipt(data: Path) -> None:
    got = run_json(data, "receive", "jobs", "--max", "3")["messages"]
    receipts = [m["receipt"] for m in got]
    doc = run_json(data, "delete-message", "jobs", receipts[0])
    assert doc == {"queue": "jobs", "deleted": [receipts[0]], "failed": []}
    text = run(data, "delete-message", "jobs", input="\n".join(receipts[1:]) + "\n").output
    assert "deleted 2 messages from jobs" in text
    with tidelog.open(data) as store:
        counts = store.queue("jobs").approximate_counts()
    assert (counts.visible, counts.in_flight) == (3, 0)
    # Deleting again succeeds (SQS); a malformed receipt fails the command with a report.
    result = run(data, "delete-message", "jobs", receipts[0], "bogus", "--json", code=1)
    doc = json.loads(result.stdout)
    assert doc["deleted"] == [receipts[0]]
    assert [f["receipt"] for f in doc["failed"]] == ["bogus"]
    assert doc["failed"][0]["code"] == "ReceiptHandleIsInvalid"
    run(data, "delete-message", "jobs", input="", code=2)  # no receipt at all
    assert json_error(data, "delete-message", "nosuch", "r", "--json", code=1)["code"] == "NotFound"


def test_purge(data: Path) -> None:
    assert run_json(data, "purge", "jobs") == {"queue": "jobs", "purged": 6}
    assert run_json(data, "receive", "jobs")["messages"] == []
    assert "purged 0 messages from jobs" in run(data, "purge", "jobs").output
    assert json_error(data, "purge", "nosuch", "--json", code=1)["code"] == "NotFound"


# -- checkpoint ----------------------------------------------------------------------------------


def _next_offsets(data: Path, consumer: str) -> dict[str, int | None]:
    doc = run_json(data, "checkpoint", "clicks", consumer)
    return {row["shard_id"]: row["next_offset"] for row in doc["shards"]}


def test_checkpoint_resets_as_kafka_reset_offsets(data: Path) -> None:
    with tidelog.open(data) as store:
        stream = store.stream("clicks")
        consumer = stream.consumer("billing")
        for record in consumer.read():
            consumer.checkpoint(record)
        ends = {
            s.shard_id: store.log(f"stream/clicks/{s.shard_id}").end_offset for s in stream.shards()
        }
    assert _next_offsets(data, "billing") == ends
    doc = run_json(data, "checkpoint", "clicks", "billing", "--to-earliest", "--dry-run")
    assert doc["dry_run"] and all(r["new_next_offset"] == 0 for r in doc["shards"])
    assert _next_offsets(data, "billing") == ends  # a dry run changes nothing
    run(data, "checkpoint", "clicks", "billing", "--to-earliest")
    with tidelog.open(data) as store:
        again = list(store.stream("clicks").consumer("billing").read())
    assert sorted(r.data for r in again) == sorted(f"c{i}".encode() for i in range(10))
    text = run(data, "checkpoint", "clicks", "billing", "--to-offset", "2").output
    assert "reset billing of clicks in 2 shards" in text
    assert set(_next_offsets(data, "billing").values()) == {2}
    run(data, "checkpoint", "clicks", "billing", "--to-latest", "--shard", "0")
    offsets = _next_offsets(data, "billing")
    shard0 = "shardId-000000000000"
    assert offsets[shard0] == ends[shard0] and offsets["shardId-000000000001"] == 2
    run(data, "checkpoint", "clicks", "billing", "--to-datetime", "2999-01-01T00:00:00Z")
    assert _next_offsets(data, "billing") == ends
    run(data, "checkpoint", "clicks", "billing", "--to-datetime", "-1h")
    assert set(_next_offsets(data, "billing").values()) == {None}  # from the start again
    with tidelog.open(data) as store:
        stream = store.stream("clicks")
        record = list(stream.read("shardId-000000000001"))[1]
    run(data, "checkpoint", "clicks", "billing", "--to-sequence", record.sequence_number)
    assert _next_offsets(data, "billing")["shardId-000000000001"] == 1
    # A new consumer is registered at the position asked for.
    run(data, "checkpoint", "clicks", "fresh", "--to-latest")
    assert _next_offsets(data, "fresh") == ends


def test_checkpoint_errors(data: Path) -> None:
    run(data, "checkpoint", "clicks", "c", "--to-earliest", "--to-latest", code=2)
    run(data, "checkpoint", "clicks", "c", "--to-datetime", "soon", code=2)
    run(data, "checkpoint", "clicks", "c", "--to-sequence", "12", code=2)
    error = json_error(data, "checkpoint", "clicks", "nobody", "--json", code=1)
    assert error["code"] == "NotFound"
    error = json_error(data, "checkpoint", "jobs", "c", "--to-latest", "--json", code=1)
    assert error["code"] == "NotFound"  # jobs is a queue, not a stream


# -- config --------------------------------------------------------------------------------------


def test_config_shows_and_changes_settings(data: Path) -> None:
    with tidelog.open(data) as store:
        store.create_queue("jobs-dlq")
        store.create_topic("orders")
    doc = run_json(data, "config", "jobs")
    assert doc["config"]["visibility_timeout"] == 30 and doc["changed"] == []
    doc = run_json(
        data,
        "config",
        "jobs",
        "--set",
        "visibility_timeout=60",
        "--set",
        'dead_letter=["jobs-dlq", 5]',
        "--set",
        "replay-window=3600",
    )
    assert doc["changed"] == ["dead_letter", "replay_window", "visibility_timeout"]
    with tidelog.open(data) as store:
        attributes = store.queue("jobs").attributes()
        assert attributes["visibility_timeout"] == 60
        assert attributes["dead_letter"] == ("jobs-dlq", 5)
        assert attributes["replay_window"] == 3600
    run(data, "config", "jobs", "--set", "dead_letter=null")
    text = run(data, "config", "orders", "--set", "display_name=Orders", "--set", "retention=60")
    assert "changed topic orders" in text.output and "display_name: Orders" in text.output
    run(data, "config", "clicks", "--set", "retention_hours=48")
    with tidelog.open(data) as store:
        assert store.queue("jobs").attributes()["dead_letter"] is None
        assert store.topic("orders").attributes()["retention"] == 60
        assert store.stream("clicks").describe().retention_hours == 48
    error = json_error(data, "config", "jobs", "--set", "fifo=true", "--json", code=1)
    assert error["code"] == "InvalidArgument" and "fifo" in error["message"]
    error = json_error(data, "config", "clicks", "--set", "retention_hours=1", "--json", code=1)
    assert error["code"] == "InvalidArgument"
    run(data, "config", "jobs", "--set", "novalue", code=2)


# -- create delivery-stream / app ----------------------------------------------------------------


def test_create_delivery_stream_and_app(data: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "landed"
    doc = run_json(
        data,
        "create",
        "delivery-stream",
        "clicks-to-files",
        "--source",
        "clicks",
        "--destination",
        str(out_dir),
        "--buffer-seconds",
        "0",
        "--newline",
    )
    assert doc["source"] == "clicks" and doc["destination"]["type"] == "directory"
    text = run(data, "create", "delivery-stream", "to-s3", "--destination", "s3://archive/raw/")
    assert "created delivery stream to-s3 (direct -> s3://archive/raw/)" in text.output
    with tidelog.open(data) as store:
        described = store.delivery_stream("to-s3").describe()
        assert described.destination["bucket"] == "archive" and described.prefix == "raw/"
    error = json_error(
        data, "create", "delivery-stream", "to-s3", "--destination", "x", "--json", code=1
    )
    assert error["code"] == "AlreadyExists"
    run(data, "deliver", "clicks-to-files", "--once", "--silent")
    landed = b"".join(p.read_bytes() for p in out_dir.rglob("*") if p.is_file())
    assert sorted(landed.split()) == sorted(f"c{i}".encode() for i in range(10))

    pytest.importorskip("duckdb")
    run(data, "create", "queue", "counts")
    doc = run_json(
        data,
        "create",
        "app",
        "per-minute",
        "--source",
        "clicks",
        "--destination",
        "queue:counts",
        "--sql",
        "SELECT count(*) AS n FROM clicks",
        "--size",
        "60",
    )
    assert doc["running"] and doc["destination"] == ["queue", "counts"]
    assert run_json(data, "info", "application:per-minute")["name"] == "per-minute"
    error = json_error(
        data,
        "create",
        "app",
        "bad",
        "--source",
        "clicks",
        "--destination",
        "queue:counts",
        "--sql",
        "SELEC nonsense",
        "--json",
        code=1,
    )
    assert error["code"] == "SqlError"
