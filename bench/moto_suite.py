"""Run moto's own SQS/SNS/Kinesis tests against `tidelog serve --reset-api` (not run by CI).

    python bench/moto_suite.py /path/to/moto-checkout [--port 5000] [-- pytest args]

The moto checkout (any git copy of github.com/getmoto/moto, a bare mirror
too) is not part of this repository. The script lays moto's tests out in a
scratch folder with ../shared/moto-suite's runner (get-tests.sh, which pins
the commit), makes a virtualenv there with moto's test dependencies (once;
kept for later runs), starts `tidelog serve --reset-api --account-id
123456789012` (moto's tests assume moto's account) on 127.0.0.1:PORT with a
fresh data directory, runs the suite with `run_server_mode.py --endpoint`,
and prints the counts, the time, and every failing test with its first line.
Port 5000 is the default because two of moto's SQS tests name
http://localhost:5000. docs/compatibility.md lists the remaining failures and
why each remains.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

HERE = Path(__file__).resolve().parent
SUITE_TOOLS = Path(os.environ.get("TIDELOG_MOTO_SUITE", HERE.parent.parent / "shared/moto-suite"))
SCRATCH = Path(tempfile.gettempdir()) / "tidelog-moto-suite"
ACCOUNT = "123456789012"  # moto's default account, which its tests assume
START_SECONDS_MAX = 60


def _prepare(moto: Path, suite_tools: Path) -> tuple[Path, Path]:
    """(the laid-out tests, the venv's python), making each if missing."""
    tests = SCRATCH / "tests"
    if not (tests / "run_server_mode.py").exists():
        subprocess.run([str(suite_tools / "get-tests.sh"), str(moto), str(tests)], check=True)
    venv = SCRATCH / "venv"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        packages = ["moto[server]", "freezegun", "pytest", "boto3"]
        subprocess.run([str(python), "-m", "pip", "install", "-q", *packages], check=True)
    return tests, python


def _wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_SECONDS_MAX
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"tidelog serve did not start on port {port}") from None
            time.sleep(0.1)


def _report(junit: Path) -> None:
    failing = []
    for case in ElementTree.parse(junit).iter("testcase"):
        for kind in ("failure", "error"):
            found = case.find(kind)
            if found is not None:
                first = (found.get("message") or "").split("\n")[0][:160]
                failing.append(f"{case.get('classname')}::{case.get('name')}: {first}")
    for line in sorted(failing):
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("moto", type=Path, help="a git copy of getmoto/moto")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--suite-tools", type=Path, default=SUITE_TOOLS)
    parser.add_argument("pytest_args", nargs="*")
    args = parser.parse_args()
    tests, python = _prepare(args.moto.resolve(), args.suite_tools)
    data = Path(tempfile.mkdtemp(prefix="tidelog-moto-data-"))
    serve = [sys.executable, "-m", "tidelog.cli.main", "serve", "--data", str(data)]
    serve += ["--host", "127.0.0.1", "--port", str(args.port), "--no-stomp", "--no-workers"]
    serve += ["--sync", "never", "--reset-api", "--account-id", ACCOUNT]
    server = subprocess.Popen(serve, stderr=subprocess.DEVNULL)
    junit = data.parent / f"{data.name}.xml"
    try:
        _wait_for_port(args.port, server)
        began = time.monotonic()
        command = [str(python), "run_server_mode.py", "--endpoint"]
        command += [f"http://localhost:{args.port}", "--junitxml", str(junit)]
        if args.pytest_args:
            command += ["--", *args.pytest_args]
        run = subprocess.run(command, cwd=tests, capture_output=True, text=True)
        took = time.monotonic() - began
        summary = [line for line in run.stdout.splitlines() if " in " in line and "passed" in line]
        print(summary[-1] if summary else run.stdout[-2000:])
        print(f"wall time {took:.0f} s (tidelog serve on port {args.port}, reset API)")
        if junit.exists():
            _report(junit)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
