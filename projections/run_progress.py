"""The services row's progress: how far each service's latest run has come, from Task events.

Consumes ``Task.*`` events; emits, per event that moves a service's latest run, the changed
progress fields of its services row (``progress_total``, ``progress_done``,
``current_step``; ``run_operation``, the run's kind, and ``run_open``: a task of it was
planned or dispatched, so it goes on until its outcome is recorded) and keeps its own two
tables to know which run a task belongs to.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from domain.task import Task
from projections.view import Row, RowLoader, Rows, Table, aggregate_id, columns

# the Task events that may move a service's progress; a renewed lease, a failed attempt, a
# retry scheduled or a task hidden changes none of its fields
PROGRESS_FOLDS = frozenset(
    {
        Task.Planned,
        Task.Dispatched,
        Task.Succeeded,
        Task.Errored,
        Task.Cancelled,
        Task.Retried,
    }
)


class RunProgress:
    """The services row's progress from Task events, counting only each service's latest run.

    ``services_tasks`` maps a task to its service, run and step; ``services_runs`` holds per
    service the latest run and its tasks in flight (dispatched or awaiting a retry), in the
    order they were last dispatched. A redeploy or factory reset forgets the run in flight,
    so its late events do not count towards the progress the request reset to zero.
    """

    def __init__(self, services: str) -> None:
        self.services = services  # the table of the rows whose progress this keeps
        self.tasks = Table(
            name="services_tasks",
            columns=columns("task_id service_id run:int step"),
            key=("task_id",),
        )
        self.runs = Table(
            name="services_runs",
            columns=columns("service_id run:int in_flight:json"),
            key=("service_id",),
        )

    def load(self, events: Sequence[Any], rows: RowLoader) -> set[str]:
        """Loads the task rows ``change`` reads for these events at once; returns the service
        ids whose run (and services row) ``change`` will read next."""
        task_ids = {
            (aggregate_id(event),)
            for event in events
            if type(event) in PROGRESS_FOLDS and type(event) is not Task.Planned
        }
        found = rows.load(self.tasks.name, task_ids)
        planned = {event.service_id for event in events if type(event) is Task.Planned}
        return planned | {str(task["service_id"]) for task in found}

    def forget_run(self, service_id: str, rows: Rows) -> None:
        rows.delete(self.runs.name, (service_id,))

    def change(self, event: Any, rows: Rows) -> tuple[str, Row] | None:
        """The service id and the changed progress fields for one Task event; None if none."""
        kind = type(event)
        if kind is Task.Planned:
            return self._planned(event, rows)
        if kind not in PROGRESS_FOLDS:
            return None
        task_id = aggregate_id(event)
        task = rows.get(self.tasks.name, (task_id,))
        if task is None:
            return None
        service_id = str(task["service_id"])
        run = rows.get(self.runs.name, (service_id,))
        before = rows.get(self.services, (service_id,))
        if run is None or run["run"] != task["run"] or before is None:
            return None
        in_flight = [entry for entry in run["in_flight"] if entry[0] != task_id]
        fields: Row = {}
        if kind is Task.Dispatched:
            in_flight.append([task_id, task["step"]])
            fields["run_open"] = True  # a Try again may take up a run that had ended
        elif kind is Task.Succeeded:
            fields["progress_done"] = int(before["progress_done"] or 0) + 1
        fields["current_step"] = in_flight[-1][1] if in_flight else None
        rows.put(self.runs.name, {**run, "in_flight": in_flight})
        return service_id, fields

    def _planned(self, event: Task.Planned, rows: Rows) -> tuple[str, Row] | None:
        before = rows.get(self.services, (event.service_id,))
        run = rows.get(self.runs.name, (event.service_id,))
        if before is None or (run is not None and event.run < run["run"]):
            return None
        rows.put(
            self.tasks.name,
            {
                "task_id": aggregate_id(event),
                "service_id": event.service_id,
                "run": event.run,
                "step": event.step,
            },
        )
        if run is not None and event.run == run["run"]:
            total = int(before["progress_total"] or 0) + 1
            return event.service_id, {"progress_total": total, "run_open": True}
        rows.put(
            self.runs.name, {"service_id": event.service_id, "run": event.run, "in_flight": []}
        )
        return event.service_id, {
            "progress_total": 1,
            "progress_done": 0,
            "current_step": None,
            "run_operation": event.operation,
            "run_open": True,
        }
