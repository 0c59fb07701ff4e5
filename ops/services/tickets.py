"""``hostwright serve tickets``: a WHMCS ticket for every terminally failed operation, and
for every custom certificate near its end.

Consumes its queue ``tickets`` (relayed ``Task.Errored`` envelopes): loads the task as of
that event and its service from the store, records the failure on the operation's Ticket
and delivers it at once. A relayed ``Certificate.ExpiryWarned`` (the SSL desk's warnings at
30/14/7/1 days, for custom certificates) is recorded on that certificate expiry's Ticket —
the first warning opens it, later ones add notes — and delivered the same way. Whatever
could not be delivered (WHMCS down) is retried by ``deliver_pending`` — every
``retry_interval`` here, and by the scheduler (the cron runner) when it calls it. Both may
run at once, in any number of processes: the Ticket aggregate's attempts and leases keep
each WHMCS call to one.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from domain.ticket import TicketConfig
from handlers.ticket_desk import ExpiryWarning, TicketApi, TicketDesk
from handlers.whmcs_api import WhmcsApi, WhmcsRejected, WhmcsTicket
from ops.adapters.ticket_store import StoreTicketAdapter
from ops.bootstrap import System
from ops.messaging.consumer import ConsumerLoop
from ops.messaging.event_envelope import event_envelope
from ops.messaging.inbox import Inbox
from ops.messaging.topology import TICKETS_BINDINGS, TICKETS_QUEUE
from ops.messaging.transport import Message, Transport
from ops.runtime.pause import pause
from ops.settings import Settings
from ops.store.database import database_unavailable
from ops.store.outage import Outage, riding_out

log = logging.getLogger(__name__)


class UnconfiguredWhmcs:
    """Stands in while HOSTWRIGHT_WHMCS_URL/IDENTIFIER/SECRET are unset: every call is
    refused, so recorded tickets wait (and are delivered once WHMCS is configured)."""

    async def open_ticket(self, **_: Any) -> WhmcsTicket:
        raise _unconfigured()

    async def add_ticket_note(self, **_: Any) -> None:
        raise _unconfigured()

    async def find_ticket(self, **_: Any) -> WhmcsTicket | None:
        raise _unconfigured()

    async def ticket_has_note(self, **_: Any) -> bool:
        raise _unconfigured()


def _unconfigured() -> WhmcsRejected:
    return WhmcsRejected(
        "the WHMCS API is not configured (HOSTWRIGHT_WHMCS_URL, HOSTWRIGHT_WHMCS_IDENTIFIER, "
        "HOSTWRIGHT_WHMCS_SECRET)",
        maybe_done=False,
    )


def settings_ticket_config(settings: Settings) -> TicketConfig:
    """The ticket settings from the environment/TOML (the defaults until staff change them)."""
    return TicketConfig(
        enabled=settings.tickets_enabled,
        department_id=settings.tickets_department_id,
        priority=settings.tickets_priority,
    )


def whmcs_api(settings: Settings) -> TicketApi:
    if settings.whmcs_url and settings.whmcs_identifier and settings.whmcs_secret:
        return WhmcsApi(settings.whmcs_url, settings.whmcs_identifier, settings.whmcs_secret)
    return UnconfiguredWhmcs()


def build_ticket_desk(
    system: System,
    config: Callable[[], TicketConfig] | None = None,
    api: TicketApi | None = None,
) -> TicketDesk:
    """One desk per process (it remembers which tickets still owe a call). ``config`` is read
    on every use, so a settings aggregate can switch tickets on/off or move them at runtime."""
    defaults = settings_ticket_config(system.settings)
    return TicketDesk(
        system.ticket_store(),
        api or whmcs_api(system.settings),
        config or (lambda: defaults),
        clock=system.clock,
    )


async def deliver_pending(desk: TicketDesk) -> int:
    """What the cron runner calls: retries every ticket owing a call whose back-off has run
    out; returns how many still owe one."""
    return await desk.deliver_pending()


class TicketFeed:
    """Decodes the tickets queue; raises ValueError on a malformed envelope (dead-lettered)."""

    def __init__(self, desk: TicketDesk, store: StoreTicketAdapter) -> None:
        self._desk = desk
        self._store = store
        self._outage = Outage("tickets")

    async def handle(self, message: Message) -> None:
        """Waits out a database outage (the message is held, not failed)."""
        await riding_out(lambda: self._handle(message), self._outage)

    async def _handle(self, message: Message) -> None:
        if message.routing_key == "cron.tickets":  # the scheduler: retry what is owed
            await self._desk.deliver_pending()
            return
        envelope = event_envelope(message.body)
        if envelope["topic"] == EXPIRY_WARNED:
            await self._expiry(envelope)
            return
        if envelope["topic"] != "Task.Errored":
            return
        task = await asyncio.to_thread(
            self._store.task, uuid.UUID(envelope["aggregate_id"]), int(envelope["version"])
        )
        service = await asyncio.to_thread(self._store.service, task.service_id)
        ticket_id = await self._desk.record_failure(task, service)
        if ticket_id is not None:
            await self._desk.deliver(ticket_id, ignore_backoff=True)

    async def _expiry(self, envelope: dict[str, Any]) -> None:
        data = envelope.get("data")
        if not isinstance(data, dict):
            raise ValueError("an ExpiryWarned envelope needs its data")
        days, not_after = data.get("threshold_days"), data.get("not_after")
        if isinstance(days, bool) or not isinstance(days, int) or not isinstance(not_after, str):
            raise ValueError("an ExpiryWarned envelope needs threshold_days and not_after")
        cert = await asyncio.to_thread(
            self._store.certificate, uuid.UUID(envelope["aggregate_id"]), int(envelope["version"])
        )
        if cert.service_id is None or cert.mode != "custom":
            return  # only a service's custom certificate is warned of
        target = cert.install_target
        warning = ExpiryWarning(
            service_id=cert.service_id,
            role=cert.role,
            server_id="" if target is None else target.server_id,
            not_after=datetime.fromisoformat(not_after),
            threshold_days=days,
        )
        service = await asyncio.to_thread(self._store.service, cert.service_id)
        ticket_id = await self._desk.record_expiry(warning, service)
        if ticket_id is not None:
            await self._desk.deliver(ticket_id, ignore_backoff=True)


EXPIRY_WARNED = "Certificate.ExpiryWarned"


async def run_tickets(
    desk: TicketDesk,
    store: StoreTicketAdapter,
    transport: Transport,
    inbox: Inbox,
    stop: asyncio.Event,
    *,
    prefetch: int,
    retry_interval: float = 60.0,
    max_failures: int = 5,
) -> None:
    loop = ConsumerLoop(
        transport,
        TICKETS_QUEUE,
        TICKETS_BINDINGS,
        TicketFeed(desk, store).handle,
        consumer_name=TICKETS_QUEUE,
        inbox=inbox,
        prefetch=prefetch,
        max_failures=max_failures,
    )
    retrying = asyncio.ensure_future(_retry(desk, stop, retry_interval))
    try:
        await loop.run(stop)
    finally:
        stop.set()
        await retrying


async def _retry(desk: TicketDesk, stop: asyncio.Event, interval: float) -> None:
    outage = Outage("tickets (pending deliveries)")
    while not stop.is_set():
        try:
            await desk.deliver_pending()
        except Exception as exc:
            if database_unavailable(exc):
                outage.failed(exc)
            else:
                log.exception("tickets: retrying pending tickets failed; trying again later")
        else:
            outage.recovered()
        await pause(stop, interval)
