"""Optional SigV4 verification against configured access keys (`--auth FILE`).

The signature is recomputed with botocore's own signer (`SigV4Auth`), from
the headers the client says it signed, the path, the query string and the
body, with the secret of the access key named in the credential scope, and
compared in constant time. Errors are shaped as AWS shapes them:

| what | JSON services (SQS, Kinesis) | query services (SNS, SQS query) | status |
| --- | --- | --- | --- |
| no Authorization header | MissingAuthenticationTokenException | MissingAuthenticationToken | 403 |
| a malformed Authorization header | IncompleteSignatureException | IncompleteSignature | 400 |
| an unknown access key | UnrecognizedClientException | InvalidClientTokenId | 403 |
| a wrong or expired (15 min) signature | InvalidSignatureException | SignatureDoesNotMatch | 403 |

The key file holds one `ACCESS_KEY_ID SECRET_ACCESS_KEY` pair a line; blank
lines and lines starting with `#` are skipped.
"""

from __future__ import annotations

import hmac
import re
import time
from calendar import timegm
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tidelog.server.errors import AwsError

if TYPE_CHECKING:
    from tidelog.server.sts import Sessions

# AWS refuses a request signed more than 15 minutes away from its clock.
CLOCK_SKEW_SECONDS_MAX = 15 * 60
KEYS_MAX = 10_000
_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+),\s*"
    r"SignedHeaders=(?P<signed>[^,\s]+),\s*Signature=(?P<signature>[0-9a-f]{64})\s*"
)


def load_keys(path: str | Path) -> dict[str, str]:
    """The access key -> secret pairs of a key file. Raises ValueError on a bad line."""
    keys: dict[str, str] = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{path}:{number}: expected 'ACCESS_KEY_ID SECRET_ACCESS_KEY'")
        keys[parts[0]] = parts[1]
        if len(keys) > KEYS_MAX:
            raise ValueError(f"{path}: more than {KEYS_MAX} keys")
    if not keys:
        raise ValueError(f"{path}: no access keys")
    return keys


class Authenticator:
    """Checks SigV4 signatures against a fixed set of access keys. Thread-safe."""

    def __init__(self, keys: Mapping[str, str], sessions: Sessions | None = None) -> None:
        self.keys = dict(keys)
        # STS's temporary credentials (server/sts.py) sign as the file's keys do.
        self.sessions = sessions

    @classmethod
    def from_file(cls, path: str | Path) -> Authenticator:
        return cls(load_keys(path))

    def check(
        self,
        method: str,
        path: str,
        query: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        json_protocol: bool,
    ) -> None:
        """Raise AwsError unless the request is signed by a known key.

        `headers` has lower-case names. `json_protocol` picks the error codes
        (JSON services' coral names, or the query protocol's).
        """

        def fail(json_code: str, query_code: str, message: str, status: int = 403) -> AwsError:
            return AwsError(json_code if json_protocol else query_code, message, status)

        authorization = headers.get("authorization")
        if not authorization:
            raise fail(
                "MissingAuthenticationTokenException",
                "MissingAuthenticationToken",
                "Request is missing Authentication Token",
            )
        match = _AUTHORIZATION.fullmatch(authorization)
        credential = match.group("credential").split("/") if match else []
        stamp = headers.get("x-amz-date", "")
        if match is None or len(credential) != 5 or credential[4] != "aws4_request":
            raise fail(
                "IncompleteSignatureException",
                "IncompleteSignature",
                "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' "
                "in the AWS4-HMAC-SHA256 form",
                400,
            )
        if not re.fullmatch(r"[0-9]{8}T[0-9]{6}Z", stamp) or stamp[:8] != credential[1]:
            raise fail(
                "IncompleteSignatureException",
                "IncompleteSignature",
                "X-Amz-Date is missing or does not agree with the credential scope",
                400,
            )
        access_key, _, region, service, _ = credential
        secret = self.keys.get(access_key)
        if secret is None and self.sessions is not None:
            session = self.sessions.get(access_key)
            if session is not None and headers.get("x-amz-security-token") == session.token:
                secret = session.secret_access_key
        if secret is None:
            raise fail(
                "UnrecognizedClientException",
                "InvalidClientTokenId",
                "The security token included in the request is invalid.",
            )
        signed = match.group("signed").split(";")
        if "host" not in signed:
            raise fail(
                "IncompleteSignatureException",
                "IncompleteSignature",
                "SignedHeaders must include host",
                400,
            )
        signed_at = timegm(time.strptime(stamp, "%Y%m%dT%H%M%SZ"))
        if abs(time.time() - signed_at) > CLOCK_SKEW_SECONDS_MAX:
            raise fail(
                "InvalidSignatureException",
                "SignatureDoesNotMatch",
                f"Signature expired: {stamp} is more than 15 minutes from the server's time",
            )
        expected = _signature(
            access_key, secret, region, service, stamp, method, path, query, headers, signed, body
        )
        if not hmac.compare_digest(expected, match.group("signature")):
            raise fail(
                "InvalidSignatureException",
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you "
                "provided. Check your AWS Secret Access Key and signing method.",
            )


def _signature(
    access_key: str,
    secret: str,
    region: str,
    service: str,
    stamp: str,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    signed: list[str],
    body: bytes,
) -> str:
    """The signature botocore's signer gives the request as the client saw it.

    Only the headers the client signed go into the rebuilt request, since the
    signer signs every header it is handed; the timestamp is the client's.
    """
    host = headers.get("host", "")
    url = f"http://{host}{path}" + (f"?{query}" if query else "")
    request = AWSRequest(
        method=method, url=url, headers={h: headers.get(h, "") for h in signed}, data=body
    )
    request.context["timestamp"] = stamp
    # S3 signs the path as sent, without SigV4's normalisation of "." and "//".
    signer_class = S3SigV4Auth if service == "s3" else SigV4Auth
    signer = signer_class(Credentials(access_key, secret), service, region)
    canonical = signer.canonical_request(request)
    result: str = signer.signature(signer.string_to_sign(request, canonical), request)
    return result
