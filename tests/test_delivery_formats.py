"""Delivery streams' object formats: Parquet conversion and compression codecs, on real files."""

from __future__ import annotations

import base64
import gzip
import json
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
from helpers import FakeClock, objects

import tidelog
from tidelog.delivery_formats import hive_type

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
SCHEMA = [
    ("id", "bigint"),
    ("name", "string"),
    ("score", "double"),
    ("ok", "boolean"),
    ("at", "timestamp"),
    ("tags", "array<string>"),
    ("price", "decimal(8,2)"),
    ("user", "struct<login:string,age:int>"),
]


def error_docs(found: dict[str, bytes], error_type: str) -> list[dict[str, object]]:
    (key,) = [k for k in found if k.startswith(f"errors/{error_type}/")]
    return [json.loads(line) for line in found[key].splitlines()]


@pytest.fixture
def store(tmp_path: Path) -> tidelog.Store:
    with tidelog.open(tmp_path / "data", sync="never", clock=FakeClock(T0)) as s:
        yield s
        assert s.check() == []


def test_parquet_round_trip_with_a_schema(store: tidelog.Store, tmp_path: Path) -> None:
    out = tmp_path / "out"
    ds = store.create_delivery_stream(
        "p", destination=out, record_format="parquet", parquet_schema=SCHEMA
    )
    docs = [
        {
            "id": i,
            "name": f"n{i}",
            "score": i / 4,
            "ok": i % 2 == 0,
            "at": "2023-11-14T22:13:20.5Z" if i % 2 else 1_700_000_000_500,  # ISO or epoch ms
            "tags": ["a", "b"][: i % 3],
            "price": "12.50" if i % 2 else 3,
            "user": {"login": f"u{i}", "age": 30 + i},
            "ignored": "keys that are not columns are dropped",
        }
        for i in range(50)
    ]
    docs[7].pop("name")  # a missing column is null
    ds.put_record_batch([json.dumps(d) for d in docs])
    (result,) = ds.flush_all()
    assert (result.delivered, result.failed) == (50, 0)
    ((key, body),) = objects(out).items()
    assert key.startswith("2023/11/14/22/p-1-2023-11-14-22-13-20-") and key.endswith(".parquet")
    parquet = pq.ParquetFile(out / key)
    assert parquet.metadata.row_group(0).column(0).compression == "SNAPPY"  # Firehose's default
    assert parquet.schema_arrow == pa.schema([(n, hive_type(t)) for n, t in SCHEMA])
    expected = [
        {
            "id": d["id"],
            "name": d.get("name"),
            "score": d["score"],
            "ok": d["ok"],
            "at": datetime(2023, 11, 14, 22, 13, 20, 500_000),
            "tags": d["tags"],
            "price": Decimal(str(d["price"])).quantize(Decimal("0.01")),
            "user": d["user"],
        }
        for d in docs
    ]
    assert parquet.read().to_pylist() == expected
    description = ds.describe()
    assert description.record_format == "parquet" and description.parquet_schema == SCHEMA
    assert description.parquet_compression == "SNAPPY"


def test_records_that_do_not_fit_go_to_the_error_output(
    store: tidelog.Store, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    ds = store.create_delivery_stream(
        "p",
        destination=out,
        record_format="parquet",
        parquet_schema=[("id", "bigint"), ("at", "timestamp"), ("n", "decimal(3,1)")],
        parquet_compression="GZIP",
        error_output_prefix="errors/",
    )
    records = [
        b'{"id": 1}',
        b'{"id": "one"}',  # a string for a bigint
        b'{"id": 1.5}',  # pyarrow would truncate it: not an integer
        b'{"id": true}',
        b"{not json",
        b"[1, 2]",  # JSON, not an object
        b'{"at": "yesterday"}',
        b'{"n": 123.45}',  # past decimal(3,1)
        b'{"id": 2, "at": "2023-01-02 03:04:05"}',
    ]
    ds.put_record_batch(records)
    (result,) = ds.flush_all()
    assert (result.records, result.delivered, result.failed) == (9, 2, 7)
    found = objects(out)
    (data_key,) = [k for k in found if k.endswith(".parquet")]
    table = pq.read_table(out / data_key)
    assert table.column("id").to_pylist() == [1, 2]
    assert pq.ParquetFile(out / data_key).metadata.row_group(0).column(0).compression == "GZIP"
    docs = error_docs(found, "format-conversion-failed")
    assert [base64.b64decode(str(d["rawData"])) for d in docs] == [
        r for r in records if r not in (b'{"id": 1}', records[-1])
    ]
    assert {d["errorCode"] for d in docs} == {"DataFormatConversion.MalformedData"}
    assert str(docs[0]["errorMessage"]).startswith("column 'id'")
    assert docs[3]["errorMessage"] == "not one JSON document"
    assert all(d["approximateArrivalTimestamp"] == T0 * 1000 for d in docs)
    # The error object is JSON lines, not Parquet: no .parquet suffix.
    assert not [k for k in found if k.startswith("errors/") and k.endswith(".parquet")]
    assert ds.stats().records_failed == 7


def test_inferred_schema(store: tidelog.Store, tmp_path: Path) -> None:
    out = tmp_path / "out"
    ds = store.create_delivery_stream(
        "p", destination=out, record_format="parquet", error_output_prefix="errors/"
    )
    ds.put_record_batch(
        [
            json.dumps({"a": 1, "b": "x"}),
            json.dumps({"a": 2.5, "c": {"d": [1, 2]}}),  # ints and floats make double
            json.dumps({"b": 3}),  # "b" is text in the record that first has it: 3 fails
        ]
    )
    (result,) = ds.flush_all()
    assert (result.delivered, result.failed) == (2, 1)
    found = objects(out)
    (data_key,) = [k for k in found if k.endswith(".parquet")]
    table = pq.read_table(out / data_key)
    assert table.schema.names == ["a", "b", "c"]
    assert str(table.schema.field("a").type) == "double"
    assert table.to_pylist() == [
        {"a": 1.0, "b": "x", "c": None},
        {"a": 2.5, "b": None, "c": {"d": [1, 2]}},
    ]
    (doc,) = error_docs(found, "format-conversion-failed")
    assert base64.b64decode(str(doc["rawData"])) == b'{"b": 3}'


def test_pyarrow_schema_processor_and_one_error_object_per_type(
    store: tidelog.Store, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    schema = pa.schema([("n", pa.int32()), ("label", pa.string())])

    def processor(data: bytes, record_id: str) -> tidelog.Processed:
        n = int(data)
        if n % 4 == 0:
            return tidelog.DROPPED
        if n % 4 == 1:
            return tidelog.ProcessingFailed("unwelcome")
        if n % 4 == 2:
            return tidelog.Ok(json.dumps({"n": n, "label": f"#{n}"}).encode())
        return tidelog.Ok(json.dumps({"n": str(n)}).encode())  # does not fit int32

    ds = store.create_delivery_stream(
        "p",
        destination=out,
        record_format="parquet",
        parquet_schema=schema,
        parquet_compression="UNCOMPRESSED",
        processor=processor,
        error_output_prefix="errors/",
    )
    assert ds.describe().parquet_schema == schema
    ds.put_record_batch([str(n).encode() for n in range(20)])
    (result,) = ds.flush_all()
    assert (result.delivered, result.dropped, result.failed) == (5, 5, 10)
    found = objects(out)
    (data_key,) = [k for k in found if k.endswith(".parquet")]
    assert pq.read_table(out / data_key).to_pylist() == [
        {"n": n, "label": f"#{n}"} for n in range(2, 20, 4)
    ]
    assert [d["errorCode"] for d in error_docs(found, "processing-failed")] == [
        "Lambda.ProcessingFailed"
    ] * 5
    converted = error_docs(found, "format-conversion-failed")
    assert [json.loads(base64.b64decode(str(d["rawData"]))) for d in converted] == [
        {"n": str(n)} for n in range(3, 20, 4)
    ]


def test_a_planned_parquet_batch_is_redone_exactly(store: tidelog.Store, tmp_path: Path) -> None:
    out = tmp_path / "out"
    ds = store.create_delivery_stream("p", destination=out, record_format="parquet")
    ds.put_record_batch([json.dumps({"i": i}) for i in range(10)])
    intent = ds._plan(0, force=True)
    assert intent is not None
    first = ds._deliver(intent, store._logs.clock, lambda s: None)
    second = store.delivery_stream("p")._deliver(intent, store._logs.clock, lambda s: None)
    assert first.keys == second.keys
    ((key, _),) = objects(out).items()
    assert pq.read_table(out / key).column("i").to_pylist() == list(range(10))
    assert ds.stats().records_delivered == 10


def test_parquet_settings_are_checked(store: tidelog.Store, tmp_path: Path) -> None:
    with pytest.raises(tidelog.InvalidArgument, match="parquet_compression"):
        store.create_delivery_stream(
            "p", destination=tmp_path, record_format="parquet", compression="GZIP"
        )
    with pytest.raises(tidelog.InvalidArgument, match="unknown type 'bigin'"):
        store.create_delivery_stream(
            "p", destination=tmp_path, record_format="parquet", parquet_schema=[("a", "bigin")]
        )
    for bad in ([("a", "array<int")], [("a", "int"), ("a", "string")], "a:int", []):
        with pytest.raises(tidelog.InvalidArgument, match="parquet_schema"):
            store.create_delivery_stream(
                "p", destination=tmp_path, record_format="parquet", parquet_schema=bad
            )
    with pytest.raises(tidelog.InvalidArgument, match="parquet_compression"):
        store.create_delivery_stream(
            "p", destination=tmp_path, record_format="parquet", parquet_compression="LZO"
        )
    assert hive_type("map<string,array<struct<a:decimal(5,2),b:varchar(10)>>>") == pa.map_(
        pa.string(), pa.list_(pa.struct([("a", pa.decimal128(5, 2)), ("b", pa.string())]))
    )
    ds = store.create_delivery_stream("p", destination=tmp_path, record_format="parquet")
    with pytest.raises(tidelog.InvalidArgument, match="parquet_compression"):
        ds.update_destination(compression="ZSTD")
    ds.update_destination(record_format="json_lines", compression="ZSTD")
    assert ds.describe().compression == "ZSTD"


@pytest.mark.parametrize(
    ("compression", "suffix"),
    [("UNCOMPRESSED", ""), ("GZIP", ".gz"), ("Snappy", ".snappy"), ("ZSTD", ".zst")],
)
def test_compression_round_trips(
    store: tidelog.Store, tmp_path: Path, compression: str, suffix: str
) -> None:
    cramjam = pytest.importorskip("cramjam")
    decompress = {
        "UNCOMPRESSED": bytes,
        "GZIP": gzip.decompress,
        "Snappy": lambda body: bytes(cramjam.snappy.decompress(body)),
        "ZSTD": lambda body: bytes(cramjam.zstd.decompress(body)),
    }[compression]
    out = tmp_path / "out"
    ds = store.create_delivery_stream(
        "c",
        destination=out,
        compression=compression,
        record_format="json_lines",
        error_output_prefix="errors/",
    )
    docs = [{"i": i, "text": "tide " * (i % 9)} for i in range(300)]
    ds.put_record_batch([json.dumps(d) for d in docs] + ["not json"])
    (result,) = ds.flush_all()
    assert (result.delivered, result.failed) == (300, 1)
    found = objects(out)
    (data_key,) = [k for k in found if not k.startswith("errors/")]
    assert data_key.endswith(f"-0000000000000000{suffix}")
    lines = decompress(found[data_key]).splitlines()
    assert [json.loads(line) for line in lines] == docs
    if compression == "Snappy":  # Firehose's Snappy: the framing format's stream identifier
        assert found[data_key].startswith(b"\xff\x06\x00\x00sNaPpY")
    # The error output is compressed the same way.
    (error_key,) = [k for k in found if k.startswith("errors/processing-failed/")]
    assert error_key.endswith(suffix)
    (doc,) = [json.loads(line) for line in decompress(found[error_key]).splitlines()]
    assert base64.b64decode(doc["rawData"]) == b"not json"


def test_a_missing_extra_is_named(
    store: tidelog.Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "cramjam", None)  # import cramjam now raises ImportError
    for compression in ("Snappy", "ZSTD"):
        with pytest.raises(tidelog.InvalidArgument, match=r"tidelog\[compression\]"):
            store.create_delivery_stream("c", destination=tmp_path, compression=compression)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(tidelog.InvalidArgument, match=r"tidelog\[parquet\]"):
        store.create_delivery_stream("p", destination=tmp_path, record_format="parquet")
    assert store.delivery_streams() == []
