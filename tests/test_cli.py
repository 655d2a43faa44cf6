"""Every `tidelog` command through click's CliRunner, on a real store on disk.

Each command runs once for people and once with --json (whose output must
parse); the damage tests are in test_cli_repair.py and the real-process
tests (tail -f, receive --wait, verify) in test_cli_procs.py.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import tidelog
from tidelog.cli.docs import render
from tidelog.cli.main import main

ROOT = Path(__file__).resolve().parent.parent


def run(data: Path, *args: str, input: str | None = None, code: int = 0) -> Result:
    result = CliRunner().invoke(main, [*args, "--data", str(data)], input=input)
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    return result


def run_json(data: Path, *args: str, input: str | None = None) -> Any:
    return json.loads(run(data, *args, "--json", input=input).stdout)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A store with a queue (3 messages), a 2-shard stream (5 records) and a plain log."""
    path = tmp_path / "d"
    with tidelog.open(path) as store:
        queue = store.create_queue("jobs")
        for body in ("a", "b", "c"):
            queue.send(body, attributes={"kind": "img", "n": 3})
        stream = store.create_stream("clicks", shards=2)
        stream.put_many([(str(i).encode(), f"user-{i}") for i in range(5)])
        store.create_log("events").append_many([b"x", b"\xff\x00binary"], keys=[b"k1", b"k2"])
    return path


def test_ls_lists_channels_with_counts(data: Path) -> None:
    doc = run_json(data, "ls")
    rows = {(c["kind"], c["name"]): c for c in doc["channels"]}
    assert rows[("queue", "jobs")]["messages"] == 3
    assert rows[("queue", "jobs")]["visible"] == 3
    assert rows[("stream", "clicks")]["messages"] == 5
    assert rows[("log", "events")]["messages"] == 2
    assert all(c["bytes"] > 0 and c["oldest"] and c["newest"] for c in doc["channels"])
    assert [c["name"] for c in run_json(data, "ls", "--kind", "queue")["channels"]] == ["jobs"]
    text = run(data, "ls").output
    assert "jobs" in text and "clicks" in text and "in_flight" in text


def test_ls_uses_tidelog_data_env_and_needs_a_store(tmp_path: Path, data: Path) -> None:
    result = CliRunner().invoke(main, ["ls", "--json"], env={"TIDELOG_DATA": str(data)})
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["data"] == str(data)
    missing = CliRunner().invoke(main, ["ls", "--data", str(tmp_path / "none")])
    assert missing.exit_code == 1 and "no tidelog store" in missing.output
    assert not (tmp_path / "none").exists()  # inspection never creates a store


def test_info_queue_says_why_segments_are_kept(tmp_path: Path) -> None:
    data = tmp_path / "d"
    with tidelog.open(data, segment_bytes_max=4096) as store:
        queue = store.create_queue("jobs")
        for i in range(60):
            queue.send(f"message {i} " + "x" * 200)
        got = queue.receive(1)  # leased, not deleted: the head stays at offset 0
        assert got
    doc = run_json(data, "info", "jobs")
    assert doc["kind"] == "queue" and doc["queue"]["head"] == 0
    segs = doc["logs"][0]["segments"]
    assert len(segs) > 2 and segs[-1]["active"]
    assert "unacked message" in segs[0]["why_kept"]
    assert all(s["end_offset"] is None or s["end_offset"] > s["base_offset"] for s in segs)
    assert "why kept" in run(data, "info", "queue:jobs").output


def test_info_stream_shows_shards_consumers_and_lag(data: Path) -> None:
    with tidelog.open(data) as store:
        stream = store.stream("clicks")
        consumer = stream.consumer("app")
        first = next(iter(stream.read("shardId-000000000000")))
        consumer.checkpoint(first)
    doc = run_json(data, "info", "clicks")
    assert [s["shard_id"] for s in doc["shards"]] == [
        "shardId-000000000000",
        "shardId-000000000001",
    ]
    assert doc["shards"][1]["starting_hash_key"] == str(2**127)
    lag = {c["shard_id"]: c["lag"] for c in doc["consumers"]}
    shard0 = next(p for p in doc["logs"] if p["shard_id"] == "shardId-000000000000")
    shard1 = next(p for p in doc["logs"] if p["shard_id"] == "shardId-000000000001")
    assert lag["shardId-000000000000"] == shard0["records"] - 1
    assert lag["shardId-000000000001"] == shard1["records"]
    assert "retention" in run(data, "info", "clicks").output or shard0["segments"][0]["active"]


def test_info_plain_log_and_ambiguous_names(data: Path) -> None:
    doc = run_json(data, "info", "events")
    assert doc["kind"] == "log" and doc["logs"][0]["records"] == 2
    with tidelog.open(data) as store:
        store.create_stream("jobs")
    ambiguous = run(data, "info", "jobs", code=2)
    assert "queue:jobs" in ambiguous.output and "stream:jobs" in ambiguous.output
    assert run_json(data, "info", "jobs", "--kind", "stream")["kind"] == "stream"
    run(data, "info", "nothing", code=1)


def test_create_and_delete(tmp_path: Path) -> None:
    data = tmp_path / "d"
    doc = run_json(data, "create", "stream", "s", "--shards", "3")
    assert len(doc["shards"]) == 3
    doc = run_json(data, "create", "queue", "dlq")
    assert doc["attributes"]["visibility_timeout"] == 30
    doc = run_json(
        data, "create", "queue", "q", "--visibility-timeout", "5", "--dead-letter", "dlq:3"
    )
    assert doc["attributes"]["dead_letter"] == ["dlq", 3]
    assert "already exists" in run(data, "create", "queue", "q", code=1).output
    run(data, "create", "queue", "bad name!", code=1)
    run(data, "create", "stream", "s2", "--shards", "0", code=2)
    refused = run(data, "delete", "q", input="n\n", code=1)  # asks first; "n" keeps it
    assert "delete queue q and its 0 records?" in refused.output
    with tidelog.open(data) as store:
        assert sorted(q.name for q in store.queues()) == ["dlq", "q"]
    assert run_json(data, "delete", "q", "--yes")["deleted"] == {"kind": "queue", "name": "q"}
    assert "deleted stream s" in run(data, "delete", "stream:s", input="y\n").output
    with tidelog.open(data) as store:
        assert [q.name for q in store.queues()] == ["dlq"] and store.streams() == []
    run(data, "delete", "q", "--yes", code=1)


def test_put_send_from_argument_and_stdin(tmp_path: Path) -> None:
    data = tmp_path / "d"
    run(data, "create", "stream", "s", "--shards", "2")
    run(data, "create", "queue", "q")
    doc = run_json(data, "put", "s", "one", "--key", "k")
    assert len(doc["records"]) == 1
    doc = run_json(data, "put", "s", "--key", "k", input="two\nthree\n")
    assert len({r["shard_id"] for r in doc["records"]}) == 1  # one key, one shard
    sent = run_json(data, "send", "q", "--attr", "kind=img", "--attr", "n:Number=7", input="a\nb\n")
    assert len(sent["messages"]) == 2
    run(data, "send", "q", "c", "--attr", "blob:Binary=AAE=")
    run(data, "send", "q", "x", "--attr", "novalue", code=2)
    run(data, "send", "missing", "x", code=1)
    with tidelog.open(data) as store:
        records = [r.data for r in store.stream("s").read(doc["records"][0]["shard_id"])]
        assert b"two" in records and b"three" in records
        got = store.queue("q").receive(10)
    assert [m.body for m in got] == [b"a", b"b", b"c"]
    assert got[0].attributes == {"kind": "img", "n": 7}
    assert got[2].attributes == {"blob": b"\x00\x01"}


def test_tail_formats_and_starts(data: Path) -> None:
    text = run(data, "tail", "jobs").output.splitlines()
    assert len(text) == 3 and text[0].endswith("{kind=img n=3}") and " a " in text[0]
    lines = run(data, "tail", "jobs", "--json").output.splitlines()
    docs = [json.loads(line) for line in lines]
    assert [d["body"]["text"] for d in docs] == ["a", "b", "c"]
    assert docs[0]["attributes"]["n"] == {"type": "Number", "text": "3"}
    assert run(data, "tail", "jobs", "--from", "latest").output == ""
    assert len(run(data, "tail", "jobs", "--from", "1").output.splitlines()) == 2
    assert len(run(data, "tail", "jobs", "--from", "-1h").output.splitlines()) == 3
    assert run(data, "tail", "jobs", "--from", "2999-01-01T00:00:00Z").output == ""
    run(data, "tail", "jobs", "--from", "yesterday-ish", code=2)
    stream = [
        json.loads(x) for x in run(data, "tail", "clicks", "--format", "json").output.splitlines()
    ]
    assert sorted(d["data"]["text"] for d in stream) == ["0", "1", "2", "3", "4"]
    seq = stream[-1]["sequence_number"]
    shard = stream[-1]["shard_id"]
    after = run(data, "tail", "clicks", "--from", seq, "--format", "json").output.splitlines()
    assert [json.loads(x)["sequence_number"] for x in after] == [seq]
    one = run(data, "tail", "clicks", "--shard", shard.rsplit("-", 1)[1].lstrip("0") or "0")
    assert all(line.startswith(shard) for line in one.output.splitlines())
    assert len(run(data, "tail", "clicks", "-n", "2").output.splitlines()) == 2
    hexed = run(data, "tail", "events", "--format", "hex").output
    assert "ff 00 62 69 6e" in hexed and "key 6b31" in hexed


def test_receive_and_delete(data: Path) -> None:
    doc = run_json(data, "receive", "jobs", "--max", "2", "--visibility-timeout", "60")
    assert [m["body"]["text"] for m in doc["messages"]] == ["a", "b"]
    assert doc["messages"][0]["receipt"] and doc["messages"][0]["receive_count"] == 1
    doc = run_json(data, "receive", "jobs", "--max", "10", "--delete")
    assert [m["body"]["text"] for m in doc["messages"]] == ["c"]
    assert run_json(data, "receive", "jobs")["messages"] == []
    with tidelog.open(data) as store:
        counts = store.queue("jobs").approximate_counts()
    assert (counts.visible, counts.in_flight) == (0, 2)
    run(data, "receive", "jobs", "--max", "11", code=2)


def test_dump_load_round_trips_every_byte(data: Path, tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    for name in ("jobs", "clicks", "events"):
        dumped = run(data, "dump", name).stdout
        loaded = run_json(fresh, "load", name, input=dumped)
        assert loaded["records"] == len(dumped.splitlines()) - 1
        assert run(fresh, "dump", name).stdout == dumped
    with tidelog.open(data) as a, tidelog.open(fresh) as b:
        for log in a.logs():
            assert list(log.read()) == list(b.log(log.name).read())
        got = b.queue("jobs").receive(10)
    assert [m.body for m in got] == [b"a", b"b", b"c"]
    assert got[0].attributes == {"kind": "img", "n": 3}
    line = json.loads(run(data, "dump", "events").stdout.splitlines()[2])
    assert base64.b64decode(line["value"]["base64"]) == b"\xff\x00binary"
    assert "ff 00" in run(data, "dump", "events", "--format", "hex").stdout
    run(fresh, "load", "x", input="not a dump\n", code=1)
    run(fresh, "load", "jobs", input=run(data, "dump", "jobs").stdout, code=1)  # exists


def test_replay_into_queue_and_stream_with_filter(data: Path) -> None:
    with tidelog.open(data) as store:
        store.queue("jobs").send("d", attributes={"kind": "video"})
        store.create_queue("again")
        store.create_stream("copy")
    doc = run_json(data, "replay", "jobs", "--to", "again", "--silent")
    assert doc["sent"] == 4
    doc = run_json(
        data, "replay", "jobs", "--to", "again", "--filter", '{"kind": ["video"]}', "--silent"
    )
    assert (doc["sent"], doc["filtered_out"]) == (1, 3)
    doc = run_json(data, "replay", "clicks", "--to", "copy", "--from", "0", "--silent")
    assert doc["sent"] == 5
    result = CliRunner().invoke(main, ["replay", "jobs", "--to", "copy", "--data", str(data)])
    assert result.exit_code == 0 and "replaying" in result.output  # the bar (stderr mixed in)
    run(data, "replay", "jobs", "--to", "again", "--since", "-1h", "--from", "0", code=2)
    with tidelog.open(data) as store:
        bodies = [m.body for m in store.queue("again").receive(10)]
        assert sorted(bodies) == [b"a", b"b", b"c", b"d", b"d"]
        copied = [r.data for r in store.stream("copy").read(0)]
    assert sorted(copied) == [b"0", b"1", b"2", b"3", b"4", b"a", b"b", b"c", b"d"]


def test_verify_ok_and_json(data: Path) -> None:
    assert run(data, "verify", "--silent").output.strip() == "OK"
    doc = run_json(data, "verify", "jobs", "--silent")
    assert doc["ok"] and doc["logs_checked"] == 1 and doc["problems"] == []


def test_repair_on_a_sound_store_changes_nothing(data: Path) -> None:
    before = run(data, "dump", "clicks").stdout
    doc = run_json(data, "repair")
    assert doc["records_dropped"] == 0 and all(r["damage"] is None for r in doc["logs"])
    assert run(data, "dump", "clicks").stdout == before


def test_stats_measures_rates(data: Path) -> None:
    doc = run_json(data, "stats", "--interval", "0.05")
    rows = {r["name"]: r for r in doc["channels"]}
    assert rows["jobs"]["backlog"] == 3 and rows["jobs"]["records"] == 3
    assert rows["clicks"]["backlog"] is None
    lines = run(data, "stats", "-f", "--interval", "0.05", "--count", "2", "--json").output
    assert [len(json.loads(x)["channels"]) for x in lines.splitlines()] == [3, 3]
    assert "messages_per_second" in run(data, "stats", "--interval", "0.05").output


def test_bench_reports_rates(tmp_path: Path) -> None:
    doc = run_json(tmp_path / "d", "bench", "--records", "200", "--seconds", "0.05")
    names = [r["benchmark"] for r in doc["results"]]
    assert names[0].startswith("fdatasync") and len(names) == 5
    assert all(r["rate"] > 0 for r in doc["results"])
    assert list(tmp_path.iterdir()) == []  # the scratch store is gone


def test_serve_passes_its_options_to_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tidelog import server

    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def serve(*a: Any, on_ready: Any, **kw: Any) -> None:
        assert callable(on_ready)  # prints the banner once the listeners are bound
        calls.append((a, kw))

    monkeypatch.setattr(server, "serve", serve)
    run(tmp_path, "serve", "--port", "4999", "--sync", "never")
    run(
        tmp_path,
        "serve",
        "--no-stomp",
        "--no-workers",
        "--log-level",
        "debug",
        "--access-log",
        "--reset-api",
        "--account-id",
        "123456789012",
    )
    assert calls == [
        (
            (str(tmp_path), "127.0.0.1", 4999, "never"),
            {
                "stomp_port": 61613,
                "stomp_users": None,
                "auth_file": None,
                "workers": True,
                "log_level": "warning",
                "access_log": False,
                "reset_api": False,
                "account_id": "000000000000",
            },
        ),
        (
            (str(tmp_path), "127.0.0.1", 4566, "always"),
            {
                "stomp_port": None,
                "stomp_users": None,
                "auth_file": None,
                "workers": False,
                "log_level": "debug",
                "access_log": True,
                "reset_api": True,
                "account_id": "123456789012",
            },
        ),
    ]


def test_topic_commands(tmp_path: Path) -> None:
    data = tmp_path / "d"
    run(data, "create", "queue", "video")
    created = run_json(data, "create", "topic", "orders", "--retention", "3600")
    assert created["attributes"]["retention"] == 3600
    sub = run_json(data, "subscribe", "orders", "video", "--filter", '{"kind": ["video"]}', "--raw")
    assert sub["endpoint"] == "video" and sub["raw"] and sub["filter_policy"]
    doc = run_json(data, "publish", "orders", "--attr", "kind=video", input="o1\no2\n")
    assert [m["delivered"] for m in doc["messages"]] == [1, 1]
    run(data, "publish", "orders", "o3", "--attr", "kind=text", "--subject", "hi")
    info = run_json(data, "info", "orders")
    assert info["kind"] == "topic" and [s["endpoint"] for s in info["subscriptions"]] == ["video"]
    first_segment = info["logs"][0]["segments"][0]
    assert first_segment["active"] and "active segment" in first_segment["why_kept"]
    tailed = [json.loads(x) for x in run(data, "tail", "orders", "--json").output.splitlines()]
    assert [t["body"]["text"] for t in tailed] == ["o1", "o2", "o3"]
    assert tailed[2]["subject"] == "hi"
    got = run_json(data, "receive", "video", "--max", "10")
    assert [m["body"]["text"] for m in got["messages"]] == ["o1", "o2"]
    dumped = run(data, "dump", "orders").stdout
    run(tmp_path / "fresh", "load", "orders", input=dumped)
    assert run(tmp_path / "fresh", "dump", "orders").stdout == dumped
    assert run_json(data, "ls", "--kind", "topic")["channels"][0]["messages"] == 3
    assert run_json(data, "unsubscribe", "orders", "video")["unsubscribed"] == [sub["id"]]
    assert run_json(data, "info", "orders")["subscriptions"] == []
    run(data, "unsubscribe", "orders", "video", code=1)
    assert run_json(data, "delete", "topic:orders", "-y")["deleted"]["kind"] == "topic"


def test_usage_errors_exit_2(data: Path) -> None:
    run(data, "tail", code=2)
    run(data, "nosuchcommand", code=2)
    run(data, "ls", "--kind", "bogus", code=2)


def test_every_help_has_an_example() -> None:
    text = render()
    sections = text.split("\n## ")[1:]
    assert len(sections) >= 20
    for section in sections:
        title = section.splitlines()[0]
        assert "Example:" in section, f"{title} has no example"
        if title not in ("tidelog", "tidelog create", "tidelog video"):  # the groups
            assert "--json" in section and "--data DIR" in section, title


def test_docs_cli_md_is_generated_from_help() -> None:
    assert (ROOT / "docs" / "cli.md").read_text() == render(), (
        "docs/cli.md is stale: run python -m tidelog.cli.docs > docs/cli.md"
    )
