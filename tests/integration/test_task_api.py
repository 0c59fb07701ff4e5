"""The timeline and task routes over a real event store (SQLite file), the real StoreLedger and
the real SqlViewQueries, the views built by the projection runner from the store.

Retry and cancel must record exactly one Task event; every refusal must be a 4xx JSON error
and record nothing (the store's notification id is compared before and after).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from domain.retry_policy import RetryPolicy
from domain.service import service_uuid
from domain.task import Task
from gateway.app import create_app
from ops.adapters.command_ledger import StoreLedger
from ops.adapters.sealing import PasswordSealer
from ops.store.database import Database
from ops.store.event_store import EventStore
from ops.views.view_queries import SqlViewQueries
from tests.fakes.clock import Clock
from tests.support.gateway import (
    AUTH,
    STAFF,
    START,
    assert_readable_error,
    credentials_for_tests,
    order,
    serving,
)
from tests.support.task_routes import TaskRoutes

POLICY = RetryPolicy(max_attempts=3, initial_backoff_s=10, max_backoff_s=60, jitter=0)
STEP_KEYS = {
    "task_id",
    "role",
    "action",
    "server_id",
    "state",
    "attempts",
    "started_at",
    "finished_at",
    "duration_ms",
    "error",
}


class Gateway(TaskRoutes):
    def last_events(self, since: int) -> list[Any]:
        return [self.store.decode(n) for n in self.store.notifications(since, 100)]


def plan(step: str, role: str, server_id: str) -> Task:
    return Task.plan(
        service_id="1001",
        run=1,
        step=step,
        role=role,
        action=f"create {step}",
        server_id=server_id,
        params={},
        depends_on=[],
        now=START,
    )


@pytest.fixture
def gateway(sqlite_url: str) -> Iterator[Gateway]:
    """Service 1001 ordered through the API with a run of four tasks: web-user succeeded
    after a retry, mail-user in error, dns-zone dispatched, ssl-web still planned."""
    store, db, clock = EventStore(sqlite_url), Database(sqlite_url), Clock(START)
    app = create_app(
        ledger=StoreLedger(store, PasswordSealer("a-secret-key-only-for-tests")),
        views=SqlViewQueries(db),
        credentials=credentials_for_tests(),
        clock=clock,
    )
    with serving(app) as client:
        assert client.post("/v1/services", json=order(), headers=AUTH).status_code == 202
        tasks = {
            "web-user": plan("web-user", "web", "web-1"),
            "mail-user": plan("mail-user", "mail", "mail-1"),
            "dns-zone": plan("dns-zone", "dns", "dns-1"),
            "ssl-web": plan("ssl-web", "ssl", "web-1"),
        }
        web, mail, dns = tasks["web-user"], tasks["mail-user"], tasks["dns-zone"]
        web.dispatch(clock.advance(1), 30)
        web.fail(
            1,
            clock.advance(1),
            error="exit 15",
            retryable=True,
            log=["a"],
            policy=POLICY,
            unit_random=0,
        )
        web.dispatch(clock.advance(1), 30)
        web.succeed(2, clock.advance(1), changed=True, log=["$ v-add-user shop1", "ok"])
        mail.dispatch(clock.now, 30)
        mail.fail(
            1,
            clock.advance(1),
            error="exit 8: limit",
            retryable=False,
            log=[],
            policy=POLICY,
            unit_random=0,
        )
        dns.dispatch(clock.now, 30)
        store.save(*tasks.values())
        setup = Gateway(client, store, db, clock, tasks)
        setup.project()
        yield setup
    store.close()
    db.close()


# --- reads ----------------------------------------------------------------------------------


def test_the_timeline_lists_the_runs_steps_in_the_contracts_shape(gateway: Gateway) -> None:
    reply = gateway.client.get("/v1/services/1001/timeline", headers=AUTH)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["service_id"] == "1001"
    steps = body["steps"]
    assert all(set(step) == STEP_KEYS for step in steps)
    assert [(s["task_id"], s["role"], s["server_id"], s["state"]) for s in steps] == [
        (gateway.id_of("web-user"), "web", "web-1", "succeeded"),
        (gateway.id_of("mail-user"), "mail", "mail-1", "error"),
        (gateway.id_of("dns-zone"), "dns", "dns-1", "dispatched"),
        (gateway.id_of("ssl-web"), "ssl", "web-1", "planned"),
    ]
    web, mail = steps[0], steps[1]
    assert (web["attempts"], web["duration_ms"], web["action"]) == (2, 180_000, "create web-user")
    assert web["started_at"] == "2026-03-01T09:01:00.000000+00:00"
    assert (mail["error"], mail["duration_ms"]) == ("exit 8: limit", 60_000)


def test_the_timeline_of_an_unknown_service_is_404(gateway: Gateway) -> None:
    assert_readable_error(gateway.client.get("/v1/services/999/timeline", headers=AUTH), 404)


def test_an_ordered_service_with_no_run_yet_has_an_empty_timeline(gateway: Gateway) -> None:
    reply = gateway.client.post(
        "/v1/services",
        json=order(service_id=7, domain="seven.example.com", username="seven"),
        headers=AUTH,
    )
    assert reply.status_code == 202, reply.text
    gateway.project()
    reply = gateway.client.get("/v1/services/7/timeline", headers=AUTH)
    assert (reply.status_code, reply.json()) == (200, {"service_id": "7", "steps": []})


def test_tasks_are_listed_and_filtered(gateway: Gateway) -> None:
    def steps(**params: str) -> list[str]:
        reply = gateway.client.get("/v1/tasks", params=params, headers=STAFF)
        assert reply.status_code == 200, reply.text
        return [task["step"] for task in reply.json()["tasks"]]

    assert steps() == ["web-user", "mail-user", "dns-zone", "ssl-web"]
    assert steps(state="error") == ["mail-user"]
    assert steps(state="planned") == ["ssl-web"]
    assert steps(server_id="web-1") == ["web-user", "ssl-web"]
    assert steps(service_id="1001", server_id="web-1", state="succeeded") == ["web-user"]
    assert steps(service_id="999") == []
    assert steps(state="") == steps()
    assert steps(limit="1") == ["ssl-web"]
    task = gateway.client.get("/v1/tasks", params={"state": "error"}, headers=STAFF).json()
    row = task["tasks"][0]
    assert "log" not in row and "hidden" not in row
    assert (row["task_id"], row["service_id"], row["attempts"]) == (
        gateway.id_of("mail-user"),
        "1001",
        1,
    )


@pytest.mark.parametrize(
    "params", [{"state": "done"}, {"state": "ERROR"}, {"limit": "0"}, {"limit": "x"}]
)
def test_a_bad_task_filter_is_400(gateway: Gateway, params: dict[str, str]) -> None:
    assert_readable_error(gateway.client.get("/v1/tasks", params=params, headers=STAFF), 400)


def test_a_task_comes_with_its_log(gateway: Gateway) -> None:
    reply = gateway.client.get(f"/v1/tasks/{gateway.id_of('web-user')}", headers=STAFF)
    assert reply.status_code == 200, reply.text
    task = reply.json()
    assert (task["state"], task["attempts"], task["step"]) == ("succeeded", 2, "web-user")
    assert task["log"] == [
        "--- attempt 1 on web-1 at 2026-03-01T09:01:00.000000+00:00 ---",
        "a",
        "attempt 1 failed (retryable): exit 15",
        "--- attempt 2 on web-1 at 2026-03-01T09:03:00.000000+00:00 ---",
        "$ v-add-user shop1",
        "ok",
        "attempt 2 succeeded",
    ]
    upper = gateway.client.get(f"/v1/tasks/{gateway.id_of('web-user').upper()}", headers=STAFF)
    assert upper.json() == task


@pytest.mark.parametrize(
    "task_id",
    ["00000000-0000-0000-0000-000000000000", "not-a-uuid", "1001", str(service_uuid("1001"))],
)
def test_an_unknown_task_is_404(gateway: Gateway, task_id: str) -> None:
    assert_readable_error(gateway.client.get(f"/v1/tasks/{task_id}", headers=STAFF), 404)


# --- retry and cancel -----------------------------------------------------------------------


def test_retrying_an_errored_task_records_task_retried(gateway: Gateway) -> None:
    before = gateway.store.max_notification_id()
    now = gateway.clock.advance(5)
    reply = gateway.client.post(f"/v1/tasks/{gateway.id_of('mail-user')}/retry", headers=STAFF)
    assert (reply.status_code, reply.json()) == (202, {"result": "success"})
    [event] = gateway.last_events(before)
    assert isinstance(event, Task.Retried)
    assert (str(event.originator_id), event.actor, event.timestamp) == (
        gateway.id_of("mail-user"),
        "staff",
        now,
    )
    gateway.project()
    task = gateway.client.get(f"/v1/tasks/{gateway.id_of('mail-user')}", headers=STAFF).json()
    assert (task["state"], task["error"]) == ("planned", None)


def test_cancelling_open_tasks_records_task_cancelled(gateway: Gateway) -> None:
    for step in ("ssl-web", "dns-zone"):
        before = gateway.store.max_notification_id()
        reply = gateway.client.post(f"/v1/tasks/{gateway.id_of(step)}/cancel", headers=STAFF)
        assert (reply.status_code, reply.json()) == (202, {"result": "success"}), step
        [event] = gateway.last_events(before)
        assert isinstance(event, Task.Cancelled) and event.actor == "staff"
    gateway.project()
    reply = gateway.client.get("/v1/tasks", params={"state": "cancelled"}, headers=STAFF)
    assert [t["step"] for t in reply.json()["tasks"]] == ["dns-zone", "ssl-web"]
    # a cancelled task can be tried again
    reply = gateway.client.post(f"/v1/tasks/{gateway.id_of('ssl-web')}/retry", headers=STAFF)
    assert reply.status_code == 202


CONFLICTS = [
    ("web-user", "retry"),  # succeeded
    ("dns-zone", "retry"),  # dispatched
    ("ssl-web", "retry"),  # planned
    ("web-user", "cancel"),  # succeeded
    ("mail-user", "cancel"),  # error
]


@pytest.mark.parametrize(("step", "action"), CONFLICTS)
def test_a_refused_retry_or_cancel_is_409_and_records_nothing(
    gateway: Gateway, step: str, action: str
) -> None:
    before = gateway.store.max_notification_id()
    reply = gateway.client.post(f"/v1/tasks/{gateway.id_of(step)}/{action}", headers=STAFF)
    assert_readable_error(reply, 409)
    assert gateway.store.max_notification_id() == before


def test_cancelling_twice_is_409_the_second_time(gateway: Gateway) -> None:
    path = f"/v1/tasks/{gateway.id_of('ssl-web')}/cancel"
    assert gateway.client.post(path, headers=STAFF).status_code == 202
    before = gateway.store.max_notification_id()
    assert_readable_error(gateway.client.post(path, headers=STAFF), 409)
    assert gateway.store.max_notification_id() == before


@pytest.mark.parametrize(
    "path",
    [
        "/v1/tasks/00000000-0000-0000-0000-000000000000/retry",
        "/v1/tasks/not-a-uuid/cancel",
        "/v1/tasks/%2E%2E/cancel",
        f"/v1/tasks/{service_uuid('1001')}/cancel",
        "/v1/tasks/{web}/restart",
    ],
)
def test_an_unknown_task_or_action_is_404_and_records_nothing(gateway: Gateway, path: str) -> None:
    before = gateway.store.max_notification_id()
    reply = gateway.client.post(path.format(web=gateway.id_of("web-user")), headers=STAFF)
    assert_readable_error(reply, 404)
    assert gateway.store.max_notification_id() == before


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/services/1001/timeline"),
        ("GET", "/v1/tasks"),
        ("GET", "/v1/tasks/{mail}"),
        ("POST", "/v1/tasks/{mail}/retry"),
        ("POST", "/v1/tasks/{ssl}/cancel"),
    ],
)
def test_every_task_route_needs_the_token(gateway: Gateway, method: str, path: str) -> None:
    before = gateway.store.max_notification_id()
    url = path.format(mail=gateway.id_of("mail-user"), ssl=gateway.id_of("ssl-web"))
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        reply = gateway.client.request(method, url, headers=headers)
        assert_readable_error(reply, 401)
    assert gateway.store.max_notification_id() == before
