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
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import escape

from botocore.loaders import Loader
from botocore.model import OperationModel, ServiceModel

# botocore's Shape subclasses (StructureShape, ListShape, MapShape) carry
# members / member / key / value; handlers take them as Any.
Shape = Any


class ShapeError(Exception):
    """A request that does not fit the model: `missing` member or a bad type."""

    def __init__(self, message: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing


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


def check_json(shape: Shape | None, value: Any, path: str = "") -> None:
    """Raise ShapeError if `value` does not fit `shape` (required members, types)."""
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
                    missing=True,
                )
        for key, item in value.items():
            member = members.get(key)
            if member is not None and item is not None:
                check_json(member, item, _join(path, key))
    elif kind == "list":
        if not isinstance(value, list):
            raise ShapeError(f"{where}: expected a list")
        for index, item in enumerate(value):
            check_json(shape.member, item, f"{where}.{index + 1}")
    elif kind == "map":
        if not isinstance(value, dict):
            raise ShapeError(f"{where}: expected an object")
        for key, item in value.items():
            check_json(shape.value, item, f"{where}.{key}")
    else:
        allowed = _JSON_TYPES.get(kind)
        if allowed is None:
            return
        if isinstance(value, bool) and kind != "boolean":
            raise ShapeError(f"{where}: expected {kind}, got a boolean")
        if not isinstance(value, allowed):
            raise ShapeError(f"{where}: expected {kind}, got {type(value).__name__}")
        if kind == "blob":
            try:
                base64.b64decode(str(value), validate=True)
            except (binascii.Error, ValueError):
                raise ShapeError(f"{where}: not valid base64") from None


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


# -- query protocol: form fields in ---------------------------------------------------------------


def decode_query(shape: Shape | None, form: Mapping[str, str]) -> dict[str, Any]:
    """The structure botocore's QuerySerializer flattened into `form`."""
    if shape is None:
        return {}
    value = _decode(shape, form, "")
    return value if isinstance(value, dict) else {}


def _serialized_name(shape: Shape, default: str) -> str:
    name: str = shape.serialization.get("name", default)
    return name


def _has_prefix(form: Mapping[str, str], prefix: str) -> bool:
    dotted = prefix + "."
    return any(key == prefix or key.startswith(dotted) for key in form)


def _decode(shape: Shape, form: Mapping[str, str], prefix: str) -> Any:
    kind = shape.type_name
    if kind == "structure":
        out: dict[str, Any] = {}
        for name, member in shape.members.items():
            wire = _serialized_name(member, name)
            key = f"{prefix}.{wire}" if prefix else wire
            if _has_prefix(form, key):
                out[name] = _decode(member, form, key)
        for required in shape.required_members:
            if required not in out:
                raise ShapeError(f"{required}: missing", missing=True)
        return out
    if kind == "list":
        if form.get(prefix) == "":
            return []
        if shape.serialization.get("flattened"):
            base = prefix
        else:
            base = f"{prefix}.{shape.member.serialization.get('name', 'member')}"
        items = []
        index = 1
        while _has_prefix(form, f"{base}.{index}"):
            items.append(_decode(shape.member, form, f"{base}.{index}"))
            index += 1
        return items
    if kind == "map":
        base = prefix if shape.serialization.get("flattened") else f"{prefix}.entry"
        key_name = _serialized_name(shape.key, "key")
        value_name = _serialized_name(shape.value, "value")
        mapping: dict[str, Any] = {}
        index = 1
        while _has_prefix(form, f"{base}.{index}"):
            item_key = form.get(f"{base}.{index}.{key_name}")
            if item_key is None:
                raise ShapeError(f"{base}.{index}: map entry without a key")
            mapping[item_key] = _decode(shape.value, form, f"{base}.{index}.{value_name}")
            index += 1
        return mapping
    raw = form.get(prefix)
    if raw is None:
        raise ShapeError(f"{prefix}: expected a value")
    try:
        if kind in ("integer", "long"):
            return int(raw)
        if kind in ("float", "double"):
            return float(raw)
    except ValueError:
        raise ShapeError(f"{prefix}: {raw!r} is not a {kind}") from None
    if kind == "boolean":
        if raw not in ("true", "false"):
            raise ShapeError(f"{prefix}: {raw!r} is not true or false")
        return raw == "true"
    if kind == "blob":
        try:
            return base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise ShapeError(f"{prefix}: not valid base64") from None
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
    return f"<{tag}>{escape(text)}</{tag}>"
