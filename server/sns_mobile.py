"""SNS mobile push and SMS: platform applications and endpoints, SMS attributes and opt-outs.

State lives in the store's `sns-state` log (server/sns_state.py). Nothing
leaves the machine: a publish to an endpoint or a phone number is kept as a
delivery in `sns-deliveries`, where tests read it back. Platform credentials
are stored as given and never checked.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

from tidelog.server.context import Context
from tidelog.server.errors import sns_error
from tidelog.server.sns_state import KeyedState

Handler = Callable[[Context, dict[str, Any]], dict[str, Any]]

PLATFORMS = ("ADM", "APNS", "APNS_SANDBOX", "GCM", "BAIDU", "MPNS", "WNS", "VOIP_APNS")
_APP_NAME = re.compile(r"[A-Za-z0-9_.-]{1,256}")
# E.164: a plus, then up to 15 digits (SNS's rule for PhoneNumber).
E164 = re.compile(r"\+[1-9][0-9]{1,14}")
# What Subscribe takes as an SMS endpoint: digits, optionally grouped by single - . or /.
_SMS_ENDPOINT = re.compile(r"\+?[0-9]+(?:[-./][0-9]+)*")
PAGE_SIZE = 100
SMS_CHARS_MAX = 1600  # SNS's limit on one SMS message (split into parts of 140 bytes)


def state(ctx: Context) -> KeyedState:
    if ctx.sns_state is None:
        raise sns_error("InternalError", reason="no SNS state on this endpoint")
    return ctx.sns_state


def _app_key(arn: str) -> str:
    return f"app/{arn}"


def _endpoint_key(arn: str) -> str:
    return f"endpoint/{arn}"


def application(ctx: Context, arn: object) -> dict[str, Any]:
    found = state(ctx).get(_app_key(str(arn)))
    if found is None:
        raise sns_error("NotFound#PlatformApplication")
    return dict(found)


def endpoint(ctx: Context, arn: object) -> dict[str, Any]:
    found = state(ctx).get(_endpoint_key(str(arn)))
    if found is None:
        raise sns_error("NotFound#Endpoint")
    return dict(found)


def check_sms_endpoint(number: str) -> None:
    if not _SMS_ENDPOINT.fullmatch(number):
        raise sns_error("InvalidParameter#SmsEndpoint", endpoint=number)


def check_phone_number(number: str) -> None:
    if not E164.fullmatch(number):
        raise sns_error("InvalidParameter#E164", number=number)


# -- platform applications ------------------------------------------------------------------------


def create_platform_application(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    name, platform = request["Name"], request["Platform"]
    if not _APP_NAME.fullmatch(name):
        raise sns_error("InvalidParameter#AppName")
    if platform not in PLATFORMS:
        raise sns_error("InvalidParameter#Platform", platform=platform)
    arn = f"arn:aws:sns:{ctx.region}:{ctx.account_id}:app/{platform}/{name}"
    attributes = dict(request.get("Attributes") or {})
    state(ctx).put(_app_key(arn), {"arn": arn, "attributes": attributes})
    return {"PlatformApplicationArn": arn}


def get_platform_application_attributes(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    return {"Attributes": application(ctx, request["PlatformApplicationArn"])["attributes"]}


def set_platform_application_attributes(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    arn = request["PlatformApplicationArn"]
    app = application(ctx, arn)
    app["attributes"] = {**app["attributes"], **request["Attributes"]}
    state(ctx).put(_app_key(arn), app)
    return {}


def _page(items: list[Any], token: str | None) -> tuple[list[Any], str | None]:
    start = int(token) if token and token.isdigit() else 0
    more = start + PAGE_SIZE < len(items)
    return items[start : start + PAGE_SIZE], str(start + PAGE_SIZE) if more else None


def list_platform_applications(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    apps = [
        {"PlatformApplicationArn": app["arn"], "Attributes": app["attributes"]}
        for _, app in state(ctx).items("app/")
    ]
    page, token = _page(apps, request.get("NextToken"))
    out: dict[str, Any] = {"PlatformApplications": page}
    if token:
        out["NextToken"] = token
    return out


def delete_platform_application(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    arn = request["PlatformApplicationArn"]
    shared = state(ctx)
    for key, value in shared.items("endpoint/"):
        if value["application"] == arn:
            shared.put(key, None)
    shared.put(_app_key(arn), None)  # deleting one that is gone succeeds, as SNS's does
    return {}


# -- platform endpoints ---------------------------------------------------------------------------


def create_platform_endpoint(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    app_arn = request["PlatformApplicationArn"]
    application(ctx, app_arn)
    token = request["Token"]
    attributes = {"Token": token, "Enabled": "true"}
    if request.get("CustomUserData"):
        attributes["CustomUserData"] = request["CustomUserData"]
    attributes.update(request.get("Attributes") or {})
    shared = state(ctx)
    for _, existing in shared.items("endpoint/"):
        if existing["application"] == app_arn and existing["attributes"]["Token"] == token:
            if existing["attributes"] != attributes:
                raise sns_error("InvalidParameter#EndpointExists", arn=existing["arn"])
            return {"EndpointArn": existing["arn"]}  # idempotent, as SNS's is
    platform_and_name = app_arn.split(":app/", 1)[1]
    arn = f"arn:aws:sns:{ctx.region}:{ctx.account_id}:endpoint/{platform_and_name}/{uuid.uuid4()}"
    shared.put(_endpoint_key(arn), {"arn": arn, "application": app_arn, "attributes": attributes})
    return {"EndpointArn": arn}


def list_endpoints_by_platform_application(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    app_arn = request["PlatformApplicationArn"]
    application(ctx, app_arn)
    endpoints = [
        {"EndpointArn": e["arn"], "Attributes": e["attributes"]}
        for _, e in state(ctx).items("endpoint/")
        if e["application"] == app_arn
    ]
    page, token = _page(endpoints, request.get("NextToken"))
    out: dict[str, Any] = {"Endpoints": page}
    if token:
        out["NextToken"] = token
    return out


def get_endpoint_attributes(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    return {"Attributes": endpoint(ctx, request["EndpointArn"])["attributes"]}


def set_endpoint_attributes(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    arn = request["EndpointArn"]
    found = endpoint(ctx, arn)
    found["attributes"] = {**found["attributes"], **request["Attributes"]}
    state(ctx).put(_endpoint_key(arn), found)
    return {}


def delete_endpoint(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    state(ctx).put(_endpoint_key(request["EndpointArn"]), None)  # idempotent, as SNS's is
    return {}


# -- SMS -----------------------------------------------------------------------------------------


def set_sms_attributes(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    shared = state(ctx)
    current = shared.get("sms-attributes") or {}
    shared.put("sms-attributes", {**current, **request["attributes"]})
    return {}


def get_sms_attributes(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    current = state(ctx).get("sms-attributes") or {}
    wanted = request.get("attributes")
    if wanted:
        current = {k: v for k, v in current.items() if k in wanted}
    return {"attributes": current}


def check_if_phone_number_is_opted_out(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    number = request["phoneNumber"]
    check_phone_number(number)
    return {"isOptedOut": state(ctx).get(f"opted-out/{number}") is not None}


def list_phone_numbers_opted_out(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    numbers = [key.split("/", 1)[1] for key, _ in state(ctx).items("opted-out/")]
    page, token = _page(numbers, request.get("nextToken"))
    out: dict[str, Any] = {"phoneNumbers": page}
    if token:
        out["nextToken"] = token
    return out


def opt_in_phone_number(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    number = request["phoneNumber"]
    check_phone_number(number)
    state(ctx).put(f"opted-out/{number}", None)
    return {}


HANDLERS: dict[str, Handler] = {
    "CreatePlatformApplication": create_platform_application,
    "GetPlatformApplicationAttributes": get_platform_application_attributes,
    "SetPlatformApplicationAttributes": set_platform_application_attributes,
    "ListPlatformApplications": list_platform_applications,
    "DeletePlatformApplication": delete_platform_application,
    "CreatePlatformEndpoint": create_platform_endpoint,
    "ListEndpointsByPlatformApplication": list_endpoints_by_platform_application,
    "GetEndpointAttributes": get_endpoint_attributes,
    "SetEndpointAttributes": set_endpoint_attributes,
    "DeleteEndpoint": delete_endpoint,
    "SetSMSAttributes": set_sms_attributes,
    "GetSMSAttributes": get_sms_attributes,
    "CheckIfPhoneNumberIsOptedOut": check_if_phone_number_is_opted_out,
    "ListPhoneNumbersOptedOut": list_phone_numbers_opted_out,
    "OptInPhoneNumber": opt_in_phone_number,
}
