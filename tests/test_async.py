"""The asyncio API: appends awaited from many tasks of one loop join one group commit."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

import tidelog


def test_tasks_of_one_loop_share_commits_and_every_append_lands(tmp_path: Path) -> None:
    with tidelog.open(tmp_path / "d") as store:
        log = store.create_log("events")
        groups: list[int] = []
        store.observe_commits(lambda seconds, operations: groups.append(operations))

        async def producer(task: int) -> list[int]:
            return [await log.append_async(b"%d.%d" % (task, i)) for i in range(40)]

        async def main() -> list[list[int]]:
            return await asyncio.gather(*(producer(t) for t in range(16)))

        offsets = asyncio.run(main())
        flat = sorted(o for per_task in offsets for o in per_task)
        assert flat == list(range(16 * 40))
        for task, per_task in enumerate(offsets):
            assert per_task == sorted(per_task)  # each task's appends keep its order
            for i, offset in enumerate(per_task):
                assert log.read(offset, offset + 1).__next__().value == b"%d.%d" % (task, i)
        # The 16 tasks are runnable in the same turn of the loop: their first
        # appends are queued before the committer starts, so they share a commit.
        assert max(groups) == 16
        assert sum(groups) == 16 * 40
    with tidelog.open(tmp_path / "d") as store:
        assert len(store.log("events")) == 16 * 40
        assert store.check() == []


def test_a_failing_async_append_raises_alone(tmp_path: Path) -> None:
    with tidelog.open(tmp_path / "d") as store:
        log = store.create_log("events")
        log.append(b"first", timestamp_ms=10_000)

        async def main() -> list[object]:
            good = [log.append_async(b"ok %d" % i) for i in range(8)]
            bad = log.append_async(b"too old", timestamp_ms=5)
            return await asyncio.gather(*good, bad, return_exceptions=True)

        results = asyncio.run(main())
        assert isinstance(results[-1], tidelog.InvalidArgument)
        assert sorted(results[:-1]) == list(range(1, 9))  # type: ignore[type-var]
        assert [r.value for r in log.read()][1:] == [b"ok %d" % i for i in range(8)]
        many = asyncio.run(log.append_many_async([b"a", b"b", b"c"]))
        assert many == range(9, 12)


def test_threads_and_tasks_append_together(tmp_path: Path) -> None:
    with tidelog.open(tmp_path / "d") as store:
        log = store.create_log("events")
        from_threads: list[int] = []
        lock = threading.Lock()

        def thread_producer(n: int) -> None:
            for i in range(30):
                offset = log.append(b"thread %d.%d" % (n, i))
                with lock:
                    from_threads.append(offset)

        threads = [threading.Thread(target=thread_producer, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()

        async def main() -> list[int]:
            async def task(n: int) -> list[int]:
                return [await log.append_async(b"task %d.%d" % (n, i)) for i in range(30)]

            return [o for per in await asyncio.gather(*(task(n) for n in range(8))) for o in per]

        from_tasks = asyncio.run(main())
        for thread in threads:
            thread.join()
        assert sorted(from_threads + from_tasks) == list(range(12 * 30))
        assert store.check() == []


def test_async_append_on_a_read_only_store_raises(tmp_path: Path) -> None:
    with tidelog.open(tmp_path / "d") as store:
        store.create_log("events")
    with tidelog.open(tmp_path / "d", readonly=True) as store, pytest.raises(tidelog.ReadOnly):
        asyncio.run(store.log("events").append_async(b"x"))
