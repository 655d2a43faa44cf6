"""STS as SDK code uses it against a local endpoint (query protocol, XML replies).

GetCallerIdentity answers the caller's account (server/context.py: the
server's, or the access key when it is 12 digits, or the account of the role
a session was issued for). AssumeRole and GetSessionToken issue temporary
credentials (an ASIA... key, a secret and a session token) kept in the
app's `Sessions` until they expire or the store is reset; with `--auth` they
sign requests as the keys of the key file do (server/auth.py). Nothing is
checked against IAM: any caller may assume any role, as with a local emulator.
"""

from __future__ import annotations

import re
import secrets
import string
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tidelog.server.context import Context
from tidelog.server.errors import sts_error

Handler = Callable[[Context, dict[str, Any]], dict[str, Any]]

NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"
VERSION = "2011-06-15"
# STS's limits: AssumeRole 900 s to 12 h (the role's maximum, 1 h by default
# here as for a role created without one); GetSessionToken 900 s to 36 h.
ASSUME_SECONDS = (900, 43_200, 3_600)
SESSION_SECONDS = (900, 129_600, 43_200)
SESSIONS_MAX = 100_000  # a bound on what a client can make the server hold
_ROLE_ARN = re.compile(
    r"arn:aws:iam::(?P<account>[0-9]{12}):role/(?P<path>(?:[^/]+/)*)(?P<name>[^/]+)"
)
_SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}")
_KEY_CHARS = string.ascii_uppercase + string.digits


@dataclass(frozen=True, slots=True)
class Session:
    """Temporary credentials: who they act as, and until when (seconds since the epoch)."""

    access_key_id: str
    secret_access_key: str
    token: str
    account_id: str
    arn: str
    user_id: str
    expires_at: float


class Sessions:
    """The temporary credentials issued by this server. Thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._by_key: dict[str, Session] = {}

    def issue(self, account_id: str, arn: str, user_id: str, seconds: int) -> Session:
        session = Session(
            "ASIA" + "".join(secrets.choice(_KEY_CHARS) for _ in range(16)),
            secrets.token_urlsafe(30),
            secrets.token_urlsafe(96),
            account_id,
            arn,
            user_id,
            self._clock() + seconds,
        )
        with self._lock:
            if len(self._by_key) >= SESSIONS_MAX:
                now = self._clock()
                self._by_key = {k: s for k, s in self._by_key.items() if s.expires_at > now}
            if len(self._by_key) >= SESSIONS_MAX:
                raise sts_error("LimitExceeded", sessions=SESSIONS_MAX)
            self._by_key[session.access_key_id] = session
        return session

    def get(self, access_key_id: str) -> Session | None:
        """The unexpired session of `access_key_id`, or None."""
        with self._lock:
            session = self._by_key.get(access_key_id)
        if session is None or session.expires_at <= self._clock():
            return None
        return session

    def clear(self) -> None:
        with self._lock:
            self._by_key.clear()


def _seconds(request: dict[str, Any], bounds: tuple[int, int, int]) -> int:
    low, high, default = bounds
    seconds = request.get("DurationSeconds", default)
    if not low <= seconds <= high:
        raise sts_error(
            "ValidationError", field="durationSeconds", value=seconds, low=low, high=high
        )
    return int(seconds)


def _credentials(session: Session) -> dict[str, Any]:
    return {
        "AccessKeyId": session.access_key_id,
        "SecretAccessKey": session.secret_access_key,
        "SessionToken": session.token,
        "Expiration": datetime.fromtimestamp(session.expires_at, UTC),
    }


def get_caller_identity(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    session = ctx.sessions.get(ctx.access_key_id) if ctx.sessions and ctx.access_key_id else None
    if session is not None:
        return {"UserId": session.user_id, "Account": session.account_id, "Arn": session.arn}
    key = ctx.access_key_id or "AKIAIOSFODNN7EXAMPLE"
    return {
        "UserId": key,
        "Account": ctx.account_id,
        "Arn": f"arn:aws:iam::{ctx.account_id}:root",
    }


def assume_role(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    match = _ROLE_ARN.fullmatch(request["RoleArn"])
    if match is None:
        raise sts_error("ValidationError.RoleArn", value=request["RoleArn"])
    name = request["RoleSessionName"]
    if not _SESSION_NAME.fullmatch(name):
        raise sts_error("ValidationError.RoleSessionName", value=name)
    seconds = _seconds(request, ASSUME_SECONDS)
    role_id = "AROA" + "".join(secrets.choice(_KEY_CHARS) for _ in range(17))
    arn = f"arn:aws:sts::{match['account']}:assumed-role/{match['name']}/{name}"
    session = _sessions(ctx).issue(match["account"], arn, f"{role_id}:{name}", seconds)
    return {
        "Credentials": _credentials(session),
        "AssumedRoleUser": {"AssumedRoleId": session.user_id, "Arn": arn},
        "PackedPolicySize": 0,
    }


def get_session_token(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    seconds = _seconds(request, SESSION_SECONDS)
    identity = get_caller_identity(ctx, request)
    session = _sessions(ctx).issue(
        identity["Account"], identity["Arn"], identity["UserId"], seconds
    )
    return {"Credentials": _credentials(session)}


def get_access_key_info(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    session = _sessions(ctx).get(request["AccessKeyId"])
    return {"Account": session.account_id if session else ctx.account_id}


def _sessions(ctx: Context) -> Sessions:
    if ctx.sessions is None:
        raise sts_error("InternalError", reason="this endpoint issues no sessions")
    return ctx.sessions


HANDLERS: dict[str, Handler] = {
    "GetCallerIdentity": get_caller_identity,
    "AssumeRole": assume_role,
    "GetSessionToken": get_session_token,
    "GetAccessKeyInfo": get_access_key_info,
}
