"""What a ticket says: subject, opening message and notes, for a WHMCS admin.

Only what staff need to act: the operation, service, domain, step, node, attempt and the
error (already masked by the handlers). Never the task's parameters, which carry sealed
passwords. Each text ends with its marker, so an uncertain call can be found in WHMCS. An
expiry ticket (a custom certificate near its end) says which certificate, when it ends, how
many days are left, and what to do.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from domain.ticket import Ticket, expiry_of, expiry_role

_OPERATION_NAMES = {
    "deploy": "deploy",
    "reset": "factory reset",
    "suspend": "suspend",
    "unsuspend": "unsuspend",
    "terminate": "terminate",
    "change_plan": "plan change",
    "change_password": "password change",
}


def operation_name(operation: str) -> str:
    return _OPERATION_NAMES.get(operation, operation.replace("_", " "))


def subject(ticket: Ticket) -> str:
    """``hostwright: deploy of service 42 failed [hw:…]``"""
    role = expiry_role(ticket.operation)
    if role is not None:
        return (
            f"hostwright: the custom {role} certificate of service {ticket.service_id} "
            f"expires on {_day(expiry_of(ticket.run))} {ticket.marker}"
        )
    what = operation_name(ticket.operation)
    return f"hostwright: {what} of service {ticket.service_id} failed {ticket.marker}"


def opening_message(ticket: Ticket) -> str:
    role = expiry_role(ticket.operation)
    if role is not None:
        return _expiry_opening(ticket, role)
    what = operation_name(ticket.operation)
    return "\n".join(
        [
            f"The {what} of service {ticket.service_id} ({ticket.domain}) stopped: "
            "a step failed and will not be retried on its own.",
            "",
            *_failure_lines(ticket.failures[0]),
            "",
            "Fix the cause, then use Try again on the task in hostwright's admin dashboard. "
            "Further failures of this operation are added to this ticket as notes.",
        ]
    )


def note_message(ticket: Ticket, index: int) -> str:
    role = expiry_role(ticket.operation)
    if role is not None:
        return "\n".join(
            [
                f"The custom {role} certificate of service {ticket.service_id} "
                f"({ticket.domain}) still has not been replaced.",
                "",
                *_warning_lines(ticket.failures[index]),
                ticket.note_marker(index),
            ]
        )
    what = operation_name(ticket.operation)
    return "\n".join(
        [
            f"The {what} of service {ticket.service_id} failed again "
            f"(failure {index + 1} of this operation).",
            "",
            *_failure_lines(ticket.failures[index]),
            ticket.note_marker(index),
        ]
    )


def _failure_lines(failure: dict[str, Any]) -> list[str]:
    return [
        f"Step:    {failure['step']} ({failure['action']})",
        f"Node:    {failure['server_id']}",
        f"Attempt: {failure['attempt']}",
        f"Error:   {failure['error']}",
    ]


def expiry_line(not_after: datetime, threshold_days: int) -> str:
    """What an expiry warning records as its "error": when, and the threshold reached."""
    left = "1 day" if threshold_days == 1 else f"{threshold_days} days"
    return f"expires {not_after:%Y-%m-%d %H:%M} UTC: {left} or less left"


def _expiry_opening(ticket: Ticket, role: str) -> str:
    service = ticket.service_id
    return "\n".join(
        [
            f"The custom {role} certificate of service {service} ({ticket.domain}) "
            f"expires on {expiry_of(ticket.run):%Y-%m-%d %H:%M} UTC. It was uploaded for the "
            "service, so hostwright does not renew it, and Let's Encrypt no longer mails "
            "expiry warnings.",
            "",
            *_warning_lines(ticket.failures[0]),
            "",
            f"Upload a renewed certificate (PUT /v1/services/{service}/ssl/{role}/custom), or "
            f"hand the {role} role back to automatic SSL (DELETE the custom certificate). "
            "Later warnings (30, 14, 7 and 1 days before) are added to this ticket as notes.",
        ]
    )


def _warning_lines(warning: dict[str, Any]) -> list[str]:
    return [
        f"Certificate: {warning['step']}",
        f"Node:        {warning['server_id'] or 'not installed'}",
        f"Expiry:      {warning['error']}",
    ]


def _day(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d}"
