"""Derived LMDB state is rebuilt from the segment files, identically."""

from __future__ import annotations

from pathlib import Path

from helpers import FakeClock

import tidelog
from tidelog.segments import keys


def derived_rows(store: tidelog.Store) -> dict[bytes, list[tuple[bytes, bytes]]]:
    logs = store._logs
    out = {}
    with logs.env.begin() as txn:
        for name in (keys.DB_SEGMENTS, keys.DB_INDEX, keys.DB_TIMEINDEX, keys.DB_ENDS):
            out[name] = list(txn.cursor(db=logs.dbs[name]))
    return out


def test_rebuild_recreates_identical_indexes(tmp_path: Path, clock: FakeClock) -> None:
    with tidelog.open(tmp_path / "d", segment_bytes_max=8192, clock=clock) as store:
        log = store.create_log("events")
        for i in range(60):
            clock.advance(1)
            log.append_many([bytes([i]) * (50 + i * 7)] * 3, keys=[b"k"] * 3)
        assert log.start_offset == 0 and len(list(log.read())) == 180
        before = derived_rows(store)
        assert len(before[keys.DB_SEGMENTS]) > 5
        logs = store._logs
        with logs.env.begin(write=True) as txn:
            for name in (keys.DB_SEGMENTS, keys.DB_INDEX, keys.DB_TIMEINDEX):
                txn.drop(logs.dbs[name], delete=False)
        written = log.rebuild_indexes()
        assert written == len(before[keys.DB_INDEX])
        assert derived_rows(store) == before
        assert [r.offset for r in log.read(100)] == list(range(100, 180))
        # Batch i was stamped at start + i + 1 s, so the batches from i = 49 on qualify.
        assert log.offset_for_time(int((clock.now - 10) * 1000)) == 49 * 3
        assert store.check() == []


def test_verify_reports_a_damaged_sealed_segment_header(tmp_path: Path) -> None:
    with tidelog.open(tmp_path / "d", segment_bytes_max=4096) as store:
        log = store.create_log("events")
        log.append_many([b"x" * 300] * 30)
        sealed = sorted((tmp_path / "d" / "logs").glob("*/*.seg"))[0]
        raw = bytearray(sealed.read_bytes())
        raw[3] ^= 0xFF  # inside the magic: records still read, the header is wrong
        sealed.write_bytes(bytes(raw))
        problems = log.verify()
        assert [(p.path, p.position) for p in problems] == [(str(sealed), 0)]
        assert "header" in str(problems[0])
