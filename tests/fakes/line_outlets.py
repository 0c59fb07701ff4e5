"""The ``LineOutlet`` port of the live log sink (handlers/live_lines.py): one whose broker never
answers, and one that keeps every line (refusing the lines it is told to).

Consumes the task ids and lines a ``BufferedLiveLines`` drains; emits them back to the test.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from handlers.live_lines import LineOutlet


class HangingOutlet:
    """Takes one batch and waits for ever, as a send to a broker that stopped answering."""

    def __init__(self) -> None:
        self.taken: list[str] = []

    async def send(self, task_id: str, lines: Sequence[str]) -> None:
        self.taken.extend(lines)
        await asyncio.Event().wait()


class RecordingOutlet:
    """Keeps every line sent, in order, and each batch; a batch holding a line in ``refuse``
    raises as a broker gone would."""

    def __init__(self, refuse: tuple[str, ...] = ()) -> None:
        self.sent: list[tuple[str, str]] = []
        self.batches: list[tuple[str, list[str]]] = []
        self._refuse = refuse

    async def send(self, task_id: str, lines: Sequence[str]) -> None:
        if any(line in self._refuse for line in lines):
            raise ConnectionError("broker gone")
        self.batches.append((task_id, list(lines)))
        self.sent.extend((task_id, line) for line in lines)


_hanging: LineOutlet = HangingOutlet()
_recording: LineOutlet = RecordingOutlet()
