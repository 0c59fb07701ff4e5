"""No service is stranded by the pipeline's decisions, on a real event store with a fixed plan
and a recording publisher: a run-starting event that never arrives (the sweep starts its run,
on rebuild, periodically, from the services view), a lifecycle call right after an order
(it queues behind the build), an order that finds no node for a role (it waits, and deploys
once one is registered), and attempts in flight when an in-process pipeline died (sent again
on rebuild)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from domain.commands import parse_lifecycle
from domain.deploy_plan import StepSpec
from domain.errors import Conflict
from domain.retry_policy import RetryPolicy
from domain.service import Service, service_uuid
from handlers.messages import ResultMessage, TaskMessage
from handlers.pipeline import Pipeline, PipelineSettings
from ops.adapters.pipeline_store import StorePipelineAdapter
from ops.store.database import Database
from ops.store.event_store import EventStore
from ops.views.projection_runner import ProjectionRunner
from ops.views.unsettled_services import ViewUnsettledServices
from ops.views.view_queries import SqlViewQueries
from ops.views.view_store import ViewStore
from projections.catalogue import all_views
from tests.fakes.clock import Clock
from tests.fakes.publisher import RecordingPublisher
from tests.support.store_orders import order_in_store

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
DEPLOY = [
    StepSpec("web.user", "web", "ensure_user", "web1", {}, ()),
    StepSpec("web.domain", "web", "ensure_web_domain", "web1", {}, ("web.user",)),
]
NO_WEB = "no registered server has the web role; a split service needs one"


class Planner:
    """One node per role; ``servers`` False: none registered yet. Each run's steps are the
    kind's own, so a test sees which runs were planned."""

    def __init__(self) -> None:
        self.servers = True
        self.plans: list[tuple[str, str, Any]] = []  # (kind, service_id, plan) per run

    def place(self, service: Service) -> dict[str, object]:
        if not self.servers:
            raise Conflict(NO_WEB)
        return {"web_server": "web1", "mail_server": "web1", "dns_servers": ["web1"]}

    def steps(self, service: Service, placement: dict[str, object], kind: str) -> list[StepSpec]:
        self.plans.append((kind, service.service_id, service.plan))
        if kind in ("deploy", "reset"):
            return list(DEPLOY)
        return [StepSpec(f"web.{kind}", "web", kind, "web1", {}, ())]


class Limits:
    def max_concurrency(self, server_id: str) -> int:
        return 10


class Listed:
    """The sweep's source, naming the services the test lists as unsettled."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def unsettled_services(self) -> list[str]:
        return list(self.ids)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    store = EventStore(f"sqlite:///{tmp_path / 'store.sqlite'}")
    yield store
    store.close()


def build(
    store: EventStore,
    planner: Planner,
    published: RecordingPublisher,
    unsettled: Any = None,
) -> Pipeline:
    return Pipeline(
        StorePipelineAdapter(store),
        planner,
        Limits(),
        published,
        settings=PipelineSettings(policy=RetryPolicy(max_attempts=3), lease_s=30, batch_size=50),
        clock=Clock(T0),
        unit_random=lambda: 0.5,
        unsettled=unsettled,
    )


def order(store: EventStore, service_id: str = "7") -> Service:
    order_in_store(store, service_id, now=T0)
    return store.get_service(service_id)


def lifecycle(store: EventStore, action: str, service_id: str = "7", **body: object) -> int:
    store.request(parse_lifecycle(action, service_id, body or None, now=T0, actor="whmcs"))
    return store.get_service(service_id).version


def ok(message: TaskMessage) -> ResultMessage:
    return ResultMessage(
        task_id=message.task_id,
        attempt=message.attempt,
        role=message.role,
        outcome="succeeded",
        changed=True,
        log=["done"],
    )


def failed(message: TaskMessage) -> ResultMessage:
    return ResultMessage(
        task_id=message.task_id,
        attempt=message.attempt,
        role=message.role,
        outcome="failed_permanent",
        error="exit 3: user does not exist",
        log=["boom"],
    )


async def run_to_the_end(pipeline: Pipeline, published: RecordingPublisher) -> None:
    while published.messages:
        for message in published.take():
            await pipeline.on_result(ok(message))


def history(store: EventStore, service_id: str = "7") -> list[str]:
    events = store.app.repository.event_store.get(service_uuid(service_id))
    return [type(event).__name__ for event in events]


# --- the sweep ---------------------------------------------------------------------------


async def test_an_order_whose_event_never_arrived_is_started_by_the_rebuild_and_deploys(
    store: EventStore,
) -> None:
    order(store)  # the relay's message is never delivered (dead-lettered, say)
    listed = Listed()
    listed.ids = ["7"]
    published = RecordingPublisher()
    pipeline = build(store, Planner(), published, listed)
    await pipeline.rebuild()
    await pipeline.tick()
    await run_to_the_end(pipeline, published)
    assert store.get_service("7").status == "active"


async def test_the_periodic_sweep_starts_a_lost_order_and_a_lost_suspend(
    store: EventStore,
) -> None:
    listed = Listed()
    published = RecordingPublisher()
    pipeline = build(store, Planner(), published, listed)
    await pipeline.rebuild()
    order(store, "7")
    order(store, "8")
    await pipeline.on_event("Service.Ordered", service_uuid("8"), version=1)
    await run_to_the_end(pipeline, published)
    lifecycle(store, "suspend", "8")  # lost too
    listed.ids = ["7", "8"]
    await pipeline.sweep()
    await run_to_the_end(pipeline, published)
    assert store.get_service("7").status == "active"
    assert store.get_service("8").status == "suspended"
    await pipeline.sweep()  # nothing is waiting any more: nothing new is planned
    assert published.messages == []


async def test_the_services_view_names_the_unsettled_services_only(database_url: str) -> None:
    store, db = EventStore(database_url), Database(database_url)
    try:
        for service_id in ("1", "2", "3", "4"):
            order(store, service_id)
        published = RecordingPublisher()
        pipeline = build(store, Planner(), published)
        for service_id in ("2", "3"):
            await pipeline.on_event("Service.Ordered", service_uuid(service_id), version=1)
        await run_to_the_end(pipeline, published)
        lifecycle(store, "suspend", "3")
        lifecycle(store, "terminate", "4")
        views = all_views()
        ProjectionRunner(store, ViewStore(db, views), views).catch_up()
        assert sorted(ViewUnsettledServices(db).unsettled_services()) == ["1", "3", "4"]
    finally:
        store.close()
        db.close()


# --- a lifecycle call right after an order -----------------------------------------------


@pytest.mark.parametrize("order_event_lost", [False, True])
async def test_order_then_suspend_at_once_deploys_and_then_suspends(
    store: EventStore, order_event_lost: bool
) -> None:
    order(store)
    version = lifecycle(store, "suspend")
    published, planner = RecordingPublisher(), Planner()
    pipeline = build(store, planner, published)
    if not order_event_lost:  # both arrive together, the service has moved on past the order
        await pipeline.on_event("Service.Ordered", service_uuid("7"), version=1)
    await pipeline.on_event("Service.SuspendRequested", service_uuid("7"), version=version)
    await run_to_the_end(pipeline, published)
    assert [kind for kind, _, _ in planner.plans] == ["deploy", "suspend"]
    events = history(store)
    assert events[-2:] == ["Activated", "Suspended"], events
    assert "OperationFailed" not in events
    service = store.get_service("7")
    assert (service.status, service.pending) == ("suspended", None)


async def test_order_then_suspend_with_a_build_that_fails_ends_deploy_failed(
    store: EventStore,
) -> None:
    order(store)
    version = lifecycle(store, "suspend")
    published, planner = RecordingPublisher(), Planner()
    pipeline = build(store, planner, published)
    await pipeline.on_event("Service.Ordered", service_uuid("7"), version=1)
    await pipeline.on_event("Service.SuspendRequested", service_uuid("7"), version=version)
    for kind in ("deploy", "suspend"):
        (message,) = published.take()
        assert planner.plans[-1][0] == kind
        await pipeline.on_result(failed(message))
    events = history(store)
    assert events[-2:] == ["DeployFailed", "OperationFailed"], events
    service = store.get_service("7")
    assert (service.status, service.pending) == ("deploy_failed", None)


async def test_order_then_suspend_and_unsuspend_ends_active(store: EventStore) -> None:
    order(store)
    lifecycle(store, "suspend")
    version = lifecycle(store, "unsuspend")
    published, planner = RecordingPublisher(), Planner()
    pipeline = build(store, planner, published)
    await pipeline.on_event("Service.Ordered", service_uuid("7"), version=1)
    await pipeline.on_event("Service.UnsuspendRequested", service_uuid("7"), version=version)
    await run_to_the_end(pipeline, published)
    service = store.get_service("7")
    assert (service.status, service.pending) == ("active", None)


async def test_order_then_terminate_at_once_ends_terminated(store: EventStore) -> None:
    order(store)
    version = lifecycle(store, "terminate")
    published, planner = RecordingPublisher(), Planner()
    pipeline = build(store, planner, published)
    await pipeline.on_event("Service.Ordered", service_uuid("7"), version=1)
    await pipeline.on_event("Service.TerminateRequested", service_uuid("7"), version=version)
    await run_to_the_end(pipeline, published)
    assert store.get_service("7").status == "terminated"
    assert planner.plans == []  # never placed: nothing was built, nothing to remove


async def test_order_then_change_plan_at_once_deploys_with_the_new_plan(
    store: EventStore,
) -> None:
    order(store)
    version = lifecycle(store, "change-plan", plan={"disk_mb": 4096})
    new_plan = store.get_service("7").plan
    published, planner = RecordingPublisher(), Planner()
    pipeline = build(store, planner, published)
    await pipeline.on_event("Service.PlanChangeRequested", service_uuid("7"), version=version)
    await pipeline.on_event("Service.Ordered", service_uuid("7"), version=1)  # late
    await run_to_the_end(pipeline, published)
    assert [(kind, plan) for kind, _, plan in planner.plans] == [("deploy", new_plan)]
    service = store.get_service("7")
    assert (service.status, service.plan_state) == ("active", "applied")


# --- placement waits for a node ----------------------------------------------------------


async def test_an_order_before_any_server_waits_and_deploys_once_one_is_registered(
    database_url: str,
) -> None:
    store, db = EventStore(database_url), Database(database_url)
    try:
        published, planner = RecordingPublisher(), Planner()
        planner.servers = False
        pipeline = build(store, planner, published, ViewUnsettledServices(db))
        order(store)
        await pipeline.on_event("Service.Ordered", service_uuid("7"), version=1)
        await pipeline.sweep()  # still no node: it keeps waiting, said once
        views = all_views()
        ProjectionRunner(store, ViewStore(db, views), views).catch_up()
        row = SqlViewQueries(db).service("7")
        assert row is not None
        assert (row["status"], row["pending"]) == ("provisioning", "deploy")
        assert (row["current_step"], row["last_error"]) == ("place", f"waiting: {NO_WEB}")
        assert history(store).count("PlacementWaiting") == 1
        assert "DeployFailed" not in history(store)

        planner.servers = True  # a node with the role is registered
        await pipeline.on_event("Server.Registered", service_uuid("web1"), version=1)
        await run_to_the_end(pipeline, published)
        assert store.get_service("7").status == "active"
        ProjectionRunner(store, ViewStore(db, views), views).catch_up()
        row = SqlViewQueries(db).service("7")
        assert row is not None
        assert (row["status"], row["current_step"], row["last_error"]) == ("active", None, None)
    finally:
        store.close()
        db.close()


# --- in flight when an in-process pipeline died ------------------------------------------


async def test_a_rebuilt_pipeline_sends_again_the_attempts_still_under_lease(
    store: EventStore,
) -> None:
    order(store)
    published = RecordingPublisher()
    pipeline = build(store, Planner(), published)
    await pipeline.on_event("Service.Ordered", service_uuid("7"), version=1)
    lost = published.take()  # died with the process, never handled
    assert [m.step for m in lost] == ["web.user"]
    again = RecordingPublisher()
    restarted = build(store, Planner(), again)
    await restarted.rebuild()
    assert [(m.task_id, m.attempt) for m in again.messages] == [
        (m.task_id, m.attempt) for m in lost
    ]
    assert again.sent_again == [m.message_id for m in lost]  # copies, and marked so
    assert published.sent_again == []  # a first dispatch is not
    await run_to_the_end(restarted, again)
    assert store.get_service("7").status == "active"


async def test_only_the_first_rebuild_sends_again_the_attempts_under_lease(
    store: EventStore,
) -> None:
    """A later rebuild (after the database failed a save) finds the originals still queued:
    it sends nothing again."""
    order(store)
    published = RecordingPublisher()
    pipeline = build(store, Planner(), published)
    await pipeline.on_event("Service.Ordered", service_uuid("7"), version=1)
    published.take()  # died with the process
    again = RecordingPublisher()
    restarted = build(store, Planner(), again)
    await restarted.rebuild()
    assert [m.step for m in again.take()] == ["web.user"]
    await restarted.rebuild()  # after a database outage: the message sent above is queued
    assert again.take() == []


async def test_a_terminate_dispatches_once_the_superseded_attempt_is_reported_not_run(
    store: EventStore,
) -> None:
    """Order then terminate at once: the deploy's first attempt, still queued, is superseded;
    the terminate waits for it to leave the node (draining). The handler drops it and says so
    ("superseded; not run"): the terminate's steps go out then, not a lease later."""
    order(store)
    published = RecordingPublisher()
    pipeline = build(store, Planner(), published)
    await pipeline.on_event("Service.Ordered", service_uuid("7"), version=1)
    [queued] = published.take()
    version = lifecycle(store, "terminate")
    await pipeline.on_event("Service.TerminateRequested", service_uuid("7"), version=version)
    assert published.take() == [], "the terminate must wait for the deploy's attempt"
    dropped = ResultMessage(
        task_id=queued.task_id,
        attempt=queued.attempt,
        role=queued.role,
        outcome="failed_permanent",
        error="superseded; not run",
        log=["superseded; not run"],
    )
    await pipeline.on_result(dropped)
    assert [m.step for m in published.messages] == ["web.terminate"]
    await run_to_the_end(pipeline, published)
    assert store.get_service("7").status == "terminated"
    recorded = store.app.repository.event_store.get(uuid.UUID(queued.task_id))
    assert "Failed" not in [type(event).__name__ for event in recorded]  # nothing of it recorded


async def test_a_lost_plan_change_of_an_active_service_is_started_by_the_sweep(
    database_url: str,
) -> None:
    """The services view keeps a plan change pending until it is applied (or failed): the
    sweep, reading the view, starts the run its lost event never started."""
    store, db = EventStore(database_url), Database(database_url)
    try:
        views = all_views()
        view_store = ViewStore(db, views)
        order(store)
        published, planner = RecordingPublisher(), Planner()
        pipeline = build(store, planner, published, ViewUnsettledServices(db))
        await pipeline.on_event("Service.Ordered", service_uuid("7"), version=1)
        await run_to_the_end(pipeline, published)
        lifecycle(store, "change-plan", plan={"disk_mb": 4096})  # its event never arrives
        ProjectionRunner(store, view_store, views).catch_up()
        assert ViewUnsettledServices(db).unsettled_services() == ["7"]
        await pipeline.sweep()
        assert [m.step for m in published.messages] == ["web.change_plan"]
        await run_to_the_end(pipeline, published)
        assert "PlanApplied" in history(store)
        ProjectionRunner(store, view_store, views).catch_up()
        assert ViewUnsettledServices(db).unsettled_services() == []
        await pipeline.sweep()  # applied: nothing waits any more
        assert published.messages == []
    finally:
        store.close()
        db.close()


# --- change password ---------------------------------------------------------------------


def change_password(store: EventStore, service_id: str = "7") -> int:
    """A change-password as the ledger records it: sealed (the test's text stands for it)."""
    parsed = parse_lifecycle(
        "change-password", service_id, {"password": "New-passw0rd"}, now=T0, actor="whmcs"
    )
    store.request(replace(parsed, password=None, password_sealed="v2:test:sealed"))
    return store.get_service(service_id).version


async def test_order_then_change_password_at_once_builds_then_changes_it(
    store: EventStore,
) -> None:
    """A build keeps an existing user's password, so a password change asked for during it is
    not taken along: it waits for the build and has its own run after it."""
    order(store)
    version = change_password(store)
    published, planner = RecordingPublisher(), Planner()
    pipeline = build(store, planner, published)
    await pipeline.on_event("Service.Ordered", service_uuid("7"), version=1)
    await pipeline.on_event("Service.PasswordChangeRequested", service_uuid("7"), version=version)
    assert [kind for kind, _, _ in planner.plans] == ["deploy"]  # the change waits
    await run_to_the_end(pipeline, published)
    assert [kind for kind, _, _ in planner.plans] == ["deploy", "change_password"]
    service = store.get_service("7")
    assert (service.status, service.login_state) == ("active", "applied")
    assert history(store)[-2:] == ["Activated", "PasswordChanged"]


async def test_a_lost_password_change_is_started_by_the_sweep_and_a_failure_reported(
    database_url: str,
) -> None:
    store, db = EventStore(database_url), Database(database_url)
    try:
        views = all_views()
        view_store = ViewStore(db, views)
        order(store)
        published, planner = RecordingPublisher(), Planner()
        pipeline = build(store, planner, published, ViewUnsettledServices(db))
        await pipeline.on_event("Service.Ordered", service_uuid("7"), version=1)
        await run_to_the_end(pipeline, published)
        change_password(store)  # its event never arrives
        ProjectionRunner(store, view_store, views).catch_up()
        assert ViewUnsettledServices(db).unsettled_services() == ["7"]
        await pipeline.sweep()
        assert [m.step for m in published.messages] == ["web.change_password"]
        for message in published.take():
            await pipeline.on_result(failed(message))
        assert history(store)[-1] == "OperationFailed"
        service = store.get_service("7")
        assert (service.status, service.login_state) == ("active", "failed")
        ProjectionRunner(store, view_store, views).catch_up()
        assert ViewUnsettledServices(db).unsettled_services() == []
        row = SqlViewQueries(db).service("7")
        assert row is not None and row["last_error"].startswith("change_password: ")
    finally:
        store.close()
        db.close()
