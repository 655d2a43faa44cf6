"""What SNS keeps beside the library's topics: mobile push, SMS, non-queue subscriptions,
topic policies, and the deliveries a local endpoint cannot make.

Plain logs in the store (so `tidelog ls` lists them, and a restart or
another process sees them):

- `sns-state`: a compacted keyed log. Each record's key names an entity
  (`app/ARN`, `endpoint/ARN`, `sms-attributes`, `opted-out/NUMBER`,
  `subscription/ARN`, `policy/TOPIC`), its value is the entity's JSON, and an
  empty value deletes it; the latest record of a key wins. The state is read
  back by replaying the log from where this process last read it.
- `sqs-state` (the same shape): the queue attributes the library keeps no
  field for (`queue/NAME` -> {"Policy": ..., "KmsMasterKeyId": ...}).
- `sns-deliveries`: one JSON record per message SNS would have sent to an SMS
  number, an email address or a platform endpoint, which no local endpoint
  can reach: `{"protocol", "endpoint", "topic_arn", "message_id", "message",
  "subject", "attributes", "timestamp_ms"}`. Read them from Python with
  `store.log("sns-deliveries").read()` (values are JSON), or `tidelog tail sns-deliveries`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import tidelog

STATE_LOG = "sns-state"
SQS_STATE_LOG = "sqs-state"  # queue attributes the library does not keep (Policy, KMS)
DELIVERIES_LOG = "sns-deliveries"
# Bounds on what clients can make the server hold in memory.
ENTITIES_MAX = 100_000
ENTITY_BYTES_MAX = 256 * 1024


class KeyedState:
    """The keyed state of a compacted plain log, cached per process. Thread-safe.

    Writes append to the log and then apply locally; reads first catch up
    with records other processes appended.
    """

    def __init__(self, store: tidelog.Store, log_name: str = STATE_LOG) -> None:
        self._store = store
        self._log_name = log_name
        self._lock = threading.Lock()
        self._entities: dict[str, Any] = {}
        self._read_to = 0
        self._log_id: object = None

    def _log(self) -> tidelog.Log | None:
        """The state's log, or None before its first write (reads cost no commit)."""
        try:
            return self._store.log(self._log_name)
        except tidelog.NotFound:
            return None

    def _writable_log(self) -> tidelog.Log:
        log = self._log()  # (a Log is falsy when empty: compare with None)
        return self._store.create_log(self._log_name, exist_ok=True) if log is None else log

    def _caught_up(self) -> None:
        log = self._log()
        if log is None:  # never written, or dropped by a reset
            self._entities.clear()
            self._read_to = 0
            self._log_id = None
        else:
            self._catch_up(log)

    def _catch_up(self, log: tidelog.Log) -> None:
        if log.info.id != self._log_id:  # a new log (first use, or after a reset)
            self._entities.clear()
            self._read_to = 0
            self._log_id = log.info.id
        for record in log.read(max(self._read_to, log.start_offset)):
            key = record.key.decode()
            if record.value:
                self._entities[key] = json.loads(record.value)
            else:
                self._entities.pop(key, None)
            self._read_to = record.offset + 1

    def get(self, key: str) -> Any:
        with self._lock:
            self._caught_up()
            return self._entities.get(key)

    def items(self, prefix: str) -> list[tuple[str, Any]]:
        """The (key, value) pairs whose key starts with `prefix`, in the order first written."""
        with self._lock:
            self._caught_up()
            return [(k, v) for k, v in self._entities.items() if k.startswith(prefix)]

    def put(self, key: str, value: Any) -> None:
        """Set (a JSON-able value) or, with None, delete `key`. Durable when it returns."""
        data = b"" if value is None else json.dumps(value, separators=(",", ":")).encode()
        if len(data) > ENTITY_BYTES_MAX:
            raise tidelog.InvalidArgument(
                f"{self._log_name} {key!r}: over {ENTITY_BYTES_MAX} bytes"
            )
        with self._lock:
            self._caught_up()
            if value is None and key not in self._entities:
                return  # nothing to delete: no commit
            log = self._writable_log()
            self._catch_up(log)
            growing = value is not None and key not in self._entities
            if growing and len(self._entities) >= ENTITIES_MAX:
                raise tidelog.InvalidArgument(f"{self._log_name}: over {ENTITIES_MAX} entities")
            log.append(data, key.encode())
            self._catch_up(log)

    def forget(self) -> None:
        """Drop the cache (the store was reset)."""
        with self._lock:
            self._entities.clear()
            self._read_to = 0
            self._log_id = None


def record_delivery(
    store: tidelog.Store,
    protocol: str,
    endpoint: str,
    topic_arn: str | None,
    message_id: str,
    message: str,
    subject: str | None = None,
    attributes: dict[str, Any] | None = None,
) -> None:
    """Keep one delivery SNS would have made (see the module docstring). Durable."""
    record = {
        "protocol": protocol,
        "endpoint": endpoint,
        "topic_arn": topic_arn,
        "message_id": message_id,
        "message": message,
        "subject": subject,
        "attributes": attributes or {},
        "timestamp_ms": int(time.time() * 1000),
    }
    try:
        log = store.log(DELIVERIES_LOG)
    except tidelog.NotFound:
        log = store.create_log(DELIVERIES_LOG, exist_ok=True)
    log.append(json.dumps(record).encode(), protocol.encode())


def deliveries(store: tidelog.Store) -> Iterator[dict[str, Any]]:
    """The deliveries kept so far, oldest first (none when the log does not exist)."""
    try:
        log = store.log(DELIVERIES_LOG)
    except tidelog.NotFound:
        return
    for record in log.read(log.start_offset):
        yield json.loads(record.value)


SnsState = KeyedState  # the SNS state is one KeyedState over `sns-state`
