"""Delivery streams' object formats: compression codecs and Parquet conversion.

Pure functions from a batch's record bytes to an object's bytes, kept apart
from engine/delivery.py's planning and I/O (docs/api.md, "Delivery streams").
Optional packages are imported when first needed: Snappy and ZSTD need
cramjam (`tidelog[compression]`), Parquet needs pyarrow (`tidelog[parquet]`,
also part of `tidelog[sql]`). A missing one is an InvalidArgument naming the
extra to install, raised when a delivery stream is created or updated with
the format, so a misconfigured stream is refused rather than stuck.

Every function here is deterministic: a batch redone after a crash is
converted to the same rows, under the same key (the exactly-once rule of
engine/delivery.py).
"""

from __future__ import annotations

import base64
import gzip
import re
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from tidelog import json_limits
from tidelog.segments.errors import InvalidArgument

# Firehose's CompressionFormat names, plus ZSTD (tidelog's own; Firehose has none).
COMPRESSIONS = ("UNCOMPRESSED", "GZIP", "Snappy", "ZSTD")
SUFFIXES = {"UNCOMPRESSED": "", "GZIP": ".gz", "Snappy": ".snappy", "ZSTD": ".zst"}
GZIP_LEVEL = 6  # zlib's default: most of level 9's ratio at a fraction of its time
ZSTD_LEVEL = 3  # zstd's own default (cramjam's is higher and slower)
# ParquetSerDe.Compression (Firehose's default is SNAPPY) -> pyarrow's codec names.
PARQUET_COMPRESSIONS = {"UNCOMPRESSED": "none", "SNAPPY": "snappy", "GZIP": "gzip"}
PARQUET_SUFFIX = ".parquet"
# The error output's errorCode for a record that does not convert (under the
# `format-conversion-failed` error type, as Firehose files them).
CONVERSION_FAILED = "DataFormatConversion.MalformedData"
# A record nested deeper than this is not converted (it fails as malformed data):
# Parquet columns deeper than a few levels are unusual, and the bound keeps a
# hostile record from exhausting the parser's recursion.
ROW_DEPTH_MAX = 64
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROS = {"s": 10**-6, "ms": 10**-3, "us": 1, "ns": 10**3}  # a timestamp unit per microsecond
_EPOCH_MS_FROM = 10**11  # OpenX's rule: a number this large is epoch milliseconds, not seconds


# -- compression --------------------------------------------------------------------------


def _cramjam(compression: str) -> Any:
    try:
        import cramjam
    except ImportError:
        raise InvalidArgument(
            f"compression {compression!r}: needs cramjam (pip install 'tidelog[compression]')"
        ) from None
    return cramjam


def check_compression(value: object) -> str:
    """`value` if it is a compression this process can write; raises InvalidArgument."""
    if value not in COMPRESSIONS:
        raise InvalidArgument(f"compression: {value!r} is not one of {COMPRESSIONS}")
    assert isinstance(value, str)
    if value in ("Snappy", "ZSTD"):
        _cramjam(value)
    return value


def compress(body: bytes, compression: str) -> bytes:
    """`body` compressed as one object in `compression` (one of COMPRESSIONS)."""
    if compression == "GZIP":
        return gzip.compress(body, GZIP_LEVEL, mtime=0)  # mtime 0: a redo writes the same bytes
    if compression == "Snappy":
        # Firehose's Snappy is the framing format (stream identifier, CRC'd chunks),
        # which is what cramjam.snappy.compress writes (compress_raw is the bare block).
        return bytes(_cramjam(compression).snappy.compress(body))
    if compression == "ZSTD":
        return bytes(_cramjam(compression).zstd.compress(body, level=ZSTD_LEVEL))
    return body


# -- Parquet: configuration ---------------------------------------------------------------


def pyarrow() -> Any:
    """pyarrow with pyarrow.parquet loaded; raises InvalidArgument naming the extra."""
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401 - loads the submodule onto pyarrow
    except ImportError:
        raise InvalidArgument(
            "record_format 'parquet': needs pyarrow (pip install 'tidelog[parquet]')"
        ) from None
    return pyarrow


def check_parquet_compression(value: object) -> str:
    if value not in PARQUET_COMPRESSIONS:
        raise InvalidArgument(
            f"parquet_compression: {value!r} is not one of {tuple(PARQUET_COMPRESSIONS)}"
        )
    assert isinstance(value, str)
    return value


def stored_schema(value: object) -> dict[str, Any] | None:
    """A Parquet schema as the configuration stores it (JSON), validated.

    `value` is None (infer from each batch), a pyarrow.Schema, or a sequence
    of (column name, type) pairs whose types are Glue/Hive type names
    ('bigint', 'decimal(10,2)', 'array<string>', 'struct<a:int,b:string>')
    or pyarrow DataTypes. Pairs of names are stored as they are (so
    describe() gives them back); anything with a pyarrow type is stored as
    the schema's Arrow IPC serialization.
    """
    if value is None:
        return None
    pa = pyarrow()
    if isinstance(value, pa.Schema):
        return {"arrow": base64.b64encode(value.serialize().to_pybytes()).decode()}
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise InvalidArgument("parquet_schema: must be a pyarrow.Schema or (name, type) pairs")
    pairs: list[tuple[str, Any]] = []
    for pair in value:
        ok = isinstance(pair, Sequence) and len(pair) == 2 and isinstance(pair[0], str)
        if not ok or not pair[0] or not isinstance(pair[1], str | pa.DataType):
            raise InvalidArgument(f"parquet_schema: {pair!r} is not a (name, type) pair")
        pairs.append((pair[0], pair[1]))
    if not pairs or len({name for name, _ in pairs}) != len(pairs):
        raise InvalidArgument("parquet_schema: needs one or more columns, each named once")
    types = [t if isinstance(t, pa.DataType) else hive_type(t) for _, t in pairs]
    if all(isinstance(t, str) for _, t in pairs):
        return {"columns": [[name, t] for name, t in pairs]}
    schema = pa.schema([(name, t) for (name, _), t in zip(pairs, types, strict=True)])
    return stored_schema(schema)


def arrow_schema(stored: dict[str, Any] | None) -> Any:
    """The pyarrow.Schema of a stored schema (None: infer from each batch)."""
    if stored is None:
        return None
    pa = pyarrow()
    if "arrow" in stored:
        return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(stored["arrow"])))
    return pa.schema([(name, hive_type(text)) for name, text in stored["columns"]])


_HIVE_TOKEN = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*|[0-9]+|[<>(),:])")
_HIVE_SCALARS = {
    "boolean": "bool_",
    "tinyint": "int8",
    "smallint": "int16",
    "int": "int32",
    "integer": "int32",
    "bigint": "int64",
    "float": "float32",
    "double": "float64",
    "string": "string",
    "binary": "binary",
    "date": "date32",
}


def hive_type(text: str) -> Any:
    """The pyarrow type of a Glue/Hive column type; raises InvalidArgument.

    Scalars as _HIVE_SCALARS, `timestamp` (milliseconds), `varchar(n)` and
    `char(n)` (strings), `decimal(p,s)`, and nested `array<T>`, `map<K,V>`,
    `struct<name:T,...>`. Names are case-insensitive, as in Hive.
    """
    pa = pyarrow()
    tokens: list[str] = []
    position = 0
    text = text.strip()
    while position < len(text):
        match = _HIVE_TOKEN.match(text, position)
        if match is None:
            raise InvalidArgument(f"parquet_schema: cannot read type {text!r}")
        tokens.append(match.group(1))
        position = match.end()
    index = 0

    def take(expected: str | None = None) -> str:
        nonlocal index
        if index >= len(tokens) or (expected is not None and tokens[index] != expected):
            raise InvalidArgument(f"parquet_schema: cannot read type {text!r}")
        index += 1
        return tokens[index - 1]

    def peek() -> str | None:
        return tokens[index] if index < len(tokens) else None

    def parse() -> Any:
        name = take().lower()
        if name in _HIVE_SCALARS:
            return getattr(pa, _HIVE_SCALARS[name])()
        if name == "timestamp":
            return pa.timestamp("ms")
        if name in ("varchar", "char"):
            take("(")
            take()
            take(")")
            return pa.string()
        if name == "decimal":
            precision, scale = 10, 0  # Hive's decimal without arguments
            if peek() == "(":
                take("(")
                precision = int(take())
                take(",")
                scale = int(take())
                take(")")
            return pa.decimal128(precision, scale)
        if name == "array":
            take("<")
            item = parse()
            take(">")
            return pa.list_(item)
        if name == "map":
            take("<")
            key = parse()
            take(",")
            value = parse()
            take(">")
            return pa.map_(key, value)
        if name == "struct":
            take("<")
            fields = []
            while True:
                field_name = take()
                take(":")
                fields.append(pa.field(field_name, parse()))
                separator = take()
                if separator == ">":
                    return pa.struct(fields)
                if separator != ",":
                    raise InvalidArgument(f"parquet_schema: cannot read type {text!r}")
        raise InvalidArgument(f"parquet_schema: unknown type {name!r} in {text!r}")

    try:
        result = parse()
    except (ValueError, TypeError) as exc:  # int() of a name; pyarrow's own limits
        raise InvalidArgument(f"parquet_schema: cannot read type {text!r} ({exc})") from None
    if index != len(tokens):
        raise InvalidArgument(f"parquet_schema: cannot read type {text!r}")
    return result


# -- Parquet: conversion ------------------------------------------------------------------


def infer_schema(rows: Sequence[dict[str, Any]]) -> Any:
    """A schema for a batch without one: a column per key, in order of first appearance.

    A column's type is the one pyarrow infers from all its values (ints and
    floats together make double; objects make structs with every key seen).
    Values that cannot share one type (a number here, a string there) give
    the column the type of its first non-null value: records whose value does
    not fit it fail conversion.
    """
    pa = pyarrow()
    fields = []
    for name in dict.fromkeys(key for row in rows for key in row):
        values = [row.get(name) for row in rows]
        try:
            type_ = pa.array(values).type
        except Exception:  # pyarrow's ArrowInvalid / ArrowTypeError, OverflowError
            first = next(v for v in values if v is not None)
            try:
                type_ = pa.array([first]).type
            except Exception:  # unrepresentable (an int past 64 bits): fits no value
                type_ = pa.null()
        fields.append(pa.field(name, type_))
    return pa.schema(fields)


def _needs_coercion(pa: Any, type_: Any) -> bool:
    """Whether JSON values need converting (or checking) before pyarrow takes them."""
    t = pa.types
    if t.is_integer(type_) or t.is_timestamp(type_) or t.is_date(type_):
        return True
    if t.is_decimal(type_) or t.is_map(type_):
        return True
    if t.is_list(type_) or t.is_large_list(type_):
        return _needs_coercion(pa, type_.value_type)
    if t.is_struct(type_):
        return any(_needs_coercion(pa, type_.field(i).type) for i in range(type_.num_fields))
    return False


def _coerce(pa: Any, value: Any, type_: Any) -> Any:
    """A JSON value as pyarrow takes it for `type_`; raises ValueError if it does not fit."""
    t = pa.types
    if value is None:
        return None
    if t.is_integer(type_):
        # pyarrow truncates 1.5 to 1 and takes True as 1: neither is an integer in JSON.
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(f"{value!r} is not an integer")
        return int(value) if isinstance(value, float) else value
    if t.is_timestamp(type_):
        # As Firehose's OpenX SerDe: ISO 8601 text, or epoch seconds or milliseconds.
        if isinstance(value, str):
            moment = datetime.fromisoformat(value)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            micros = (moment - _EPOCH) // timedelta(microseconds=1)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            micros = int(value * (10**3 if abs(value) >= _EPOCH_MS_FROM else 10**6))
        else:
            raise ValueError(f"{value!r} is not a timestamp")
        return int(micros * _MICROS[type_.unit])
    if t.is_date(type_):
        return date.fromisoformat(value) if isinstance(value, str) else value
    if t.is_decimal(type_):
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError(f"{value!r} is not a decimal")
        return Decimal(str(value))
    if t.is_map(type_):
        if not isinstance(value, dict):
            raise ValueError(f"{value!r} is not an object")
        return [(k, _coerce(pa, v, type_.item_type)) for k, v in value.items()]
    if (t.is_list(type_) or t.is_large_list(type_)) and isinstance(value, list):
        return [_coerce(pa, v, type_.value_type) for v in value]
    if t.is_struct(type_) and isinstance(value, dict):
        fields = [type_.field(i) for i in range(type_.num_fields)]
        return {f.name: _coerce(pa, value.get(f.name), f.type) for f in fields}
    return value


def to_parquet(
    datas: Sequence[bytes], schema: Any, compression: str
) -> tuple[bytes | None, dict[int, str]]:
    """One Parquet file of a batch's JSON records; and why each record that failed did.

    Each record must be one JSON object. With `schema` (a pyarrow.Schema),
    keys that are not columns are ignored and missing columns are null; a
    record with a value that does not convert to its column's type fails
    (it is not written with a null in its place). Without one, the schema is
    infer_schema's. Returns (None, ...) when no record converts. Failures
    are keyed by index in `datas`.
    """
    pa = pyarrow()
    failures: dict[int, str] = {}
    rows: list[dict[str, Any]] = []
    indexes: list[int] = []
    for i, data in enumerate(datas):
        try:
            row = json_limits.loads(data, ROW_DEPTH_MAX)
        except json_limits.JsonLimitError as exc:
            failures[i] = f"not convertible: {exc}"
            continue
        except ValueError:  # JSONDecodeError and UnicodeDecodeError
            failures[i] = "not one JSON document"
            continue
        if not isinstance(row, dict):
            failures[i] = "not a JSON object"
            continue
        rows.append(row)
        indexes.append(i)
    if not rows:
        return None, failures
    if schema is None:
        schema = infer_schema(rows)
    bad: dict[int, str] = {}  # by index in rows
    columns: list[list[Any]] = []
    arrays: list[Any] = []
    for field in schema:
        values = [row.get(field.name) for row in rows]
        if not field.nullable:
            bad.update(
                (j, f"column {field.name!r}: null") for j, v in enumerate(values) if v is None
            )
        if _needs_coercion(pa, field.type):
            for j, value in enumerate(values):
                try:
                    values[j] = _coerce(pa, value, field.type)
                except (ValueError, TypeError, OverflowError) as exc:
                    bad.setdefault(j, f"column {field.name!r}: {exc}")
        columns.append(values)
        try:
            arrays.append(pa.array(values, field.type))
        except Exception:  # find the values that do not fit, one at a time
            for j, value in enumerate(values):
                if j in bad:
                    continue
                try:
                    pa.array([value], field.type)
                except Exception as exc:
                    bad[j] = f"column {field.name!r}: {exc}"
    keep = [j for j in range(len(rows)) if j not in bad]
    failures.update((indexes[j], message) for j, message in bad.items())
    if not keep:
        return None, failures
    try:
        if bad:
            arrays = [
                pa.array([values[j] for j in keep], field.type)
                for field, values in zip(schema, columns, strict=True)
            ]
        table = pa.Table.from_arrays(arrays, schema=schema)
        sink = pa.BufferOutputStream()
        pa.parquet.write_table(table, sink, compression=PARQUET_COMPRESSIONS[compression])
    except Exception as exc:  # a batch pyarrow cannot write (an empty struct...) fails whole
        failures.update((indexes[j], f"{type(exc).__name__}: {exc}") for j in keep)
        return None, failures
    body: bytes = sink.getvalue().to_pybytes()
    return body, failures
