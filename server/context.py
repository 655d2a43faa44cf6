"""What a handler knows of its request besides the body: the store, URLs, region, account."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import tidelog

if TYPE_CHECKING:
    from tidelog.server.sns_state import KeyedState
    from tidelog.server.sts import Sessions

ACCOUNT_ID = "000000000000"
REGION_DEFAULT = "us-east-1"
# LocalStack's rule, which SDK test suites rely on for multi-account tests: an
# access key id of exactly 12 digits is the caller's account id.
_ACCOUNT_KEY = re.compile(r"[0-9]{12}")


def account_of(access_key_id: str | None, default: str) -> str:
    """The account a request acts as: its access key when that is 12 digits, else `default`."""
    if access_key_id is not None and _ACCOUNT_KEY.fullmatch(access_key_id):
        return access_key_id
    return default


class WouldWait(Exception):  # noqa: N818 - a signal to the event loop, not a failure
    """A long-polling receive found nothing: wait up to `seconds` for `queue`
    (without a thread), then make the same request again."""

    def __init__(self, queue: tidelog.Queue, seconds: float) -> None:
        super().__init__(f"long poll on {queue.name!r} for {seconds} s")
        self.queue = queue
        self.seconds = seconds


@dataclass(frozen=True, slots=True)
class Context:
    """One request's view: the open store, the endpoint's base URL, region and account.

    ARNs name the region the client signed for (SQS and Kinesis; topic ARNs
    are the library's, in us-east-1), though channels are shared by every
    region as by every account. The account
    is the caller's (`account_of`); channels are shared by every account
    (one store), so a name is one channel whichever account's URL names it.
    Topic ARNs are the library's (`tidelog.topics.ACCOUNT`, which `tidelog
    serve --account-id` sets), so they agree with the envelopes delivered.
    """

    store: tidelog.Store
    base_url: str
    region: str = REGION_DEFAULT
    account_id: str = ACCOUNT_ID
    access_key_id: str | None = None
    sessions: Sessions | None = None
    sns_state: KeyedState | None = None
    sqs_state: KeyedState | None = None
    # Long polls on the event loop (server/long_poll.py): a receive that finds
    # nothing raises WouldWait instead of blocking a thread, unless this is
    # the last look of a poll whose wait is over (poll_final).
    long_poll: bool = False
    poll_final: bool = False

    def queue_url(self, name: str) -> str:
        return f"{self.base_url}/{self.account_id}/{name}"

    def queue_arn(self, name: str) -> str:
        return f"arn:aws:sqs:{self.region}:{self.account_id}:{name}"

    def stream_arn(self, name: str) -> str:
        return f"arn:aws:kinesis:{self.region}:{self.account_id}:stream/{name}"

    def topic_arn(self, name: str) -> str:
        return f"arn:aws:sns:{self.region}:{self.account_id}:{name}"
