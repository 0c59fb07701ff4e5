"""Commands: what WHMCS (or an admin) asks hostwright to do; imperative, each carrying its time.

``parse_order`` and ``parse_lifecycle`` are the validation edge: they turn untrusted JSON into
typed commands or raise InvalidInput, before anything is recorded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from domain.errors import InvalidInput
from domain.hosting_plan import HostingPlan
from domain.names import normalise_domain, validate_label, validate_username

MODES = ("split", "unified", "vanity")
_EXTERNAL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_EXTERNAL_INT_DIGITS = 20  # any unsigned 64-bit id
_ORDER_FIELDS = frozenset(
    {
        "service_id",
        "client_id",
        "mode",
        "domain",
        "plan",
        "username",
        "password",
        "label",
        "command_id",
    }
)
MIN_PASSWORD = 8
MAX_PASSWORD = 128


@dataclass(frozen=True, kw_only=True)
class Command:
    service_id: str
    now: datetime
    actor: str
    command_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class OrderService(Command):
    client_id: str
    mode: str
    domain: str
    plan: HostingPlan
    username: str | None = None
    label: str | None = None
    # plain only in memory and never in a repr; sealed before it is recorded
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True, kw_only=True)
class SuspendService(Command):
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class UnsuspendService(Command):
    pass


@dataclass(frozen=True, kw_only=True)
class TerminateService(Command):
    force: bool = False


@dataclass(frozen=True, kw_only=True)
class RedeployService(Command):
    pass


@dataclass(frozen=True, kw_only=True)
class FactoryResetService(Command):
    pass


@dataclass(frozen=True, kw_only=True)
class VerifyRepairService(Command):
    pass


@dataclass(frozen=True, kw_only=True)
class ChangePlan(Command):
    plan: HostingPlan


@dataclass(frozen=True, kw_only=True)
class SyncUsage(Command):
    pass


@dataclass(frozen=True, kw_only=True)
class ChangePassword(Command):
    """The customer's new Hestia password. Parsing fills ``password`` (clear, in memory only,
    never in a repr); the ledger swaps it for ``password_sealed`` before anything is
    recorded, and the service refuses a ChangePassword that is not sealed."""

    password: str | None = field(default=None, repr=False)
    password_sealed: str | None = field(default=None, repr=False)


LIFECYCLE_ACTIONS: dict[str, type[Command]] = {
    "suspend": SuspendService,
    "unsuspend": UnsuspendService,
    "terminate": TerminateService,
    "redeploy": RedeployService,
    "factory-reset": FactoryResetService,
    "verify-repair": VerifyRepairService,
    "change-plan": ChangePlan,
    "sync-usage": SyncUsage,
    "change-password": ChangePassword,
}


def parse_external_id(raw: object, what: str) -> str:
    """WHMCS ids are integers; we accept those (up to 20 digits) or short [A-Za-z0-9_-]
    strings, and keep strings."""
    if isinstance(raw, bool):
        raise InvalidInput(f"{what} must be an integer or a short identifier")
    if isinstance(raw, int) and 0 <= raw < 10**_EXTERNAL_INT_DIGITS:
        return str(raw)
    if isinstance(raw, str) and _EXTERNAL_ID.fullmatch(raw):
        return raw
    raise InvalidInput(
        f"{what} must be an integer of at most {_EXTERNAL_INT_DIGITS} digits "
        "or 1-64 characters of A-Z a-z 0-9 _ -"
    )


def parse_order(body: object, *, now: datetime, actor: str) -> OrderService:
    """Validates a ``POST /v1/services`` body into an OrderService, or raises InvalidInput."""
    if not isinstance(body, dict):
        raise InvalidInput("the request body must be a JSON object")
    unknown = sorted(set(body) - _ORDER_FIELDS)
    if unknown:
        raise InvalidInput(f"unknown field(s): {', '.join(map(str, unknown))}")
    for required in ("service_id", "client_id", "mode", "domain"):
        if required not in body:
            raise InvalidInput(f"{required} is required")
    mode = body["mode"]
    if mode not in MODES:
        raise InvalidInput(f"mode must be one of {', '.join(MODES)}")
    domain = normalise_domain(body["domain"])
    label = None
    if mode == "vanity":
        if body.get("label") is None:
            raise InvalidInput("a vanity service needs a label")
        # that the domain is <label>.<provider domain> is checked against the provider's
        # real domain (domain/provider_settings.py check_order), which parsing does not know
        label = validate_label(body["label"])
    elif body.get("label") is not None:
        raise InvalidInput("label is only for vanity services")
    username = body.get("username")
    return OrderService(
        service_id=parse_external_id(body["service_id"], "service_id"),
        client_id=parse_external_id(body["client_id"], "client_id"),
        mode=mode,
        domain=domain,
        plan=HostingPlan.parse(body.get("plan")),
        username=None if username is None else validate_username(username),
        label=label,
        password=_parse_password(body.get("password")),
        command_id=_parse_command_id(body.get("command_id")),
        now=now,
        actor=actor,
    )


def parse_lifecycle(
    action: str, service_id: str, body: object, *, now: datetime, actor: str
) -> Command:
    """Validates ``POST /v1/services/{id}/{action}`` into its command, or raises InvalidInput."""
    command_class = LIFECYCLE_ACTIONS.get(action)
    if command_class is None:
        raise InvalidInput(f"unknown action {action!r}")
    service_id = parse_external_id(service_id, "service id")
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise InvalidInput("the request body must be a JSON object")
    allowed = {"command_id", "force", "plan", "reason", "password"}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidInput(f"unknown field(s): {', '.join(map(str, unknown))}")
    if "password" in body and command_class is not ChangePassword:
        raise InvalidInput(f"{action} takes no password")
    common: dict[str, Any] = {
        "service_id": service_id,
        "now": now,
        "actor": actor,
        "command_id": _parse_command_id(body.get("command_id")),
    }
    if command_class is TerminateService:
        force = body.get("force", False)
        if not isinstance(force, bool):
            raise InvalidInput("force must be true or false")
        return TerminateService(force=force, **common)
    if command_class is ChangePlan:
        return ChangePlan(plan=HostingPlan.parse(body.get("plan")), **common)
    if command_class is SuspendService:
        reason = body.get("reason", "")
        if not isinstance(reason, str) or len(reason) > 500:
            raise InvalidInput("reason must be a string of at most 500 characters")
        return SuspendService(reason=reason, **common)
    for name in ("force", "plan", "reason"):
        if name in body:
            raise InvalidInput(f"{action} takes no {name}")
    if command_class is ChangePassword:
        if body.get("password") is None:
            raise InvalidInput("password is required")
        return ChangePassword(password=_parse_password(body["password"]), **common)
    return command_class(**common)


def _parse_password(raw: object) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str) or not MIN_PASSWORD <= len(raw) <= MAX_PASSWORD:
        raise InvalidInput(f"password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    if not raw.isprintable() or not raw.isascii():
        raise InvalidInput("password must be printable ASCII")
    return raw


def _parse_command_id(raw: object) -> str | None:
    if raw is None:
        return None
    if isinstance(raw, str) and _EXTERNAL_ID.fullmatch(raw):
        return raw
    raise InvalidInput("command_id must be 1-64 characters of A-Z a-z 0-9 _ -")
