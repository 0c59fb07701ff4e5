"""The outbox relay: every stored event a queue is bound for reaches the broker, through crashes
and outages.

The kill and outage tests run the real CLI (`hostwright serve relay`, `hostwright up`) as
processes against RabbitMQ; "broker down" is a TCP proxy in front of RabbitMQ that the test
closes and reopens, which is what the relay sees when the broker's node goes away.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from domain.task import Task
from ops.messaging.amqp_transport import AmqpTransport
from ops.messaging.consumer import ConsumerLoop
from ops.messaging.inbox import Inbox
from ops.messaging.outbox_relay import OutboxRelay
from ops.messaging.topology import PIPELINE_QUEUE
from ops.messaging.transport import Message, Transport
from ops.store.database import Database
from ops.store.event_store import EventStore
from ops.store.positions import PositionStore
from tests.support.outbox import (
    NOW,
    connected_amqp,
    record_orders,
    transport,  # noqa: F401 - the shared fixture
)
from tests.support.processes import HostwrightProcess
from tests.support.tcp_proxy import TcpProxy


class Collector:
    """What a consumer's handler saw, after the consumer loop's inbox de-duplication."""

    def __init__(self) -> None:
        self.unique: list[str] = []
        self.service_ids: list[str] = []

    async def handle(self, message: Message) -> None:
        self.unique.append(message.message_id)
        self.service_ids.append(json.loads(message.body)["data"].get("service_id", ""))


async def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
async def amqp_transport(amqp_url: str, exchange_name: str) -> AsyncIterator[AmqpTransport]:
    async with connected_amqp(amqp_url, exchange_name) as transport:
        yield transport


async def _start_collector(
    transport: Transport,
    db: Database,
    stop: asyncio.Event,
    bindings: tuple[str, ...] = ("Service.#",),
) -> tuple[Collector, asyncio.Task[None]]:
    collector = Collector()
    loop = ConsumerLoop(
        transport,
        "collector",
        bindings,
        collector.handle,
        consumer_name="collector",
        inbox=Inbox(db),
        prefetch=200,
    )
    task = asyncio.ensure_future(loop.run(stop))
    await wait_until(lambda: True, 0.2, "consumer start")
    return collector, task


async def test_every_stored_event_is_published_once_in_order(
    transport: Transport, database_url: str
) -> None:
    store = EventStore(database_url)
    db = Database(database_url)
    record_orders(store, 300)
    await transport.declare_queue("collector", ["Service.#"])
    stop = asyncio.Event()
    collector, consuming = await _start_collector(transport, db, stop)
    relay = OutboxRelay(store, PositionStore(db), transport, batch_size=64)
    while await relay.relay_once():
        pass
    await wait_until(lambda: len(collector.unique) == 300, 10, "300 deliveries")
    assert collector.unique == [str(i) for i in range(1, 301)]
    assert await relay.relay_once() == 0  # the position moved past everything
    stop.set()
    await consuming
    store.close()
    db.close()


async def test_the_topology_is_declared_first_and_unconsumed_topics_do_not_block(
    transport: Transport, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    store, db = EventStore(url), Database(url)
    record_orders(store, 3)
    task = Task.plan(
        service_id="1",
        run=1,
        step="web.user",
        role="web",
        action="ensure_user",
        server_id="web1",
        params={},
        depends_on=[],
        now=NOW,
    )
    store.save(task)  # Task.Planned: nothing consumes it from the broker
    record_orders(store, 2, first=4)
    relay = OutboxRelay(store, PositionStore(db), transport)
    await relay.prepare()
    assert await relay.relay_once() == 6
    assert relay.unrouted == 1
    await wait_until_depth(transport, PIPELINE_QUEUE, 5)  # the orders wait for the pipeline
    assert await relay.relay_once() == 0
    store.close()
    db.close()


async def wait_until_depth(transport: Transport, queue: str, depth: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if await transport.queue_depth(queue) == depth:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{queue} never reached depth {depth}")


async def test_relay_killed_mid_stream_loses_nothing(
    amqp_transport: AmqpTransport,
    amqp_url: str,
    exchange_name: str,
    database_url: str,
    tmp_path: Path,
) -> None:
    total = 1500
    store, db = EventStore(database_url), Database(database_url)
    record_orders(store, total)
    await amqp_transport.declare_queue("collector", ["Service.#"])
    stop = asyncio.Event()
    collector, consuming = await _start_collector(amqp_transport, db, stop)
    env = {
        "HOSTWRIGHT_DATABASE_URL": database_url,
        "HOSTWRIGHT_AMQP_URL": amqp_url,
        "HOSTWRIGHT_EXCHANGE": exchange_name,
        "HOSTWRIGHT_RELAY_BATCH": "10",
    }
    first = HostwrightProcess(["serve", "relay"], env, tmp_path, "relay-1").start()
    try:
        await wait_until(lambda: len(collector.unique) >= 300, 30, "the relay to get going")
        first.kill()
    finally:
        first.__exit__()
    delivered_at_kill = len(collector.unique)
    assert delivered_at_kill < total, "the relay finished before it was killed: not mid-stream"
    with HostwrightProcess(["serve", "relay"], env, tmp_path, "relay-2"):
        await wait_until(lambda: len(collector.unique) >= total, 60, f"{total} deliveries")
    await asyncio.sleep(0.3)  # let any late duplicate arrive before counting
    stop.set()
    await consuming
    assert len(collector.unique) == total
    assert set(collector.unique) == {str(i) for i in range(1, total + 1)}
    store.close()
    db.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_orders_taken_while_the_broker_is_down_are_relayed_when_it_returns(
    amqp_transport: AmqpTransport, amqp_url: str, exchange_name: str, tmp_path: Path
) -> None:
    broker = urlsplit(amqp_url)
    proxy = TcpProxy(broker.hostname or "127.0.0.1", broker.port or 5672)
    proxied = amqp_url.replace(f"{broker.hostname}:{broker.port}", f"127.0.0.1:{proxy.port}")
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    token = secrets.token_urlsafe(32)
    port = _free_port()
    env = {
        "HOSTWRIGHT_DATABASE_URL": url,
        "HOSTWRIGHT_AMQP_URL": proxied,
        "HOSTWRIGHT_EXCHANGE": exchange_name,
        "HOSTWRIGHT_LISTEN": f"127.0.0.1:{port}",
        "HOSTWRIGHT_API_TOKEN": token,
        "HOSTWRIGHT_SECRET_KEY": secrets.token_hex(32),
    }
    store, db = EventStore(url), Database(url)
    # `up` runs the pipeline too, which records outcomes of its own: collect the orders only
    await amqp_transport.declare_queue("collector", ["Service.Ordered"])
    stop = asyncio.Event()
    collector, consuming = await _start_collector(
        amqp_transport, db, stop, bindings=("Service.Ordered",)
    )
    headers = {"Authorization": f"Bearer {token}"}

    async def order(client: httpx.AsyncClient, i: int) -> None:
        body = {
            "service_id": i,
            "client_id": 1,
            "mode": "split",
            "domain": f"d{i}.example.org",
            "plan": {"package": "default"},
        }
        reply = await client.post("/v1/services", json=body, headers=headers)
        assert reply.status_code == 202, reply.text
        assert reply.json() == {"result": "success", "service_id": str(i), "status": "provisioning"}

    with HostwrightProcess(["up"], env, tmp_path, "up") as up:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            await wait_until_http(client, up)
            # The broker has never been reachable: orders are still accepted and stored.
            for i in range(1, 21):
                await order(client, i)
            await order(client, 5)  # a repeat is harmless and records nothing
            assert store.max_notification_id() == 20 * 3  # each with its domain and user claims
            assert collector.unique == []
            await proxy.start()
            await wait_until(lambda: len(collector.unique) == 20, 30, "the first 20 relayed")
            # The broker goes away while more orders arrive.
            await proxy.stop()
            for i in range(21, 51):
                await order(client, i)
            await asyncio.sleep(0.5)
            assert len(collector.unique) == 20
            await proxy.start()
            await wait_until(lambda: len(collector.unique) == 50, 45, "all 50 relayed")
        assert up.terminate() == 0, up.log()
    await proxy.stop()
    stop.set()
    await consuming
    assert len(set(collector.unique)) == len(collector.unique) == 50
    assert sorted(collector.service_ids, key=int) == [str(i) for i in range(1, 51)]
    store.close()
    db.close()


async def wait_until_http(client: httpx.AsyncClient, process: HostwrightProcess) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.proc is not None
        if process.proc.poll() is not None:
            raise AssertionError(f"hostwright up exited early:\n{process.log()}")
        try:
            if (await client.get("/healthz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"the gateway never answered:\n{process.log()}")
