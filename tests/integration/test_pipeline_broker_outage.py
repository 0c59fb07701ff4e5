"""The pipeline while the broker is away, on a real event store (SQLite) with a publisher the
test can refuse: a task message whose publish failed is re-sent, same message id, once the
broker takes it again, burning no attempt; no lease runs out while the broker is away, and each
open lease gets a fresh one (and only one) when it is back."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from domain.deploy_plan import StepSpec
from domain.retry_policy import RetryPolicy
from domain.service import Service, service_uuid
from handlers.pipeline import Pipeline, PipelineSettings
from ops.adapters.pipeline_store import StorePipelineAdapter
from ops.store.event_store import EventStore
from tests.fakes.clock import Clock
from tests.fakes.publisher import RecordingPublisher
from tests.support.deployment import wait_until
from tests.support.store_orders import order_in_store

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
LEASE_S = 30
STEPS = [
    StepSpec("web.user", "web", "ensure_user", "web1", {"user": "u1"}, ()),
    StepSpec("mail.domain", "mail", "ensure_mail_domain", "mail1", {}, ()),
]


class FixedPlanner:
    def place(self, service: Service) -> dict[str, object]:
        return {"web_server": "web1", "mail_server": "mail1", "dns_servers": []}

    def steps(self, service: Service, placement: dict[str, object], kind: str) -> list[StepSpec]:
        return list(STEPS)


class Limits:
    def max_concurrency(self, server_id: str) -> int:
        return 4


class Broker(RecordingPublisher):
    """Records what it confirms; refuses every publish while ``away``."""

    def __init__(self) -> None:
        super().__init__()
        self.away = False
        self.refused: list[str] = []

    async def publish(
        self, routing_key: str, body: bytes, message_id: str, *, again: bool = False
    ) -> None:
        if self.away:
            self.refused.append(message_id)
            raise ConnectionError("the broker is away")
        await super().publish(routing_key, body, message_id)


@pytest.fixture
def store(tmp_path: Path) -> EventStore:
    return EventStore(f"sqlite:///{tmp_path / 'store.sqlite'}")


async def ordered(store: EventStore, broker: Broker) -> tuple[Clock, Pipeline]:
    clock = Clock(T0)
    pipeline = Pipeline(
        StorePipelineAdapter(store),
        FixedPlanner(),
        Limits(),
        broker,
        settings=PipelineSettings(
            policy=RetryPolicy(max_attempts=3, initial_backoff_s=10, max_backoff_s=60),
            lease_s=LEASE_S,
        ),
        clock=clock,
        unit_random=lambda: 0.5,
    )
    order_in_store(store, "7", now=T0)
    await pipeline.on_event("Service.Ordered", service_uuid("7"), version=1)
    return clock, pipeline


def task_events(store: EventStore) -> Counter[str]:
    return Counter(type(e).__name__ for e in StorePipelineAdapter(store).task_history())


async def test_a_task_message_whose_publish_failed_is_re_sent_without_burning_an_attempt(
    store: EventStore,
) -> None:
    broker = Broker()
    broker.away = True
    clock, pipeline = await ordered(store, broker)
    assert sorted(broker.refused) == sorted(set(broker.refused)) and len(broker.refused) == 2
    stop = asyncio.Event()
    resending = asyncio.ensure_future(pipeline.resend(stop))
    try:
        await asyncio.sleep(0.5)  # re-sends while the broker is still away fail again
        assert len(broker.refused) > 2, "nothing was tried again"
        # A lease outlived by far: the attempt's message never got out, so it does not run out.
        clock.advance(seconds=LEASE_S * 3)
        await pipeline.tick()
        assert task_events(store)["Failed"] == 0

        broker.away = False
        pipeline.broker_connection(up=True)

        async def both_out() -> bool:
            return sorted(broker.steps()) == ["mail.domain", "web.user"]

        await wait_until(both_out, 10, "both task messages re-sent")
        messages = broker.take()
        assert {m.message_id for m in messages} == set(broker.refused)  # the same ids
        assert [m.attempt for m in messages] == [1, 1]
        # Once out, its lease starts then: one lease later, not before, a silent one runs out.
        clock.advance(seconds=LEASE_S - 1)
        await pipeline.tick()
        assert task_events(store)["Failed"] == 0
        clock.advance(seconds=2)
        await pipeline.tick()
        assert task_events(store)["Failed"] == 2
    finally:
        stop.set()
        await resending
    assert task_events(store)["Dispatched"] == 2  # no attempt before the lease ran out


async def test_no_lease_runs_out_while_the_broker_is_away_and_each_gets_one_more_after(
    store: EventStore,
) -> None:
    broker = Broker()
    clock, pipeline = await ordered(store, broker)
    assert sorted(broker.steps()) == ["mail.domain", "web.user"]
    pipeline.broker_connection(up=False)
    clock.advance(seconds=LEASE_S * 4)  # no heartbeat could come all that while
    await pipeline.tick()
    assert task_events(store)["Failed"] == 0
    pipeline.broker_connection(up=True)
    clock.advance(seconds=LEASE_S - 1)
    await pipeline.tick()
    assert task_events(store)["Failed"] == 0
    clock.advance(seconds=2)  # a whole lease since the broker came back, and no word
    await pipeline.tick()
    assert task_events(store)["Failed"] == 2


class NoQueue(Broker):
    """Refuses every task message for good (as ``Unroutable``, or a message that cannot be
    serialised, would be), while the broker itself is up."""

    async def publish(
        self, routing_key: str, body: bytes, message_id: str, *, again: bool = False
    ) -> None:
        self.refused.append(message_id)
        raise LookupError(f"no queue is bound for {routing_key!r}")


async def test_a_task_message_that_can_never_go_out_does_not_hold_its_lease(
    store: EventStore,
) -> None:
    """It is re-sent, in case it can go out after all, but its attempt's lease runs out as a
    lost message's does: the retry policy bounds what follows, nothing is held for ever."""
    broker = NoQueue()
    clock, pipeline = await ordered(store, broker)
    stop = asyncio.Event()
    resending = asyncio.ensure_future(pipeline.resend(stop))
    try:

        async def tried_again() -> bool:
            return len(broker.refused) > 2

        await wait_until(tried_again, 10, "the refused messages re-sent")
        clock.advance(seconds=LEASE_S + 1)
        await pipeline.tick()
        assert task_events(store)["Failed"] == 2, task_events(store)
    finally:
        stop.set()
        await resending
