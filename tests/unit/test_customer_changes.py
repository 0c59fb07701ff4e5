"""The domain's rules for a customer's changes: nothing while the service is stopped or a
stop is asked for; Try again only on a failed deploy, and only of its own failed steps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.customer_changes import (
    customer_may_change,
    customer_may_retry_deploy,
    customer_retries,
)
from domain.retry_policy import RetryPolicy
from domain.task import Task

NOW = datetime(2026, 12, 3, 21, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "requested", "may"),
    [
        ("active", None, True),
        ("provisioning", "deploy", True),
        ("deploy_failed", None, True),
        ("active", "change_plan", True),
        ("active", "suspend", False),  # asked for, not yet done
        ("active", "terminate", False),
        ("deploy_failed", "terminate", False),
        ("suspended", None, False),
        ("suspended", "unsuspend", False),
        ("terminating", "terminate", False),
        ("terminated", None, False),
    ],
)
def test_a_customer_changes_nothing_of_a_stopped_or_stopping_service(
    status: str, requested: str | None, may: bool
) -> None:
    assert customer_may_change(status, requested) is may


def test_try_again_only_on_a_failed_deploy_that_nothing_stops() -> None:
    assert customer_may_retry_deploy("deploy_failed", None)
    assert not customer_may_retry_deploy("active", None)
    assert not customer_may_retry_deploy("provisioning", "deploy")
    assert not customer_may_retry_deploy("deploy_failed", "suspend")


def task(service_id: str = "1001") -> Task:
    planned = Task.plan(
        service_id=service_id,
        run=1,
        step="mail.domain",
        role="mail",
        action="create mail.domain",
        server_id="mail1",
        params={},
        depends_on=[],
        now=NOW,
    )
    planned.dispatch(NOW, 30)
    return planned


def failed(service_id: str = "1001") -> Task:
    found = task(service_id)
    found.fail(
        1,
        NOW + timedelta(seconds=1),
        error="exit 8",
        retryable=False,
        log=[],
        policy=RetryPolicy(),
        unit_random=0,
    )
    return found


def test_try_again_runs_again_only_the_services_own_steps_in_error() -> None:
    assert failed().state == "error"
    assert customer_retries(failed(), "1001")
    assert not customer_retries(failed("1002"), "1001")  # another service's
    cancelled = task()
    assert cancelled.cancel(NOW, "staff")
    assert not customer_retries(cancelled, "1001")  # staff cancelled it: staff's to retry
    assert not customer_retries(task(), "1001")  # still running
