"""The Task aggregate's attempts, leases, retries and the superseded-attempt rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.errors import Conflict, InvalidInput
from domain.retry_policy import RetryPolicy
from domain.task import Task, task_uuid

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
POLICY = RetryPolicy(max_attempts=3, initial_backoff_s=10, max_backoff_s=25, jitter=0.2)


def planned() -> Task:
    return Task.plan(
        service_id="42",
        run=1,
        step="web.user",
        role="web",
        action="ensure_user",
        server_id="web1",
        params={"user": "shop"},
        depends_on=["web.package"],
        now=T0,
    )


def names(task: Task) -> list[str]:
    return [type(e).__name__ for e in task.collect_events()]


def test_planning_the_same_step_of_the_same_run_gives_the_same_task() -> None:
    assert planned().id == task_uuid("42", 1, "web.user") == planned().id
    assert task_uuid("42", 2, "web.user") != task_uuid("42", 1, "web.user")


def test_success_on_the_first_attempt() -> None:
    task = planned()
    assert task.dispatch(T0, lease_s=30) == 1
    assert task.succeed(
        1, T0 + timedelta(seconds=2), changed=True, log=["ok"], outputs={"dkim_txt": "v=DKIM1"}
    )
    assert (task.state, task.outputs) == ("succeeded", {"dkim_txt": "v=DKIM1"})
    assert names(task) == ["Planned", "Dispatched", "Succeeded"]


def test_retryable_failures_back_off_then_error_after_max_attempts() -> None:
    task = planned()
    now = T0
    delays = []
    for attempt in (1, 2):
        task.dispatch(now, lease_s=30)
        task.fail(
            attempt,
            now,
            error="connect refused",
            retryable=True,
            log=[],
            policy=POLICY,
            unit_random=0.5,
        )
        assert task.state == "retry_scheduled" and task.due_at is not None
        delays.append((task.due_at - now).total_seconds())
        assert not task.is_due(task.due_at - timedelta(seconds=1))
        now = task.due_at
        assert task.is_due(now)
    assert delays == [10.0, 20.0]
    task.dispatch(now, lease_s=30)
    task.fail(
        3, now, error="connect refused", retryable=True, log=[], policy=POLICY, unit_random=0.5
    )
    assert task.state == "error"
    assert task.error == "gave up after 3 attempts: connect refused"


def test_jitter_stays_within_its_bounds_and_the_cap_holds() -> None:
    assert POLICY.delay(1, 0.0) == pytest.approx(8.0)
    assert POLICY.delay(1, 0.999999) == pytest.approx(12.0, rel=1e-4)
    assert POLICY.base_delay(5) == 25.0


def test_a_permanent_failure_is_not_retried() -> None:
    task = planned()
    task.dispatch(T0, lease_s=30)
    task.fail(
        1, T0, error="exit 10: forbidden", retryable=False, log=[], policy=POLICY, unit_random=0.5
    )
    assert (task.state, task.error) == ("error", "exit 10: forbidden")


def test_a_result_for_a_superseded_attempt_changes_nothing() -> None:
    task = planned()
    task.dispatch(T0, lease_s=30)
    assert task.expire_lease(T0 + timedelta(seconds=31), POLICY, 0.5)
    task.collect_events()
    assert not task.succeed(1, T0 + timedelta(seconds=40), changed=True, log=[])
    assert task.collect_events() == []
    task.dispatch(task.due_at or T0, lease_s=30)
    assert not task.succeed(1, T0 + timedelta(seconds=60), changed=True, log=[])
    assert task.succeed(2, T0 + timedelta(seconds=60), changed=True, log=[])


def test_a_lease_renewed_in_time_does_not_expire() -> None:
    task = planned()
    task.dispatch(T0, lease_s=30)
    assert task.renew_lease(1, T0 + timedelta(seconds=20), lease_s=30)
    assert not task.expire_lease(T0 + timedelta(seconds=45), POLICY, 0.5)
    assert task.expire_lease(T0 + timedelta(seconds=51), POLICY, 0.5)


def test_heartbeats_extend_the_lease_and_are_recorded_once_per_half_lease() -> None:
    task = planned()
    task.dispatch(T0, lease_s=30)
    task.collect_events()
    beats = [T0 + timedelta(seconds=s) for s in range(2, 62, 2)]  # every 2 s for a minute
    recorded = [task.heartbeat(1, at, lease_s=30) for at in beats]
    assert recorded.count(True) == 3  # at 16, 32 and 48 s: the recorded lease half gone
    assert names(task) == ["LeaseRenewed"] * 3
    assert task.lease_expires_at == T0 + timedelta(seconds=90)  # the last beat's, in memory
    assert not task.expire_lease(T0 + timedelta(seconds=89), POLICY, 0.5)
    assert not task.heartbeat(2, T0 + timedelta(seconds=62), lease_s=30)  # not its attempt


def test_force_fail_then_the_late_result_is_ignored() -> None:
    task = planned()
    task.dispatch(T0, lease_s=30)
    assert task.force_fail(T0 + timedelta(minutes=5), actor="admin")
    assert task.state == "error"
    assert not task.succeed(1, T0 + timedelta(minutes=6), changed=True, log=[])


def test_try_again_starts_a_fresh_round_of_attempts() -> None:
    task = planned()
    for attempt in (1, 2, 3):
        task.dispatch(task.due_at or T0, lease_s=30)
        task.fail(
            attempt,
            task.due_at or T0,
            error="down",
            retryable=True,
            log=[],
            policy=POLICY,
            unit_random=0.5,
        )
    assert task.state == "error"
    assert task.retry(T0, actor="admin")
    assert task.dispatch(T0, lease_s=30) == 4
    task.fail(4, T0, error="down", retryable=True, log=[], policy=POLICY, unit_random=0.5)
    assert task.state == "retry_scheduled"


def test_cancel_and_the_states_that_refuse_things() -> None:
    task = planned()
    assert task.cancel(T0, actor="admin")
    assert not task.cancel(T0, actor="admin")
    with pytest.raises(Conflict):
        task.dispatch(T0, lease_s=30)


@pytest.mark.parametrize(
    "fields",
    [{"max_attempts": 0}, {"initial_backoff_s": -1}, {"max_backoff_s": 1}, {"jitter": 1.5}],
)
def test_a_nonsensical_policy_is_refused(fields: dict[str, float]) -> None:
    with pytest.raises(InvalidInput):
        RetryPolicy(**fields)  # type: ignore[arg-type]
