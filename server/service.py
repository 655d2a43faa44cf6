"""`Service`: what `tidelog serve` runs beside the store, started and stopped as one shape.

The AWS endpoint (`ServerThread`), the STOMP broker (`StompServerThread`)
and the background workers (`Workers`) are each started once and stopped
once, and each is a context manager that does both:

    with StompServerThread(store) as server:   # start() ... stop()
        ...
"""

from __future__ import annotations

import abc
from types import TracebackType
from typing import Self


class Service(abc.ABC):
    """Something that runs in the background of an open store until stopped."""

    @abc.abstractmethod
    def start(self) -> Self:
        """Start running; returns once the service does its work."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop running and join its threads."""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
