"""verify finds damage and exits 3; repair keeps every intact batch around it.

Damage is made by byte surgery on real segment files: a flipped bit in a
sealed segment, a segment cut short, a flipped byte in the middle of a
segment of 100,000 records. Repair resynchronises on the next valid batch
(docs/format.md, "Repair") and refuses while another process has the store
open for writing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from click.testing import CliRunner

import tidelog
from tidelog.cli.main import main
from tidelog.segments import format as fmt

RECORDS = 40
BATCH = 40 + 4 + 200  # one 200-byte record appended alone: a batch header, a length, the value


def make_store(data: Path) -> list[bytes]:
    values = [bytes([i]) * 200 for i in range(RECORDS)]
    with tidelog.open(data, segment_bytes_max=4096) as store:
        log = store.create_log("events")
        for value in values:  # one commit each: one batch each, segments roll by size
            log.append(value)
        store.create_queue("jobs").send("untouched")
    return values


def invoke(data: Path, *args: str) -> tuple[int, dict[str, object]]:
    extra = ["--silent"] if args[0] == "verify" else []
    result = CliRunner().invoke(main, [*args, "--data", str(data), "--json", *extra])
    return result.exit_code, json.loads(result.output)


def segment_files(data: Path) -> list[Path]:
    with tidelog.open(data, readonly=True) as store:
        log_id = store.log("events").info.id
    return sorted((data / "logs" / str(log_id)).glob("*.seg"))


def records_left(data: Path) -> list[tuple[int, bytes]]:
    with tidelog.open(data, readonly=True) as store:
        return [(r.offset, r.value) for r in store.log("events").read()]


def test_bit_flip_is_found_then_repaired_keeping_the_records_after_it(tmp_path: Path) -> None:
    data = tmp_path / "d"
    values = make_store(data)
    files = segment_files(data)
    assert len(files) >= 3
    victim = files[1]
    raw = bytearray(victim.read_bytes())
    position = 32 + BATCH * 3 + 100  # inside the fourth batch's value
    raw[position] ^= 0x10
    victim.write_bytes(bytes(raw))

    code, report = invoke(data, "verify")
    assert code == 3 and report["ok"] is False
    problem = report["problems"][0]  # type: ignore[index]
    assert problem["path"] == str(victim) and problem["position"] == 32 + BATCH * 3
    text = CliRunner().invoke(main, ["verify", "--data", str(data), "--silent"])
    assert text.exit_code == 3
    assert f"{victim}: byte {32 + BATCH * 3}" in text.output
    assert text.output.strip().endswith("1 problems found")

    lost = int(victim.name[:20]) + 3
    code, repaired = invoke(data, "repair")
    assert code == 0, repaired
    logs = {r["log"]: r for r in repaired["logs"]}  # type: ignore[attr-defined]
    assert logs["events"]["offset"] == lost
    assert logs["events"]["records_dropped"] == 1
    assert [(x["first_offset"], x["records"], x["position"]) for x in logs["events"]["losses"]] == [
        (lost, 1, 32 + BATCH * 3)
    ]
    assert Path(str(victim) + ".broken").read_bytes() == bytes(raw)
    assert logs["queue/jobs"]["damage"] is None
    text = CliRunner().invoke(main, ["repair", "--data", str(data)])
    assert "nothing to repair" in text.output  # done once, for good

    code, report = invoke(data, "verify")
    assert code == 0 and report["ok"] is True
    expected = [(o, v) for o, v in enumerate(values) if o != lost]
    assert records_left(data) == expected  # every other record, with its offset
    with tidelog.open(data) as store:  # the log takes appends again
        log = store.log("events")
        assert log.append(b"after") == RECORDS
        assert [r.offset for r in log.read(lost - 1, lost + 2)] == [lost - 1, lost + 1]
        assert log.offset_for_time(0) == 0
        assert store.check() == []
        assert [m.body for m in store.queue("jobs").receive(1)] == [b"untouched"]
    assert records_left(data)[-1] == (RECORDS, b"after")


def test_truncated_sealed_segment_is_found_then_repaired(tmp_path: Path) -> None:
    data = tmp_path / "d"
    values = make_store(data)
    files = segment_files(data)
    last_sealed = files[-2]
    size = last_sealed.stat().st_size
    with open(last_sealed, "r+b") as handle:
        handle.truncate(size - 50)  # the last batch loses its tail

    code, report = invoke(data, "verify")
    assert code == 3
    assert report["problems"][0]["path"] == str(last_sealed)  # type: ignore[index]

    code, repaired = invoke(data, "repair")
    assert code == 0
    events = next(r for r in repaired["logs"] if r["log"] == "events")  # type: ignore[attr-defined]
    lost = int(files[-1].name[:20]) - 1  # the damaged record was the segment's last
    assert (events["offset"], events["records_dropped"], events["files_removed"]) == (lost, 1, [])
    assert invoke(data, "verify")[0] == 0
    assert records_left(data) == [(o, v) for o, v in enumerate(values) if o != lost]
    assert last_sealed.stat().st_size == size  # the gap fills the cut batch's place


def test_active_segment_cut_short_is_found_and_repaired(tmp_path: Path) -> None:
    data = tmp_path / "d"
    values = make_store(data)
    active = segment_files(data)[-1]
    base = int(active.name[:20])
    with tidelog.open(data, readonly=True) as store:
        committed = store.log("events").ends().active_position
    with open(active, "r+b") as handle:
        handle.truncate(committed - 10)  # the last committed batch is torn
    assert invoke(data, "verify")[0] == 3
    code, repaired = invoke(data, "repair")
    assert code == 0
    assert repaired["records_dropped"] == 1  # recovery on open cut the torn batch
    assert invoke(data, "verify")[0] == 0
    left = [v for _, v in records_left(data)]
    assert left == values[: len(left)] and len(left) == RECORDS - 1 and len(left) > base


def test_one_flipped_byte_in_100000_records_loses_only_its_batch(tmp_path: Path) -> None:
    data = tmp_path / "d"
    per_batch = 10
    with tidelog.open(data, sync="never") as store:
        log = store.create_log("events")
        for start in range(0, 100_000, per_batch):
            log.append_many([b"%099d" % o for o in range(start, start + per_batch)])
        committed = log.ends().active_position
    [segment] = segment_files(data)
    raw = bytearray(segment.read_bytes())
    middle = committed // 2
    raw[middle] ^= 0xFF
    segment.write_bytes(bytes(raw))
    # The batch that holds the byte: 40 + 10 x (4 + 99) bytes each after the header.
    size = 40 + per_batch * 103
    damaged = (middle - 32) // size
    lost = range(damaged * per_batch, (damaged + 1) * per_batch)

    code, repaired = invoke(data, "repair")
    assert code == 0, repaired
    events = next(r for r in repaired["logs"] if r["log"] == "events")  # type: ignore[attr-defined]
    [loss] = events["losses"]
    assert (loss["first_offset"], loss["records"]) == (lost.start, len(lost))
    assert (loss["position"], loss["size"]) == (32 + damaged * size, size)
    assert events["records_dropped"] == len(lost)
    with tidelog.open(data) as store:
        log = store.log("events")
        got = [(r.offset, r.value) for r in log.read()]
        assert len(got) == 100_000 - len(lost)
        assert got == [(o, b"%099d" % o) for o in range(100_000) if o not in lost]
        assert list(log.read(lost.start, lost.stop)) == []
        assert store.check() == []
        assert log.append(b"next") == 100_000


CHILD = textwrap.dedent(
    """
    import sys, tidelog
    with tidelog.open(sys.argv[1]) as store:
        print("ready", flush=True)
        sys.stdin.read()  # until the test closes our stdin
    """
)


def test_repair_refuses_while_another_process_has_the_store_open(tmp_path: Path) -> None:
    data = tmp_path / "d"
    values = make_store(data)
    victim = segment_files(data)[1]
    raw = bytearray(victim.read_bytes())
    raw[32 + BATCH + 100] ^= 0x01
    victim.write_bytes(bytes(raw))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(data)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        result = CliRunner().invoke(main, ["repair", "--data", str(data), "--json"])
        assert result.exit_code == 1
        error = json.loads(result.output)
        assert "another process" in json.dumps(error), error
        assert Path(str(victim) + ".broken").exists() is False  # nothing was touched
        assert victim.read_bytes() == bytes(raw)
    finally:
        assert child.stdin is not None
        child.stdin.close()
        assert child.wait(timeout=60) == 0
    code, repaired = invoke(data, "repair")
    assert code == 0 and repaired["records_dropped"] == 1
    lost = int(victim.name[:20]) + 1
    assert records_left(data) == [(o, v) for o, v in enumerate(values) if o != lost]


def test_a_damaged_segment_header_gets_its_salt_back_from_its_batches(tmp_path: Path) -> None:
    data = tmp_path / "d"
    values = make_store(data)
    victim = segment_files(data)[1]
    raw = bytearray(victim.read_bytes())
    raw[12] ^= 0xFF  # inside the salt: the header's CRC fails
    victim.write_bytes(bytes(raw))
    assert invoke(data, "verify")[0] == 3
    code, repaired = invoke(data, "repair")
    assert code == 0 and repaired["records_dropped"] == 0
    events = next(r for r in repaired["logs"] if r["log"] == "events")  # type: ignore[attr-defined]
    assert (events["damage"], events["path"], events["position"]) == (
        "segment header damaged",
        str(victim),
        0,
    )
    header = fmt.decode_segment_header(victim.read_bytes())
    assert header is not None and header.salt == int.from_bytes(raw[40:44], "little")
    assert invoke(data, "verify")[0] == 0
    assert [v for _, v in records_left(data)] == values


def test_a_stream_reads_across_a_repaired_gap_with_its_sequence_numbers(tmp_path: Path) -> None:
    data = tmp_path / "d"
    with tidelog.open(data, segment_bytes_max=4096) as store:
        stream = store.create_stream("clicks", shards=1)
        puts = [stream.put_many([(b"r%d-%d" % (n, i), "k") for i in range(5)]) for n in range(90)]
        log_id = store._logs.get_log("stream/clicks/shardId-000000000000").id
    sequence = {
        (n, i): r.sequence_number
        for n, result in enumerate(puts)
        for i, r in enumerate(result.records)
    }
    victim = sorted((data / "logs" / str(log_id)).glob("*.seg"))[1]
    raw = bytearray(victim.read_bytes())
    raw[fmt.SEGMENT_HEADER_BYTES + 50] ^= 0x01  # inside the segment's first batch
    victim.write_bytes(bytes(raw))
    code, repaired = invoke(data, "repair")
    assert code == 0 and repaired["records_dropped"] == 5
    with tidelog.open(data) as store:
        stream = store.stream("clicks")
        it = stream.get_shard_iterator("shardId-000000000000", "TRIM_HORIZON")
        got = []
        while it is not None:
            result = stream.get_records(it, limit=7)
            if not result.records:
                break
            got += [(r.data, r.sequence_number) for r in result.records]
            it = result.next_shard_iterator
    kept = [(b"r%d-%d" % key, seq) for key, seq in sequence.items()]
    assert len(got) == len(kept) - 5
    assert set(got) < set(kept)  # every record read back under its own sequence number
