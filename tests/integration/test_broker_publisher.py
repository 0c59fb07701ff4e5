"""Publishing through a broker outage, on RabbitMQ behind a TCP proxy the test cuts: a role
handler's publisher waits the outage out and its message is confirmed once the broker is back
(the transport reconnects by itself and says so); a one-try publish fails; an unroutable
message fails at once, outage or not."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest

from ops.messaging.amqp_transport import AmqpTransport
from ops.messaging.broker_publisher import BrokerPublisher
from ops.messaging.transport import TransportError, Unroutable
from tests.support.budget import budget
from tests.support.tcp_proxy import TcpProxy
from tests.support.transports import (  # noqa: F401 - shared fixtures
    QueueNames,
    clean_broker,
    queue_names,
    wait_for_depth,
    wait_until,
)


@dataclass
class Outage:
    proxy: TcpProxy
    proxied: AmqpTransport  # reaches the broker through the proxy only
    direct: AmqpTransport  # the test's own view of the broker
    heard: list[bool]  # what the proxied transport said about its connection
    queue: str


@pytest.fixture
async def outage(
    amqp_url: str, exchange_name: str, queue_names: QueueNames
) -> AsyncIterator[Outage]:
    broker = urlsplit(amqp_url)
    proxy = TcpProxy(broker.hostname or "127.0.0.1", broker.port or 5672)
    url = amqp_url.replace(f"{broker.hostname}:{broker.port}", f"127.0.0.1:{proxy.port}")
    await proxy.start()
    proxied = AmqpTransport(url, exchange_name, timeout=5.0)
    direct = AmqpTransport(amqp_url, exchange_name, timeout=5.0)
    heard: list[bool] = []
    try:
        await proxied.connect()
        proxied.on_connection_change(heard.append)
        await direct.connect()
        queue = queue_names("results")
        await direct.declare_queue(queue, ["result.*"])
        yield Outage(proxy, proxied, direct, heard, queue)
    finally:
        await proxied.close()
        await direct.close()
        await proxy.stop()
        await clean_broker(amqp_url, exchange_name, queue_names)


async def test_a_handlers_publish_waits_out_a_broker_outage_and_is_confirmed_after(
    outage: Outage,
) -> None:
    await outage.proxy.stop()
    await wait_until(lambda: False in outage.heard, "the lost connection reported")
    with pytest.raises(TransportError):  # one try: the pipeline keeps and re-sends its own
        await BrokerPublisher(outage.proxied).publish("result.web", b"{}", "t:0")
    patient = BrokerPublisher(outage.proxied, wait_out_outages=True)
    publishing = asyncio.ensure_future(patient.publish("result.web", b"{}", "t:1"))
    await asyncio.sleep(1.0)
    assert not publishing.done(), "the publish gave up while the broker was away"
    await outage.proxy.start()
    await asyncio.wait_for(publishing, budget(60))
    await wait_until(lambda: outage.heard[-1] is True, "the connection reported back", 60)
    await wait_for_depth(outage.direct, outage.queue, 1)


async def test_an_unroutable_message_fails_at_once_even_for_a_patient_publisher(
    outage: Outage,
) -> None:
    patient = BrokerPublisher(outage.proxied, wait_out_outages=True)
    with pytest.raises(Unroutable):
        await asyncio.wait_for(patient.publish("nobody.listens", b"{}", "t:2"), budget(10))
