"""The task queue: one row per Task, for ``GET /v1/tasks`` and the admin Task Queue page.

Consumes every ``Task.*`` event; emits ``task_queue`` rows keyed by ``task_id`` (the task's
aggregate id as text): what the task does and where, its state, attempts, the times it was
planned, first started, finished, is next due and holds its lease until, its error, and its
log — every attempt's lines, each attempt headed by a line naming it. Times are the events'
own timestamps (or times the events carry), never the clock, so a replay gives identical rows.

``stuck`` is true while the task is open and its streak of lease expiries goes on (no sign of
life from a handler since), and ``stuck_since`` is when that streak began: the end of the
first expired lease. A view only knows time through events, so a task dispatched past its
lease is not marked here; ``stuck_since_at`` adds that at query time.

``hidden`` turns true on ``Task.Hidden`` (a bulk delete): the row leaves the queue's reads
but stays in the table, and every other view keeps the task's history.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from domain.task import OPEN_STATES, Task
from projections.services_view import event_time, iso_time
from projections.view import Column, Recorded, Row, RowLoader, Rows, Table

TASK_QUEUE = Table(
    name="task_queue",
    columns=(
        Column("task_id", "text"),
        Column("position", "int"),
        Column("service_id", "text"),
        Column("run", "int"),
        Column("step", "text"),
        Column("role", "text"),
        Column("action", "text"),
        Column("server_id", "text"),
        Column("state", "text"),
        Column("attempts", "int"),
        Column("created_at", "text"),
        Column("started_at", "text"),
        Column("finished_at", "text"),
        Column("due_at", "text"),
        Column("lease_expires_at", "text"),
        Column("error", "text"),
        Column("log", "json"),
        Column("stuck", "bool"),
        Column("stuck_since", "text"),
        Column("hidden", "bool"),
        Column("updated_at", "text"),
    ),
    key=("task_id",),
    indexes=(("position",), ("state", "position"), ("service_id", "position"), ("server_id",)),
)


def _planned(event: Task.Planned, position: int) -> Row:
    return {
        "task_id": str(event.originator_id),
        "position": position,
        "service_id": event.service_id,
        "run": event.run,
        "step": event.step,
        "role": event.role,
        "action": event.action,
        "server_id": event.server_id,
        "state": "planned",
        "attempts": 0,
        "created_at": event_time(event),
        "started_at": None,
        "finished_at": None,
        "due_at": None,
        "lease_expires_at": None,
        "error": None,
        "log": [],
        "stuck": False,
        "stuck_since": None,
        "hidden": False,
    }


def stuck_since_at(row: Row, now: str) -> str | None:
    """Since when a row's task has been stuck as of ``now`` (a view time text): the start of
    its streak of lease expiries, or, while dispatched, its lease's end once ``now`` is past
    it; None when it is not stuck. The same rule as ``Task.stuck_at``."""
    if row["state"] not in OPEN_STATES:
        return None
    if row.get("stuck_since"):
        return str(row["stuck_since"])
    lease = row.get("lease_expires_at")
    if row["state"] == "dispatched" and lease is not None and lease <= now:
        return str(lease)
    return None


# One small function per event: (row before, event) -> the row's changed fields.
Change = Callable[[Row, Any], Row]

# a result, a renewed lease or staff's decision ends a streak of lease expiries
_NOT_STUCK: Row = {"stuck": False, "stuck_since": None}


def _dispatched(row: Row, event: Task.Dispatched) -> Row:
    header = f"--- attempt {event.attempt} on {row['server_id']} at {event_time(event)} ---"
    return {
        "state": "dispatched",
        "attempts": event.attempt,
        "started_at": row["started_at"] or event_time(event),
        "finished_at": None,
        "due_at": None,
        "lease_expires_at": iso_time(event.lease_expires_at),
        "log": [*row["log"], header],
    }


def _lease_renewed(row: Row, event: Task.LeaseRenewed) -> Row:
    return {"lease_expires_at": iso_time(event.lease_expires_at), **_NOT_STUCK}


def _succeeded(row: Row, event: Task.Succeeded) -> Row:
    outcome = "succeeded" + ("" if event.changed else " (nothing to change)")
    return {
        "state": "succeeded",
        "finished_at": event_time(event),
        "lease_expires_at": None,
        "error": None,
        **_NOT_STUCK,
        "log": [*row["log"], *event.log, f"attempt {event.attempt} {outcome}"],
    }


def _failed(row: Row, event: Task.Failed) -> Row:
    kind = "retryable" if event.retryable else "permanent"
    stuck: Row = _NOT_STUCK
    if event.lease_expired:
        began = row["stuck_since"] or row["lease_expires_at"] or event_time(event)
        stuck = {"stuck": True, "stuck_since": began}
    return {
        "error": event.error,
        "lease_expires_at": None,
        "log": [*row["log"], *event.log, f"attempt {event.attempt} failed ({kind}): {event.error}"],
        **stuck,
    }


def _retry_scheduled(row: Row, event: Task.RetryScheduled) -> Row:
    return {"state": "retry_scheduled", "due_at": iso_time(event.due_at)}


def _errored(row: Row, event: Task.Errored) -> Row:
    return {
        "state": "error",
        "finished_at": event_time(event),
        "due_at": None,
        "lease_expires_at": None,
        "error": event.error,
        **_NOT_STUCK,
    }


def _cancelled(row: Row, event: Task.Cancelled) -> Row:
    return {
        "state": "cancelled",
        "finished_at": event_time(event),
        "due_at": None,
        "lease_expires_at": None,
        "log": [*row["log"], f"cancelled by {event.actor} at {event_time(event)}"],
        **_NOT_STUCK,
    }


def _retried(row: Row, event: Task.Retried) -> Row:
    return {
        "state": "planned",
        "finished_at": None,
        "error": None,
        "log": [*row["log"], f"retried by {event.actor} at {event_time(event)}"],
        **_NOT_STUCK,
    }


def _hidden(row: Row, event: Task.Hidden) -> Row:
    return {"hidden": True}


CHANGES: dict[type[Any], Change] = {
    Task.Dispatched: _dispatched,
    Task.LeaseRenewed: _lease_renewed,
    Task.Succeeded: _succeeded,
    Task.Failed: _failed,
    Task.RetryScheduled: _retry_scheduled,
    Task.Errored: _errored,
    Task.Cancelled: _cancelled,
    Task.Retried: _retried,
    Task.Hidden: _hidden,
}


class TaskQueueView:
    """Consumes Task events; emits one ``task_queue`` row per task."""

    name = "task_queue"
    tables: tuple[Table, ...] = (TASK_QUEUE,)

    def prefetch(self, page: Sequence[Recorded], rows: RowLoader) -> None:
        """Loads the rows of the page's tasks that change (a planned task's row is new)."""
        keys = {(str(r.event.originator_id),) for r in page if type(r.event) in CHANGES}
        rows.load(TASK_QUEUE.name, keys)

    def apply(self, recorded: Recorded, rows: Rows) -> None:
        event = recorded.event
        if isinstance(event, Task.Planned):
            row = _planned(event, recorded.position)
        else:
            change = CHANGES.get(type(event))
            if change is None:
                return
            before = rows.get(TASK_QUEUE.name, (str(event.originator_id),))
            if before is None:
                return
            row = {**before, **change(before, event)}
        row["updated_at"] = event_time(event)
        rows.put(TASK_QUEUE.name, row)
