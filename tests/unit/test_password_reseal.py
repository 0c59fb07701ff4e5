"""Re-sealing a password is a new event on the Service or the Task, never an edit of the old
one: the aggregate takes the new text, and only while the password may still be used."""

from __future__ import annotations

from datetime import timedelta

from domain.commands import parse_order
from domain.retry_policy import RetryPolicy
from domain.service import Service
from domain.task import Task
from tests.support.services import NOW

LATER = NOW + timedelta(minutes=5)
OLD_TEXT = "v1:old"
POLICY = RetryPolicy(max_attempts=1, initial_backoff_s=1, max_backoff_s=1)


def service(password_sealed: str | None = OLD_TEXT) -> Service:
    body = {
        "service_id": 42,
        "client_id": 7,
        "mode": "split",
        "domain": "shop.example.com",
        "plan": {"package": "default"},
    }
    made = Service.order(parse_order(body, now=NOW, actor="whmcs"), password_sealed)
    made.collect_events()
    return made


def task(password_sealed: str | None = OLD_TEXT) -> Task:
    made = Task.plan(
        service_id="42",
        run=1,
        step="web-user",
        role="web",
        action="ensure_user",
        server_id="web1",
        params={"user": "shop1", "password_sealed": password_sealed},
        depends_on=[],
        now=NOW,
    )
    made.collect_events()
    return made


def test_a_service_takes_its_resealed_password_as_a_new_event() -> None:
    live = service()
    assert live.reseal_password(LATER, "v2:abc:new", "abc")
    (event,) = live.collect_events()
    assert isinstance(event, Service.PasswordResealed)
    assert (event.password_sealed, event.key_id, event.timestamp) == ("v2:abc:new", "abc", LATER)
    assert live.password_sealed == "v2:abc:new"
    assert not live.reseal_password(LATER, "v2:abc:new", "abc")  # the same text: nothing


def test_a_terminated_service_or_one_without_a_password_is_not_resealed() -> None:
    gone = service()
    gone.mark_terminated(NOW, [])
    gone.collect_events()
    assert not gone.reseal_password(LATER, "v2:abc:new", "abc")
    assert not service(None).reseal_password(LATER, "v2:abc:new", "abc")
    assert gone.collect_events() == []


def test_a_task_that_may_run_again_takes_the_resealed_password_into_its_params() -> None:
    errored = task()
    errored.dispatch(NOW, 30)
    errored.fail(1, NOW, error="exit 1", retryable=False, log=[], policy=POLICY, unit_random=0.0)
    assert errored.state == "error" and errored.may_run_again
    assert errored.reseal_password(LATER, "v2:abc:new", "abc")
    assert errored.params == {"user": "shop1", "password_sealed": "v2:abc:new"}
    assert task().reseal_password(LATER, "v2:abc:new", "abc")  # planned


def test_a_task_that_cannot_run_again_or_has_no_password_is_not_resealed() -> None:
    done = task()
    done.dispatch(NOW, 30)
    done.succeed(1, NOW, changed=True, log=[])
    hidden = task()
    hidden.cancel(NOW, "staff")
    hidden.hide(NOW, "staff", "bulk delete")
    for unchanged in (done, hidden, task(None)):
        unchanged.collect_events()
        assert not unchanged.reseal_password(LATER, "v2:abc:new", "abc")
        assert unchanged.collect_events() == []
