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


def _sessions(
    store: tidelog.Store, shards: int, allowed_lateness: float
) -> tuple[tidelog.Stream, tidelog.Queue, tidelog.Application]:
    """A stream, a queue, and an application counting sessions of gap 5 s into it."""
    stream = store.create_stream("clicks", shards=shards)
    out = store.create_queue("out")
    app = store.create_application(
        "sessions",
        "clicks",
        "SELECT count(*) AS n FROM clicks",
        window="session",
        gap=5,
        allowed_lateness=allowed_lateness,
        destination="queue:out",
    )
    return stream, out, app


def test_session_windows_and_lateness(clocked: tuple[tidelog.Store, FakeClock]) -> None:
    store, clock = clocked
    stream, out, app = _sessions(store, shards=1, allowed_lateness=3)
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
    app.delete()
    assert store.applications() == []
    with pytest.raises(tidelog.NotFound, match="application 'a'"):
        app.describe()


_RUNNER = """
import sys, tidelog
store = tidelog.open(sys.argv[1], sync="always")
store.application("counts").run(poll_interval=0.01)
"""


@pytest.mark.parametrize("destination", ["stream", "topic"])
def test_exactly_once_under_sigkill(tmp_path: Path, destination: str) -> None:
    """kill -9 the running application again and again: every window lands exactly once
    (for a topic: in the topic's log and in the queue subscribed to it)."""
    data = tmp_path / "d"
    with tidelog.open(data) as store:
        stream = store.create_stream("clicks", shards=2)
        if destination == "stream":
            store.create_stream("out")
        else:
            store.create_topic("out").subscribe(store.create_queue("outq"), raw=True)
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
            destination=f"{destination}:out",
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
        for table in ["out"] if destination == "stream" else ["topic.out", "outq"]:
            rows = store.sql(
                f"SELECT (data->>'start_ms')::BIGINT AS w, (data->>'n')::INT AS n FROM {table}"
            ).rows
            starts = [w for w, _ in rows]
            assert len(starts) == len(set(starts)), f"a window was written twice ({seed})"
            assert sum(n for _, n in rows) == total, f"a window was lost ({seed})"
        assert store.application("counts").describe().lag_records == 0
        assert store.check() == []


def test_topic_destination_fans_out_each_window_once(
    clocked: tuple[tidelog.Store, FakeClock],
) -> None:
    """Rows go through the topic's publish: its log, then each matching subscription."""
    store, clock = clocked
    stream = store.create_stream("clicks")
    topic = store.create_topic("counts")
    every = store.create_queue("every")
    big = store.create_queue("big")
    wrapped = store.create_queue("wrapped")
    topic.subscribe(every, raw=True)
    topic.subscribe(
        big, filter_policy={"n": [{"numeric": [">=", 5]}]}, filter_scope="body", raw=True
    )
    topic.subscribe(wrapped)  # SNS's JSON envelope around each row
    app = store.create_application(
        "counts", "clicks", COUNT_SQL, size=10, destination=("topic", "counts")
    )
    start = int(T0 * 1000)
    for count in (3, 7, 5):  # windows [0,10), [10,20), [20,30): 3, 7 and 5 records
        for _ in range(count):
            stream.put(json.dumps({"v": 1}), "k")
        clock.advance(10)
    assert app.run_once() == 3
    assert app.run_once() == 0
    expected = [
        {"start_ms": start + 10_000 * i, "n": n, "total": n} for i, n in enumerate((3, 7, 5))
    ]
    assert _drain(every) == expected
    assert _drain(big) == [row for row in expected if row["n"] >= 5]
    envelopes = _drain(wrapped)
    assert [json.loads(str(e["Message"])) for e in envelopes] == expected
    assert all(e["TopicArn"] == topic.arn for e in envelopes)
    # The topic's own log holds each row once (it is replayable like any publish).
    assert store.sql("SELECT count(*) FROM topic.counts").rows == [(3,)]
    info = app.describe()
    assert info.destination == ("topic", "counts") and info.rows_emitted == 3
    with pytest.raises(tidelog.NotFound, match="topic 'missing'"):
        store.create_application("x", "clicks", "SELECT 1", destination="topic:missing")
    with pytest.raises(tidelog.InvalidArgument, match="'topic:NAME'"):
        store.create_application("x", "clicks", "SELECT 1", destination="bucket:b")


def test_fifo_destinations_keep_equal_rows_of_different_windows(
    clocked: tuple[tidelog.Store, FakeClock],
) -> None:
    """Content-based deduplication must not merge two windows that computed the same row."""
    store, clock = clocked
    stream = store.create_stream("clicks")
    topic = store.create_topic("counts.fifo", fifo=True, content_based_dedup=True)
    via_topic = store.create_queue("via-topic.fifo", fifo=True, content_based_dedup=True)
    topic.subscribe(via_topic, raw=True)
    direct = store.create_queue("direct.fifo", fifo=True, content_based_dedup=True)
    sql = "SELECT count(*) AS n FROM clicks"
    store.create_application("t", "clicks", sql, size=10, destination="topic:counts.fifo")
    store.create_application("q", "clicks", sql, size=10, destination="queue:direct.fifo")
    for _ in range(3):
        stream.put("{}", "k")
        clock.advance(10)
    assert store.application("t").run_once() == 3
    assert store.application("q").run_once() == 3
    assert _drain(via_topic) == [{"n": 1}] * 3
    assert _drain(direct) == [{"n": 1}] * 3


def _put_at(stream: tidelog.Stream, clock: FakeClock, at: float, shard: int) -> None:
    """A record stamped at T0+at on shard 0 or 1 of a two-shard stream.

    Setting the clock back stands for a commit that was stamped (inside its
    LMDB write transaction) at `at` but became readable only now, after a
    slow flush, or for a clock stepped back: both give a shard a record
    stamped before records already readable on the other shard.
    """
    now = clock.now
    clock.now = T0 + at
    stream.put(json.dumps({"v": 1}), "k", explicit_hash_key=shard << 127)
    clock.now = now


def test_late_records_within_and_beyond_allowed_lateness(
    clocked: tuple[tidelog.Store, FakeClock],
) -> None:
    store, clock = clocked
    stream = store.create_stream("clicks", shards=2)
    out = store.create_queue("out")
    app = store.create_application(
        "late",
        "clicks",
        COUNT_SQL,
        size=10,
        allowed_lateness=2,
        destination="queue:out",
    )
    start = int(T0 * 1000)
    for second in range(1, 5):
        _put_at(stream, clock, second, shard=0)
    clock.now = T0 + 11
    assert app.run_once() == 0  # [0,10) waits until the clock passes 10 + 2
    _put_at(stream, clock, 9.5, shard=1)  # late by 1.5 s: within the allowed 2 s
    clock.now = T0 + 12
    assert app.run_once() == 1
    assert _drain(out) == [{"start_ms": start, "n": 5, "total": 5}]
    _put_at(stream, clock, 15, shard=0)
    _put_at(stream, clock, 9.8, shard=1)  # readable after [0,10) was written: late
    clock.now = T0 + 25
    assert app.run_once() == 1
    assert _drain(out) == [{"start_ms": start + 10_000, "n": 1, "total": 1}]
    info = app.describe()
    assert (info.late_records, info.windows_emitted, info.lag_records) == (1, 2, 0)
    # A late record with nothing else pending is counted and passed: no window.
    _put_at(stream, clock, 19, shard=1)
    clock.now = T0 + 40
    assert app.run_once() == 0
    assert _drain(out) == []
    info = app.describe()
    assert (info.late_records, info.windows_emitted, info.lag_records) == (2, 2, 0)
    assert info.last_window == (start + 10_000, start + 20_000)


def test_late_records_of_a_written_session(clocked: tuple[tidelog.Store, FakeClock]) -> None:
    store, clock = clocked
    stream, out, app = _sessions(store, shards=2, allowed_lateness=0)
    for second in (0, 1, 2):
        _put_at(stream, clock, second, shard=0)
    clock.now = T0 + 8  # 2 + gap 5 has passed
    assert app.run_once() == 1
    assert _drain(out) == [{"n": 3}]
    _put_at(stream, clock, 3, shard=1)  # it would have joined the written session
    _put_at(stream, clock, 20, shard=0)  # a new session
    clock.now = T0 + 30
    assert app.run_once() == 1
    assert _drain(out) == [{"n": 1}]
    info = app.describe()
    assert (info.late_records, info.windows_emitted, info.lag_records) == (1, 2, 0)


def test_two_runners_never_write_a_sliding_window_twice(
    clocked: tuple[tidelog.Store, FakeClock],
) -> None:
    """A sliding window can leave the checkpoint where it was (its records are
    needed by the next window too); the commit must still see the other runner."""
    from tidelog.sql import _Conflict, _load

    store, clock = clocked
    stream = store.create_stream("clicks")
    out = store.create_queue("out")
    app = store.create_application(
        "s", "clicks", COUNT_SQL, window="sliding", size=10, slide=5, destination="queue:out"
    )
    clock.advance(7)
    stream.put(json.dumps({"v": 1}), "k")
    clock.advance(10)
    doc = _load(store._logs, "s")  # both runners read the same progress
    assert app._step(doc) == 1
    with pytest.raises(_Conflict):
        store.application("s")._step(doc)
    assert app.run_once() == 1  # the other window holding the record
    assert [row["n"] for row in _drain(out)] == [1, 1]


def test_deleted_destination_stops_the_application(
    clocked: tuple[tidelog.Store, FakeClock],
) -> None:
    store, clock = clocked
    stream = store.create_stream("clicks")
    store.create_topic("gone")
    app = store.create_application(
        "a", "clicks", "SELECT count(*) AS n FROM clicks", size=1, destination="topic:gone"
    )
    store.delete_topic("gone")
    stream.put("{}", "k")
    clock.advance(5)
    with pytest.raises(tidelog.NotFound, match="application 'a': topic 'gone'"):
        app.run_once()
    info = app.describe()
    assert not info.running and info.error is not None and "topic 'gone'" in info.error
    assert info.lag_records == 1  # nothing was passed
