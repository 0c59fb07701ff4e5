"""The SSL desk's feed: which certificates to look at, and when (``handler ssl``, SSL on).

``run_ssl`` consumes the queue ``ssl`` (ops/messaging/topology.py ``SSL_BINDINGS``):

- ``Certificate.Seeded`` / ``IssueRequested`` / ``CustomUploaded`` / ``CustomRemoved`` → that
  certificate is checked (``SslDesk.check``) at once;
- ``Service.Terminated`` / ``Service.Unsuspended`` → the service's web and mail certificates
  are checked (the desk retires a terminated service's, and renews an unsuspended one's);
- ``cron.ssl`` (the scheduler's tick, every ``HOSTWRIGHT_CRON_SSL_S``) → up to ``limit``
  certificates the SSL view says are due (``SslDueQueries.due``);
- ``cron.ssl_expiry`` (every ``HOSTWRIGHT_CRON_SSL_EXPIRY_S``, an hour) → the expiry warnings
  custom certificates are owed now (``SslDesk.warn_expiring``: each threshold once; the
  ticket desk opens or notes a ticket for each warning recorded).

Every check runs under one semaphore of ``concurrency`` and in a task of its own, so a slow
CA never holds the queue; a check already running elsewhere is skipped by the desk's own
fence. Emits nothing itself: the desk records what each check did. A delivery is acked once
its checks are started; a check lost with its process is found again by the next tick.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Protocol

from domain.certificate import ROLES, certificate_uuid
from ops.messaging.consumer import ConsumerLoop
from ops.messaging.inbox import Inbox
from ops.messaging.topology import SSL_BINDINGS, SSL_QUEUE
from ops.messaging.transport import Message, Transport
from ops.services.pipeline import _envelope

log = logging.getLogger(__name__)

CERTIFICATE_TOPICS = frozenset(topic for topic in SSL_BINDINGS if topic.startswith("Certificate."))
SERVICE_TOPICS = frozenset(topic for topic in SSL_BINDINGS if topic.startswith("Service."))


class Desk(Protocol):
    async def check(self, cert_id: uuid.UUID) -> str: ...

    async def warn_expiring(self, now: datetime) -> list[tuple[uuid.UUID, int]]: ...


class SslDueQueries(Protocol):
    def due(self, now: datetime, limit: int) -> list[uuid.UUID]: ...


ServiceIdOf = Callable[[uuid.UUID], str | None]  # a Service aggregate's id → its service_id


class SslFeed:
    """Turns deliveries into checks (see the module docstring)."""

    def __init__(
        self,
        desk: Desk,
        due: SslDueQueries,
        service_id_of: ServiceIdOf,
        clock: Callable[[], datetime],
        *,
        concurrency: int,
        limit: int,
    ) -> None:
        self._desk = desk
        self._due = due
        self._service_id_of = service_id_of
        self._clock = clock
        self._slots = asyncio.Semaphore(concurrency)
        self._limit = limit
        self._running: dict[uuid.UUID, asyncio.Task[None]] = {}

    async def handle(self, message: Message) -> None:
        """Raises ValueError on an envelope that cannot be read (dead-lettered)."""
        if message.routing_key == "cron.ssl_expiry":
            for cert_id, days in await self._desk.warn_expiring(self._clock()):
                log.info("ssl %s: expires within %d days; warning recorded", cert_id, days)
            return
        for cert_id in await self._certificates(message):
            self._start(cert_id)

    async def _certificates(self, message: Message) -> list[uuid.UUID]:
        if message.routing_key == "cron.ssl":
            if len(self._running) >= self._limit:
                return []  # the last tick's checks are still going: no second helping
            return await asyncio.to_thread(self._due.due, self._clock(), self._limit)
        envelope = _envelope(message.body)
        topic, aggregate_id = envelope["topic"], uuid.UUID(envelope["aggregate_id"])
        if topic in CERTIFICATE_TOPICS:
            return [aggregate_id]
        if topic in SERVICE_TOPICS:
            service_id = await asyncio.to_thread(self._service_id_of, aggregate_id)
            return [] if service_id is None else [certificate_uuid(service_id, r) for r in ROLES]
        return []

    def _start(self, cert_id: uuid.UUID) -> None:
        if cert_id in self._running:
            return  # being looked at now; the look records when to look next
        task = asyncio.ensure_future(self._checked(cert_id))
        self._running[cert_id] = task
        task.add_done_callback(lambda _: self._running.pop(cert_id, None))

    async def _checked(self, cert_id: uuid.UUID) -> None:
        async with self._slots:
            try:
                await self._desk.check(cert_id)
            except Exception:  # the desk records its own failures; this is ours
                log.exception("ssl %s: the check failed", cert_id)

    async def drain(self) -> None:
        """Waits for the checks still running (at a stop)."""
        running = list(self._running.values())
        if running:
            await asyncio.gather(*running, return_exceptions=True)


async def run_ssl(
    feed: SslFeed,
    transport: Transport,
    inbox: Inbox,
    stop: asyncio.Event,
    *,
    prefetch: int,
    max_failures: int = 5,
    closing: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Feeds the desk from the ``ssl`` queue until ``stop``; then lets running checks end."""
    loop = ConsumerLoop(
        transport,
        SSL_QUEUE,
        SSL_BINDINGS,
        feed.handle,
        consumer_name=SSL_QUEUE,
        inbox=inbox,
        prefetch=prefetch,
        max_failures=max_failures,
    )
    try:
        await loop.run(stop)
    finally:
        await feed.drain()
        if closing is not None:
            await closing()
