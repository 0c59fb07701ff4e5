"""The Task aggregate's hide and force-fail rules, and the bulk command: its parsing (the
validation edge of ``POST /v1/tasks/bulk``) and its decision on one task."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from domain.errors import InvalidInput
from domain.retry_policy import RetryPolicy
from domain.task import Task
from domain.task_bulk import BULK_ACTIONS, BulkDefaults, ChangeTasksInBulk, parse_bulk

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
POLICY = RetryPolicy(max_attempts=5, initial_backoff_s=10, max_backoff_s=60, jitter=0)
LEASE_S = 30.0
DEFAULTS = BulkDefaults(clean_completed_after_s=3600, stuck_after_s=60)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def planned(service_id: str = "42", server_id: str = "web1") -> Task:
    task = Task.plan(
        service_id=service_id,
        run=1,
        step="web.user",
        role="web",
        action="ensure_user",
        server_id=server_id,
        params={},
        depends_on=[],
        now=T0,
    )
    task.collect_events()
    return task


def names(task: Task) -> list[str]:
    return [type(e).__name__ for e in task.collect_events()]


def in_state(state: str) -> Task:
    """A task driven to ``state`` by t=20 (its lease, when dispatched, runs to 30)."""
    task = planned()
    if state == "planned":
        return task
    if state == "cancelled":
        task.cancel(at(20), "whmcs")
        task.collect_events()
        return task
    task.dispatch(at(0), LEASE_S)
    if state == "succeeded":
        task.succeed(1, at(20), changed=True, log=[])
    elif state in ("error", "retry_scheduled"):
        task.fail(
            1,
            at(20),
            error="exit 15",
            retryable=state == "retry_scheduled",
            log=[],
            policy=POLICY,
            unit_random=0,
        )
    task.collect_events()
    return task


def late_results(task: Task, attempts: range) -> list[bool]:
    """What a handler's late reports of ``attempts`` would record (True = recorded)."""
    recorded = []
    for attempt in attempts:
        recorded.append(task.succeed(attempt, at(999), changed=True, log=["late"]))
        recorded.append(
            task.fail(
                attempt,
                at(999),
                error="late",
                retryable=True,
                log=[],
                policy=POLICY,
                unit_random=0,
            )
        )
        recorded.append(task.renew_lease(attempt, at(999), LEASE_S))
    return recorded


# --- hide -----------------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["succeeded", "error", "cancelled"])
def test_a_finished_task_can_be_hidden_once(state: str) -> None:
    task = in_state(state)
    assert task.hide(at(50), "whmcs", "clean_completed")
    [event] = task.collect_events()
    assert isinstance(event, Task.Hidden)
    assert (event.actor, event.reason, event.timestamp) == ("whmcs", "clean_completed", at(50))
    assert (task.hidden, task.state) == (True, state)
    assert not task.hide(at(51), "whmcs", "clean_completed")
    assert names(task) == []


@pytest.mark.parametrize("state", ["planned", "dispatched", "retry_scheduled"])
def test_an_open_task_cannot_be_hidden(state: str) -> None:
    task = in_state(state)
    assert not task.hide(at(50), "whmcs", "clean_completed")
    assert (names(task), task.hidden) == ([], False)


def test_a_hidden_task_is_not_tried_again() -> None:
    task = in_state("error")
    task.hide(at(50), "whmcs", "delete_failed")
    task.collect_events()
    assert not task.retry(at(51), "whmcs")
    assert names(task) == []


# --- force-fail -----------------------------------------------------------------------------


def test_force_failing_a_retry_after_a_lease_expiry_ignores_every_late_result() -> None:
    task = planned()
    task.dispatch(at(0), LEASE_S)
    assert task.expire_lease(at(31), POLICY, 0)  # attempt 1's handler froze
    task.dispatch(task.due_at or at(0), LEASE_S)
    assert task.expire_lease(at(80), POLICY, 0)  # attempt 2 went to the same frozen handler
    assert (task.state, task.attempt, task.stuck_since) == ("retry_scheduled", 2, at(30))
    task.collect_events()
    assert task.force_fail(at(100), "whmcs")
    [event] = task.collect_events()
    assert isinstance(event, Task.Errored)
    assert event.error == "force-failed by whmcs while attempt 2 was stuck"
    assert (task.state, task.stuck_at(at(100)), task.due_at) == ("error", None, None)
    assert task.finished_at == at(100)
    # the frozen handler wakes up: attempt 2's result, or attempt 1's, changes nothing
    assert late_results(task, range(1, 3)) == [False] * 6
    assert names(task) == []
    assert not task.is_due(at(10_000))


def test_force_failing_an_attempt_in_flight_ignores_its_late_result() -> None:
    task = planned()
    task.dispatch(at(0), LEASE_S)
    task.expire_lease(at(31), POLICY, 0)
    task.dispatch(at(45), LEASE_S)
    task.collect_events()
    assert task.force_fail(at(60), "whmcs")
    assert names(task) == ["Errored"]
    assert late_results(task, range(1, 3)) == [False] * 6
    assert names(task) == []


@pytest.mark.parametrize("state", ["planned", "succeeded", "error", "cancelled"])
def test_a_task_with_no_attempt_out_cannot_be_force_failed(state: str) -> None:
    task = in_state(state)
    assert not task.force_fail(at(50), "whmcs")
    assert names(task) == []


def test_a_retry_after_an_ordinary_failure_is_not_stuck() -> None:
    task = in_state("retry_scheduled")
    assert task.stuck_at(at(10_000)) is None
    assert not task.force_fail(at(50), "whmcs")
    assert names(task) == []


def test_a_renewed_lease_is_a_sign_of_life() -> None:
    task = planned()
    task.dispatch(at(0), LEASE_S)
    task.expire_lease(at(31), POLICY, 0)
    task.dispatch(at(45), LEASE_S)
    assert task.stuck_at(at(46)) == at(30)
    assert task.renew_lease(2, at(50), LEASE_S)
    assert task.stuck_at(at(51)) is None
    assert task.stuck_at(at(80)) == at(80)  # the renewed lease ran out in turn


# --- the bulk command -----------------------------------------------------------------------


def parse(body: Any) -> ChangeTasksInBulk:
    return parse_bulk(body, now=at(7200), actor="whmcs", defaults=DEFAULTS)


def test_each_action_has_its_default_age() -> None:
    ages = {action: parse({"action": action}).older_than_s for action in BULK_ACTIONS}
    assert ages == {
        "delete_succeeded": 0,
        "delete_failed": 0,
        "delete_cancelled": 0,
        "clean_completed": 3600,
        "force_fail_stuck": 60,
    }
    command = parse({"action": "clean_completed", "older_than_s": 5, "service_id": 42})
    assert (command.older_than_s, command.cutoff, command.service_id) == (5.0, at(7195), "42")
    assert command.states == ("succeeded", "error", "cancelled")
    command = parse({"action": "force_fail_stuck", "server_id": "web1"})
    assert (command.forces_failure, command.states, command.server_id) == (True, (), "web1")
    assert parse({"action": "delete_failed", "older_than_s": 0.5}).states == ("error",)


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        "delete_failed",
        {},
        {"action": "delete_everything"},
        {"action": "DELETE_FAILED"},
        {"action": None},
        {"action": "delete_failed", "older_than_s": -1},
        {"action": "delete_failed", "older_than_s": "60"},
        {"action": "delete_failed", "older_than_s": True},
        {"action": "delete_failed", "older_than_s": None},
        {"action": "delete_failed", "older_than_s": float("nan")},
        {"action": "delete_failed", "older_than_s": float("inf")},
        {"action": "delete_failed", "older_than_s": 10**12},
        {"action": "delete_failed", "service_id": "../1"},
        {"action": "delete_failed", "service_id": -1},
        {"action": "delete_failed", "server_id": "Web 1"},
        {"action": "delete_failed", "state": "error"},
    ],
)
def test_a_bad_body_is_refused(body: Any) -> None:
    with pytest.raises(InvalidInput):
        parse(body)


def test_the_command_hides_only_tasks_finished_long_enough_ago_in_its_states() -> None:
    command = parse({"action": "delete_succeeded", "older_than_s": 7180})  # cutoff t=20
    assert command.decide(in_state("succeeded"))
    assert not command.decide(in_state("error"))
    assert not command.decide(in_state("dispatched"))
    late = planned()
    late.dispatch(at(0), LEASE_S)
    late.succeed(1, at(21), changed=False, log=[])
    assert not command.decide(late)
    hidden = in_state("succeeded")
    hidden.hide(at(30), "whmcs", "delete_succeeded")
    hidden.collect_events()
    assert not command.decide(hidden)
    assert names(hidden) == []


def test_the_command_keeps_to_its_service_and_server() -> None:
    body = {"action": "clean_completed", "older_than_s": 0, "service_id": "42"}
    assert parse(body).decide(in_state("error"))
    assert not parse({**body, "service_id": "43"}).decide(in_state("error"))
    assert parse({**body, "server_id": "web1"}).decide(in_state("cancelled"))
    assert not parse({**body, "server_id": "web2"}).decide(in_state("cancelled"))


def test_the_command_force_fails_only_tasks_stuck_long_enough() -> None:
    def stuck_since_30() -> Task:
        task = planned()
        task.dispatch(at(0), LEASE_S)
        task.expire_lease(at(31), POLICY, 0)
        task.collect_events()
        return task

    now = at(90)
    enough = parse_bulk({"action": "force_fail_stuck"}, now=now, actor="whmcs", defaults=DEFAULTS)
    assert enough.decide(stuck_since_30())  # stuck for 60 s
    later = parse_bulk(
        {"action": "force_fail_stuck", "older_than_s": 61},
        now=now,
        actor="whmcs",
        defaults=DEFAULTS,
    )
    task = stuck_since_30()
    assert not later.decide(task)
    assert names(task) == []
    in_flight = planned()
    in_flight.dispatch(at(50), LEASE_S)  # lease until 80: stuck for 10 s only
    assert not enough.decide(in_flight)
    assert parse_bulk(
        {"action": "force_fail_stuck", "older_than_s": 10},
        now=now,
        actor="whmcs",
        defaults=DEFAULTS,
    ).decide(in_flight)
    assert in_flight.state == "error"
