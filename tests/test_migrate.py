"""Format 1 stores: refused on open with a pointer to `tidelog migrate`, which
copies them into format 2 keeping every record, offset and queue state.

tests/data/v1-store.tar.gz was written by format 1 tidelog
(tests/data/make_v1_store.py) with the records it read back.
"""

from __future__ import annotations

import json
import tarfile
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import tidelog
from tidelog.cli.main import main
from tidelog.segments import format as fmt

FIXTURE = Path(__file__).resolve().parent / "data" / "v1-store.tar.gz"


def unpack(tmp_path: Path) -> tuple[Path, dict[str, dict[str, object]]]:
    with tarfile.open(FIXTURE) as tar:
        tar.extractall(tmp_path, filter="data")
    expected = json.loads((tmp_path / "expected.json").read_text())
    return tmp_path / "store", expected


def test_a_format_1_store_is_refused_with_the_way_out(tmp_path: Path) -> None:
    old, _ = unpack(tmp_path)
    before = {p: p.read_bytes() for p in old.rglob("*.seg")}
    for readonly in (False, True):
        with pytest.raises(tidelog.UnsupportedFormat, match="tidelog migrate"):
            tidelog.open(old, readonly=readonly)
    assert {p: p.read_bytes() for p in old.rglob("*.seg")} == before  # nothing written


def test_migrate_keeps_every_record_offset_and_queue_state(tmp_path: Path) -> None:
    old, expected = unpack(tmp_path)
    new = tmp_path / "new"
    before = {p: p.read_bytes() for p in old.rglob("*") if p.is_file()}
    result = CliRunner().invoke(main, ["migrate", str(old), str(new), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    total = sum(len(log["records"]) for log in expected.values())  # type: ignore[arg-type]
    assert report["records"] == total and report["logs"] == len(expected)
    assert report["bytes_after"] < report["bytes_before"]  # 4-12 bytes a record, not 32
    # The source is untouched (it stays the way back).
    assert {p: p.read_bytes() for p in old.rglob("*") if p.is_file() and p.name != "lock.mdb"} == {
        p: b for p, b in before.items() if p.name != "lock.mdb"
    }
    with tidelog.open(new) as store:
        assert store.check() == []
        for info in store._logs.list_logs():
            want = expected[info.name]
            ends = store._logs.ends(info)
            assert (ends.start_offset, ends.next_offset) == (want["start"], want["next"])
            got = [
                [r.offset, r.timestamp_ms, r.flags, r.key.hex(), r.headers.hex(), r.value.hex()]
                for r in store._logs.read(info)
            ]
            assert got == want["records"], info.name
        for path in (new / "logs").rglob("*.seg"):
            header = fmt.decode_segment_header(path.read_bytes())
            assert header is not None and header.read_version == 2 and header.salt != 0
        # Queue state came along: 5 sent, 1 deleted, 1 received with a lease of an
        # hour (from when the fixture was made: by now it may have run out).
        jobs = store.queue("jobs")
        kept = jobs.peek(10)
        assert len(kept) == 4 and all(m.body.startswith(b"job ") for m in kept)
        [leased] = [m for m in kept if m.receive_count == 1]
        assert leased.visible_at_ms - leased.first_received_at_ms == 3600 * 1000
        still_leased = leased.visible_at_ms > time.time() * 1000 + 5000
        bodies = sorted(m.body for m in jobs.receive(max_messages=10))
        assert len(bodies) == (3 if still_leased else 4)
        assert (leased.body in bodies) is not still_leased
        # And the store takes writes again, in format 2.
        log = store.log("events")
        assert log.append(b"after migrate") == expected["events"]["next"]
        assert [r.value for r in log.read(log.end_offset - 1)] == [b"after migrate"]
        shard = store.stream("clicks")
        assert shard.put(b"new", partition_key="user-1").sequence_number
        assert store.check() == []


def test_migrate_refuses_a_non_empty_destination_and_a_format_2_source(tmp_path: Path) -> None:
    old, _ = unpack(tmp_path)
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "file").write_text("mine")
    result = CliRunner().invoke(main, ["migrate", str(old), str(taken), "--json"])
    assert result.exit_code == 1 and "not an empty directory" in result.output
    assert (taken / "file").read_text() == "mine"
    current = tmp_path / "current"
    tidelog.open(current).close()
    result = CliRunner().invoke(main, ["migrate", str(current), str(tmp_path / "x"), "--json"])
    assert result.exit_code == 1 and "only format 1" in result.output
