"""The operation log: one row per Service event, for audits and ``GET /v1/oplog``.

Consumes every ``Service.*`` event; emits ``oplog`` rows keyed by the event's position in
the notification log: who (the command's actor, or ``hostwright`` for status changes the
system recorded), what (``action``), whether it was asked for (``kind`` = ``command``) or
happened (``outcome``: applied, failed, suspended, terminated with leftovers, waiting for a
node, …), and a JSON ``detail`` (the reason of a failure or a wait). Secrets are never
copied: ``detail`` is built from an allow-list of fields per event, so ``password_sealed``
cannot leak in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from domain.service import Service
from projections.service_ids import ServiceIds
from projections.view import Recorded, RowLoader, Rows, Table, columns, event_time, fields_of

SYSTEM_ACTOR = "hostwright"

OPLOG = Table(
    name="oplog",
    columns=columns("position:int service_id at actor action kind detail:json"),
    key=("position",),
    indexes=(("service_id", "position"),),
)

Detail = Callable[[Any], dict[str, Any]]


def _no_detail(event: Any) -> dict[str, Any]:
    return {}


def _fields(names: str) -> Detail:
    def detail(event: Any) -> dict[str, Any]:
        return fields_of(event, names)

    return detail


def _failed_operation(event: Any) -> str:
    """``change_plan`` failed -> ``change-plan-failed``: the operation that could not finish."""
    return f"{str(event.operation).replace('_', '-')}-failed"


def _termination(event: Any) -> str:
    """A terminate forced past what it could not remove says so in its name."""
    return "terminated-with-leftovers" if event.leftovers else "terminated"


# event type -> (action: a word, or how to word this event; kind; detail). Every event the
# Service aggregate records is here (tests/unit/test_views.py checks it), so a person reading
# the log finds each request and each outcome, in words, with its reason where it has one.
ENTRIES: dict[type[Any], tuple[str | Callable[[Any], str], str, Detail]] = {
    Service.Ordered: ("order", "command", _fields("client_id mode domain plan username label")),
    Service.SuspendRequested: ("suspend", "command", _fields("reason")),
    Service.UnsuspendRequested: ("unsuspend", "command", _no_detail),
    Service.TerminateRequested: ("terminate", "command", _fields("force")),
    Service.RedeployRequested: ("redeploy", "command", _no_detail),
    Service.FactoryResetRequested: ("factory-reset", "command", _no_detail),
    Service.VerifyRepairRequested: ("verify-repair", "command", _no_detail),
    Service.PlanChangeRequested: ("change-plan", "command", _fields("plan")),
    Service.UsageSyncRequested: ("sync-usage", "command", _no_detail),
    # the new password is sealed in the event and never copied: no detail at all
    Service.PasswordChangeRequested: ("change-password", "command", _no_detail),
    Service.PlacementWaiting: ("placement-waiting", "outcome", _fields("reason")),
    Service.Placed: ("placed", "outcome", _fields("placement")),
    Service.Activated: ("activated", "outcome", _no_detail),
    Service.DeployFailed: ("deploy-failed", "outcome", _fields("reason")),
    Service.Suspended: ("suspended", "outcome", _no_detail),
    Service.Unsuspended: ("unsuspended", "outcome", _no_detail),
    Service.PlanApplied: ("plan-applied", "outcome", _no_detail),
    Service.PasswordChanged: ("password-changed", "outcome", _no_detail),
    Service.OperationFailed: (_failed_operation, "outcome", _fields("reason")),
    Service.Terminated: (_termination, "outcome", _fields("leftovers")),
    # the key id names the key without revealing it; the sealed text is never copied
    Service.PasswordResealed: ("password-resealed", "outcome", _fields("key_id")),
}


class OperationLogView:
    """Consumes Service events; emits one ``oplog`` row per event (plus its id lookup rows)."""

    name = "oplog"
    version = 2
    folds: frozenset[type[Any]] = frozenset(ENTRIES)

    def __init__(self) -> None:
        self._ids = ServiceIds("oplog_aggregates")
        self.tables: tuple[Table, ...] = (OPLOG, self._ids.table)

    def prefetch(self, page: Sequence[Recorded], rows: RowLoader) -> None:
        """Loads the service-id lookups of the page's events after their orders."""
        events = [recorded.event for recorded in page if type(recorded.event) in ENTRIES]
        self._ids.load([e for e in events if not isinstance(e, Service.Ordered)], rows)

    def apply(self, recorded: Recorded, rows: Rows) -> None:
        event = recorded.event
        entry = ENTRIES.get(type(event))
        if entry is None:
            return
        wording, kind, detail = entry
        action = wording if isinstance(wording, str) else wording(event)
        if isinstance(event, Service.Ordered):
            self._ids.remember(event, rows)
            service_id: str | None = event.service_id
        else:
            service_id = self._ids.of(event, rows)
        if service_id is None:
            return
        command_id = getattr(event, "command_id", None)
        rows.put(
            OPLOG.name,
            {
                "position": recorded.position,
                "service_id": service_id,
                "at": event_time(event),
                "actor": getattr(event, "actor", None) or SYSTEM_ACTOR,
                "action": action,
                "kind": kind,
                "detail": detail(event) | ({"command_id": command_id} if command_id else {}),
            },
        )
