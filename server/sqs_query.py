"""SQS's legacy query protocol (older SDKs): `Action=SendMessage&...` in, XML out.

botocore's current SQS model is AWS JSON 1.0 and no longer carries the query
protocol's wire names, so the renames below follow the SQS API reference's
query examples (API version 2012-11-05). A form request is turned into the
JSON request the same handlers take (server/sqs.py), checked against the
model's input shape, and the handler's result is written as the XML the
query API answers:

| JSON member | query form (in) | XML (out) |
| --- | --- | --- |
| Attributes (map) | Attribute.N.Name / .Value | <Attribute><Name/><Value/></Attribute>... |
| Tags / tags (map) | Tag.N.Key / Tag.N.Value | <Tag><Key/><Value/></Tag>... |
| MessageAttributes | MessageAttribute.N.Name / .Value.* | <MessageAttribute><Name/><Value>... |
| AttributeNames and other lists | AttributeName.N, TagKey.N, ActionName.N, ... | |
| Entries (batches) | SendMessageBatchRequestEntry.N.Id, ... | <SendMessageBatchResultEntry>... |
| QueueUrls, Messages, Failed | | <QueueUrl>, <Message>, <BatchResultErrorEntry> |

A request may name its queue by posting to the queue URL's path instead of
a QueueUrl field, as the query API allows. Errors are XML ErrorResponses
whose Code is SQS's legacy code (AWS.SimpleQueueService.NonExistentQueue).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import tidelog
from tidelog.server import model, sqs
from tidelog.server.context import Context, WouldWait
from tidelog.server.errors import AwsError, from_library_sqs, sqs_error, sqs_invalid
from tidelog.server.xml_text import xml_escape

log = logging.getLogger("tidelog.server")

NAMESPACE = "http://queue.amazonaws.com/doc/2012-11-05/"
VERSION = "2012-11-05"

# Query list parameter (AttributeName.1, ...) -> JSON member.
_LISTS = {
    "AttributeName": "AttributeNames",
    "MessageAttributeName": "MessageAttributeNames",
    "MessageSystemAttributeName": "MessageSystemAttributeNames",
    "TagKey": "TagKeys",
    "AWSAccountId": "AWSAccountIds",
    "ActionName": "Actions",
}
# Query map parameter -> (JSON member, key field, value field).
_MAPS = {
    "Attribute": ("Attributes", "Name", "Value"),
    "Tag": ("Tags", "Key", "Value"),
    "MessageAttribute": ("MessageAttributes", "Name", "Value"),
    "MessageSystemAttribute": ("MessageSystemAttributes", "Name", "Value"),
}
# JSON result member -> (XML element, key field, value field) for maps.
_RESULT_MAPS = {
    "Attributes": ("Attribute", "Name", "Value"),
    "Tags": ("Tag", "Key", "Value"),
    "MessageAttributes": ("MessageAttribute", "Name", "Value"),
}
_RESULT_LISTS = {
    "QueueUrls": "QueueUrl",
    "queueUrls": "QueueUrl",
    "Messages": "Message",
    "Failed": "BatchResultErrorEntry",
    "Results": "ListMessageMoveTasksResultEntry",
}
_INDEX = re.compile(r"[1-9][0-9]{0,4}")
_QUEUE_PATH = re.compile(r"/[0-9]{12}/[A-Za-z0-9_.-]{1,80}/?")


def is_sqs(form: Mapping[str, str]) -> bool:
    """Whether a query request is for SQS (its Version), not SNS."""
    return form.get("Version") == VERSION


def _tree(form: Mapping[str, str]) -> dict[str, Any]:
    """Dotted form fields as nested dicts: {"Attribute": {"1": {"Name": ...}}}."""
    root: dict[str, Any] = {}
    for key, value in form.items():
        if key in ("Action", "Version"):
            continue
        node = root
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise sqs_error("InvalidParameterValue", f"{key}: conflicts with another field")
            node = child
        if isinstance(node.get(parts[-1]), dict):
            raise sqs_error("InvalidParameterValue", f"{key}: conflicts with another field")
        node[parts[-1]] = value
    return root


def _numbered(node: Any, where: str) -> list[Any]:
    if not isinstance(node, dict) or not all(_INDEX.fullmatch(k) for k in node):
        raise sqs_error("InvalidParameterValue", f"{where}: expected {where}.1, {where}.2, ...")
    return [node[k] for k in sorted(node, key=int)]


def _request(tree: Mapping[str, Any], shape: Any) -> dict[str, Any]:
    """The JSON request a query form stands for, typed by the model's shape."""
    if not isinstance(tree, dict):
        raise sqs_error("InvalidParameterValue", f"expected fields, got {str(tree)[:40]!r}")
    members = shape.members if shape is not None else {}
    out: dict[str, Any] = {}
    for key, node in tree.items():
        if key in _LISTS:
            out[_LISTS[key]] = _numbered(node, key)
        elif key in _MAPS:
            member, key_field, value_field = _MAPS[key]
            if member not in members and member.lower() in members:
                member = member.lower()  # CreateQueue's tags
            entries = _numbered(node, key)
            if not all(isinstance(e, dict) and key_field in e for e in entries):
                raise sqs_error("InvalidParameterValue", f"{key}: each entry needs {key_field}")
            out[member] = {e[key_field]: e.get(value_field, "") for e in entries}
        elif key.endswith("BatchRequestEntry"):
            entry_shape = members["Entries"].member if "Entries" in members else None
            out["Entries"] = [_request(e, entry_shape) for e in _numbered(node, key)]
        else:
            out[key] = node
    typed: dict[str, Any] = _typed(shape, out)
    return typed


def _typed(shape: Any, value: Any) -> Any:
    """Form strings converted to the model's integers and booleans."""
    if shape is None:
        return value
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        return {
            k: _typed(shape.members[k], v) if k in shape.members else v for k, v in value.items()
        }
    if kind == "list" and isinstance(value, list):
        return [_typed(shape.member, v) for v in value]
    if kind == "map" and isinstance(value, dict):
        return {k: _typed(shape.value, v) for k, v in value.items()}
    if isinstance(value, str):
        if kind in ("integer", "long", "float", "double"):
            # The JSON path's checks (model.check_json) run on the result: this
            # only turns the text into a number, as strictly as JSON's parser.
            try:
                return model.parse_number(kind, value, shape.name)
            except model.ShapeError as exc:
                raise sqs_error("InvalidParameterValue", str(exc)) from None
        if kind == "boolean":
            if value.lower() not in ("true", "false"):
                raise sqs_error("InvalidParameterValue", f"{value!r} is not true or false")
            return value.lower() == "true"
    return value


def _xml(result: Mapping[str, Any], operation: str) -> str:
    parts: list[str] = []
    for key, value in result.items():
        if value is None:
            continue
        if key in _RESULT_MAPS and isinstance(value, dict):
            tag, key_field, value_field = _RESULT_MAPS[key]
            for name, item in value.items():
                inner = _xml(item, operation) if isinstance(item, dict) else xml_escape(str(item))
                parts.append(
                    f"<{tag}><{key_field}>{xml_escape(name)}</{key_field}>"
                    f"<{value_field}>{inner}</{value_field}></{tag}>"
                )
        elif isinstance(value, list):
            tag = _RESULT_LISTS.get(key, f"{operation}ResultEntry")
            for item in value:
                inner = _xml(item, operation) if isinstance(item, dict) else xml_escape(str(item))
                parts.append(f"<{tag}>{inner}</{tag}>")
        elif isinstance(value, dict):
            parts.append(f"<{key}>{_xml(value, operation)}</{key}>")
        elif isinstance(value, bool):
            parts.append(f"<{key}>{'true' if value else 'false'}</{key}>")
        else:
            parts.append(f"<{key}>{xml_escape(str(value))}</{key}>")
    return "".join(parts)


def error_xml(error: AwsError, request_id: str) -> str:
    """An SQS query ErrorResponse; Code is the legacy code where SQS has one."""
    kind = "Sender" if error.sender_fault else "Receiver"
    code = error.query_code or error.code
    return (
        f'<ErrorResponse xmlns="{NAMESPACE}"><Error><Type>{kind}</Type>'
        f"<Code>{xml_escape(code)}</Code><Message>{xml_escape(error.message)}</Message><Detail/>"
        f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>"
    )


def call(ctx: Context, form: Mapping[str, str], path: str, request_id: str) -> tuple[int, str]:
    """One query request: its HTTP status and XML body."""
    action = form.get("Action", "")
    try:
        handler = sqs.HANDLERS.get(action)
        op_model = model.operation("sqs", action)
        if handler is None or op_model is None:
            raise AwsError("InvalidAction", f"The action {action!r} is not valid for this endpoint")
        shape = op_model.input_shape
        request = _request(_tree(form), shape)
        if (
            "QueueUrl" not in request
            and shape is not None
            and "QueueUrl" in shape.members
            and _QUEUE_PATH.fullmatch(path)
        ):
            request["QueueUrl"] = ctx.base_url + path.rstrip("/")
        try:
            model.check_json(shape, request)
        except model.ShapeError as exc:
            raise sqs_invalid(exc) from None
        result = handler(ctx, request)
    except AwsError as error:
        return error.status, error_xml(error, request_id)
    except tidelog.Error as exc:
        mapped = from_library_sqs(exc)
        return mapped.status, error_xml(mapped, request_id)
    except WouldWait:
        raise  # a long poll: App waits on the event loop and calls again
    except Exception as exc:  # a bug here must answer 500, not drop the connection
        log.exception("sqs query %s failed", action)
        failure = AwsError("InternalError", repr(exc), 500, sender_fault=False)
        return 500, error_xml(failure, request_id)
    wrapper = (
        f"<{action}Result>{_xml(result, action)}</{action}Result>"
        if op_model.output_shape is not None
        else ""
    )
    return 200, (
        f'<{action}Response xmlns="{NAMESPACE}">{wrapper}'
        f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata>"
        f"</{action}Response>"
    )


__all__ = ["NAMESPACE", "VERSION", "call", "error_xml", "is_sqs"]
