"""A consumer cancelled while it subscribes leaves no consumer on the broker (RabbitMQ)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from ops.messaging import amqp_transport
from ops.messaging.amqp_transport import AmqpTransport
from ops.messaging.transport import Delivery
from tests.support.budget import budget
from tests.support.transports import (  # noqa: F401 - shared fixtures
    QueueNames,
    clean_broker,
    queue_names,
    wait_until,
)


@pytest.fixture
async def amqp(
    amqp_url: str, exchange_name: str, queue_names: QueueNames
) -> AsyncIterator[AmqpTransport]:
    transport = AmqpTransport(amqp_url, exchange_name, timeout=5.0)
    await transport.connect()
    try:
        yield transport
    finally:
        await transport.close()
        await clean_broker(amqp_url, exchange_name, queue_names)


async def _consumers(transport: AmqpTransport, queue: str) -> int:
    channel = transport._admin
    assert channel is not None
    declared = await channel.declare_queue(transport.queue_name(queue), passive=True, robust=False)
    result = await declared.declare()
    return int(result.consumer_count or 0)


async def test_cancelled_while_subscribing_leaves_no_consumer(
    amqp: AmqpTransport, queue_names: QueueNames, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = queue_names("work")
    await amqp.declare_queue(queue, ["task.#"])
    started = asyncio.Event()
    real_start = amqp_transport._AmqpSubscription.start

    async def start_then_hang(self: amqp_transport._AmqpSubscription, callback: object) -> None:
        await real_start(self, callback)  # type: ignore[arg-type]
        started.set()  # the broker consumer exists; the subscription has not returned yet
        await asyncio.Event().wait()

    monkeypatch.setattr(amqp_transport._AmqpSubscription, "start", start_then_hang)

    async def received(delivery: Delivery) -> None:
        await delivery.ack()

    subscribing = asyncio.ensure_future(amqp.consume(queue, received, prefetch=1))
    await asyncio.wait_for(started.wait(), budget(10))
    assert await _consumers(amqp, queue) == 1
    subscribing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await subscribing

    consumers: list[int] = []

    async def count() -> None:
        consumers.append(await _consumers(amqp, queue))

    deadline = asyncio.get_running_loop().time() + 10
    while True:
        await count()
        if consumers[-1] == 0 or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.05)
    assert consumers[-1] == 0
