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
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Protocol

from domain.certificate import ROLES, certificate_uuid
from ops.messaging.event_envelope import event_envelope
from ops.messaging.inbox import Inbox
from ops.messaging.topology import SSL_BINDINGS, SSL_QUEUE
from ops.messaging.transport import Message, Transport
from ops.services.desk_work import DeskWork, run_desk_queue

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
        self._limit = limit
        self.work = DeskWork(concurrency)

    async def handle(self, message: Message) -> None:
        """Raises ValueError on an envelope that cannot be read (dead-lettered)."""
        if message.routing_key == "cron.ssl_expiry":
            for cert_id, days in await self._desk.warn_expiring(self._clock()):
                log.info("ssl %s: expires within %d days; warning recorded", cert_id, days)
            return
        for cert_id in await self._certificates(message):
            # a certificate being looked at now is not started twice: the look records
            # when to look next
            self.work.start(
                cert_id,
                functools.partial(self._desk.check, cert_id),
                f"ssl {cert_id}: the check failed",
            )

    async def _certificates(self, message: Message) -> list[uuid.UUID]:
        if message.routing_key == "cron.ssl":
            if len(self.work) >= self._limit:
                return []  # the last tick's checks are still going: no second helping
            return await asyncio.to_thread(self._due.due, self._clock(), self._limit)
        envelope = event_envelope(message.body)
        topic, aggregate_id = envelope["topic"], uuid.UUID(envelope["aggregate_id"])
        if topic in CERTIFICATE_TOPICS:
            return [aggregate_id]
        if topic in SERVICE_TOPICS:
            service_id = await asyncio.to_thread(self._service_id_of, aggregate_id)
            return [] if service_id is None else [certificate_uuid(service_id, r) for r in ROLES]
        return []


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
    await run_desk_queue(
        feed.handle,
        feed.work,
        transport,
        inbox,
        stop,
        queue=SSL_QUEUE,
        bindings=SSL_BINDINGS,
        prefetch=prefetch,
        max_failures=max_failures,
        closing=closing,
    )
