"""The STOMP 1.0/1.1/1.2 broker over a tidelog store (ActiveMQ's conventions).

    with StompServerThread(store) as server:   # 127.0.0.1, a free port
        conn = stomp.Connection([(server.host, server.port)])

See docs/stomp.md for what maps onto what and where tidelog differs from
ActiveMQ.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Self

import tidelog
from tidelog.server.service import Service
from tidelog.server.stomp.broker import Broker, BrokerConfig, load_users, queue_name
from tidelog.server.stomp.frames import Frame, FrameError, FrameLimits
from tidelog.server.stomp.selector import SelectorError, compile_selector

__all__ = [
    "Broker",
    "BrokerConfig",
    "Frame",
    "FrameError",
    "FrameLimits",
    "SelectorError",
    "StompServerThread",
    "compile_selector",
    "load_users",
    "queue_name",
]

PORT_DEFAULT = 61613


class StompServerThread(Service):
    """A STOMP broker over an open store, served by an asyncio loop in a thread.

    The caller owns the store. `start()` returns once the port accepts
    connections; `stop()` closes every connection (unacked messages are
    released for redelivery) and joins the thread.
    """

    def __init__(
        self,
        store: tidelog.Store,
        host: str = "127.0.0.1",
        port: int = 0,
        config: BrokerConfig | None = None,
    ) -> None:
        from tidelog.server.run import bind  # run.py imports this package

        self._socket: socket.socket = bind(host, port, "STOMP")
        self.host = host
        self.port: int = self._socket.getsockname()[1]
        self.broker = Broker(store, config)
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, daemon=True, name=f"tidelog-stomp-{self.port}"
        )

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self.broker.start(self._socket))
        except BaseException as exc:
            self._failure = exc
            self._started.set()
            return
        self._started.set()
        self._loop.run_forever()

    def start(self) -> Self:
        self._thread.start()
        self._started.wait(30)
        if self._failure is not None:
            raise RuntimeError(f"STOMP broker did not start: {self._failure}")
        return self

    def stop(self) -> None:
        if self._thread.is_alive() and self._failure is None:
            future = asyncio.run_coroutine_threadsafe(self.broker.stop(), self._loop)
            future.result(30)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop.close()
        self._socket.close()
