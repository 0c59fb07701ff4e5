"""The task-queue and deploy-timeline views, and the services row's progress, as pure functions
of real Task events over an in-memory Rows; then the same over a real store on SQLite and
PostgreSQL through the projection runner, audited by a replay from event 0."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from domain.commands import parse_lifecycle, parse_order
from domain.service import Service
from domain.task import Task
from ops.store.database import Database
from ops.store.event_store import EventStore
from ops.views.projection_runner import ProjectionRunner
from ops.views.replay import replay_and_compare
from ops.views.view_queries import SqlViewQueries
from ops.views.view_store import ViewStore
from projections.catalogue import all_views
from projections.services_view import ServicesView
from projections.task_queue_view import TaskQueueView, stuck_since_at
from projections.timeline_view import DeployTimelineView, duration_ms
from projections.view import Recorded, Row, Rows, View
from tests.fakes.rows import MemoryRows
from tests.support.planned_tasks import NOW, POLICY, at, plan

LEASE_S = 30.0


def text(seconds: float) -> str:
    return at(seconds).isoformat(timespec="microseconds")


def test_the_fake_satisfies_the_real_port() -> None:
    rows: Rows = MemoryRows(all_views())
    rows.put("timeline_runs", {"service_id": "1", "run": 1, "task_ids": []})
    assert rows.get("timeline_runs", ("1",)) == {"service_id": "1", "run": 1, "task_ids": []}


class History:
    """Feeds the events of aggregates to the views in order, like the projection runner."""

    def __init__(self, views: list[View]) -> None:
        self.views = views
        self.rows = MemoryRows(views)
        self.position = 0

    def record(self, *aggregates: Any) -> None:
        for aggregate in aggregates:
            for event in aggregate.collect_events():
                self.position += 1
                for view in self.views:
                    view.apply(Recorded(position=self.position, event=event), self.rows)

    def row(self, table: str, *key: Any) -> Row:
        found = self.rows.get(table, tuple(key))
        assert found is not None, (table, key)
        return found

    def table(self, name: str) -> list[Row]:
        rows = self.rows.tables[name]
        return [rows[key] for key in sorted(rows)]


def fail(task: Task, seconds: float, *, retryable: bool = True, error: str = "exit 15") -> None:
    assert task.fail(
        task.attempt,
        at(seconds),
        error=error,
        retryable=retryable,
        log=[f"$ v-add-user (attempt {task.attempt})", error],
        policy=POLICY,
        unit_random=0.5,
    )


def succeed(task: Task, seconds: float) -> None:
    assert task.succeed(task.attempt, at(seconds), changed=True, log=["$ v-add-user", "done"])


def order(service_id: str = "42") -> Service:
    body = {
        "service_id": service_id,
        "client_id": 7,
        "mode": "split",
        "domain": "a.example.com",
        "plan": {"package": "default"},
    }
    return Service.order(parse_order(body, now=NOW, actor="whmcs"), None)


# --- the task queue -------------------------------------------------------------------------


def test_a_task_that_fails_retries_and_succeeds_has_every_attempt_in_its_row() -> None:
    history = History([TaskQueueView()])
    task = plan("web-user")
    history.record(task)
    key = str(task.id)
    row = history.row("task_queue", key)
    assert {k: row[k] for k in ("service_id", "run", "step", "role", "action", "server_id")} == {
        "service_id": "42",
        "run": 1,
        "step": "web-user",
        "role": "web",
        "action": "do web-user",
        "server_id": "web-1",
    }
    assert (row["state"], row["attempts"], row["hidden"], row["log"]) == ("planned", 0, False, [])
    assert row["created_at"] == text(0)
    assert row["started_at"] is row["finished_at"] is row["due_at"] is None

    task.dispatch(at(1), LEASE_S)
    history.record(task)
    row = history.row("task_queue", key)
    assert (row["state"], row["attempts"], row["started_at"]) == ("dispatched", 1, text(1))
    assert row["lease_expires_at"] == text(31)

    task.renew_lease(1, at(20), LEASE_S)
    history.record(task)
    assert history.row("task_queue", key)["lease_expires_at"] == text(50)

    fail(task, 25)
    history.record(task)
    row = history.row("task_queue", key)
    assert (row["state"], row["error"], row["lease_expires_at"]) == (
        "retry_scheduled",
        "exit 15",
        None,
    )
    assert row["due_at"] == text(35)  # 10 s back-off, no jitter
    assert row["finished_at"] is None

    task.dispatch(at(40), LEASE_S)
    history.record(task)
    row = history.row("task_queue", key)
    assert (row["state"], row["attempts"], row["due_at"]) == ("dispatched", 2, None)
    assert row["started_at"] == text(1)  # the first dispatch

    succeed(task, 45)
    history.record(task)
    row = history.row("task_queue", key)
    assert (row["state"], row["error"], row["finished_at"]) == ("succeeded", None, text(45))
    assert row["updated_at"] == text(45)
    assert row["log"] == [
        f"--- attempt 1 on web-1 at {text(1)} ---",
        "$ v-add-user (attempt 1)",
        "exit 15",
        "attempt 1 failed (retryable): exit 15",
        f"--- attempt 2 on web-1 at {text(40)} ---",
        "$ v-add-user",
        "done",
        "attempt 2 succeeded",
    ]


def test_errors_retry_by_staff_cancel_and_force_fail() -> None:
    history = History([TaskQueueView()])
    broken, waiting, stuck = plan("web-user"), plan("mail-user"), plan("dns-zone")
    broken.dispatch(at(1), LEASE_S)
    fail(broken, 2, retryable=False, error="exit 10: forbidden")
    stuck.dispatch(at(1), LEASE_S)
    history.record(broken, waiting, stuck)
    row = history.row("task_queue", str(broken.id))
    assert (row["state"], row["error"], row["finished_at"]) == (
        "error",
        "exit 10: forbidden",
        text(2),
    )

    assert broken.retry(at(3), "whmcs")
    history.record(broken)
    row = history.row("task_queue", str(broken.id))
    assert (row["state"], row["error"], row["finished_at"], row["attempts"]) == (
        "planned",
        None,
        None,
        1,
    )
    assert row["log"][-1] == f"retried by whmcs at {text(3)}"

    assert waiting.cancel(at(4), "whmcs")
    history.record(waiting)
    row = history.row("task_queue", str(waiting.id))
    assert (row["state"], row["finished_at"], row["started_at"]) == ("cancelled", text(4), None)

    assert stuck.force_fail(at(5), "admin")
    history.record(stuck)
    row = history.row("task_queue", str(stuck.id))
    assert (row["state"], row["lease_expires_at"], row["finished_at"]) == ("error", None, text(5))
    assert "force-failed by admin" in row["error"]


def test_running_out_of_attempts_is_an_error_naming_the_tries() -> None:
    history = History([TaskQueueView()])
    task = plan("web-user")
    for attempt in range(3):
        task.dispatch(at(100 * attempt), LEASE_S)
        fail(task, 100 * attempt + 1)
    history.record(task)
    row = history.row("task_queue", str(task.id))
    assert (row["state"], row["attempts"]) == ("error", 3)
    assert row["error"] == "gave up after 3 attempts: exit 15"
    assert [line for line in row["log"] if line.startswith("--- attempt")] == [
        f"--- attempt {n} on web-1 at {text(100 * (n - 1))} ---" for n in (1, 2, 3)
    ]


def expire(task: Task, seconds: float) -> None:
    assert task.expire_lease(at(seconds), POLICY, 0.5)


def stuck_of(history: History, task: Task) -> tuple[Any, Any]:
    row = history.row("task_queue", str(task.id))
    return row["stuck"], row["stuck_since"]


def test_a_streak_of_lease_expiries_is_stuck_from_the_first_expired_lease() -> None:
    history = History([TaskQueueView()])
    task = plan("web-user")
    task.dispatch(at(1), LEASE_S)  # lease until 31
    history.record(task)
    assert stuck_of(history, task) == (False, None)
    expire(task, 40)
    history.record(task)
    assert stuck_of(history, task) == (True, text(31))
    task.dispatch(at(50), LEASE_S)  # the next attempt, to the same frozen handler
    history.record(task)
    assert stuck_of(history, task) == (True, text(31))
    expire(task, 90)
    history.record(task)
    row = history.row("task_queue", str(task.id))
    assert (row["state"], row["attempts"], row["stuck"], row["stuck_since"]) == (
        "retry_scheduled",
        2,
        True,
        text(31),
    )
    # a handler heartbeating the next attempt ends the streak
    task.dispatch(at(110), LEASE_S)  # after a 20 s back-off
    assert task.renew_lease(3, at(120), LEASE_S)
    history.record(task)
    assert stuck_of(history, task) == (False, None)


@pytest.mark.parametrize("end", ["succeed", "fail", "force_fail", "cancel"])
def test_any_other_outcome_ends_the_streak(end: str) -> None:
    history = History([TaskQueueView()])
    task = plan("web-user")
    task.dispatch(at(1), LEASE_S)
    expire(task, 40)
    task.dispatch(at(50), LEASE_S)
    history.record(task)
    assert stuck_of(history, task) == (True, text(31))
    if end == "succeed":
        succeed(task, 55)
    elif end == "fail":
        fail(task, 55)
    elif end == "force_fail":
        assert task.force_fail(at(55), "whmcs")
    else:
        assert task.cancel(at(55), "whmcs")
    history.record(task)
    assert stuck_of(history, task) == (False, None)


def test_stuck_at_query_time_adds_a_dispatched_task_past_its_lease() -> None:
    history = History([TaskQueueView()])
    silent, expired, waiting = plan("web-user"), plan("mail-user"), plan("dns-zone")
    silent.dispatch(at(1), LEASE_S)
    expired.dispatch(at(1), LEASE_S)
    expire(expired, 40)
    history.record(silent, expired, waiting)
    row = history.row("task_queue", str(silent.id))
    assert (row["stuck"], row["stuck_since"]) == (False, None)  # no event said so
    assert stuck_since_at(row, text(30)) is None
    assert stuck_since_at(row, text(31)) == text(31)
    assert stuck_since_at(history.row("task_queue", str(expired.id)), text(0)) == text(31)
    assert stuck_since_at(history.row("task_queue", str(waiting.id)), text(999)) is None
    # the aggregate says the same
    assert silent.stuck_at(at(30)) is None and silent.stuck_at(at(31)) == at(31)
    assert expired.stuck_at(at(0)) == at(31) and waiting.stuck_at(at(999)) is None


def test_hiding_a_task_hides_its_queue_row_and_changes_no_other_view() -> None:
    history = History(all_views())
    history.record(order())
    task = plan("web-user")
    task.dispatch(at(1), LEASE_S)
    succeed(task, 2)
    history.record(task)
    before = {name: history.table(name) for name in history.rows.tables}
    assert task.hide(at(3), "whmcs", "delete_succeeded")
    history.record(task)
    row = history.row("task_queue", str(task.id))
    assert (row["hidden"], row["state"], row["updated_at"]) == (True, "succeeded", text(3))
    after = {name: history.table(name) for name in history.rows.tables}
    changed = [name for name in after if after[name] != before[name]]
    assert changed == ["task_queue"]


def test_a_failure_stored_before_lease_expired_existed_reads_as_one(sqlite_url: str) -> None:
    store = EventStore(sqlite_url)
    try:
        mapper = store.app.mapper
        expired, ordinary = plan("web-user"), plan("mail-user")
        expired.dispatch(at(1), LEASE_S)
        expire(expired, 40)
        ordinary.dispatch(at(1), LEASE_S)
        fail(ordinary, 2)
        failures = [
            e
            for e in (*expired.collect_events(), *ordinary.collect_events())
            if isinstance(e, Task.Failed)
        ]
        assert [e.lease_expired for e in failures] == [True, False]
        for event in failures:
            stored = mapper.to_stored_event(event)
            state = mapper.transcoder.decode(stored.state)
            assert state.pop("class_version") == 2
            del state["lease_expired"]  # as version 1 stored it
            old = dataclasses.replace(stored, state=mapper.transcoder.encode(state))
            read: Any = mapper.to_domain_event(old)
            assert (read.error, read.lease_expired) == (event.error, event.lease_expired)
    finally:
        store.close()


# --- the timeline ---------------------------------------------------------------------------


def test_the_timeline_shows_the_latest_runs_steps_in_order_with_durations() -> None:
    history = History([DeployTimelineView()])
    first = [plan(step) for step in ("web-user", "mail-user", "dns-zone")]
    history.record(*first)
    steps = history.table("timeline")
    assert sorted((s["position"], s["step"], s["state"]) for s in steps) == [
        (1, "web-user", "planned"),
        (2, "mail-user", "planned"),
        (3, "dns-zone", "planned"),
    ]
    web, mail, dns = first
    web.dispatch(at(1), LEASE_S)
    fail(web, 2)
    web.dispatch(at(20), LEASE_S)
    succeed(web, 21.5)
    mail.dispatch(at(1), LEASE_S)
    fail(mail, 3, retryable=False, error="exit 8: limit")
    history.record(web, mail)
    row = history.row("timeline", str(web.id))
    assert (row["state"], row["attempts"], row["started_at"], row["finished_at"]) == (
        "succeeded",
        2,
        text(1),
        text(21.5),
    )
    assert (row["duration_ms"], row["error"]) == (20_500, None)
    row = history.row("timeline", str(mail.id))
    assert (row["state"], row["error"], row["duration_ms"]) == ("error", "exit 8: limit", 2000)
    assert history.row("timeline", str(dns.id))["duration_ms"] is None

    # a newer run replaces the older one; the old run's late events change nothing
    second = [plan(step, run=5, seconds=60) for step in ("web-user", "dns-zone")]
    assert dns.cancel(at(60), "pipeline: superseded by a newer run")
    history.record(*second, dns)
    steps = history.table("timeline")
    assert {s["task_id"] for s in steps} == {str(t.id) for t in second}
    assert sorted((s["position"], s["step"], s["run"]) for s in steps) == [
        (1, "web-user", 5),
        (2, "dns-zone", 5),
    ]
    assert history.row("timeline_runs", "42")["run"] == 5

    # an older run's plan arriving late is not shown either
    history.record(plan("web-user", run=3))
    assert len(history.table("timeline")) == 2


def test_a_cancelled_step_keeps_its_duration_and_a_retried_one_starts_over() -> None:
    history = History([DeployTimelineView()])
    task = plan("web-user")
    task.dispatch(at(1), LEASE_S)
    history.record(task)
    assert task.cancel(at(4), "whmcs")
    history.record(task)
    row = history.row("timeline", str(task.id))
    assert (row["state"], row["duration_ms"]) == ("cancelled", 3000)
    assert task.retry(at(5), "whmcs")
    history.record(task)
    row = history.row("timeline", str(task.id))
    assert (row["state"], row["finished_at"], row["duration_ms"]) == ("planned", None, None)


def test_duration_is_whole_milliseconds_between_the_two_times() -> None:
    assert duration_ms(text(0), text(1.2345)) == 1234
    assert duration_ms(None, text(1)) is None
    assert duration_ms(text(1), None) is None


# --- the services row's progress ------------------------------------------------------------


def progress(history: History) -> tuple[Any, Any, Any]:
    row = history.row("services", "42")
    return row["progress_done"], row["progress_total"], row["current_step"]


def test_progress_follows_the_latest_run() -> None:
    history = History([ServicesView()])
    service = order()
    history.record(service)
    web, mail, dns = (plan(step) for step in ("web-user", "mail-user", "dns-zone"))
    history.record(web, mail, dns)
    assert progress(history) == (0, 3, None)

    web.dispatch(at(1), LEASE_S)
    history.record(web)
    assert progress(history) == (0, 3, "web-user")
    mail.dispatch(at(2), LEASE_S)
    history.record(mail)
    assert progress(history) == (0, 3, "mail-user")
    succeed(mail, 3)
    history.record(mail)
    assert progress(history) == (1, 3, "web-user")  # the latest dispatched task still open
    fail(web, 4)
    history.record(web)
    assert progress(history) == (1, 3, "web-user")  # awaiting its retry: still open
    assert history.row("services", "42")["updated_at"] == text(3)  # nothing changed at 4
    web.dispatch(at(20), LEASE_S)
    succeed(web, 21)
    history.record(web)
    assert progress(history) == (2, 3, None)
    dns.dispatch(at(22), LEASE_S)
    fail(dns, 23, retryable=False)
    history.record(dns)
    assert progress(history) == (2, 3, None)

    # a redeploy resets the progress; the old run's late events do not count
    service.handle(parse_lifecycle("redeploy", "42", None, now=at(30), actor="whmcs"))
    history.record(service)
    assert progress(history) == (0, 0, None)
    assert dns.retry(at(31), "whmcs")
    dns.dispatch(at(31), LEASE_S)
    succeed(dns, 32)
    history.record(dns)
    assert progress(history) == (0, 0, None)

    run = service.version
    again = [plan(step, run=run, seconds=40) for step in ("web-user", "dns-zone")]
    history.record(*again)
    assert progress(history) == (0, 2, None)
    again[0].dispatch(at(41), LEASE_S)
    succeed(again[0], 42)
    history.record(again[0])
    assert progress(history) == (1, 2, None)
    service.mark_active(at(43))
    history.record(service)
    assert progress(history) == (2, 2, None)
    assert history.row("services", "42")["status"] == "active"


def test_tasks_of_a_service_never_ordered_change_no_services_row() -> None:
    history = History([ServicesView()])
    history.record(order())
    stranger = plan("web-user", service_id="99")
    stranger.dispatch(at(1), LEASE_S)
    history.record(stranger)
    assert [row["service_id"] for row in history.table("services")] == ["42"]
    assert history.table("services_tasks") == []
    assert progress(history) == (0, 0, None)


def test_the_catalogue_holds_the_task_views() -> None:
    names = [view.name for view in all_views()]
    assert "task_queue" in names and "timeline" in names
    tables = [t.name for v in all_views() for t in v.tables]
    assert len(tables) == len(set(tables))


# --- over a real store ----------------------------------------------------------------------


@pytest.fixture
def stored(database_url: str) -> Iterator[tuple[EventStore, Database]]:
    store, db = EventStore(database_url), Database(database_url)
    yield store, db
    store.close()
    db.close()


def record_deploys(store: EventStore, services: int = 6) -> dict[str, list[Task]]:
    """Orders ``services`` services; each gets a run of three tasks driven to various ends,
    and every third one a newer run."""
    runs: dict[str, list[Task]] = {}
    for i in range(1, services + 1):
        service_id = str(i)
        body = {
            "service_id": i,
            "client_id": 1,
            "mode": "split",
            "domain": f"s{i}.example",
            "plan": {"package": "default"},
        }
        store.order_service(parse_order(body, now=NOW, actor="whmcs"), None)
        tasks = [plan(s, service_id=service_id) for s in ("web-user", "mail-user", "dns-zone")]
        store.save(*tasks)
        web, mail, dns = tasks
        web.dispatch(at(1), LEASE_S)
        store.save(web)
        fail(web, 2)
        store.save(web)
        web.dispatch(at(20), LEASE_S)
        succeed(web, 21)
        mail.dispatch(at(1), LEASE_S)
        store.save(web, mail)
        fail(mail, 5, retryable=False, error="exit 8: limit")
        dns.dispatch(at(2), LEASE_S)
        store.save(mail, dns)
        if i % 3 == 0:
            store.request(parse_lifecycle("redeploy", service_id, None, now=at(30), actor="whmcs"))
            run = store.get_service(service_id).version
            assert dns.cancel(at(31), "pipeline: superseded by a newer run")
            newer = [plan(s, service_id=service_id, run=run, seconds=31) for s in ("web-user",)]
            store.save(dns, *newer)
            tasks = newer
        runs[service_id] = tasks
    return runs


def test_the_views_over_a_store_equal_a_replay_from_event_0(
    stored: tuple[EventStore, Database],
) -> None:
    store, db = stored
    runs = record_deploys(store)
    views = all_views()
    assert ProjectionRunner(store, ViewStore(db, views), views, batch_size=7).catch_up() > 0
    assert replay_and_compare(store, db, all_views()) is None

    queries = SqlViewQueries(db)
    assert queries.timeline("404") is None
    one = queries.timeline("1")
    assert one is not None
    assert [(s["step"], s["state"], s["attempts"], s["duration_ms"]) for s in one] == [
        ("web-user", "succeeded", 2, 20_000),
        ("mail-user", "error", 1, 4000),
        ("dns-zone", "dispatched", 1, None),
    ]
    assert [s["task_id"] for s in one] == [str(t.id) for t in runs["1"]]
    three = queries.timeline("3")
    assert three is not None
    assert [(s["step"], s["state"]) for s in three] == [("web-user", "planned")]

    service_one, service_three = queries.service("1"), queries.service("3")
    assert service_one is not None and service_three is not None
    assert service_one["progress"] == {"done": 1, "total": 3, "current_step": "dns-zone"}
    assert service_three["progress"] == {"done": 0, "total": 1, "current_step": None}

    errors = queries.tasks(state="error")
    assert [t["service_id"] for t in errors] == [str(i) for i in range(1, 7)]
    assert all("log" not in t and "hidden" not in t for t in errors)
    assert [t["step"] for t in queries.tasks(service_id="3")] == [
        "web-user",
        "mail-user",
        "dns-zone",
        "web-user",
    ]
    assert {t["server_id"] for t in queries.tasks(server_id="dns-1")} == {"dns-1"}
    assert len(queries.tasks(server_id="dns-1")) == 6
    cancelled = queries.tasks(state="cancelled", service_id="6", server_id="dns-1", limit=5)
    assert [(t["step"], t["run"], t["finished_at"]) for t in cancelled] == [
        ("dns-zone", 1, text(31))
    ]
    latest = queries.tasks(limit=2)  # the latest planned, oldest first
    assert [(t["service_id"], t["step"], t["run"]) for t in latest] == [
        ("6", "dns-zone", 1),
        ("6", "web-user", runs["6"][0].run),
    ]

    detail = queries.task(str(runs["1"][0].id))
    assert detail is not None and detail["state"] == "succeeded"
    assert detail["log"][0] == f"--- attempt 1 on web-1 at {text(1)} ---"
    assert queries.task("00000000-0000-0000-0000-000000000000") is None

    with db.transaction() as cur:
        cur.execute("UPDATE hw_task_queue SET hidden = ? WHERE state = 'error'", (True,))
    assert queries.tasks(state="error") == []
    assert queries.task(str(runs["1"][1].id)) is None
    assert len(queries.tasks(service_id="1")) == 2
    difference = replay_and_compare(store, db, all_views())
    assert difference is not None and "task_queue" in difference and "hidden" in difference


def test_an_interrupted_projection_resumes_to_the_replays_rows(
    stored: tuple[EventStore, Database],
) -> None:
    store, db = stored
    record_deploys(store, services=4)
    views = all_views()
    ProjectionRunner(store, ViewStore(db, views), views, batch_size=5).catch_up(max_batches=3)
    assert replay_and_compare(store, db, all_views()) is None
    views = all_views()
    ProjectionRunner(store, ViewStore(db, views), views, batch_size=3).catch_up()
    assert replay_and_compare(store, db, all_views()) is None
    assert ViewStore(db, views).position("timeline") == store.max_notification_id()
