"""The pipeline's task messages on their way out, and its leases while the broker is away.

Consumes: the task messages of recorded attempts (published after recording), whether each
attempt is still the current one, and word from the transport that the broker connection was
lost or is back. Emits: publishes, and which attempts' leases must not run out now.

``TaskSender``: a task message whose publish was not confirmed is kept and published again
(same message id: the handler's inbox absorbs a duplicate) with capped back-off, at once when
the broker is back, until confirmed or its attempt is no longer the current one — instead of
waiting for the attempt's lease to run out and burning an attempt.

``LeaseHold``: no heartbeat can arrive while the broker is away, so while it is, and for one
lease after it is back, no lease runs out; nor does the lease of an attempt whose task message
has not been confirmed yet for a passing reason (``transient``: the broker away or its channel
not restored yet), nor for one lease after it was. A message refused for another reason (no
queue bound for it, not serialisable) is re-sent all the same but holds no lease: it may never
go out, and its attempt's lease runs out as a lost message's does (the retry policy bounds what
follows). Kept in memory only: a restarted pipeline hears the broker afresh.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from domain.task import Task
from handlers.messages import TaskMessage
from handlers.pipeline_ports import Publisher

log = logging.getLogger("handlers.pipeline")

TransientPublishError = Callable[[Exception], bool]
"""Whether a failed publish may pass by itself (the broker away): injected by whoever knows the
transport's errors (ops/bootstrap.py); the default takes only OS-level errors as passing."""


def os_level_error(exc: Exception) -> bool:
    return isinstance(exc, OSError)  # ConnectionError, TimeoutError among them


class TaskSender:
    def __init__(
        self,
        publisher: Publisher,
        *,
        current: Callable[[TaskMessage], bool],
        clock: Callable[[], datetime],
        first_backoff: float = 0.2,
        max_backoff: float = 5.0,
        transient: TransientPublishError = os_level_error,
    ) -> None:
        self._publisher = publisher
        self._transient = transient
        self._current = current  # whether the message's attempt is still the task's current one
        self._clock = clock
        self._first_backoff = first_backoff
        self._max_backoff = max_backoff
        self.unconfirmed: dict[str, TaskMessage] = {}  # by message id
        self._passing: set[str] = set()  # ids of those whose last publish failed transiently
        # re-sent messages by id: when the broker confirmed them (their lease starts then)
        self.confirmed_late: dict[str, tuple[TaskMessage, datetime]] = {}
        self._kept = asyncio.Event()  # something is kept now
        self._wake = asyncio.Event()  # the broker is back

    async def send(self, messages: list[TaskMessage], *, again: bool = False) -> None:
        """Publishes each once, confirms pipelined; the ones not confirmed are kept.
        ``again``: they may have gone out before (a new leader's rebuild)."""
        failures = await asyncio.gather(*(self._publish(m, again=again) for m in messages))
        lost = [failure for failure in failures if failure is not None]
        if lost:
            log.warning(
                "pipeline: %d task messages not confirmed (%s); re-sending them", len(lost), lost[0]
            )

    def wake(self) -> None:
        """Re-sends what is kept now (the broker is back)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Re-sends the kept messages until ``stop``: after a back-off that doubles while
        publishes keep failing, or at once when woken."""
        backoff = self._first_backoff
        while not stop.is_set():
            if not self.unconfirmed:
                self._kept.clear()
                self._wake.clear()  # nothing was kept to wake for
                await _first_of(stop, self._kept, None)
                backoff = self._first_backoff
                continue
            await _first_of(stop, self._wake, backoff)
            if self._wake.is_set():
                self._wake.clear()
                backoff = self._first_backoff
            if stop.is_set():
                return
            try:
                await self._resend_kept()
            except Exception:
                log.exception("pipeline: re-sending task messages failed; trying again")
            if self.unconfirmed:
                backoff = min(backoff * 2, self._max_backoff)
            else:
                log.info("pipeline: task messages re-sent; none left unconfirmed")

    async def _resend_kept(self) -> None:
        for message_id, (late, _) in list(self.confirmed_late.items()):
            if not self._current(late):
                del self.confirmed_late[message_id]  # that attempt is over
        kept = list(self.unconfirmed.values())
        await asyncio.gather(*(self._resend(message) for message in kept))

    async def _publish(self, message: TaskMessage, *, again: bool) -> Exception | None:
        """Publishes; the failure (the message is kept then), or None once confirmed."""
        try:
            await self._publisher.publish(
                message.routing_key, message.to_json(), message.message_id, again=again
            )
        except Exception as exc:
            self.unconfirmed[message.message_id] = message
            if self._transient(exc):
                self._passing.add(message.message_id)
            else:
                self._passing.discard(message.message_id)
            self._kept.set()
            return exc
        return None

    async def _resend(self, message: TaskMessage) -> None:
        if not self._current(message):
            self._drop(message.message_id)  # superseded: nothing to send
            return
        # a publish that was not confirmed may have gone out all the same
        if await self._publish(message, again=True) is None:
            self._drop(message.message_id)
            self.confirmed_late[message.message_id] = (message, self._clock())

    def _drop(self, message_id: str) -> None:
        self.unconfirmed.pop(message_id, None)
        self._passing.discard(message_id)

    def holds(self, task: Task) -> bool:
        """Whether a task message of the task's current attempt is still unconfirmed, its last
        publish having failed for a passing reason."""
        return _message_id(task) in self._passing

    def confirmed_at(self, task: Task) -> datetime | None:
        """When the task message of the task's current attempt got out, if only on a re-send."""
        late = self.confirmed_late.get(_message_id(task))
        return late[1] if late else None


class LeaseHold:
    """Which leases may not run out now: see the module's docstring."""

    def __init__(self, sender: TaskSender, clock: Callable[[], datetime]) -> None:
        self._sender = sender
        self._clock = clock
        self.broker_away = False
        self._back_at: datetime | None = None

    def broker_lost(self) -> None:
        if not self.broker_away:
            log.warning("pipeline: broker lost; no lease runs out until it is back")
        self.broker_away = True

    def broker_back(self) -> None:
        if self.broker_away:
            log.info("pipeline: broker back; every open lease gets a fresh one")
        self.broker_away = False
        self.fresh_leases()

    def fresh_leases(self) -> None:
        """Every open lease runs one lease more from now: nothing was heard until now."""
        self._back_at = self._clock()
        self._sender.wake()

    def spares(self, task: Task, now: datetime, lease_s: float) -> bool:
        """Whether the task's lease may not run out at ``now``."""
        if self.broker_away or self._sender.holds(task):
            return True
        lease = timedelta(seconds=lease_s)
        if self._back_at is not None and now < self._back_at + lease:
            return True
        confirmed = self._sender.confirmed_at(task)
        return confirmed is not None and now < confirmed + lease


def _message_id(task: Task) -> str:
    return f"{task.id}:{task.attempt}"  # TaskMessage.message_id


async def _first_of(stop: asyncio.Event, wake: asyncio.Event, timeout: float | None) -> None:
    waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())}
    await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    for waiter in waiters:
        waiter.cancel()
