"""Recovery and reader error paths, by byte surgery on real segment files.

One test per error path, in the manner of LevelDB's log_test.cc
(IncrementByte, ShrinkSize, FixChecksum), plus a random corruption loop
(Kafka's testRecoveryWithCorruptMessage), orphan files, and retention with
an injected clock. Real LMDB, real files.
"""

from __future__ import annotations

import os
import random
import shutil
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import tidelog
from tidelog.segments import crc
from tidelog.segments import format as fmt
from tidelog.segments.format import encode_batch, encode_segment_header, segment_name

if TYPE_CHECKING:
    from helpers import FakeClock

SMALL_SEGMENT = 4096


# -- helpers -------------------------------------------------------------------------


def value_of(offset: int, size: int = 100) -> bytes:
    head = f"value {offset:06d} ".encode()
    return (head * (size // len(head) + 1))[:size]


def log_dir(data: Path, log: tidelog.Log) -> Path:
    return data / "logs" / str(log.info.id)


def segment_files(data: Path, log: tidelog.Log) -> list[int]:
    """Base offsets of the log's segment files on disk, in order."""
    bases = [fmt.parse_segment_name(name) for name in os.listdir(log_dir(data, log))]
    return sorted(base for base in bases if base is not None)


def seg_path(data: Path, log: tidelog.Log, base: int) -> Path:
    return log_dir(data, log) / segment_name(base)


@dataclass
class Frame:
    """A batch of a segment file: its base offset, record count, position and size."""

    offset: int
    position: int
    size: int
    count: int = 1


def frames_of(path: Path) -> list[Frame]:
    """Walk a segment file's batches by their length fields (no CRC checks)."""
    raw = path.read_bytes()
    out = []
    position = fmt.SEGMENT_HEADER_BYTES
    while position + fmt.BATCH_HEADER_BYTES <= len(raw):
        (length,) = struct.unpack_from("<I", raw, position)
        if length == 0:
            break  # the pre-written zeros past the committed end
        (count,) = struct.unpack_from("<I", raw, position + 12)
        (offset,) = struct.unpack_from("<Q", raw, position + 16)
        size = 8 + length
        if position + size > len(raw):
            break
        out.append(Frame(offset, position, size, count))
        position += size
    return out


def frame_at(path: Path, offset: int) -> Frame:
    """The batch holding record `offset`."""
    return next(f for f in frames_of(path) if f.offset <= offset < f.offset + f.count)


def salt_of(path: Path) -> int:
    header = fmt.decode_segment_header(path.read_bytes()[: fmt.SEGMENT_HEADER_BYTES])
    assert header is not None
    return header.salt


def committed_bytes(path: Path, committed: int) -> bytes:
    """The file's committed bytes; asserts that only zeros lie past them."""
    raw = path.read_bytes()
    assert raw[committed:] == bytes(len(raw) - committed)
    return raw[:committed]


def increment_byte(path: Path, position: int, delta: int = 1) -> None:
    with open(path, "r+b") as handle:
        handle.seek(position)
        old = handle.read(1)[0]
        handle.seek(position)
        handle.write(bytes([(old + delta) & 0xFF]))


def write_at(path: Path, position: int, data: bytes) -> None:
    with open(path, "r+b") as handle:
        handle.seek(position)
        handle.write(data)


def shrink_to(path: Path, size: int) -> None:
    os.truncate(path, size)


def fix_checksum(path: Path, position: int) -> None:
    """Recompute the CRC of the record at `position` (after a field was changed)."""
    raw = path.read_bytes()
    (length,) = struct.unpack_from("<I", raw, position)
    body = raw[position + 8 : position + 8 + length]
    write_at(path, position + 4, struct.pack("<I", crc.crcmod_crc32c(body)))


def read_until_error(log: tidelog.Log, start: int = 0) -> tuple[list[tidelog.Record], Exception]:
    got: list[tidelog.Record] = []
    with pytest.raises(tidelog.Corruption) as info:
        for record in log.read(start):
            got.append(record)
    return got, info.value


def fill_sealed(data: Path, count: int = 120) -> dict[int, bytes]:
    """A log "events" of `count` records over several 4 KiB segments, the last ones sealed."""
    with tidelog.open(data, segment_bytes_max=SMALL_SEGMENT) as store:
        log = store.create_log("events")
        values = {offset: value_of(offset) for offset in range(count)}
        for start in range(0, count, 10):
            log.append_many([values[o] for o in range(start, start + 10)])
        log.roll()
        assert store.check() == []
    return values


# -- sealed segments: damage found on read, never skipped ---------------------------


def _increment_value(path: Path, frame: Frame) -> tuple[str, int]:
    increment_byte(path, frame.position + frame.size - 3)
    return "CRC mismatch", frame.position


def _increment_crc(path: Path, frame: Frame) -> tuple[str, int]:
    increment_byte(path, frame.position + 4)
    return "CRC mismatch", frame.position


def _increment_timestamp(path: Path, frame: Frame) -> tuple[str, int]:
    increment_byte(path, frame.position + 24)
    return "CRC mismatch", frame.position


def _length_below_minimum(path: Path, frame: Frame) -> tuple[str, int]:
    write_at(path, frame.position, struct.pack("<I", 31))
    return "length", frame.position


def _length_past_the_segment(path: Path, frame: Frame) -> tuple[str, int]:
    # Bounded (under 16 MiB) but longer than the file: never trusted.
    write_at(path, frame.position, struct.pack("<I", 1 << 20))
    return "length", frame.position


def _length_one_longer(path: Path, frame: Frame) -> tuple[str, int]:
    increment_byte(path, frame.position)
    return "CRC mismatch", frame.position


def _offset_changed_checksum_fixed(path: Path, frame: Frame) -> tuple[str, int]:
    # A record claiming the next record's offset, with a valid CRC: only the
    # offset sequence can tell. The frames after it are untouched.
    write_at(path, frame.position + 16, struct.pack("<Q", frame.offset + 1))
    fix_checksum(path, frame.position)
    return "offset", frame.position


def _key_length_overflow_checksum_fixed(path: Path, frame: Frame) -> tuple[str, int]:
    # The first value's length one byte longer: the lengths no longer add up.
    (first,) = struct.unpack_from("<I", path.read_bytes(), frame.position + 40)
    write_at(path, frame.position + 40, struct.pack("<I", first + 1))
    fix_checksum(path, frame.position)
    return "length", frame.position


SEALED_DAMAGE: dict[str, Callable[[Path, Frame], tuple[str, int]]] = {
    "increment_value_byte": _increment_value,
    "increment_crc_byte": _increment_crc,
    "increment_timestamp_byte": _increment_timestamp,
    "length_below_minimum": _length_below_minimum,
    "length_past_the_segment": _length_past_the_segment,
    "length_one_longer": _length_one_longer,
    "offset_changed_checksum_fixed": _offset_changed_checksum_fixed,
    "key_length_overflow_checksum_fixed": _key_length_overflow_checksum_fixed,
}


@pytest.mark.parametrize("damage", sorted(SEALED_DAMAGE))
def test_damage_in_sealed_segment_raises_corruption_with_location(
    tmp_path: Path, damage: str
) -> None:
    data = tmp_path / "data"
    values = fill_sealed(data)
    with tidelog.open(data) as store:
        log = store.log("events")
        bases = segment_files(data, log)
        assert len(bases) >= 4
        base, next_base = bases[1], bases[2]
        path = seg_path(data, log, base)
        frame = frames_of(path)[1]  # the second batch of the second segment
        bad = frame.offset
    reason, position = SEALED_DAMAGE[damage](path, frame)

    with tidelog.open(data) as store:
        report = store.recovery_report
        assert report is not None and report.records_dropped == 0
        log = store.log("events")
        got, error = read_until_error(log)
        assert isinstance(error, tidelog.Corruption)
        assert reason in str(error)
        assert error.log == "events"
        assert error.path == str(path)
        assert error.offset == bad
        assert error.position == position
        # Everything before the damaged record is still readable ...
        assert [(r.offset, r.value) for r in got] == [(o, values[o]) for o in range(bad)]
        assert [r.value for r in log.read(0, bad)] == [values[o] for o in range(bad)]
        # ... reading from the damaged segment raises rather than skip ...
        with pytest.raises(tidelog.Corruption):
            list(log.read(bad + 1))
        # ... and the segments after it are not affected.
        assert [r.value for r in log.read(next_base)] == [
            values[o] for o in range(next_base, len(values))
        ]
        problems = log.verify()
        assert len(problems) == 1
        assert (problems[0].path, problems[0].offset, problems[0].position) == (
            str(path),
            bad,
            position,
        )
        checked = store.check()
        assert [(p.path, p.offset, p.position) for p in checked] == [(str(path), bad, position)]
        assert list(store.verify()) == ["events"]
        # Writes go on: the damage is in a sealed segment, not at the end.
        assert log.append(b"after") == len(values)


@pytest.mark.parametrize("cut", [0, 10, 40])
def test_sealed_segment_shrunk_raises_corruption(tmp_path: Path, cut: int) -> None:
    data = tmp_path / "data"
    values = fill_sealed(data)
    with tidelog.open(data) as store:
        log = store.log("events")
        base = segment_files(data, log)[1]
        path = seg_path(data, log, base)
        frame = frames_of(path)[1]
        bad = frame.offset
    shrink_to(path, frame.position + cut)  # ShrinkSize: record `bad` is cut
    with tidelog.open(data) as store:
        log = store.log("events")
        got, error = read_until_error(log)
        assert isinstance(error, tidelog.Corruption)
        assert "shorter" in str(error)
        assert (error.path, error.offset, error.position) == (str(path), bad, frame.position)
        assert [r.value for r in got] == [values[o] for o in range(bad)]
        assert len(store.check()) == 1


def test_sealed_segment_missing_raises_corruption(tmp_path: Path) -> None:
    data = tmp_path / "data"
    values = fill_sealed(data)
    with tidelog.open(data) as store:
        log = store.log("events")
        base = segment_files(data, log)[2]
        path = seg_path(data, log, base)
    path.unlink()
    with tidelog.open(data) as store:
        log = store.log("events")
        got, error = read_until_error(log)
        assert isinstance(error, tidelog.Corruption)
        assert "missing" in str(error)
        assert (error.log, error.path, error.offset) == ("events", str(path), base)
        assert [r.value for r in got] == [values[o] for o in range(base)]
        # Reported by the read and again by the index entry naming the file.
        problems = store.check()
        assert problems and {p.path for p in problems} == {str(path)}


def test_sealed_segment_with_fewer_records_than_indexed(tmp_path: Path) -> None:
    """Two batches merged into one valid batch of the same size: the count is off."""
    data = tmp_path / "data"
    fill_sealed(data)
    with tidelog.open(data) as store:
        log = store.log("events")
        base, next_base = segment_files(data, log)[1:3]
        path = seg_path(data, log, base)
    first, second = frames_of(path)[-2:]
    assert second.offset + second.count == next_base
    data_bytes = first.size + second.size - 40 - 4 * first.count
    values = [b""] * (first.count - 1) + [b"m" * data_bytes]
    merged = encode_batch(salt_of(path), first.offset, 1_700_000_000_000, 0, values)
    assert len(merged) == first.size + second.size
    write_at(path, first.position, merged)
    with tidelog.open(data) as store:
        log = store.log("events")
        _, error = read_until_error(log)
        assert isinstance(error, tidelog.Corruption)
        assert error.path == str(path)
        assert error.offset == second.offset
        assert len(store.check()) == 1


def test_damage_in_active_segment_before_its_tail_is_raised_on_read(tmp_path: Path) -> None:
    """Recovery scans only the active tail; older damage there is still never skipped."""
    data = tmp_path / "data"
    with tidelog.open(data) as store:
        log = store.create_log("events")
        values = [value_of(o, 300) for o in range(60)]  # ~20 KiB: several index entries
        for value in values:
            log.append(value)
        tail_start = log.ends().last_index_position
        path = seg_path(data, log, 0)
    frame = frame_at(path, 3)
    assert frame.position + frame.size <= tail_start
    increment_byte(path, frame.position + 40)
    with tidelog.open(data) as store:
        log = store.log("events")
        got, error = read_until_error(log)
        assert isinstance(error, tidelog.Corruption)
        assert (error.path, error.offset, error.position) == (str(path), 3, frame.position)
        assert [r.value for r in got] == values[:3]
        assert len(store.check()) == 1


# -- the active segment: torn tails are truncated, damage is cut back -------------


def _junk(next_offset: int, salt: int) -> bytes:
    return bytes(range(7, 250, 3))


def _partial_record(next_offset: int, salt: int) -> bytes:
    return encode_batch(salt, next_offset, 1_700_000_000_000, 0, [b"x" * 80])[:50]


def _prefix_only(next_offset: int, salt: int) -> bytes:
    return encode_batch(salt, next_offset, 1_700_000_000_000, 0, [b"x" * 80])[:5]


def _whole_uncommitted_record(next_offset: int, salt: int) -> bytes:
    # Complete and valid, but the commit that would cover it never happened.
    return encode_batch(salt, next_offset, 1_700_000_000_000, 0, [b"never acked"])


def _zeros(next_offset: int, salt: int) -> bytes:
    return bytes(4096)


TAILS: dict[str, Callable[[int, int], bytes]] = {
    "junk": _junk,
    "partial_record": _partial_record,
    "prefix_only": _prefix_only,
    "whole_uncommitted_record": _whole_uncommitted_record,
    "zeros": _zeros,
}


@pytest.mark.parametrize("tail", sorted(TAILS))
def test_torn_tail_of_active_segment_zeroed_on_reopen(tmp_path: Path, tail: str) -> None:
    data = tmp_path / "data"
    values = [value_of(o) for o in range(25)]
    with tidelog.open(data) as store:
        log = store.create_log("events")
        for value in values:
            log.append(value)
        path = seg_path(data, log, 0)
        committed = log.ends().active_position
    committed_bytes(path, committed)  # pre-written zeros past the committed end
    garbage = TAILS[tail](len(values), salt_of(path))
    write_at(path, committed, garbage)

    with tidelog.open(data) as store:
        report = store.recovery_report
        assert report is not None
        assert report.clean  # a torn tail is not corruption
        assert report.records_dropped == 0
        zeroed = len(garbage.rstrip(b"\x00"))
        if zeroed:
            [item] = report.logs
            assert item.log == "events"
            assert item.uncommitted_bytes_truncated == zeroed
            assert item.broken_copy is None
        else:
            assert report.logs == []  # zeros are what is expected there
        committed_bytes(path, committed)
        log = store.log("events")
        assert [r.value for r in log.read()] == values
        assert log.append(b"next") == len(values)
        assert [r.value for r in log.read(len(values))] == [b"next"]
        assert store.check() == []
    with tidelog.open(data) as store:
        report = store.recovery_report
        assert report is not None and report.logs == []


def _active_increment_value(path: Path, frame: Frame) -> None:
    increment_byte(path, frame.position + frame.size - 1)


def _active_increment_crc(path: Path, frame: Frame) -> None:
    increment_byte(path, frame.position + 5)


def _active_length_below_minimum(path: Path, frame: Frame) -> None:
    write_at(path, frame.position, struct.pack("<I", 0))  # reads as the zeros of the end


def _active_length_past_the_end(path: Path, frame: Frame) -> None:
    write_at(path, frame.position, struct.pack("<I", 100_000))


def _active_offset_changed_checksum_fixed(path: Path, frame: Frame) -> None:
    write_at(path, frame.position + 16, struct.pack("<Q", frame.offset + 1))
    fix_checksum(path, frame.position)


def _active_shrunk_mid_record(path: Path, frame: Frame) -> None:
    shrink_to(path, frame.position + 20)


def _active_shrunk_at_record_boundary(path: Path, frame: Frame) -> None:
    shrink_to(path, frame.position)


def _active_zeroed_from_record(path: Path, frame: Frame) -> None:
    # What an OS crash leaves when data pages never reached the disk.
    size = path.stat().st_size
    write_at(path, frame.position, bytes(size - frame.position))


ACTIVE_DAMAGE: dict[str, Callable[[Path, Frame], None]] = {
    "increment_value_byte": _active_increment_value,
    "increment_crc_byte": _active_increment_crc,
    "length_below_minimum": _active_length_below_minimum,
    "length_past_the_end": _active_length_past_the_end,
    "offset_changed_checksum_fixed": _active_offset_changed_checksum_fixed,
    "shrunk_mid_record": _active_shrunk_mid_record,
    "shrunk_at_record_boundary": _active_shrunk_at_record_boundary,
    "zeroed_from_record": _active_zeroed_from_record,
}


@pytest.mark.parametrize("damage", sorted(ACTIVE_DAMAGE))
def test_damaged_committed_tail_copied_aside_and_cut_back(tmp_path: Path, damage: str) -> None:
    data = tmp_path / "data"
    values = [value_of(o) for o in range(10)]
    with tidelog.open(data) as store:
        log = store.create_log("events")
        other = store.create_log("other")
        other.append_many([b"a", b"b"])
        for value in values:
            log.append(value)
        path = seg_path(data, log, 0)
        committed = log.ends().active_position
    frame = frame_at(path, 6)
    ACTIVE_DAMAGE[damage](path, frame)
    damaged_bytes = path.read_bytes()

    with tidelog.open(data) as store:
        report = store.recovery_report
        assert report is not None
        assert not report.clean
        [item] = report.logs  # "other" is untouched and not reported
        assert item.log == "events"
        assert item.records_dropped == 4
        assert item.bytes_dropped == committed - frame.position
        assert report.records_dropped == 4
        assert report.bytes_dropped == committed - frame.position
        broken = Path(str(path) + ".broken")
        assert item.broken_copy == str(broken)
        assert broken.read_bytes() == damaged_bytes
        assert any(str(path) in problem for problem in item.problems)
        assert any(str(frame.position) in problem for problem in item.problems)
        assert path.stat().st_size == frame.position
        log = store.log("events")
        assert log.end_offset == 6
        assert [r.value for r in log.read()] == values[:6]
        assert store.check() == []
        assert log.append(b"replacement") == 6
        assert [r.value for r in log.read(5)] == [values[5], b"replacement"]
        assert [r.value for r in store.log("other").read()] == [b"a", b"b"]
    with tidelog.open(data) as store:
        report = store.recovery_report
        assert report is not None and report.logs == []  # repaired once, for good
        assert [r.value for r in store.log("events").read()] == [*values[:6], b"replacement"]
        assert broken.exists()  # the copy is kept for the operator
        assert store.check() == []


def test_damaged_header_of_active_segment_reported_not_silent(tmp_path: Path) -> None:
    data = tmp_path / "data"
    values = fill_sealed(data, count=60)
    with tidelog.open(data, segment_bytes_max=SMALL_SEGMENT) as store:
        log = store.log("events")
        active = log.ends().active_base
        assert active == len(values)
        log.append_many([b"x", b"y", b"z"])
        path = seg_path(data, log, active)
    increment_byte(path, 17)  # the base offset field
    with tidelog.open(data) as store:
        report = store.recovery_report
        assert report is not None and not report.clean
        [item] = report.logs
        assert item.records_dropped == 3
        assert item.broken_copy == str(path) + ".broken"
        assert any("header" in problem for problem in item.problems)
        log = store.log("events")
        assert [r.value for r in log.read()] == [values[o] for o in range(len(values))]
        assert store.check() == []
        assert log.append(b"again") == len(values)
        assert store.check() == []


def test_active_header_naming_another_base_is_rewritten(tmp_path: Path) -> None:
    """A valid header for the wrong base: dropped once, then repaired for good."""
    data = tmp_path / "data"
    values = fill_sealed(data, count=60)
    with tidelog.open(data, segment_bytes_max=SMALL_SEGMENT) as store:
        log = store.log("events")
        active = log.ends().active_base
        log.append_many([b"x", b"y"])
        path = seg_path(data, log, active)
    write_at(path, 0, encode_segment_header(active + 1, salt_of(path)))
    with tidelog.open(data) as store:
        report = store.recovery_report
        assert report is not None and report.records_dropped == 2
        header = fmt.decode_segment_header(path.read_bytes())
        assert header is not None and header[:3] == (2, 2, active)
        log = store.log("events")
        assert log.append(b"acknowledged") == len(values)
    with tidelog.open(data) as store:
        report = store.recovery_report
        assert report is not None and report.logs == []
        log = store.log("events")
        assert [r.value for r in log.read(len(values))] == [b"acknowledged"]
        assert store.check() == []


def test_random_corruption_of_the_committed_tail(tmp_path: Path) -> None:
    """Junk from a random point of the active tail: everything before it survives."""
    seed = int(os.environ.get("TIDELOG_SEED", random.randrange(2**32)))
    print(f"seed={seed} (rerun with TIDELOG_SEED={seed})")
    rng = random.Random(seed)
    for iteration in range(25):
        where = f"seed={seed} iteration={iteration}"
        data = tmp_path / f"run{iteration}"
        values = [
            rng.randbytes(rng.choice([0, 1, 10, 100, 700])) for _ in range(rng.randrange(5, 60))
        ]
        with tidelog.open(data) as store:
            log = store.create_log("events")
            done = 0
            while done < len(values):
                batch = rng.randrange(1, 8)
                log.append_many(values[done : done + batch])
                done += batch
            ends = log.ends()
            path = seg_path(data, log, 0)
        tail_start = ends.last_index_position
        committed = ends.active_position
        original = committed_bytes(path, committed)
        frames = frames_of(path)
        assert [r for f in frames for r in range(f.offset, f.offset + f.count)] == list(
            range(len(values))
        ), where

        start = rng.randrange(tail_start, committed + 1)
        junk = rng.randbytes(rng.randrange(1, 400))
        write_at(path, start, junk)
        damaged = path.read_bytes()
        changed = [
            f.offset
            for f in frames
            if original[f.position : f.position + f.size]
            != damaged[f.position : f.position + f.size]
        ]
        survivors = changed[0] if changed else len(values)
        intact = sum(f.count for f in frames if f.position + f.size <= start)
        assert survivors >= intact, where

        with tidelog.open(data) as store:
            log = store.log("events")
            got = [r.value for r in log.read()]
            assert got == values[:survivors], where
            report = store.recovery_report
            assert report is not None
            assert report.records_dropped == len(values) - survivors, where
            beyond = junk[max(0, committed - start) :]  # the junk past the committed end
            truncated = len(beyond.rstrip(b"\x00")) if start + len(junk) > committed else 0
            if truncated or changed:
                [item] = report.logs
                assert item.uncommitted_bytes_truncated == truncated, where
                if changed:
                    assert item.broken_copy == str(path) + ".broken", where
            assert store.check() == [], where
            assert log.append(b"after") == survivors, where
        shutil.rmtree(data)


# -- orphan files ---------------------------------------------------------------------


def test_segment_beyond_active_base_removed_on_reopen(tmp_path: Path) -> None:
    """A roll that died before its commit left the next segment's file."""
    data = tmp_path / "data"
    values = fill_sealed(data, count=40)
    with tidelog.open(data) as store:
        log = store.log("events")
        ends = log.ends()
        log_path = log_dir(data, log)
    orphans = [
        log_path / segment_name(ends.next_offset + 1),
        log_path / segment_name(ends.next_offset + 1000),
    ]
    for orphan in orphans:
        orphan.write_bytes(
            encode_segment_header(ends.next_offset + 1, 7)
            + encode_batch(7, ends.next_offset + 1, 1, 0, [b"uncommitted"])
        )
    with tidelog.open(data, segment_bytes_max=SMALL_SEGMENT) as store:
        report = store.recovery_report
        assert report is not None
        assert sorted(report.files_removed) == sorted(str(p) for p in orphans)
        assert not any(p.exists() for p in orphans)
        log = store.log("events")
        assert [r.value for r in log.read()] == [values[o] for o in range(len(values))]
        more = [value_of(o) for o in range(len(values), len(values) + 60)]
        log.append_many(more[:30])
        log.append_many(more[30:])
        assert [r.value for r in log.read(len(values))] == more
        assert store.check() == []


def test_segment_below_start_offset_removed_on_reopen(tmp_path: Path) -> None:
    """Retention committed a new start, then died before unlinking the file."""
    data = tmp_path / "data"
    fill_sealed(data, count=60)
    with tidelog.open(data) as store:
        log = store.log("events")
        first, second = segment_files(data, log)[:2]
        seg_path_first = seg_path(data, log, first)
        kept = seg_path_first.read_bytes()
        assert log.trim_before(second) == second
        assert not seg_path_first.exists()
    seg_path_first.write_bytes(kept)
    with tidelog.open(data) as store:
        report = store.recovery_report
        assert report is not None
        assert report.files_removed == [str(seg_path_first)]
        assert not seg_path_first.exists()
        log = store.log("events")
        assert log.start_offset == second
        assert next(iter(log.read(0))).offset == second
        assert store.check() == []


def test_log_directory_not_in_catalog_removed_on_reopen(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with tidelog.open(data) as store:
        keep = store.create_log("keep")
        keep.append(b"kept")
        gone = store.create_log("gone")
        gone.append(b"deleted")
        gone_dir = log_dir(data, gone)
        saved = tmp_path / "saved"
        shutil.copytree(gone_dir, saved)
        store.delete_log("gone")
        assert not gone_dir.exists()
        keep_dir = log_dir(data, keep)
    # The delete committed, then the process died before removing the files.
    shutil.copytree(saved, gone_dir)
    stray = data / "logs" / "999"
    stray.mkdir()
    (stray / segment_name(0)).write_bytes(encode_segment_header(0, 7))
    not_ours = data / "logs" / "notes"
    not_ours.write_text("an operator's file, not a log directory")

    with tidelog.open(data) as store:
        report = store.recovery_report
        assert report is not None
        assert sorted(report.files_removed) == sorted([str(gone_dir), str(stray)])
        assert not gone_dir.exists() and not stray.exists()
        assert keep_dir.exists() and not_ours.exists()
        assert [log.name for log in store.logs()] == ["keep"]
        assert [r.value for r in store.log("keep").read()] == [b"kept"]
        # The freed id is not reused: a new log gets a fresh directory.
        fresh = store.create_log("gone")
        assert fresh.info.id != gone.info.id
        assert list(fresh.read()) == []
        assert store.check() == []


def test_files_that_are_not_segments_are_left_alone(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with tidelog.open(data) as store:
        log = store.create_log("events")
        log.append(b"one")
        directory = log_dir(data, log)
    strays = [
        directory / "README",
        directory / (segment_name(0) + ".broken"),
        directory / "0000000000000000000\N{SUPERSCRIPT TWO}.seg",
        directory / "0000000000000000000\N{FULLWIDTH DIGIT NINE}.seg",
    ]
    for stray in strays:
        stray.write_bytes(b"not a segment")
    with tidelog.open(data) as store:
        report = store.recovery_report
        assert report is not None and report.files_removed == []
        assert all(stray.exists() for stray in strays)
        assert [r.value for r in store.log("events").read()] == [b"one"]
        assert store.check() == []


# -- retention with an injected clock --------------------------------------------------


def test_retention_ms_deletes_whole_sealed_segments(tmp_path: Path, clock: FakeClock) -> None:
    data = tmp_path / "data"
    with tidelog.open(data, clock=clock, segment_bytes_max=SMALL_SEGMENT) as store:
        log = store.create_log("events", retention_ms=60_000)
        other = store.create_log("forever")
        bases = []
        for batch in range(4):
            bases.append(log.end_offset)
            log.append_many([value_of(batch * 20 + i) for i in range(20)])
            other.append(b"x")
            if batch < 3:
                log.roll()
            clock.advance(30)
        # now = t0 + 120 s. Batches were written at t0, t0+30, t0+60, t0+90.
        assert segment_files(data, log) == bases
        clock.advance(-30)  # now = t0 + 90 s: only the first batch is older than 60 s
        assert log.enforce_retention() == 1
        assert segment_files(data, log) == bases[1:]
        assert log.start_offset == bases[1]
        assert log.end_offset == 80
        assert len(log) == 80 - bases[1]
        assert [r.offset for r in log.read()] == list(range(bases[1], 80))
        assert [r.value for r in log.read(0)][:1] == [value_of(bases[1])]
        assert next(iter(log.read(3))).offset == bases[1]
        assert log.enforce_retention() == 0  # idempotent at the same time

        clock.advance(10_000)  # everything is old now, the active segment too
        assert store.enforce_retention() == 2
        assert segment_files(data, log) == [bases[3]]
        assert log.start_offset == bases[3]
        assert [r.value for r in log.read()] == [value_of(o) for o in range(60, 80)]
        assert len(other) == 4  # no retention configured
        assert log.append(b"new") == 80
        assert store.check() == []
    with tidelog.open(data, clock=clock) as store:
        log = store.log("events")
        assert (log.start_offset, log.end_offset) == (bases[3], 81)
        assert store.check() == []


def test_retention_bytes_deletes_oldest_whole_segments(tmp_path: Path, clock: FakeClock) -> None:
    data = tmp_path / "data"
    limit = 10_000
    with tidelog.open(data, clock=clock, segment_bytes_max=SMALL_SEGMENT) as store:
        log = store.create_log("events", retention_bytes=limit)
        values = [value_of(o) for o in range(200)]
        for start in range(0, 200, 10):
            log.append_many(values[start : start + 10])
        bases = segment_files(data, log)
        # Bytes of data: a sealed file's size; the active one's committed end
        # (past it lie pre-written zeros, docs/format.md "Pre-written space").
        active = log.ends()
        sizes = {
            base: active.active_position
            if base == active.active_base
            else seg_path(data, log, base).stat().st_size
            for base in bases
        }
        assert sum(sizes.values()) > 2 * limit
        deleted = log.enforce_retention()
        remaining = segment_files(data, log)
        assert deleted >= 1 and remaining == bases[deleted:]
        kept = sum(sizes[base] for base in remaining)
        assert kept <= limit
        # Only as many as needed: keeping the last deleted one would be over.
        assert kept + sizes[bases[deleted - 1]] > limit
        # Whole segments: each kept file is as it was, the start is a segment base.
        assert all(seg_path(data, log, b).stat().st_size == sizes[b] for b in remaining[:-1])
        assert log.start_offset == remaining[0]
        assert log.end_offset == 200
        assert [(r.offset, r.value) for r in log.read()] == [
            (o, values[o]) for o in range(remaining[0], 200)
        ]
        assert store.check() == []


def test_retention_bytes_zero_keeps_the_active_segment(tmp_path: Path, clock: FakeClock) -> None:
    data = tmp_path / "data"
    with tidelog.open(data, clock=clock, segment_bytes_max=SMALL_SEGMENT) as store:
        log = store.create_log("events", retention_bytes=0)
        log.append_many([value_of(o) for o in range(100)])
        log.append(b"last")
        active = log.ends().active_base
        assert log.enforce_retention() >= 1
        assert segment_files(data, log) == [active]
        assert [r.offset for r in log.read()] == list(range(active, 101))
        assert store.check() == []


def test_offset_for_time_across_segments(tmp_path: Path, clock: FakeClock) -> None:
    data = tmp_path / "data"
    with tidelog.open(data, clock=clock, segment_bytes_max=SMALL_SEGMENT) as store:
        log = store.create_log("events")
        stamps = [1_000 + 10 * (i // 3) for i in range(120)]  # runs of 3 equal stamps
        for i, stamp in enumerate(stamps):
            log.append(value_of(i, 200), timestamp_ms=stamp)
        assert len(segment_files(data, log)) >= 5

        def expected(t: int, start: int = 0) -> int:
            return next((i for i in range(start, 120) if stamps[i] >= t), 120)

        for t in range(990, stamps[-1] + 15):
            assert log.offset_for_time(t) == expected(t), t
        assert log.offset_for_time(0) == 0
        assert log.offset_for_time(10**15) == 120
        for t in (995, 1_000, 1_001, 1_150, stamps[-1]):
            got = [(r.offset, r.timestamp_ms) for r in log.read_from_time(t)]
            assert got == [(i, stamps[i]) for i in range(expected(t), 120)]

        # Runs of equal stamps that straddle a segment boundary.
        for base in segment_files(data, log)[1:]:
            assert log.offset_for_time(stamps[base]) == expected(stamps[base])

        # After trimming, times before the new start give the start.
        second = segment_files(data, log)[2]
        assert log.trim_before(second) == second
        for t in range(990, stamps[-1] + 15, 7):
            assert log.offset_for_time(t) == max(second, expected(t)), t
        assert next(iter(log.read_from_time(0))).offset == second
        assert store.check() == []
