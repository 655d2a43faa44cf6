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


@dataclass(frozen=True, slots=True)
class LibraryText:
    """How one of the library's error texts reads on the wire: `pattern` matches
    the library's message (its named groups become fields) and `key` is the
    entry of the service's table whose text and code answer it. `operations`,
    when given, limits it to those operations."""

    pattern: re.Pattern[str]
    key: str
    operations: frozenset[str] = frozenset()


def _texts(*rows: tuple[str, str] | tuple[str, str, str]) -> tuple[LibraryText, ...]:
    out = []
    for row in rows:
        operations = frozenset(row[2].split()) if len(row) == 3 else frozenset()
        out.append(LibraryText(re.compile(row[0]), row[1], operations))
    return tuple(out)


def _translate(
    texts: tuple[LibraryText, ...],
    table: Mapping[str, ErrorSpec],
    exc: Error,
    fields: Mapping[str, object],
) -> tuple[str, ErrorSpec, str] | None:
    """(code, spec, AWS's text) that `exc`'s text reads as, by the first matching
    row, or None. A table key may carry a `#variant` after the code, for one
    code with several texts."""
    message = str(exc)
    operation = fields.get("operation")
    for row in texts:
        if row.operations and operation not in row.operations:
            continue
        found = row.pattern.search(message)
        if found is None:
            continue
        spec = table[row.key]
        text = _text(spec, {**fields, **found.groupdict()})
        if text is not None:
            return row.key.split("#", 1)[0], spec, text
    return None


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
    "QueueDoesNotExist": ErrorSpec(
        "AWS.SimpleQueueService.NonExistentQueue", message="The specified queue does not exist."
    ),
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
    # One code, several texts: the key's part after "#" names the case.
    "InvalidParameterValue#QueueName": ErrorSpec(
        message="Can only include alphanumeric characters, hyphens, or underscores. "
        "1 to 80 in length"
    ),
    "InvalidParameterValue#MessageSize": ErrorSpec(
        message="One or more parameters are invalid. Reason: Message must be shorter than "
        "{max} bytes."
    ),
    "InvalidParameterValue#AttributeName": ErrorSpec(
        message="The message attribute name '{name}' is invalid. Attribute name can contain "
        "A-Z, a-z, 0-9, underscore (_), hyphen (-), and period (.) characters."
    ),
    "InvalidParameterValue#AttributeType": ErrorSpec(
        message="The message attribute '{name}' has an invalid message attribute type, the set "
        "of supported type prefixes is Binary, Number, and String."
    ),
    "InvalidParameterValue#FifoDelay": ErrorSpec(
        message="Value {request[DelaySeconds]} for parameter DelaySeconds is invalid. Reason: "
        "The request include parameter that is not valid for this queue type."
    ),
    "InvalidParameterValue#Dedup": ErrorSpec(
        message="The queue should either have ContentBasedDeduplication enabled or "
        "MessageDeduplicationId provided explicitly"
    ),
    "InvalidParameterValue#LabelExists": ErrorSpec(
        message="Value {label} for parameter Label is invalid. Reason: Already exists."
    ),
    "InvalidParameterValue#LabelMissing": ErrorSpec(
        message="Value {label} for parameter Label is invalid. Reason: can't find label on "
        "existing policy."
    ),
    "MissingParameter#GroupId": ErrorSpec(
        message="The request must contain the parameter MessageGroupId."
    ),
    "InvalidBatchEntryId#text": ErrorSpec(
        "AWS.SimpleQueueService.InvalidBatchEntryId",
        message="A batch entry id can only contain alphanumeric characters, hyphens and "
        "underscores. It can be at most 80 letters long.",
    ),
    "BatchRequestTooLong#text": ErrorSpec(
        "AWS.SimpleQueueService.BatchRequestTooLong",
        message="Batch requests cannot be longer than {max} bytes. You have sent {total} bytes.",
    ),
    "BatchEntryIdsNotDistinct#text": ErrorSpec(
        "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
        message="Id {entry} repeated.",
    ),
    "MissingParameter#Tags": ErrorSpec(message="The request must contain the parameter Tags."),
    "InvalidParameterValue#TooManyTags": ErrorSpec(
        message="Too many tags added for queue {queue}."
    ),
    "InvalidParameterValue#TagKeys": ErrorSpec(
        message="Tag keys must be between 1 and 128 characters in length."
    ),
    "EmptyBatchRequest#text": ErrorSpec(
        "AWS.SimpleQueueService.EmptyBatchRequest",
        message="There should be at least one {operation}RequestEntry in the request.",
    ),
}

# The library's texts as SQS says them (see LibraryText).
SQS_TEXTS = _texts(
    (r"^queue '[^']*': not found", "QueueDoesNotExist"),
    (r"^queue name ", "InvalidParameterValue#QueueName"),
    (r"\(EmptyBatchRequest\)", "EmptyBatchRequest#text"),
    (r"\(InvalidBatchEntryId\)", "InvalidBatchEntryId#text"),
    (
        r"(?P<total>\d+) bytes in total, over (?P<max>\d+) \(BatchRequestTooLong\)",
        "BatchRequestTooLong#text",
    ),
    (
        r"entry id '(?P<entry>[^']*)' repeated \(BatchEntryIdsNotDistinct\)",
        "BatchEntryIdsNotDistinct#text",
    ),
    (
        r"^message: \d+ bytes is over the queue's max_message_size (?P<max>\d+)",
        "InvalidParameterValue#MessageSize",
    ),
    (
        r"^attribute name (?P<q>['\"])(?P<name>.*)(?P=q): must be 1-256",
        "InvalidParameterValue#AttributeName",
    ),
    (
        r"^attribute (?P<q>['\"])(?P<name>.*)(?P=q): data type .* must be String, Number or Binary",
        "InvalidParameterValue#AttributeType",
    ),
    (r"^delay: FIFO queues take no per-message delay", "InvalidParameterValue#FifoDelay"),
    (r"^dedup_id: give one", "InvalidParameterValue#Dedup"),
    (r"^group_id: FIFO queues need a message group id", "MissingParameter#GroupId"),
    (r"^permission label '(?P<label>.*)': already exists", "InvalidParameterValue#LabelExists"),
    (r"^permission label '(?P<label>.*)': does not exist", "InvalidParameterValue#LabelMissing"),
)

# STS's errors (the STS API reference's lists, AWS's texts). The key is the
# code unless `query_code` names it: one code may have several texts.
STS_ERRORS: dict[str, ErrorSpec] = {
    "ValidationError": ErrorSpec(
        message="1 validation error detected: Value '{value}' at '{field}' failed to satisfy "
        "constraint: Member must have value between {low} and {high}"
    ),
    "ValidationError.RoleArn": ErrorSpec(
        "ValidationError",
        message="{value} is invalid",
    ),
    "ValidationError.RoleSessionName": ErrorSpec(
        "ValidationError",
        message="1 validation error detected: Value '{value}' at 'roleSessionName' failed to "
        "satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*",
    ),
    "LimitExceeded": ErrorSpec(
        message="This endpoint holds {sessions} unexpired sessions, its most"
    ),
    "InternalError": ErrorSpec(status=500, message="Internal error: {reason}"),
}


def table_error(table: Mapping[str, ErrorSpec], key: str, **fields: object) -> AwsError:
    """The error `key` of a service's table (STS_ERRORS, SNS_ERRORS, KINESIS_ERRORS),
    its text filled from `fields`; its code is `query_code` when set, else the key."""
    spec = table[key]
    text = _text(spec, fields)
    if text is None:
        raise ValueError(f"{key}: the table's text needs {spec.message!r}, given {fields}")
    code = spec.query_code or key.split("#", 1)[0]
    return AwsError(code, text, spec.status, sender_fault=spec.status < 500)


def sts_error(key: str, **fields: object) -> AwsError:
    """STS's error `key` (of STS_ERRORS)."""
    return table_error(STS_ERRORS, key, **fields)


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
    code = code.split("#", 1)[0]
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
    translated = _translate(SQS_TEXTS, SQS_ERRORS, exc, fields)
    if translated is not None:
        found_code, spec, found_text = translated
        return AwsError(
            found_code, found_text, spec.status, query_code=spec.query_code or found_code
        )
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


# Kinesis's errors as its API reference lists them, with the texts Kinesis
# answers (moto's aws_verified tests record several).
KINESIS_ERRORS: dict[str, ErrorSpec] = {
    "ResourceNotFoundException#Stream": ErrorSpec(
        message="Stream {stream} under account {account} not found."
    ),
    "ResourceNotFoundException#StreamArn": ErrorSpec(
        message="Stream {stream} under account {account} not found."
    ),
    "ResourceNotFoundException#NoPolicy": ErrorSpec(
        message="No resource policy found for resource ARN {arn}."
    ),
    "ResourceNotFoundException#Shard": ErrorSpec(
        message="Shard {shard} in stream {stream} under account {account} does not exist"
    ),
    "ResourceNotFoundException#Consumer": ErrorSpec(
        message="Consumer {consumer}, account {account} not found."
    ),
    "ResourceNotFoundException#SplitShard": ErrorSpec(
        message="Could not find shard {shard} in stream {stream} under account {account}."
    ),
    "InvalidArgumentException#ShardClosed": ErrorSpec(
        message="Shard {shard} in stream {stream} under account {account} has already been "
        "merged or split, and thus is not eligible for merging or splitting."
    ),
    "InvalidArgumentException#SplitKey": ErrorSpec(
        message="NewStartingHashKey {hash_key} used in SplitShard() on shard {shard} in stream "
        "{stream} under account {account} is not both greater than one plus the shard's "
        "StartingHashKey {start} and less than the shard's EndingHashKey {end}."
    ),
    # Kinesis's request validation (AWS's Coral wording).
    "ValidationException#Pattern": ErrorSpec(
        message="1 validation error detected: Value '{value}' at '{where}' failed to satisfy "
        "constraint: Member must satisfy regular expression pattern: {pattern}"
    ),
    "ValidationException#LengthMax": ErrorSpec(
        message="1 validation error detected: Value at '{where}' failed to satisfy "
        "constraint: Member must have length less than or equal to {max}"
    ),
    "InvalidArgumentException#IteratorType": ErrorSpec(
        message="Invalid ShardIteratorType: {request[ShardIteratorType]}"
    ),
    "InvalidArgumentException#BatchSize": ErrorSpec(message="Records size exceeds 5 MB limit"),
    "ValidationException#OnDemand": ErrorSpec(
        message="Request is invalid. Stream {stream} under account {account} is in On-Demand mode."
    ),
}

KINESIS_TEXTS = _texts(
    (r"^stream '(?P<stream>[^']*)': not found", "ResourceNotFoundException#Stream"),
    (r"^iterator type", "InvalidArgumentException#IteratorType"),
    (
        r"^shard: '(?P<shard>[^']*)' is not a shard id",
        "ResourceNotFoundException#Shard",
        "GetShardIterator",
    ),
    (
        r"^stream '(?P<stream>[^']*)': no shard (?P<shard>\S+)",
        "ResourceNotFoundException#Shard",
        "GetShardIterator",
    ),
    (
        r"^stream '(?P<stream>[^']*)': no shard (?P<shard>\S+)",
        "ResourceNotFoundException#SplitShard",
        "SplitShard",
    ),
    (
        r"^shard: '(?P<shard>[^']*)' is not a shard id",
        "ResourceNotFoundException#SplitShard",
        "SplitShard",
    ),
    (r"^split_shard: (?P<shard>\S+) is closed", "InvalidArgumentException#ShardClosed"),
    (r"^put_many: .* request limit", "InvalidArgumentException#BatchSize"),
)


def kinesis_error(key: str, **fields: object) -> AwsError:
    """Kinesis's error `key` (of KINESIS_ERRORS)."""
    return table_error(KINESIS_ERRORS, key, **fields)


def from_library_kinesis(exc: Error, **fields: object) -> AwsError:
    """A library error as Kinesis reports it: by KINESIS_TEXTS where one matches."""
    request = fields.get("request")
    if isinstance(request, Mapping):
        if request.get("StreamName"):
            fields = {"stream": request["StreamName"], **fields}
        if request.get("ShardToSplit"):
            fields = {"shard": request["ShardToSplit"], **fields}
        if request.get("StreamARN") and not request.get("StreamName"):
            fields = {**fields, "stream": request["StreamARN"]}  # Kinesis names what it was given
    translated = _translate(KINESIS_TEXTS, KINESIS_ERRORS, exc, fields)
    if translated is not None:
        code, spec, text = translated
        return AwsError(code, text, spec.status)
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


# SNS's errors: the codes of botocore's model (their statuses from it), the
# texts SNS answers. The key's part after "#" names one of a code's texts.
SNS_ERRORS: dict[str, ErrorSpec] = {
    "NotFound#Topic": ErrorSpec(status=404, message="Topic does not exist"),
    "NotFound#Subscription": ErrorSpec(status=404, message="Subscription does not exist"),
    "NotFound#PlatformApplication": ErrorSpec(
        status=404, message="PlatformApplication does not exist"
    ),
    "NotFound#Endpoint": ErrorSpec(status=404, message="Endpoint does not exist"),
    "ResourceNotFound": ErrorSpec(status=404, message="Resource does not exist"),
    "EndpointDisabled": ErrorSpec(message="Endpoint is disabled"),
    "InvalidParameter#SqsEndpoint": ErrorSpec(message="Invalid parameter: SQS endpoint ARN"),
    "InvalidParameter#SmsEndpoint": ErrorSpec(message="Invalid SMS endpoint: {endpoint}"),
    "InvalidParameter#E164": ErrorSpec(
        message="Invalid parameter: PhoneNumber Reason: {number} does not meet the E164 format"
    ),
    "InvalidParameter#AppName": ErrorSpec(
        message="Invalid parameter: Name Reason: must be 1-256 of A-Z a-z 0-9 _ - ."
    ),
    "InvalidParameter#Platform": ErrorSpec(
        message="Invalid parameter: Platform Reason: {platform} is not supported"
    ),
    "InvalidParameter#EndpointExists": ErrorSpec(
        message="Invalid parameter: Token Reason: Endpoint {arn} already exists with the same "
        "Token, but different attributes."
    ),
    "InvalidParameter#EndpointGone": ErrorSpec(
        message="Invalid parameter: Endpoint Reason: Endpoint does not exist for endpoint arn{arn}"
    ),
    "InvalidParameter#StatementExists": ErrorSpec(message="Statement already exists"),
    "InvalidParameter#ActionScope": ErrorSpec(
        message="Policy statement action out of service scope!"
    ),
    "InvalidParameter#JsonMessage": ErrorSpec(message="Message is not valid JSON."),
    "InvalidParameter#JsonDefault": ErrorSpec(
        message="Invalid parameter: Message Structure - No default entry in JSON message body"
    ),
    "InvalidParameter#Subject": ErrorSpec(message="Subject must be less than 100 characters"),
    "InvalidParameter#TopicName": ErrorSpec(message="Invalid parameter: Topic Name"),
    "InvalidParameter#FifoTopicName": ErrorSpec(
        message="Fifo Topic names must end with .fifo and must be made up of only uppercase "
        "and lowercase ASCII letters, numbers, underscores, and hyphens, and must be between 1 "
        "and 256 characters long."
    ),
    "InvalidParameter#StandardTopicName": ErrorSpec(
        message="Topic names must be made up of only uppercase and lowercase ASCII letters, "
        "numbers, underscores, and hyphens, and must be between 1 and 256 characters long."
    ),
    "InvalidParameter#GroupIdNeeded": ErrorSpec(
        message="Invalid parameter: The request must contain the parameter MessageGroupId."
    ),
    "InvalidParameter#SmsLength": ErrorSpec(
        message="Invalid parameter: Message Reason: SMS message must be less than 1600 "
        "characters long"
    ),
    "TagLimitExceeded": ErrorSpec(
        message="Could not complete request: tag quota of per resource exceeded"
    ),
    "InvalidParameter#Dedup": ErrorSpec(
        message="Invalid parameter: The topic should either have ContentBasedDeduplication "
        "enabled or MessageDeduplicationId provided explicitly"
    ),
    "InvalidParameter#DedupOnStandard": ErrorSpec(
        message="Invalid parameter: MessageDeduplicationId Reason: The request includes "
        "MessageDeduplicationId parameter that is not valid for this topic type"
    ),
    "TooManyEntriesInBatchRequest": ErrorSpec(
        message="The batch request contains more entries than permissible."
    ),
    "BatchEntryIdsNotDistinct": ErrorSpec(
        message="Two or more batch entries in the request have the same Id."
    ),
    "EmptyBatchRequest": ErrorSpec(message="The batch request doesn't contain any entries."),
    "InternalError": ErrorSpec(status=500, message="Internal error: {reason}"),
}

SNS_TEXTS = _texts(
    (r"^topic '[^']*': not found", "NotFound#Topic"),
    (r"^subscription .*not found", "NotFound#Subscription"),
    (r"\(TooManyEntriesInBatchRequest\)", "TooManyEntriesInBatchRequest"),
    (r"\(BatchEntryIdsNotDistinct\)", "BatchEntryIdsNotDistinct"),
    (r"\(EmptyBatchRequest\)", "EmptyBatchRequest"),
    (r"^subject: ", "InvalidParameter#Subject"),
    (r"^group_id: FIFO topics need", "InvalidParameter#GroupIdNeeded"),
    (r"\(TagLimitExceeded\)", "TagLimitExceeded"),
    (r"^dedup_id: give one", "InvalidParameter#Dedup"),
)


def sns_error(key: str, **fields: object) -> AwsError:
    """SNS's error `key` (of SNS_ERRORS)."""
    return table_error(SNS_ERRORS, key, **fields)


def from_library_sns(exc: Error, **fields: object) -> AwsError:
    """A library error as SNS reports it: by SNS_TEXTS where one matches."""
    translated = _translate(SNS_TEXTS, SNS_ERRORS, exc, fields)
    if translated is not None:
        code, spec, text = translated
        return AwsError(code, text, spec.status)
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
