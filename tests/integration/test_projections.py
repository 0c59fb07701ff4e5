"""Projections over a real store, on SQLite and PostgreSQL: catch-up, resumption, exactly-once
batches with their tracking position, and replay from event 0 as the audit of the live views."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from eventsourcing.persistence import Notification

from domain.commands import Command, parse_lifecycle, parse_order
from domain.hosting_plan import HostingPlan
from ops.store.database import Cursor, Database
from ops.store.event_store import EventStore
from ops.views.projection_runner import ProjectionRunner
from ops.views.replay import replay_and_compare
from ops.views.view_queries import SqlViewQueries
from ops.views.view_store import ViewStore
from projections.catalogue import all_views
from projections.view import Recorded, Rows, View
from tests.support.budget import budget

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SERVICES = 200


@dataclass
class Setup:
    store: EventStore
    db: Database
    views: list[View]

    def runner(self, batch_size: int = 1000, prefix: str = "hw_") -> ProjectionRunner:
        """A new runner over a new ViewStore: what a restarted process would build."""
        return ProjectionRunner(
            self.store, ViewStore(self.db, self.views, prefix), self.views, batch_size=batch_size
        )

    def replay(self) -> str | None:
        return replay_and_compare(self.store, self.db, all_views())


@pytest.fixture
def setup(database_url: str) -> Iterator[Setup]:
    store, db = EventStore(database_url), Database(database_url)
    yield Setup(store, db, all_views())
    store.close()
    db.close()


def at(minutes: int) -> datetime:
    return NOW + timedelta(minutes=minutes)


def record_history(store: EventStore, count: int = SERVICES) -> None:
    """``count`` orders, then a mix of lifecycle requests and the pipeline's outcomes."""
    for i in range(1, count + 1):
        body = {
            "service_id": i,
            "client_id": i % 13,
            "mode": "split",
            "domain": f"s{i}.example",
            "plan": {"package": "default"},
        }
        if i % 11 == 0:
            body["password"] = "Secret-pass-123"
        store.order_service(parse_order(body, now=at(0), actor="whmcs"), "sealed:xyz")
    for i in range(1, count + 1):
        if i % 2 == 0:
            service = store.get_service(str(i))
            service.mark_active(at(1))
            store.save(service)
        if i % 4 == 0:
            store.request(ask("suspend", i, {"reason": "unpaid"}, minutes=2))
        if i % 8 == 0:
            service = store.get_service(str(i))
            service.mark_suspended(at(3))
            store.save(service)
        if i % 5 == 0:
            store.request(ask("terminate", i, {"force": True}, minutes=4))
        if i % 7 == 0 and i % 5 != 0:
            store.request(ask("change-plan", i, {"plan": {"package": "gold"}}, minutes=5))


def ask(action: str, service: int, body: dict[str, object], minutes: int) -> Command:
    return parse_lifecycle(action, str(service), body, now=at(minutes), actor="whmcs")


def test_catch_up_builds_the_views_and_a_second_catch_up_is_a_no_op(setup: Setup) -> None:
    record_history(setup.store)
    last = setup.store.max_notification_id()
    runner = setup.runner()
    assert runner.catch_up() == last
    assert runner.catch_up() == 0
    assert ViewStore(setup.db, setup.views).positions() == {
        "services": last,
        "oplog": last,
        "task_queue": last,
        "timeline": last,
        "ssl": last,
        "usage": last,
    }

    queries = SqlViewQueries(setup.db)
    assert queries.service("404") is None
    one, four, eight, ten = (queries.service(str(i)) for i in (1, 4, 8, 10))
    assert one is not None and four is not None and eight is not None and ten is not None
    assert (one["status"], one["pending"]) == ("provisioning", "deploy")
    assert one["plan"] == HostingPlan().to_json()
    assert (four["status"], four["pending"]) == ("active", "suspend")
    assert (eight["status"], eight["pending"]) == ("suspended", None)
    assert (ten["status"], ten["pending"]) == ("terminating", "terminate")
    assert four["progress"] == {"done": 0, "total": 0, "current_step": None}
    assert queries.service("14") is not None
    assert queries.service("14")["plan"]["package"] == "gold"  # type: ignore[index]

    entries = queries.oplog(service_id="8", since=None, limit=100)
    assert [(e["action"], e["actor"], e["kind"]) for e in entries] == [
        ("order", "whmcs", "command"),
        ("activated", "hostwright", "outcome"),
        ("suspend", "whmcs", "command"),
        ("suspended", "hostwright", "outcome"),
    ]
    assert entries[2]["detail"] == {"reason": "unpaid"}
    assert [e["position"] for e in entries] == sorted(e["position"] for e in entries)


def test_the_oplog_filters_by_time_and_limit_and_holds_no_secret(setup: Setup) -> None:
    record_history(setup.store, count=40)
    setup.runner().catch_up()
    queries = SqlViewQueries(setup.db)
    everything = queries.oplog(service_id=None, since=None, limit=1000)
    # one entry per Service event (the claims an order makes are not operations)
    notifications = setup.store.notifications(0, 10_000)
    assert len(everything) == sum(".service:" in n.topic for n in notifications)
    assert "sealed" not in repr(everything) and "Secret" not in repr(everything)
    latest = queries.oplog(service_id=None, since=None, limit=3)
    assert latest == everything[-3:]
    since = queries.oplog(service_id=None, since=at(4), limit=1000)
    assert {e["action"] for e in since} == {"terminate", "change-plan"}
    assert queries.oplog(service_id=None, since=at(4), limit=2) == since[:2]
    naive = queries.oplog(service_id="10", since=at(4).replace(tzinfo=None), limit=10)
    assert [e["action"] for e in naive] == ["terminate"]


def test_an_interrupted_runner_is_resumed_by_a_new_one_to_the_replays_rows(setup: Setup) -> None:
    record_history(setup.store)
    last = setup.store.max_notification_id()
    assert setup.runner(batch_size=17).catch_up(max_batches=1) == 17
    assert ViewStore(setup.db, setup.views).position("services") == 17

    assert setup.runner(batch_size=50).catch_up() == last - 17
    assert setup.replay() is None
    assert setup.runner(batch_size=50).catch_up() == 0


def test_replay_compares_up_to_the_live_position_only(setup: Setup) -> None:
    record_history(setup.store, count=30)
    setup.runner(batch_size=25).catch_up(max_batches=1)
    assert setup.replay() is None  # the live views lag; replay rebuilds to where they are
    # the scratch tables are gone again
    for table in ("services", "oplog", "tracking"):
        with (
            pytest.raises((sqlite3.OperationalError, psycopg.errors.UndefinedTable)),
            setup.db.transaction() as cur,
        ):
            cur.execute(f"SELECT 1 FROM hw_replay_{table}")  # noqa: S608


def test_a_tampered_row_is_named_by_replay(setup: Setup) -> None:
    record_history(setup.store, count=30)
    setup.runner().catch_up()
    with setup.db.transaction() as cur:
        cur.execute("UPDATE hw_services SET status = 'active' WHERE service_id = '9'")
    difference = setup.replay()
    assert difference is not None
    assert "services" in difference and "status" in difference and "'9'" in difference
    assert "'active'" in difference and "'provisioning'" in difference

    with setup.db.transaction() as cur:
        cur.execute("UPDATE hw_services SET status = 'provisioning' WHERE service_id = '9'")
        cur.execute("DELETE FROM hw_oplog WHERE position = (SELECT MIN(position) FROM hw_oplog)")
    difference = setup.replay()
    assert difference is not None and "oplog" in difference and "missing" in difference


class Exploding:
    """A view that fails on its ``after``-th event: a crash in the middle of a batch."""

    def __init__(self, view: View, after: int) -> None:
        self.name, self.tables, self.version = view.name, view.tables, view.version
        self._view, self._left = view, after

    def apply(self, recorded: Recorded, rows: Rows) -> None:
        self._left -= 1
        if self._left < 0:
            raise RuntimeError("the projection process died here")
        self._view.apply(recorded, rows)


def test_rows_and_position_move_together_or_not_at_all(setup: Setup) -> None:
    record_history(setup.store, count=20)
    services = setup.views[0]
    store = ViewStore(setup.db, setup.views)
    runner = ProjectionRunner(setup.store, store, [services], batch_size=10)
    runner.catch_up(max_batches=1)
    before = store.rows("services"), store.position("services")
    assert before[1] == 10

    broken = Exploding(services, after=15)
    with pytest.raises(RuntimeError):
        ProjectionRunner(
            setup.store, ViewStore(setup.db, [broken]), [broken], batch_size=30
        ).catch_up()
    assert (store.rows("services"), store.position("services")) == before

    assert runner.catch_up() == setup.store.max_notification_id() - 10
    setup.runner().catch_up()
    assert setup.replay() is None


class Counting:
    def __init__(self, view: View) -> None:
        self.name, self.tables, self.version = view.name, view.tables, view.version
        self._view = view
        self.seen: list[int] = []

    def apply(self, recorded: Recorded, rows: Rows) -> None:
        self.seen.append(recorded.position)
        self._view.apply(recorded, rows)


def test_events_at_or_below_the_position_are_not_applied_again(setup: Setup) -> None:
    record_history(setup.store, count=10)
    # the Service events only (the oplog's rows), not the claims the orders made
    notifications = setup.store.notifications(0, 100)
    recorded = [
        Recorded(n.id, setup.store.decode(n)) for n in notifications if ".service:" in n.topic
    ][:20]
    view = Counting(setup.views[1])
    store = ViewStore(setup.db, [view])
    store.apply_page([view], 0, recorded[:10])
    store.apply_page([view], recorded[4].position, recorded[5:15])
    assert store.apply_page([view], 0, recorded[:3]) == {"oplog": recorded[14].position}
    # a page that does not follow on from the position is not applied
    assert store.apply_page([view], recorded[15].position, recorded[16:]) == {
        "oplog": recorded[14].position
    }
    assert view.seen == [r.position for r in recorded[:15]]
    assert store.position("oplog") == recorded[14].position
    assert [row["position"] for row in store.rows("oplog")] == [r.position for r in recorded[:15]]


class CountingDatabase(Database):
    """A Database that counts its transactions: each one is a commit (or a rollback)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.transactions = 0

    @contextmanager
    def transaction(self) -> Iterator[Cursor]:
        self.transactions += 1
        with super().transaction() as cur:
            yield cur


def reads_after(store: EventStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The ``after`` of every page the store is asked for from now on."""
    asked: list[int] = []
    read = store.notifications

    def notifications(after: int, limit: int) -> Sequence[Notification]:
        asked.append(after)
        return read(after, limit)

    monkeypatch.setattr(store, "notifications", notifications)
    return asked


def test_a_page_is_one_transaction_for_every_view(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    record_history(setup.store, count=30)
    db = CountingDatabase(setup.db.url)
    runner = ProjectionRunner(setup.store, ViewStore(db, setup.views), setup.views, batch_size=10)
    runner.catch_up(max_batches=1)  # the first step reads the positions (and makes the tables)
    db.transactions = 0
    asked = reads_after(setup.store, monkeypatch)

    assert runner.catch_up(max_batches=3) == 30
    assert (db.transactions, asked) == (3, [10, 20, 30])
    # every view moves, those that ignored the whole page too
    assert ViewStore(setup.db, setup.views).positions() == {v.name: 40 for v in setup.views}

    runner.catch_up()
    db.transactions = 0
    assert runner.catch_up() == 0
    assert db.transactions == 0  # an empty step is one notification read and nothing else
    db.close()


def test_a_restarted_runner_resumes_from_the_stored_positions(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    record_history(setup.store, count=20)
    last = setup.store.max_notification_id()
    setup.runner(batch_size=17).catch_up(max_batches=1)
    asked = reads_after(setup.store, monkeypatch)
    counted = [Counting(view) for view in setup.views]

    ProjectionRunner(setup.store, ViewStore(setup.db, counted), counted, batch_size=17).catch_up()
    assert asked[0] == 17
    for view in counted:
        assert view.seen == list(range(18, last + 1)), view.name
    assert setup.replay() is None


def test_a_runner_behind_another_rereads_a_page_and_applies_nothing_twice(setup: Setup) -> None:
    record_history(setup.store, count=20)
    last = setup.store.max_notification_id()
    counted = [Counting(view) for view in setup.views]
    behind, ahead = (
        ProjectionRunner(setup.store, ViewStore(setup.db, counted), counted, batch_size=10)
        for _ in range(2)
    )
    behind.catch_up(max_batches=1)
    ahead.catch_up()
    assert behind.catch_up(max_batches=1) == 10  # its memory says 10: it reads 11..20 again
    assert behind.catch_up() == 0  # and now knows where the other one left the views
    for view in counted:
        assert view.seen == list(range(1, last + 1)), view.name


async def test_run_follows_new_events_until_stopped(setup: Setup) -> None:
    record_history(setup.store, count=10)
    runner = setup.runner(batch_size=7)
    runner_views = ViewStore(setup.db, setup.views)
    stop = asyncio.Event()
    running = asyncio.create_task(runner.run(stop))

    async def reaches(position: int) -> None:
        for _ in range(200):
            if min(runner_views.positions().values()) >= position:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"the runner did not reach {position}")

    await reaches(setup.store.max_notification_id())
    await asyncio.to_thread(setup.store.request, ask("terminate", 3, {"force": False}, minutes=9))
    await reaches(setup.store.max_notification_id())
    stop.set()
    await asyncio.wait_for(running, budget(5))
    status = SqlViewQueries(setup.db).service("3")
    assert status is not None and status["status"] == "terminating"


def test_runners_racing_on_one_store_apply_each_event_once(setup: Setup) -> None:
    record_history(setup.store, count=60)
    last = setup.store.max_notification_id()
    counted = [Counting(view) for view in setup.views]
    runners = [
        ProjectionRunner(setup.store, ViewStore(setup.db, counted), counted, batch_size=size)
        for size in (7, 11, 13)
    ]
    with ThreadPoolExecutor(len(runners)) as pool:
        consumed = list(pool.map(lambda runner: runner.catch_up(), runners))
    assert sum(consumed) >= last
    for view in counted:
        assert sorted(view.seen) == list(range(1, last + 1)), view.name
    assert setup.replay() is None


async def test_run_idles_after_a_page_that_is_not_full(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    record_history(setup.store, count=10)
    last = setup.store.max_notification_id()
    views = ViewStore(setup.db, setup.views)
    runner = ProjectionRunner(setup.store, views, setup.views, batch_size=7, idle_interval=60)
    asked = reads_after(setup.store, monkeypatch)
    stop = asyncio.Event()
    running = asyncio.create_task(runner.run(stop))
    for _ in range(200):
        if min(views.positions().values()) == last:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)
    # full pages are followed at once; the first page that is not full ends the burst
    assert asked == list(range(0, last + 1, 7))
    stop.set()
    await asyncio.wait_for(running, budget(5))
