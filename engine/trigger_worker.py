"""The process a trigger's handler runs in (docs/triggers.md, "Worker processes").

Started by engine/triggers.py as `PYTHON trigger_worker.py REQUEST_FD RESPONSE_FD`,
with the function's code directory first on sys.path, its environment, and
stdout and stderr appended to the function's log file. It imports only the
standard library, so a configured interpreter without tidelog installed can
run it.

It imports the handler once (Lambda's init phase), then answers requests
one at a time. A frame on either pipe is a 4-byte big-endian length and that
many bytes of JSON. A request is {"request_id", "event", "deadline_ms",
"function_name", "function_arn", "memory_limit_in_mb", "version"}; a response
is {"ok": true, "result": ...} or {"ok": false, "errorType", "errorMessage",
"stackTrace"}. Before the handler runs the worker writes Lambda's START line
to the log, after it END and REPORT, so the log reads like CloudWatch's.

The worker bounds its own address space (RLIMIT_AS) to what it uses after
start plus the function's memory size, so a handler that allocates past it
gets a MemoryError (a failed invocation) rather than exhausting the machine.
A handler that exits or crashes the interpreter ends the process; the parent
sees the pipe close and reports "Runtime exited".
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import signal
import struct
import sys
import time
import traceback
from typing import Any

_LENGTH = struct.Struct(">I")
FRAME_BYTES_MAX = 64 * 1024 * 1024  # no request or response is larger (Lambda's are 6 MiB)


class LambdaContext:
    """The `context` argument, with the attributes Lambda's Python runtime gives."""

    def __init__(self, request: dict[str, Any]) -> None:
        name = request["function_name"]
        self.function_name: str = name
        self.function_version: str = request.get("version", "$LATEST")
        self.invoked_function_arn: str = request["function_arn"]
        self.memory_limit_in_mb: int = int(request["memory_limit_in_mb"])
        self.aws_request_id: str = request["request_id"]
        self.log_group_name = f"/aws/lambda/{name}"
        self.log_stream_name = f"{time.strftime('%Y/%m/%d')}/[$LATEST]{os.getpid()}"
        self.identity = None
        self.client_context = None
        self._deadline_ms: int = int(request["deadline_ms"])

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))

    def __repr__(self) -> str:
        return f"LambdaContext({self.function_name!r}, {self.aws_request_id!r})"


def _read_exactly(fd: int, count: int) -> bytes | None:
    chunks = []
    while count:
        chunk = os.read(fd, count)
        if not chunk:
            return None
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int) -> Any:
    """The next frame's JSON, or None at end of input."""
    head = _read_exactly(fd, _LENGTH.size)
    if head is None:
        return None
    (length,) = _LENGTH.unpack(head)
    if length > FRAME_BYTES_MAX:
        raise ValueError(f"frame of {length} bytes, over {FRAME_BYTES_MAX}")
    body = _read_exactly(fd, length)
    if body is None:
        return None
    return json.loads(body)


def write_frame(fd: int, value: Any) -> None:
    body = json.dumps(value, separators=(",", ":")).encode()
    data = _LENGTH.pack(len(body)) + body
    while data:
        written = os.write(fd, data)
        data = data[written:]


def _error(exc: BaseException) -> dict[str, Any]:
    return {
        "ok": False,
        "errorType": type(exc).__name__,
        "errorMessage": str(exc),
        "stackTrace": traceback.format_exception(exc)[1:],
    }


def load_handler(spec: str) -> Any:
    """`package.module:function` or Lambda's `module.function`."""
    module_name, sep, attribute = spec.partition(":")
    if not sep:
        module_name, _, attribute = spec.rpartition(".")
    if not module_name or not attribute:
        raise ImportError(f"handler {spec!r}: expected module.function or module:function")
    module = importlib.import_module(module_name)
    function = module
    for part in attribute.split("."):
        function = getattr(function, part)
    if not callable(function):
        raise TypeError(f"handler {spec!r}: not callable")
    return function


def _limit_memory(memory_mb: int) -> None:
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[0])
        used = pages * os.sysconf("SC_PAGE_SIZE")
        limit = used + memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (OSError, ValueError):  # no /proc: run unbounded rather than not at all
        pass


def main(argv: list[str]) -> int:
    # The script's own folder (tidelog's modules) must not shadow the user's modules.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    request_fd, response_fd = int(argv[1]), int(argv[2])
    handler_spec, memory_mb = argv[3], int(argv[4])
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    sys.stderr.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    try:
        handler = load_handler(handler_spec)
        init_error = None
    except BaseException as exc:  # reported with every request, as Lambda's init errors
        traceback.print_exc()
        handler, init_error = None, exc
    _limit_memory(memory_mb)
    write_frame(response_fd, {"ready": True})
    while True:
        request = read_frame(request_fd)
        if request is None:
            return 0
        request_id = request["request_id"]
        print(f"START RequestId: {request_id} Version: $LATEST", flush=True)
        start = time.perf_counter()
        # A backstop: should the parent die, a hung handler still ends past its deadline.
        signal.alarm(max(1, (int(request["deadline_ms"]) - int(time.time() * 1000)) // 1000 + 5))
        if init_error is not None:
            response = _error(init_error)
            response["errorType"] = "Runtime.ImportModuleError"
            response["errorMessage"] = f"Unable to import module: {init_error}"
        else:
            try:
                result = handler(request["event"], LambdaContext(request))
                json.dumps(result)  # a result that is not JSON fails the invocation, as Lambda
                response = {"ok": True, "result": result}
            except SystemExit:
                raise  # sys.exit() in a handler ends the runtime, as it does on Lambda
            except BaseException as exc:
                traceback.print_exc()
                response = _error(exc)
        signal.alarm(0)
        duration_ms = (time.perf_counter() - start) * 1000
        used_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        print(f"END RequestId: {request_id}", flush=True)
        print(
            f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
            f"Memory Size: {memory_mb} MB\tMax Memory Used: {used_mb} MB",
            flush=True,
        )
        response["duration_ms"] = duration_ms
        write_frame(response_fd, response)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
