"""What a failure ticket says: subject, opening message and notes, for a WHMCS admin.

Only what staff need to act: the operation, service, domain, step, node, attempt and the
error (already masked by the handlers). Never the task's parameters, which carry sealed
passwords. Each text ends with its marker, so an uncertain call can be found in WHMCS.
"""

from __future__ import annotations

from typing import Any

from domain.ticket import Ticket

_OPERATION_NAMES = {
    "deploy": "deploy",
    "reset": "factory reset",
    "suspend": "suspend",
    "unsuspend": "unsuspend",
    "terminate": "terminate",
    "change_plan": "plan change",
}


def operation_name(operation: str) -> str:
    return _OPERATION_NAMES.get(operation, operation.replace("_", " "))


def subject(ticket: Ticket) -> str:
    """``hostwright: deploy of service 42 failed [hw:…]``"""
    what = operation_name(ticket.operation)
    return f"hostwright: {what} of service {ticket.service_id} failed {ticket.marker}"


def opening_message(ticket: Ticket) -> str:
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
