"""A ticket desk that starts does not read every ticket event ever: it begins where every
ticket had been delivered (a position kept in the database), and still finds every ticket
that owes a WHMCS call. Real event store on SQLite and PostgreSQL, the WHMCS double."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from domain.commands import parse_order
from domain.retry_policy import RetryPolicy
from domain.task import Task
from domain.ticket import Ticket, TicketConfig
from handlers.ticket_desk import TicketDesk
from handlers.whmcs_api import WhmcsApi
from ops.adapters.ticket_store import StoreTicketAdapter
from ops.store.database import Database
from ops.store.event_store import EventStore
from ops.store.positions import PositionStore
from tests.fakes.clock import Clock
from tests.support.whmcs_double import IDENTIFIER, SECRET, WhmcsDouble

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ENABLED = TicketConfig(enabled=True, department_id=2, priority="High")
SERVICES = [str(n) for n in range(40, 46)]


class CountingAdapter(StoreTicketAdapter):
    """Records which tickets the desk loads."""

    def __init__(self, store: EventStore, positions: PositionStore) -> None:
        super().__init__(store, positions)
        self.loaded: set[uuid.UUID] = set()

    def ticket(self, ticket_id: uuid.UUID) -> Ticket | None:
        self.loaded.add(ticket_id)
        return super().ticket(ticket_id)


@pytest.fixture
def whmcs() -> Iterator[WhmcsDouble]:
    double = WhmcsDouble(clients={7: {int(s) for s in SERVICES}})
    double.start()
    yield double
    double.stop()


@pytest.fixture
def stores(database_url: str) -> Iterator[tuple[EventStore, Database]]:
    store, db = EventStore(database_url), Database(database_url)
    for service_id in SERVICES:
        body = {
            "service_id": service_id,
            "client_id": 7,
            "mode": "split",
            "domain": f"s{service_id}.example.com",
            "plan": {"package": "default"},
        }
        store.order_service(parse_order(body, now=T0, actor="whmcs"), None)
    try:
        yield store, db
    finally:
        db.close()
        store.close()


def desk(adapter: StoreTicketAdapter, whmcs: WhmcsDouble, clock: Clock) -> TicketDesk:
    api = WhmcsApi(whmcs.url, IDENTIFIER, SECRET, timeout_s=5)
    return TicketDesk(adapter, api, lambda: ENABLED, clock=clock, unit_random=lambda: 0.5)


async def fail(store: EventStore, the_desk: TicketDesk, service_id: str, clock: Clock) -> None:
    task: Any = Task.plan(
        service_id=service_id,
        run=1,
        step="web.user",
        role="web",
        action="ensure_user",
        server_id="web1",
        params={},
        depends_on=[],
        now=clock(),
    )
    attempt = task.dispatch(clock(), 60)
    task.fail(
        attempt,
        clock(),
        error="v-add-user exited 8",
        retryable=False,
        log=[],
        policy=RetryPolicy(),
        unit_random=0.5,
    )
    store.save(task)
    ticket_id = await the_desk.record_failure(task, store.get_service(service_id))
    assert ticket_id is not None
    await the_desk.deliver(ticket_id, ignore_backoff=True)


async def test_a_starting_desk_reads_only_the_tickets_after_the_last_delivered_position(
    stores: tuple[EventStore, Database], whmcs: WhmcsDouble
) -> None:
    store, db = stores
    clock = Clock(T0)

    def adapter() -> CountingAdapter:
        return CountingAdapter(store, PositionStore(db))

    first = desk(adapter(), whmcs, clock)
    for service_id in SERVICES[:4]:
        await fail(store, first, service_id, clock)
    whmcs.down("503")
    await fail(store, first, SERVICES[4], clock)  # owes its OpenTicket
    assert await first.deliver_pending() == 1

    # a desk starting now still finds the owed ticket (the position stopped before it) …
    whmcs.up()
    clock.advance(minutes=30)
    second = desk(adapter(), whmcs, clock)
    assert await second.deliver_pending() == 0
    assert len(whmcs.calls("OpenTicket")) == len(SERVICES[:5])

    # … and once nothing is owed, a desk starting later loads none of the tickets delivered
    # before (at most the one whose delivery was recorded after the last pass read the log)
    counted = adapter()
    third = desk(counted, whmcs, clock)
    assert await third.deliver_pending() == 0
    assert len(counted.loaded) <= 1, f"the starting desk loaded {len(counted.loaded)} tickets"
    await fail(store, third, SERVICES[5], clock)
    assert await third.deliver_pending() == 0
    assert len(whmcs.calls("OpenTicket")) == len(SERVICES)
