"""A task's log lines on the broker's live channel: sent by the role handlers, followed by the
gateway while the step runs.

``LineBroadcast`` is the handlers' ``LineOutlet`` (handlers/live_lines.py): it consumes a task
id and a batch of its log lines and broadcasts them as one message under ``tasklog.<task_id>``
(a JSON array of strings). ``TransportTaskLog`` is the gateway's ``LiveTaskLog``
(gateway/screens/screen_ports.py): ``follow(task_id)`` listens for that key and emits each line
from then on, until its caller stops (closing the iterator or being cancelled unbinds the
listener); a body that is not such an array (a handler of an earlier release sent one plain
line per message) is one line. Neither stores anything: the task's recorded log is the one its
result carries to the task-queue view.

Lines go out only while someone follows them: a follower says so under
``tasklogwanted.<task_id>`` when it starts and every ``ANNOUNCE_S`` after, and a
``LineBroadcast`` listens for those announcements (from its making on) and wants a
task's lines until ``WANTED_FOR_S`` after the last one it heard. A step nobody watches, nearly
every one, then sends nothing: a message per step and per tenth of a second had cost the
handlers and the broker a few per cent of their CPU in a busy burst. A follower misses only
what its announcement's trip to the handler takes (and, at a handler's start, what comes
before it listens).

A task id is a UUID (``domain.task.task_uuid``) or another plain word; anything else (a dot, a
``*`` or ``#`` that would widen the binding to other tasks' lines) is neither sent nor followed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from ops.messaging.transport import LiveChannel, TransportError

log = logging.getLogger(__name__)

_PLAIN_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")

WANTED_PREFIX = "tasklogwanted."
ANNOUNCE_S = 2.0  # how often a follower says it still follows
WANTED_FOR_S = 3 * ANNOUNCE_S  # how long a handler sends a task's lines after it last heard so
LISTEN_RETRY_S = (1.0, 30.0)  # the back-off of a handler's listener while the broker is away


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
    error. ``wants`` a task's lines while a follower's announcements of it keep coming."""

    def __init__(
        self,
        channel: LiveChannel,
        *,
        wanted_for_s: float = WANTED_FOR_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._channel = channel
        self._wanted_for_s = wanted_for_s
        self._clock = clock
        self._until: dict[str, float] = {}  # per followed task, when its wish lapses
        self._listener: asyncio.Task[None] | None = None
        self._closed = False
        self._start_listening()

    def wants(self, task_id: str) -> bool:
        self._start_listening()
        until = self._until.get(task_id)
        return until is not None and until > self._clock()

    async def send(self, task_id: str, lines: Sequence[str]) -> None:
        key = task_log_key(task_id)
        if key is not None and lines:
            await self._channel.broadcast(key, encoded_lines(lines))

    async def close(self) -> None:
        self._closed = True
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    def _start_listening(self) -> None:
        """From the outlet's making on when there is a running loop, else from its first
        question: lines noted before the listener hears a follower are not sent."""
        if self._listener is None and not self._closed:
            with contextlib.suppress(RuntimeError):  # no running loop: nothing to listen with
                self._listener = asyncio.get_running_loop().create_task(self._listen())

    async def _listen(self) -> None:
        """Hears the followers' announcements for ever, again after the broker was away."""
        delay, most = LISTEN_RETRY_S
        while True:
            try:
                async with self._channel.listen(f"{WANTED_PREFIX}*") as heard:
                    delay = LISTEN_RETRY_S[0]
                    async for announcement in heard:
                        self._heard(announcement.key.removeprefix(WANTED_PREFIX))
            except Exception as exc:  # the broker away, or not yet connected
                log.info("live log: not hearing followers (%s); again in %.0f s", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, most)

    def _heard(self, task_id: str) -> None:
        now = self._clock()
        if len(self._until) > 10_000:  # forget the lapsed wishes before the map grows on
            self._until = {task: until for task, until in self._until.items() if until > now}
        self._until[task_id] = now + self._wanted_for_s


class TransportTaskLog:
    """``follow`` over ``channel``, which ``connect`` connects first (once per process)."""

    def __init__(
        self,
        channel: LiveChannel,
        connect: Callable[[], Awaitable[None]],
        *,
        announce_s: float = ANNOUNCE_S,
    ) -> None:
        self._channel = channel
        self._connect = connect
        self._announce_s = announce_s

    async def follow(self, task_id: str) -> AsyncIterator[str]:
        """The task's lines from now on. Ends at once, having logged why, when the broker
        cannot be reached (the page then shows the recorded log when the step ends)."""
        key = task_log_key(task_id)
        if key is None:
            return
        try:
            await self._connect()
            async with self._channel.listen(key) as heard:
                announcing = asyncio.ensure_future(self._announce(task_id))
                try:
                    async for broadcast in heard:
                        for line in decoded_lines(broadcast.body):
                            yield line
                finally:
                    announcing.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await announcing
        except TransportError as exc:
            log.warning("the live log of task %s cannot be followed: %s", task_id, exc)

    async def _announce(self, task_id: str) -> None:
        """Tells the role handlers, now and every ``ANNOUNCE_S``, that the task is followed."""
        while True:
            try:
                await self._channel.broadcast(f"{WANTED_PREFIX}{task_id}", b"")
            except TransportError as exc:  # the broker away: the next one may get through
                log.debug("live log: announcing task %s failed: %s", task_id, exc)
            await asyncio.sleep(self._announce_s)
