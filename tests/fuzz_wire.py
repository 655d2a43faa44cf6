"""Hypothesis strategies and checks shared by the wire fuzzers (tests/test_fuzz_*.py).

A fuzzed request is built from botocore's model of the operation, so most
of it is well formed and reaches the handler, with edge values where it
matters: numbers that are not numbers, text SQS refuses, names with
newlines, receipts out of range, JSON nested too deep; or it is garbage
outright (random bytes, random forms). The checks are what every reply
must be: below 500, and either a parseable success or the service's error
shape (JSON `__type` + `message`, or an XML ErrorResponse with a Code).

Every module runs its fuzzers against one real server on 127.0.0.1, after
storing data it checks again at the end; the names of that data (NAMES
under KEEP) never appear in a fuzzed request, so the fuzzer cannot delete
it legitimately.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode
from xml.etree import ElementTree

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from server_harness import RawReply

from tidelog.server import model

KEEP = "keep"  # no fuzzed request holds this text

# Deterministic for CI: the same examples every run, none saved between runs.
FUZZ = settings(
    max_examples=500,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- edge values ----------------------------------------------------------------------------------


class Raw:
    """A JSON token written as it is (NaN, 1e400, a 30-digit integer)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Raw({self.text!r})"


EDGE_NUMBERS = st.sampled_from(
    [0, -1, 1, 10, 11, 20, 21, 900, 43200, 43201, 2**31, -(2**31) - 1, 2**63, 10**30]
    + [1.5, 1e308, -1e308, True, False, "²", "--1", "5", "", " 5", "1_0", "١"]
    + [Raw("NaN"), Raw("Infinity"), Raw("-Infinity"), Raw("1e400"), Raw("1" * 5000)]
)
EDGE_TEXT = st.sampled_from(
    ["", " ", "x", "evil\n", "evil\n.fifo", "\nx", "x\r", "a.fifo", "\x00", "a\x01b", "\uffff"]
    + ["\ufffe", "\ud800", "a\udfffb", "é😀", "<&>\"'", "]]>", "x" * 300, "%00", "%ED%A0%80"]
    + ["tl1.1.1.1", "tl1.1.-5.1", "tl1.1." + "f" * 20 + ".1", "tl1.1.1", "arn:aws:sqs:::"]
    + ["arn:aws:sns:us-east-1:000000000000:fz", "arn:aws:kinesis:us-east-1:000000000000:stream/fz"]
    + ["shardId-000000000000", "shardId-١٢٣", "TRIM_HORIZON", "AT_TIMESTAMP", "All", ".*"]
    + ["[" * 2000, '{"a":' * 100 + "1" + "}" * 100, "{}", "[]", "null", '{"a": NaN}']
)
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | EDGE_NUMBERS
    | EDGE_TEXT
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def edge_for(shape: Any, depth: int = 0) -> st.SearchStrategy[Any]:
    """Values for a member of `shape`: right-typed ones, edge ones, and wrong-typed ones."""
    kind = shape.type_name
    if depth > 4:
        return JSON_SCALARS
    if kind == "structure":
        members = list(shape.members.items())
        return (
            st.fixed_dictionaries(
                {},
                optional={name: edge_for(member, depth + 1) for name, member in members},
            )
            | JSON_SCALARS
        )
    if kind == "list":
        return st.lists(edge_for(shape.member, depth + 1), max_size=3) | JSON_SCALARS
    if kind == "map":
        return (
            st.dictionaries(
                st.text(max_size=10) | EDGE_TEXT, edge_for(shape.value, depth + 1), max_size=3
            )
            | JSON_SCALARS
        )
    if kind in ("integer", "long", "float", "double", "timestamp"):
        return EDGE_NUMBERS | st.integers(min_value=-5, max_value=10_001) | JSON_SCALARS
    if kind == "boolean":
        return st.booleans() | st.sampled_from(["true", "yes", 1, Raw("NaN")])
    if kind == "blob":
        return st.sampled_from(["eA==", "", "!!", "eA", "x" * 7]) | st.text(max_size=10)
    return EDGE_TEXT | st.text(max_size=30)


def to_json(value: Any) -> str:
    """JSON text of `value`, with Raw tokens as they are and NaN/Infinity as Python writes them."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{to_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(to_json(v) for v in value) + "]"
    return json.dumps(
        value
    )  # ensure_ascii: a lone surrogate travels as \ud800, as botocore sends it


@st.composite
def json_request(
    draw: st.DrawFn, service: str, operations: list[str], fill: dict[str, Any]
) -> tuple[str, bytes]:
    """(operation, body) for a JSON-protocol service: a model-shaped request with edge values
    (and `fill`'s good values for some members), or garbage."""
    operation = draw(st.sampled_from(operations))
    kind = draw(st.sampled_from(["shaped", "shaped", "shaped", "json", "bytes", "deep"]))
    if kind == "bytes":
        return operation, draw(st.binary(max_size=300))
    if kind == "deep":
        opener = draw(st.sampled_from([b"[", b'{"a":', b'{"QueueUrl":[']))
        return operation, opener * draw(st.sampled_from([33, 1000, 100_000]))
    if kind == "json":
        return operation, to_json(draw(JSON_VALUES)).encode()
    op_model = model.operation(service, operation)
    request: dict[str, Any] = {}
    if op_model is not None and op_model.input_shape is not None:
        shape = op_model.input_shape
        for name, member in shape.members.items():
            choice = _choice(draw, name in shape.required_members, name in fill)
            if choice == "good":
                request[name] = draw(st.sampled_from(fill[name]))
            elif choice == "edge":
                request[name] = draw(edge_for(member))
    return operation, to_json(request).encode()


def _choice(draw: st.DrawFn, required: bool, fillable: bool) -> str:
    """good, edge or absent: required members are mostly given, and good where we can."""
    if required:
        options = (
            ["good"] * 6 + ["edge"] * 3 + ["absent"] if fillable else ["edge"] * 9 + ["absent"]
        )
    else:
        options = ["good", "edge", "absent"] if fillable else ["edge", "absent"]
    return draw(st.sampled_from(options))


def flatten(prefix: str, value: Any) -> list[tuple[str, str]]:
    """A JSON-like value as query-protocol fields (lists and maps numbered from 1)."""
    if isinstance(value, dict):
        out = []
        for i, (k, v) in enumerate(value.items(), 1):
            out += [(f"{prefix}.entry.{i}.key", str(k)), *flatten(f"{prefix}.entry.{i}.value", v)]
            out += flatten(f"{prefix}.{k}", v)
        return out
    if isinstance(value, list):
        out = []
        for i, v in enumerate(value, 1):
            out += flatten(f"{prefix}.member.{i}", v)
            out += flatten(f"{prefix}.{i}", v)
        return out
    if isinstance(value, Raw):
        return [(prefix, value.text)]
    if isinstance(value, bool):
        return [(prefix, "true" if value else "false")]
    return [(prefix, "" if value is None else str(value))]


GARBAGE_KEYS = st.sampled_from(
    ["Attribute.1.Name", "Attribute.1.Value", "Attribute.99999.Name", "Attribute.0.Name"]
    + ["MessageAttribute.1.Value.DataType", "MessageAttributes.entry.1.Value.StringValue"]
    + ["a..b", ".", "", "Entries.1", "Tags.member.1.Key", "x." * 50, "Attributes.entry.1.key"]
)


def encode_form(fields: list[tuple[str, str]]) -> bytes:
    # surrogatepass: a lone surrogate becomes the bytes of its UTF-8 form, which
    # the server must refuse as not UTF-8.
    return urlencode(fields, encoding="utf-8", errors="surrogatepass").encode()


@st.composite
def query_request(
    draw: st.DrawFn,
    service: str,
    version: str,
    actions: list[str],
    fill: dict[str, Any],
    extra: st.SearchStrategy[list[tuple[str, str]]] | None = None,
) -> bytes:
    """A query-protocol form: model-shaped with edge values, with garbage fields, or garbage.

    `extra` draws fields in the protocol's own spelling where it is not the
    model's (SQS's Attribute.N.Name, SendMessageBatchRequestEntry.N.Id, ...).
    """
    kind = draw(st.sampled_from(["shaped", "shaped", "shaped", "fields", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300)) + f"&Version={version}".encode()
    action = draw(st.sampled_from(actions))
    fields = [("Action", action), ("Version", version)]
    if kind == "fields":
        pairs = st.tuples(GARBAGE_KEYS | st.text(max_size=20), EDGE_TEXT | st.text(max_size=20))
        return encode_form(fields + draw(st.lists(pairs, max_size=10)))
    op_model = model.operation(service, action)
    if op_model is not None and op_model.input_shape is not None:
        shape = op_model.input_shape
        for name, member in shape.members.items():
            wire = member.serialization.get("name", name)
            choice = _choice(draw, name in shape.required_members, name in fill)
            if choice == "good":
                fields += flatten(wire, draw(st.sampled_from(fill[name])))
            elif choice == "edge":
                fields += flatten(wire, draw(edge_for(member)))
    if extra is not None and draw(st.booleans()):
        fields += draw(extra)
    if draw(st.booleans()):
        fields += draw(st.lists(st.tuples(GARBAGE_KEYS, EDGE_TEXT), max_size=3))
    return encode_form(fields)


# -- checks ---------------------------------------------------------------------------------------


def check_json_reply(reply: RawReply) -> None:
    """Below 500; a JSON body; an error has the JSON protocols' __type and message."""
    assert reply.status < 500, reply.body[:500]
    document = reply.json()
    if reply.status >= 400:
        assert isinstance(document.get("__type"), str) and document["__type"], document
        assert isinstance(document.get("message"), str), document


def check_query_reply(reply: RawReply) -> None:
    """Below 500; XML that parses; an error is an ErrorResponse with a Code."""
    assert reply.status < 500, reply.body[:500]
    root = ElementTree.fromstring(reply.body)  # a reply must parse, errors and successes alike
    if reply.status >= 400:
        assert root.tag.endswith("ErrorResponse"), reply.body[:500]
        code = root.find("./{*}Error/{*}Code")
        assert code is not None and code.text, reply.body[:500]
