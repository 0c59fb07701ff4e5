"""The inbox does not grow without bound: ids handled longer ago than the retention are
deleted in small batches by the scheduler's ``inbox`` job, recent ones stay (and still absorb
redeliveries), and an inbox table from before the retention existed gets its time column, its
rows counted from the upgrade. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from ops.bootstrap import System
from ops.messaging.inbox import Inbox
from ops.services.scheduler import Tick
from ops.settings import Settings
from ops.store.database import Database

DAY_S = 24 * 3600.0
T0 = 1_800_000_000.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    try:
        yield database
    finally:
        database.close()


def test_ids_older_than_the_retention_are_pruned_in_batches(db: Database) -> None:
    clock = Clock(T0)
    inbox = Inbox(db, "t_", clock=clock)
    inbox.remember_all("pipeline", [f"old-{n}" for n in range(2500)])
    clock.now = T0 + 6 * DAY_S
    inbox.remember_all("pipeline", [f"new-{n}" for n in range(10)])
    inbox.remember("handler.web", "new-web")

    clock.now = T0 + 7 * DAY_S + 60
    assert inbox.prune(7 * DAY_S, batch=1000) == 2500
    assert inbox.count() == 11
    assert inbox.seen("pipeline", "new-3") and inbox.seen("handler.web", "new-web")
    assert not inbox.seen("pipeline", "old-3")
    assert inbox.prune(7 * DAY_S) == 0


def test_an_inbox_table_from_before_gets_its_time_column(db: Database) -> None:
    db.create_table(
        "t_inbox",
        "consumer TEXT NOT NULL, message_id TEXT NOT NULL, PRIMARY KEY (consumer, message_id)",
    )
    with db.transaction() as cur:
        cur.execute("INSERT INTO t_inbox (consumer, message_id) VALUES (?, ?)", ("pipeline", "m1"))
    clock = Clock(T0)
    inbox = Inbox(db, "t_", clock=clock)
    assert inbox.seen("pipeline", "m1")
    inbox.remember("pipeline", "m2")
    clock.now = T0 + 6 * DAY_S
    assert inbox.prune(7 * DAY_S) == 0  # the old rows count from the upgrade, not from 1970
    clock.now = T0 + 8 * DAY_S
    assert inbox.prune(7 * DAY_S) == 2
    assert Inbox(db, "t_", clock=clock).count() == 0


def test_the_schedulers_inbox_job_prunes_the_inbox(database_url: str) -> None:
    settings = Settings.load({"HOSTWRIGHT_DATABASE_URL": database_url})
    system = System(settings)
    try:
        long_ago = Inbox(system.db, settings.view_prefix, clock=lambda: time.time() - 30 * DAY_S)
        long_ago.remember_all("pipeline", ["a", "b"])
        system.inbox().remember("pipeline", "c")
        (job,) = [job for job in system.scheduler()._jobs if job.name == "inbox"]
        assert job.period_s == settings.cron_inbox_s
        asyncio.run(job.action(Tick("inbox", 1, job.period_s)))
        assert system.inbox().count() == 1
        assert system.inbox().seen("pipeline", "c")
    finally:
        asyncio.run(system.close())
