"""A server a test, the demo or a benchmark runs beside itself (pebble, the ACME double):
``start()`` and ``stop()``, and a ``with`` block that starts it and stops it however the block
ends, so a failing test leaves no process or thread behind."""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self


class BackgroundServer(ABC):
    @abstractmethod
    def start(self) -> Self:
        """Starts the server and returns once it answers."""

    @abstractmethod
    def stop(self) -> None:
        """Stops the server and frees what it held."""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
