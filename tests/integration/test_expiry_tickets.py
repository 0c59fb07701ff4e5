"""Custom certificates near their end open a WHMCS ticket, the real way: the SSL desk's
``warn_expiring`` records ``Certificate.ExpiryWarned`` in a real event store (SQLite and
PostgreSQL), the tickets component's handler (``TicketFeed.handle``) takes the envelope the
relay publishes for it, and the real WHMCS client talks to the WHMCS double over HTTP.

One ticket per certificate expiry: the first warning opens it, each later threshold (30, 14,
7, 1 days) is a note on it; a renewed certificate's warnings open a ticket of their own;
nothing at all while tickets are off."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

import pytest
from eventsourcing.utils import get_topic

from domain.certificate import Certificate, certificate_uuid
from domain.commands import parse_order
from domain.ssl_types import CertificateFacts, InstallTarget, SslCadence
from domain.ticket import TicketConfig, expiry_operation, expiry_run, ticket_uuid
from handlers import x509_tools
from handlers.ssl_desk import SslDesk
from handlers.ticket_desk import TicketDesk
from handlers.whmcs_api import WhmcsApi
from ops.adapters.certificate_book import StoreCertificateBook
from ops.adapters.ticket_store import StoreTicketAdapter
from ops.bootstrap import System
from ops.devtools.mini_ca import MiniCa
from ops.messaging.topology import QUEUES, declare_topology
from ops.messaging.transport import Message
from ops.runtime.components import COMPONENTS
from ops.services.tickets import TicketFeed
from ops.settings import Settings
from ops.store.event_store import EventStore
from tests.fakes.clock import Clock
from tests.support.budget import budget
from tests.support.whmcs_double import IDENTIFIER, SECRET, WhmcsDouble

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ENABLED = TicketConfig(enabled=True, department_id=2, priority="High")
NAMES = ["s42.example.com", "www.s42.example.com"]
TARGET = InstallTarget("web1", "web", "u42", "s42.example.com")
CERT_ID = certificate_uuid("42", "web")
PEM_HEAD = "-----BEGIN"


class Listing:
    """The SSL view's ``custom_expiring`` as the desk needs it: this one certificate."""

    def custom_expiring(self, before: datetime) -> list[uuid.UUID]:
        return [CERT_ID]


@pytest.fixture
def whmcs() -> Iterator[WhmcsDouble]:
    double = WhmcsDouble()
    double.start()
    yield double
    double.stop()


def order(store: EventStore) -> None:
    body = {
        "service_id": "42",
        "client_id": 7,
        "mode": "split",
        "domain": "s42.example.com",
        "plan": {"package": "default"},
    }
    store.order_service(parse_order(body, now=T0, actor="whmcs"), None)


@pytest.fixture
def store(database_url: str) -> Iterator[EventStore]:
    store = EventStore(database_url)
    order(store)
    yield store
    store.close()


def upload(store: EventStore, now: datetime, not_after: datetime) -> CertificateFacts:
    """The customer's certificate for service 42's web role, seeded first if need be."""
    leaf = MiniCa().leaf(NAMES, not_before=now - timedelta(days=60), not_after=not_after)
    facts = x509_tools.facts(leaf.certificate_pem)

    def decide(cert: Certificate | None) -> Certificate:
        cert = cert or Certificate.seed(
            service_id="42",
            role="web",
            names=NAMES,
            install=TARGET,
            dns_targets=[],
            http01=None,
            expected_addresses=["127.0.0.1"],
            cadence=SslCadence(),
            now=now,
            actor="deploy",
        )
        cert.upload_custom(
            now,
            certificate=leaf.certificate_pem,
            chain="",
            key_sealed="sealed-key",
            facts=facts,
            actor="whmcs",
        )
        return cert

    StoreCertificateBook(store).update(CERT_ID, decide, "busy")
    return facts


def ssl_desk(store: EventStore, clock: Clock) -> SslDesk:
    """The real desk; warn_expiring needs only its book, its listing and its clock."""
    unused = cast(Any, None)
    return SslDesk(
        StoreCertificateBook(store),
        cast(Any, SimpleNamespace(sealer=None)),  # the vanity sites' part reads its sealer
        unused,
        unused,
        unused,
        SslCadence,
        clock,
        listing=Listing(),
    )


def ticket_desk(store: EventStore, url: str, clock: Clock, config: TicketConfig) -> TicketDesk:
    return TicketDesk(
        StoreTicketAdapter(store),
        WhmcsApi(url, IDENTIFIER, SECRET, timeout_s=5),
        lambda: config,
        clock=clock,
        unit_random=lambda: 0.5,
    )


def relayed(store: EventStore, after: int) -> list[Message]:
    """The messages the relay publishes for the ExpiryWarned events after ``after``."""
    topic = get_topic(Certificate.ExpiryWarned)
    found = store.recorder.select_notifications(start=after + 1, limit=10_000, topics=[topic])
    return [Message("Certificate.ExpiryWarned", store.envelope(n), str(n.id)) for n in found]


async def warn(store: EventStore, feed: TicketFeed, clock: Clock) -> list[int]:
    """One daily run: the desk records what is owed, the feed gets what the relay sends."""
    mark = store.max_notification_id()
    warned = [days for _, days in await ssl_desk(store, clock).warn_expiring(clock())]
    for message in relayed(store, mark):
        await feed.handle(message)
    return warned


async def test_the_first_warning_opens_one_ticket_and_later_thresholds_add_notes(
    store: EventStore, whmcs: WhmcsDouble
) -> None:
    clock = Clock(T0)
    facts = upload(store, T0, T0 + timedelta(days=40))
    feed = TicketFeed(ticket_desk(store, whmcs.url, clock, ENABLED), StoreTicketAdapter(store))
    warned = []
    for days_left in (31, 29, 28, 13, 12, 6, 0.5, 0.25):
        clock.now = facts.not_after - timedelta(days=days_left)
        warned += await warn(store, feed, clock)
    assert warned == [30, 14, 7, 1]

    opened, notes = whmcs.calls("OpenTicket"), whmcs.calls("AddTicketNote")
    assert len(opened) == 1 and len(notes) == 3
    params = opened[0].params
    assert (params["deptid"], params["priority"], params["clientid"], params["serviceid"]) == (
        "2",
        "High",
        "7",
        "42",
    )
    day = f"{facts.not_after:%Y-%m-%d}"
    assert params["subject"].startswith(
        f"hostwright: the custom web certificate of service 42 expires on {day}"
    )
    assert "30 days or less left" in params["message"] and "web1" in params["message"]
    assert "PUT /v1/services/42/ssl/web/custom" in params["message"]
    assert ["14 days" in notes[0].params["message"], "7 days" in notes[1].params["message"]] == [
        True,
        True,
    ]
    assert "1 day or less left" in notes[2].params["message"]
    ticket_id = ticket_uuid("42", expiry_operation("web"), expiry_run(facts.not_after))
    ticket = StoreTicketAdapter(store).ticket(ticket_id)
    assert ticket is not None and not ticket.has_work
    assert {n.params["ticketid"] for n in notes} == {str(ticket.whmcs_ticket_id)}
    sent = " ".join(c.params.get("message", "") for c in whmcs.calls())
    assert PEM_HEAD not in sent and "sealed-key" not in sent


async def test_a_redelivered_warning_adds_no_note_and_a_renewed_certificate_gets_its_own_ticket(
    store: EventStore, whmcs: WhmcsDouble
) -> None:
    clock = Clock(T0)
    first = upload(store, T0, T0 + timedelta(days=20))
    feed = TicketFeed(ticket_desk(store, whmcs.url, clock, ENABLED), StoreTicketAdapter(store))
    mark = store.max_notification_id()
    assert await warn(store, feed, clock) == [30]
    (message,) = relayed(store, mark)
    await feed.handle(message)  # the relay published it again
    assert len(whmcs.calls("OpenTicket")) == 1 and not whmcs.calls("AddTicketNote")

    clock.advance(24 * 60)
    renewed = upload(store, clock(), clock() + timedelta(days=10))
    assert renewed.not_after != first.not_after
    assert await warn(store, feed, clock) == [14]  # the new certificate's first warning
    assert len(whmcs.calls("OpenTicket")) == 2 and not whmcs.calls("AddTicketNote")
    assert len(whmcs.tickets()) == 2


async def test_with_tickets_off_warnings_are_recorded_and_no_ticket_is_opened(
    store: EventStore, whmcs: WhmcsDouble
) -> None:
    clock = Clock(T0)
    facts = upload(store, T0, T0 + timedelta(days=5))
    desk = ticket_desk(store, whmcs.url, clock, TicketConfig(enabled=False))
    assert await warn(store, TicketFeed(desk, StoreTicketAdapter(store)), clock) == [7]
    assert await desk.deliver_pending() == 0
    ticket_id = ticket_uuid("42", expiry_operation("web"), expiry_run(facts.not_after))
    assert StoreTicketAdapter(store).ticket(ticket_id) is None
    assert not whmcs.calls()


async def test_the_tickets_component_takes_expiry_warnings_from_its_queue(
    sqlite_url: str, whmcs: WhmcsDouble, amqp_url: str, exchange_name: str
) -> None:
    """`hostwright serve tickets` as wired, on RabbitMQ: the queue ``tickets`` is bound for
    ``Certificate.ExpiryWarned``, so a warning published there becomes a ticket."""
    settings = Settings(
        database_url=sqlite_url,
        amqp_url=amqp_url,
        exchange=exchange_name,
        whmcs_url=whmcs.url,
        whmcs_identifier=IDENTIFIER,
        whmcs_secret=SECRET,
        tickets_enabled=True,
        tickets_department_id=2,
        tickets_priority="Low",
    )
    clock = Clock(T0)
    system = System(settings, clock=clock)
    order(system.store)
    facts = upload(system.store, T0, T0 + timedelta(days=3))
    await system.transport.connect()
    system.transport_connected = True
    stop = asyncio.Event()
    serving: asyncio.Future[None] | None = None
    try:
        await declare_topology(system.transport)
        mark = system.store.max_notification_id()
        clock.now = facts.not_after - timedelta(days=2)
        assert [d for _, d in await ssl_desk(system.store, clock).warn_expiring(clock())] == [7]
        clock.now = facts.not_after - timedelta(hours=12)
        assert [d for _, d in await ssl_desk(system.store, clock).warn_expiring(clock())] == [1]
        for message in relayed(system.store, mark):
            await system.transport.publish(message)  # mandatory: unroutable would raise
        serving = asyncio.ensure_future(COMPONENTS["tickets"](system, stop))
        for _ in range(200):
            if whmcs.calls("OpenTicket") and whmcs.calls("AddTicketNote"):
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        if serving is not None:
            await asyncio.wait_for(serving, budget(10))
        for queue in QUEUES:
            await system.transport.delete_queue(queue)
            await system.transport.delete_queue(f"{queue}.dead")
        await system.transport.delete_exchange()
        await system.close()
    opened = whmcs.calls("OpenTicket")
    assert len(opened) == 1 and opened[0].params["priority"] == "Low"
    assert len(whmcs.calls("AddTicketNote")) == 1
