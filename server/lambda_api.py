"""Lambda's REST-JSON API for functions and event source mappings, over tidelog.Triggers.

Routes follow the `requestUri` of each operation in botocore's Lambda model
(POST /2015-03-31/functions, GET /2015-03-31/event-source-mappings/{UUID},
...). URI, query-string and header members are merged into the request
before it is checked against the model, so a missing or mistyped member is
the same InvalidParameterValueException AWS answers. Errors carry their
code in `x-amzn-ErrorType` and a {"Type", "message"} body, as Lambda's.

Served: CreateFunction (Code.ZipFile; or S3Bucket "hot-reload" with S3Key a
local directory, used in place and reloaded when its files change, as
LocalStack offers; or S3Bucket/S3Key of an object on this endpoint's S3),
GetFunction, GetFunctionConfiguration, ListFunctions, UpdateFunctionCode,
UpdateFunctionConfiguration, DeleteFunction, Invoke (RequestResponse,
Event, DryRun; LogType Tail), and Create/Get/List/Update/DeleteEventSourceMapping.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote

import tidelog
from tidelog import trigger_pool
from tidelog.server import model
from tidelog.server.context import ACCOUNT_ID, Context
from tidelog.server.errors import AwsError
from tidelog.trigger_runner import pools, read_stats
from tidelog.triggers import Function, Trigger, Triggers

SYNC_PAYLOAD_BYTES_MAX = 6 * 1024 * 1024
ASYNC_PAYLOAD_BYTES_MAX = 1024 * 1024
LIST_MAX = 50
HOT_RELOAD_BUCKET = "hot-reload"

Handler = Callable[[Context, dict[str, Any]], "Response"]


class Response:
    """A status, extra headers and a body (JSON, or raw bytes for Invoke)."""

    def __init__(
        self, status: int, payload: Any = None, *, raw: bytes | None = None, headers: Any = ()
    ) -> None:
        self.status = status
        self.body = raw if raw is not None else b"" if payload is None else _json(payload)
        self.headers: list[tuple[bytes, bytes]] = list(headers)


def _json(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def error(code: str, message: str, status: int = 400) -> AwsError:
    return AwsError(code, message, status)


def _invalid(message: str) -> AwsError:
    return AwsError("InvalidParameterValueException", message)


def from_library(exc: tidelog.Error) -> AwsError:
    if isinstance(exc, tidelog.NotFound):
        return error("ResourceNotFoundException", str(exc), 404)
    if isinstance(exc, tidelog.AlreadyExists):
        return error("ResourceConflictException", str(exc), 409)
    if isinstance(exc, tidelog.InvalidArgument):
        return error("InvalidParameterValueException", str(exc))
    return AwsError("ServiceException", str(exc), 500, sender_fault=False)


def error_response(exc: AwsError) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    body = _json({"Type": "User" if exc.sender_fault else "Service", "message": exc.message})
    headers = [(b"x-amzn-errortype", exc.code.encode()), (b"content-type", b"application/json")]
    return exc.status, headers, body


# -- shapes -------------------------------------------------------------------------------------


def _stamp(ms: int) -> str:
    """Lambda's LastModified text: 2019-08-14T22:26:11.234+0000."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}+0000"


def function_configuration(function: Function) -> dict[str, Any]:
    out: dict[str, Any] = {
        "FunctionName": function.name,
        "FunctionArn": function.arn,
        "Runtime": function.runtime,
        "Role": f"arn:aws:iam::{ACCOUNT_ID}:role/lambda-role",
        "Handler": function.handler,
        "CodeSize": function.code_size,
        "Description": function.description,
        "Timeout": function.timeout,
        "MemorySize": function.memory_size,
        "LastModified": _stamp(function.last_modified_ms),
        "CodeSha256": function.code_sha256,
        "Version": "$LATEST",
        "Environment": {"Variables": dict(function.environment)},
        "TracingConfig": {"Mode": "PassThrough"},
        "RevisionId": function.revision_id,
        "State": "Active",
        "LastUpdateStatus": "Successful",
        "PackageType": "Zip",
        "Architectures": ["x86_64"],
        "EphemeralStorage": {"Size": 512},
    }
    if function.dead_letter is not None:
        out["DeadLetterConfig"] = {
            "TargetArn": f"arn:aws:sqs:us-east-1:{ACCOUNT_ID}:{function.dead_letter}"
        }
    return out


def mapping_configuration(
    ctx: Context, trigger: Trigger, state: str | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "UUID": trigger.uuid,
        "BatchSize": trigger.batch_size,
        "MaximumBatchingWindowInSeconds": trigger.batching_window,
        "EventSourceArn": trigger.source_arn,
        "FunctionArn": f"arn:aws:lambda:us-east-1:{ACCOUNT_ID}:function:{trigger.function}",
        "LastModified": trigger.last_modified_ms / 1000,
        "State": state or trigger.state,
        "StateTransitionReason": "USER_INITIATED",
        "FunctionResponseTypes": (
            ["ReportBatchItemFailures"] if trigger.report_batch_item_failures else []
        ),
        "EventSourceMappingArn": (
            f"arn:aws:lambda:us-east-1:{ACCOUNT_ID}:event-source-mapping:{trigger.uuid}"
        ),
    }
    stats = read_stats(ctx.store, trigger.uuid)
    out["LastProcessingResult"] = stats.last_processing_result if stats else "No records processed"
    if trigger.source_kind == "stream":
        out["StartingPosition"] = trigger.starting_position
        if trigger.starting_position_timestamp is not None:
            out["StartingPositionTimestamp"] = trigger.starting_position_timestamp
        out["ParallelizationFactor"] = trigger.parallelization_factor
        out["MaximumRecordAgeInSeconds"] = trigger.maximum_record_age
        out["BisectBatchOnFunctionError"] = trigger.bisect_on_error
        out["MaximumRetryAttempts"] = trigger.maximum_retry_attempts
        destination: dict[str, Any] = {}
        if trigger.on_failure is not None:
            kind, name = trigger.on_failure
            arn = ctx.queue_arn(name) if kind == "queue" else ctx.topic_arn(name)
            destination = {"Destination": arn}
        out["DestinationConfig"] = {"OnFailure": destination}
    if trigger.filter_criteria:
        out["FilterCriteria"] = trigger.filter_criteria
    if trigger.maximum_concurrency is not None:
        out["ScalingConfig"] = {"MaximumConcurrency": trigger.maximum_concurrency}
    return out


def _source(arn: object) -> tuple[str, str]:
    if not isinstance(arn, str):
        raise error("InvalidParameterValueException", "EventSourceArn: an ARN")
    parts = arn.split(":", 5)
    if len(parts) == 6 and parts[0] == "arn":
        service, rest = parts[2], parts[5]
        if service == "sqs" and rest:
            return "queue", rest
        if service == "kinesis" and rest.startswith("stream/"):
            return "stream", rest[len("stream/") :]
        if service == "sns" and rest:
            return "topic", rest
    raise error(
        "InvalidParameterValueException",
        f"Unsupported event source type or ARN: {arn} (SQS queues and Kinesis streams)",
    )


def _destination(config: Mapping[str, Any] | None) -> tuple[str, str] | None:
    if not config:
        return None
    arn = (config.get("OnFailure") or {}).get("Destination")
    if not arn:
        return None
    kind, name = _source(arn)
    if kind == "stream":
        raise error(
            "InvalidParameterValueException", "OnFailure destination: an SQS queue or SNS topic"
        )
    return kind, name


# Members of the mapping calls that change what a mapping does and that tidelog does
# not implement: refused rather than ignored (Kafka, MQ and DocumentDB sources,
# tumbling windows, provisioned pollers).
UNSUPPORTED_MAPPING_MEMBERS = (
    "TumblingWindowInSeconds",
    "Topics",
    "Queues",
    "SourceAccessConfigurations",
    "SelfManagedEventSource",
    "AmazonManagedKafkaEventSourceConfig",
    "SelfManagedKafkaEventSourceConfig",
    "DocumentDBEventSourceConfig",
    "ProvisionedPollerConfig",
)
UNSUPPORTED_FUNCTION_MEMBERS = (
    "Layers",
    "FileSystemConfigs",
    "ImageConfig",
    "CodeSigningConfigArn",
)


def _refuse_unsupported(request: Mapping[str, Any], members: tuple[str, ...]) -> None:
    for member in members:
        if request.get(member) not in (None, 0, [], {}):
            raise _invalid(f"{member}: not supported by tidelog (docs/triggers.md)")


def _mapping_settings(request: Mapping[str, Any]) -> dict[str, Any]:
    _refuse_unsupported(request, UNSUPPORTED_MAPPING_MEMBERS)
    settings: dict[str, Any] = {}
    names = {
        "BatchSize": "batch_size",
        "MaximumBatchingWindowInSeconds": "batching_window",
        "MaximumRetryAttempts": "maximum_retry_attempts",
        "MaximumRecordAgeInSeconds": "maximum_record_age",
        "BisectBatchOnFunctionError": "bisect_on_error",
        "ParallelizationFactor": "parallelization_factor",
        "FilterCriteria": "filter_criteria",
        "Enabled": "enabled",
    }
    for wire, name in names.items():
        if wire in request:
            settings[name] = request[wire]
    if "ScalingConfig" in request:
        settings["maximum_concurrency"] = (request["ScalingConfig"] or {}).get("MaximumConcurrency")
    if "FunctionResponseTypes" in request:
        types = request["FunctionResponseTypes"] or []
        if any(t != "ReportBatchItemFailures" for t in types):
            raise error(
                "InvalidParameterValueException", "FunctionResponseTypes: ReportBatchItemFailures"
            )
        settings["report_batch_item_failures"] = bool(types)
    if "DestinationConfig" in request:
        settings["on_failure"] = _destination(request["DestinationConfig"])
    return settings


# -- handlers -----------------------------------------------------------------------------------


def _code(ctx: Context, code: Mapping[str, Any]) -> dict[str, Any]:
    if "ZipFile" in code:
        return {"zip_file": base64.b64decode(code["ZipFile"])}
    bucket, key = code.get("S3Bucket"), code.get("S3Key")
    if bucket == HOT_RELOAD_BUCKET and key:
        return {"code_dir": key}
    if bucket and key:
        return {"zip_file": ctx.store.objects.get(bucket, key)}
    raise error("InvalidParameterValueException", "Code: give ZipFile, or S3Bucket and S3Key")


def _environment(request: Mapping[str, Any]) -> dict[str, str] | None:
    environment = request.get("Environment")
    if environment is None:
        return None
    return dict(environment.get("Variables") or {})


def _dead_letter(request: Mapping[str, Any]) -> str | None:
    target = (request.get("DeadLetterConfig") or {}).get("TargetArn")
    if not target:
        return None
    kind, name = _source(target)
    if kind != "queue":
        raise error("InvalidParameterValueException", "DeadLetterConfig.TargetArn: an SQS queue")
    return name


def create_function(ctx: Context, request: dict[str, Any]) -> Response:
    if request.get("PackageType", "Zip") != "Zip":
        raise error("InvalidParameterValueException", "PackageType: only Zip functions run here")
    if "Handler" not in request:
        raise error("InvalidParameterValueException", "Handler: required for Zip functions")
    _refuse_unsupported(request, UNSUPPORTED_FUNCTION_MEMBERS)
    options: dict[str, Any] = {"runtime": request.get("Runtime", "python3.12")}
    for wire, name in (
        ("Timeout", "timeout"),
        ("MemorySize", "memory_size"),
        ("Description", "description"),
    ):
        if wire in request:
            options[name] = request[wire]
    if (environment := _environment(request)) is not None:
        options["environment"] = environment
    if (dead_letter := _dead_letter(request)) is not None:
        options["dead_letter"] = dead_letter
    function = Triggers(ctx.store).create_function(
        request["FunctionName"], request["Handler"], **_code(ctx, request["Code"]), **options
    )
    return Response(201, function_configuration(function))


def get_function(ctx: Context, request: dict[str, Any]) -> Response:
    _latest_only(request)
    function = Triggers(ctx.store).function(request["FunctionName"])
    # No Code.Location: the zip is unpacked, not kept, so there is nothing to download.
    code = {"RepositoryType": "S3"}
    configuration = function_configuration(function)
    return Response(200, {"Configuration": configuration, "Code": code, "Tags": {}})


def get_function_configuration(ctx: Context, request: dict[str, Any]) -> Response:
    return Response(
        200, function_configuration(Triggers(ctx.store).function(request["FunctionName"]))
    )


def _page(items: list[Any], request: Mapping[str, Any]) -> tuple[list[Any], str | None]:
    marker = request.get("Marker")
    start = 0
    if marker:
        if not str(marker).isdigit():
            raise error("InvalidParameterValueException", "Marker: not one this endpoint gave")
        start = int(marker)
    size = request.get("MaxItems") or LIST_MAX
    page = items[start : start + size]
    end = start + size
    return page, (str(end) if end < len(items) else None)


def list_functions(ctx: Context, request: dict[str, Any]) -> Response:
    every = [function_configuration(f) for f in Triggers(ctx.store).functions()]
    page, marker = _page(every, request)
    out: dict[str, Any] = {"Functions": page}
    if marker:
        out["NextMarker"] = marker
    return Response(200, out)


def update_function_code(ctx: Context, request: dict[str, Any]) -> Response:
    code: dict[str, Any] = {k: request[k] for k in ("ZipFile", "S3Bucket", "S3Key") if k in request}
    function = Triggers(ctx.store).update_function_code(request["FunctionName"], **_code(ctx, code))
    return Response(200, function_configuration(function))


def update_function_configuration(ctx: Context, request: dict[str, Any]) -> Response:
    _refuse_unsupported(request, UNSUPPORTED_FUNCTION_MEMBERS)
    changes: dict[str, Any] = {}
    for wire, name in (
        ("Handler", "handler"),
        ("Runtime", "runtime"),
        ("Timeout", "timeout"),
        ("MemorySize", "memory_size"),
        ("Description", "description"),
    ):
        if wire in request:
            changes[name] = request[wire]
    if (environment := _environment(request)) is not None:
        changes["environment"] = environment
    if "DeadLetterConfig" in request:
        changes["dead_letter"] = _dead_letter(request)
    function = Triggers(ctx.store).update_function_configuration(request["FunctionName"], **changes)
    return Response(200, function_configuration(function))


def delete_function(ctx: Context, request: dict[str, Any]) -> Response:
    Triggers(ctx.store).delete_function(request["FunctionName"])
    return Response(204)


def _latest_only(request: Mapping[str, Any]) -> None:
    """Functions have one version here, $LATEST: another qualifier names nothing."""
    qualifier = request.get("Qualifier")
    if qualifier not in (None, "$LATEST"):
        name = request["FunctionName"]
        raise error(
            "ResourceNotFoundException",
            f"Function not found: {name}:{qualifier} ($LATEST only)",
            404,
        )


def invoke(ctx: Context, request: dict[str, Any]) -> Response:
    _latest_only(request)
    triggers = Triggers(ctx.store)
    function = triggers.function(request["FunctionName"])
    kind = request.get("InvocationType") or "RequestResponse"
    payload: bytes = request.get("Payload") or b""
    limit = ASYNC_PAYLOAD_BYTES_MAX if kind == "Event" else SYNC_PAYLOAD_BYTES_MAX
    if len(payload) > limit:
        raise error(
            "RequestTooLargeException",
            f"Request must be smaller than {limit} bytes for the {kind} invocation type",
            413,
        )
    try:
        event = json.loads(payload) if payload.strip() else {}
    except ValueError:
        raise error(
            "InvalidRequestContentException", "Could not parse request body into json"
        ) from None
    version = [(b"x-amz-executed-version", b"$LATEST")]
    if kind == "DryRun":
        return Response(204, headers=version)
    if kind == "Event":
        request_id = triggers.invoke_async(function.name, event)
        return Response(202, headers=[(b"x-amzn-requestid", request_id.encode())])
    if kind != "RequestResponse":
        raise error(
            "InvalidParameterValueException",
            f"InvocationType: {kind!r} is not RequestResponse, Event or DryRun",
        )
    invocation = pools(ctx.store).invoke(function, event)
    headers = list(version)
    if invocation.ok:
        body = _json(invocation.result)
    else:
        headers.append((b"x-amz-function-error", b"Unhandled"))
        failure = dict(invocation.error or {})
        failure.setdefault("requestId", invocation.request_id)
        body = _json(failure)
    if request.get("LogType") == "Tail":
        tail = trigger_pool.read_log(
            triggers.log_path(function.name), invocation.log_start, invocation.log_end
        )
        headers.append((b"x-amz-log-result", base64.b64encode(tail.encode()).decode().encode()))
    headers.append((b"x-amzn-requestid", invocation.request_id.encode()))
    return Response(200, raw=body, headers=headers)


def create_event_source_mapping(ctx: Context, request: dict[str, Any]) -> Response:
    kind, name = _source(request.get("EventSourceArn"))
    if kind == "topic":  # as on AWS: a topic invokes a function through a subscription
        raise _invalid("Unsupported event source type: subscribe with SNS's protocol lambda")
    settings = _mapping_settings(request)
    if "StartingPosition" in request:
        settings["starting_position"] = request["StartingPosition"]
    if "StartingPositionTimestamp" in request:
        settings["starting_position_timestamp"] = request["StartingPositionTimestamp"]
    arn = request.get("EventSourceArn")
    region = arn.split(":")[3] if isinstance(arn, str) and arn.count(":") >= 5 else ctx.region
    trigger = Triggers(ctx.store).create_trigger(
        request["FunctionName"], (kind, name), region=region or ctx.region, **settings
    )
    return Response(202, mapping_configuration(ctx, trigger, "Creating"))


def get_event_source_mapping(ctx: Context, request: dict[str, Any]) -> Response:
    return Response(200, mapping_configuration(ctx, Triggers(ctx.store).trigger(request["UUID"])))


def list_event_source_mappings(ctx: Context, request: dict[str, Any]) -> Response:
    triggers = Triggers(ctx.store)
    source = _source(request["EventSourceArn"]) if request.get("EventSourceArn") else None
    function = request.get("FunctionName")
    found = [
        t
        for t in triggers.triggers(function=function, source=source)
        if t.subscription is None  # a topic's lambda subscriptions are SNS's, not mappings
    ]
    page, marker = _page([mapping_configuration(ctx, t) for t in found], request)
    out: dict[str, Any] = {"EventSourceMappings": page}
    if marker:
        out["NextMarker"] = marker
    return Response(200, out)


def update_event_source_mapping(ctx: Context, request: dict[str, Any]) -> Response:
    changes = _mapping_settings(request)
    if "FunctionName" in request:
        changes["function"] = request["FunctionName"]
    triggers = Triggers(ctx.store)
    trigger = triggers.update_trigger(request["UUID"], **changes)
    return Response(202, mapping_configuration(ctx, trigger, "Updating"))


def delete_event_source_mapping(ctx: Context, request: dict[str, Any]) -> Response:
    trigger = Triggers(ctx.store).delete_trigger(request["UUID"])
    return Response(202, mapping_configuration(ctx, trigger, "Deleting"))


HANDLERS: dict[str, Handler] = {
    "CreateFunction": create_function,
    "GetFunction": get_function,
    "GetFunctionConfiguration": get_function_configuration,
    "ListFunctions": list_functions,
    "UpdateFunctionCode": update_function_code,
    "UpdateFunctionConfiguration": update_function_configuration,
    "DeleteFunction": delete_function,
    "Invoke": invoke,
    "CreateEventSourceMapping": create_event_source_mapping,
    "GetEventSourceMapping": get_event_source_mapping,
    "ListEventSourceMappings": list_event_source_mappings,
    "UpdateEventSourceMapping": update_event_source_mapping,
    "DeleteEventSourceMapping": delete_event_source_mapping,
}


# -- routing ------------------------------------------------------------------------------------


def _routes() -> list[tuple[str, re.Pattern[str], str]]:
    service = model.service_model("lambda")
    out = []
    for name in service.operation_names:
        http = service.operation_model(name).http
        uri = http["requestUri"].split("?", 1)[0].rstrip("/") or "/"
        pattern = re.sub(r"\{([A-Za-z0-9]+)\+?\}", r"(?P<\1>[^/]+)", uri)
        out.append((http["method"], re.compile(pattern + "/?"), name))
    return out


_ROUTES: list[tuple[str, re.Pattern[str], str]] | None = None


def route(method: str, path: str) -> tuple[str, dict[str, str]] | None:
    """(operation, URI members) of a Lambda request, or None if no operation has that shape."""
    global _ROUTES
    if _ROUTES is None:
        _ROUTES = _routes()
    for op_method, pattern, name in _ROUTES:
        if op_method == method:
            match = pattern.fullmatch(path)
            if match:
                return name, {k: unquote(v) for k, v in match.groupdict().items()}
    return None


def claims(method: str, path: str, service: str | None) -> bool:
    """Whether a request is Lambda's: signed for "lambda", or unsigned on a Lambda path."""
    if service is not None:
        return service == "lambda"
    return (
        path.startswith(("/2015-03-31/", "/2014-11-13/", "/2017-03-31/"))
        and route(method, path) is not None
    )


def call(
    ctx: Context, method: str, path: str, query: str, headers: Mapping[bytes, bytes], body: bytes
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Answer one Lambda request: (status, headers, body). Never raises."""
    try:
        response = _call(ctx, method, path, query, headers, body)
    except AwsError as exc:
        return error_response(exc)
    except tidelog.Error as exc:
        return error_response(from_library(exc))
    except Exception as exc:  # a bug must answer 500, not drop the connection
        import logging

        logging.getLogger("tidelog.server").exception("lambda %s %s failed", method, path)
        return error_response(AwsError("ServiceException", repr(exc), 500, sender_fault=False))
    out_headers = [(b"content-type", b"application/json"), *response.headers]
    return response.status, out_headers, response.body


def _call(
    ctx: Context, method: str, path: str, query: str, headers: Mapping[bytes, bytes], body: bytes
) -> Response:
    found = route(method, path)
    if found is None or found[0] not in HANDLERS:
        raise error(
            "UnknownOperationException", f"{method} {path}: not an operation served here", 404
        )
    operation, members = found
    op_model = model.operation("lambda", operation)
    assert op_model is not None
    shape = op_model.input_shape
    request: dict[str, Any] = {}
    payload_member = shape.serialization.get("payload") if shape is not None else None
    if payload_member:
        request[payload_member] = body  # Invoke: the body is the event, as bytes
    elif body:
        try:
            parsed = json.loads(body)
        except ValueError:
            raise error(
                "InvalidRequestContentException", "Could not parse request body into json"
            ) from None
        if not isinstance(parsed, dict):
            raise error("InvalidRequestContentException", "The request body must be a JSON object")
        request.update(parsed)
    query_values = dict(parse_qsl(query, keep_blank_values=True))
    lowered = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in headers.items()}
    if shape is not None:
        for name, member in shape.members.items():
            location = member.serialization.get("location")
            wire = member.serialization.get("name", name)
            if location == "uri" and name in members:
                request[name] = members[name]
            elif location == "querystring" and wire in query_values:
                value: Any = query_values[wire]
                if member.type_name == "integer":
                    if not value.lstrip("-").isdigit():
                        raise error("InvalidParameterValueException", f"{wire}: not an integer")
                    value = int(value)
                request[name] = value
            elif location == "header" and wire.lower() in lowered:
                request[name] = lowered[wire.lower()]
    checked = {k: v for k, v in request.items() if k != payload_member}
    try:
        model.check_json(shape, checked)
    except model.ShapeError as exc:
        raise error("InvalidParameterValueException", str(exc)) from None
    return HANDLERS[operation](ctx, request)
