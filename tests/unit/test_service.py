"""The Service aggregate's decisions: what each command records, ignores or refuses."""

from __future__ import annotations

import pytest

from domain.commands import parse_order
from domain.errors import Conflict, InvalidInput
from domain.service import Service, service_uuid
from tests.support.services import NOW, ask, ordered


def test_an_order_creates_a_provisioning_service_with_a_stable_id() -> None:
    service = ordered()
    assert service.id == service_uuid("42")
    assert (service.status, service.pending, service.domain) == (
        "provisioning",
        "deploy",
        "shop.example.com",
    )


def test_events_carry_the_commands_time_not_the_clock() -> None:
    service = Service.order(
        parse_order(
            {
                "service_id": 1,
                "client_id": 1,
                "mode": "split",
                "domain": "a.example",
                "plan": {"package": "default"},
            },
            now=NOW,
            actor="whmcs",
        ),
        None,
    )
    assert service.collect_events()[0].timestamp == NOW


def test_suspend_then_suspend_again_records_once() -> None:
    service = ordered()
    assert ask(service, "suspend") == ["SuspendRequested"]
    assert ask(service, "suspend") == []
    service.mark_suspended(NOW)
    service.collect_events()
    assert ask(service, "suspend") == []


def test_unsuspend_of_a_service_that_is_not_suspended_is_a_no_op() -> None:
    service = ordered()
    assert ask(service, "unsuspend") == []
    ask(service, "suspend")
    assert ask(service, "unsuspend") == ["UnsuspendRequested"]
    assert ask(service, "unsuspend") == []


def test_while_suspended_redeploy_and_reset_are_refused() -> None:
    service = ordered()
    ask(service, "suspend")
    service.mark_suspended(NOW)
    service.collect_events()
    for action in ("redeploy", "factory-reset", "verify-repair"):
        with pytest.raises(Conflict, match="suspended"):
            ask(service, action)
    assert service.collect_events() == []


def test_terminate_is_final_and_force_can_follow_once() -> None:
    service = ordered()
    assert ask(service, "terminate") == ["TerminateRequested"]
    assert service.status == "terminating"
    assert ask(service, "terminate") == []
    assert ask(service, "terminate", {"force": True}) == ["TerminateRequested"]
    assert ask(service, "terminate", {"force": True}) == []
    for action in ("suspend", "redeploy", "change-plan"):
        body = {"plan": {"package": "big"}} if action == "change-plan" else {}
        with pytest.raises(Conflict, match="terminating"):
            ask(service, action, body)
    service.mark_terminated(NOW, leftovers=[])
    assert service.status == "terminated"
    with pytest.raises(Conflict):
        service.mark_active(NOW)


def test_change_plan_to_the_same_plan_is_a_no_op() -> None:
    service = ordered(plan={"package": "basic", "disk_mb": 100})
    assert ask(service, "change-plan", {"plan": {"package": "basic", "disk_mb": 100}}) == []
    assert ask(service, "change-plan", {"plan": {"package": "pro", "disk_mb": 900}}) == [
        "PlanChangeRequested"
    ]
    assert service.plan["package"] == "pro"


def test_a_repeated_command_id_records_nothing() -> None:
    service = ordered()
    assert ask(service, "sync-usage", {"command_id": "c-1"}) == ["UsageSyncRequested"]
    assert ask(service, "sync-usage", {"command_id": "c-1"}) == []
    assert ask(service, "sync-usage", {"command_id": "c-2"}) == ["UsageSyncRequested"]


def test_status_changes_follow_the_pipelines_outcomes() -> None:
    service = ordered()
    service.mark_deploy_failed(NOW, "node web1 unreachable")
    service.collect_events()
    assert service.status == "deploy_failed"
    assert ask(service, "redeploy") == ["RedeployRequested"]
    assert service.status == "provisioning"
    service.mark_active(NOW)
    assert (service.status, service.pending) == ("active", None)


@pytest.mark.parametrize(
    "body, message",
    [
        ({"mode": "vps"}, "mode"),
        ({"domain": "exa mple.com"}, "white space"),
        ({"domain": "-a.com"}, "not valid"),
        ({"domain": "a" * 300 + ".com"}, "63"),
        ({"domain": "a.com; rm -rf /"}, "white space"),
        ({"domain": "../etc"}, "empty label"),
        ({"mode": "vanity", "domain": "shop.example.com"}, "label"),
        ({"username": "$(reboot)"}, "username"),
        ({"username": "root"}, "reserved"),
        ({"password": "short"}, "password"),
        ({"plan": {"disk_mb": -1}}, "disk_mb"),
        ({"plan": {"disk_mb": True}}, "disk_mb"),
        ({"plan": {"cpu": 4}}, "unknown"),
        ({"surprise": 1}, "unknown"),
    ],
)
def test_bad_orders_are_refused_with_a_readable_reason(
    body: dict[str, object], message: str
) -> None:
    base: dict[str, object] = {
        "service_id": 1,
        "client_id": 1,
        "mode": "split",
        "domain": "a.example.com",
        "plan": {"package": "default"},
    }
    with pytest.raises(InvalidInput, match=message):
        parse_order({**base, **body}, now=NOW, actor="whmcs")


def test_a_terminated_or_terminating_id_refuses_any_new_order() -> None:
    service = ordered()
    service.refuse_reorder()  # a live service: the same order again is the store's to judge
    ask(service, "terminate")
    with pytest.raises(Conflict, match=r"is terminating: .* a new order needs a new service id"):
        service.refuse_reorder()
    service.mark_terminated(NOW, leftovers=[])
    with pytest.raises(Conflict, match="is terminated: a terminated service id is closed"):
        service.refuse_reorder()


def test_the_latest_request_that_starts_a_run_keeps_its_command_id() -> None:
    service = ordered()
    assert service.last_request_command is None  # ordered without one
    ask(service, "suspend", {"command_id": "c-suspend"})
    ask(service, "sync-usage", {"command_id": "c-usage"})  # starts no run: not the request
    assert service.last_request == ("SuspendRequested", service.version - 1)
    assert service.last_request_command == "c-suspend"
