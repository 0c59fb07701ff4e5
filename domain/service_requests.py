"""What a lifecycle command asks of a service: the decision behind ``Service.handle``.

``decide_request`` reads the service's state and answers the name of the ``Service.*Requested``
event to record with its fields, None when the command is already satisfied, or raises
Conflict when the service's state forbids it. It records nothing itself; the aggregate does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from domain.commands import (
    ChangePassword,
    ChangePlan,
    Command,
    FactoryResetService,
    RedeployService,
    SuspendService,
    SyncUsage,
    TerminateService,
    UnsuspendService,
    VerifyRepairService,
)
from domain.errors import Conflict

if TYPE_CHECKING:
    from domain.service import Service

# the requests that carry no fields and that a suspended service refuses
_PLAIN_REQUESTS: dict[type[Command], str] = {
    RedeployService: "RedeployRequested",
    FactoryResetService: "FactoryResetRequested",
    VerifyRepairService: "VerifyRepairRequested",
}
_ACTION_NAMES = {
    SuspendService: "suspend",
    UnsuspendService: "unsuspend",
    RedeployService: "redeploy",
    FactoryResetService: "factory reset",
    VerifyRepairService: "verify & repair",
    ChangePlan: "change plan",
    SyncUsage: "usage sync",
    ChangePassword: "change password",
}


def decide_request(service: Service, command: Command) -> tuple[str, dict[str, Any]] | None:
    """The event (its name on ``Service``) and fields ``command`` asks for, or None."""
    if isinstance(command, TerminateService):
        if service.status == "terminated":
            return None
        if service.status == "terminating" and (service.forced or not command.force):
            return None
        return "TerminateRequested", {"force": command.force}
    _refuse_when_closing(service, command)
    suspended_or_going = service.pending == "suspend" or (
        service.status == "suspended" and service.pending != "unsuspend"
    )
    if isinstance(command, SuspendService):
        return None if suspended_or_going else ("SuspendRequested", {"reason": command.reason})
    if isinstance(command, UnsuspendService):
        return ("UnsuspendRequested", {}) if suspended_or_going else None
    if isinstance(command, ChangePlan):
        new_plan = command.plan.to_json()
        return None if new_plan == service.plan else ("PlanChangeRequested", {"plan": new_plan})
    if isinstance(command, SyncUsage):
        return "UsageSyncRequested", {}
    _refuse_when_suspended(service, command)
    if isinstance(command, ChangePassword):
        # Hestia refuses to change a suspended user's password (exit 5), so it waits for
        # an unsuspend like redeploy does; a repeated request runs again (sealing is random,
        # so two requests cannot be compared), and running it twice sets the same password
        if not command.password_sealed or command.password is not None:
            raise ValueError("a ChangePassword must be sealed, and cleared, before it is recorded")
        return "PasswordChangeRequested", {"password_sealed": command.password_sealed}
    event_name = _PLAIN_REQUESTS.get(type(command))
    if event_name is None:
        raise TypeError(f"Service cannot handle {type(command).__name__}")
    return event_name, {}


def _refuse_when_closing(service: Service, command: Command) -> None:
    if service.status in ("terminating", "terminated"):
        raise Conflict(
            f"service {service.service_id} is {service.status}; "
            f"{_action_name(command)} is not possible"
        )


def _refuse_when_suspended(service: Service, command: Command) -> None:
    if service.status == "suspended" or service.pending == "suspend":
        raise Conflict(
            f"service {service.service_id} is suspended; unsuspend it before "
            f"{_action_name(command)}"
        )


def _action_name(command: Command) -> str:
    return _ACTION_NAMES.get(type(command), type(command).__name__)
