"""The system calls of durable sends, traced with strace: one flush per acknowledgement.

docs/guarantees.md, "The commit point": a commit writes its journal entry,
fdatasyncs the journal (the one device flush), then writes the segment and
LMDB's file (both rebuilt from the journal by recovery, so never flushed on
the acknowledgement path), then returns. The child prints "ack N" after each
send returns; the trace must show, between consecutive acknowledgements of
the sending thread, exactly one flush, of the journal, after the last write
to the journal, and after it only writes to files recovery rebuilds.
strace is required (Debian: apt-get install strace; .ci/run installs it).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

CHILD = """
import os, sys
import tidelog
store = tidelog.open(sys.argv[1])
queue = store.create_queue("jobs")
os.write(1, b"ready\\n")
for i in range(int(sys.argv[2])):
    queue.send(b"x" * 100)
    os.write(1, b"ack %d\\n" % i)
store.close()
"""

SENDS = 25
LINE = re.compile(r"^(\d+)\s+(\w+)\((\d+)<([^>]*)>(.*)$")
FLUSHES = {"fdatasync", "fsync"}
WRITES = {"write", "pwrite64", "pwritev", "pwritev2", "writev"}


def test_every_acknowledged_send_follows_one_journal_flush(tmp_path: Path) -> None:
    strace = shutil.which("strace")
    assert strace is not None, "strace not found: install it (apt-get install strace)"
    data = tmp_path / "data"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    trace = tmp_path / "trace"
    done = subprocess.run(
        [
            strace, "-f", "-y", "-o", str(trace),
            "-e", "trace=" + ",".join(sorted(FLUSHES | WRITES)),
            sys.executable, str(script), str(data), str(SENDS),
        ],
        capture_output=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    assert done.stdout.decode().split() == ["ready"] + [
        w for i in range(SENDS) for w in ("ack", str(i))
    ]
    journal = str(data / "journal")
    sender: str | None = None
    interval: list[tuple[str, str]] = []  # (syscall, path) of the sender since its last ack
    acks = 0
    for raw in trace.read_text().splitlines():
        match = LINE.match(raw)
        if match is None:
            continue
        pid, call, _fd, path, rest = match.groups()
        if call == "write" and path.startswith("pipe:") and '"ready\\n"' in rest:
            sender, interval = pid, []
            continue
        if pid != sender:
            continue
        if call == "write" and path.startswith("pipe:") and '"ack ' in rest:
            flushes = [i for i, (c, _p) in enumerate(interval) if c in FLUSHES]
            where = f"ack {acks}: {interval}"
            assert len(flushes) == 1, f"one flush per acknowledged send, got {where}"
            [flush] = flushes
            assert interval[flush][1] == journal, f"the flush is the journal's: {where}"
            journal_writes = [
                i for i, (c, p) in enumerate(interval) if c in WRITES and p == journal
            ]
            assert journal_writes and journal_writes[-1] < flush, f"entry then flush: {where}"
            for c, p in interval[flush + 1 :]:
                assert c in WRITES and (p.endswith(".seg") or p.endswith("data.mdb")), (
                    f"after the flush only files recovery rebuilds are written: {where}"
                )
            acks += 1
            interval = []
            continue
        if path.startswith(str(data)):
            interval.append((call, path))
    assert sender is not None, "the trace never showed the child's ready line"
    assert acks == SENDS
