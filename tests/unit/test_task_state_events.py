"""``STATE_EVENTS`` and ``is_current_attempt`` say what the whole Task says of its attempts.

A step gate answers "is this attempt current?" from the latest of a task's state-setting
events alone (one row of the store). Here every kind of Task event is produced by the
aggregate's own methods, and after each one the answer from the latest state event must equal
``task.state == "dispatched" and task.attempt == a`` for every attempt number.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from domain.retry_policy import RetryPolicy
from domain.task import STATE_EVENTS, Task, is_current_attempt

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
POLICY = RetryPolicy(max_attempts=2, initial_backoff_s=10, max_backoff_s=25, jitter=0.0)
LEASE_S = 30.0


def all_task_event_classes() -> set[type[Any]]:
    return {
        cls
        for cls in vars(Task).values()
        if isinstance(cls, type)
        and issubclass(cls, (Task.Event, Task.Created))
        and cls not in (Task.Event, Task.Created)
    }


def later(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# each a step of a task's life; together they make every kind of Task event
SCENARIO: list[Callable[[Task], Any]] = [
    lambda t: t.dispatch(later(1), LEASE_S),
    lambda t: t.heartbeat(1, later(20), LEASE_S),  # past half the lease: recorded
    lambda t: t.fail(1, later(21), error="x", retryable=True, log=[], policy=POLICY, unit_random=0),
    lambda t: t.dispatch(later(40), LEASE_S),
    lambda t: t.expire_lease(later(80), POLICY, 0),  # the last try: error
    lambda t: t.retry(later(90), "staff"),
    lambda t: t.reseal_password(later(91), "sealed-2", "k2"),
    lambda t: t.dispatch(later(92), LEASE_S),
    lambda t: t.force_fail(later(200), "staff"),
    lambda t: t.retry(later(201), "staff"),
    lambda t: t.dispatch(later(202), LEASE_S),
    lambda t: t.cancel(later(203), "staff"),  # while attempt 4 runs
    lambda t: t.retry(later(204), "staff"),
    lambda t: t.dispatch(later(205), LEASE_S),
    lambda t: t.succeed(5, later(206), changed=True, log=[]),
    lambda t: t.hide(later(207), "staff", "clean-up"),
]


def test_the_latest_state_event_answers_as_the_whole_task_does() -> None:
    task = Task.plan(
        service_id="42",
        run=1,
        step="web.user",
        role="web",
        action="ensure_user",
        server_id="web1",
        params={"user": "shop", "password_sealed": "sealed-1"},
        depends_on=[],
        now=T0,
    )
    seen: set[type[Any]] = set()
    latest: Any = None
    steps: list[Callable[[Task], Any]] = [lambda t: None, *SCENARIO]
    for number, step in enumerate(steps):
        step(task)
        for event in task.collect_events():
            seen.add(type(event))
            if isinstance(event, STATE_EVENTS):
                latest = event
        for attempt in range(0, 6):
            whole = task.state == "dispatched" and task.attempt == attempt
            assert is_current_attempt(latest, attempt) == whole, (number, attempt, task.state)
    # a new kind of Task event must be added to this scenario, and to STATE_EVENTS if it
    # sets the state or the attempt
    assert seen == all_task_event_classes()
