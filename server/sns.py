"""SNS over the query protocol (form fields in, XML out), mapped onto tidelog.Topic.

Topic and subscription ARNs are the library's own (`Topic.arn`,
`Subscription.arn`: arn:aws:sns:us-east-1:000000000000:NAME[:ID]), so they
match the TopicArn inside the JSON envelopes that subscribed queues receive.
Subscribe takes protocol "sqs" (a queue ARN; the queue name is its last
field) and "http"/"https" (with SNS's confirmation handshake); others are
refused with InvalidParameter.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from tidelog import json_limits
from tidelog.server.context import Context
from tidelog.server.errors import AwsError
from tidelog.topics import Subscription, Topic

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
    topic = ctx.store.topic(arn.split(":")[5])
    return topic, topic.subscription(arn.rsplit(":", 1)[1])


def _bool(name: str, raw: str) -> bool:
    if raw.lower() not in ("true", "false"):
        raise _invalid(f"{name}: must be true or false")
    return raw.lower() == "true"


def _page(items: list[Any], token: str | None) -> tuple[list[Any], str | None]:
    start = 0
    if token:
        try:
            text = base64.urlsafe_b64decode(token.encode()).decode()
        except ValueError:
            text = ""
        if not _TOKEN.fullmatch(text):  # the tokens _page hands out: a decimal index
            raise _invalid("NextToken")
        start = int(text)
    page = items[start : start + PAGE_SIZE]
    more = start + PAGE_SIZE < len(items)
    return page, base64.urlsafe_b64encode(
        str(start + PAGE_SIZE).encode()
    ).decode() if more else None


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
        elif name not in ("Policy", "DeliveryPolicy", "KmsMasterKeyId", "SignatureVersion"):
            raise _invalid(f"Attributes: unknown attribute {name}")
    topic = ctx.store.create_topic(request["Name"], exist_ok=True, **options)
    if request.get("Tags"):
        topic.tag({t["Key"]: t["Value"] for t in request["Tags"]})
    return {"TopicArn": topic.arn}


def delete_topic(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    ctx.store.delete_topic(_arn_name(request["TopicArn"], "TopicArn"))
    return {}


def list_topics(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    page, token = _page(ctx.store.topics(), request.get("NextToken"))
    return _with_token({"Topics": [{"TopicArn": t.arn} for t in page]}, token)


def get_topic_attributes(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    data = _topic(ctx, request).attributes()
    out = {
        "TopicArn": data["arn"],
        "Owner": ctx.account_id,
        "DisplayName": data["display_name"],
        "SubscriptionsConfirmed": str(data["subscriptions_confirmed"]),
        "SubscriptionsPending": str(data["subscriptions_pending"]),
        "SubscriptionsDeleted": "0",
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
    else:
        raise _invalid(f"AttributeName: {name} cannot be set here")
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
    options = _subscription_options(request.get("Attributes") or {})
    if protocol == "sqs":
        if "delivery_policy" in options or "dead_letter" in options:
            raise _invalid("DeliveryPolicy and RedrivePolicy: HTTP/S subscriptions only here")
        sub = topic.subscribe(
            _arn_name(endpoint, "Endpoint"),
            options.get("filter_policy"),
            options.get("filter_scope", "attributes"),
            options.get("raw", False),
        )
    elif protocol in ("http", "https"):
        if not endpoint.startswith(f"{protocol}://"):
            raise _invalid(f"Endpoint: must be an {protocol} URL")
        sub = topic.subscribe_http(endpoint, **options)
    else:
        raise _invalid(f"Protocol: {protocol!r} is not supported (sqs, http, https)")
    if not sub.confirmed and not request.get("ReturnSubscriptionArn"):
        return {"SubscriptionArn": "pending confirmation"}
    return {"SubscriptionArn": sub.arn}


def confirm_subscription(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    sub = _topic(ctx, request).confirm_subscription(request["Token"])
    return {"SubscriptionArn": sub.arn}


def unsubscribe(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    topic, sub = _subscription(ctx, request["SubscriptionArn"])
    topic.unsubscribe(sub)
    return {}


def _endpoint(ctx: Context, sub: Subscription) -> str:
    """A subscription's endpoint; a queue's ARN names the caller's region, as SQS's do."""
    return ctx.queue_arn(sub.endpoint) if sub.protocol == "sqs" else sub.endpoint_arn


def _listed(ctx: Context, topic: Topic, sub: Subscription) -> dict[str, Any]:
    return {
        "SubscriptionArn": sub.arn if sub.confirmed else "PendingConfirmation",
        "Owner": ctx.account_id,
        "Protocol": sub.protocol,
        "Endpoint": _endpoint(ctx, sub),
        "TopicArn": topic.arn,
    }


def list_subscriptions(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    every = [
        _listed(ctx, topic, sub)
        for topic in ctx.store.topics()
        for sub in topic.subscriptions()
        if sub.protocol != "callback"
    ]
    page, token = _page(every, request.get("NextToken"))
    return _with_token({"Subscriptions": page}, token)


def list_subscriptions_by_topic(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    topic = _topic(ctx, request)
    every = [_listed(ctx, topic, s) for s in topic.subscriptions() if s.protocol != "callback"]
    page, token = _page(every, request.get("NextToken"))
    return _with_token({"Subscriptions": page}, token)


def get_subscription_attributes(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    topic, sub = _subscription(ctx, request["SubscriptionArn"])
    out = {
        "SubscriptionArn": sub.arn,
        "TopicArn": topic.arn,
        "Owner": ctx.account_id,
        "Protocol": sub.protocol,
        "Endpoint": _endpoint(ctx, sub),
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


def _check_structure(entry: Mapping[str, Any]) -> None:
    if entry.get("MessageStructure"):
        raise _invalid("MessageStructure: per-protocol messages are not supported by tidelog")


def publish(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    if request.get("PhoneNumber"):
        raise _invalid("PhoneNumber: SMS is not supported")
    _check_structure(request)
    key = "TopicArn" if request.get("TopicArn") else "TargetArn"
    topic = _topic(ctx, request, key)
    result = topic.publish(
        request["Message"],
        _attributes(request.get("MessageAttributes")),
        subject=request.get("Subject"),
        group_id=request.get("MessageGroupId"),
        dedup_id=request.get("MessageDeduplicationId"),
    )
    out: dict[str, Any] = {"MessageId": result.id}
    if result.sequence_number is not None:
        out["SequenceNumber"] = result.sequence_number
    return out


def publish_batch(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    topic = _topic(ctx, request)
    entries = []
    for entry in request["PublishBatchRequestEntries"]:
        _check_structure(entry)
        entries.append(
            {
                "id": entry["Id"],
                "body": entry["Message"],
                "attributes": _attributes(entry.get("MessageAttributes")),
                "subject": entry.get("Subject"),
                "group_id": entry.get("MessageGroupId"),
                "dedup_id": entry.get("MessageDeduplicationId"),
            }
        )
    result = topic.publish_many(entries)
    successful = []
    for entry_id, published in result.successful:
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
    return ctx.store.topic(_arn_name(request["ResourceArn"], "ResourceArn"))


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
    "PublishBatch": publish_batch,
    "ListTagsForResource": list_tags_for_resource,
    "TagResource": tag_resource,
    "UntagResource": untag_resource,
}

__all__ = ["HANDLERS"]
