"""The usage view's reads on SQLite and PostgreSQL, fed by real events through the projection
runner: a service's row, a page sorted by a figure, the fleet's summary with the stale
count, every tenant's billed figures, the figures in force at a past time, and the view's
position (what the bill of all tenants is kept by)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from domain.commands import OrderService
from domain.hosting_plan import HostingPlan
from domain.server_usage import ServerUsage
from domain.service import Service
from ops.store.database import Database
from ops.store.event_store import EventStore
from ops.views.projection_runner import ProjectionRunner
from ops.views.usage_queries import SqlUsageQueries
from ops.views.view_store import ViewStore
from projections.catalogue import all_views

T0 = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


def figures(disk: int, bandwidth: int) -> dict[str, int]:
    return {"disk_mb": disk, "bandwidth_mb": bandwidth, "mail_accounts": 1, "databases": 2}


@pytest.fixture
def reads(database_url: str) -> Iterator[tuple[EventStore, SqlUsageQueries, ProjectionRunner]]:
    store, db = EventStore(database_url), Database(database_url)
    views = all_views()
    try:
        yield store, SqlUsageQueries(db), ProjectionRunner(store, ViewStore(db, views), views)
    finally:
        store.close()
        db.close()


def order(store: EventStore, service_id: str, user: str, server: str) -> Service:
    plan = HostingPlan.parse({"package": "p", "disk_mb": 1000})
    command = OrderService(
        service_id=service_id,
        client_id="c",
        mode="unified",
        domain=f"{user}.example",
        plan=plan,
        username=user,
        now=T0,
        actor="whmcs",
        command_id=None,
    )
    service = Service.order(command, None)
    service.place(T0, {"web_server": server, "mail_server": server, "dns_servers": [server]})
    store.save(service)
    return service


def sync(
    store: EventStore, usage: ServerUsage, at: datetime, users: dict[str, dict[str, int]]
) -> None:
    usage.request_sync(at, "tick", fresh_s=0, lease_s=300)
    assert usage.sync is not None
    usage.start(at, usage.sync["id"])
    listings = usage.listed(at, usage.sync["id"], users)
    store.save(usage, *listings)


def test_the_usage_reads(reads: tuple[EventStore, SqlUsageQueries, ProjectionRunner]) -> None:
    store, queries, runner = reads
    order(store, "1", "alice", "web1")
    order(store, "2", "bob", "web1")
    web1 = ServerUsage.open("web1", T0)
    sync(
        store, web1, T0 + timedelta(minutes=1), {"alice": figures(100, 10), "bob": figures(50, 40)}
    )
    runner.catch_up()
    first = queries.position()
    sync(store, web1, T0 + timedelta(hours=1), {"alice": figures(120, 15), "bob": figures(50, 5)})
    web1.request_sync(T0 + timedelta(hours=2), "tick", fresh_s=0, lease_s=300)
    assert web1.sync is not None
    web1.start(T0 + timedelta(hours=2), web1.sync["id"])
    web1.fail(T0 + timedelta(hours=2), web1.sync["id"], "web1: refused", retry_s=(30, 3600))
    store.save(web1)
    runner.catch_up()
    assert queries.position() > first

    alice = queries.service_usage("1")
    assert alice is not None
    assert (alice["disk_mb"], alice["bandwidth_billed_mb"], alice["stale"]) == (120, 15, True)
    bob = queries.service_usage("2")
    assert bob is not None and bob["bandwidth_billed_mb"] == 40  # 40, then a drop: + 0
    page = queries.usage_page(sort="disk_mb", descending=True, limit=1, offset=0, client_id=None)
    assert [r["service_id"] for r in page] == ["1"]
    page = queries.usage_page(sort="disk_mb", descending=True, limit=5, offset=1, client_id="c")
    assert [r["service_id"] for r in page] == ["2"]
    summary = queries.usage_summary()
    assert (summary["services"], summary["stale"], summary["disk_mb"]) == (2, 2, 170)
    assert summary["bandwidth_billed_mb"] == 55
    assert {r["service_id"]: r["disk_mb"] for r in queries.billing_rows()} == {"1": 120, "2": 50}
    past = queries.usage_as_of("1", T0 + timedelta(minutes=30))
    assert past is not None and past["totals"]["disk_mb"] == 100
    assert queries.usage_as_of("1", T0) is None
    (node,) = queries.nodes()
    assert (node["server_id"], node["state"], node["last_error"]) == (
        "web1",
        "failed",
        "web1: refused",
    )


def test_the_fleet_summary_counts_terminated_services_apart_and_this_months_bandwidth(
    reads: tuple[EventStore, SqlUsageQueries, ProjectionRunner],
) -> None:
    store, queries, runner = reads
    order(store, "1", "alice", "web1")
    gone = order(store, "2", "bob", "web1")
    web1 = ServerUsage.open("web1", T0)
    sync(store, web1, T0, {"alice": figures(100, 10), "bob": figures(50, 40)})
    gone.mark_terminated(T0 + timedelta(minutes=5), [])
    store.save(gone)
    runner.catch_up()
    summary = queries.usage_summary(None, "2026-12")
    assert (summary["services"], summary["terminated"], summary["stale"]) == (1, 1, 0)
    assert (summary["disk_mb"], summary["bandwidth_billed_mb"]) == (100, 10)
    assert queries.usage_summary("c", "2026-12")["disk_mb"] == 100
    assert queries.usage_summary(None, "2027-01")["bandwidth_billed_mb"] == 0  # none listed yet
    assert queries.usage_summary()["bandwidth_billed_mb"] == 10
