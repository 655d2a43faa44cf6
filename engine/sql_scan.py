"""Reading a channel's logs for a SQL query in worker processes.

Decoding records is pure Python and holds the GIL, so one process reads at
most one core's worth of log. For a large scan, `store.sql` splits a table's
logs (a stream's shards) between worker processes, `python -m
tidelog.sql_scan`: each opens the store read-only, reads the offset ranges
it is given (fixed when the query started, so the snapshot is the same as
in-process) and writes Arrow record batches to its stdout as an Arrow IPC
stream. The parent hands the batches to DuckDB as they arrive; a bounded
queue per query keeps memory bounded. A damaged record in a worker raises
the same Corruption in the parent, with where it is.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from tidelog.segments.errors import Corruption, Error
from tidelog.segments.logstore import LogInfo, LogStore

# Below this many bytes of segments to read, spawning workers (each pays an
# interpreter start and the pyarrow import, ~0.3 s) costs more than it saves.
PARALLEL_SCAN_BYTES_MIN = 128 * 1024 * 1024
_QUEUED_BATCHES_PER_WORKER = 2
_DONE = object()


def part_spec(part: Any) -> dict[str, Any]:
    """A `sql._Part` as JSON for a worker."""
    return {
        "id": part.info.id,
        "name": part.info.name,
        "segment_bytes_max": part.info.segment_bytes_max,
        "shard_index": part.shard_index,
        "start": part.start,
        "stop": part.stop,
    }


def split_parts(parts: Sequence[Any], sizes: Sequence[int], workers: int) -> list[list[Any]]:
    """Parts dealt to `workers` groups, largest first to the least loaded."""
    groups: list[list[Any]] = [[] for _ in range(workers)]
    loads = [0] * workers
    for size, part in sorted(zip(sizes, parts, strict=True), key=lambda p: -p[0]):
        least = loads.index(min(loads))
        groups[least].append(part)
        loads[least] += size
    return [g for g in groups if g]


def parallel_batches(
    path: str, kind: str, groups: list[list[Any]], columns: Sequence[str], batch_rows: int
) -> Iterator[Any]:
    """Yield the record batches of every part in `groups`, one worker a group.

    Batches of different workers interleave. Closing the iterator early (a
    LIMIT satisfied) kills the workers.
    """
    import pyarrow as pa

    batches: queue.Queue[Any] = queue.Queue(_QUEUED_BATCHES_PER_WORKER * len(groups))
    stop = threading.Event()
    procs: list[subprocess.Popen[bytes]] = []
    errs: list[Any] = []

    def offer(item: object) -> bool:
        """Queue `item` unless the query stopped reading; False once it has."""
        while not stop.is_set():
            try:
                batches.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def pump(proc: subprocess.Popen[bytes], err: Any) -> None:
        outcome: object = _DONE
        try:
            assert proc.stdout is not None
            with pa.ipc.open_stream(proc.stdout) as reader:
                for batch in reader:
                    if not offer(batch):
                        return
        except Exception as exc:  # the stream ended early: the exit status says why
            outcome = exc
        code = proc.wait()
        if code != 0:
            outcome = _worker_error(code, err)
        offer(outcome)

    threads = []
    files = contextlib.ExitStack()
    try:
        for group in groups:
            # A file, not a pipe, for stderr: it never fills up and stalls a worker.
            err = files.enter_context(tempfile.TemporaryFile())  # noqa: SIM115
            errs.append(err)
            proc = subprocess.Popen(
                [sys.executable, "-m", "tidelog.sql_scan"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
            )
            procs.append(proc)
            spec = {
                "path": path,
                "kind": kind,
                "columns": list(columns),
                "batch_rows": batch_rows,
                "parts": [part_spec(p) for p in group],
            }
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(spec).encode())
            proc.stdin.close()
            thread = threading.Thread(target=pump, args=(proc, err), daemon=True)
            thread.start()
            threads.append(thread)
        running = len(procs)
        while running:
            item = batches.get()
            if item is _DONE:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        stop.set()
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        for thread in threads:
            thread.join()
        for proc in procs:
            proc.wait()
            assert proc.stdout is not None
            proc.stdout.close()
        files.close()


def _worker_error(code: int, err: Any) -> Error:
    err.seek(0)
    text = err.read().decode("utf-8", "replace").strip()
    last = text.splitlines()[-1] if text else ""
    try:
        doc = json.loads(last)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and doc.get("type") == "Corruption":
        return Corruption(
            doc["reason"],
            log=doc["log"],
            path=doc["path"],
            offset=doc["offset"],
            position=doc["position"],
        )
    if isinstance(doc, dict) and "message" in doc:
        return Error(f"sql: a scan worker failed: {doc['message']}")
    return Error(f"sql: a scan worker exited with status {code}: {last or 'no message'}")


def _report(exc: Exception) -> int:
    """Tell the parent (on stderr, read by _worker_error) why this worker failed."""
    print(json.dumps({"type": type(exc).__name__, "message": str(exc)}), file=sys.stderr)
    return 1


def _main() -> int:
    import pyarrow as pa

    from tidelog.sql import _batches, _Channel, _Part, _schema

    try:
        spec = json.loads(sys.stdin.read())
        logs = LogStore(spec["path"], readonly=True)
    except Exception as exc:
        return _report(exc)
    try:
        parts = [
            _Part(
                LogInfo(id=p["id"], name=p["name"], segment_bytes_max=p["segment_bytes_max"]),
                p["shard_index"],
                p["start"],
                p["stop"],
            )
            for p in spec["parts"]
        ]
        channel = _Channel(spec["kind"], "", parts)
        columns = spec["columns"]
        out = pa.output_stream(sys.stdout.buffer)
        with pa.ipc.new_stream(out, _schema(pa, spec["kind"], columns)) as writer:
            for batch in _batches(logs, channel, columns, spec["batch_rows"], pa):
                writer.write_batch(batch)
    except Corruption as exc:
        fields = ("reason", "log", "path", "offset", "position")
        doc = {"type": "Corruption", **{k: getattr(exc, k) for k in fields}}
        print(json.dumps(doc), file=sys.stderr)
        return 3
    except BrokenPipeError:  # the parent stopped reading (a LIMIT): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        return _report(exc)
    finally:
        logs.close()
    return 0


if __name__ == "__main__":
    sys.exit(_main())
