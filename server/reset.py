"""The test-isolation call of `tidelog serve --reset-api`: drop every channel.

Suites written for moto's server call `POST /moto-api/reset` before each test,
and LocalStack's call `POST /_localstack/state/reset`; with `--reset-api` both
answer here and leave the store as a new one would be: no topics (and so no
subscriptions), queues, streams, delivery streams, SQL applications or server
state (SNS platform applications, SMS settings, STS sessions, deliveries).
S3 buckets are kept: they are files a delivery stream wrote, not channels.
Off by default, since one unauthenticated POST deletes everything.
"""

from __future__ import annotations

import tidelog

RESET_PATHS = frozenset({"/moto-api/reset", "/_localstack/state/reset"})
# The logs the library's channels own are named "<kind>/...".
MODEL_LOG_PREFIXES = frozenset({"stream", "queue", "topic", "delivery", "sql"})


def drop_everything(store: tidelog.Store) -> int:
    """Delete every channel of the store; returns how many were deleted.

    Not atomic across channels: a request served meanwhile may see some gone.
    A channel deleted by someone else meanwhile is skipped.
    """
    deleted = 0
    groups = (
        (store.applications, store.delete_application),
        (store.delivery_streams, store.delete_delivery_stream),
        (store.topics, store.delete_topic),
        (store.streams, store.delete_stream),
        (store.queues, store.delete_queue),
    )
    for listing, delete in groups:
        for channel in listing():
            try:
                delete(channel.name)
            except tidelog.NotFound:
                continue
            deleted += 1
    for log in store.logs():  # plain logs (SNS's state and deliveries among them)
        if log.name.split("/", 1)[0] in MODEL_LOG_PREFIXES:
            continue  # a channel's own log, whose channel someone created meanwhile
        try:
            store.delete_log(log.name)
        except tidelog.NotFound:
            continue
        deleted += 1
    return deleted
