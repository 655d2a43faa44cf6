"""AWS error shapes, and the library's errors mapped onto them per service.

JSON protocols answer `{"__type": ..., "message": ...}`; SQS (a JSON service
that was a query service first) adds the `x-amzn-query-error: CODE;Sender`
header, from which botocore takes the legacy code users compare against
(`AWS.SimpleQueueService.NonExistentQueue`) while it still raises the modeled
exception class (`QueueDoesNotExist`). Query protocols (SNS) answer an XML
`ErrorResponse`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tidelog import AlreadyExists, Error, ExpiredIterator, InvalidArgument, NotFound, StaleReceipt

if TYPE_CHECKING:
    from tidelog.server.model import ShapeError


class AwsError(Exception):
    """An error as AWS sends it.

    `code` is the modeled error (the `__type` of JSON protocols, the `Code`
    of XML ones); `query_code` is SQS's legacy code for the header.
    """

    def __init__(
        self,
        code: str,
        message: str,
        status: int = 400,
        *,
        query_code: str | None = None,
        sender_fault: bool = True,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.query_code = query_code
        self.sender_fault = sender_fault


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    """How a service answers one error code.

    `query_code` is SQS's legacy code (the `x-amzn-query-error` header and the
    query protocol's `<Code>`), when it differs from the modeled one.
    `message` is AWS's own text, a `str.format` template whose fields the
    caller names (`sqs_error("MissingParameter", parameter="MessageGroupId")`);
    without it, or without the fields, the error carries the library's text.
    """

    query_code: str | None = None
    status: int = 400
    message: str | None = None


# SQS's characters (the XML 1.0 Char production), as its InvalidMessageContents says them.
SQS_INVALID_CHARACTERS = (
    "Invalid characters found. Valid unicode characters are #x9 | #xA | #xD | "
    "#x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF"
)

# SQS's error codes: the shapes of botocore's model, with the legacy codes and
# statuses from the SQS API reference's error lists, and the texts real SQS
# answers (as recorded against AWS in LocalStack's SQS snapshot tests and
# moto's exceptions). One table, so that a code answers the same everywhere.
SQS_ERRORS: dict[str, ErrorSpec] = {
    "QueueDoesNotExist": ErrorSpec("AWS.SimpleQueueService.NonExistentQueue"),
    "QueueNameExists": ErrorSpec("QueueAlreadyExists"),
    "QueueDeletedRecently": ErrorSpec("AWS.SimpleQueueService.QueueDeletedRecently"),
    "ReceiptHandleIsInvalid": ErrorSpec(
        message='The input receipt handle "{handle}" is not a valid receipt handle.'
    ),
    "MessageNotInflight": ErrorSpec("AWS.SimpleQueueService.MessageNotInflight"),
    "BatchEntryIdsNotDistinct": ErrorSpec("AWS.SimpleQueueService.BatchEntryIdsNotDistinct"),
    "BatchRequestTooLong": ErrorSpec("AWS.SimpleQueueService.BatchRequestTooLong"),
    "EmptyBatchRequest": ErrorSpec("AWS.SimpleQueueService.EmptyBatchRequest"),
    "InvalidBatchEntryId": ErrorSpec("AWS.SimpleQueueService.InvalidBatchEntryId"),
    "TooManyEntriesInBatchRequest": ErrorSpec(
        "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"
    ),
    "PurgeQueueInProgress": ErrorSpec(
        "AWS.SimpleQueueService.PurgeQueueInProgress",
        403,
        "Only one PurgeQueue operation on {queue} is allowed every 60 seconds.",
    ),
    "UnsupportedOperation": ErrorSpec("AWS.SimpleQueueService.UnsupportedOperation"),
    "InvalidAttributeName": ErrorSpec(message="Unknown Attribute {attribute}."),
    "InvalidAttributeValue": ErrorSpec(message="Invalid value for the parameter {parameter}."),
    "InvalidMessageContents": ErrorSpec(message=SQS_INVALID_CHARACTERS),
    "ResourceNotFoundException": ErrorSpec(),
    "InvalidParameterValue": ErrorSpec(
        message="Value {value} for parameter {parameter} is invalid. Reason: {reason}"
    ),
    "MissingParameter": ErrorSpec(message="The request must contain the parameter {parameter}."),
    "InvalidAddress": ErrorSpec(),
}

# The library names SQS's code in parentheses where one applies:
# "send_many: no entries (EmptyBatchRequest)".
_CODE_IN_MESSAGE = re.compile(r"\(([A-Za-z.]+)\)")


def _text(spec: ErrorSpec, fields: Mapping[str, object]) -> str | None:
    """The spec's template filled from `fields`, or None when it has none or lacks one."""
    if spec.message is None:
        return None
    try:
        return spec.message.format(**fields)
    except (KeyError, IndexError):
        return None


def sqs_error(
    code: str, message: str | None = None, status: int | None = None, **fields: object
) -> AwsError:
    """SQS's error `code` (a key of SQS_ERRORS, or any other code as itself).

    With `message`, that text; else AWS's text from the table filled from
    `fields` (which must then name each of its fields).
    """
    spec = SQS_ERRORS.get(code, ErrorSpec())
    if message is None:
        message = _text(spec, fields)
        if message is None:
            raise ValueError(f"sqs_error({code!r}): no message and no table text for {fields}")
    return AwsError(code, message, status or spec.status, query_code=spec.query_code or code)


def sqs_invalid(error: ShapeError) -> AwsError:
    """A request that does not fit SQS's model, as SQS answers it."""
    return sqs_error("MissingParameter" if error.missing else "InvalidParameterValue", str(error))


def from_library_sqs(exc: Error, **fields: object) -> AwsError:
    """A library error as SQS reports it.

    The code is the one the library's message names in parentheses, else
    the error's type's. The text is AWS's where the table has it and
    `fields` fill it (`handle=` for ReceiptHandleIsInvalid, ...), else the
    library's.
    """
    code = None
    for named in reversed(_CODE_IN_MESSAGE.findall(str(exc))):
        if named == "AWS.SimpleQueueService.NonExistentQueue":
            code = "QueueDoesNotExist"
            break
        if named in SQS_ERRORS:
            code = named
            break
    if code is None:
        if isinstance(exc, NotFound):
            code = "QueueDoesNotExist"
        elif isinstance(exc, AlreadyExists):
            code = "QueueNameExists"
        elif isinstance(exc, StaleReceipt):
            code = "ReceiptHandleIsInvalid"
        elif isinstance(exc, InvalidArgument):
            code = "InvalidParameterValue"
        else:
            return sqs_error("InternalError", str(exc), 500)
    text = _text(SQS_ERRORS[code], fields)
    return sqs_error(code, text if text is not None else str(exc))


def from_library_kinesis(exc: Error) -> AwsError:
    """A library error as Kinesis reports it."""
    if isinstance(exc, NotFound):
        return AwsError("ResourceNotFoundException", str(exc))
    if isinstance(exc, AlreadyExists):
        return AwsError("ResourceInUseException", str(exc))
    if isinstance(exc, ExpiredIterator):
        return AwsError("ExpiredIteratorException", str(exc))
    if isinstance(exc, InvalidArgument):
        return AwsError("InvalidArgumentException", str(exc))
    return AwsError("InternalFailure", str(exc), 500, sender_fault=False)


@functools.cache
def _sns_codes() -> dict[str, int]:
    """SNS's modeled error codes and their HTTP statuses, from botocore's model."""
    from tidelog.server.model import service_model

    model = service_model("sns")
    codes: dict[str, int] = {}
    for shape in model.error_shapes:
        error = shape.metadata.get("error", {})
        if "code" in error:
            codes[error["code"]] = error.get("httpStatusCode", 400)
    return codes


def from_library_sns(exc: Error) -> AwsError:
    """A library error as SNS reports it."""
    codes = _sns_codes()
    for code in reversed(_CODE_IN_MESSAGE.findall(str(exc))):
        if code in codes:
            return AwsError(code, str(exc), codes[code])
    if isinstance(exc, NotFound):
        return AwsError("NotFound", str(exc), 404)
    if isinstance(exc, AlreadyExists):
        return AwsError("InvalidParameter", str(exc))
    if isinstance(exc, InvalidArgument):
        return AwsError("InvalidParameter", str(exc))
    return AwsError("InternalError", str(exc), 500, sender_fault=False)
