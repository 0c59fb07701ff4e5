"""A task's progress as view rows hold it: the one fold of ``Task.*`` events the task views share.

Consumes the row a view holds for a task and one of the task's events; emits the progress
fields the event changes — ``state``, ``attempts``, ``started_at``, ``finished_at``,
``due_at``, ``lease_expires_at``, ``error``, ``stuck``, ``stuck_since``, ``hidden`` — by the
state machine ``domain.task.Task`` applies to itself, with times as view time texts. Each
view keeps the fields it has columns for (``progress``), so a rule of the machine is written
once for every view of tasks.

``stuck`` is true while the task's streak of lease expiries goes on (no sign of life from a
handler since), and ``stuck_since`` is when that streak began: the end of the first expired
lease, as ``Task.stuck_since``.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from typing import Any

from domain.task import Task
from projections.view import Change, Row, columns, event_time, fields_of, iso_time

# what every view of tasks shows of a step, in this column order
STEP_COLUMNS = columns("step role action server_id state attempts:int")

# a result, a renewed lease or staff's decision ends a streak of lease expiries
_NOT_STUCK: Row = {"stuck": False, "stuck_since": None}


def planned_step(event: Task.Planned) -> Row:
    """The progress fields of a task just planned, with the step it is."""
    return {
        **fields_of(event, "step role action server_id"),
        "state": "planned",
        "attempts": 0,
        "started_at": None,
        "finished_at": None,
        "error": None,
    }


def _dispatched(row: Row, event: Task.Dispatched) -> Row:
    return {
        "state": "dispatched",
        "attempts": event.attempt,
        "started_at": row["started_at"] or event_time(event),
        "finished_at": None,
        "due_at": None,
        "lease_expires_at": iso_time(event.lease_expires_at),
    }


def _lease_renewed(row: Row, event: Task.LeaseRenewed) -> Row:
    return {"lease_expires_at": iso_time(event.lease_expires_at), **_NOT_STUCK}


def _succeeded(row: Row, event: Task.Succeeded) -> Row:
    return {
        "state": "succeeded",
        "finished_at": event_time(event),
        "lease_expires_at": None,
        "error": None,
        **_NOT_STUCK,
    }


def _failed(row: Row, event: Task.Failed) -> Row:
    stuck: Row = _NOT_STUCK
    if event.lease_expired:
        began = row.get("stuck_since") or row.get("lease_expires_at") or event_time(event)
        stuck = {"stuck": True, "stuck_since": began}
    return {"error": event.error, "lease_expires_at": None, **stuck}


def _retry_scheduled(row: Row, event: Task.RetryScheduled) -> Row:
    return {"state": "retry_scheduled", "due_at": iso_time(event.due_at)}


def _finished(state: str) -> Change:
    """Errored or Cancelled: no lease, no retry due and no streak any more; an error names
    why, a cancel leaves the last error as it was."""

    def change(row: Row, event: Any) -> Row:
        error = {"error": event.error} if isinstance(event, Task.Errored) else {}
        return {
            "state": state,
            "finished_at": event_time(event),
            "due_at": None,
            "lease_expires_at": None,
            **error,
            **_NOT_STUCK,
        }

    return change


def _retried(row: Row, event: Task.Retried) -> Row:
    return {"state": "planned", "finished_at": None, "error": None, **_NOT_STUCK}


def _hidden(row: Row, event: Task.Hidden) -> Row:
    return {"hidden": True}


# every Task event after its plan, and how it moves the task's row
PROGRESS: dict[type[Any], Change] = {
    Task.Dispatched: _dispatched,
    Task.LeaseRenewed: _lease_renewed,
    Task.Succeeded: _succeeded,
    Task.Failed: _failed,
    Task.RetryScheduled: _retry_scheduled,
    Task.Errored: _finished("error"),
    Task.Cancelled: _finished("cancelled"),
    Task.Retried: _retried,
    Task.Hidden: _hidden,
}


def progress(row: Row, event: Any, kept: AbstractSet[str]) -> Row:
    """The fields among ``kept`` that ``event`` changes in its task's ``row``; empty for an
    event that is no progress of a planned task."""
    fold = PROGRESS.get(type(event))
    if fold is None:
        return {}
    changed = fold(row, event)
    if changed.keys() <= kept:  # the usual case: the view has every column the fold sets
        return changed
    return {name: value for name, value in changed.items() if name in kept}
