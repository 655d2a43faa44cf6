"""Worker processes that run a function's handler (engine/trigger_worker.py).

A `Pool` keeps warm worker processes for one function version and hands
each invocation to an idle one (starting a new one, up to `size_max`, when
none is idle). A worker that exits, is killed by a signal, or does not answer
within the function's timeout (then it is killed) fails that invocation
with Lambda's error text, and is replaced on the next one: no handler can
take the calling process down. Thread-safe: any thread may invoke.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from tidelog import trigger_worker
from tidelog.trigger_events import function_arn

WORKER_SCRIPT = trigger_worker.__file__
START_SECONDS_MAX = 60.0  # a worker that imports its handler for longer is given up on


@dataclass(frozen=True, slots=True)
class Spec:
    """What a worker is started with: one function version."""

    name: str
    handler: str
    timeout: int
    memory_size: int
    environment: tuple[tuple[str, str], ...] = ()
    code_dir: str | None = None
    python: str | None = None
    log_path: str | None = None
    version: str = ""  # the function's revision and code: a new one means new workers


@dataclass(slots=True)
class Invocation:
    """One invocation's outcome. `error` is None on success, else Lambda's
    {"errorType", "errorMessage", ...}; `function_error` is "Unhandled" then."""

    request_id: str
    result: Any = None
    error: dict[str, Any] | None = None
    duration_ms: float = 0.0
    log_start: int = 0
    log_end: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def function_error(self) -> str | None:
        return None if self.error is None else "Unhandled"


class _Died(Exception):
    pass


class _Process:
    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        request_r, self.request_w = os.pipe()
        self.response_r, response_w = os.pipe()
        env = dict(os.environ)
        env.update(spec.environment)
        env.update(
            AWS_LAMBDA_FUNCTION_NAME=spec.name,
            AWS_LAMBDA_FUNCTION_MEMORY_SIZE=str(spec.memory_size),
            AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
            AWS_REGION="us-east-1",
            AWS_DEFAULT_REGION="us-east-1",
            LAMBDA_TASK_ROOT=spec.code_dir or os.getcwd(),
            _HANDLER=spec.handler,
        )
        if spec.code_dir is not None:  # the code directory first, as Lambda's /var/task
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (spec.code_dir, env.get("PYTHONPATH", "")) if p
            )
        log = open(spec.log_path, "ab") if spec.log_path else None  # noqa: SIM115
        output: Any = subprocess.DEVNULL if log is None else log
        try:
            self.popen = subprocess.Popen(
                [
                    spec.python or sys.executable,
                    WORKER_SCRIPT,
                    str(request_r),
                    str(response_w),
                    spec.handler,
                    str(spec.memory_size),
                ],
                pass_fds=(request_r, response_w),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                env=env,
                cwd=spec.code_dir,
                start_new_session=True,  # a signal to our terminal's group is not the handler's
            )
        finally:
            os.close(request_r)
            os.close(response_w)
            if log is not None:
                log.close()
        self._buffer = b""

    def _read_frame(self, deadline: float) -> Any:
        length = trigger_worker._LENGTH
        while True:
            if len(self._buffer) >= length.size:
                (size,) = length.unpack(self._buffer[: length.size])
                if len(self._buffer) >= length.size + size:
                    body = self._buffer[length.size : length.size + size]
                    self._buffer = self._buffer[length.size + size :]
                    return json.loads(body)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            ready, _, _ = select.select([self.response_r], [], [], left)
            if not ready:
                raise TimeoutError
            chunk = os.read(self.response_r, 1 << 20)
            if not chunk:
                raise _Died(self._exit_text())
            self._buffer += chunk

    def _exit_text(self) -> str:
        try:
            code = self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.popen.wait()
        if code < 0:
            return f"Runtime exited with error: signal: {signal.Signals(-code).name.lower()}"
        return f"Runtime exited with error: exit status {code}"

    def wait_ready(self) -> None:
        self._read_frame(time.monotonic() + START_SECONDS_MAX)

    def call(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        trigger_worker.write_frame(self.request_w, request)
        response: dict[str, Any] = self._read_frame(time.monotonic() + timeout)
        return response

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.popen.kill()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.request_w)  # end of input: the worker returns
        try:
            self.popen.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.kill()
            self.popen.wait()
        with contextlib.suppress(OSError):
            os.close(self.response_r)

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None


class Pool:
    """Warm worker processes for one function version (see the module docstring)."""

    def __init__(self, spec: Spec, size_max: int = 64) -> None:
        self.spec = spec
        self.size_max = size_max
        self._idle: list[_Process] = []
        self._count = 0
        self._cond = threading.Condition()
        self._closed = False

    def _take(self) -> _Process:
        with self._cond:
            while True:
                if self._closed:
                    raise RuntimeError("pool closed")
                while self._idle:
                    process = self._idle.pop()
                    if process.alive:
                        return process
                    self._count -= 1
                    process.close()
                if self._count < self.size_max:
                    self._count += 1
                    break
                self._cond.wait()
        try:
            process = _Process(self.spec)
            process.wait_ready()
        except BaseException:
            with self._cond:
                self._count -= 1
                self._cond.notify()
            raise
        return process

    def _give_back(self, process: _Process | None) -> None:
        with self._cond:
            if process is not None and not self._closed and process.alive:
                self._idle.append(process)
            else:
                self._count -= 1
                if process is not None:
                    process.close()
            self._cond.notify()

    def invoke(self, event: Any, *, request_id: str | None = None) -> Invocation:
        """Run the handler on `event` in a worker process; blocks for up to the timeout.

        Never raises for what the handler does: a raised exception, an exit,
        a crash, a hang past the timeout or a memory blow-up come back as
        `Invocation.error` in Lambda's words.
        """
        spec = self.spec
        request_id = request_id or str(uuid.uuid4())
        log_start = _size(spec.log_path)
        started = time.perf_counter()
        deadline_ms = int(time.time() * 1000) + spec.timeout * 1000
        request = {
            "request_id": request_id,
            "event": event,
            "deadline_ms": deadline_ms,
            "function_name": spec.name,
            "function_arn": function_arn(spec.name),
            "memory_limit_in_mb": spec.memory_size,
        }
        out = Invocation(request_id, log_start=log_start)
        process: _Process | None = None
        try:
            process = self._take()
            response = process.call(request, spec.timeout)
        except TimeoutError:
            if process is not None:
                process.kill()
                process.close()
                process = None
            out.error = {
                "errorType": "Sandbox.Timedout",
                "errorMessage": f"RequestId: {request_id} Error: Task timed out after "
                f"{spec.timeout:.2f} seconds",
            }
            _append_log(spec.log_path, out.error["errorMessage"])
        except _Died as exc:
            if process is not None:
                process.close()
                process = None
            out.error = {
                "errorType": "Runtime.ExitError",
                "errorMessage": f"RequestId: {request_id} Error: {exc}",
            }
            _append_log(spec.log_path, out.error["errorMessage"])
        except (OSError, ValueError) as exc:  # the interpreter would not start
            if process is not None:
                process.kill()
                process.close()
                process = None
            out.error = {"errorType": "Runtime.InvalidEntrypoint", "errorMessage": str(exc)}
        else:
            if response.get("ok"):
                out.result = response.get("result")
            else:
                out.error = {
                    key: response[key]
                    for key in ("errorMessage", "errorType", "stackTrace")
                    if key in response
                }
        finally:
            self._give_back(process)
        out.duration_ms = (time.perf_counter() - started) * 1000
        out.log_end = _size(spec.log_path)
        return out

    def close(self) -> None:
        """Stop the idle workers; busy ones stop when their invocation ends."""
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._count -= len(idle)
            self._cond.notify_all()
        for process in idle:
            process.close()


def _size(path: str | None) -> int:
    if path is None:
        return 0
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _append_log(path: str | None, line: str) -> None:
    if path is None:
        return
    with contextlib.suppress(OSError), open(path, "a") as log:
        log.write(line + "\n")


def read_log(path: str | None, start: int, end: int, limit: int = 4096) -> str:
    """The log's bytes between two offsets (the last `limit`), as text."""
    if path is None or end <= start:
        return ""
    start = max(start, end - limit)
    try:
        with open(path, "rb") as log:
            log.seek(start)
            return log.read(end - start).decode("utf-8", "replace")
    except OSError:
        return ""
