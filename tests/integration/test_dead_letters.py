"""Dead letters made visible and re-driven on RabbitMQ: ``hostwright dead-letters`` and the
``/healthz`` gauge count each ``<queue>.dead``; ``hostwright redrive [QUEUE]`` moves its
messages back to their queue with their routing key, id and headers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops.cli import main
from ops.messaging.amqp_transport import AmqpTransport
from ops.messaging.dead_letters import DeadLetterGauge
from ops.messaging.topology import PIPELINE_QUEUE, QUEUES, declare_topology
from ops.messaging.transport import REDRIVEN_FROM, Delivery, Message
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
        for queue in QUEUES:
            await transport.delete_queue(queue)
            await transport.delete_queue(f"{queue}.dead")
        await transport.delete_exchange()
    finally:
        await transport.close()


async def _dead_letter_one(amqp_url: str, exchange_name: str) -> dict[str, int] | None:
    """Publishes a cron tick, rejects it off the pipeline's queue into ``pipeline.dead``, and
    answers what the health gauge then counts."""
    transport = AmqpTransport(amqp_url, exchange_name, timeout=5.0)
    await transport.connect()
    rejected = asyncio.Event()

    async def reject(delivery: Delivery) -> None:
        await delivery.reject(requeue=False)
        rejected.set()

    try:
        await declare_topology(transport)
        await transport.publish(CRON)
        subscription = await transport.consume(PIPELINE_QUEUE, reject, prefetch=1)
        await asyncio.wait_for(rejected.wait(), budget(10))
        await subscription.cancel()
        gauge = DeadLetterGauge(transport, max_age=0.0)
        for _ in range(500):
            counts = await gauge.counts()
            if counts and counts["pipeline.dead"] == 1:
                return counts
            await asyncio.sleep(0.02)
        return await gauge.counts()
    finally:
        await transport.close()


async def _take_one(amqp_url: str, exchange_name: str) -> Message:
    transport = AmqpTransport(amqp_url, exchange_name, timeout=5.0)
    await transport.connect()
    taken: asyncio.Future[Message] = asyncio.get_running_loop().create_future()

    async def take(delivery: Delivery) -> None:
        await delivery.ack()
        if not taken.done():
            taken.set_result(delivery.message)

    try:
        subscription = await transport.consume(PIPELINE_QUEUE, take, prefetch=1)
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
