"""Which services changed in the views after a position (the screens' live feed's source),
on SQLite and PostgreSQL: the services whose events, or whose tasks' events, the views
applied after it, and the views' furthest position."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from domain.commands import parse_order
from gateway.screens.live_feed import LiveFeed
from ops.adapters.command_ledger import StoreLedger
from ops.adapters.sealing import PasswordSealer
from ops.store.database import Database
from ops.store.event_store import EventStore
from ops.views.live_changes import SqlLiveChanges
from ops.views.projection_runner import ProjectionRunner
from ops.views.view_store import ViewStore
from projections.catalogue import all_views
from tests.support.budget import budget
from tests.support.gateway import order

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'live.sqlite'}"
    url: str = request.getfixturevalue("fresh_postgres_url")
    return url


@pytest.fixture
def parts(database_url: str) -> Iterator[tuple[EventStore, ProjectionRunner, SqlLiveChanges]]:
    store, db = EventStore(database_url), Database(database_url)
    views = all_views()
    try:
        yield store, ProjectionRunner(store, ViewStore(db, views), views), SqlLiveChanges(db)
    finally:
        db.close()
        store.close()


def test_the_services_changed_after_a_position_and_the_views_furthest_position(
    parts: tuple[EventStore, ProjectionRunner, SqlLiveChanges],
) -> None:
    store, runner, changes = parts
    ledger = StoreLedger(store, PasswordSealer("a-secret-key-only-for-tests"))

    def ordered(service_id: int) -> None:
        body = order(service_id=service_id, domain=f"s{service_id}.example.com", username=None)
        ledger.order_service(parse_order(body, now=NOW, actor="whmcs"))
        runner.catch_up()

    assert changes.changes_after(None) == (0, set())
    ordered(1)
    first, _ = changes.changes_after(None)
    assert first > 0
    assert changes.changes_after(0) == (first, {"1"})
    assert changes.changes_after(first) == (first, set())  # nothing since
    ordered(2)
    ordered(3)
    now, changed = changes.changes_after(first)
    assert now > first and changed == {"2", "3"}
    assert changes.changes_after(now) == (now, set())


async def test_on_postgresql_a_page_hears_of_a_change_at_once_not_at_the_next_poll(
    fresh_postgres_url: str,
) -> None:
    """The projection runner's commit NOTIFYs; the feed LISTENs: with a poll period of ten
    minutes, only the notification can wake the page within the test's budget."""
    store, db = EventStore(fresh_postgres_url), Database(fresh_postgres_url)
    views = all_views()
    runner = ProjectionRunner(store, ViewStore(db, views), views)
    ledger = StoreLedger(store, PasswordSealer("a-secret-key-only-for-tests"))
    changes = SqlLiveChanges(db)
    feed = LiveFeed(changes, every_s=600)
    try:
        with feed.watch("7") as page:
            # the feed has its first answer and listens
            while not await asyncio.to_thread(listening_sessions, fresh_postgres_url):
                await asyncio.sleep(0.05)
            body = order(service_id=7, domain="s7.example.com", username=None)
            await asyncio.to_thread(ledger.order_service, parse_order(body, now=NOW, actor="w"))
            await asyncio.to_thread(runner.catch_up)
            assert await page.next(budget(10)) == feed.position > 0
        # the last page closed: the feed stops listening (its connection goes)
        while await asyncio.to_thread(listening_sessions, fresh_postgres_url):
            await asyncio.sleep(0.05)
    finally:
        await changes.quiet()
        db.close()
        store.close()


def listening_sessions(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
            "AND datname = current_database()",
            ("hostwright live pages",),
        ).fetchone()
    return int(row[0]) if row else 0
