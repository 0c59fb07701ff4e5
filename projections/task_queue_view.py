"""The task queue: one row per Task, for ``GET /v1/tasks`` and the admin Task Queue page.

Consumes every ``Task.*`` event; emits ``task_queue`` rows keyed by ``task_id`` (the task's
aggregate id as text): what the task does and where, its state, attempts, the times it was
planned, first started, finished, is next due and holds its lease until, its error, and its
log — every attempt's lines, each attempt headed by a line naming it. Times are the events'
own timestamps (or times the events carry), never the clock, so a replay gives identical rows.

The progress fields follow ``projections.task_progress``, the fold every view of tasks shares;
this view adds the log. ``stuck`` is true while the task is open and its streak of lease
expiries goes on. A view only knows time through events, so a task dispatched past its
lease is not marked here; ``stuck_since_at`` adds that at query time.

``hidden`` turns true on ``Task.Hidden`` (a bulk delete): the row leaves the queue's reads
but stays in the table, and every other view keeps the task's history.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from domain.task import OPEN_STATES, Task
from projections.task_progress import PROGRESS, STEP_COLUMNS, planned_step, progress
from projections.view import (
    Recorded,
    Row,
    RowLoader,
    Rows,
    Table,
    aggregate_id,
    columns,
    event_time,
)

TASK_QUEUE = Table(
    name="task_queue",
    columns=(
        *columns("task_id position:int service_id run:int"),
        *STEP_COLUMNS,
        *columns(
            "created_at started_at finished_at due_at lease_expires_at error log:json"
            " stuck:bool stuck_since hidden:bool updated_at"
        ),
    ),
    key=("task_id",),
    indexes=(("position",), ("state", "position"), ("service_id", "position"), ("server_id",)),
)
_NAMES = frozenset(column.name for column in TASK_QUEUE.columns)


def _planned(event: Task.Planned, position: int) -> Row:
    return {
        "task_id": aggregate_id(event),
        "position": position,
        "service_id": event.service_id,
        "run": event.run,
        **planned_step(event),
        "created_at": event_time(event),
        "due_at": None,
        "lease_expires_at": None,
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


# (row before, event) -> the lines the event adds to the task's log
LogLines = Callable[[Row, Any], list[str]]


def _attempt_header(row: Row, event: Task.Dispatched) -> list[str]:
    return [f"--- attempt {event.attempt} on {row['server_id']} at {event_time(event)} ---"]


def _success_lines(row: Row, event: Task.Succeeded) -> list[str]:
    outcome = "succeeded" + ("" if event.changed else " (nothing to change)")
    return [*event.log, f"attempt {event.attempt} {outcome}"]


def _failure_lines(row: Row, event: Task.Failed) -> list[str]:
    kind = "retryable" if event.retryable else "permanent"
    return [*event.log, f"attempt {event.attempt} failed ({kind}): {event.error}"]


def _staff_line(verb: str) -> LogLines:
    def lines(row: Row, event: Any) -> list[str]:
        return [f"{verb} by {event.actor} at {event_time(event)}"]

    return lines


# what each event adds to the task's log, after the lines before it
LOG_LINES: dict[type[Any], LogLines] = {
    Task.Dispatched: _attempt_header,
    Task.Succeeded: _success_lines,
    Task.Failed: _failure_lines,
    Task.Cancelled: _staff_line("cancelled"),
    Task.Retried: _staff_line("retried"),
}


class TaskQueueView:
    """Consumes Task events; emits one ``task_queue`` row per task."""

    name = "task_queue"
    version = 1
    tables: tuple[Table, ...] = (TASK_QUEUE,)
    folds: frozenset[type[Any]] = frozenset({Task.Planned, *PROGRESS})

    def prefetch(self, page: Sequence[Recorded], rows: RowLoader) -> None:
        """Loads the rows of the page's tasks that change (a planned task's row is new)."""
        keys = {(aggregate_id(r.event),) for r in page if type(r.event) in PROGRESS}
        rows.load(TASK_QUEUE.name, keys)

    def apply(self, recorded: Recorded, rows: Rows) -> None:
        event = recorded.event
        kind = type(event)
        if kind is Task.Planned:
            row = _planned(event, recorded.position)
        else:
            if kind not in PROGRESS:
                return
            before = rows.get(TASK_QUEUE.name, (aggregate_id(event),))
            if before is None:
                return
            row = {**before, **progress(before, event, _NAMES)}
            lines = LOG_LINES.get(kind)
            if lines is not None:
                row["log"] = [*before["log"], *lines(before, event)]
        row["updated_at"] = event_time(event)
        rows.put(TASK_QUEUE.name, row)
