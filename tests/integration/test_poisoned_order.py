"""A poisoned ``Service.Ordered`` still deploys (issue 12): the pipeline on RabbitMQ and
PostgreSQL, fed by the outbox relay, whose store fails the first four loads of the ordered
service as a PostgreSQL restart does (each stale pooled connection fails once). The order is
handed back with a growing pause instead of being dead-lettered, its run is created, and the
deploy goes on to ``active`` with the handlers' results arriving through the broker."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import psycopg
import pytest

from domain.deploy_plan import StepSpec
from domain.retry_policy import RetryPolicy
from domain.service import Service, service_uuid
from handlers.messages import ResultMessage
from handlers.pipeline import Pipeline, PipelineSettings
from ops.adapters.pipeline_store import StorePipelineAdapter
from ops.messaging.amqp_transport import AmqpTransport
from ops.messaging.inbox import Inbox
from ops.messaging.outbox_relay import OutboxRelay
from ops.messaging.topology import PIPELINE_QUEUE, declare_topology
from ops.messaging.transport import Message
from ops.services.pipeline import run_pipeline
from ops.store.database import Database
from ops.store.event_store import EventStore
from ops.store.positions import PositionStore
from tests.fakes.publisher import RecordingPublisher
from tests.support.outbox import connected_amqp
from tests.support.store_orders import order_in_store

STEPS = [
    StepSpec("web.user", "web", "ensure_user", "web1", {"user": "u1"}, ()),
    StepSpec("web.domain", "web", "ensure_web_domain", "web1", {"user": "u1"}, ("web.user",)),
    StepSpec("dns.zone", "dns", "ensure_dns_zone", "dns1", {}, ()),
]


class FixedPlanner:
    def place(self, service: Service) -> dict[str, object]:
        return {"web_server": "web1", "mail_server": "mail1", "dns_servers": ["dns1"]}

    def steps(self, service: Service, placement: dict[str, object], kind: str) -> list[StepSpec]:
        return list(STEPS)


class Limits:
    def max_concurrency(self, server_id: str) -> int:
        return 4


class RestartedDatabaseStore(StorePipelineAdapter):
    """The first ``failures`` loads of one service fail as a stale pooled connection does."""

    def __init__(self, store: EventStore, poisoned: uuid.UUID, failures: int) -> None:
        super().__init__(store)
        self.poisoned = poisoned
        self.failures_left = failures

    def service(self, aggregate_id: uuid.UUID) -> Service:
        if aggregate_id == self.poisoned and self.failures_left > 0:
            self.failures_left -= 1
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return super().service(aggregate_id)


@pytest.fixture
async def broker(amqp_url: str, exchange_name: str) -> AsyncIterator[AmqpTransport]:
    async with connected_amqp(amqp_url, exchange_name) as transport:
        await declare_topology(transport)
        yield transport


async def wait_for(condition: Callable[[], object], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


async def test_a_service_ordered_whose_loads_fail_four_times_still_deploys(
    broker: AmqpTransport, fresh_postgres_url: str
) -> None:
    store = EventStore(fresh_postgres_url)
    db = Database(fresh_postgres_url)
    flaky = RestartedDatabaseStore(store, service_uuid("7"), failures=4)
    published = RecordingPublisher()
    pipeline = Pipeline(
        flaky,
        FixedPlanner(),
        Limits(),
        published,
        settings=PipelineSettings(
            policy=RetryPolicy(max_attempts=3, initial_backoff_s=10, max_backoff_s=60),
            lease_s=60,
            batch_size=100,
        ),
        clock=lambda: datetime.now(UTC),
    )
    stop = asyncio.Event()
    relay = OutboxRelay(store, PositionStore(db), broker)
    parts = [
        asyncio.ensure_future(run_pipeline(pipeline, broker, Inbox(db), stop, prefetch=64)),
        asyncio.ensure_future(relay.run(stop)),
    ]
    try:
        order_in_store(store, "7", now=datetime.now(UTC))
        await wait_for(lambda: published.messages, "the run's first steps")
        assert flaky.failures_left == 0
        # the handlers' results come back through the broker, as in production
        while store.get_service("7").status != "active":
            for message in published.take():
                result = ResultMessage(
                    task_id=message.task_id,
                    attempt=message.attempt,
                    role=message.role,
                    outcome="succeeded",
                    changed=True,
                    log=["done"],
                )
                await broker.publish(
                    Message(result.routing_key, result.to_json(), result.message_id)
                )
            await wait_for(
                lambda: published.messages or store.get_service("7").status == "active",
                "the next steps or the end of the deploy",
            )
        assert await broker.queue_depth(f"{PIPELINE_QUEUE}.dead") == 0
    finally:
        stop.set()
        await asyncio.gather(*parts, return_exceptions=True)
        store.close()
        db.close()
