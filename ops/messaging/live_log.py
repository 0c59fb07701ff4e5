"""A task's log lines on the broker's live channel: sent by the role handlers, followed by the
gateway while the step runs.

``LineBroadcast`` is the handlers' ``LineOutlet`` (handlers/live_lines.py): it consumes a task
id and a batch of its log lines and broadcasts them as one message under ``tasklog.<task_id>``
(a JSON array of strings). ``TransportTaskLog`` is the gateway's ``LiveTaskLog``
(gateway/screens/screen_ports.py): ``follow(task_id)`` listens for that key and emits each line
from then on, until its caller stops (closing the iterator or being cancelled unbinds the
listener); a body that is not such an array (a handler of an earlier release sent one plain
line per message) is one line. Neither stores anything: the task's recorded log is the one
its result carries to the task-queue view.

A task id is a UUID (``domain.task.task_uuid``) or another plain word; anything else (a dot, a
``*`` or ``#`` that would widen the binding to other tasks' lines) is neither sent nor followed.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from ops.messaging.transport import LiveChannel, TransportError

log = logging.getLogger(__name__)

_PLAIN_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


def task_log_key(task_id: str) -> str | None:
    """The live channel's key for ``task_id``'s lines; None for an id that is not plain."""
    return f"tasklog.{task_id}" if _PLAIN_ID.fullmatch(task_id) else None


def encoded_lines(lines: Sequence[str]) -> bytes:
    """A batch of lines as one message body."""
    return json.dumps(list(lines), ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def decoded_lines(body: bytes) -> list[str]:
    """The lines of a message body: a JSON array of strings, or else one plain line."""
    text = body.decode("utf-8", "replace")
    if text.startswith("["):
        try:
            lines = json.loads(text)
        except ValueError:
            return [text]
        if isinstance(lines, list) and all(isinstance(line, str) for line in lines):
            return lines
    return [text]


class LineBroadcast:
    """Each batch sent goes out at once on ``channel``, one message; nobody listening is no
    error."""

    def __init__(self, channel: LiveChannel) -> None:
        self._channel = channel

    async def send(self, task_id: str, lines: Sequence[str]) -> None:
        key = task_log_key(task_id)
        if key is not None and lines:
            await self._channel.broadcast(key, encoded_lines(lines))


class TransportTaskLog:
    """``follow`` over ``channel``, which ``connect`` connects first (once per process)."""

    def __init__(self, channel: LiveChannel, connect: Callable[[], Awaitable[None]]) -> None:
        self._channel = channel
        self._connect = connect

    async def follow(self, task_id: str) -> AsyncIterator[str]:
        """The task's lines from now on. Ends at once, having logged why, when the broker
        cannot be reached (the page then shows the recorded log when the step ends)."""
        key = task_log_key(task_id)
        if key is None:
            return
        try:
            await self._connect()
            async with self._channel.listen(key) as heard:
                async for broadcast in heard:
                    for line in decoded_lines(broadcast.body):
                        yield line
        except TransportError as exc:
            log.warning("the live log of task %s cannot be followed: %s", task_id, exc)
