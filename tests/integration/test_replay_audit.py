"""``hostwright replay`` as an audit, on SQLite and PostgreSQL: a history of deploys the real
pipeline completed replays to views equal to the live ones, and a live view that differs —
a row changed, a row missing, a row too many — is named, with how many rows differ. Then
``hostwright bench replay`` runs small, so the benchmark cannot rot."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
import pytest
from eventsourcing.persistence import Notification

from ops.cli import main
from ops.devtools.bench import replay as bench_replay
from ops.devtools.bench.replay import fill
from ops.devtools.bench.scratch import scratch_postgres
from ops.store.database import Database
from ops.store.event_decoding import EventDecoder
from ops.store.event_store import EventStore
from ops.store.log_rows import log_rows
from ops.views import replay as replay_module
from ops.views.replay import replay_and_compare
from projections.catalogue import all_views
from tests.support.decode_counting import decoded_rows

SERVICES = 4


@dataclass
class Audited:
    store: EventStore
    db: Database

    def replay(self, workers: int | None = None) -> str | None:
        return replay_and_compare(self.store, self.db, all_views(), workers=workers)

    def execute(self, *statements: str) -> None:
        with self.db.transaction() as cur:
            for statement in statements:
                cur.execute(statement)


@pytest.fixture
def audited(database_url: str) -> Iterator[Audited]:
    fill(database_url, SERVICES)  # the deploys, and the live views projected to the end
    store, db = EventStore(database_url), Database(database_url)
    try:
        yield Audited(store, db)
    finally:
        db.close()
        store.close()


def test_a_history_of_deploys_replays_to_the_live_views(audited: Audited) -> None:
    assert audited.store.max_notification_id() > SERVICES * 40
    assert audited.replay() is None


def test_the_quick_decoder_makes_the_events_the_mapper_makes(audited: Audited) -> None:
    store = audited.store
    stored = list(store.notifications(0, 10_000))
    task_id = next(n.originator_id for n in stored if n.topic.endswith("Task.Planned"))
    when = '{"_type_":"datetime_iso","_data_":"2026-01-01T00:00:00+00:00"}'
    crafted = [
        # stored before Task.Failed had lease_expired: the upcast adds it
        b'{"timestamp":%s,"attempt":1,"error":"lease expired","retryable":true,"log":["a"]}'
        % when.encode(),
        # transcoded values inside lists and objects are revived too
        b'{"timestamp":%s,"attempt":2,"error":{"at":[%s,{"id":{"_type_":"uuid_hex",'
        b'"_data_":"%s"}}]},"retryable":false,"log":[],"lease_expired":false,"class_version":2}'
        % (when.encode(), when.encode(), str(task_id).replace("-", "").encode()),
    ]
    stored += [
        Notification(
            id=10**9 + i,
            originator_id=task_id,
            originator_version=90 + i,
            topic="domain.task:Task.Failed",
            state=state,
        )
        for i, state in enumerate(crafted)
    ]
    quick = EventDecoder(store.app.mapper)
    for notification in stored:
        expected, got = store.decode(notification), quick.decode(notification)
        assert type(got) is type(expected)
        assert got.__dict__ == expected.__dict__
        row = (notification.id, notification.originator_id, notification.originator_version)
        row += (notification.topic, notification.state)
        for name in ("service_id", "attempt", "error", "lease_expired"):
            if name in expected.__dict__:  # one field read alone, upcasts included
                assert quick.text_field(row, name) == getattr(expected, name)


def test_replay_decodes_only_the_events_some_view_folds(
    audited: Audited, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded = decoded_rows(monkeypatch)
    assert audited.replay(workers=1) is None  # counted here: a worker's calls stay in it
    topics = {row[3] for row in decoded}
    assert "domain.task:Task.Planned" in topics and "domain.service:Service.Ordered" in topics
    # claims and servers are in the log (the deploys made them) but no view folds them
    assert not [t for t in topics if not t.startswith(("domain.task:", "domain.service:"))]
    assert len(decoded) < audited.store.max_notification_id()


def test_the_log_read_as_rows_is_the_notifications_decoded_alike(audited: Audited) -> None:
    store = audited.store
    notifications = list(store.notifications(10, 400))
    rows = list(log_rows(store, 10, 400))
    assert [(n.id, n.originator_version, n.topic, n.state) for n in notifications] == [
        (row[0], row[2], row[3], row[4]) for row in rows
    ]
    assert [n.originator_id for n in notifications] == [UUID(str(row[1])) for row in rows]
    quick = EventDecoder(store.app.mapper)
    for notification, row in zip(notifications, rows, strict=True):
        expected, got = store.decode(notification), quick.decode_row(row)
        assert type(got) is type(expected)
        assert got.__dict__ == expected.__dict__


def test_replay_pauses_the_cycle_collector_and_restores_it(
    audited: Audited, monkeypatch: pytest.MonkeyPatch
) -> None:
    enabled: list[bool] = []
    fold = replay_module.fold_all

    def watching(*args: Any) -> None:
        enabled.append(gc.isenabled())
        fold(*args)

    monkeypatch.setattr(replay_module, "fold_all", watching)
    assert gc.isenabled()
    assert audited.replay(workers=1) is None  # a worker pauses its own, as replay_group says
    assert enabled == [False] and gc.isenabled()
    gc.disable()
    try:  # a caller that had paused it finds it paused still
        assert audited.replay(workers=1) is None
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_changed_row_is_named_with_both_values(audited: Audited) -> None:
    audited.execute("UPDATE hw_task_queue SET state = 'error' WHERE step = 'web.package'")
    difference = audited.replay()
    assert difference is not None
    assert "view task_queue" in difference and "column state" in difference
    assert "live 'error' != replayed 'succeeded'" in difference
    assert f"rows that differ: task_queue {SERVICES}" in difference


def test_a_missing_row_is_named(audited: Audited) -> None:
    audited.execute("DELETE FROM hw_timeline WHERE step = 'web.package' AND service_id = 'g2'")
    difference = audited.replay()
    assert difference is not None
    assert "view timeline" in difference and "missing from the live view" in difference
    assert "rows that differ: timeline 1" in difference


def test_an_extra_row_is_named(audited: Audited) -> None:
    audited.execute(
        "INSERT INTO hw_services (service_id, client_id, status) VALUES ('ghost', '1', 'active')"
    )
    difference = audited.replay()
    assert difference is not None
    assert "view services" in difference
    assert "row 'ghost' is live but not in the replay" in difference


def test_a_replay_leaves_no_table_behind(audited: Audited) -> None:
    before = _tables(audited.db)
    assert audited.replay() is None
    assert _tables(audited.db) == before


def _tables(db: Database) -> set[str]:
    with db.transaction() as cur:
        if db.dialect == "sqlite":
            cur.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        else:
            cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {str(name) for (name,) in cur.fetchall()}


def test_bench_replay_runs_small_on_both_stores(
    postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "replay", "--services", "3", "--postgres-url", postgres_url]) == 0
    shown = capsys.readouterr().out
    for kind in ("sqlite", "postgresql"):
        line = next(line for line in shown.splitlines() if line.strip().startswith(kind))
        assert "events" in line and "6 views" in line and "replay" in line and "floor" in line


def test_bench_replay_refuses_an_unknown_store(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "replay", "--services", "3", "--stores", "sqlite,mysql"]) == 2
    assert "mysql" in capsys.readouterr().out


def test_bench_replay_drops_its_scratch_database_when_the_run_fails(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[str] = []

    class Remembered(scratch_postgres):
        def __enter__(self) -> str:
            made.append(self.name)
            return super().__enter__()

    def failing_fill(database_url: str, services: int) -> None:
        raise RuntimeError("the fill broke half way")

    monkeypatch.setattr(bench_replay, "scratch_postgres", Remembered)
    monkeypatch.setattr(bench_replay, "fill", failing_fill)
    try:
        with pytest.raises(RuntimeError, match="half way"):
            bench_replay.measure_store("postgresql", 3, postgres_url)
        assert len(made) == 1
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", made).fetchall()
        assert found == []
    finally:  # had the bench left it, the test still does not
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            for name in made:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
