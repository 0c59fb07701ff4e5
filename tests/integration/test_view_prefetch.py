"""Prefetching a page's reads, on SQLite and PostgreSQL: a page of any size reads its rows in
a few keys-in-a-list queries, and the views end in exactly the rows row-by-row reads give."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from domain.commands import parse_lifecycle, parse_order
from domain.service import Service
from domain.task import Task
from ops.store.database import Cursor, Database
from ops.store.event_store import EventStore
from ops.views.view_store import ViewStore
from projections.catalogue import all_views
from projections.view import (
    Column,
    Prefetching,
    Recorded,
    Row,
    RowLoader,
    Rows,
    Table,
    View,
)
from tests.support.planned_tasks import NOW, POLICY, at, plan

STEPS = ("web-user", "web-domain", "mail-user", "mail-domain", "dns-zone")


# --- recording what a page sends ------------------------------------------------------------


class RecordingCursor:
    def __init__(self, cur: Cursor, statements: list[tuple[str, str]]) -> None:
        self._cur, self._statements = cur, statements

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        self._statements.append(("execute", sql))
        return self._cur.execute(sql, params)

    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> Any:
        self._statements.append(("executemany", sql))
        return self._cur.executemany(sql, params)

    def fetchone(self) -> Any:
        return self._cur.fetchone()

    def fetchall(self) -> list[Any]:
        return self._cur.fetchall()


class RecordingDatabase(Database):
    """A Database that writes down every statement, one list per transaction."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.transactions: list[list[tuple[str, str]]] = []

    @contextmanager
    def transaction(self) -> Iterator[Cursor]:
        statements: list[tuple[str, str]] = []
        self.transactions.append(statements)
        with super().transaction() as cur:
            yield RecordingCursor(cur, statements)


def reads(statements: list[tuple[str, str]]) -> list[str]:
    """The SELECTs of one page, without the tracking rows' lock and the NOTIFY of its
    commit (PostgreSQL: the live pages hear of it)."""
    return [
        sql
        for kind, sql in statements
        if kind == "execute"
        and sql.startswith("SELECT")
        and "tracking" not in sql
        and not sql.startswith("SELECT pg_notify")
    ]


# --- views with and without prefetching -----------------------------------------------------


class RowByRow:
    """A view as it was before prefetching: every row it reads is a query of its own."""

    def __init__(self, view: View) -> None:
        self.name, self.tables, self._view = view.name, view.tables, view
        self.version = view.version

    def apply(self, recorded: Recorded, rows: Rows) -> None:
        self._view.apply(recorded, rows)


class HalfLoader:
    def __init__(self, rows: RowLoader) -> None:
        self._rows = rows

    def load(self, table: str, keys: Iterable[tuple[Any, ...]]) -> list[Row]:
        return self._rows.load(table, sorted(keys)[::2])


class HalfPrefetched(RowByRow):
    """A view whose prefetch names only every other row: the rest must still be read."""

    def prefetch(self, page: Sequence[Recorded], rows: RowLoader) -> None:
        assert isinstance(self._view, Prefetching)
        self._view.prefetch(page, HalfLoader(rows))


# --- histories ------------------------------------------------------------------------------


def order(i: int, password: str | None = None) -> Service:
    body: dict[str, Any] = {
        "service_id": i,
        "client_id": 7,
        "mode": "split",
        "plan": {"package": "default"},
    }
    body |= {"domain": f"s{i}.example"} | ({"password": password} if password else {})
    return Service.order(parse_order(body, now=NOW, actor="whmcs"), "sealed" if password else None)


def ask(service: Service, action: str, body: dict[str, Any] | None, seconds: float) -> None:
    command = parse_lifecycle(action, service.service_id, body, now=at(seconds), actor="whmcs")
    service.handle(command)


def succeed(task: Task, seconds: float) -> None:
    assert task.succeed(task.attempt, at(seconds), changed=True, log=["$ v-add", "done"])


def fail(task: Task, seconds: float, *, retryable: bool) -> None:
    assert task.fail(
        task.attempt,
        at(seconds),
        error="exit 15",
        retryable=retryable,
        log=["$ v-add", "exit 15"],
        policy=POLICY,
        unit_random=0.5,
    )


def record_burst(store: EventStore, services: int) -> None:
    """A deploy burst: every service ordered, its steps planned, then step by step each
    dispatched and succeeded across all services at once, and every service activated."""
    ordered = [order(i) for i in range(1, services + 1)]
    store.save(*ordered)
    tasks = {s.service_id: [plan(step, service_id=s.service_id) for step in STEPS] for s in ordered}
    for planned in tasks.values():
        store.save(*planned)
    for n in range(len(STEPS)):
        for planned in tasks.values():
            planned[n].dispatch(at(n * 10 + 1), 30)
            store.save(planned[n])
        for planned in tasks.values():
            succeed(planned[n], n * 10 + 5)
            store.save(planned[n])
    for service in ordered:
        service.mark_active(at(60))
        store.save(service)


def record_mixed(store: EventStore, services: int = 24) -> None:
    """Orders, deploys with retries, errors, cancels, staff retries, hides and newer runs,
    lifecycle requests and outcomes, and tasks of a service never ordered — interleaved
    across services as a busy system records them."""
    ordered = [order(i, "Secret-pass-123" if i % 5 == 0 else None) for i in range(1, services + 1)]
    store.save(*ordered)
    tasks = {
        s.service_id: [plan(step, service_id=s.service_id) for step in STEPS[:3]] for s in ordered
    }
    for planned in tasks.values():
        store.save(*planned)
    for planned in tasks.values():
        planned[0].dispatch(at(1), 30)
        store.save(planned[0])
    for i, planned in enumerate(tasks.values(), 1):
        first, second, third = planned
        if i % 2 == 0:
            assert first.renew_lease(1, at(10), 30)
        if i % 4 == 0:
            fail(first, 12, retryable=False)
        elif i % 4 == 1:
            fail(first, 12, retryable=True)
            first.dispatch(at(25), 30)
            succeed(first, 26)
        else:
            succeed(first, 12)
        second.dispatch(at(27), 30)
        third.dispatch(at(27), 30)
        store.save(first, second, third)
    for i, planned in enumerate(tasks.values(), 1):
        first, second, third = planned
        succeed(second, 30)
        if i % 5 == 0:
            assert third.cancel(at(31), "staff")
        if i % 8 == 0:
            assert first.hide(at(32), "staff", "clean-up")
        elif i % 4 == 0:
            assert first.retry(at(32), "staff")
        store.save(first, second, third)
    for i, (service, planned) in enumerate(zip(ordered, tasks.values(), strict=True), 1):
        if i % 3 == 0:
            ask(service, "redeploy", None, 40)
            store.save(service)
            newer = [
                plan(step, service_id=service.service_id, run=service.version, seconds=41)
                for step in STEPS
            ]
            newer[0].dispatch(at(42), 30)
            for old in planned:
                old.cancel(at(41), "pipeline: superseded")
            store.save(*planned, *newer)
        if i % 2 == 0:
            service.mark_active(at(50))
        if i % 4 == 0:
            ask(service, "suspend", {"reason": "unpaid"}, 51)
        if i % 8 == 0:
            service.mark_suspended(at(52))
        if i % 7 == 0:
            ask(service, "change-plan", {"plan": {"package": "gold"}}, 53)
        if i % 5 == 0:
            ask(service, "terminate", {"force": True}, 54)
        store.save(service)
    stray = plan("web-user", service_id="999")
    stray.dispatch(at(60), 30)
    store.save(stray)


# --- applying pages -------------------------------------------------------------------------


@dataclass
class Setup:
    store: EventStore
    url: str


@pytest.fixture
def setup(database_url: str) -> Iterator[Setup]:
    store = EventStore(database_url)
    yield Setup(store, database_url)
    store.close()


def pages(store: EventStore, size: int) -> list[list[Recorded]]:
    last = store.max_notification_id()
    events = [Recorded(n.id, store.decode(n)) for n in store.notifications(0, last)]
    return [events[start : start + size] for start in range(0, len(events), size)]


def project(
    db: Database, views: Sequence[View], prefix: str, size: int, store: EventStore
) -> ViewStore:
    """Applies the store's events to ``views`` page by page; returns their ViewStore."""
    view_store = ViewStore(db, views, prefix)
    view_store.positions()  # makes the tables, so what follows is the pages alone
    after = 0
    for page in pages(store, size):
        view_store.apply_page(views, after, page)
        after = page[-1].position
    return view_store


def test_a_pages_reads_are_a_few_queries_whatever_its_size(setup: Setup) -> None:
    record_burst(setup.store, services=60)  # 60 services, 17 events each
    per_page: dict[str, list[int]] = {}
    for name, size, wrap in (
        ("prefetched 50", 50, False),
        ("prefetched 400", 400, False),
        ("row by row 400", 400, True),
    ):
        db = RecordingDatabase(setup.url)
        views = [RowByRow(v) if wrap else v for v in all_views()]
        project(db, views, f"hw_{'rbr' if wrap else 'pre'}{size}_", size, setup.store)
        applied = db.transactions[2:]  # after making the tables and reading the positions
        assert len(applied) == -(-setup.store.max_notification_id() // size)
        per_page[name] = [len(reads(statements)) for statements in applied]
        if not wrap:
            for statements in applied:
                # one load per table a view reads; no row read on its own
                assert all(" IN (" in sql for sql in reads(statements)), statements
        db.close()
    # services: lookups, tasks, services, runs; oplog: lookups; task queue; timeline: 2
    assert max(per_page["prefetched 50"]) <= 8
    assert max(per_page["prefetched 400"]) <= 8
    assert max(per_page["row by row 400"]) > 100  # what it was: a query per row read


def test_views_end_the_same_with_and_without_prefetching(setup: Setup) -> None:
    record_mixed(setup.store)
    db = Database(setup.url)
    reference = project(db, [RowByRow(v) for v in all_views()], "hw_rbr_", 1000, setup.store)
    stores = {
        "prefetched, pages of 7": project(db, all_views(), "hw_p7_", 7, setup.store),
        "prefetched, pages of 64": project(db, all_views(), "hw_p64_", 64, setup.store),
        "prefetched, one page": project(db, all_views(), "hw_p1000_", 1000, setup.store),
        "half prefetched": project(
            db, [HalfPrefetched(v) for v in all_views()], "hw_half_", 50, setup.store
        ),
    }
    tables = [table.name for view in all_views() for table in view.tables]
    expected = {table: reference.rows(table) for table in tables}
    assert all(expected[t] for t in ("services", "task_queue", "timeline", "services_runs"))
    for name, store in stores.items():
        for table in tables:
            assert store.rows(table) == expected[table], (name, table)
    db.close()


# --- a composite key ------------------------------------------------------------------------

PAIRS = Table(
    name="pairs",
    columns=(Column("name", "text"), Column("n", "int"), Column("seen", "int")),
    key=("name", "n"),
)


class PairsView:
    """Counts ``(name, n)`` events; its key is two columns of two types."""

    name = "pairs"
    version = 1
    tables: tuple[Table, ...] = (PAIRS,)

    def prefetch(self, page: Sequence[Recorded], rows: RowLoader) -> None:
        rows.load(PAIRS.name, {r.event for r in page})

    def apply(self, recorded: Recorded, rows: Rows) -> None:
        name, n = recorded.event
        before = rows.get(PAIRS.name, (name, n))
        rows.put(PAIRS.name, {"name": name, "n": n, "seen": (before or {"seen": 0})["seen"] + 1})


def test_composite_keys_load_in_chunks_and_absent_ones_are_not_read_again(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ops.views import view_store

    monkeypatch.setattr(view_store, "_KEYS_PER_LOAD", 4)
    db = RecordingDatabase(database_url)
    views = [PairsView()]
    store = ViewStore(db, views)
    store.positions()
    pairs = [(f"k{i % 3}", i % 2) for i in range(6)]  # six pairs, none of them stored yet
    store.apply_page(views, 0, [Recorded(i, pair) for i, pair in enumerate(pairs, 1)])
    again = [*pairs, ("new", 5), ("new", 5)]  # seven pairs, one of them not stored
    db.transactions.clear()
    store.apply_page(views, 6, [Recorded(i, pair) for i, pair in enumerate(again, 7)])
    (statements,) = db.transactions
    assert len(reads(statements)) == 2  # seven pairs, four to a query, and no single reads
    assert all("IN (VALUES" in sql for sql in reads(statements))
    seen = {(row["name"], row["n"]): row["seen"] for row in store.rows("pairs")}
    assert seen == {pair: 2 for pair in [*pairs, ("new", 5)]}
    db.close()
