"""The data directory as a careless user meets it: read-only, unreadable, ports in use.

Each command runs as a real child process; where file permissions matter it
runs as `nobody` (the tests may run as root, whom permissions do not bind).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import unprivileged

import tidelog

CLI = [sys.executable, "-m", "tidelog.cli.main"]


def tidelog_cli(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*unprivileged(), *CLI, *args, "--data", str(data)],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory `nobody` can reach (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="tidelog-access-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for root, dirs, _ in os.walk(path):
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o755)
        shutil.rmtree(path)


def _store(path: Path) -> Path:
    data = path / "d"
    with tidelog.open(data) as store:
        store.create_queue("jobs").send("kept")
        store.create_stream("clicks", shards=1).put(b"c1", "k")
    for root, _, files in os.walk(data):  # what `nobody` may read, never write
        os.chmod(root, 0o555)
        for name in files:
            os.chmod(os.path.join(root, name), 0o444)
    return data


def test_read_only_commands_work_on_a_read_only_store(shared_dir: Path) -> None:
    data = _store(shared_dir)
    listed = tidelog_cli(data, "--json", "ls")
    assert listed.returncode == 0, listed.stderr
    names = {row["name"] for row in json.loads(listed.stdout)["channels"]}
    assert names == {"jobs", "clicks"}
    tail = tidelog_cli(data, "tail", "jobs")
    assert tail.returncode == 0 and tail.stdout.split()[-1] == "kept", tail.stderr
    assert "reader lock" in tail.stderr  # says why what it shows may be torn
    for args in (["info", "jobs"], ["dump", "clicks"], ["verify"], ["stats"], ["sql", "SELECT 1"]):
        shown = tidelog_cli(data, *args)
        assert shown.returncode == 0, (args, shown.stderr)
        assert "Traceback" not in shown.stderr


def test_writing_commands_on_a_read_only_store_say_what_is_wrong_and_what_to_do(
    shared_dir: Path,
) -> None:
    data = _store(shared_dir)
    for args in (["send", "jobs", "more"], ["receive", "jobs"], ["create", "queue", "new"]):
        refused = tidelog_cli(data, *args)
        assert refused.returncode == 1, (args, refused.stderr)
        assert "Traceback" not in refused.stderr
        assert "may not write to it" in refused.stderr, refused.stderr
        assert "chmod -R u+w" in refused.stderr and "ls, info, tail" in refused.stderr
    served = tidelog_cli(data, "serve", "--port", "0", "--no-stomp")
    assert served.returncode == 1 and "may not write to it" in served.stderr, served.stderr
    assert "serving" not in served.stderr and "Traceback" not in served.stderr
    with tidelog.open(data, readonly=True) as store:  # nothing changed
        assert [m.body for m in store.queue("jobs").peek()] == [b"kept"]


def test_an_unreadable_store_is_named_as_such_not_as_missing(shared_dir: Path) -> None:
    data = _store(shared_dir)
    data.chmod(0)
    for args in (["ls"], ["tail", "jobs"], ["send", "jobs", "x"]):
        refused = tidelog_cli(data, *args)
        assert refused.returncode == 1, (args, refused.stderr)
        assert "no tidelog store" not in refused.stderr
        assert "may not read it" in refused.stderr and "chmod -R u+rX" in refused.stderr
        assert "Traceback" not in refused.stderr
    missing = tidelog_cli(shared_dir / "nothing-here", "ls")
    assert missing.returncode == 1 and "no tidelog store at" in missing.stderr


def _serve(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "serve", "--data", str(data), *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("listener", "hint"),
    [("AWS", "pass --port (0 picks a free one)"), ("STOMP", "pass --stomp-port or --no-stomp")],
)
def test_a_port_in_use_names_the_listener_and_the_flag(
    tmp_path: Path, listener: str, hint: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        if listener == "AWS":
            args = ["--port", str(port), "--stomp-port", "0"]
        else:
            args = ["--port", "0", "--stomp-port", str(port)]
        served = _serve(tmp_path / "d", *args)
    assert served.returncode == 1, served.stderr
    assert served.stderr == f"Error: {listener} port {port} on 127.0.0.1 is in use: {hint}\n"


def test_the_banner_comes_once_every_listener_is_bound_and_names_the_console(
    tmp_path: Path,
) -> None:
    process = subprocess.Popen(
        [*CLI, "serve", "--data", str(tmp_path / "d"), "--port", "0", "--stomp-port", "0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        banner = process.stderr.readline()
        assert banner.startswith(f"serving {tmp_path / 'd'}: AWS on http://127.0.0.1:"), banner
        url = banner.split("AWS on ")[1].split(",")[0]
        stomp_port = int(banner.split("STOMP on 127.0.0.1:")[1].split(",")[0])
        assert f"console at {url}/console/" in banner
        # Both ports were bound before the banner: they answer at once.
        with urllib.request.urlopen(f"{url}/health", timeout=30) as reply:
            assert reply.status == 200
        socket.create_connection(("127.0.0.1", stomp_port), timeout=30).close()
    finally:
        process.terminate()
        process.wait(timeout=60)
    assert process.returncode == 0
