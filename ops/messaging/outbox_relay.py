"""The outbox relay: follows the event store's notification log and publishes the events
some queue consumes.

Each event becomes one persistent, mandatory message with ``message_id`` = its notification
id and routing key = its topic (``Service.Ordered``). A batch is published with confirms
pipelined, and the relay's position advances only after every confirm of the batch: a crash
at any point republishes at most one batch, which consumers' inboxes absorb (at-least-once,
never lost).

A Task event no binding of the topology (ops/messaging/topology.py) matches is one no part of
hostwright consumes (most of them): the broker would only return it, so it is skipped before it
is even decoded, and counted in ``unrouted``. Other events are published even when nothing here
consumes them, so a consumer deployed ahead of the relay in an upgrade misses none; the broker
returns them (counted too), and they are let go rather than parked forever or allowed to block
everything behind them. A batch that publishes nothing stores its position only once
``position_interval`` has passed since the last store, which spares a commit per skipped batch;
a crash then merely re-reads skipped rows."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from eventsourcing.persistence import Notification

from ops.messaging.topology import declare_topology, skipped_by_relay
from ops.messaging.transport import Message, Transport, TransportError
from ops.runtime.pause import pause
from ops.store.database import database_unavailable
from ops.store.event_store import EventStore
from ops.store.outage import Backoff, Outage
from ops.store.positions import PositionStore

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
        position_interval: float = 1.0,
        ssl: bool = False,
    ) -> None:
        """``ssl``: automatic SSL is on, so the SSL queues are declared with the others (a
        Certificate event relayed before the SSL desk first declared its queue is kept)."""
        self._store = store
        self._positions = positions
        self._transport = transport
        self._ssl = ssl
        self._name = name
        self._batch_size = batch_size
        self._idle_interval = idle_interval
        self._max_backoff = max_backoff
        self._position_interval = position_interval
        self._wake = asyncio.Event()
        self._position: int | None = None  # read once, then kept: this relay advances it
        self._stored = 0  # the position last read or written in the store
        self._stored_at = 0.0
        self.published = 0
        self.unrouted = 0

    def notify(self) -> None:
        """Wakes the relay now instead of at its next poll (in-process callers)."""
        self._wake.set()

    async def prepare(self) -> None:
        await declare_topology(self._transport, ssl=self._ssl)

    async def relay_once(self) -> int:
        """Relays the next batch after the position; returns how many events it went past
        (published or skipped)."""
        if self._position is None:
            self._position = await asyncio.to_thread(self._positions.get, self._name)
            self._stored, self._stored_at = self._position, time.monotonic()
        batch, messages = await asyncio.to_thread(self._next_batch, self._position)
        if batch:
            unroutable = await self._transport.publish_many(messages) if messages else []
            for message in unroutable:
                log.debug("relay: nothing consumes %s", message.routing_key)
            self.unrouted += len(batch) - len(messages) + len(unroutable)
            self.published += len(batch)
            self._position = batch[-1].id
        if self._position > self._stored and (messages or self._store_due()):
            await asyncio.to_thread(self._positions.advance, self._name, self._position)
            self._stored, self._stored_at = self._position, time.monotonic()
        return len(batch)

    def _store_due(self) -> bool:
        return time.monotonic() - self._stored_at >= self._position_interval

    def _next_batch(self, position: int) -> tuple[Sequence[Notification], list[Message]]:
        batch = self._store.notifications(position, self._batch_size)
        return batch, self._messages(batch)

    async def run(self, stop: asyncio.Event) -> None:
        """Relays until ``stop`` is set. Whatever fails — the broker unreachable, the database
        down or restarting, anything else — is tried again with back-off (0.1 s doubling to
        ``max_backoff``), with one warning per broker or database outage: the position moves
        only after the broker's confirms, so a retry republishes at most one batch and loses
        nothing."""
        backoff = Backoff(cap=self._max_backoff)
        broker = Outage(f"relay {self._name}", "the broker")
        database = Outage(f"relay {self._name}", "the database")
        prepared = False
        while not stop.is_set():
            try:
                if not prepared:
                    await self.prepare()
                    prepared = True
                count = await self.relay_once()
            except Exception as exc:
                if isinstance(exc, TransportError):
                    broker.failed(exc)
                elif database_unavailable(exc):
                    database.failed(exc)
                else:  # not an outage: say so every time (at most every max_backoff)
                    log.exception("relay: relaying failed; trying again")
                await pause(stop, backoff.next())
                continue
            backoff.reset()
            broker.recovered()
            database.recovered()
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
        """Messages for the batch's routed events, in order; the rest are never decoded."""
        return [
            Message(
                routing_key=routing_key(n),
                body=self._store.envelope(n),
                message_id=str(n.id),
                headers={"aggregate_id": str(n.originator_id)},
            )
            for n in batch
            if not skipped_by_relay(routing_key(n))
        ]
