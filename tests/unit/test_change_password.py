"""Change password, from the edge to the node's command line: parsing, the service's decision,
the plan per mode, the run's outcome, the handler's quoted command, and the params' unsealing.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from domain.commands import ChangePassword, parse_lifecycle, parse_order
from domain.errors import Conflict, InvalidInput
from domain.lifecycle_plan import plan_change_password
from domain.run_outcome import (
    RUN_STARTERS,
    StepOutcome,
    builds_first,
    pending_kind,
    record_outcome,
)
from domain.service import Service
from handlers.hestia_command import (
    CommandResult,
    PermanentNodeError,
    command_line,
    error_for,
    masked,
)
from handlers.mailbox_steps import change_mailbox_password
from handlers.ownership import mailbox_mark, user_mark
from handlers.step import StepLog
from handlers.step_params import resolve_params
from handlers.step_registry import STEP_ACTIONS
from ops.adapters.deploy_planner import PLANS
from tests.support.plans import IPS, PROVIDER, SPLIT, UNIFIED, assert_well_formed, facts, vanity

NOW = datetime(2026, 12, 4, tzinfo=UTC)
NEW = "n3w pass'word\"$(reboot)"  # printable ASCII a shell would love to misread
SEALED = "v2:k1:sealed-text"


def parse(action: str, body: object) -> Any:
    return parse_lifecycle(action, "1001", body, now=NOW, actor="whmcs")


# --- parsing --------------------------------------------------------------------------------


def test_change_password_parses_the_password_and_keeps_it_out_of_its_repr() -> None:
    command = parse("change-password", {"password": NEW, "command_id": "c-1"})
    assert isinstance(command, ChangePassword)
    assert (command.password, command.password_sealed, command.command_id) == (NEW, None, "c-1")
    assert NEW not in repr(command)


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ({}, "password is required"),
        (None, "password is required"),
        ({"password": None}, "password is required"),
        ({"password": "short"}, "password must be 8 to 128 characters"),
        ({"password": "x" * 129}, "password must be 8 to 128 characters"),
        ({"password": 12345678}, "password must be 8 to 128 characters"),
        ({"password": "abcdefgh\nijk"}, "password must be printable ASCII"),
        ({"password": "pässwörter"}, "password must be printable ASCII"),
        ({"password": NEW, "plan": {"package": "x"}}, "change-password takes no plan"),
        ({"password": NEW, "reason": "x"}, "change-password takes no reason"),
    ],
)
def test_a_missing_or_bad_password_is_refused_naming_the_field(body: object, said: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse("change-password", body)
    assert str(refused.value) == said
    if isinstance(body, dict) and isinstance(body.get("password"), str):
        assert body["password"] not in str(refused.value)


@pytest.mark.parametrize(
    "action",
    [
        "suspend",
        "unsuspend",
        "terminate",
        "redeploy",
        "factory-reset",
        "verify-repair",
        "sync-usage",
    ],
)
def test_password_is_refused_on_every_other_action(action: str) -> None:
    with pytest.raises(InvalidInput, match=f"^{action} takes no password$"):
        parse(action, {"password": NEW})
    with pytest.raises(InvalidInput, match=r"^change-plan takes no password$"):
        parse("change-plan", {"plan": {"package": "gold"}, "password": NEW})


# --- the service's decision -----------------------------------------------------------------


def ordered(status: str = "active") -> Service:
    body = {"service_id": "1001", "client_id": "7", "mode": "split", "domain": "shop.example.com"}
    order = parse_order({**body, "plan": {"package": "gold"}}, now=NOW, actor="whmcs")
    service = Service.order(order, "v2:k1:old")
    if status in ("active", "suspended"):
        service.mark_active(NOW)
    if status == "suspended":
        service.mark_suspended(NOW)
    if status == "terminated":
        service.mark_terminated(NOW, [])
    return service


def sealed_command(**extra: Any) -> ChangePassword:
    return replace(
        parse("change-password", {"password": NEW, **extra}), password=None, password_sealed=SEALED
    )


def test_the_request_records_only_the_sealed_password_and_makes_it_the_services() -> None:
    service = ordered()
    assert service.handle(sealed_command(command_id="c-1"))
    event = service.pending_events[-1]
    assert isinstance(event, Service.PasswordChangeRequested)
    assert event.password_sealed == SEALED
    assert NEW not in repr(event.__dict__)
    assert (service.password_sealed, service.password_pending) == (SEALED, True)
    assert RUN_STARTERS["Service.PasswordChangeRequested"] == "change_password"
    assert not service.handle(sealed_command(command_id="c-1"))  # a retried call: nothing


def test_an_unsealed_request_is_never_recorded() -> None:
    service = ordered()
    with pytest.raises(ValueError, match="sealed"):
        service.handle(parse("change-password", {"password": NEW}))
    assert service.password_sealed == "v2:k1:old"


@pytest.mark.parametrize(
    ("status", "said"),
    [
        ("suspended", "unsuspend it before change password"),
        ("terminated", "change password is not possible"),
    ],
)
def test_a_suspended_or_terminated_service_refuses_it(status: str, said: str) -> None:
    service = ordered(status)
    with pytest.raises(Conflict, match=said):
        service.handle(sealed_command())


def test_the_run_records_password_changed_or_the_failure_once() -> None:
    service = ordered()
    service.handle(sealed_command())
    ok = [StepOutcome("change_password.web.user", "web1", "change_user_password", "succeeded")]
    assert record_outcome(service, "change_password", ok, NOW)
    assert isinstance(service.pending_events[-1], Service.PasswordChanged)
    assert not service.password_pending
    assert not record_outcome(service, "change_password", ok, NOW)  # settled twice: once

    service.handle(sealed_command())
    bad = [
        StepOutcome(
            "change_password.mail.user",
            "mail1",
            "change_user_password",
            "error",
            "mail1: user is suspended",
        )
    ]
    assert record_outcome(service, "change_password", bad, NOW)
    failed = service.pending_events[-1]
    assert isinstance(failed, Service.OperationFailed)
    assert (failed.operation, service.login_state) == ("change_password", "failed")
    assert not record_outcome(service, "change_password", bad, NOW)


def test_a_password_change_waits_for_the_build_and_runs_after_it() -> None:
    service = ordered(status="provisioning")
    service.handle(sealed_command())
    assert builds_first(service, "change_password")
    service.mark_active(NOW)  # the build never sets an existing user's password
    assert service.password_pending
    assert pending_kind(service) == "change_password"


# --- the plan per mode ----------------------------------------------------------------------


def shape(steps: list[Any]) -> list[tuple[str, str, str, str, tuple[str, ...]]]:
    return [(s.step, s.role, s.action, s.server_id, s.depends_on) for s in steps]


def test_split_changes_the_user_on_every_node_at_once() -> None:
    steps = plan_change_password(facts(password_sealed=SEALED), SPLIT, None, IPS)
    assert_well_formed(steps)
    assert shape(steps) == [
        ("change_password.web.user", "web", "change_user_password", "web1", ()),
        ("change_password.mail.user", "mail", "change_user_password", "mail1", ()),
        ("change_password.dns.user@dns1", "dns", "change_user_password", "dns1", ()),
        ("change_password.dns.user@dns2", "dns", "change_user_password", "dns2", ()),
    ]
    wanted = {"user": facts().user, "password_sealed": SEALED, "owner": "42"}
    assert all(step.params == wanted for step in steps)
    assert PLANS["change_password"] is plan_change_password
    # the task keeps the sealed text; only the handler, just before the step, opens it
    resolved = resolve_params(steps[0].params, {}, {SEALED: NEW}.__getitem__)
    assert resolved == {"user": facts().user, "password": NEW, "owner": "42"}


def test_unified_changes_its_one_user_once() -> None:
    steps = plan_change_password(facts("unified", password_sealed=SEALED), UNIFIED, None, IPS)
    assert shape(steps) == [("change_password.web.user", "web", "change_user_password", "all1", ())]


def test_vanity_changes_its_own_user_and_mailbox_never_the_providers_user() -> None:
    service = replace(vanity("bob"), password_sealed=SEALED)
    steps = plan_change_password(service, SPLIT, PROVIDER, IPS)
    assert_well_formed(steps)
    assert shape(steps) == [
        ("change_password.web.user", "web", "change_user_password", "web1", ()),
        ("change_password.mail.mailbox", "mail", "change_mailbox_password", "mail1", ()),
    ]
    user, mailbox = (s.params for s in steps)
    assert user == {"user": service.user, "password_sealed": SEALED, "owner": "42"}
    assert mailbox == {
        "user": "sharedmail",
        "domain": "example.net",
        "account": "bob",
        "password_sealed": SEALED,
        "owner": "42",
    }


@pytest.mark.parametrize("service", [facts(), replace(vanity(), password_sealed=None)])
def test_no_password_to_set_is_refused_rather_than_a_random_one(service: Any) -> None:
    provider = PROVIDER if service.mode == "vanity" else None
    with pytest.raises(Conflict, match="has no password to set"):
        plan_change_password(service, SPLIT, provider, IPS)


# --- the handlers ---------------------------------------------------------------------------


class RecordingDriver:
    """A node whose user ``user1`` (and mailbox bob@example.net) carries service 42's mark."""

    server_id = "web1"

    def __init__(self, suspended: str = "no", exit_status: int = 0) -> None:
        self.ran: list[list[str]] = []
        self._suspended = suspended
        self._exit = exit_status

    async def probe_json(self, argv: Sequence[str]) -> Any:
        if argv[0] == "v-list-user":
            return {argv[1]: {"NAME": user_mark("42"), "SUSPENDED": self._suspended}}
        return {argv[3]: {"ALIAS": mailbox_mark("42"), "SUSPENDED": self._suspended}}

    async def run(self, argv: Sequence[str]) -> CommandResult:
        self.ran.append(list(argv))
        return CommandResult(self._exit, "", "", 1.0)


def user_params(password: str = NEW) -> dict[str, Any]:
    return {"user": "user1", "password": password, "owner": "42"}


async def run_step(action: str, driver: RecordingDriver, params: dict[str, Any]) -> Any:
    log = StepLog()
    outcome = await STEP_ACTIONS[action](driver, params, {}, log)  # type: ignore[arg-type]
    assert all(NEW not in line for line in log.lines)
    return outcome


async def test_the_user_command_line_is_quoted_and_shown_masked() -> None:
    driver = RecordingDriver()
    assert (await run_step("change_user_password", driver, user_params())).changed
    assert driver.ran == [["v-change-user-password", "user1", NEW]]
    line = command_line(driver.ran[0])
    assert line == (
        "sudo /usr/local/hestia/bin/v-change-user-password user1 'n3w pass'\"'\"'word\"$(reboot)'"
    )
    assert shlex.split(line)[-1] == NEW  # the shell hands Hestia exactly the password
    assert masked(driver.ran[0]) == ["v-change-user-password", "user1", "*****"]


async def test_running_the_user_step_twice_sets_the_same_password_twice() -> None:
    driver = RecordingDriver()
    for _ in range(2):
        await run_step("change_user_password", driver, user_params())
    assert driver.ran == [["v-change-user-password", "user1", NEW]] * 2


async def test_a_suspended_user_is_a_permanent_error_and_nothing_runs() -> None:
    driver = RecordingDriver(suspended="yes")
    with pytest.raises(PermanentNodeError, match="suspended") as refused:
        await run_step("change_user_password", driver, user_params())
    assert driver.ran == []
    assert NEW not in str(refused.value)


async def test_hestias_refusal_never_carries_the_password() -> None:
    argv = ["v-change-user-password", "user1", NEW]
    error = error_for("web1", argv, CommandResult(2, f"Error: bad password {NEW}", "", 1.0))
    assert NEW not in str(error)
    with pytest.raises(PermanentNodeError) as refused:
        await run_step("change_user_password", RecordingDriver(exit_status=9), user_params())
    assert NEW not in str(refused.value)


async def test_the_mailbox_command_line_is_quoted() -> None:
    driver = RecordingDriver()
    params = {
        "user": "sharedmail",
        "domain": "example.net",
        "account": "bob",
        "owner": "42",
        "password": NEW,
    }
    assert (await change_mailbox_password(driver, params, {}, StepLog())).changed
    assert driver.ran == [
        ["v-change-mail-account-password", "sharedmail", "example.net", "bob", NEW]
    ]
    assert shlex.split(command_line(driver.ran[0]))[-1] == NEW
    assert masked(driver.ran[0])[-1] == "*****"
