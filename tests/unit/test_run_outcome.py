"""What a service records when a run ends, per kind, and that settling twice records once;
which new run waits for the open one, and when a run has ended."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.retry_policy import RetryPolicy
from domain.run_outcome import (
    RUN_STARTERS,
    StepOutcome,
    builds_first,
    may_start,
    pending_kind,
    record_outcome,
    step_outcomes,
    waits_for,
)
from domain.service import RUN_STARTING_EVENTS, Service
from domain.task import Task
from tests.support.services import ask, ordered

NOW = datetime(2026, 11, 23, 13, 0, tzinfo=UTC)
OK = [StepOutcome("web.user", "web1", "ensure_user", "succeeded")]
FAILED = [
    StepOutcome("dns.zone@dns2", "dns2", "remove_dns_zone", "error", "exit 15: connect"),
    StepOutcome("dns.user@dns2", "dns2", "remove_user", "blocked", "not attempted"),
    StepOutcome("web.user", "web1", "remove_user", "succeeded"),
]


def settle(service: Service, kind: str, steps: list[StepOutcome]) -> list[str]:
    """Records the outcome twice, as a restarted pipeline would; returns the events."""
    record_outcome(service, kind, steps, NOW)
    assert not record_outcome(service, kind, steps, NOW + timedelta(seconds=1))
    return [type(e).__name__ for e in service.collect_events()]


def active() -> Service:
    service = ordered()
    record_outcome(service, "deploy", OK, NOW)
    service.collect_events()
    return service


@pytest.mark.parametrize(
    ("action", "kind", "steps", "events", "status"),
    [
        ("suspend", "suspend", OK, ["Suspended"], "suspended"),
        ("suspend", "suspend", FAILED, ["OperationFailed"], "active"),
        ("change-plan", "change_plan", OK, ["PlanApplied"], "active"),
        ("terminate", "terminate", OK, ["Terminated"], "terminated"),
        ("terminate", "terminate", FAILED, ["OperationFailed"], "terminating"),
    ],
)
def test_each_kind_records_its_outcome_once(
    action: str, kind: str, steps: list[StepOutcome], events: list[str], status: str
) -> None:
    service = active()
    body = {"plan": {"package": "bigger", "disk_mb": 5000}} if action == "change-plan" else {}
    ask(service, action, body)
    assert settle(service, kind, steps) == events
    assert service.status == status


def test_a_deploy_records_active_or_failed_with_the_failed_steps() -> None:
    service = ordered()
    assert settle(service, "deploy", FAILED) == ["DeployFailed"]
    assert service.status == "deploy_failed"
    assert settle(service, "deploy", OK) == ["Activated"]  # after a Try again


def test_a_forced_terminate_ends_with_the_leftovers_listed() -> None:
    service = active()
    ask(service, "terminate", {"force": True})
    assert settle(service, "terminate", FAILED) == ["Terminated"]
    assert service.status == "terminated"
    terminated = ordered_and_forced_terminated()
    assert terminated.leftovers == [
        {
            "server_id": "dns2",
            "step": "dns.zone@dns2",
            "action": "remove_dns_zone",
            "error": "exit 15: connect",
        },
        {
            "server_id": "dns2",
            "step": "dns.user@dns2",
            "action": "remove_user",
            "error": "not attempted",
        },
    ]


def ordered_and_forced_terminated() -> Service.Terminated:
    service = active()
    ask(service, "terminate", {"force": True})
    record_outcome(service, "terminate", FAILED, NOW)
    (event,) = service.collect_events()
    assert isinstance(event, Service.Terminated)
    return event


def test_an_unsuspend_brings_it_back_to_active() -> None:
    service = active()
    ask(service, "suspend")
    settle(service, "suspend", OK)
    ask(service, "unsuspend")
    assert settle(service, "unsuspend", OK) == ["Unsuspended"]
    assert service.status == "active"


def test_a_plan_change_during_a_deploy_is_applied_with_it() -> None:
    service = ordered()
    ask(service, "change-plan", {"plan": {"package": "bigger", "disk_mb": 5000}})
    assert settle(service, "deploy", OK) == ["Activated", "PlanApplied"]


def test_a_suspend_asked_for_during_the_build_waits_for_it_and_keeps_its_turn() -> None:
    service = ordered()
    ask(service, "suspend")
    assert may_start(service, "deploy"), "the build is not cut out by the suspend"
    assert builds_first(service, "suspend") and builds_first(service, "change_plan")
    assert not builds_first(service, "terminate")
    assert settle(service, "deploy", OK) == ["Activated"]
    assert (service.status, pending_kind(service)) == ("active", "suspend")
    assert settle(service, "suspend", OK) == ["Suspended"]


def test_a_build_that_fails_with_a_suspend_queued_says_so_and_keeps_the_suspend() -> None:
    service = ordered()
    ask(service, "suspend")
    assert settle(service, "deploy", FAILED) == ["DeployFailed"]
    assert (service.status, pending_kind(service)) == ("deploy_failed", "suspend")
    assert settle(service, "suspend", FAILED) == ["OperationFailed"]
    assert (service.status, service.pending) == ("deploy_failed", None)


def test_the_service_names_the_request_each_run_starts_from() -> None:
    assert {f"Service.{name}" for name in RUN_STARTING_EVENTS} == set(RUN_STARTERS)
    service = ordered()
    assert service.last_request == ("Ordered", 1)
    ask(service, "suspend")
    ask(service, "sync-usage")
    assert service.last_request == ("SuspendRequested", 2)


def test_what_may_start() -> None:
    service = active()
    ask(service, "suspend")
    assert not may_start(service, "deploy")
    assert may_start(service, "unsuspend") and may_start(service, "terminate")
    ask(service, "terminate")
    assert not may_start(service, "unsuspend")
    assert may_start(service, "terminate")
    settle(service, "terminate", OK)
    assert not may_start(service, "terminate")


def test_which_new_run_waits_for_the_open_one() -> None:
    for kind in ("terminate", "deploy", "reset"):
        assert not waits_for(kind, "suspend")
    assert not waits_for("suspend", "unsuspend") and not waits_for("unsuspend", "suspend")
    assert not waits_for("suspend", "suspend")
    assert waits_for("suspend", "deploy") and waits_for("change_plan", "suspend")


def step(name: str, depends_on: list[str] | None = None) -> Task:
    return Task.plan(
        service_id="42",
        run=1,
        step=name,
        role="web",
        action="ensure_" + name,
        server_id="web1",
        params={},
        depends_on=depends_on or [],
        now=NOW,
        operation="suspend",
    )


def test_step_outcomes_wait_for_every_task_and_list_the_blocked_ones() -> None:
    first, second, third = step("a"), step("b", ["a"]), step("c", ["b"])
    tasks = {"a": first, "b": second, "c": third}
    assert step_outcomes("suspend", tasks) is None
    first.dispatch(NOW, lease_s=30)
    first.fail(1, NOW, error="exit 1", retryable=False, log=[], policy=RetryPolicy(), unit_random=0)
    outcomes = step_outcomes("suspend", tasks)
    assert outcomes is not None
    assert [(o.step, o.state, o.error) for o in outcomes] == [
        ("a", "error", "exit 1"),
        ("b", "blocked", "not attempted: it depends on a"),
        ("c", "blocked", "not attempted: it depends on b"),
    ]


def test_a_deploy_has_failed_as_soon_as_one_step_is_in_error() -> None:
    first, other = step("a"), step("b")
    first.dispatch(NOW, lease_s=30)
    first.fail(1, NOW, error="exit 1", retryable=False, log=[], policy=RetryPolicy(), unit_random=0)
    assert step_outcomes("suspend", {"a": first, "b": other}) is None
    outcomes = step_outcomes("deploy", {"a": first, "b": other})
    assert outcomes is not None
    assert [o.state for o in outcomes] == ["error", "planned"]
