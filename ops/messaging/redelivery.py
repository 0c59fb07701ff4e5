"""What the consumer does with a delivery it could not handle: hand it back later, or give up.

A failing message is held unacked for a pause that grows with its failures (``first_pause``,
twice that, … up to ``max_pause``), in a task of its own so the workers go on with the other
deliveries, and then handed back to the broker (``reject(requeue=True)``).

Failures are counted per message id in memory (at most ``_REMEMBERED`` ids, the oldest
forgotten first). An infrastructure failure — the database or the broker unreachable
(``is_infrastructure``) — is never held against the message: it backs off and is tried again
for as long as the outage lasts. Only a message that fails ``max_failures`` times for any other
reason goes to ``<queue>.dead``; each dead-lettering is logged with the message id, the
routing key and the exception's type, never the body.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import OrderedDict
from collections.abc import Awaitable
from dataclasses import dataclass

from ops.messaging.transport import Delivery, TransportError, Unroutable
from ops.store.database import database_unavailable

log = logging.getLogger(__name__)

# The broker or the network (the database: ``database_unavailable``). Not Unroutable (no queue
# is bound for the key: the same every time) nor any other OSError (a missing file, a
# permission: the same every time).
NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionError,
    TimeoutError,
    socket.gaierror,
    TransportError,
)

_REMEMBERED = 10_000


def is_infrastructure(exc: BaseException) -> bool:
    """Whether ``exc``, or an exception in its cause/context chain, says that the database or
    the broker could not be reached (the message itself may be fine)."""
    if database_unavailable(exc):
        return True
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, NETWORK_ERRORS) and not isinstance(current, Unroutable):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


@dataclass
class _Failures:
    total: int = 0  # every failure: how long the next pause is
    poisoned: int = 0  # the failures not caused by the infrastructure: when to give up


class Redelivery:
    """Failure counts and the deliveries held back, for one consumer."""

    def __init__(
        self,
        consumer: str,
        *,
        max_failures: int = 5,
        first_pause: float = 0.5,
        max_pause: float = 5.0,
    ) -> None:
        self._consumer = consumer
        self._max_failures = max(1, max_failures)
        self._first_pause = first_pause
        self._max_pause = max(first_pause, max_pause)
        self._failures: OrderedDict[str, _Failures] = OrderedDict()
        self._held: dict[int, tuple[asyncio.Future[None], Delivery]] = {}
        self._tasks: set[asyncio.Future[None]] = set()  # held, or handing back
        self._closing = False

    def poisoned(self, message_id: str) -> bool:
        """Whether the message failed before for a reason of its own: it is handled alone,
        not in a batch, so it cannot make the batch of other messages fail again."""
        failures = self._failures.get(message_id)
        return failures is not None and failures.poisoned > 0

    def succeeded(self, message_id: str) -> None:
        self._failures.pop(message_id, None)

    async def failed(self, delivery: Delivery, message_id: str, exc: BaseException) -> None:
        """The handler raised ``exc`` on the delivery: hold it back, or dead-letter it once it
        has failed ``max_failures`` times for a reason other than the infrastructure."""
        failures = self._count(message_id)
        infrastructure = is_infrastructure(exc)
        if not infrastructure:
            failures.poisoned += 1
        if failures.poisoned >= self._max_failures:
            self._failures.pop(message_id, None)
            log.error(
                "%s: dead-lettered message %s (%s) after %d failures; the last: %s",
                self._consumer,
                message_id,
                delivery.message.routing_key,
                failures.poisoned,
                type(exc).__name__,
            )
            await settle(delivery.reject(requeue=False))
            return
        pause = self._hold(delivery, failures)
        log.warning(
            "%s: handling %s (%s) failed (%s, %s); handed back in %.1fs",
            self._consumer,
            message_id,
            delivery.message.routing_key,
            type(exc).__name__,
            "the infrastructure" if infrastructure else f"failure {failures.poisoned}",
            pause,
            exc_info=not infrastructure,
        )

    def hand_back(self, delivery: Delivery, message_id: str) -> None:
        """Our own storage (the inbox) failed, not the handler: back off, count nothing."""
        self._hold(delivery, self._count(message_id))

    async def release_all(self) -> None:
        """Hands every held delivery back at once (the consumer is stopping)."""
        self._closing = True
        held, self._held = list(self._held.values()), {}
        for task, _ in held:
            task.cancel()
        await asyncio.gather(*(task for task, _ in held), return_exceptions=True)
        for _, delivery in held:
            await settle(delivery.reject(requeue=True))

    def _count(self, message_id: str) -> _Failures:
        failures = self._failures.pop(message_id, None) or _Failures()
        failures.total += 1
        self._failures[message_id] = failures  # the most recent last
        while len(self._failures) > _REMEMBERED:
            self._failures.popitem(last=False)
        return failures

    def _hold(self, delivery: Delivery, failures: _Failures) -> float:
        pause = 0.0 if self._closing else self._pause(failures.total)
        task = asyncio.ensure_future(self._release_later(pause))
        self._held[id(task)] = (task, delivery)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return pause

    def _pause(self, failures: int) -> float:
        return float(min(self._first_pause * 2 ** max(0, failures - 1), self._max_pause))

    async def _release_later(self, pause: float) -> None:
        await asyncio.sleep(pause)
        task = asyncio.current_task()
        entry = self._held.pop(id(task), None)
        if entry is not None:
            await settle(entry[1].reject(requeue=True))


async def settle(settling: Awaitable[None]) -> None:
    """Acks/rejects; a broker failure here only means the broker redelivers later."""
    try:
        await settling
    except TransportError as exc:
        log.warning("settling a delivery failed (%s); the broker will redeliver it", exc)
