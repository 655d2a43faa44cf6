"""botocore's service models, used to check requests and shape responses.

botocore ships every AWS service's model as data (botocore/data/<service>/
<version>/service-2.json). The endpoint reads operation names, input shapes
and wire names from them rather than copying them by hand:

- JSON protocols (SQS, Kinesis): `check_json` walks a request body against
  the operation's input shape and reports the first missing required member
  or value of the wrong type, as AWS's own validation does.
- Query protocol (SNS): `decode_query` turns the flat form fields
  (`Attributes.entry.1.key=...`) back into the structure botocore serialised,
  and `encode_xml` writes a result structure as the XML botocore parses.
"""

from __future__ import annotations

import base64
import binascii
import functools
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from botocore.loaders import Loader
from botocore.model import OperationModel, ServiceModel

from tidelog.server.xml_text import xml_escape
from tidelog.streams import TIMESTAMP_SECONDS_MAX, TIMESTAMP_SECONDS_MIN

# botocore's Shape subclasses (StructureShape, ListShape, MapShape) carry
# members / member / key / value; handlers take them as Any.
Shape = Any


class ShapeError(Exception):
    """A request that does not fit the model.

    `kind` says how, since services answer each with their own code:
    "missing" (a required member), "type" (a value of the wrong JSON or form
    type, or a number outside its type), "range" (outside the member's
    modeled min/max).
    """

    def __init__(self, message: str, *, kind: str = "type") -> None:
        super().__init__(message)
        self.kind = kind

    @property
    def missing(self) -> bool:
        return self.kind == "missing"


@functools.cache
def service_model(service: str) -> ServiceModel:
    """botocore's model of `service` ("sqs", "kinesis", "sns"), loaded once."""
    data = Loader().load_service_model(service, "service-2")
    return ServiceModel(data, service_name=service)


def operation(service: str, name: str) -> OperationModel | None:
    """The operation called `name`, or None when the model has none."""
    model = service_model(service)
    if name not in model.operation_names:
        return None
    return model.operation_model(name)


# -- JSON protocols ------------------------------------------------------------------------------

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "blob": (str,),
    "boolean": (bool,),
    "integer": (int,),
    "long": (int,),
    "float": (int, float),
    "double": (int, float),
    "timestamp": (int, float, str),
}
# What AWS's services parse "integer" and "long" into: a JSON number past
# these is a SerializationException there, not a huge value.
INTEGER_RANGE = {"integer": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
# Epoch seconds from 0001-01-01 to 9999-12-31: what a timestamp member can hold.
TIMESTAMP_SECONDS_RANGE = (TIMESTAMP_SECONDS_MIN, TIMESTAMP_SECONDS_MAX)


def check_number(kind: str, value: int | float, where: str) -> None:
    """Raise ShapeError unless `value` fits the number type `kind` (finite, in range)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ShapeError(f"{where}: {value!r} is not a finite number")
    bounds = INTEGER_RANGE.get(kind)
    if bounds is None and kind == "timestamp":
        bounds = TIMESTAMP_SECONDS_RANGE
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        raise ShapeError(f"{where}: {value!r:.40} is out of range for a {kind}")


def check_limits(shape: Shape, value: int | float, where: str) -> None:
    """Raise ShapeError(kind="range") if `value` is outside the member's modeled min/max,
    in the words of AWS's validation errors."""
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if low is not None and value < low:
        raise ShapeError(
            f"1 validation error detected: Value '{value}' at '{where}' failed to satisfy "
            f"constraint: Member must have value greater than or equal to {low}",
            kind="range",
        )
    if high is not None and value > high:
        raise ShapeError(
            f"1 validation error detected: Value '{value}' at '{where}' failed to satisfy "
            f"constraint: Member must have value less than or equal to {high}",
            kind="range",
        )


# Members whose text the library checks itself, for the error code the service
# answers (SQS: InvalidMessageContents for a body, InvalidParameterValue for an
# attribute): a lone surrogate in any other string is a shape error here.
LIBRARY_TEXT = {"sqs": frozenset({"MessageBody", "StringValue"})}
_SURROGATE = re.compile("[\ud800-\udfff]")


def check_json(
    shape: Shape | None,
    value: Any,
    path: str = "",
    library_text: frozenset[str] = frozenset(),
    name: str = "",
) -> None:
    """Raise ShapeError if `value` does not fit `shape`: required members, types,
    number ranges (the type's, then the model's min/max), and text that is not
    Unicode (a lone surrogate, which JSON's \\ud800 escapes can carry) except in
    members named in `library_text`."""
    if shape is None:
        return
    kind = shape.type_name
    where = path or "request"
    if kind == "structure":
        if not isinstance(value, dict):
            raise ShapeError(f"{where}: expected an object")
        members = shape.members
        for required in shape.required_members:
            if value.get(required) is None:
                raise ShapeError(
                    f"1 validation error detected: Value null at '{_join(path, required)}' "
                    "failed to satisfy constraint: Member must not be null",
                    kind="missing",
                )
        for key, item in value.items():
            member = members.get(key)
            if member is not None and item is not None:
                check_json(member, item, _join(path, key), library_text, key)
    elif kind == "list":
        if not isinstance(value, list):
            raise ShapeError(f"{where}: expected a list")
        for index, item in enumerate(value):
            check_json(shape.member, item, f"{where}.{index + 1}", library_text, name)
    elif kind == "map":
        if not isinstance(value, dict):
            raise ShapeError(f"{where}: expected an object")
        for key, item in value.items():
            if _SURROGATE.search(key):
                raise ShapeError(f"{where}: a key is not Unicode text (a lone surrogate)")
            check_json(shape.value, item, f"{where}.{key}", library_text, name)
    else:
        allowed = _JSON_TYPES.get(kind)
        if allowed is None:
            return
        if isinstance(value, bool) and kind != "boolean":
            raise ShapeError(f"{where}: expected {kind}, got a boolean")
        if not isinstance(value, allowed):
            raise ShapeError(f"{where}: expected {kind}, got {type(value).__name__}")
        if isinstance(value, str) and name not in library_text and _SURROGATE.search(value):
            raise ShapeError(f"{where}: not Unicode text (a lone surrogate)")
        if kind == "blob":
            try:
                base64.b64decode(str(value), validate=True)
            except (binascii.Error, ValueError):
                raise ShapeError(f"{where}: not valid base64") from None
        elif isinstance(value, int | float) and not isinstance(value, bool):
            check_number(kind, value, where)
            check_limits(shape, value, where)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


# -- query protocol: form fields in ---------------------------------------------------------------

# A form has at most this many fields (SNS and SQS alike): PublishBatch's 10
# entries of 10 attributes each, with their few fields, fit several times
# over, and the decoding of a form stays proportional to it.
FORM_FIELDS_MAX = 2000
_INTEGER_TEXT = re.compile(r"-?[0-9]{1,20}")
_FLOAT_TEXT = re.compile(
    r"-?(?:[0-9]{1,400}(?:\.[0-9]{0,400})?|\.[0-9]{1,400})(?:[eE][-+]?[0-9]{1,4})?"
)

# A form as a tree of its dotted names: "a.b=1" -> {"a": {"b": {None: "1"}}}.
# A field's own value sits under the key None, which no name part can be.
FormTree = dict[str | None, Any]


def form_tree(form: Mapping[str, str]) -> FormTree:
    """The form's fields as nested dicts, built once in time linear in the form."""
    root: FormTree = {}
    for key, value in form.items():
        node = root
        for part in key.split("."):
            node = node.setdefault(part, {})
        node[None] = value
    return root


class FormError(ValueError):
    """A query-protocol body that is not a form: not UTF-8 (raw or percent-encoded),
    or over FORM_FIELDS_MAX fields. `too_many` tells the second from the first."""

    def __init__(self, message: str, *, too_many: bool = False) -> None:
        super().__init__(message)
        self.too_many = too_many


def parse_form(body: bytes) -> dict[str, str]:
    """A query-protocol body's fields (the last of a repeated name wins).

    Percent-escapes must decode to UTF-8, so no lone surrogate or
    replacement character stands in for bad bytes. The field count is
    checked before anything is decoded. Raises FormError.
    """
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            errors="strict",
            max_num_fields=FORM_FIELDS_MAX,
        )
    except UnicodeDecodeError:
        raise FormError("Request body is not UTF-8") from None
    except ValueError:  # parse_qsl's "Max number of fields exceeded"
        raise FormError(f"more than {FORM_FIELDS_MAX} form fields", too_many=True) from None
    return dict(pairs)


def parse_number(kind: str, raw: str, where: str) -> int | float:
    """A form field's text as the number type `kind` ("integer", "long", "float",
    "double"): ASCII digits only, so "²", "--1", "1_0", " 5", NaN and Infinity
    are ShapeErrors, as is a value outside the type (1e308 for an integer)."""
    if kind in INTEGER_RANGE:
        if not _INTEGER_TEXT.fullmatch(raw):
            raise ShapeError(f"{where}: {raw!r:.40} is not an integer")
        number: int | float = int(raw)
    else:
        if not _FLOAT_TEXT.fullmatch(raw):
            raise ShapeError(f"{where}: {raw!r:.40} is not a number")
        number = float(raw)
    check_number(kind, number, where)
    return number


def decode_query(shape: Shape | None, form: Mapping[str, str]) -> dict[str, Any]:
    """The structure botocore's QuerySerializer flattened into `form`.

    Raises ShapeError for a missing required member, a value of the wrong
    type or one outside the model's min/max. Linear in the size of the form.
    """
    if shape is None:
        return {}
    value = _decode(shape, form_tree(form), "")
    return value if isinstance(value, dict) else {}


def _serialized_name(shape: Shape, default: str) -> str:
    name: str = shape.serialization.get("name", default)
    return name


def _numbered(base: FormTree, where: str) -> list[tuple[str, FormTree]]:
    """base["1"], base["2"], ... up to the first missing index."""
    items = []
    index = 1
    while str(index) in base:
        items.append((f"{where}.{index}", base[str(index)]))
        index += 1
    return items


def _decode(shape: Shape, node: FormTree, where: str) -> Any:
    kind = shape.type_name
    if kind == "structure":
        out: dict[str, Any] = {}
        for name, member in shape.members.items():
            wire = _serialized_name(member, name)
            child = node.get(wire)
            if child is not None:
                out[name] = _decode(member, child, f"{where}.{wire}" if where else wire)
        for required in shape.required_members:
            if required in out:
                continue
            if shape.members[required].type_name in ("map", "list"):
                # The query protocol sends an empty map or list as nothing at all.
                out[required] = {} if shape.members[required].type_name == "map" else []
                continue
            raise ShapeError(f"{required}: missing", kind="missing")
        return out
    if kind == "list":
        if node.get(None) == "" and len(node) == 1:
            return []
        if shape.serialization.get("flattened"):
            base, base_where = node, where
        else:
            member_name = shape.member.serialization.get("name", "member")
            base, base_where = node.get(member_name) or {}, f"{where}.{member_name}"
        return [_decode(shape.member, item, w) for w, item in _numbered(base, base_where)]
    if kind == "map":
        if shape.serialization.get("flattened"):
            base, base_where = node, where
        else:
            base, base_where = node.get("entry") or {}, f"{where}.entry"
        key_name = _serialized_name(shape.key, "key")
        value_name = _serialized_name(shape.value, "value")
        mapping: dict[str, Any] = {}
        for entry_where, entry in _numbered(base, base_where):
            item_key = (entry.get(key_name) or {}).get(None)
            if item_key is None:
                raise ShapeError(f"{entry_where}: map entry without a key")
            value_node = entry.get(value_name) or {}
            mapping[item_key] = _decode(shape.value, value_node, f"{entry_where}.{value_name}")
        return mapping
    raw = node.get(None)
    if raw is None:
        raise ShapeError(f"{where}: expected a value")
    if kind in ("integer", "long", "float", "double"):
        number = parse_number(kind, raw, where)
        check_limits(shape, number, where)
        return number
    if kind == "boolean":
        if raw not in ("true", "false"):
            raise ShapeError(f"{where}: {raw!r:.40} is not true or false")
        return raw == "true"
    if kind == "blob":
        try:
            return base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise ShapeError(f"{where}: not valid base64") from None
    return raw


# -- query protocol: XML out ----------------------------------------------------------------------


def encode_xml(shape: Shape | None, value: Mapping[str, Any]) -> str:
    """The members of a result structure as XML elements (no wrapper)."""
    if shape is None:
        return ""
    return "".join(_encode_members(shape, value))


def _encode_members(shape: Shape, value: Mapping[str, Any]) -> list[str]:
    parts: list[str] = []
    for name, member in shape.members.items():
        item = value.get(name)
        if item is None:
            continue
        parts.append(_encode(member, item, _serialized_name(member, name)))
    return parts


def _encode(shape: Shape, value: Any, tag: str) -> str:
    kind = shape.type_name
    if kind == "structure":
        return f"<{tag}>{''.join(_encode_members(shape, value))}</{tag}>"
    if kind == "list":
        member_tag = _serialized_name(shape.member, "member")
        inner = "".join(_encode(shape.member, item, member_tag) for item in value)
        if shape.serialization.get("flattened"):
            return "".join(_encode(shape.member, item, tag) for item in value)
        return f"<{tag}>{inner}</{tag}>"
    if kind == "map":
        key_tag = _serialized_name(shape.key, "key")
        value_tag = _serialized_name(shape.value, "value")
        entries = "".join(
            f"<entry>{_encode(shape.key, k, key_tag)}{_encode(shape.value, v, value_tag)}</entry>"
            for k, v in value.items()
        )
        return f"<{tag}>{entries}</{tag}>"
    if kind == "boolean":
        text = "true" if value else "false"
    elif kind == "blob":
        text = base64.b64encode(value).decode()
    elif kind == "timestamp":
        moment = (
            value if isinstance(value, datetime) else datetime.fromtimestamp(float(value), tz=UTC)
        )
        text = moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    else:
        text = str(value)
    return f"<{tag}>{xml_escape(text)}</{tag}>"
