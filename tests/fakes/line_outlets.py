"""The ``LineOutlet`` port of the live log sink (handlers/live_lines.py): one whose broker never
answers, and one that keeps every line (refusing the lines it is told to).

Consumes the task ids and lines a ``BufferedLiveLines`` drains; emits them back to the test.
"""

from __future__ import annotations

import asyncio

from handlers.live_lines import LineOutlet


class HangingOutlet:
    """Takes one line and waits for ever, as a send to a broker that stopped answering."""

    def __init__(self) -> None:
        self.taken: list[str] = []

    async def send(self, task_id: str, line: str) -> None:
        self.taken.append(line)
        await asyncio.Event().wait()


class RecordingOutlet:
    """Keeps every line sent, in order; a line in ``refuse`` raises as a broker gone would."""

    def __init__(self, refuse: tuple[str, ...] = ()) -> None:
        self.sent: list[tuple[str, str]] = []
        self._refuse = refuse

    async def send(self, task_id: str, line: str) -> None:
        if line in self._refuse:
            raise ConnectionError("broker gone")
        self.sent.append((task_id, line))


_hanging: LineOutlet = HangingOutlet()
_recording: LineOutlet = RecordingOutlet()
