"""The broker transports as every transport test meets them: RabbitMQ or in-process (the
``transport`` fixture, parametrised), queue names of the test's own that are removed afterwards,
and waits on a condition or a queue's depth.

Consumes the AMQP URL and the test's exchange name; emits a connected transport.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest

from ops.messaging.amqp_transport import AmqpTransport
from ops.messaging.inprocess_transport import InProcessTransport
from tests.support.budget import budget
from tests.support.run_leftovers import note_broker_name

AnyTransport = AmqpTransport | InProcessTransport


class QueueNames:
    """Queue names of one test (the broker's queues are not per exchange), for clean-up."""

    def __init__(self, exchange: str) -> None:
        self._exchange = exchange
        self.made: list[str] = []

    def __call__(self, suffix: str) -> str:
        name = f"{self._exchange}.{suffix}"
        if name not in self.made:
            # as the test names it: a transport prefixes it with the exchange once more
            note_broker_name("queue", self._exchange, name)  # for the session's sweep
        self.made += [name, f"{name}.dead"]
        return name


def new_transport(kind: str, amqp_url: str, exchange: str) -> AnyTransport:
    if kind == "amqp":
        return AmqpTransport(amqp_url, exchange, timeout=5.0)
    return InProcessTransport(exchange)


async def clean_broker(amqp_url: str, exchange: str, queues: QueueNames) -> None:
    """Deletes a test's queues and exchanges over a connection of its own (the test's
    transport may be closed by then)."""
    cleaner = AmqpTransport(amqp_url, exchange, timeout=5.0)
    await cleaner.connect()
    try:
        for name in queues.made:
            await cleaner.delete_queue(name)
        await cleaner.delete_exchange()
    finally:
        await cleaner.close()
    note_broker_name("removed", exchange)


async def wait_until(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    timeout = budget(timeout)
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


async def wait_for_depth(
    transport: AnyTransport, queue: str, depth: int, timeout: float = 5.0
) -> None:
    timeout = budget(timeout)
    deadline = time.monotonic() + timeout
    while (current := await transport.queue_depth(queue)) != depth:
        if time.monotonic() > deadline:
            raise AssertionError(f"{queue} holds {current} messages, expected {depth}")
        await asyncio.sleep(0.01)


@pytest.fixture
def queue_names(exchange_name: str) -> QueueNames:
    return QueueNames(exchange_name)


@pytest.fixture(params=["amqp", "inprocess"])
async def transport(
    request: pytest.FixtureRequest, amqp_url: str, exchange_name: str, queue_names: QueueNames
) -> AsyncIterator[AnyTransport]:
    transport = new_transport(request.param, amqp_url, exchange_name)
    await transport.connect()
    try:
        yield transport
    finally:
        await transport.close()
        if request.param == "amqp":
            await clean_broker(amqp_url, exchange_name, queue_names)
