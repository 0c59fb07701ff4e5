"""The usage desk's feed: which node to list, and when (``handler usage``).

``run_usage`` consumes the queue ``usage`` (ops/messaging/topology.py ``USAGE_BINDINGS``):

- ``ServerUsage.SyncQueued`` → that sync is run (``UsageDesk.sync``: one listing of the node);
- ``Service.UsageSyncRequested`` (a customer's "Sync now") → a sync of each node the service's
  figures come from is asked (``UsageDesk.request``: joined when one is pending or fresh);
- ``cron.usage`` (the scheduler's tick, every ``HOSTWRIGHT_CRON_USAGE_S``) → a sync of each
  registered node that is due one (its period passed, or its retry came).

Every sync runs in a task of its own under one semaphore of ``concurrency``, so a slow node
never holds the queue. A delivery is acked once its work is started; a sync lost with its
process is queued again by a tick once its lease has run out.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Protocol

from ops.messaging.event_envelope import event_envelope
from ops.messaging.inbox import Inbox
from ops.messaging.topology import USAGE_BINDINGS, USAGE_QUEUE
from ops.messaging.transport import Message, Transport
from ops.services.desk_work import DeskWork, run_desk_queue

log = logging.getLogger(__name__)


class Desk(Protocol):
    async def request(self, server_id: str, by: str, *, tick: bool = False) -> str: ...

    async def sync(self, server_id: str, sync_id: int) -> str: ...


ServersOf = Callable[[uuid.UUID], list[str]]  # a Service aggregate's id → its usage nodes
ServerIds = Callable[[], list[str]]  # every registered node


class UsageFeed:
    """Turns deliveries into syncs (see the module docstring)."""

    def __init__(
        self, desk: Desk, servers_of: ServersOf, server_ids: ServerIds, *, concurrency: int
    ) -> None:
        self._desk = desk
        self._servers_of = servers_of
        self._server_ids = server_ids
        self.work = DeskWork(concurrency)

    async def handle(self, message: Message) -> None:
        """Raises ValueError on an envelope that cannot be read (dead-lettered)."""
        if message.routing_key == "cron.usage":
            for server_id in await asyncio.to_thread(self._server_ids):
                outcome = await self._desk.request(server_id, "tick", tick=True)
                if outcome == "queued":
                    log.info("usage %s: sync queued by the tick", server_id)
            return
        envelope = event_envelope(message.body)
        topic, data = envelope["topic"], envelope.get("data") or {}
        if topic == "ServerUsage.SyncQueued":
            server_id, sync_id = str(data["server_id"]), int(data["sync_id"])
            self.work.start(
                (server_id, sync_id),
                functools.partial(self._desk.sync, server_id, sync_id),
                f"usage {server_id}: sync {sync_id} failed",
            )
        elif topic == "Service.UsageSyncRequested":
            aggregate_id = uuid.UUID(envelope["aggregate_id"])
            for server_id in await asyncio.to_thread(self._servers_of, aggregate_id):
                outcome = await self._desk.request(server_id, "sync-now")
                log.info("usage %s: a sync-now came to %s", server_id, outcome)


async def run_usage(
    feed: UsageFeed,
    transport: Transport,
    inbox: Inbox,
    stop: asyncio.Event,
    *,
    prefetch: int,
    max_failures: int = 5,
    closing: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Feeds the desk from the ``usage`` queue until ``stop``; then lets running syncs end."""
    await run_desk_queue(
        feed.handle,
        feed.work,
        transport,
        inbox,
        stop,
        queue=USAGE_QUEUE,
        bindings=USAGE_BINDINGS,
        prefetch=prefetch,
        max_failures=max_failures,
        closing=closing,
    )
