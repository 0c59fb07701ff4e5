"""What the outbox-relay tests share: orders recorded in bulk (set-up, not the path under test)
and a broker on the test's own exchange, RabbitMQ or in-process (the ``transport`` fixture).

Consumes an EventStore, the AMQP URL and the test's exchange name; emits stored Service events
and a connected Transport, removed with its queues after the test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import pytest

from domain.commands import parse_order
from domain.service import Service
from ops.messaging.amqp_transport import AmqpTransport
from ops.messaging.inprocess_transport import InProcessTransport
from ops.messaging.topology import QUEUES
from ops.messaging.transport import Transport
from ops.store.event_store import EventStore
from tests.support.run_leftovers import note_broker_name

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def record_orders(store: EventStore, count: int, first: int = 1) -> None:
    """Records ``count`` orders, saved in batches (fast set-up, not the path under test)."""
    services = [
        Service.order(
            parse_order(
                {
                    "service_id": i,
                    "client_id": 7,
                    "mode": "split",
                    "domain": f"s{i}.example.com",
                    "plan": {"package": "default"},
                },
                now=NOW,
                actor="test",
            ),
            None,
        )
        for i in range(first, first + count)
    ]
    for start in range(0, len(services), 500):
        store.save(*services[start : start + 500])


@asynccontextmanager
async def connected_amqp(amqp_url: str, exchange_name: str) -> AsyncIterator[AmqpTransport]:
    """An AMQP transport on this test's own exchange, with its queues removed afterwards."""
    transport = AmqpTransport(amqp_url, exchange_name)
    await transport.connect()
    try:
        yield transport
    finally:
        for queue in ("collector", "collector.dead", *QUEUES, *(f"{q}.dead" for q in QUEUES)):
            await transport.delete_queue(queue)
        await transport.delete_exchange()
        await transport.close()
        note_broker_name("removed", exchange_name)


@pytest.fixture(params=["amqp", "inprocess"])
async def transport(
    request: pytest.FixtureRequest, amqp_url: str, exchange_name: str
) -> AsyncIterator[Transport]:
    if request.param == "amqp":
        async with connected_amqp(amqp_url, exchange_name) as amqp:
            yield amqp
        return
    in_process = InProcessTransport(exchange_name)
    await in_process.connect()
    yield in_process
    await in_process.close()
