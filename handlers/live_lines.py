"""A running step's log lines, sent live as the step notes them, best effort.

``LiveLines.send(task_id, line)`` consumes each line a step's ``StepLog`` notes (the same text
the task's recorded log gets, commands already masked) and must neither wait nor fail: the
step is never slowed or stopped for it. ``BufferedLiveLines`` is that sink: it keeps up to
``capacity`` lines in memory and a background task hands them, in order, to a ``LineOutlet``
(ops wires a broadcast on the broker's live channel); a line that finds the buffer full is
dropped and counted (``dropped``), an outlet failure loses the lines it was given (``failed``).
Nothing of it is recorded: the task's log stays what the step's result carries.

A step's lines go out together, as one batch of its task, ``linger_s`` after the first of them
not sent yet: a step notes a line per node command, and a message per line cost the handlers,
and the broker, a fifth of their CPU in a busy burst. A follower sees the lines at most that
much later, which a person reading them hardly notices.

``settled(task_id, step)`` says that run of the step (``step``: the object its lines were
sent with, one per handling of a message) has ended and its result is on its way with its whole
log: its lines still buffered are not sent. The page following the task shows the recorded log
once the pipeline has recorded that result, so they would only arrive twice. A step that ends
within ``linger_s`` of its first line, or of its last batch, sends nothing more live: in a
burst of short steps most send nothing at all, where each cost a broker message. Another
handling of the same task (a redelivery waiting for the step fence) keeps its own lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger(__name__)

DEFAULT_CAPACITY = 1000
DEFAULT_LINGER_S = 0.25


class LiveLines(Protocol):
    def send(self, task_id: str, line: str, step: object = None) -> None:
        """Takes ``line``, noted by ``step`` (a run of the task's step), for whoever follows
        ``task_id`` now; returns at once, never raises."""

    def settled(self, task_id: str, step: object = None) -> None:
        """``step`` has ended and its result carries its whole log: the lines it sent that
        have not gone yet need not; returns at once, never raises."""

    async def close(self) -> None:
        """Stops sending (the role handler closes it with its drivers)."""


class LineOutlet(Protocol):
    async def send(self, task_id: str, lines: Sequence[str]) -> None:
        """Sends a task's ``lines``, in order, out together (may wait on a broker, may raise)."""


class BufferedLiveLines:
    """``LiveLines`` over a bounded buffer drained into ``outlet`` by a task of its own."""

    def __init__(
        self,
        outlet: LineOutlet,
        *,
        capacity: int = DEFAULT_CAPACITY,
        linger_s: float = DEFAULT_LINGER_S,
    ) -> None:
        self._outlet = outlet
        self._capacity = capacity
        self._linger_s = linger_s
        # per task and step, in the order of their first line not sent yet
        self._buffer: dict[tuple[str, object], _Batch] = {}
        self._buffered = 0  # lines in _buffer
        self._waiting = asyncio.Event()
        self._drainer: asyncio.Task[None] | None = None
        self._closed = False
        self._dropping = False
        self.dropped = 0  # lines that found the buffer full (or the sink closed)
        self.failed = 0  # lines the outlet refused (or not known to have taken)

    def send(self, task_id: str, line: str, step: object = None) -> None:
        if self._closed:
            self.dropped += 1
            return
        if self._buffered >= self._capacity:
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
        batch = self._buffer.get((task_id, step))
        if batch is None:
            batch = self._buffer[task_id, step] = _Batch(asyncio.get_running_loop().time())
        batch.lines.append(line)
        self._buffered += 1
        self._waiting.set()

    def settled(self, task_id: str, step: object = None) -> None:
        batch = self._buffer.pop((task_id, step), None)
        if batch is not None:
            self._buffered -= len(batch.lines)

    async def close(self) -> None:
        """Stops sending; lines still buffered or being sent are dropped (and counted)."""
        self._closed = True
        self.dropped += self._buffered
        self._buffer, self._buffered = {}, 0
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
        loop = asyncio.get_running_loop()
        while True:
            await self._waiting.wait()
            if not self._buffer:  # all settled meanwhile: a later drop starts a new stretch
                self._waiting.clear()  # a line noted from here on wakes the drainer
                self._dropping = False
                continue
            oldest = next(iter(self._buffer.values())).since
            wait = oldest + self._linger_s - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            batches = self._take_due(loop.time())
            try:
                while batches:
                    task_id, lines = batches[0]
                    try:
                        await self._outlet.send(task_id, lines)
                    except Exception as exc:
                        if self.failed == 0:
                            log.warning("live log lines were not sent (%s)", exc)
                        self.failed += len(lines)
                    batches.pop(0)
            except asyncio.CancelledError:
                # closed mid-send: the batch under way and those after it are lost with the sink
                self.dropped += sum(len(lines) for _, lines in batches)
                raise

    def _take_due(self, now: float) -> list[tuple[str, list[str]]]:
        """The batches whose first line has waited ``linger_s``, oldest first, out of the
        buffer."""
        if self._buffered < self._capacity:  # the buffer kept up: a later drop starts a new stretch
            self._dropping = False
        due = now - self._linger_s
        taken: list[tuple[str, list[str]]] = []
        for key, batch in list(self._buffer.items()):
            if batch.since > due:
                break  # the rest began later still
            del self._buffer[key]
            self._buffered -= len(batch.lines)
            taken.append((key[0], batch.lines))
        return taken


@dataclass
class _Batch:
    """A step's lines not sent yet; ``since``: when the first of them was noted."""

    since: float
    lines: list[str] = field(default_factory=list)
