"""Dead letters made visible and re-driven on RabbitMQ: ``hostwright dead-letters`` and the
``/healthz`` gauge count each ``<queue>.dead``; ``hostwright redrive [QUEUE]`` moves its
messages back to their queue with their routing key, id and headers. With automatic SSL on,
the SSL queues are among them, and the relay declares them before it publishes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from domain.certificate import Certificate
from domain.ssl_types import SslCadence
from ops.cli import main
from ops.messaging.amqp_transport import AmqpTransport
from ops.messaging.dead_letters import DeadLetterGauge
from ops.messaging.outbox_relay import OutboxRelay
from ops.messaging.topology import (
    PIPELINE_QUEUE,
    QUEUES,
    SSL_QUEUE,
    consumed_queues,
    declare_topology,
    handler_queue,
)
from ops.messaging.transport import REDRIVEN_FROM, Delivery, Message, TransportError
from ops.store.database import Database
from ops.store.event_store import EventStore
from ops.store.positions import PositionStore
from tests.support.budget import budget

CRON = Message("cron.retries", b"tick", "m-1", headers={"origin": "scheduler"})


@pytest.fixture
def environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, amqp_url: str, exchange_name: str
) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)  # no hostwright.toml from elsewhere
    for name in ("HOSTWRIGHT_CONFIG", "HOSTWRIGHT_API_TOKEN", "HOSTWRIGHT_STAFF_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOSTWRIGHT_DATABASE_URL", f"sqlite:///{tmp_path / 'store.sqlite'}")
    monkeypatch.setenv("HOSTWRIGHT_AMQP_URL", amqp_url)
    monkeypatch.setenv("HOSTWRIGHT_EXCHANGE", exchange_name)
    try:
        yield
    finally:
        asyncio.run(_remove(amqp_url, exchange_name))


async def _remove(amqp_url: str, exchange_name: str) -> None:
    transport = AmqpTransport(amqp_url, exchange_name, timeout=5.0)
    await transport.connect()
    try:
        for queue in consumed_queues(ssl=True):
            await transport.delete_queue(queue)
            await transport.delete_queue(f"{queue}.dead")
        await transport.delete_exchange()
    finally:
        await transport.close()


async def _dead_letter_one(
    amqp_url: str,
    exchange_name: str,
    message: Message = CRON,
    queue: str = PIPELINE_QUEUE,
    *,
    ssl: bool = False,
) -> dict[str, int] | None:
    """Publishes ``message``, rejects it off ``queue`` into ``<queue>.dead``, and answers what
    the health gauge then counts."""
    transport = AmqpTransport(amqp_url, exchange_name, timeout=5.0)
    await transport.connect()
    rejected = asyncio.Event()

    async def reject(delivery: Delivery) -> None:
        await delivery.reject(requeue=False)
        rejected.set()

    try:
        await declare_topology(transport, ssl=ssl)
        await transport.publish(message)
        subscription = await transport.consume(queue, reject, prefetch=1)
        await asyncio.wait_for(rejected.wait(), budget(10))
        await subscription.cancel()
        gauge = DeadLetterGauge(transport, max_age=0.0, ssl=ssl)
        for _ in range(500):
            counts = await gauge.counts()
            if counts and counts.get(f"{queue}.dead") == 1:
                return counts
            await asyncio.sleep(0.02)
        return await gauge.counts()
    finally:
        await transport.close()


async def _take_one(amqp_url: str, exchange_name: str, queue: str = PIPELINE_QUEUE) -> Message:
    transport = AmqpTransport(amqp_url, exchange_name, timeout=5.0)
    await transport.connect()
    taken: asyncio.Future[Message] = asyncio.get_running_loop().create_future()

    async def take(delivery: Delivery) -> None:
        await delivery.ack()
        if not taken.done():
            taken.set_result(delivery.message)

    try:
        subscription = await transport.consume(queue, take, prefetch=1)
        message = await asyncio.wait_for(taken, budget(10))
        await subscription.cancel()
        return message
    finally:
        await transport.close()


def _counts(output: str) -> dict[str, int]:
    return {line.split()[0]: int(line.split()[1]) for line in output.splitlines() if line}


def test_dead_letters_are_counted_and_re_driven_to_their_queue(
    environment: None, amqp_url: str, exchange_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    gauged = asyncio.run(_dead_letter_one(amqp_url, exchange_name))
    assert gauged == {f"{queue}.dead": int(queue == PIPELINE_QUEUE) for queue in QUEUES}

    assert main(["dead-letters"]) == 0
    assert _counts(capsys.readouterr().out) == gauged

    assert main(["redrive", "nowhere"]) == 2
    assert "no queue 'nowhere'" in capsys.readouterr().err

    assert main(["redrive", "pipeline.dead"]) == 0
    out = capsys.readouterr().out
    assert "redrive: 1 message(s) moved from pipeline.dead to pipeline" in out
    assert "redrive: 1 message(s) re-driven" in out

    assert main(["dead-letters"]) == 0
    assert set(_counts(capsys.readouterr().out).values()) == {0}
    back = asyncio.run(_take_one(amqp_url, exchange_name))
    assert (back.routing_key, back.body, back.message_id) == ("cron.retries", b"tick", "m-1")
    assert back.headers == {"origin": "scheduler", REDRIVEN_FROM: "cron.retries"}

    assert main(["redrive"]) == 0  # every queue: nothing left
    assert "redrive: 0 message(s) re-driven" in capsys.readouterr().out


def test_on_the_in_process_transport_the_commands_say_where_dead_letters_are(
    environment: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("HOSTWRIGHT_AMQP_URL")
    assert main(["redrive"]) == 0
    assert "nothing to re-drive" in capsys.readouterr().out
    assert main(["dead-letters"]) == 0
    assert "GET /healthz shows their counts" in capsys.readouterr().out


SSL_TASK = Message("task.ssl.web1", b"ssl-task", "m-ssl", headers={"origin": "pipeline"})
SSL_HANDLER = handler_queue("ssl")


def test_with_ssl_on_its_queues_are_counted_and_re_driven(
    environment: None,
    monkeypatch: pytest.MonkeyPatch,
    amqp_url: str,
    exchange_name: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("HOSTWRIGHT_SSL", "auto")
    gauged = asyncio.run(_dead_letter_one(amqp_url, exchange_name, SSL_TASK, SSL_HANDLER, ssl=True))
    assert gauged is not None
    assert gauged == {
        f"{queue}.dead": int(queue == SSL_HANDLER) for queue in consumed_queues(ssl=True)
    }
    assert {f"{SSL_HANDLER}.dead", f"{SSL_QUEUE}.dead"} <= set(gauged)

    assert main(["dead-letters"]) == 0
    assert _counts(capsys.readouterr().out) == gauged

    assert main(["redrive", f"{SSL_HANDLER}.dead"]) == 0
    assert f"1 message(s) moved from {SSL_HANDLER}.dead to {SSL_HANDLER}" in capsys.readouterr().out
    back = asyncio.run(_take_one(amqp_url, exchange_name, SSL_HANDLER))
    assert (back.routing_key, back.body, back.message_id) == ("task.ssl.web1", b"ssl-task", "m-ssl")

    asyncio.run(_dead_letter_one(amqp_url, exchange_name, SSL_TASK, SSL_HANDLER, ssl=True))
    assert main(["redrive"]) == 0  # every queue's, the SSL ones among them
    assert "redrive: 1 message(s) re-driven" in capsys.readouterr().out

    monkeypatch.setenv("HOSTWRIGHT_SSL", "off")  # then hostwright consumes no SSL queue
    assert main(["redrive", SSL_HANDLER]) == 2
    assert f"no queue {SSL_HANDLER!r}" in capsys.readouterr().err
    assert main(["dead-letters"]) == 0
    assert f"{SSL_HANDLER}.dead" not in _counts(capsys.readouterr().out)


def _seeded(service_id: str) -> Certificate:
    return Certificate.seed(
        service_id=service_id,
        role="web",
        names=[f"s{service_id}.example.com"],
        install=None,
        dns_targets=[],
        http01=None,
        expected_addresses=[],
        cadence=SslCadence(),
        now=datetime(2026, 12, 1, tzinfo=UTC),
        actor="deploy",
    )


@pytest.mark.parametrize("ssl", [True, False])
async def test_the_relay_declares_the_ssl_queues_only_with_ssl_on(
    amqp_url: str, exchange_name: str, tmp_path: Path, ssl: bool
) -> None:
    """The relay runs before any SSL desk declared its queue: a Certificate event it relays
    must wait in ``ssl`` all the same, not be returned unroutable and lost."""
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    store = EventStore(url)
    try:
        db = Database(url)
        try:
            await _relay_ssl(amqp_url, exchange_name, store, db, ssl)
        finally:
            db.close()
    finally:
        store.close()


async def _relay_ssl(
    amqp_url: str, exchange_name: str, store: EventStore, db: Database, ssl: bool
) -> None:
    transport = AmqpTransport(amqp_url, exchange_name, timeout=5.0)
    try:
        await transport.connect()
        store.save(_seeded("42"))
        relay = OutboxRelay(store, PositionStore(db), transport, ssl=ssl)
        await relay.prepare()
        assert await relay.relay_once() == 1
        if not ssl:
            assert relay.unrouted == 1
            with pytest.raises(TransportError):  # the broker closes the channel: asked last
                await transport.queue_depth(SSL_QUEUE)
            return
        assert relay.unrouted == 0
        assert await transport.queue_depth(SSL_HANDLER) == 0
        for _ in range(500):
            if await transport.queue_depth(SSL_QUEUE) == 1:
                break
            await asyncio.sleep(0.02)
        assert await transport.queue_depth(SSL_QUEUE) == 1
    finally:
        try:
            await transport.close()
        finally:
            await _remove(amqp_url, exchange_name)
