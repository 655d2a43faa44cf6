"""Range reads (segments/reader.py): every reader returns exactly [start, stop).

read_records, read_chunks, read_value_chunks and read_columns share one loop, which bounds
its last pread by the sparse index when a stop offset is given; these tests
read many ranges across segment boundaries, at and past the end, and compare
with what was appended.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

import tidelog
from tidelog.segments.reader import read_chunks, read_records, read_value_chunks


def test_every_range_reads_exactly_its_records(tmp_path: Path) -> None:
    rng = random.Random(11)
    with tidelog.open(tmp_path / "d", sync="never") as store:
        log = store.create_log("l", segment_bytes_max=64 * 1024)  # many sealed segments
        values = [rng.randbytes(rng.randrange(0, 600)) for _ in range(3000)]
        for first in range(0, len(values), 250):
            log.append_many(
                values[first : first + 250], keys=[b"k"] * len(values[first : first + 250])
            )
        segments = list((tmp_path / "d" / "logs" / str(log.info.id)).glob("*.seg"))
        assert len(segments) > 10
        end = len(values)
        ranges = [(0, None), (0, end), (end, None), (end, end + 5), (end - 1, end + 100)]
        ranges += [(a, a + rng.randrange(0, 400)) for a in rng.sample(range(end), 60)]
        for start, stop in ranges:
            want = values[start:stop]
            got = [r.value for r in read_records(store._logs, log.info, start, stop)]
            assert got == want, (start, stop)
            chunks = list(read_chunks(store._logs, log.info, start, stop))
            assert all(chunks), (start, stop)  # never an empty chunk
            offsets = [r.offset for chunk in chunks for r in chunk]
            assert offsets == list(range(start, start + len(want))), (start, stop)
            rows = [
                row
                for chunk in read_value_chunks(store._logs, log.info, start, stop)
                for row in chunk
            ]
            assert [(o, v) for o, _t, v in rows] == list(enumerate(want, start)), (start, stop)
            columns = list(log.read_columns(start, stop))
            assert all(c.values for c in columns), (start, stop)  # never an empty batch
            flat = [
                (c.first_offset + i, c.timestamp_ms, v)
                for c in columns
                for i, v in enumerate(c.values)
            ]
            assert flat == [
                (o, r.timestamp_ms, r.value)
                for o, r in zip(offsets, chunks_flat(chunks), strict=True)
            ]


def chunks_flat(chunks: list[list[tidelog.Record]]) -> list[tidelog.Record]:
    return [r for chunk in chunks for r in chunk]


def test_a_read_takes_nothing_past_its_stop_and_makes_records_lazily(tmp_path: Path) -> None:
    with tidelog.open(tmp_path / "d", sync="never") as store:
        log = store.create_log("l")
        log.append_many([b"v%d" % i for i in range(1000)], keys=[b"k%d" % i for i in range(1000)])
        log.append_many([b"w%d" % i for i in range(10)], headers=[b"h"] * 10, flags=7)
        reader = log.read(995)
        first = next(reader)
        assert (first.offset, first.key, first.value) == (995, b"k995", b"v995")
        rest = list(reader)
        assert [r.offset for r in rest] == list(range(996, 1010))
        assert [(r.key, r.headers, r.flags) for r in rest[-10:]] == [(b"", b"h", 7)] * 10
        with pytest.raises(tidelog.InvalidArgument):
            log.read_columns(-1)
