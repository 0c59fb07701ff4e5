"""The dead-letter queues: how many messages each holds, and moving them back.

Every queue of ``ops.messaging.topology`` (the SSL ones too when automatic SSL is on: ``ssl``)
has its ``<queue>.dead``; the consumer sends there a
message it could not decode or that kept failing for a reason of its own (never because of an
outage). ``dead_letter_counts`` counts each; ``redrive`` moves a dead-letter queue's messages
back to their queue (``hostwright redrive``), where the consumer's inbox absorbs one it had
handled already. ``DeadLetterGauge`` is what ``GET /healthz`` shows: the counts, read at most
once a second and given up after ``timeout`` (the broker may be down; health must answer).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from ops.messaging.topology import consumed_queues, declare_topology
from ops.messaging.transport import Transport, TransportError

log = logging.getLogger(__name__)

DEAD = ".dead"


def queue_of(name: str, *, ssl: bool = False) -> str:
    """The queue a name given on the command line means (``pipeline`` or ``pipeline.dead``);
    ValueError for a queue hostwright does not consume."""
    queue = name.removesuffix(DEAD)
    queues = consumed_queues(ssl=ssl)
    if queue not in queues:
        raise ValueError(f"no queue {name!r}: one of {', '.join(sorted(queues))}")
    return queue


async def dead_letter_counts(transport: Transport, *, ssl: bool = False) -> dict[str, int]:
    """``{"<queue>.dead": messages}`` for every queue hostwright consumes."""
    return {
        f"{queue}{DEAD}": await transport.queue_depth(f"{queue}{DEAD}")
        for queue in consumed_queues(ssl=ssl)
    }


async def redrive(
    transport: Transport, queues: Iterable[str] | None = None, *, ssl: bool = False
) -> dict[str, int]:
    """Moves what each named queue's dead-letter queue holds (every queue's when None) back to
    the queue; ``{"<queue>.dead": moved}``."""
    return {
        f"{queue}{DEAD}": await transport.redrive(queue)
        for queue in (consumed_queues(ssl=ssl) if queues is None else queues)
    }


class DeadLetterGauge:
    """The counts for ``GET /healthz`` (``gateway.ports.DeadLetters``): connects (through
    ``connect``, the process's one way to connect its transport) and declares the topology
    (the SSL queues too when ``ssl``) on first use, keeps an answer for ``max_age`` seconds,
    and answers None when the broker does not answer within ``timeout``."""

    def __init__(
        self,
        transport: Transport,
        *,
        connect: Callable[[], Awaitable[None]] | None = None,
        max_age: float = 1.0,
        timeout: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        ssl: bool = False,
    ) -> None:
        self._transport = transport
        self._ssl = ssl
        self._connect = connect or transport.connect
        self._max_age = max_age
        self._timeout = timeout
        self._clock = clock
        self._ready = False
        self._last: tuple[float, dict[str, int]] | None = None
        self._lock = asyncio.Lock()

    async def counts(self) -> dict[str, int] | None:
        async with self._lock:
            if self._last is not None and self._clock() - self._last[0] < self._max_age:
                return self._last[1]
            try:
                async with asyncio.timeout(self._timeout):
                    if not self._ready:
                        await self._connect()
                        await declare_topology(self._transport, ssl=self._ssl)
                        self._ready = True
                    counts = await dead_letter_counts(self._transport, ssl=self._ssl)
            except (TransportError, TimeoutError) as exc:
                self._ready = False
                log.warning("dead letters: the broker did not answer (%s)", type(exc).__name__)
                return None
            self._last = (self._clock(), counts)
            return counts
