"""A running step's log lines, sent live as the step notes them, best effort.

``LiveLines.send(task_id, line)`` consumes each line a step's ``StepLog`` notes (the same text
the task's recorded log gets, commands already masked) and must neither wait nor fail: the
step is never slowed or stopped for it. ``BufferedLiveLines`` is that sink: it keeps up to
``capacity`` lines in memory and a background task hands them, in order, to a ``LineOutlet``
(ops wires a broadcast on the broker's live channel); a line that finds the buffer full is
dropped and counted (``dropped``), an outlet failure loses that line (``failed``). Nothing of
it is recorded: the task's log stays what the step's result carries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Protocol

log = logging.getLogger(__name__)

DEFAULT_CAPACITY = 1000


class LiveLines(Protocol):
    def send(self, task_id: str, line: str) -> None:
        """Takes ``line`` for whoever follows ``task_id`` now; returns at once, never raises."""

    async def close(self) -> None:
        """Stops sending (the role handler closes it with its drivers)."""


class LineOutlet(Protocol):
    async def send(self, task_id: str, line: str) -> None:
        """Sends one line out (may wait on a broker, may raise)."""


class BufferedLiveLines:
    """``LiveLines`` over a bounded buffer drained into ``outlet`` by a task of its own."""

    def __init__(self, outlet: LineOutlet, *, capacity: int = DEFAULT_CAPACITY) -> None:
        self._outlet = outlet
        self._capacity = capacity
        self._buffer: deque[tuple[str, str]] = deque()
        self._waiting = asyncio.Event()
        self._drainer: asyncio.Task[None] | None = None
        self._closed = False
        self._dropping = False
        self.dropped = 0  # lines that found the buffer full (or the sink closed)
        self.failed = 0  # lines the outlet refused

    def send(self, task_id: str, line: str) -> None:
        if self._closed:
            self.dropped += 1
            return
        if len(self._buffer) >= self._capacity:
            if not self._dropping:  # one line per stretch of drops, not one per line
                log.warning("live log lines are being dropped (the live channel is behind)")
                self._dropping = True
            self.dropped += 1
            return
        try:
            self._start_drainer()
        except RuntimeError:  # no running event loop: nothing could ever send it
            self.dropped += 1
            return
        self._buffer.append((task_id, line))
        self._waiting.set()

    async def close(self) -> None:
        """Stops sending; lines still buffered are dropped."""
        self._closed = True
        self.dropped += len(self._buffer)
        self._buffer.clear()
        drainer, self._drainer = self._drainer, None
        if drainer is not None:
            drainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drainer
        if self.dropped or self.failed:
            log.info("live log: %d lines dropped, %d not sent", self.dropped, self.failed)

    def _start_drainer(self) -> None:
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while True:
            await self._waiting.wait()
            while self._buffer:
                task_id, line = self._buffer.popleft()
                try:
                    await self._outlet.send(task_id, line)
                except Exception as exc:
                    if self.failed == 0:
                        log.warning("a live log line was not sent (%s)", exc)
                    self.failed += 1
            self._waiting.clear()
            self._dropping = False
