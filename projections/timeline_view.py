"""The deploy timeline: per service, the steps of its latest run, for the admin Deploy tab.

Consumes every ``Task.*`` event; emits ``timeline`` rows keyed by ``task_id``, one per step of
each service's latest run, in planning order (``position`` 1, 2, …), with the step's state,
attempts, when it first started and finished, and ``duration_ms`` between the two. A run is
the ``run`` number on ``Task.Planned``: the first step planned in a newer run removes the
older run's steps, and events of tasks no longer on the timeline change nothing.

A step's state, attempts, times and error follow ``projections.task_progress``, the fold
every view of tasks shares. ``timeline_runs`` remembers, per service, the latest run and its
task ids, so the older steps can be found and removed (views only reach rows by key).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from domain.task import Task
from projections.task_progress import PROGRESS, STEP_COLUMNS, planned_step, progress
from projections.view import Recorded, RowLoader, Rows, Table, aggregate_id, columns

TIMELINE = Table(
    name="timeline",
    columns=(
        *columns("task_id service_id run:int position:int"),
        *STEP_COLUMNS,
        *columns("started_at finished_at duration_ms:int error"),
    ),
    key=("task_id",),
    indexes=(("service_id", "position"),),
)
_NAMES = frozenset(column.name for column in TIMELINE.columns)

TIMELINE_RUNS = Table(
    name="timeline_runs",
    columns=columns("service_id run:int task_ids:json"),
    key=("service_id",),
)


def duration_ms(started_at: str | None, finished_at: str | None) -> int | None:
    """Milliseconds from start to finish (both view time texts); None unless both are known."""
    if started_at is None or finished_at is None:
        return None
    elapsed = datetime.fromisoformat(finished_at) - datetime.fromisoformat(started_at)
    return elapsed // timedelta(milliseconds=1)


# the Task events that move a step the timeline shows; a renewed lease or a hidden task
# changes none of its columns
_FOLLOWED = frozenset(PROGRESS) - {Task.LeaseRenewed, Task.Hidden}


class DeployTimelineView:
    """Consumes Task events; emits the ``timeline`` rows of each service's latest run."""

    name = "timeline"
    version = 1
    tables: tuple[Table, ...] = (TIMELINE, TIMELINE_RUNS)
    folds: frozenset[type[Any]] = frozenset({Task.Planned, *_FOLLOWED})

    def prefetch(self, page: Sequence[Recorded], rows: RowLoader) -> None:
        """Loads the steps the page's task events change and the runs its plans extend."""
        events = [recorded.event for recorded in page]
        rows.load(TIMELINE.name, {(aggregate_id(e),) for e in events if type(e) in _FOLLOWED})
        planned = {(e.service_id,) for e in events if isinstance(e, Task.Planned)}
        rows.load(TIMELINE_RUNS.name, planned)

    def apply(self, recorded: Recorded, rows: Rows) -> None:
        event = recorded.event
        kind = type(event)
        if kind is Task.Planned:
            self._planned(event, rows)
            return
        if kind not in _FOLLOWED:
            return
        before = rows.get(TIMELINE.name, (aggregate_id(event),))
        if before is None:
            return  # a task of a run the timeline no longer shows
        row = {**before, **progress(before, event, _NAMES)}
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
        task_id = aggregate_id(event)
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
                **planned_step(event),
                "duration_ms": None,
            },
        )
