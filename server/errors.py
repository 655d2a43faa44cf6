"""AWS error shapes, and the library's errors mapped onto them per service.

JSON protocols answer `{"__type": ..., "message": ...}`; SQS (a JSON service
that was a query service first) adds the `x-amzn-query-error: CODE;Sender`
header, from which botocore takes the legacy code users compare against
(`AWS.SimpleQueueService.NonExistentQueue`) while it still raises the modeled
exception class (`QueueDoesNotExist`). Query protocols (SNS) answer an XML
`ErrorResponse`.
"""

from __future__ import annotations

import re

from tidelog import AlreadyExists, Error, ExpiredIterator, InvalidArgument, NotFound, StaleReceipt


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


# The SQS error shapes of botocore's model, with the legacy query codes AWS
# still sends in x-amzn-query-error (from the SQS API reference's error lists).
SQS_QUERY_CODES = {
    "QueueDoesNotExist": "AWS.SimpleQueueService.NonExistentQueue",
    "QueueNameExists": "QueueAlreadyExists",
    "QueueDeletedRecently": "AWS.SimpleQueueService.QueueDeletedRecently",
    "ReceiptHandleIsInvalid": "ReceiptHandleIsInvalid",
    "MessageNotInflight": "AWS.SimpleQueueService.MessageNotInflight",
    "BatchEntryIdsNotDistinct": "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
    "BatchRequestTooLong": "AWS.SimpleQueueService.BatchRequestTooLong",
    "EmptyBatchRequest": "AWS.SimpleQueueService.EmptyBatchRequest",
    "InvalidBatchEntryId": "AWS.SimpleQueueService.InvalidBatchEntryId",
    "TooManyEntriesInBatchRequest": "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
    "PurgeQueueInProgress": "AWS.SimpleQueueService.PurgeQueueInProgress",
    "UnsupportedOperation": "AWS.SimpleQueueService.UnsupportedOperation",
    "InvalidAttributeName": "InvalidAttributeName",
    "InvalidAttributeValue": "InvalidAttributeValue",
    "InvalidMessageContents": "InvalidMessageContents",
    "ResourceNotFoundException": "ResourceNotFoundException",
    "InvalidParameterValue": "InvalidParameterValue",
    "MissingParameter": "MissingParameter",
    "InvalidAddress": "InvalidAddress",
}

# The library names SQS's code in parentheses where one applies:
# "send_many: no entries (EmptyBatchRequest)".
_CODE_IN_MESSAGE = re.compile(r"\(([A-Za-z.]+)\)")


def sqs_error(code: str, message: str, status: int = 400) -> AwsError:
    return AwsError(code, message, status, query_code=SQS_QUERY_CODES.get(code, code))


def from_library_sqs(exc: Error) -> AwsError:
    """A library error as SQS reports it."""
    named = _CODE_IN_MESSAGE.findall(str(exc))
    for code in reversed(named):
        if code == "AWS.SimpleQueueService.NonExistentQueue":
            return sqs_error("QueueDoesNotExist", str(exc))
        if code in SQS_QUERY_CODES:
            return sqs_error(code, str(exc))
    if isinstance(exc, NotFound):
        return sqs_error("QueueDoesNotExist", str(exc))
    if isinstance(exc, AlreadyExists):
        return sqs_error("QueueNameExists", str(exc))
    if isinstance(exc, StaleReceipt):
        return sqs_error("ReceiptHandleIsInvalid", str(exc))
    if isinstance(exc, InvalidArgument):
        return sqs_error("InvalidParameterValue", str(exc))
    return sqs_error("InternalError", str(exc), 500)


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
