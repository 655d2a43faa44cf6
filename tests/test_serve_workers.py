"""The background workers of `tidelog serve` (server/workers.py), and `tidelog info`
on what they run: delivery streams and SQL applications.

The first test runs `tidelog serve` as a real process and drives it from
this one, through boto3 and through the library on the same directory, as
a user would; the others run `Workers` in this process, with an injected
clock for the buffering rules where they can.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from helpers import FakeClock
from server_harness import client, free_port, start_serve

import tidelog
from tidelog.cli.main import main
from tidelog.server import ServerThread
from tidelog.server.workers import Workers

pytest.importorskip("duckdb")
pytest.importorskip("pyarrow")

BOUND_SECONDS = 10.0  # the longest a test waits for a worker to act


def _wait_for(what: str, check: Callable[[], Any], seconds: float = BOUND_SECONDS) -> Any:
    """Poll `check` until it returns something true; fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _files(directory: Path) -> list[Path]:
    if not directory.exists():
        return []
    return sorted(p for p in directory.rglob("*") if p.is_file() and not p.name.startswith("."))


def _info(data: Path, *args: str) -> Any:
    result = CliRunner().invoke(main, ["info", *args, "--data", str(data), "--json"])
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.output)


def _received(queue: tidelog.Queue) -> list[Any]:
    out = []
    for message in queue.receive(10):
        out.append(json.loads(message.body))
        queue.delete(message.receipt)
    return out


def test_serve_delivers_runs_applications_and_stops_on_sigterm(tmp_path: Path) -> None:
    data, landing = tmp_path / "d", tmp_path / "landing"
    with tidelog.open(data) as store:  # made before serve starts: the workers see it at once
        store.create_stream("clicks")
        store.create_queue("counts")
    port = free_port()
    process = start_serve(data, port, "--no-stomp")
    try:
        with tidelog.open(data) as store:
            # A delivery stream made while serve runs, fed over the wire (Firehose API).
            store.create_delivery_stream(
                "events", destination=landing, buffering_interval=0, newline_delimiter=True
            )
            firehose: Any = client("firehose", f"http://127.0.0.1:{port}")
            records = [{"Data": f"event {i}".encode()} for i in range(3)]
            put = firehose.put_record_batch(DeliveryStreamName="events", Records=records)
            assert put["FailedPutCount"] == 0
            [delivered] = _wait_for("the delivered object", lambda: _files(landing))
            assert delivered.read_bytes() == b"event 0\nevent 1\nevent 2\n"
            progress = _wait_for(
                "the delivery's commit",
                lambda: (p := _info(data, "events")["progress"])["records_delivered"] == 3 and p,
            )
            assert progress["buffered_records"] == 0 and progress["lag_records"] == 0
            assert progress["last_delivery"] is not None and progress["lag_seconds"] == 0

            # An application made while serve runs: one-second tumbling windows.
            app = store.create_application(
                "per-second",
                "clicks",
                "SELECT window_start, count(*) AS n FROM clicks GROUP BY ALL",
                window="tumbling",
                size=1,
                destination="queue:counts",
            )
            clicks, counts = store.stream("clicks"), store.queue("counts")
            clicks.put_many([(b'{"u": 1}', "a"), (b'{"u": 2}', "b")])
            [row] = _wait_for("the first window's row", lambda: _received(counts))
            assert row["n"] == 2

            # Stopped through the API: serve computes no more windows...
            app.stop()
            windows = app.describe().windows_emitted
            clicks.put(b'{"u": 3}', partition_key="c")
            time.sleep(2.0)  # the window (1 s) is due and serve polls every 0.2 s
            assert _received(counts) == []
            assert app.describe().windows_emitted == windows
            doc = _info(data, "application:per-second")
            assert doc["progress"]["state"] == "stopped" and doc["progress"]["lag_records"] == 1

            # ...until it is started again: then the window that waited is written.
            app.start()
            [row] = _wait_for("the window after start", lambda: _received(counts))
            assert row["n"] == 1
            assert store.check() == []
    finally:
        started = time.monotonic()
        os.kill(process.pid, signal.SIGTERM)
        try:
            _, err = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert process.returncode == 0, err
    assert time.monotonic() - started < 5
    lines = err.strip().splitlines()  # the banner and the shutdown line: no errors
    assert len(lines) == 2 and lines[0].startswith("serving "), err
    assert lines[1].startswith("stopped serving "), err


def test_info_shows_a_delivery_streams_buffer_lag_and_last_delivery(tmp_path: Path) -> None:
    data, landing = tmp_path / "d", tmp_path / "landing"
    clock = FakeClock(time.time() - 30)  # the records arrive 30 s before `info` looks
    with tidelog.open(data, clock=clock) as store:
        ds = store.create_delivery_stream("events", destination=landing, buffering_interval=60)
        ds.put_record_batch([b"one", b"three"])
    doc = _info(data, "events")
    assert doc["kind"] == "delivery-stream" and doc["config"]["buffering_interval"] == 60
    progress = doc["progress"]
    assert progress["buffered_records"] == 2 and progress["buffered_bytes"] == 8
    assert progress["lag_records"] == 2 and 29 <= progress["lag_seconds"] < 120
    assert progress["last_delivery"] is None and progress["records_delivered"] == 0
    assert progress["oldest_buffered"] is not None

    with tidelog.open(data, clock=clock) as store:
        clock.advance(5)
        [result] = store.delivery_stream("events").flush_all()
    progress = _info(data, "delivery-stream:events")["progress"]
    assert progress["buffered_records"] == 0 and progress["buffered_bytes"] == 0
    assert progress["lag_records"] == 0 and progress["lag_seconds"] == 0
    assert progress["oldest_buffered"] is None
    assert progress["records_delivered"] == 2 and progress["batches"] == 1
    assert progress["last_key"] == result.keys[-1]
    assert progress["last_delivery"].startswith(time.strftime("%Y-%m-%dT", time.gmtime(clock())))

    text = CliRunner().invoke(main, ["info", "events", "--data", str(data)])
    assert text.exit_code == 0, text.output
    assert text.output.startswith("delivery stream events") and "last_delivery:" in text.output


def test_info_shows_an_applications_state_window_and_lag(tmp_path: Path) -> None:
    data = tmp_path / "d"
    clock = FakeClock(1_700_000_000.0)
    with tidelog.open(data, clock=clock) as store:
        store.create_stream("clicks")
        store.create_queue("counts")
        app = store.create_application(
            "per-minute",
            "clicks",
            "SELECT count(*) AS n FROM clicks",
            window="tumbling",
            size=60,
            destination="queue:counts",
        )
        store.stream("clicks").put_many([(b"{}", "a"), (b"{}", "b")])
        assert _info(data, "per-minute")["progress"]["lag_records"] == 2
        clock.advance(60)
        assert app.run_once() == 1
        store.stream("clicks").put(b"late?", partition_key="c")
        app.stop()
    doc = _info(data, "per-minute", "--kind", "application")
    assert doc["kind"] == "application" and doc["name"] == "per-minute"
    assert doc["config"]["source"] == "clicks" and doc["config"]["destination"] == "queue:counts"
    assert doc["config"]["window"] == {"type": "tumbling", "size_seconds": 60.0}
    assert doc["progress"] == {
        "state": "stopped",
        "last_window": {
            "start": "2023-11-14T22:13:00.000+00:00",
            "end": "2023-11-14T22:14:00.000+00:00",
        },
        "lag_records": 1,
        "windows_emitted": 1,
        "rows_emitted": 1,
        "late_records": 0,
        "error": None,
    }
    text = CliRunner().invoke(main, ["info", "per-minute", "--data", str(data)])
    assert text.exit_code == 0 and "state: stopped" in text.output, text.output


def test_info_asks_which_when_a_name_is_shared_and_says_what_it_does_not_know(
    tmp_path: Path,
) -> None:
    data = tmp_path / "d"
    with tidelog.open(data) as store:
        store.create_queue("events")
        store.create_delivery_stream("events", destination=tmp_path / "landing")
    shared = CliRunner().invoke(main, ["info", "events", "--data", str(data)])
    assert shared.exit_code == 2 and "delivery-stream:events" in shared.output
    assert _info(data, "queue:events")["kind"] == "queue"
    missing = CliRunner().invoke(main, ["info", "application:events", "--data", str(data)])
    assert missing.exit_code == 1 and "not found" in missing.output


def test_workers_pick_up_changes_and_one_failure_stops_no_other(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(time.time())
    landing, blocked = tmp_path / "landing", tmp_path / "blocked"
    blocked.write_text("a file where a directory should be")
    caplog.set_level(logging.ERROR, logger="tidelog.server")
    with tidelog.open(tmp_path / "d", sync="never", clock=clock) as store:
        store.create_stream("clicks")
        store.create_queue("counts")
        store.create_queue("gone")
        workers = Workers(store, poll_interval=0.05, worker_poll_interval=0.05)
        with workers:
            good = store.create_delivery_stream("good", destination=landing, buffering_interval=60)
            bad = store.create_delivery_stream(
                "bad", destination=blocked, buffering_interval=0, retry_duration=0
            )
            bad.put_record(b"cannot land")
            good.put_record(b"lands")
            _wait_for("the failing stream's error in the log", lambda: "'bad'" in caplog.text)
            assert _files(landing) == []  # the good stream's hint (60 s) is not due yet
            clock.advance(60)
            [delivered] = _wait_for("the good stream's object", lambda: _files(landing))
            assert delivered.read_bytes() == b"lands"
            assert bad.stats().buffered_records == 1  # kept, to be retried

            # Applications: one whose SQL fails on real data, one whose destination
            # goes away, and one that works beside them.
            sql = "SELECT count(*) AS n FROM clicks"
            broken = store.create_application(
                "broken",
                "clicks",
                "SELECT CAST(data AS INTEGER) AS n FROM clicks",
                size=1,
                destination="queue:counts",
            )
            orphan = store.create_application(
                "orphan", "clicks", sql, size=1, destination="queue:gone"
            )
            working = store.create_application(
                "working", "clicks", sql, size=1, destination="queue:counts"
            )
            store.delete_queue("gone")
            store.stream("clicks").put(b"not a number", partition_key="k")
            clock.advance(2)
            [row] = _wait_for(
                "the working application's row", lambda: _received(store.queue("counts"))
            )
            assert row == {"n": 1}
            error = _wait_for("the broken query's error", lambda: broken.describe().error)
            assert "broken" in error and not broken.running
            _wait_for("the orphan's error in the log", lambda: "'orphan'" in caplog.text)
            assert orphan.describe().windows_emitted == 0
            assert working.describe().windows_emitted == 1

            # Deleted and stopped ones are let go at the next look.
            bad.delete()
            orphan.delete()
            working.stop()
            _wait_for(
                "the workers to let go",
                lambda: set(workers.deliverers) == {"good"} and not workers.applications,
            )
        assert not workers.deliverers and not workers.applications
    logged = [r.getMessage() for r in caplog.records]
    assert sum("'bad'" in m for m in logged) == 1  # the same failure is logged once
    assert any("'broken'" in m and "stopped" in m for m in logged)


def test_without_duckdb_applications_are_skipped_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.WARNING, logger="tidelog.server")
    with tidelog.open(tmp_path / "d", sync="never") as store:
        store.create_stream("clicks")
        store.create_queue("counts")
        app = store.create_application(
            "a", "clicks", "SELECT 1 AS one FROM clicks", size=1, destination="queue:counts"
        )
        store.stream("clicks").put(b"x", partition_key="k")
        # Made where duckdb is installed, served where it is not:
        monkeypatch.setitem(sys.modules, "duckdb", None)  # `import duckdb` fails
        with Workers(store) as workers:
            for _ in range(3):
                workers.poll()
            assert workers.applications == {}
        assert app.describe().windows_emitted == 0
    warnings = [r.getMessage() for r in caplog.records if "duckdb" in r.getMessage()]
    assert len(warnings) == 1 and "'tidelog[sql]'" in warnings[0]


def test_server_thread_runs_the_workers_only_when_asked(tmp_path: Path) -> None:
    clock = FakeClock(time.time())
    landing = tmp_path / "landing"
    with tidelog.open(tmp_path / "d", sync="never", clock=clock) as store:
        store.create_delivery_stream("events", destination=landing, buffering_interval=300)
        with ServerThread(store) as plain:
            assert plain.workers is None
        with ServerThread(store, workers=True) as server:
            assert server.workers is not None and set(server.workers.deliverers) == {"events"}
            firehose: Any = client("firehose", server.url)
            firehose.put_record(DeliveryStreamName="events", Record={"Data": b"over the wire"})
            time.sleep(0.5)
            assert _files(landing) == []  # the interval (300 s) has not passed
            clock.advance(300)
            [delivered] = _wait_for("the delivered object", lambda: _files(landing))
            assert delivered.read_bytes() == b"over the wire"
        assert store.check() == []


def test_serve_command_passes_no_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tidelog import server

    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    monkeypatch.setattr(server, "serve", lambda *a, **kw: calls.append((a, kw)))
    for extra in ([], ["--no-workers"]):
        command = ["serve", "--port", "4999", *extra, "--data", str(tmp_path)]
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 0, result.output
    assert [kw.get("workers", True) for _, kw in calls] == [True, False]


def test_a_waiting_buffer_is_not_read_again_at_each_poll(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """serve polls every delivery stream several times a second: a poll that finds
    nothing due reads only the records that arrived since the last one."""
    clock = FakeClock(1_700_000_000.0)
    with tidelog.open(tmp_path / "d", sync="never", clock=clock) as store:
        stream = store.create_stream("clicks", shards=2)
        ds = store.create_delivery_stream(
            "f", source="clicks", destination=tmp_path / "o", buffering_interval=60
        )
        read_records: list[int] = []
        real_read = tidelog.delivery.read_value_chunks

        def counting_read(*args: Any, **kwargs: Any) -> Any:
            for rows in real_read(*args, **kwargs):
                read_records.extend(row[0] for row in rows)
                yield rows

        monkeypatch.setattr(tidelog.delivery, "read_value_chunks", counting_read)
        stream.put_many([(b"r%d" % i, f"k{i}") for i in range(100)])
        assert ds.flush() is None
        assert len(read_records) == 100
        for _ in range(5):
            clock.advance(1)
            assert ds.flush() is None
        assert len(read_records) == 100  # nothing new: nothing read
        stream.put_many([(b"s%d" % i, f"k{i}") for i in range(10)])
        assert ds.flush() is None
        assert len(read_records) == 110  # only the new ones
        clock.advance(60)
        result = ds.flush()
        assert result is not None and result.records == 110  # then the batch, whole
        assert ds.flush() is None and ds.stats().buffered_records == 0


def test_serve_delivers_http_subscriptions_another_process_left_pending(tmp_path: Path) -> None:
    """A confirmation that could not be POSTed before its process stopped is
    POSTed by `tidelog serve` once it runs: the pending message is durable."""
    import http.server
    import threading

    hook_port = free_port()
    with tidelog.open(tmp_path / "d", sync="never") as store:
        topic = store.create_topic("alerts")
        topic.subscribe_http(
            f"http://127.0.0.1:{hook_port}/hook",
            delivery_policy={"numRetries": 20, "numMinDelayRetries": 20, "minDelayTarget": 1},
        )
    # Nothing listened on hook_port while that store was open; now something does.
    received: list[tuple[str, dict[str, Any]]] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.headers["x-amz-sns-message-type"], json.loads(body)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    hook = http.server.ThreadingHTTPServer(("127.0.0.1", hook_port), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    serve = start_serve(tmp_path / "d", free_port(), "--no-stomp")
    try:
        kinds = _wait_for("the confirmation POST", lambda: [k for k, _ in received])
        assert kinds == ["SubscriptionConfirmation"]
        assert received[0][1]["TopicArn"].endswith(":alerts")
    finally:
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=15) == 0
        hook.shutdown()
        hook.server_close()
