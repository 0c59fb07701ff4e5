"""``POST /v1/tasks/bulk`` and the stuck filter of ``GET /v1/tasks`` over a real event store,
the real StoreLedger and SqlViewQueries, on SQLite and PostgreSQL.

Each action must record exactly one event (Task.Hidden or Task.Errored) on exactly the tasks
that qualify; every refusal must be a 4xx JSON error that records nothing. Hidden tasks leave
the queue's reads only: their events, their timeline steps and the audit replay stay.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from domain.retry_policy import RetryPolicy
from domain.task import Task
from gateway.app import create_app
from ops.adapters.command_ledger import StoreLedger
from ops.adapters.sealing import PasswordSealer
from ops.cli import main as cli_main
from ops.store.database import Database
from ops.store.event_store import EventStore
from ops.views.replay import replay_and_compare
from ops.views.view_queries import SqlViewQueries
from projections.catalogue import all_views
from projections.view import iso_time
from tests.fakes.clock import Clock
from tests.support.gateway import (
    AUTH,
    STAFF,
    START,
    assert_readable_error,
    credentials_for_tests,
    order,
)
from tests.support.gateway import serving as serving_app
from tests.support.task_routes import TaskRoutes

POLICY = RetryPolicy(max_attempts=5, initial_backoff_s=10, max_backoff_s=60, jitter=0)
LEASE_S = 60.0
SEALER = PasswordSealer("a-secret-key-only-for-tests")


def at(minutes: float) -> datetime:
    return START + timedelta(minutes=minutes)


def text(minutes: float) -> str:
    return iso_time(at(minutes))


class Queue(TaskRoutes):
    def steps_of(self, ids: list[str]) -> list[str]:
        by_id = {str(task.id): step for step, task in self.tasks.items()}
        return [by_id[task_id] for task_id in ids]

    def events_since(self, before: int) -> list[Any]:
        return [self.store.decode(n) for n in self.store.notifications(before, 1000)]

    def listed(self, **params: str) -> list[dict[str, Any]]:
        reply = self.client.get("/v1/tasks", params=params, headers=STAFF)
        assert reply.status_code == 200, reply.text
        tasks: list[dict[str, Any]] = reply.json()["tasks"]
        return tasks

    def listed_steps(self, **params: str) -> list[str]:
        return [task["step"] for task in self.listed(**params)]

    def bulk(self, **body: Any) -> dict[str, Any]:
        reply = self.client.post("/v1/tasks/bulk", json=body, headers=STAFF)
        assert reply.status_code == 202, reply.text
        answer: dict[str, Any] = reply.json()
        assert answer["result"] == "success"
        return answer

    def task_events(self, step: str) -> list[str]:
        stored = self.store.recorder.select_events(self.tasks[step].id)
        return [type(self.store.app.mapper.to_domain_event(s)).__name__ for s in stored]


def plan(step: str, server_id: str, service_id: str = "1001") -> Task:
    return Task.plan(
        service_id=service_id,
        run=1,
        step=step,
        role=server_id.split("-")[0],
        action=f"ensure {step}",
        server_id=server_id,
        params={},
        depends_on=[],
        now=START,
    )


def fail(task: Task, minutes: float, *, retryable: bool) -> None:
    assert task.fail(
        task.attempt,
        at(minutes),
        error="exit 15" if retryable else "exit 8: limit",
        retryable=retryable,
        log=[],
        policy=POLICY,
        unit_random=0,
    )


def drive(tasks: dict[str, Task]) -> None:
    """Service 1001: done (succeeded at 2), broken (error at 3), dropped (cancelled at 4),
    frozen (its lease ran out at 2, awaiting a retry), silent (dispatched, lease out at 6, no
    expiry recorded yet), busy (lease until 14), waiting (planned). Service 1002: other-done
    (succeeded at 2), other-frozen (lease ran out at 2). The clock then stands at 10."""
    tasks["done"].dispatch(at(1), LEASE_S)
    assert tasks["done"].succeed(1, at(2), changed=True, log=["ok"])
    tasks["broken"].dispatch(at(1), LEASE_S)
    fail(tasks["broken"], 3, retryable=False)
    assert tasks["dropped"].cancel(at(4), "whmcs")
    for frozen in ("frozen", "other-frozen"):
        tasks[frozen].dispatch(at(1), LEASE_S)
        assert tasks[frozen].expire_lease(at(3), POLICY, 0)
    tasks["silent"].dispatch(at(5), LEASE_S)
    tasks["busy"].dispatch(at(9), 300)
    tasks["other-done"].dispatch(at(1), LEASE_S)
    assert tasks["other-done"].succeed(1, at(2), changed=False, log=[])


@pytest.fixture
def queue(database_url: str) -> Iterator[Queue]:
    store, db, clock = EventStore(database_url), Database(database_url), Clock(START)
    app = create_app(
        ledger=StoreLedger(store, SEALER),
        views=SqlViewQueries(db),
        credentials=credentials_for_tests(),
        clock=clock,
    )
    with serving_app(app) as client:
        for body in (order(), order(service_id=1002, domain="two.example.com", username="two1")):
            assert client.post("/v1/services", json=body, headers=AUTH).status_code == 202
        tasks = {
            "done": plan("done", "web-1"),
            "broken": plan("broken", "mail-1"),
            "dropped": plan("dropped", "dns-1"),
            "frozen": plan("frozen", "web-1"),
            "silent": plan("silent", "dns-1"),
            "busy": plan("busy", "mail-1"),
            "waiting": plan("waiting", "web-1"),
            "other-done": plan("other-done", "web-2", "1002"),
            "other-frozen": plan("other-frozen", "web-2", "1002"),
        }
        drive(tasks)
        store.save(*tasks.values())
        clock.now = at(10)
        setup = Queue(client, store, db, clock, tasks)
        setup.project()
        yield setup
    store.close()
    db.close()


ALL = ["done", "broken", "dropped", "frozen", "silent", "busy", "waiting"]
ALL_OTHER = ["other-done", "other-frozen"]


# --- the stuck filter -----------------------------------------------------------------------


def test_stuck_tasks_are_shown_and_filtered(queue: Queue) -> None:
    shown = {task["step"]: task for task in queue.listed()}
    assert list(shown) == ALL + ALL_OTHER
    stuck = {step: (task["stuck"], task["stuck_since"]) for step, task in shown.items()}
    assert stuck == {
        "done": (False, None),
        "broken": (False, None),
        "dropped": (False, None),
        "frozen": (True, text(2)),  # its streak began when the lease ran out
        "silent": (True, text(6)),  # known at query time only: no event says so yet
        "busy": (False, None),
        "waiting": (False, None),
        "other-done": (False, None),
        "other-frozen": (True, text(2)),
    }
    assert queue.listed_steps(stuck="true") == ["frozen", "silent", "other-frozen"]
    not_stuck = ["done", "broken", "dropped", "busy", "waiting", "other-done"]
    assert queue.listed_steps(stuck="false") == not_stuck
    assert queue.listed_steps(stuck="false", service_id="1002") == ["other-done"]
    assert queue.listed_steps(stuck="true", server_id="dns-1", state="dispatched") == ["silent"]
    reply = queue.client.get(f"/v1/tasks/{queue.id_of('silent')}", headers=STAFF)
    assert (reply.json()["stuck"], reply.json()["stuck_since"]) == (True, text(6))
    queue.clock.now = at(5)  # before silent's lease ran out
    assert queue.listed_steps(stuck="true") == ["frozen", "other-frozen"]


@pytest.mark.parametrize("value", ["yes", "1", "TRUE"])
def test_a_bad_stuck_filter_is_400(queue: Queue, value: str) -> None:
    reply = queue.client.get("/v1/tasks", params={"stuck": value}, headers=STAFF)
    assert_readable_error(reply, 400)


# --- deleting -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "hidden"),
    [
        ("delete_succeeded", ["done", "other-done"]),
        ("delete_failed", ["broken"]),
        ("delete_cancelled", ["dropped"]),
    ],
)
def test_a_delete_hides_the_tasks_in_its_state_and_forgets_nothing(
    queue: Queue, action: str, hidden: list[str]
) -> None:
    timeline_before = queue.client.get("/v1/services/1001/timeline", headers=AUTH).json()
    service_events = queue.client.get("/v1/services/1001/events", headers=AUTH).json()
    before = queue.store.max_notification_id()
    answer = queue.bulk(action=action)
    assert (answer["action"], answer["matched"], answer["changed"]) == (
        action,
        len(hidden),
        len(hidden),
    )
    assert queue.steps_of(answer["task_ids"]) == hidden
    events = queue.events_since(before)
    assert [type(e) for e in events] == [Task.Hidden] * len(hidden)
    assert [str(e.originator_id) for e in events] == answer["task_ids"]
    assert {(e.actor, e.reason, e.timestamp) for e in events} == {("staff", action, at(10))}

    queue.project()
    assert queue.listed_steps() == [s for s in ALL + ALL_OTHER if s not in hidden]
    for step in hidden:
        gone = queue.client.get(f"/v1/tasks/{queue.id_of(step)}", headers=STAFF)
        assert_readable_error(gone, 404)
        assert queue.task_events(step)[0] == "Planned"
        assert queue.task_events(step)[-1] == "Hidden"
    # the timeline, the service's events and the audit replay are unchanged by a delete
    assert queue.client.get("/v1/services/1001/timeline", headers=AUTH).json() == timeline_before
    assert queue.client.get("/v1/services/1001/events", headers=AUTH).json() == service_events
    assert replay_and_compare(queue.store, queue.db, all_views()) is None

    # once more: nothing left to delete, nothing recorded
    again = queue.bulk(action=action)
    assert (again["matched"], again["changed"], again["task_ids"]) == (0, 0, [])
    assert queue.store.max_notification_id() == before + len(hidden)


def test_clean_completed_hides_finished_tasks_older_than_its_age(queue: Queue) -> None:
    before = queue.store.max_notification_id()
    answer = queue.bulk(action="clean_completed")  # a week by default: nothing that old
    assert (answer["matched"], answer["changed"]) == (0, 0)
    assert queue.store.max_notification_id() == before

    answer = queue.bulk(action="clean_completed", older_than_s=400)  # finished by 3:20
    assert queue.steps_of(answer["task_ids"]) == ["done", "broken", "other-done"]

    answer = queue.bulk(action="clean_completed", service_id="1001", older_than_s=0)
    assert queue.steps_of(answer["task_ids"]) == ["dropped"]
    queue.project()
    assert queue.listed_steps() == ["frozen", "silent", "busy", "waiting", "other-frozen"]
    assert replay_and_compare(queue.store, queue.db, all_views()) is None


def test_clean_completed_by_default_once_a_week_has_passed(queue: Queue) -> None:
    queue.clock.now = at(2) + timedelta(days=7)  # a week after done finished, not broken
    answer = queue.bulk(action="clean_completed")
    assert queue.steps_of(answer["task_ids"]) == ["done", "other-done"]


def test_a_deleted_task_cannot_be_retried_or_cancelled(queue: Queue) -> None:
    queue.bulk(action="delete_failed")
    before = queue.store.max_notification_id()
    reply = queue.client.post(f"/v1/tasks/{queue.id_of('broken')}/retry", headers=STAFF)
    assert_readable_error(reply, 404)
    reply = queue.client.post(f"/v1/tasks/{queue.id_of('broken')}/cancel", headers=STAFF)
    assert_readable_error(reply, 404)
    assert queue.store.max_notification_id() == before


# --- force-failing --------------------------------------------------------------------------


def test_force_fail_stuck_errors_tasks_stuck_long_enough_and_late_results_change_nothing(
    queue: Queue,
) -> None:
    before = queue.store.max_notification_id()
    answer = queue.bulk(action="force_fail_stuck", older_than_s=300, service_id="1001")
    assert (answer["matched"], queue.steps_of(answer["task_ids"])) == (1, ["frozen"])
    answer = queue.bulk(action="force_fail_stuck")  # stuck for 2 minutes by default
    assert queue.steps_of(answer["task_ids"]) == ["silent", "other-frozen"]
    events = queue.events_since(before)
    assert [type(e) for e in events] == [Task.Errored] * 3
    assert [e.error for e in events] == [
        "force-failed by staff while attempt 1 was stuck",
    ] * 3

    queue.project()
    assert queue.listed_steps(stuck="true") == []
    assert queue.listed_steps(state="error") == ["broken", "frozen", "silent", "other-frozen"]
    assert replay_and_compare(queue.store, queue.db, all_views()) is None

    # the frozen handlers wake up: their late reports record nothing
    after = queue.store.max_notification_id()
    for step in ("frozen", "silent", "other-frozen"):
        task: Any = queue.store.app.repository.get(queue.tasks[step].id)
        assert not task.succeed(1, at(11), changed=True, log=["late"])
        assert not task.renew_lease(1, at(11), LEASE_S)
        assert not task.fail(
            1, at(11), error="late", retryable=True, log=[], policy=POLICY, unit_random=0
        )
        queue.store.save(task)
    assert queue.store.max_notification_id() == after
    again = queue.bulk(action="force_fail_stuck", older_than_s=0)
    assert (again["matched"], again["changed"]) == (0, 0)


def test_a_task_that_showed_life_after_the_view_proposed_it_is_left_alone(
    queue: Queue,
) -> None:
    """The view proposes, each task decides on its own fresh state: a heartbeat recorded
    between the two (by the pipeline, another writer) keeps ``silent`` out of it."""
    silent: Any = queue.store.app.repository.get(queue.tasks["silent"].id)
    frozen: Any = queue.store.app.repository.get(queue.tasks["frozen"].id)
    assert silent.renew_lease(1, at(10), LEASE_S)
    queue.store.save(silent)  # the view has not seen it
    before = queue.store.max_notification_id()
    answer = queue.bulk(action="force_fail_stuck", service_id="1001")
    assert (answer["matched"], queue.steps_of(answer["task_ids"])) == (2, ["frozen"])
    [event] = queue.events_since(before)
    assert isinstance(event, Task.Errored) and event.originator_id == frozen.id


def test_a_save_that_loses_a_race_is_decided_again_one_task_at_a_time(queue: Queue) -> None:
    class RacingStore(EventStore):
        """Before the first bulk save, another writer renews ``silent``'s lease."""

        raced = False

        def save(self, *aggregates: Any) -> None:
            if not self.raced and len(aggregates) > 1:
                self.raced = True
                rival: Any = queue.store.app.repository.get(queue.tasks["silent"].id)
                rival.renew_lease(1, at(10), LEASE_S)
                queue.store.save(rival)
            super().save(*aggregates)

    racing = RacingStore(queue.store.database_url)
    try:
        ledger = StoreLedger(racing, SEALER)
        app = create_app(
            ledger=ledger,
            views=SqlViewQueries(queue.db),
            credentials=credentials_for_tests(),
            clock=queue.clock,
        )
        with serving_app(app) as client:
            reply = client.post(
                "/v1/tasks/bulk", json={"action": "force_fail_stuck"}, headers=STAFF
            )
        assert reply.status_code == 202, reply.text
        answer = reply.json()
        assert racing.raced
        assert answer["matched"] == 3
        assert queue.steps_of(answer["task_ids"]) == ["frozen", "other-frozen"]
        assert queue.task_events("silent")[-1] == "LeaseRenewed"
    finally:
        racing.close()


def test_hostwright_replay_matches_after_deletes_and_force_fails(
    queue: Queue,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    queue.bulk(action="force_fail_stuck", older_than_s=0)
    queue.bulk(action="clean_completed", older_than_s=0, service_id="1001")
    queue.project()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOSTWRIGHT_DATABASE_URL", queue.store.database_url)
    assert cli_main(["replay"]) == 0
    assert "every view equals its rebuild" in capsys.readouterr().out
    with queue.db.transaction() as cur:  # a hidden row shown again is a difference
        cur.execute(
            "UPDATE hw_task_queue SET hidden = ? WHERE task_id = ?", (False, queue.id_of("done"))
        )
    assert cli_main(["replay"]) == 1
    assert "hidden" in capsys.readouterr().out


# --- refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"action": "delete_everything"},
        {"action": "delete_all"},
        {},
        {"action": "clean_completed", "older_than_s": -5},
        {"action": "clean_completed", "older_than_s": "3600"},
        {"action": "clean_completed", "older_than_s": 1e300},
        {"action": "force_fail_stuck", "older_than_s": False},
        {"action": "delete_failed", "service_id": "no such/id"},
        {"action": "delete_failed", "server_id": "WEB_1"},
        {"action": "delete_failed", "force": True},
    ],
)
def test_a_bad_bulk_body_is_422_and_records_nothing(queue: Queue, body: dict[str, Any]) -> None:
    before = queue.store.max_notification_id()
    reply = queue.client.post("/v1/tasks/bulk", json=body, headers=STAFF)
    assert_readable_error(reply, 422)
    assert queue.store.max_notification_id() == before


@pytest.mark.parametrize(
    "send",
    [
        {"content": b"delete_failed", "headers": {"Content-Type": "application/json"}},
        {"content": b"", "headers": {}},
        {"json": ["delete_failed"]},
        {"content": b"action=delete_failed", "headers": {"Content-Type": "text/plain"}},
    ],
)
def test_an_unreadable_bulk_body_is_400_and_records_nothing(
    queue: Queue, send: dict[str, Any]
) -> None:
    before = queue.store.max_notification_id()
    headers = {**STAFF, **send.pop("headers", {})}
    reply = queue.client.post("/v1/tasks/bulk", headers=headers, **send)
    assert_readable_error(reply, 400)
    assert queue.store.max_notification_id() == before


def test_bulk_needs_the_token(queue: Queue) -> None:
    before = queue.store.max_notification_id()
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        reply = queue.client.post(
            "/v1/tasks/bulk", json={"action": "clean_completed"}, headers=headers
        )
        assert_readable_error(reply, 401)
    assert queue.store.max_notification_id() == before


def test_only_post_reaches_bulk(queue: Queue) -> None:
    reply: httpx.Response = queue.client.get("/v1/tasks/bulk", headers=STAFF)
    assert_readable_error(reply, 404)
