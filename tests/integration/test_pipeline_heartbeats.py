"""Heartbeats do not grow the event history: a handler that beats every 2 s through a long
step extends its lease at every beat, but the store records a ``Task.LeaseRenewed`` at most
once per half lease — enough that the recorded lease never runs out while the handler lives,
so a pipeline rebuilt from the store (a restart, a failover) does not expire it either."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from domain.commands import parse_order
from domain.deploy_plan import StepSpec
from domain.retry_policy import RetryPolicy
from domain.service import Service, service_uuid
from handlers.messages import HeartbeatMessage, TaskMessage
from handlers.pipeline import Pipeline, PipelineSettings
from ops.adapters.pipeline_store import StorePipelineAdapter
from ops.store.event_store import EventStore
from tests.fakes.clock import Clock
from tests.fakes.publisher import RecordingPublisher

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
LEASE_S = 30
BEAT_S = 2


class OneStep:
    def place(self, service: Service) -> dict[str, object]:
        return {"web_server": "web1", "mail_server": "web1", "dns_servers": ["web1"]}

    def steps(self, service: Service, placement: dict[str, object], kind: str) -> list[StepSpec]:
        return [StepSpec("web.user", "web", "ensure_user", "web1", {"user": "u1"}, ())]


class Limits:
    def max_concurrency(self, server_id: str) -> int:
        return 4


@pytest.fixture
def store(tmp_path: Path) -> EventStore:
    return EventStore(f"sqlite:///{tmp_path / 'store.sqlite'}")


def build(store: EventStore, clock: Clock, published: RecordingPublisher) -> Pipeline:
    return Pipeline(
        StorePipelineAdapter(store),
        OneStep(),
        Limits(),
        published,
        settings=PipelineSettings(
            policy=RetryPolicy(max_attempts=3, initial_backoff_s=10, max_backoff_s=60),
            lease_s=LEASE_S,
            batch_size=100,
        ),
        clock=clock,
        unit_random=lambda: 0.5,
    )


def stored_kinds(store: EventStore) -> list[str]:
    return [type(e).__name__ for e in StorePipelineAdapter(store).task_history()]


async def dispatched(store: EventStore) -> tuple[Clock, RecordingPublisher, TaskMessage]:
    store.order_service(
        parse_order(
            {
                "service_id": "7",
                "client_id": 1,
                "mode": "split",
                "domain": "s7.example.com",
                "plan": {"package": "default"},
            },
            now=T0,
            actor="whmcs",
        ),
        None,
    )
    clock, published = Clock(T0), RecordingPublisher()
    await build(store, clock, published).on_event("Service.Ordered", service_uuid("7"), 1)
    (message,) = published.take()
    return clock, published, message


async def beat(pipeline: Pipeline, clock: Clock, message: TaskMessage, beats: int) -> None:
    for sequence in range(1, beats + 1):
        clock.advance(seconds=BEAT_S)
        beat = HeartbeatMessage(message.task_id, message.attempt, "web", sequence)
        await pipeline.on_heartbeat(beat)


async def test_many_heartbeats_store_few_events_and_still_extend_the_lease(
    store: EventStore,
) -> None:
    clock, published, message = await dispatched(store)
    pipeline = build(store, clock, published)
    await pipeline.rebuild()
    published.take()  # its first rebuild sends the attempt under lease again
    await beat(pipeline, clock, message, beats=40)  # 80 s: well past the first lease (30 s)

    renewals = stored_kinds(store).count("LeaseRenewed")
    assert renewals <= 80 / (LEASE_S / 2), f"{renewals} events for 40 heartbeats"
    assert renewals >= 1, "the recorded lease must not run out while the handler beats"
    await pipeline.tick()
    assert "Failed" not in stored_kinds(store), "a beating handler lost its lease"
    assert not published.take(), "a step whose handler beats was dispatched again"

    # a pipeline rebuilt from the store (restart, failover) does not expire it either
    clock.advance(seconds=BEAT_S)
    successor = build(store, clock, published)
    await successor.rebuild()
    await successor.tick()
    assert "Failed" not in stored_kinds(store)

    # and once the beats stop, the lease runs out as before
    clock.advance(seconds=LEASE_S + 1)
    await successor.tick()
    assert "Failed" in stored_kinds(store)


async def test_a_heartbeat_that_ends_a_streak_of_lost_leases_is_recorded(store: EventStore) -> None:
    clock, published, _ = await dispatched(store)
    pipeline = build(store, clock, published)
    await pipeline.rebuild()
    published.take()  # its first rebuild sends the attempt under lease again
    clock.advance(seconds=LEASE_S + 1)
    await pipeline.tick()  # lease out: retry in 10 s, the task counts as stuck
    clock.advance(seconds=10)
    await pipeline.tick()
    (retry,) = published.take()
    await beat(pipeline, clock, retry, beats=1)
    assert stored_kinds(store)[-1] == "LeaseRenewed", "the views must see the handler alive"


async def test_a_pipeline_rebuilt_after_a_long_gap_hears_the_queued_heartbeats_first(
    store: EventStore,
) -> None:
    """No pipeline drove for longer than a lease (a database cut, a failover): the handler's
    heartbeats waited in the queue. The rebuilt pipeline's first tick must not expire the
    stored lease before it has read them."""
    clock, published, message = await dispatched(store)
    clock.advance(seconds=2 * LEASE_S)  # the stored lease ran out while nobody drove
    successor = build(store, clock, published)
    await successor.rebuild()
    await successor.tick()
    assert "Failed" not in stored_kinds(store), "an attempt was burnt before its beats were read"
    await beat(successor, clock, message, beats=1)
    clock.advance(seconds=LEASE_S - BEAT_S - 1)
    await successor.tick()
    assert "Failed" not in stored_kinds(store)
    # a handler that is really gone still loses its lease, one lease after the rebuild
    clock.advance(seconds=LEASE_S + 1)
    await successor.tick()
    assert "Failed" in stored_kinds(store)


class FlakyStore(StorePipelineAdapter):
    """Fails the next ``failures`` saves as a dropped database connection would."""

    def __init__(self, store: EventStore) -> None:
        super().__init__(store)
        self.failures = 0

    def save(self, *aggregates: object) -> None:
        if self.failures:
            self.failures -= 1
            for aggregate in aggregates:
                aggregate.collect_events()  # type: ignore[attr-defined]  # as a failed save does
            raise RuntimeError("connection lost")
        super().save(*aggregates)


async def test_a_pipeline_that_rereads_the_store_after_a_failed_save_hears_the_beats_first(
    store: EventStore,
) -> None:
    """The database went away for longer than a lease (a save failed, nothing could be
    recorded): the handler's heartbeats waited in the queue. The pipeline that rereads the
    store on its next input must not expire the stored lease before it has read them."""
    clock, published, message = await dispatched(store)
    flaky = FlakyStore(store)
    pipeline = Pipeline(
        flaky,
        OneStep(),
        Limits(),
        published,
        settings=PipelineSettings(
            policy=RetryPolicy(max_attempts=3, initial_backoff_s=10, max_backoff_s=60),
            lease_s=LEASE_S,
            batch_size=100,
        ),
        clock=clock,
        unit_random=lambda: 0.5,
    )
    await pipeline.rebuild()
    store.order_service(
        parse_order(
            {
                "service_id": "8",
                "client_id": 1,
                "mode": "split",
                "domain": "s8.example.com",
                "plan": {"package": "default"},
            },
            now=T0,
            actor="whmcs",
        ),
        None,
    )
    flaky.failures = 1
    with pytest.raises(RuntimeError):
        await pipeline.on_event("Service.Ordered", service_uuid("8"), 1)
    clock.advance(seconds=2 * LEASE_S)  # the outage: nothing was read nor recorded
    await pipeline.tick()  # rereads the store first
    assert "Failed" not in stored_kinds(store), "an attempt was burnt before its beats were read"
    await beat(pipeline, clock, message, beats=1)
    clock.advance(seconds=LEASE_S - BEAT_S - 1)
    await pipeline.tick()
    assert "Failed" not in stored_kinds(store)
