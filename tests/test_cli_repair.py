"""verify finds damage and exits 3; repair cuts back to the last good record.

Damage is made by byte surgery on real segment files: a flipped bit in a
sealed segment, and a segment cut short.
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

import tidelog
from tidelog.cli.main import main

RECORDS = 40


def make_store(data: Path) -> list[bytes]:
    values = [bytes([i]) * 200 for i in range(RECORDS)]
    with tidelog.open(data, segment_bytes_max=4096) as store:
        log = store.create_log("events")
        for value in values:  # one commit each, so segments roll by size
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


def values_left(data: Path) -> list[bytes]:
    with tidelog.open(data, readonly=True) as store:
        return [r.value for r in store.log("events").read()]


def test_bit_flip_is_found_then_repaired(tmp_path: Path) -> None:
    data = tmp_path / "d"
    values = make_store(data)
    files = segment_files(data)
    assert len(files) >= 3
    victim = files[1]
    raw = bytearray(victim.read_bytes())
    position = 32 + 232 * 3 + 100  # inside the fourth record's value
    raw[position] ^= 0x10
    victim.write_bytes(bytes(raw))

    code, report = invoke(data, "verify")
    assert code == 3 and report["ok"] is False
    problem = report["problems"][0]  # type: ignore[index]
    assert problem["path"] == str(victim) and problem["position"] == 32 + 232 * 3
    text = CliRunner().invoke(main, ["verify", "--data", str(data), "--silent"])
    assert text.exit_code == 3
    assert f"{victim}: byte {32 + 232 * 3}" in text.output
    assert text.output.strip().endswith("1 problems found")

    first_base = int(victim.name[:20])
    code, repaired = invoke(data, "repair")
    assert code == 0, repaired
    logs = {r["log"]: r for r in repaired["logs"]}  # type: ignore[attr-defined]
    assert logs["events"]["offset"] == first_base + 3
    assert logs["events"]["records_dropped"] == RECORDS - (first_base + 3)
    assert Path(str(victim) + ".broken").read_bytes() == bytes(raw)
    assert logs["queue/jobs"]["damage"] is None

    code, report = invoke(data, "verify")
    assert code == 0 and report["ok"] is True
    assert values_left(data) == values[: first_base + 3]
    with tidelog.open(data) as store:  # the log takes appends again after the cut
        store.log("events").append(b"after")
        assert store.check() == []
        assert [m.body for m in store.queue("jobs").receive(1)] == [b"untouched"]
    assert values_left(data)[-1] == b"after"


def test_truncated_tail_is_found_then_repaired(tmp_path: Path) -> None:
    data = tmp_path / "d"
    values = make_store(data)
    files = segment_files(data)
    last_sealed = files[-2]
    size = last_sealed.stat().st_size
    with open(last_sealed, "r+b") as handle:
        handle.truncate(size - 50)  # the last record loses its tail

    code, report = invoke(data, "verify")
    assert code == 3
    assert report["problems"][0]["path"] == str(last_sealed)  # type: ignore[index]

    code, repaired = invoke(data, "repair")
    assert code == 0
    events = next(r for r in repaired["logs"] if r["log"] == "events")  # type: ignore[attr-defined]
    assert str(files[-1]) in events["files_removed"]
    kept = events["offset"]
    assert kept == int(files[-1].name[:20]) - 1  # the damaged record was the segment's last
    code, report = invoke(data, "verify")
    assert code == 0
    assert values_left(data) == values[:kept]
    assert not files[-1].exists() and Path(str(files[-1]) + ".broken").exists()


def test_active_segment_cut_short_is_found_and_repaired(tmp_path: Path) -> None:
    data = tmp_path / "d"
    values = make_store(data)
    active = segment_files(data)[-1]
    base = int(active.name[:20])
    size = active.stat().st_size
    with open(active, "r+b") as handle:
        handle.truncate(size - 10)
    assert invoke(data, "verify")[0] == 3
    code, repaired = invoke(data, "repair")
    assert code == 0
    assert repaired["records_dropped"] == 1  # recovery on open cut the torn record
    assert invoke(data, "verify")[0] == 0
    left = values_left(data)
    assert left == values[: len(left)] and len(left) == RECORDS - 1 and len(left) > base
