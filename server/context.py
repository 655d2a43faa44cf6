"""What a handler knows of its request besides the body: the store, URLs, region, account."""

from __future__ import annotations

from dataclasses import dataclass

import tidelog

ACCOUNT_ID = "000000000000"
REGION_DEFAULT = "us-east-1"


@dataclass(frozen=True, slots=True)
class Context:
    """One request's view: the open store, the endpoint's base URL and the region.

    ARNs use one region and account whatever region the client signed for
    (signatures are not verified): the library's topics put
    arn:aws:sns:us-east-1:000000000000:NAME into the envelopes they deliver,
    and every ARN the endpoint hands out agrees with them.
    """

    store: tidelog.Store
    base_url: str
    region: str = REGION_DEFAULT

    def queue_url(self, name: str) -> str:
        return f"{self.base_url}/{ACCOUNT_ID}/{name}"

    def queue_arn(self, name: str) -> str:
        return f"arn:aws:sqs:{self.region}:{ACCOUNT_ID}:{name}"

    def stream_arn(self, name: str) -> str:
        return f"arn:aws:kinesis:{self.region}:{ACCOUNT_ID}:stream/{name}"

    def topic_arn(self, name: str) -> str:
        return f"arn:aws:sns:{self.region}:{ACCOUNT_ID}:{name}"
