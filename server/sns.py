"""SNS over the query protocol (form fields in, XML out), mapped onto tidelog.Topic.

Topic and subscription ARNs are the library's own (`Topic.arn`,
`Subscription.arn`: arn:aws:sns:us-east-1:000000000000:NAME[:ID]), so they
match the TopicArn inside the JSON envelopes that subscribed queues receive.
Subscribe takes protocol "sqs" (a queue ARN; the queue name is its last
field), "http"/"https" (with SNS's confirmation handshake) and "lambda" (a
function's name or ARN: a topic trigger, engine/triggers.py, listed back
as protocol "lambda"); others are refused with InvalidParameter.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import tidelog
from tidelog import json_limits
from tidelog.server import sns_mobile
from tidelog.server.context import Context
from tidelog.server.errors import AwsError, sns_error
from tidelog.server.sns_state import record_delivery
from tidelog.topics import Subscription, Topic
from tidelog.triggers import Trigger, Triggers, is_internal_queue

Handler = Callable[[Context, dict[str, Any]], dict[str, Any]]

PAGE_SIZE = 100  # ListTopics and ListSubscriptions pages, as SNS
_TOKEN = re.compile(r"[0-9]{1,12}")
POLICY_DEPTH_MAX = 8  # RedrivePolicy and DeliveryPolicy are small flat objects
_SCOPES = {"MessageAttributes": "attributes", "MessageBody": "body"}
_SCOPE_NAMES = {v: k for k, v in _SCOPES.items()}


def _invalid(message: str) -> AwsError:
    return AwsError("InvalidParameter", f"Invalid parameter: {message}")


def _arn_name(arn: object, what: str) -> str:
    if not isinstance(arn, str) or not arn.startswith("arn:") or arn.count(":") < 5:
        raise _invalid(f"{what}: {arn!r} is not an ARN")
    return arn.split(":")[5]


def _topic(ctx: Context, request: Mapping[str, Any], key: str = "TopicArn") -> Topic:
    return ctx.store.topic(_arn_name(request.get(key), key))


def _subscription(ctx: Context, arn: object) -> tuple[Topic, Subscription]:
    if not isinstance(arn, str) or arn.count(":") != 6:
        raise _invalid(f"SubscriptionArn: {arn!r} is not a subscription ARN")
    try:
        topic = ctx.store.topic(arn.split(":")[5])
        return topic, topic.subscription(arn.rsplit(":", 1)[1])
    except tidelog.NotFound:
        raise sns_error("NotFound#Subscription") from None


# Protocols SNS delivers to outside this machine: their subscriptions are kept in
# the SNS state (server/sns_state.py) and their messages as deliveries.
KEPT_PROTOCOLS = ("sms", "email", "email-json", "application", "lambda", "firehose")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")


def _kept_subscriptions(ctx: Context, topic_arn: str | None = None) -> list[dict[str, Any]]:
    return [
        sub
        for _, sub in sns_mobile.state(ctx).items("subscription/")
        if topic_arn is None or sub["topic_arn"] == topic_arn
    ]


def _kept_subscription(ctx: Context, arn: object) -> dict[str, Any] | None:
    found = sns_mobile.state(ctx).get(f"subscription/{arn}")
    return None if found is None else dict(found)


# -- topic extras: the attributes the library does not keep ------------------------------------


_EXTRA_TOPIC_ATTRIBUTES = (
    "Policy",
    "DeliveryPolicy",
    "KmsMasterKeyId",
    "SignatureVersion",
    "TracingConfig",
    "FifoThroughputScope",
    "ArchivePolicy",
    "DataProtectionPolicy",
)
_POLICY_ACTIONS = (
    "GetTopicAttributes",
    "SetTopicAttributes",
    "AddPermission",
    "RemovePermission",
    "DeleteTopic",
    "Subscribe",
    "ListSubscriptionsByTopic",
    "Publish",
)
# SNS's EffectiveDeliveryPolicy of a topic created without a DeliveryPolicy.
EFFECTIVE_DELIVERY_POLICY = {
    "http": {
        "defaultHealthyRetryPolicy": {
            "minDelayTarget": 20,
            "maxDelayTarget": 20,
            "numRetries": 3,
            "numMaxDelayRetries": 0,
            "numNoDelayRetries": 0,
            "numMinDelayRetries": 0,
            "backoffFunction": "linear",
        },
        "disableSubscriptionOverrides": False,
        "defaultRequestPolicy": {"headerContentType": "text/plain; charset=UTF-8"},
    }
}


def _default_policy(ctx: Context, topic_arn: str) -> dict[str, Any]:
    return {
        "Version": "2008-10-17",
        "Id": "__default_policy_ID",
        "Statement": [
            {
                "Effect": "Allow",
                "Sid": "__default_statement_ID",
                "Principal": {"AWS": "*"},
                "Action": [f"SNS:{a}" for a in _POLICY_ACTIONS],
                "Resource": topic_arn,
                "Condition": {"StringEquals": {"AWS:SourceOwner": ctx.account_id}},
            }
        ],
    }


def _extras(ctx: Context, topic: Topic) -> dict[str, str]:
    found = sns_mobile.state(ctx).get(f"topic/{topic.name}")
    return dict(found) if found else {}


def _set_extra(ctx: Context, topic: Topic, name: str, value: str | None) -> None:
    extras = _extras(ctx, topic)
    if value is None:
        extras.pop(name, None)
    else:
        extras[name] = value
    sns_mobile.state(ctx).put(f"topic/{topic.name}", extras or None)


def _bool(name: str, raw: str) -> bool:
    if raw.lower() not in ("true", "false"):
        raise _invalid(f"{name}: must be true or false")
    return raw.lower() == "true"


def _page(items: list[Any], token: str | None) -> tuple[list[Any], str | None]:
    start = 0
    if token:
        if not _TOKEN.fullmatch(token):  # the tokens _page hands out: a decimal index
            raise _invalid("NextToken")
        start = int(token)
    page = items[start : start + PAGE_SIZE]
    more = start + PAGE_SIZE < len(items)
    return page, str(start + PAGE_SIZE) if more else None


def _with_token(out: dict[str, Any], token: str | None) -> dict[str, Any]:
    if token:
        out["NextToken"] = token
    return out


# -- topics ---------------------------------------------------------------------------------------


def create_topic(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    attributes = request.get("Attributes") or {}
    options: dict[str, Any] = {}
    for name, raw in attributes.items():
        if name == "FifoTopic":
            options["fifo"] = _bool(name, raw)
        elif name == "ContentBasedDeduplication":
            options["content_based_dedup"] = _bool(name, raw)
        elif name == "DisplayName":
            options["display_name"] = raw
        elif name not in _EXTRA_TOPIC_ATTRIBUTES:
            raise _invalid(f"Attributes: unknown attribute {name}")
    try:
        if not attributes:  # SNS answers the existing topic, whatever its attributes
            with contextlib.suppress(tidelog.NotFound):
                return {"TopicArn": ctx.store.topic(request["Name"]).arn}
        topic = ctx.store.create_topic(request["Name"], exist_ok=True, **options)
    except tidelog.InvalidArgument as exc:
        if str(exc).startswith("topic name"):
            fifo = options.get("fifo", False)
            raise sns_error(
                "InvalidParameter#FifoTopicName" if fifo else "InvalidParameter#StandardTopicName"
            ) from None
        raise
    if request.get("Tags"):
        topic.tag({t["Key"]: t["Value"] for t in request["Tags"]})
    for name in _EXTRA_TOPIC_ATTRIBUTES:
        if name in attributes:
            _set_extra(ctx, topic, name, attributes[name])
    return {"TopicArn": topic.arn}


def delete_topic(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    name = _arn_name(request["TopicArn"], "TopicArn")
    with contextlib.suppress(tidelog.NotFound):  # SNS's DeleteTopic of none succeeds
        ctx.store.delete_topic(name)
    shared = sns_mobile.state(ctx)
    shared.put(f"topic/{name}", None)
    for sub in _kept_subscriptions(ctx, request["TopicArn"]):
        shared.put(f"subscription/{sub['arn']}", None)
    return {}


def list_topics(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    page, token = _page(ctx.store.topics(), request.get("NextToken"))
    return _with_token({"Topics": [{"TopicArn": t.arn} for t in page]}, token)


def get_topic_attributes(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    topic = _topic(ctx, request)
    data = topic.attributes()
    kept = _kept_subscriptions(ctx, topic.arn)
    extras = _extras(ctx, topic)
    out = {
        "TopicArn": data["arn"],
        "Owner": ctx.account_id,
        "DisplayName": data["display_name"],
        "SubscriptionsConfirmed": str(data["subscriptions_confirmed"] + len(kept)),
        "SubscriptionsPending": str(data["subscriptions_pending"]),
        "SubscriptionsDeleted": "0",
        "Policy": json.dumps(_default_policy(ctx, topic.arn), separators=(",", ":")),
        "DeliveryPolicy": "",
        "EffectiveDeliveryPolicy": json.dumps(EFFECTIVE_DELIVERY_POLICY, separators=(",", ":")),
        **extras,
    }
    if data["fifo"]:
        out["FifoTopic"] = "true"
        out["ContentBasedDeduplication"] = "true" if data["content_based_dedup"] else "false"
    return {"Attributes": out}


def set_topic_attributes(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    topic = _topic(ctx, request)
    name, value = request["AttributeName"], request.get("AttributeValue", "")
    if name == "DisplayName":
        topic.set_attributes(display_name=value)
    elif name == "ContentBasedDeduplication":
        topic.set_attributes(content_based_dedup=_bool(name, value))
    elif name in _EXTRA_TOPIC_ATTRIBUTES:
        _set_extra(ctx, topic, name, value)
    else:
        raise _invalid(f"AttributeName: {name} cannot be set here")
    return {}


def add_permission(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    topic = _topic(ctx, request)
    actions = request["ActionName"]
    if any(a not in _POLICY_ACTIONS for a in actions):
        raise sns_error("InvalidParameter#ActionScope")
    extras = _extras(ctx, topic)
    policy = json.loads(extras.get("Policy") or json.dumps(_default_policy(ctx, topic.arn)))
    statements = policy.setdefault("Statement", [])
    if any(st.get("Sid") == request["Label"] for st in statements):
        raise sns_error("InvalidParameter#StatementExists")
    principals = [f"arn:aws:iam::{a}:root" for a in request["AWSAccountId"]]
    named = [f"SNS:{a}" for a in actions]
    statements.append(
        {
            "Sid": request["Label"],
            "Effect": "Allow",
            "Principal": {"AWS": principals[0] if len(principals) == 1 else principals},
            "Action": named[0] if len(named) == 1 else named,
            "Resource": topic.arn,
        }
    )
    _set_extra(ctx, topic, "Policy", json.dumps(policy, separators=(",", ":")))
    return {}


def remove_permission(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    topic = _topic(ctx, request)
    extras = _extras(ctx, topic)
    if not extras.get("Policy"):
        return {}
    policy = json.loads(extras["Policy"])
    policy["Statement"] = [
        st for st in policy.get("Statement", []) if st.get("Sid") != request["Label"]
    ]
    _set_extra(ctx, topic, "Policy", json.dumps(policy, separators=(",", ":")))
    return {}


# -- subscriptions --------------------------------------------------------------------------------


def _subscription_options(attributes: Mapping[str, str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for name, raw in attributes.items():
        if name == "FilterPolicy":
            options["filter_policy"] = raw or None
        elif name == "FilterPolicyScope":
            if raw not in _SCOPES:
                raise _invalid("FilterPolicyScope: must be MessageAttributes or MessageBody")
            options["filter_scope"] = _SCOPES[raw]
        elif name == "RawMessageDelivery":
            options["raw"] = _bool(name, raw)
        elif name == "RedrivePolicy":
            try:
                target = (
                    json_limits.loads(raw, POLICY_DEPTH_MAX)["deadLetterTargetArn"] if raw else None
                )
            except (ValueError, KeyError, TypeError):
                raise _invalid("RedrivePolicy: must be JSON with deadLetterTargetArn") from None
            options["dead_letter"] = _arn_name(target, "deadLetterTargetArn") if target else None
        elif name == "DeliveryPolicy":
            try:
                policy = json_limits.loads(raw, POLICY_DEPTH_MAX)
            except ValueError:
                raise _invalid("DeliveryPolicy: must be JSON") from None
            if not isinstance(policy, dict):
                raise _invalid("DeliveryPolicy: must be a JSON object")
            options["delivery_policy"] = policy.get("healthyRetryPolicy", policy)
        else:
            raise _invalid(f"Attributes: unknown attribute {name}")
    return options


def subscribe(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    topic = _topic(ctx, request)
    protocol = request["Protocol"]
    endpoint = request.get("Endpoint") or ""
    if protocol in KEPT_PROTOCOLS and not (protocol == "lambda" and _deployed(ctx, endpoint)):
        # A lambda endpoint that names no deployed function is kept as a delivery
        # (as for sms and email); one that does runs as a trigger (docs/triggers.md).
        return _subscribe_kept(ctx, topic, protocol, endpoint, request.get("Attributes") or {})
    options = _subscription_options(request.get("Attributes") or {})
    if protocol == "sqs":
        if not endpoint.startswith("arn:aws:sqs:"):
            raise sns_error("InvalidParameter#SqsEndpoint")
        if "delivery_policy" in options or "dead_letter" in options:
            raise _invalid("DeliveryPolicy and RedrivePolicy: HTTP/S subscriptions only here")
        sub = topic.subscribe(
            _arn_name(endpoint, "Endpoint"),
            options.get("filter_policy"),
            options.get("filter_scope", "attributes"),
            options.get("raw", False),
        )
    elif protocol == "lambda":
        if set(options) - {"filter_policy", "filter_scope"}:
            raise _invalid("Attributes: a lambda subscription takes FilterPolicy only here")
        if options.get("filter_scope", "attributes") != "attributes":
            raise _invalid("FilterPolicyScope: MessageAttributes for lambda subscriptions here")
        trigger = Triggers(ctx.store).create_trigger(
            endpoint, topic, filter_policy=options.get("filter_policy")
        )
        return {"SubscriptionArn": f"{topic.arn}:{trigger.subscription}"}
    elif protocol in ("http", "https"):
        if not endpoint.startswith(f"{protocol}://"):
            raise _invalid(f"Endpoint: must be an {protocol} URL")
        sub = topic.subscribe_http(endpoint, **options)
    else:
        raise _invalid(f"Protocol: {protocol!r} is not supported (sqs, http, https, lambda)")
    if not sub.confirmed and not request.get("ReturnSubscriptionArn"):
        return {"SubscriptionArn": "pending confirmation"}
    return {"SubscriptionArn": sub.arn}


_FUNCTION_ARN = re.compile(r"arn:aws:lambda:[^:]*:[0-9]{12}:function:([^:]+)(?::\$LATEST)?")


def _deployed(ctx: Context, endpoint: str) -> bool:
    """True when a lambda endpoint (an ARN or a name) names a deployed function."""
    match = _FUNCTION_ARN.fullmatch(endpoint)
    try:
        Triggers(ctx.store).function(match.group(1) if match else endpoint)
    except tidelog.Error:
        return False
    return True


def _subscribe_kept(
    ctx: Context, topic: Topic, protocol: str, endpoint: str, attributes: Mapping[str, str]
) -> dict[str, Any]:
    if protocol == "sms":
        sns_mobile.check_sms_endpoint(endpoint)
    elif protocol in ("email", "email-json") and not _EMAIL.fullmatch(endpoint):
        raise _invalid(f"Email address: {endpoint}")
    elif protocol == "application" and sns_mobile.state(ctx).get(f"endpoint/{endpoint}") is None:
        raise sns_error("InvalidParameter#EndpointGone", arn=endpoint)
    for sub in _kept_subscriptions(ctx, topic.arn):
        if sub["protocol"] == protocol and sub["endpoint"] == endpoint:
            return {"SubscriptionArn": sub["arn"]}  # SNS's Subscribe is idempotent
    arn = f"{topic.arn}:{uuid.uuid4()}"
    sub = {
        "arn": arn,
        "topic_arn": topic.arn,
        "protocol": protocol,
        "endpoint": endpoint,
        "attributes": dict(attributes),
    }
    sns_mobile.state(ctx).put(f"subscription/{arn}", sub)
    return {"SubscriptionArn": arn}


def confirm_subscription(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    sub = _topic(ctx, request).confirm_subscription(request["Token"])
    return {"SubscriptionArn": sub.arn}


def unsubscribe(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    if _kept_subscription(ctx, request["SubscriptionArn"]) is not None:
        sns_mobile.state(ctx).put(f"subscription/{request['SubscriptionArn']}", None)
        return {}
    topic, sub = _subscription(ctx, request["SubscriptionArn"])
    trigger = _lambda_trigger(ctx, topic, sub)
    if trigger is not None:  # the trigger's internal queue goes with it
        Triggers(ctx.store).delete_trigger(trigger.uuid)
    else:
        topic.unsubscribe(sub)
    return {}


def _endpoint(ctx: Context, sub: Subscription) -> str:
    """A subscription's endpoint; a queue's ARN names the caller's region, as SQS's do."""
    return ctx.queue_arn(sub.endpoint) if sub.protocol == "sqs" else sub.endpoint_arn


def _lambda_trigger(ctx: Context, topic: Topic, sub: Subscription) -> Trigger | None:
    """The trigger behind a "lambda" subscription (an internal queue's), or None."""
    if sub.protocol != "sqs" or not is_internal_queue(sub.endpoint):
        return None
    for trigger in Triggers(ctx.store).triggers(source=("topic", topic.name)):
        if trigger.subscription == sub.id:
            return trigger
    return None


def _protocol_endpoint(ctx: Context, topic: Topic, sub: Subscription) -> tuple[str, str]:
    trigger = _lambda_trigger(ctx, topic, sub)
    if trigger is not None:
        # The function's ARN as the Lambda endpoint gives it (GetFunction).
        return "lambda", Triggers(ctx.store).function(trigger.function).arn
    return sub.protocol, _endpoint(ctx, sub)


def _listed(ctx: Context, topic: Topic, sub: Subscription) -> dict[str, Any]:
    protocol, endpoint = _protocol_endpoint(ctx, topic, sub)
    return {
        "SubscriptionArn": sub.arn if sub.confirmed else "PendingConfirmation",
        "Owner": ctx.account_id,
        "Protocol": protocol,
        "Endpoint": endpoint,
        "TopicArn": topic.arn,
    }


def _kept_listed(ctx: Context, sub: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "SubscriptionArn": sub["arn"],
        "Owner": ctx.account_id,
        "Protocol": sub["protocol"],
        "Endpoint": sub["endpoint"],
        "TopicArn": sub["topic_arn"],
    }


def list_subscriptions(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    every = [
        _listed(ctx, topic, sub)
        for topic in ctx.store.topics()
        for sub in topic.subscriptions()
        if sub.protocol != "callback"
    ] + [_kept_listed(ctx, sub) for sub in _kept_subscriptions(ctx)]
    page, token = _page(every, request.get("NextToken"))
    return _with_token({"Subscriptions": page}, token)


def list_subscriptions_by_topic(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    topic = _topic(ctx, request)
    every = [_listed(ctx, topic, s) for s in topic.subscriptions() if s.protocol != "callback"]
    every += [_kept_listed(ctx, sub) for sub in _kept_subscriptions(ctx, topic.arn)]
    page, token = _page(every, request.get("NextToken"))
    return _with_token({"Subscriptions": page}, token)


def get_subscription_attributes(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    kept = _kept_subscription(ctx, request["SubscriptionArn"])
    if kept is not None:
        return {
            "Attributes": {
                **_kept_listed(ctx, kept),
                "PendingConfirmation": "false",
                "ConfirmationWasAuthenticated": "true",
                "RawMessageDelivery": "false",
                **kept["attributes"],
            }
        }
    topic, sub = _subscription(ctx, request["SubscriptionArn"])
    protocol, endpoint = _protocol_endpoint(ctx, topic, sub)
    out = {
        "SubscriptionArn": sub.arn,
        "TopicArn": topic.arn,
        "Owner": ctx.account_id,
        "Protocol": protocol,
        "Endpoint": endpoint,
        "PendingConfirmation": "false" if sub.confirmed else "true",
        "ConfirmationWasAuthenticated": "true" if sub.confirmed else "false",
        "RawMessageDelivery": "true" if sub.raw else "false",
        "FilterPolicyScope": _SCOPE_NAMES.get(sub.filter_scope, "MessageAttributes"),
    }
    if sub.filter_policy is not None:
        out["FilterPolicy"] = json.dumps(sub.filter_policy)
    if sub.dead_letter:
        out["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": ctx.queue_arn(sub.dead_letter)})
    if sub.delivery_policy:
        out["DeliveryPolicy"] = json.dumps({"healthyRetryPolicy": sub.delivery_policy})
    return {"Attributes": out}


def set_subscription_attributes(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    kept = _kept_subscription(ctx, request["SubscriptionArn"])
    if kept is not None:
        kept["attributes"][request["AttributeName"]] = request.get("AttributeValue", "")
        sns_mobile.state(ctx).put(f"subscription/{kept['arn']}", kept)
        return {}
    topic, sub = _subscription(ctx, request["SubscriptionArn"])
    options = _subscription_options({request["AttributeName"]: request.get("AttributeValue", "")})
    topic.update_subscription(sub, **options)
    return {}


# -- publishing -----------------------------------------------------------------------------------


def _attributes(raw: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not raw:
        return None
    out: dict[str, Any] = {}
    for name, value in raw.items():
        if "BinaryValue" in value:
            out[name] = {"DataType": value.get("DataType", ""), "BinaryValue": value["BinaryValue"]}
        else:
            out[name] = {
                "DataType": value.get("DataType", ""),
                "StringValue": value.get("StringValue", ""),
            }
    return out


def _structured(entry: Mapping[str, Any]) -> dict[str, str] | None:
    """MessageStructure=json's per-protocol messages, or None for a plain message.

    SNS's rules: the message is a JSON object of strings with a "default"."""
    structure = entry.get("MessageStructure")
    if not structure:
        return None
    if structure != "json":
        raise _invalid("MessageStructure: must be json")
    try:
        messages = json.loads(entry["Message"])
    except ValueError:
        raise sns_error("InvalidParameter#JsonMessage") from None
    if not isinstance(messages, dict) or not isinstance(messages.get("default"), str):
        raise sns_error("InvalidParameter#JsonDefault")
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in messages.items()}


def _message_for(entry: Mapping[str, Any], protocol: str) -> str:
    """The message `protocol`'s subscribers get."""
    messages = _structured(entry)
    if messages is None:
        return str(entry["Message"])
    return messages.get(protocol, messages["default"])


def _deliver_kept(ctx: Context, topic: Topic, entry: Mapping[str, Any], message_id: str) -> None:
    """Keep the deliveries of one published message to the topic's kept subscriptions."""
    for sub in _kept_subscriptions(ctx, topic.arn):
        protocol = sub["protocol"]
        record_delivery(
            ctx.store,
            protocol,
            sub["endpoint"],
            topic.arn,
            message_id,
            _message_for(entry, protocol),
            entry.get("Subject"),
            entry.get("MessageAttributes"),
        )


def _publish_direct(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    """A publish to a phone number or a platform endpoint: kept as a delivery."""
    message_id = str(uuid.uuid4())
    if request.get("PhoneNumber"):
        number = request["PhoneNumber"]
        sns_mobile.check_phone_number(number)
        if len(request["Message"]) > sns_mobile.SMS_CHARS_MAX:
            raise sns_error("InvalidParameter#SmsLength")
        protocol, endpoint = "sms", number
    else:
        endpoint = request["TargetArn"]
        found = sns_mobile.endpoint(ctx, endpoint)
        if found["attributes"].get("Enabled", "true").lower() == "false":
            raise sns_error("EndpointDisabled")
        protocol = "application"
    record_delivery(
        ctx.store,
        protocol,
        endpoint,
        None,
        message_id,
        _message_for(request, protocol),
        request.get("Subject"),
        request.get("MessageAttributes"),
    )
    return {"MessageId": message_id}


def publish(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    target = request.get("TargetArn") or ""
    if request.get("PhoneNumber") or ":endpoint/" in target:
        return _publish_direct(ctx, request)
    if len(request.get("Subject") or "") > 100:
        raise sns_error("InvalidParameter#Subject")
    key = "TopicArn" if request.get("TopicArn") else "TargetArn"
    topic = _topic(ctx, request, key)
    result = topic.publish(
        _message_for(request, "sqs"),
        _attributes(request.get("MessageAttributes")),
        subject=request.get("Subject"),
        group_id=request.get("MessageGroupId"),
        dedup_id=request.get("MessageDeduplicationId"),
    )
    _deliver_kept(ctx, topic, request, result.id)
    out: dict[str, Any] = {"MessageId": result.id}
    if result.sequence_number is not None:
        out["SequenceNumber"] = result.sequence_number
    return out


def publish_batch(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    topic = _topic(ctx, request)
    entries = []
    for entry in request["PublishBatchRequestEntries"]:
        entries.append(
            {
                "id": entry["Id"],
                "body": _message_for(entry, "sqs"),
                "attributes": _attributes(entry.get("MessageAttributes")),
                "subject": entry.get("Subject"),
                "group_id": entry.get("MessageGroupId"),
                "dedup_id": entry.get("MessageDeduplicationId"),
            }
        )
    result = topic.publish_many(entries)
    by_id = {e["Id"]: e for e in request["PublishBatchRequestEntries"]}
    successful = []
    for entry_id, published in result.successful:
        _deliver_kept(ctx, topic, by_id[entry_id], published.id)
        item: dict[str, Any] = {"Id": entry_id, "MessageId": published.id}
        if published.sequence_number is not None:
            item["SequenceNumber"] = published.sequence_number
        successful.append(item)
    return {
        "Successful": successful,
        "Failed": [
            {"Id": f.entry_id, "Code": f.code, "Message": f.message, "SenderFault": f.sender_fault}
            for f in result.failed
        ],
    }


def _topic_of_resource(ctx: Context, request: dict[str, Any]) -> Topic:
    arn = request["ResourceArn"]
    try:
        return ctx.store.topic(_arn_name(arn, "ResourceArn"))
    except (AwsError, tidelog.NotFound):
        raise sns_error("ResourceNotFound") from None


def tag_resource(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    _topic_of_resource(ctx, request).tag({t["Key"]: t["Value"] for t in request["Tags"]})
    return {}


def untag_resource(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    _topic_of_resource(ctx, request).untag(list(request["TagKeys"]))
    return {}


def list_tags_for_resource(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    tags = sorted(_topic_of_resource(ctx, request).tags().items())
    return {"Tags": [{"Key": k, "Value": v} for k, v in tags]}


HANDLERS: dict[str, Handler] = {
    "CreateTopic": create_topic,
    "DeleteTopic": delete_topic,
    "ListTopics": list_topics,
    "GetTopicAttributes": get_topic_attributes,
    "SetTopicAttributes": set_topic_attributes,
    "Subscribe": subscribe,
    "ConfirmSubscription": confirm_subscription,
    "Unsubscribe": unsubscribe,
    "ListSubscriptions": list_subscriptions,
    "ListSubscriptionsByTopic": list_subscriptions_by_topic,
    "GetSubscriptionAttributes": get_subscription_attributes,
    "SetSubscriptionAttributes": set_subscription_attributes,
    "Publish": publish,
    "AddPermission": add_permission,
    "RemovePermission": remove_permission,
    "PublishBatch": publish_batch,
    "ListTagsForResource": list_tags_for_resource,
    "TagResource": tag_resource,
    "UntagResource": untag_resource,
}

__all__ = ["HANDLERS"]
