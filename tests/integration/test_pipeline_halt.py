"""A pipeline that lost its lead stops at once (ops/services/pipeline.py, handlers/pipeline.py):
its tick under way is cancelled, not finished; work of it still in a thread records, publishes
and checkpoints nothing afterwards (a new leader may already drive); and it leaves no broker
connection listener behind, however often this process leads again."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from domain.deploy_plan import StepSpec
from domain.retry_policy import RetryPolicy
from domain.service import Service, service_uuid
from handlers.pipeline import Pipeline, PipelineHalted, PipelineSettings
from ops.adapters.pipeline_store import StorePipelineAdapter
from ops.messaging.inbox import Inbox
from ops.messaging.inprocess_transport import InProcessTransport
from ops.services import pipeline as pipeline_service
from ops.services.pipeline import run_pipeline
from ops.store.database import Database
from ops.store.event_store import EventStore
from tests.fakes.clock import Clock
from tests.fakes.publisher import RecordingPublisher
from tests.support.budget import budget
from tests.support.store_orders import order_in_store

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
LEASE_S = 30
STEPS = [StepSpec("web.user", "web", "ensure_user", "web1", {"user": "u1"}, ())]


class FixedPlanner:
    def place(self, service: Service) -> dict[str, object]:
        return {"web_server": "web1", "mail_server": "mail1", "dns_servers": []}

    def steps(self, service: Service, placement: dict[str, object], kind: str) -> list[StepSpec]:
        return list(STEPS)


class Limits:
    def max_concurrency(self, server_id: str) -> int:
        return 4


class GatedStore(StorePipelineAdapter):
    """Saves wait at the gate once it is armed (a store call under way in a thread);
    checkpoints are counted."""

    def __init__(self, store: EventStore) -> None:
        super().__init__(store)
        self.armed = False
        self.entered = threading.Event()
        self.release = threading.Event()
        self.checkpoints = 0
        self.gates: Callable[[tuple[Any, ...]], bool] = lambda aggregates: True

    def save(self, *aggregates: Any) -> None:
        if self.armed and self.gates(aggregates):
            self.entered.set()
            assert self.release.wait(30), "the test never released the save"
        super().save(*aggregates)

    def checkpoint(self, *args: Any, **kwargs: Any) -> None:
        self.checkpoints += 1
        super().checkpoint(*args, **kwargs)


async def test_a_pipeline_halted_mid_tick_records_publishes_and_checkpoints_nothing_more(
    tmp_path: Path,
) -> None:
    store = EventStore(f"sqlite:///{tmp_path / 'store.sqlite'}")
    gated, broker, clock = GatedStore(store), RecordingPublisher(), Clock(T0)
    pipeline = Pipeline(
        gated,
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
    assert broker.steps() == ["web.user"]
    broker.take()

    clock.advance(seconds=LEASE_S * 2)  # the lease runs out: the tick fails it
    gated.armed = True
    checkpoints = gated.checkpoints
    ticking = asyncio.ensure_future(pipeline.tick())
    try:
        assert await asyncio.to_thread(gated.entered.wait, 30), "the tick saved nothing"
        pipeline.halt()  # the lead is lost while the tick's save is in its thread
    finally:
        gated.release.set()
    with contextlib.suppress(PipelineHalted):
        await asyncio.wait_for(ticking, budget(30))
    assert broker.take() == []
    assert gated.checkpoints == checkpoints  # nor the new leader's checkpoint overwritten
    order_in_store(store, "8", now=T0)
    gated.armed = False
    with pytest.raises(PipelineHalted):  # nor anything taken after the halt
        await pipeline.on_event("Service.Ordered", service_uuid("8"), version=1)
    assert broker.take() == []


@pytest.mark.parametrize("lead_back_after_s", [0, LEASE_S + 1], ids=["at-once", "after-its-lease"])
async def test_a_dispatch_recorded_as_the_lead_was_lost_is_sent_by_the_next_leader(
    tmp_path: Path, lead_back_after_s: int
) -> None:
    """The lead goes while a dispatch's save is in its thread: the save goes through, the
    halted pipeline publishes nothing. The next leader's rebuild sends that attempt's message
    (marked as a copy: a handler asks its inbox about it) instead of leaving the attempt
    to run its lease out (the 200-service outage test lost attempts so) — also when the new
    lead comes after the attempt's stored lease ran out (a database cut as long as a lease):
    the rebuild gives every open attempt a fresh lease, so its message must go out too."""
    store = EventStore(f"sqlite:///{tmp_path / 'store.sqlite'}")
    gated, broker, clock = GatedStore(store), RecordingPublisher(), Clock(T0)
    settings = PipelineSettings(policy=RetryPolicy(max_attempts=3), lease_s=LEASE_S)
    pipeline = Pipeline(gated, FixedPlanner(), Limits(), broker, settings=settings, clock=clock)
    order_in_store(store, "7", now=T0)
    gated.gates = lambda aggregates: any(
        getattr(a, "state", None) == "dispatched" for a in aggregates
    )
    gated.armed = True
    taking = asyncio.ensure_future(pipeline.on_event("Service.Ordered", service_uuid("7"), 1))
    try:
        assert await asyncio.to_thread(gated.entered.wait, 30), "no dispatch was saved"
        pipeline.halt()
    finally:
        gated.release.set()
    with contextlib.suppress(PipelineHalted):
        await asyncio.wait_for(taking, budget(30))
    assert broker.take() == []  # recorded, never published
    clock.advance(seconds=lead_back_after_s)
    next_broker = RecordingPublisher()
    next_leader = Pipeline(
        StorePipelineAdapter(store),
        FixedPlanner(),
        Limits(),
        next_broker,
        settings=settings,
        clock=clock,
    )
    await next_leader.rebuild()
    [copy] = next_broker.take()
    assert (copy.step, copy.attempt) == ("web.user", 1)
    # marked as a copy: a handler asks its inbox about it (the first may have gone out)
    assert next_broker.sent_again == [copy.message_id]
    clock.advance(seconds=LEASE_S - 1)  # within the fresh lease: the copy is not given up on
    await next_leader.tick()
    assert next_broker.take() == []
    history = [type(e).__name__ for e in StorePipelineAdapter(store).task_history()]
    assert "Failed" not in history, history
    store.close()


async def test_a_halted_pipeline_tells_when_its_save_in_a_thread_has_ended(
    tmp_path: Path,
) -> None:
    """A save the lead was lost under runs on in its thread and may commit later (the store
    retries it while the database is away): the pipeline says when it has ended, so the
    next leader in this process rebuilds after it. (The 200-service outage test lost 15
    attempts to their leases: a dispatch committed just after the next leader's rebuild
    had read the store, and nobody sent its message.)"""
    store = EventStore(f"sqlite:///{tmp_path / 'store.sqlite'}")
    gated = GatedStore(store)
    settings = PipelineSettings(policy=RetryPolicy(max_attempts=3), lease_s=LEASE_S)
    pipeline = Pipeline(
        gated, FixedPlanner(), Limits(), RecordingPublisher(), settings=settings, clock=Clock(T0)
    )
    order_in_store(store, "7", now=T0)
    gated.gates = lambda aggregates: any(
        getattr(a, "state", None) == "dispatched" for a in aggregates
    )
    gated.armed = True
    taking = asyncio.ensure_future(pipeline.on_event("Service.Ordered", service_uuid("7"), 1))
    ended: asyncio.Future[None] | None = None
    try:
        assert await asyncio.to_thread(gated.entered.wait, 30), "no dispatch was saved"
        taking.cancel()  # the lead is lost: the caller goes, the save stays in its thread
        await asyncio.gather(taking, return_exceptions=True)
        pipeline.halt()
        ended = asyncio.ensure_future(pipeline.writes_ended())
        await asyncio.sleep(0.2)  # time enough to return, had it not waited for the save
        assert not ended.done(), "writes_ended returned while the save was still under way"
    finally:
        gated.release.set()
    await asyncio.wait_for(ended, budget(30))
    history = [type(e).__name__ for e in StorePipelineAdapter(store).task_history()]
    assert "Dispatched" in history, history  # it committed: the rebuild after it sees it
    store.close()


class ListeningTransport(InProcessTransport):
    """An in-process broker that keeps its connection listeners, as the AMQP one does."""

    def __init__(self, exchange: str) -> None:
        super().__init__(exchange)
        self.listeners: list[Callable[[bool], None]] = []

    def on_connection_change(self, listener: Callable[[bool], None]) -> Callable[[], None]:
        self.listeners.append(listener)
        return lambda: self.listeners.remove(listener)


class HangingPipeline:
    """Enough of a Pipeline for run_pipeline; its tick hangs (waiting on the database)."""

    def __init__(self) -> None:
        self.changed = asyncio.Event()
        self.ticking = asyncio.Event()
        self.ticks_finished = 0
        self.halted = False
        self.hang = True
        self.hang_rebuild = False
        self.rebuilding = asyncio.Event()
        self.rebuilds_finished = 0
        self.writing = asyncio.Event()  # a write of it in a thread has ended (set: none runs)
        self.writing.set()

    async def rebuild(self) -> None:
        self.rebuilding.set()
        if self.hang_rebuild:
            await asyncio.Event().wait()
        self.rebuilds_finished += 1

    async def resend(self, stop: asyncio.Event) -> None:
        await stop.wait()

    async def tick(self) -> None:
        self.ticking.set()
        if self.hang:
            await asyncio.Event().wait()
        self.ticks_finished += 1

    async def sweep(self) -> None:
        pass

    def now(self) -> datetime:
        return datetime.now(UTC)

    def next_due(self) -> datetime | None:
        return datetime.now(UTC) + timedelta(hours=1)

    def broker_connection(self, up: bool) -> None:
        pass

    def halt(self) -> None:
        self.halted = True

    async def writes_ended(self) -> None:
        await self.writing.wait()


@pytest.fixture
def inbox(sqlite_url: str) -> Iterator[Inbox]:
    db = Database(sqlite_url)
    yield Inbox(db)
    db.close()


@asynccontextmanager
async def piloting(
    pipeline: HangingPipeline, inbox: Inbox, exchange_name: str
) -> AsyncIterator[tuple[ListeningTransport, asyncio.Future[None]]]:
    """``run_pipeline`` driving ``pipeline`` until its tick hangs; stopped and closed after."""
    transport = ListeningTransport(exchange_name)
    await transport.connect()
    pipeline_any: Any = pipeline
    stop = asyncio.Event()
    running = asyncio.ensure_future(run_pipeline(pipeline_any, transport, inbox, stop, prefetch=8))
    try:
        await asyncio.wait_for(pipeline.ticking.wait(), budget(30))
        yield transport, running
    finally:
        stop.set()
        pipeline.writing.set()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await transport.close()


async def test_a_lost_lead_cancels_the_tick_under_way_and_halts_the_pipeline(
    inbox: Inbox, exchange_name: str
) -> None:
    pipeline = HangingPipeline()
    async with piloting(pipeline, inbox, exchange_name) as (transport, running):
        running.cancel()  # the lead is lost (ops/runtime/components.py)
        done, _ = await asyncio.wait({running}, timeout=30)
        assert done, "run_pipeline waited for the hanging tick to finish"
        assert pipeline.halted
        assert pipeline.ticks_finished == 0
        assert transport.listeners == []


async def test_a_pipeline_whose_lead_is_lost_ends_once_its_writes_have_ended(
    inbox: Inbox, exchange_name: str
) -> None:
    pipeline = HangingPipeline()
    pipeline.writing.clear()  # a save of it is under way in a thread
    async with piloting(pipeline, inbox, exchange_name) as (_, running):
        running.cancel()  # the lead is lost (ops/runtime/components.py)
        await asyncio.sleep(0.2)  # time enough to end, had it not waited for the save
        assert not running.done(), "run_pipeline ended while a save was under way"
        assert pipeline.halted
        pipeline.writing.set()
        await asyncio.wait({running}, timeout=budget(30))
        assert running.cancelled()


async def test_a_write_that_hangs_holds_a_lost_lead_back_only_so_long(
    inbox: Inbox,
    exchange_name: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A socket that hangs can hold a write for ever: the pipeline goes on after a while."""
    monkeypatch.setattr(pipeline_service, "WRITES_WAIT_S", 0.2)
    pipeline = HangingPipeline()
    pipeline.writing.clear()  # and never set: the write hangs
    async with piloting(pipeline, inbox, exchange_name) as (_, running):
        running.cancel()  # the lead is lost (ops/runtime/components.py)
        await asyncio.wait({running}, timeout=budget(30))
        assert running.cancelled()
    assert "still under way after 0 s" in caplog.text


async def test_every_pipeline_that_led_takes_its_connection_listener_away(
    inbox: Inbox, exchange_name: str
) -> None:
    transport = ListeningTransport(exchange_name)
    await transport.connect()
    try:
        for _ in range(2):
            pipeline = HangingPipeline()
            pipeline.hang = False
            pipeline_any: Any = pipeline
            stop = asyncio.Event()
            running = asyncio.ensure_future(
                run_pipeline(pipeline_any, transport, inbox, stop, prefetch=8)
            )
            await asyncio.wait_for(pipeline.ticking.wait(), budget(30))
            assert len(transport.listeners) == 1
            stop.set()
            await asyncio.wait_for(running, budget(30))
            assert transport.listeners == []
    finally:
        await transport.close()


async def test_a_lead_lost_while_rebuilding_cancels_the_rebuild(
    inbox: Inbox, exchange_name: str
) -> None:
    transport = ListeningTransport(exchange_name)
    await transport.connect()
    pipeline = HangingPipeline()
    pipeline.hang_rebuild = True
    pipeline_any: Any = pipeline
    stop = asyncio.Event()
    running = asyncio.ensure_future(run_pipeline(pipeline_any, transport, inbox, stop, prefetch=8))
    try:
        await asyncio.wait_for(pipeline.rebuilding.wait(), budget(30))
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        for _ in range(20):  # the rebuild, had it been left running, would still hang here
            await asyncio.sleep(0)
        tasks = [t for t in asyncio.all_tasks() if _rebuilding(t)]
        assert tasks == [], "the rebuild goes on after the lead was lost"
        assert pipeline.halted
    finally:
        stop.set()
        for task in asyncio.all_tasks():
            if _rebuilding(task):
                task.cancel()
        await transport.close()


def _rebuilding(task: asyncio.Task[Any]) -> bool:
    """Whether the task is run_pipeline's rebuild (ridden out through a database outage)."""
    return getattr(task.get_coro(), "__qualname__", "") == "riding_out"
