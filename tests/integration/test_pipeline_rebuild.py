"""A rebuild loads the open work only: with many runs finished and a few open, a restarted
pipeline reads the events of the open runs' tasks (the last checkpoint's, and those recorded
since), not every Task ever; it carries on with them, and a redelivered order of a finished
service starts nothing. On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from domain.deploy_plan import StepSpec
from domain.retry_policy import RetryPolicy
from domain.service import Service, service_uuid
from handlers.messages import ResultMessage, TaskMessage
from handlers.pipeline import Pipeline, PipelineSettings
from ops.adapters.pipeline_store import StorePipelineAdapter
from ops.store.database import Database
from ops.store.event_store import EventStore
from tests.fakes.clock import Clock
from tests.fakes.publisher import RecordingPublisher
from tests.support.store_orders import order_in_store

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
FINISHED, OPEN = 30, 3


class TwoSteps:
    def place(self, service: Service) -> dict[str, object]:
        return {"web_server": "web1", "mail_server": "web1", "dns_servers": ["web1"]}

    def steps(self, service: Service, placement: dict[str, object], kind: str) -> list[StepSpec]:
        return [
            StepSpec("web.user", "web", "ensure_user", "web1", {}, ()),
            StepSpec("web.domain", "web", "ensure_web_domain", "web1", {}, ("web.user",)),
        ]


class Limits:
    def max_concurrency(self, server_id: str) -> int:
        return 1000


class ReadCounter:
    """Counts the stored events the store hands out (every read of the event store)."""

    def __init__(self, store: EventStore) -> None:
        self.rows = 0
        recorder: Any = store.recorder
        recorder.select_events = self._counted(recorder.select_events)
        recorder.select_notifications = self._counted(recorder.select_notifications)

    def _counted(self, read: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            rows = read(*args, **kwargs)
            self.rows += len(rows)
            return rows

        return counted


@pytest.fixture
def stores(database_url: str) -> Iterator[tuple[EventStore, Database]]:
    store, db = EventStore(database_url), Database(database_url)
    try:
        yield store, db
    finally:
        db.close()
        store.close()


def build(store: EventStore, db: Database, clock: Clock, published: RecordingPublisher) -> Pipeline:
    return Pipeline(
        StorePipelineAdapter(store, db),
        TwoSteps(),
        Limits(),
        published,
        settings=PipelineSettings(policy=RetryPolicy(), lease_s=3600, batch_size=1000),
        clock=clock,
    )


def order(store: EventStore, service_id: str) -> None:
    order_in_store(store, service_id, now=T0)


def done(message: TaskMessage) -> ResultMessage:
    return ResultMessage(
        task_id=message.task_id,
        attempt=message.attempt,
        role=message.role,
        outcome="succeeded",
        changed=True,
    )


async def finish_all(pipeline: Pipeline, published: RecordingPublisher) -> None:
    while published.messages:
        await pipeline.on_batch([done(m) for m in published.take()])


async def test_a_rebuild_reads_the_open_runs_not_every_task_ever(
    stores: tuple[EventStore, Database],
) -> None:
    store, db = stores
    clock, published = Clock(T0), RecordingPublisher()
    pipeline = build(store, db, clock, published)
    await pipeline.rebuild()
    for n in range(FINISHED):
        order(store, f"f{n}")
        await pipeline.on_event("Service.Ordered", service_uuid(f"f{n}"), 1)
    await finish_all(pipeline, published)
    for n in range(OPEN):  # their first step out, no result yet
        order(store, f"o{n}")
        await pipeline.on_event("Service.Ordered", service_uuid(f"o{n}"), 1)
    clock.advance(seconds=31)
    await pipeline.tick()  # the periodic checkpoint
    order(store, "late")  # after the checkpoint: found in the events recorded since
    await pipeline.on_event("Service.Ordered", service_uuid("late"), 1)
    open_ids = {"o0", "o1", "o2", "late"}
    out = {m.service_id: m for m in published.take()}
    assert set(out) == open_ids

    counter = ReadCounter(store)
    successor = build(store, db, clock, published)
    await successor.rebuild()
    # the open services' tasks hold a few events each; the finished ones hold 120 in all
    assert counter.rows <= 4 * len(open_ids) * 2, f"the rebuild read {counter.rows} events"
    assert sorted(successor._open.runs) == sorted(open_ids)

    # it carries on with the open work …
    await successor.on_batch([done(m) for m in out.values()])
    await finish_all(successor, published)
    for service_id in open_ids:
        assert store.get_service(service_id).status == "active"
    # … and a redelivered order of a service finished before the restart starts nothing
    await successor.on_event("Service.Ordered", service_uuid("f0"), 1)
    assert not published.take()
    assert not successor._open.runs


async def test_without_a_checkpoint_the_first_rebuild_reads_the_whole_history(
    stores: tuple[EventStore, Database],
) -> None:
    store, db = stores
    clock, published = Clock(T0), RecordingPublisher()
    first = build(store, db, clock, published)  # never rebuilt nor ticked: no checkpoint
    for n in range(3):
        order(store, f"f{n}")
        await first.on_event("Service.Ordered", service_uuid(f"f{n}"), 1)
    successor = build(store, db, clock, published)
    await successor.rebuild()
    assert sorted(successor._open.runs) == ["f0", "f1", "f2"]
