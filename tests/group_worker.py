"""One consumer-group worker process for tests/test_stream_groups_procs.py and bench/.

    python group_worker.py DATA STREAM GROUP WORKER_ID LOG_FILE LEASE_MS [BATCH [EVERY]]

Runs a worker of GROUP over STREAM until SIGTERM (then shuts down
gracefully). Its processors checkpoint every EVERY batches (default 1) and
on shutdown_requested. Every lease event of the worker (the `tidelog.groups` logger's
`lease_event`) and every batch its processors get and checkpoint is one JSON
line in LOG_FILE, flushed as it happens, so a SIGKILL leaves a whole log.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from typing import Any

import tidelog


class JsonLines(logging.Handler):
    """Writes each record's `lease_event` (or `test_event`) as a JSON line."""

    def __init__(self, path: str) -> None:
        super().__init__(logging.DEBUG)
        self.file = open(path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
        self.lock_ = threading.Lock()

    def write(self, event: dict[str, Any]) -> None:
        with self.lock_:
            self.file.write(json.dumps(event) + "\n")

    def emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, "lease_event", None)
        if event is not None:
            self.write(event)


def main() -> None:
    data, stream_name, group_name, worker_id, log_file, lease_ms = sys.argv[1:7]
    batch = int(sys.argv[7]) if len(sys.argv) > 7 else 50
    every = int(sys.argv[8]) if len(sys.argv) > 8 else 1
    out = JsonLines(log_file)
    groups_log = logging.getLogger("tidelog.groups")
    groups_log.setLevel(logging.DEBUG)
    groups_log.addHandler(out)

    class Processor(tidelog.RecordProcessor):
        shard = ""
        batches = 0

        def initialize(self, shard_id: str, checkpoint: str | None) -> None:
            self.shard = shard_id

        def process_records(
            self, records: list[tidelog.StreamRecord], checkpointer: tidelog.Checkpointer
        ) -> None:
            out.write(
                {
                    "what": "processed",
                    "worker": worker_id,
                    "shard": self.shard,
                    "epoch": checkpointer.epoch,
                    "seqs": [r.sequence_number for r in records],
                    "at_ms": int(time.time() * 1000),
                }
            )
            self.batches += 1
            if self.batches % every:
                return
            checkpointer.checkpoint()
            out.write(
                {
                    "what": "checkpointed",
                    "worker": worker_id,
                    "shard": self.shard,
                    "epoch": checkpointer.epoch,
                    "seq": records[-1].sequence_number,
                }
            )

        def shutdown_requested(self, checkpointer: tidelog.Checkpointer) -> None:
            checkpointer.checkpoint()  # everything handed over was processed

    with tidelog.open(data) as store:
        group = store.stream(stream_name).consumer_group(group_name)
        worker = group.worker(Processor, worker_id=worker_id, lease_ms=int(lease_ms), batch=batch)
        signal.signal(signal.SIGTERM, lambda signum, frame: worker.stop())
        out.write({"what": "started", "worker": worker_id, "at_ms": int(time.time() * 1000)})
        worker.run()
        out.write({"what": "stopped", "worker": worker_id, "at_ms": int(time.time() * 1000)})


if __name__ == "__main__":
    main()
