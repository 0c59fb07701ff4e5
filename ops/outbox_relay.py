"""The outbox relay: follows the event store's notification log and publishes every event.

Each event becomes one persistent, mandatory message with ``message_id`` = its notification
id and routing key = its topic (``Service.Ordered``). A batch is published with confirms
pipelined, and the relay's position advances only after every confirm of the batch: a crash
at any point republishes at most one batch, which consumers' inboxes absorb (at-least-once,
never lost). The relay declares the whole topology (ops/topology.py) before it publishes,
so a topic that still routes nowhere is one no part of hostwright consumes: it is counted
and let go rather than parked forever or allowed to block everything behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from eventsourcing.persistence import Notification

from ops.event_store import EventStore
from ops.positions import PositionStore
from ops.topology import declare_topology
from ops.transport import Message, Transport, TransportError

log = logging.getLogger(__name__)


def routing_key(notification: Notification) -> str:
    """``domain.service:Service.Ordered`` → ``Service.Ordered``."""
    return notification.topic.rpartition(":")[2]


class OutboxRelay:
    def __init__(
        self,
        store: EventStore,
        positions: PositionStore,
        transport: Transport,
        *,
        name: str = "relay",
        batch_size: int = 500,
        idle_interval: float = 0.01,
        max_backoff: float = 5.0,
    ) -> None:
        self._store = store
        self._positions = positions
        self._transport = transport
        self._name = name
        self._batch_size = batch_size
        self._idle_interval = idle_interval
        self._max_backoff = max_backoff
        self._wake = asyncio.Event()
        self._position: int | None = None  # read once, then kept: this relay advances it
        self.published = 0
        self.unrouted = 0

    def notify(self) -> None:
        """Wakes the relay now instead of at its next poll (in-process callers)."""
        self._wake.set()

    async def prepare(self) -> None:
        await declare_topology(self._transport)

    async def relay_once(self) -> int:
        """Publishes the next batch after the stored position; returns how many it published."""
        if self._position is None:
            self._position = await asyncio.to_thread(self._positions.get, self._name)
        batch, messages = await asyncio.to_thread(self._next_batch, self._position)
        if not batch:
            return 0
        unroutable = await self._transport.publish_many(messages)
        for message in unroutable:
            self.unrouted += 1
            log.debug("relay: nothing consumes %s", message.routing_key)
        await asyncio.to_thread(self._positions.advance, self._name, batch[-1].id)
        self._position = batch[-1].id
        self.published += len(batch)
        return len(batch)

    def _next_batch(self, position: int) -> tuple[Sequence[Notification], list[Message]]:
        batch = self._store.notifications(position, self._batch_size)
        return batch, self._messages(batch)

    async def run(self, stop: asyncio.Event) -> None:
        """Relays until ``stop`` is set, backing off while the broker is unreachable."""
        backoff = 0.1
        prepared = False
        while not stop.is_set():
            try:
                if not prepared:
                    await self.prepare()
                    prepared = True
                count = await self.relay_once()
                backoff = 0.1
            except TransportError as exc:
                log.warning("relay: broker unavailable (%s); retrying in %.1fs", exc, backoff)
                await _sleep_or_stop(stop, backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            if count < self._batch_size:
                await self._idle(stop)

    async def _idle(self, stop: asyncio.Event) -> None:
        self._wake.clear()
        waiters = {asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())}
        _, pending = await asyncio.wait(
            waiters, timeout=self._idle_interval, return_when=asyncio.FIRST_COMPLETED
        )
        for task in pending:
            task.cancel()

    def _messages(self, batch: Sequence[Notification]) -> list[Message]:
        return [
            Message(
                routing_key=routing_key(n),
                body=self._store.envelope(n),
                message_id=str(n.id),
                headers={"aggregate_id": str(n.originator_id)},
            )
            for n in batch
        ]


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
