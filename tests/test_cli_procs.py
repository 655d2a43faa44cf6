"""The CLI as a real process: tail -f, receive --wait and verify.

These run `python -m tidelog.cli.main` in a subprocess while this process
writes to the same store, so the cross-process wake-ups are real.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from helpers import sigint_as_ctrl_c

import tidelog

CLI = [sys.executable, "-m", "tidelog.cli.main"]


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=sigint_as_ctrl_c,  # the tests stop some of them with Ctrl-C
    )


def test_tail_follow_sees_other_process_appends_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    data = tmp_path / "d"
    with tidelog.open(data) as store:
        queue = store.create_queue("jobs")
        queue.send("before")
    proc = start("tail", "jobs", "-f", "--json", "--data", str(data))
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        assert first["body"]["text"] == "before"
        with tidelog.open(data) as store:
            started = time.monotonic()
            store.queue("jobs").send("after")
            second = json.loads(proc.stdout.readline())
            latency = time.monotonic() - started
        assert second["body"]["text"] == "after" and second["offset"] == 1
        assert latency < 5
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and out == ""


def test_tail_follow_stops_after_limit(tmp_path: Path) -> None:
    data = tmp_path / "d"
    with tidelog.open(data) as store:
        store.create_stream("s", shards=2)
    proc = start("tail", "s", "-f", "--max", "3", "--data", str(data))
    try:
        time.sleep(0.5)
        with tidelog.open(data) as store:
            store.stream("s").put_many([(b"r%d" % i, f"k{i}") for i in range(3)])
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert sorted(line.split()[-1] for line in out.splitlines()) == ["r0", "r1", "r2"]


def test_receive_wait_is_woken_by_a_send_from_another_process(tmp_path: Path) -> None:
    data = tmp_path / "d"
    with tidelog.open(data) as store:
        store.create_queue("jobs")
    proc = start("receive", "jobs", "--wait", "15", "--delete", "--json", "--data", str(data))
    try:
        time.sleep(0.8)
        assert proc.poll() is None  # still waiting: nothing sent yet
        with tidelog.open(data) as store:
            store.queue("jobs").send("hello", attributes={"kind": "greeting"})
        sent = time.monotonic()
        out, err = proc.communicate(timeout=30)
        waited = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    doc = json.loads(out)
    assert [m["body"]["text"] for m in doc["messages"]] == ["hello"]
    assert doc["messages"][0]["attributes"]["kind"]["text"] == "greeting"
    assert waited < 10  # woken by the send, not by the end of the wait
    with tidelog.open(data) as store:
        assert len(store.queue("jobs")) == 0  # --delete acknowledged it


def test_verify_in_a_real_subprocess(tmp_path: Path) -> None:
    data = tmp_path / "d"
    with tidelog.open(data, segment_bytes_max=4096) as store:
        log = store.create_log("events")
        for i in range(30):
            log.append(bytes([i]) * 200)
    done = subprocess.run(
        [*CLI, "verify", "--data", str(data)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "OK"
    assert "verifying" in done.stderr  # the progress bar goes to stderr
    segment = sorted((data / "logs").glob("*/*.seg"))[0]
    raw = bytearray(segment.read_bytes())
    raw[500] ^= 0x01
    segment.write_bytes(bytes(raw))
    # A writer holds the store open in this process: verify must not block on it.
    with tidelog.open(data) as store:
        done = subprocess.run(
            [*CLI, "verify", "--data", str(data), "--silent"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        store.log("events").append(b"still writable")
    assert done.returncode == 3, done.stderr
    assert done.stderr == ""
    assert str(segment) in done.stdout and done.stdout.strip().endswith("1 problems found")


def test_serve_runs_the_wire_server_until_ctrl_c(tmp_path: Path) -> None:
    import socket
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # --no-stomp: the default STOMP port (61613) may be taken on the machine.
    proc = start(
        "serve", "--port", str(port), "--no-stomp", "--sync", "never", "--data", str(tmp_path / "d")
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the server never listened"
                time.sleep(0.1)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/",
            data=b"{}",
            headers={
                "Content-Type": "application/x-amz-json-1.0",
                "X-Amz-Target": "AmazonSQS.ListQueues",
            },
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
            assert isinstance(json.loads(response.read()), dict)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == f"stopped serving {tmp_path / 'd'}"


def test_serve_access_log_and_log_level(tmp_path: Path) -> None:
    """--access-log prints a line per request (stdout); --log-level info shows the start-up."""
    import socket
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = start(
        "serve", "--port", str(port), "--no-stomp", "--no-workers", "--sync", "never",
        "--log-level", "info", "--access-log", "--data", str(tmp_path / "d"),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the server never listened"
                time.sleep(0.1)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/",
            data=b"{}",
            headers={
                "Content-Type": "application/x-amz-json-1.0",
                "X-Amz-Target": "AmazonSQS.ListQueues",
            },
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert '"POST / HTTP/1.1" 200' in out  # the access log line (uvicorn's: on stdout)
    assert "Uvicorn running on" in err or "Application startup complete" in err  # info level
    assert err.strip().splitlines()[-1].startswith("stopped serving ")
