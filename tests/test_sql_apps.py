"""Continuous SQL queries (applications): windows with an injected clock, exactly once."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import FakeClock

pytest.importorskip("duckdb")
pytest.importorskip("pyarrow")

import tidelog  # noqa: E402

T0 = 1_700_000_040.0  # a whole minute, so windows of 10 s start at T0


def _drain(queue: tidelog.Queue) -> list[dict[str, object]]:
    out = []
    while True:
        got = queue.receive(max_messages=10)
        if not got:
            return out
        for message in got:
            out.append(json.loads(message.body))
            queue.delete(message.receipt)


@pytest.fixture
def clocked(tmp_path: Path) -> tuple[tidelog.Store, FakeClock]:
    clock = FakeClock(T0)
    store = tidelog.open(tmp_path / "d", sync="never", clock=clock)
    yield store, clock
    store.close()


COUNT_SQL = (
    "SELECT epoch_ms(window_start) AS start_ms, count(*) AS n, "
    "sum((data->>'v')::INT) AS total FROM clicks GROUP BY window_start"
)


def test_tumbling_windows(clocked: tuple[tidelog.Store, FakeClock]) -> None:
    store, clock = clocked
    stream = store.create_stream("clicks", shards=2)
    out = store.create_queue("out")
    app = store.create_application(
        "counts", "clicks", COUNT_SQL, window="tumbling", size=10, destination="queue:out"
    )
    for second in range(25):  # records at T0+0 .. T0+24
        stream.put(json.dumps({"v": second}), f"k{second}")
        clock.advance(1)
    # The clock is at T0+25: windows [0,10) and [10,20) are due, [20,30) is not.
    assert app.run_once() == 2
    assert app.run_once() == 0
    rows = _drain(out)
    start = int(T0 * 1000)
    assert rows == [
        {"start_ms": start, "n": 10, "total": sum(range(10))},
        {"start_ms": start + 10_000, "n": 10, "total": sum(range(10, 20))},
    ]
    clock.advance(5)
    assert app.run_once() == 1
    assert _drain(out) == [{"start_ms": start + 20_000, "n": 5, "total": sum(range(20, 25))}]
    info = app.describe()
    assert info.windows_emitted == 3 and info.rows_emitted == 3
    assert info.lag_records == 0 and info.last_window == (start + 20_000, start + 30_000)
    # Nothing new: no window, even much later.
    clock.advance(100)
    assert app.run_once() == 0


def test_sliding_windows(clocked: tuple[tidelog.Store, FakeClock]) -> None:
    store, clock = clocked
    stream = store.create_stream("clicks")
    dest = store.create_stream("totals")
    store.create_application(
        "sliding",
        "clicks",
        COUNT_SQL,
        window="sliding",
        size=10,
        slide=5,
        destination=("stream", "totals"),
    )
    for _ in range(20):
        stream.put(json.dumps({"v": 1}), "k")
        clock.advance(1)
    clock.advance(10)  # T0+30: every window holding a record has closed
    app = store.application("sliding")
    assert app.run_once() == 5  # windows ending at +5, +10, +15, +20 and +25
    assert app.run_once() == 0
    got = [json.loads(r.data) for r in dest.read(0)]
    start = int(T0 * 1000)
    by_start = {row["start_ms"]: row["n"] for row in got}
    # Windows of 10 s every 5 s: [-5,5) has 5 records, [0,10) 10, [5,15) 10, [10,20) 10, [15,25) 5.
    assert by_start == {
        start - 5000: 5,
        start: 10,
        start + 5000: 10,
        start + 10_000: 10,
        start + 15_000: 5,
    }
    assert len(got) == 5  # each window exactly once


def test_session_windows_and_lateness(clocked: tuple[tidelog.Store, FakeClock]) -> None:
    store, clock = clocked
    stream = store.create_stream("clicks")
    out = store.create_queue("out")
    app = store.create_application(
        "sessions",
        "clicks",
        "SELECT count(*) AS n FROM clicks",
        window="session",
        gap=5,
        allowed_lateness=3,
        destination="queue:out",
    )
    for _ in range(3):
        stream.put("{}", "k")
        clock.advance(1)
    clock.advance(10)  # a 13 s gap closes the first session
    for _ in range(2):
        stream.put("{}", "k")
        clock.advance(1)
    # First session: its last record + gap (5 s) + lateness (3 s) has passed.
    assert app.run_once() == 1
    assert _drain(out) == [{"n": 3}]
    clock.advance(6)  # last record + 7 s: within gap + lateness, not due
    assert app.run_once() == 0
    clock.advance(2)
    assert app.run_once() == 1
    assert _drain(out) == [{"n": 2}]


def test_management_and_errors(clocked: tuple[tidelog.Store, FakeClock]) -> None:
    store, clock = clocked
    store.create_stream("clicks")
    store.create_queue("out")
    with pytest.raises(tidelog.SqlError, match="application 'bad'.*nope"):
        store.create_application(
            "bad", "clicks", "SELECT nope FROM clicks", destination="queue:out"
        )
    with pytest.raises(tidelog.SqlError, match="unknown channel 'missing'"):
        store.create_application("x", "missing", "SELECT 1", destination="queue:out")
    with pytest.raises(tidelog.NotFound):
        store.create_application("x", "clicks", "SELECT 1", destination="queue:nowhere")
    with pytest.raises(tidelog.InvalidArgument, match="multiple of slide"):
        store.create_application(
            "x", "clicks", "SELECT 1", window="sliding", size=10, slide=3, destination="queue:out"
        )
    app = store.create_application(
        "a", "clicks", "SELECT count(*) AS n FROM clicks", size=1, destination="queue:out"
    )
    with pytest.raises(tidelog.AlreadyExists):
        store.create_application("a", "clicks", "SELECT 1", destination="queue:out")
    assert [a.name for a in store.applications()] == ["a"]
    app.stop()
    store.stream("clicks").put("{}", "k")
    clock.advance(5)
    assert not app.running and app.run_once() == 0
    app.start()
    assert app.run_once() == 1
    # A runtime error (DuckDB on real data) stops the application and is recorded.
    store.create_application(
        "div", "clicks", "SELECT (data->>'x')::INT // 0 AS y FROM clicks", destination="queue:out"
    )
    store.stream("clicks").put('{"x": "not a number"}', "k")
    clock.advance(100)
    with pytest.raises(tidelog.SqlError, match="application 'div'"):
        store.application("div").run_once()
    assert store.application("div").describe().error is not None
    assert not store.application("div").running
    store.delete_application("div")
    with pytest.raises(tidelog.NotFound):
        store.application("div")


_RUNNER = """
import sys, tidelog
store = tidelog.open(sys.argv[1], sync="always")
store.application("counts").run(poll_interval=0.01)
"""


def test_exactly_once_under_sigkill(tmp_path: Path) -> None:
    """kill -9 the running application again and again: every window lands exactly once."""
    data = tmp_path / "d"
    with tidelog.open(data) as store:
        stream = store.create_stream("clicks", shards=2)
        store.create_stream("out")
        store.create_application(
            "counts",
            "clicks",
            "SELECT epoch_ms(window_start) AS start_ms, count(*) AS n FROM clicks "
            "GROUP BY window_start",
            window="tumbling",
            size=0.1,
            # A put is stamped when its commit starts and becomes visible when
            # it ends; on a loaded machine that gap can pass a window's close.
            # Allowed lateness covers it, so every record must land in a window.
            allowed_lateness=1.0,
            destination="stream:out",
        )
        total = 0
        kills = 0
        seed = random.randrange(1 << 30)
        rng = random.Random(seed)
        app = store.application("counts")
        child = subprocess.Popen([sys.executable, "-c", _RUNNER, str(data)])
        emitted_at_start = 0
        kill_after = rng.uniform(0.05, 0.4)  # after the child's first window
        progress_at = None
        try:
            deadline = time.monotonic() + 25  # a bound; normally ~5 s
            while kills < 3 and time.monotonic() < deadline:
                stream.put_many([(json.dumps({"i": total + j}), f"k{j}") for j in range(20)])
                total += 20
                time.sleep(0.01)
                if progress_at is None:
                    if app.describe().windows_emitted > emitted_at_start:
                        progress_at = time.monotonic()  # the runner is mid-work
                    continue
                if time.monotonic() - progress_at > kill_after:
                    os.kill(child.pid, signal.SIGKILL)
                    child.wait()
                    kills += 1
                    emitted_at_start = app.describe().windows_emitted
                    child = subprocess.Popen([sys.executable, "-c", _RUNNER, str(data)])
                    progress_at = None
                    kill_after = rng.uniform(0.05, 0.4)
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
        assert kills == 3, f"the runner made no progress (seed {seed})"
        # The killed runners did the work (not just the final run below).
        assert store.application("counts").describe().windows_emitted > 0
    time.sleep(1.2)  # let the last window close by the real clock (size + lateness)
    with tidelog.open(data) as store:
        store.application("counts").run_once()
        rows = store.sql(
            "SELECT (data->>'start_ms')::BIGINT AS w, (data->>'n')::INT AS n FROM out"
        ).rows
        starts = [w for w, _ in rows]
        assert len(starts) == len(set(starts)), "a window was written twice"
        assert sum(n for _, n in rows) == total, "a window was lost"
        assert store.application("counts").describe().lag_records == 0
        assert store.check() == []
