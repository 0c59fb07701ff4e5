"""The deploy timeline: per service, the steps of its latest run, for the admin Deploy tab.

Consumes every ``Task.*`` event; emits ``timeline`` rows keyed by ``task_id``, one per step of
each service's latest run, in planning order (``position`` 1, 2, …), with the step's state,
attempts, when it first started and finished, and ``duration_ms`` between the two. A run is
the ``run`` number on ``Task.Planned``: the first step planned in a newer run removes the
older run's steps, and events of tasks no longer on the timeline change nothing.

``timeline_runs`` remembers, per service, the latest run and its task ids, so the older steps
can be found and removed (views only reach rows by key).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from domain.task import Task
from projections.services_view import event_time
from projections.view import Column, Recorded, Row, RowLoader, Rows, Table

TIMELINE = Table(
    name="timeline",
    columns=(
        Column("task_id", "text"),
        Column("service_id", "text"),
        Column("run", "int"),
        Column("position", "int"),
        Column("step", "text"),
        Column("role", "text"),
        Column("action", "text"),
        Column("server_id", "text"),
        Column("state", "text"),
        Column("attempts", "int"),
        Column("started_at", "text"),
        Column("finished_at", "text"),
        Column("duration_ms", "int"),
        Column("error", "text"),
    ),
    key=("task_id",),
    indexes=(("service_id", "position"),),
)

TIMELINE_RUNS = Table(
    name="timeline_runs",
    columns=(Column("service_id", "text"), Column("run", "int"), Column("task_ids", "json")),
    key=("service_id",),
)


def duration_ms(started_at: str | None, finished_at: str | None) -> int | None:
    """Milliseconds from start to finish (both view time texts); None unless both are known."""
    if started_at is None or finished_at is None:
        return None
    elapsed = datetime.fromisoformat(finished_at) - datetime.fromisoformat(started_at)
    return elapsed // timedelta(milliseconds=1)


# One small function per event: (row before, event) -> the row's changed fields.
Change = Callable[[Row, Any], Row]


def _dispatched(row: Row, event: Task.Dispatched) -> Row:
    return {
        "state": "dispatched",
        "attempts": event.attempt,
        "started_at": row["started_at"] or event_time(event),
        "finished_at": None,
    }


def _finished(state: str) -> Change:
    def change(row: Row, event: Any) -> Row:
        error = getattr(event, "error", None) if state == "error" else row["error"]
        return {"state": state, "finished_at": event_time(event), "error": error}

    return change


def _succeeded(row: Row, event: Task.Succeeded) -> Row:
    return {"state": "succeeded", "finished_at": event_time(event), "error": None}


def _failed(row: Row, event: Task.Failed) -> Row:
    return {"error": event.error}


def _retry_scheduled(row: Row, event: Task.RetryScheduled) -> Row:
    return {"state": "retry_scheduled"}


def _retried(row: Row, event: Task.Retried) -> Row:
    return {"state": "planned", "finished_at": None, "error": None}


CHANGES: dict[type[Any], Change] = {
    Task.Dispatched: _dispatched,
    Task.Succeeded: _succeeded,
    Task.Failed: _failed,
    Task.RetryScheduled: _retry_scheduled,
    Task.Errored: _finished("error"),
    Task.Cancelled: _finished("cancelled"),
    Task.Retried: _retried,
}


class DeployTimelineView:
    """Consumes Task events; emits the ``timeline`` rows of each service's latest run."""

    name = "timeline"
    tables: tuple[Table, ...] = (TIMELINE, TIMELINE_RUNS)

    def prefetch(self, page: Sequence[Recorded], rows: RowLoader) -> None:
        """Loads the steps the page's task events change and the runs its plans extend."""
        events = [recorded.event for recorded in page]
        rows.load(TIMELINE.name, {(str(e.originator_id),) for e in events if type(e) in CHANGES})
        planned = {(e.service_id,) for e in events if isinstance(e, Task.Planned)}
        rows.load(TIMELINE_RUNS.name, planned)

    def apply(self, recorded: Recorded, rows: Rows) -> None:
        event = recorded.event
        if isinstance(event, Task.Planned):
            self._planned(event, rows)
            return
        change = CHANGES.get(type(event))
        if change is None:
            return
        before = rows.get(TIMELINE.name, (str(event.originator_id),))
        if before is None:
            return  # a task of a run the timeline no longer shows
        row = {**before, **change(before, event)}
        row["duration_ms"] = duration_ms(row["started_at"], row["finished_at"])
        rows.put(TIMELINE.name, row)

    def _planned(self, event: Task.Planned, rows: Rows) -> None:
        latest = rows.get(TIMELINE_RUNS.name, (event.service_id,))
        if latest is not None and event.run < latest["run"]:
            return
        task_ids: list[str] = []
        if latest is not None and event.run == latest["run"]:
            task_ids = list(latest["task_ids"])
        elif latest is not None:
            for old in latest["task_ids"]:
                rows.delete(TIMELINE.name, (old,))
        task_id = str(event.originator_id)
        if task_id in task_ids:
            return
        task_ids.append(task_id)
        rows.put(
            TIMELINE_RUNS.name,
            {"service_id": event.service_id, "run": event.run, "task_ids": task_ids},
        )
        rows.put(
            TIMELINE.name,
            {
                "task_id": task_id,
                "service_id": event.service_id,
                "run": event.run,
                "position": len(task_ids),
                "step": event.step,
                "role": event.role,
                "action": event.action,
                "server_id": event.server_id,
                "state": "planned",
                "attempts": 0,
                "started_at": None,
                "finished_at": None,
                "duration_ms": None,
                "error": None,
            },
        )
