"""Delivery streams (Firehose model): buffering with an injected clock, formats, processors."""

from __future__ import annotations

import base64
import gzip
import json
import time
from pathlib import Path

import pytest
from helpers import FakeClock, objects

import tidelog
from tidelog.delivery import BATCH_BYTES_MAX, RECORD_BYTES_MAX, evaluate_prefix

MIB = 1024 * 1024
T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> tidelog.Store:
    with tidelog.open(tmp_path / "data", sync="never", clock=clock) as s:
        yield s
        assert s.check() == []


def test_interval_rule_waits_for_the_oldest_record(
    store: tidelog.Store, clock: FakeClock, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    ds = store.create_delivery_stream("f", destination=out, buffering_interval=60)
    assert ds.flush() is None  # nothing buffered
    ds.put_record(b"a")
    clock.advance(30)
    ds.put_record(b"b")
    clock.advance(29.9)
    assert ds.flush() is None  # the oldest is 59.9 s old
    assert objects(out) == {}
    clock.advance(0.1)
    result = ds.flush()
    assert result is not None and result.records == 2 and result.delivered == 2
    assert list(objects(out).values()) == [b"ab"]
    # A new buffer starts its own interval with its first record.
    ds.put_record(b"c")
    clock.advance(59)
    assert ds.flush() is None
    clock.advance(1)
    assert ds.flush() is not None
    assert sorted(objects(out).values()) == [b"ab", b"c"]


def test_size_rule_flushes_before_the_interval(
    store: tidelog.Store, clock: FakeClock, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    ds = store.create_delivery_stream(
        "f", destination=out, buffering_size_mib=1, buffering_interval=900
    )
    chunk = b"x" * (100 * 1024)
    ds.put_record_batch([chunk] * 10)  # 1,000 KiB: under 1 MiB
    assert ds.flush() is None
    assert ds.stats().buffered_bytes == 10 * len(chunk)
    ds.put_record_batch([chunk] * 5)  # now over 1 MiB
    result = ds.flush()
    # The batch holds records until it reaches 1 MiB (the one crossing it included).
    assert result is not None and result.records == 11
    assert ds.flush() is None  # the 4 left are under both hints
    clock.advance(900)
    last = ds.flush()
    assert last is not None and last.records == 4
    assert sorted(len(v) for v in objects(out).values()) == [4 * len(chunk), 11 * len(chunk)]


def test_interval_zero_delivers_at_once(store: tidelog.Store, tmp_path: Path) -> None:
    ds = store.create_delivery_stream("f", destination=tmp_path / "o", buffering_interval=0)
    ds.put_record(b"now")
    assert ds.flush() is not None


def test_buffering_hint_limits(store: tidelog.Store, tmp_path: Path) -> None:
    for bad in ({"buffering_size_mib": 0}, {"buffering_size_mib": 129}):
        with pytest.raises(tidelog.InvalidArgument, match="buffering_size_mib"):
            store.create_delivery_stream("f", destination=tmp_path, **bad)
    for bad in ({"buffering_interval": -1}, {"buffering_interval": 901}):
        with pytest.raises(tidelog.InvalidArgument, match="buffering_interval"):
            store.create_delivery_stream("f", destination=tmp_path, **bad)
    with pytest.raises(tidelog.InvalidArgument, match="compression"):
        store.create_delivery_stream("f", destination=tmp_path, compression="BZIP")
    ds = store.create_delivery_stream("f", destination=tmp_path)
    d = ds.describe()
    assert (d.buffering_size_mib, d.buffering_interval, d.compression) == (5, 300, "UNCOMPRESSED")
    with pytest.raises(tidelog.AlreadyExists):
        store.create_delivery_stream("f", destination=tmp_path)


def test_gzip_json_lines_round_trip(store: tidelog.Store, clock: FakeClock, tmp_path: Path) -> None:
    out = tmp_path / "out"
    ds = store.create_delivery_stream(
        "events", destination=out, compression="GZIP", record_format="json_lines"
    )
    docs = [{"i": i, "text": "é" * (i % 7)} for i in range(1200)]
    for start in range(0, len(docs), 500):
        results = ds.put_record_batch([json.dumps(d) for d in docs[start : start + 500]])
        assert all(r.error_code is None and r.record_id for r in results)
    assert ds.flush_all()
    found = objects(out)
    assert len(found) == 1
    (key, body), *_ = found.items()
    # Firehose's default layout: YYYY/MM/DD/HH/ from the oldest record's arrival (UTC).
    assert key.startswith("2023/11/14/22/events-1-2023-11-14-22-13-20-") and key.endswith(".gz")
    lines = gzip.decompress(body).decode().splitlines()
    assert [json.loads(line) for line in lines] == docs
    stats = ds.stats()
    assert (stats.records_delivered, stats.buffered_records, stats.objects) == (1200, 0, 1)


def test_raw_format_and_newline_delimiter(store: tidelog.Store, tmp_path: Path) -> None:
    plain = store.create_delivery_stream("plain", destination=tmp_path / "a")
    lines = store.create_delivery_stream(
        "lines", destination=tmp_path / "b", newline_delimiter=True
    )
    for ds in (plain, lines):
        ds.put_record_batch([b"one", b"two"])
        ds.flush_all()
    assert list(objects(tmp_path / "a").values()) == [b"onetwo"]
    assert list(objects(tmp_path / "b").values()) == [b"one\ntwo\n"]


def test_custom_prefix_expressions(store: tidelog.Store, tmp_path: Path) -> None:
    assert evaluate_prefix("logs/", 0) == "logs/1970/01/01/00/"
    assert evaluate_prefix("y=!{timestamp:yyyy}/m=!{timestamp:MM}/", 0) == "y=1970/m=01/"
    assert evaluate_prefix("err/", 0, "processing-failed") == "err/processing-failed/1970/01/01/00/"
    assert (
        evaluate_prefix("e/!{firehose:error-output-type}/!{timestamp:yyyy}/", 0, "delivery-failed")
        == "e/delivery-failed/1970/"
    )
    with pytest.raises(tidelog.InvalidArgument, match="unsupported"):
        store.create_delivery_stream("f", destination=tmp_path, prefix="!{firehose:random-string}")
    ds = store.create_delivery_stream(
        "f", destination=tmp_path / "o", prefix="year=!{timestamp:yyyy}/hour=!{timestamp:HH}/"
    )
    ds.put_record(b"x")
    ds.flush_all()
    (key,) = objects(tmp_path / "o")
    assert key.startswith("year=2023/hour=22/f-1-")


def test_put_limits(store: tidelog.Store, tmp_path: Path) -> None:
    ds = store.create_delivery_stream("f", destination=tmp_path)
    with pytest.raises(tidelog.InvalidArgument, match="1,000 KiB"):
        ds.put_record(b"x" * (RECORD_BYTES_MAX + 1))
    ds.put_record(b"x" * RECORD_BYTES_MAX)
    with pytest.raises(tidelog.InvalidArgument, match="outside 1-500"):
        ds.put_record_batch([b"x"] * 501)
    with pytest.raises(tidelog.InvalidArgument, match="outside 1-500"):
        ds.put_record_batch([])
    with pytest.raises(tidelog.InvalidArgument, match="4 MiB"):
        ds.put_record_batch([b"x" * (1000 * 1024)] * 5)
    results = ds.put_record_batch([b"y"] * 500)
    assert len(results) == 500 and len({r.record_id for r in results}) == 500
    assert ds.stats().buffered_records == 501
    assert BATCH_BYTES_MAX == 4 * MIB


def test_processor_drops_and_fails(store: tidelog.Store, tmp_path: Path) -> None:
    out = tmp_path / "out"
    seen: list[str] = []

    def processor(data: bytes, record_id: str) -> tidelog.Processed:
        seen.append(record_id)
        n = int(data)
        if n % 3 == 0:
            return tidelog.DROPPED
        if n % 3 == 1:
            return tidelog.ProcessingFailed(f"{n} is not welcome")
        return tidelog.Ok(b"<%d>" % n)

    ds = store.create_delivery_stream(
        "f", destination=out, processor=processor, error_output_prefix="errors/"
    )
    ds.put_record_batch([str(n).encode() for n in range(30)])
    (result,) = ds.flush_all()
    assert (result.records, result.delivered, result.dropped, result.failed) == (30, 10, 10, 10)
    assert len(seen) == 30
    found = objects(out)
    good = [v for k, v in found.items() if not k.startswith("errors/")]
    assert good == [b"".join(b"<%d>" % n for n in range(30) if n % 3 == 2)]
    (error_key,) = [k for k in found if k.startswith("errors/")]
    assert error_key.startswith("errors/processing-failed/2023/11/14/22/")
    docs = [json.loads(line) for line in found[error_key].splitlines()]
    assert [int(base64.b64decode(d["rawData"])) for d in docs] == list(range(1, 30, 3))
    assert {d["errorCode"] for d in docs} == {"Lambda.ProcessingFailed"}
    assert docs[0]["errorMessage"] == "1 is not welcome"
    stats = ds.stats()
    assert (stats.records_delivered, stats.records_dropped, stats.records_failed) == (10, 10, 10)


def test_processor_that_raises_fails_its_record(store: tidelog.Store, tmp_path: Path) -> None:
    def processor(data: bytes, record_id: str) -> tidelog.Processed:
        if data == b"bad":
            raise ValueError("boom")
        return tidelog.Ok(data)

    ds = store.create_delivery_stream("f", destination=tmp_path / "o", processor=processor)
    ds.put_record_batch([b"ok", b"bad"])
    (result,) = ds.flush_all()
    assert (result.delivered, result.failed) == (1, 1)


def test_invalid_json_goes_to_the_error_output(store: tidelog.Store, tmp_path: Path) -> None:
    ds = store.create_delivery_stream("f", destination=tmp_path / "o", record_format="json_lines")
    ds.put_record_batch([b'{"ok": 1}', b"{not json", b'"two\nlines"'])
    (result,) = ds.flush_all()
    assert (result.delivered, result.failed) == (1, 2)


def test_failed_delivery_retries_then_goes_to_the_error_prefix(
    store: tidelog.Store, clock: FakeClock, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "blocked").write_text("a file where a directory should be")
    ds = store.create_delivery_stream(
        "f", destination=out, prefix="blocked/", error_output_prefix="errors/", retry_duration=60
    )
    ds.put_record_batch([b"r1", b"r2"])
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:  # the injected clock moves instead of sleeping
        sleeps.append(seconds)
        clock.advance(seconds)

    (result,) = [ds.flush(force=True, sleep=sleep)]
    assert result is not None and result.failed == 2 and result.delivered == 0
    # Exponential backoff, cut at the retry duration.
    assert sleeps[:4] == [0.5, 1.0, 2.0, 4.0] and sum(sleeps) == pytest.approx(60)
    (key,) = [k for k in objects(out) if k.startswith("errors/")]
    assert key.startswith("errors/delivery-failed/")
    docs = [json.loads(line) for line in (out / key).read_bytes().splitlines()]
    assert [base64.b64decode(d["rawData"]) for d in docs] == [b"r1", b"r2"]
    assert (
        "NotADirectoryError" in docs[0]["errorMessage"]
        or "FileExistsError" in (docs[0]["errorMessage"])
    )
    assert ds.stats().buffered_records == 0


def test_stream_source_reads_through_its_consumer(store: tidelog.Store, tmp_path: Path) -> None:
    stream = store.create_stream("clicks", shards=3)
    stream.put_many([(b"%d" % i, f"user-{i}") for i in range(60)])
    ds = store.create_delivery_stream(
        "to-files", source="clicks", destination=tmp_path / "o", newline_delimiter=True
    )
    with pytest.raises(tidelog.InvalidArgument, match="not direct"):
        ds.put_record(b"x")
    assert ds.flush_all()
    consumer = stream.consumer("firehose-to-files")
    assert set(consumer.checkpoints()) == {s.shard_id for s in stream.shards()}
    assert list(consumer.read()) == []  # everything is checkpointed
    stream.split_shard(0, 2**125)
    stream.put_many([(b"%d" % i, f"user-{i}") for i in range(60, 100)])
    assert ds.flush_all()
    delivered = [
        int(line) for body in objects(tmp_path / "o").values() for line in body.splitlines()
    ]
    assert sorted(delivered) == list(range(100))
    store.delete_delivery_stream("to-files")
    assert "firehose-to-files" not in stream.consumers()
    with pytest.raises(tidelog.NotFound):
        store.create_delivery_stream("x", source="nope", destination=tmp_path)


def test_update_destination_and_delete(store: tidelog.Store, tmp_path: Path) -> None:
    ds = store.create_delivery_stream("f", destination=tmp_path / "a")
    ds.put_record(b"1")
    ds.flush_all()
    version = ds.update_destination(
        destination=tmp_path / "b", prefix="p/", compression="GZIP", current_version=1
    )
    assert version == 2
    with pytest.raises(tidelog.InvalidArgument, match="version"):
        ds.update_destination(prefix="q/", current_version=1)
    ds.put_record(b"2")
    ds.flush_all()
    (key,) = objects(tmp_path / "b")
    assert key.startswith("p/2023/") and key.endswith(".gz")
    assert gzip.decompress((tmp_path / "b" / key).read_bytes()) == b"2"
    assert [d.name for d in store.delivery_streams()] == ["f"]
    store.delete_delivery_stream("f")
    assert store.delivery_streams() == []
    with pytest.raises(tidelog.NotFound):
        store.delivery_stream("f")
    with pytest.raises(tidelog.NotFound):
        store.delete_delivery_stream("f")


def test_a_planned_batch_is_redone_exactly(store: tidelog.Store, tmp_path: Path) -> None:
    """A crash between intent and commit: the retry writes the same records to the same key."""
    out = tmp_path / "o"
    ds = store.create_delivery_stream("f", destination=out, newline_delimiter=True)
    ds.put_record_batch([b"a", b"b"])
    intent = ds._plan(0, force=True)
    assert intent is not None
    ds.put_record_batch([b"c"])  # arrives after the plan: not in this batch
    first = ds._deliver(intent, store._logs.clock, lambda s: None)
    ds2 = store.delivery_stream("f")  # as a second deliverer that saw the same intent
    second = ds2._deliver(intent, store._logs.clock, lambda s: None)
    assert first.keys == second.keys
    assert list(objects(out).values()) == [b"a\nb\n"]
    assert ds.stats().records_delivered == 2 and ds.stats().buffered_records == 1


def test_background_deliverer(store: tidelog.Store, tmp_path: Path) -> None:
    ds = store.create_delivery_stream("f", destination=tmp_path / "o", buffering_interval=0)
    batches: list[int] = []
    deliverer = tidelog.Deliverer(
        store, poll_interval=0.01, on_batch=lambda d, r: batches.append(r.records)
    )
    deliverer.start()
    try:
        ds.put_record_batch([b"x"] * 5)
        for _ in range(500):
            if sum(batches) == 5:
                break
            deliverer._stop.wait(0.01)
    finally:
        deliverer.stop()
    assert sum(batches) == 5 and deliverer.errors == []


def test_cli_deliver(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from tidelog.cli.main import main

    data, out = tmp_path / "data", tmp_path / "out"
    with tidelog.open(data) as s:
        ds = s.create_delivery_stream("f", destination=out, newline_delimiter=True)
        ds.put_record_batch([b"a", b"b"])
    runner = CliRunner()
    # Not due (the interval is 300 s): --once delivers nothing.
    result = runner.invoke(main, ["deliver", "f", "--data", str(data), "--once", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["records"] == 0
    result = runner.invoke(main, ["deliver", "f", "--data", str(data), "--all", "--silent"])
    assert result.exit_code == 0, result.output
    assert "delivered 2 records in 1 batches" in result.stdout
    assert list(objects(out).values()) == [b"a\nb\n"]
    result = runner.invoke(main, ["deliver", "nope", "--data", str(data), "--once"])
    assert result.exit_code == 1 and "not found" in result.output


def test_deliverer_stops_during_a_retry(store: tidelog.Store, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "blocked").write_text("not a directory")
    ds = store.create_delivery_stream(
        "f", destination=out, prefix="blocked/", buffering_interval=0, retry_duration=600
    )
    ds.put_record(b"x")
    deliverer = tidelog.Deliverer(store, ["f"], poll_interval=0.01).start()
    deliverer._stop.wait(0.3)  # the deliverer is now backing off between retries
    started = time.monotonic()
    deliverer.stop(timeout=5)
    assert time.monotonic() - started < 2
    assert ds.stats().buffered_records == 1  # still planned, for a later flush
    assert ds._state()[1] is not None
