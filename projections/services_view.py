"""The services view: one row per service with its status, in-flight operation and progress.

Consumes every ``Service.*`` event; emits rows of the ``services`` table keyed by
``service_id``, which the gateway turns into ``GET /v1/services/{id}``. Times are the
events' own timestamps, never the clock, so a replay from event 0 gives identical rows.

Only ``Service.Ordered`` carries the WHMCS service id; later events name their aggregate
by UUID. The view therefore keeps its own ``services_aggregates`` table (aggregate id →
service id); ``ServiceIds`` is that lookup, shared with other views that need it.

The progress fields follow ``Task.*`` events of the service's latest run (``RunProgress``):
``progress_total`` counts its planned tasks, ``progress_done`` its succeeded ones, and
``current_step`` is the step of its most recently dispatched task still open (or null).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from domain.service import Service
from domain.task import Task
from projections.view import Column, Recorded, Row, RowLoader, Rows, Table

SERVICES = Table(
    name="services",
    columns=(
        Column("service_id", "text"),
        Column("client_id", "text"),
        Column("mode", "text"),
        Column("domain", "text"),
        Column("label", "text"),
        Column("username", "text"),
        Column("status", "text"),
        Column("plan", "json"),
        Column("pending", "text"),
        Column("progress_done", "int"),
        Column("progress_total", "int"),
        Column("current_step", "text"),
        Column("last_error", "text"),  # why the last operation failed, until one succeeds
        Column("leftovers", "json"),  # what a forced terminate left behind, per node
        Column("ordered_at", "text"),
        Column("updated_at", "text"),
        Column("last_position", "int"),
    ),
    key=("service_id",),
)


def event_time(event: Any) -> str:
    """An event's timestamp as UTC ISO text with microseconds: sortable as a string."""
    return iso_time(event.timestamp)


def iso_time(moment: datetime) -> str:
    """The one text form of a time in views; a naive time is taken to be UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


class ServiceIds:
    """Remembers which WHMCS service id each Service aggregate belongs to, in a view's table."""

    def __init__(self, table_name: str) -> None:
        self.table = Table(
            name=table_name,
            columns=(Column("aggregate_id", "text"), Column("service_id", "text")),
            key=("aggregate_id",),
        )

    def remember(self, ordered: Service.Ordered, rows: Rows) -> None:
        rows.put(
            self.table.name,
            {"aggregate_id": str(ordered.originator_id), "service_id": ordered.service_id},
        )

    def of(self, event: Any, rows: Rows) -> str | None:
        """The service id of a later event's aggregate; None when its order was never seen."""
        found = rows.get(self.table.name, (str(event.originator_id),))
        return None if found is None else str(found["service_id"])

    def load(self, events: Iterable[Any], rows: RowLoader) -> set[str]:
        """Loads what ``of`` reads for these events at once; returns the service ids found."""
        found = rows.load(self.table.name, {(str(event.originator_id),) for event in events})
        return {str(row["service_id"]) for row in found}


# One small function per event: (row before, event) -> the row's changed fields.
Change = Callable[[Row, Any], Row]


TASK_EVENTS = (
    Task.Planned,
    Task.Dispatched,
    Task.LeaseRenewed,
    Task.Succeeded,
    Task.Failed,
    Task.RetryScheduled,
    Task.Errored,
    Task.Cancelled,
    Task.Retried,
)


class RunProgress:
    """The services row's progress from Task events, counting only each service's latest run.

    ``services_tasks`` maps a task to its service, run and step; ``services_runs`` holds per
    service the latest run and its tasks in flight (dispatched or awaiting a retry), in the
    order they were last dispatched. A redeploy or factory reset forgets the run in flight,
    so its late events do not count towards the progress the request reset to zero.
    """

    def __init__(self) -> None:
        self.tasks = Table(
            name="services_tasks",
            columns=(
                Column("task_id", "text"),
                Column("service_id", "text"),
                Column("run", "int"),
                Column("step", "text"),
            ),
            key=("task_id",),
        )
        self.runs = Table(
            name="services_runs",
            columns=(
                Column("service_id", "text"),
                Column("run", "int"),
                Column("in_flight", "json"),
            ),
            key=("service_id",),
        )

    def load(self, events: Sequence[Any], rows: RowLoader) -> set[str]:
        """Loads the task rows ``change`` reads for these events at once; returns the service
        ids whose run (and services row) ``change`` will read next."""
        task_ids = {
            (str(event.originator_id),)
            for event in events
            if isinstance(event, TASK_EVENTS) and not isinstance(event, Task.Planned)
        }
        found = rows.load(self.tasks.name, task_ids)
        planned = {event.service_id for event in events if isinstance(event, Task.Planned)}
        return planned | {str(task["service_id"]) for task in found}

    def forget_run(self, service_id: str, rows: Rows) -> None:
        rows.delete(self.runs.name, (service_id,))

    def change(self, event: Any, rows: Rows) -> tuple[str, Row] | None:
        """The service id and the changed progress fields for one Task event; None if none."""
        if isinstance(event, Task.Planned):
            return self._planned(event, rows)
        task_id = str(event.originator_id)
        task = rows.get(self.tasks.name, (task_id,))
        if task is None:
            return None
        service_id = str(task["service_id"])
        run = rows.get(self.runs.name, (service_id,))
        before = rows.get(SERVICES.name, (service_id,))
        if run is None or run["run"] != task["run"] or before is None:
            return None
        in_flight = [entry for entry in run["in_flight"] if entry[0] != task_id]
        fields: Row = {}
        if isinstance(event, Task.Dispatched):
            in_flight.append([task_id, task["step"]])
        elif isinstance(event, Task.Succeeded):
            fields["progress_done"] = int(before["progress_done"] or 0) + 1
        elif not isinstance(event, Task.Errored | Task.Cancelled | Task.Retried):
            return None
        fields["current_step"] = in_flight[-1][1] if in_flight else None
        rows.put(self.runs.name, {**run, "in_flight": in_flight})
        return service_id, fields

    def _planned(self, event: Task.Planned, rows: Rows) -> tuple[str, Row] | None:
        before = rows.get(SERVICES.name, (event.service_id,))
        run = rows.get(self.runs.name, (event.service_id,))
        if before is None or (run is not None and event.run < run["run"]):
            return None
        rows.put(
            self.tasks.name,
            {
                "task_id": str(event.originator_id),
                "service_id": event.service_id,
                "run": event.run,
                "step": event.step,
            },
        )
        if run is not None and event.run == run["run"]:
            return event.service_id, {"progress_total": int(before["progress_total"] or 0) + 1}
        rows.put(
            self.runs.name, {"service_id": event.service_id, "run": event.run, "in_flight": []}
        )
        return event.service_id, {"progress_total": 1, "progress_done": 0, "current_step": None}


def _ordered(event: Service.Ordered) -> Row:
    return {
        "service_id": event.service_id,
        "client_id": event.client_id,
        "mode": event.mode,
        "domain": event.domain,
        "label": event.label,
        "username": event.username,
        "status": "provisioning",
        "plan": event.plan,
        "pending": "deploy",
        "progress_done": 0,
        "progress_total": 0,
        "current_step": None,
        "ordered_at": event_time(event),
    }


def _pending(operation: str) -> Change:
    def change(row: Row, event: Any) -> Row:
        return {"pending": operation}

    return change


def _terminate_requested(row: Row, event: Service.TerminateRequested) -> Row:
    return {"status": "terminating", "pending": "terminate"}


def _redeploy_requested(row: Row, event: Any) -> Row:
    # a redeploy or factory reset starts a new pipeline run: its progress starts from zero
    return {
        "status": "provisioning",
        "pending": "deploy",
        "progress_done": 0,
        "progress_total": 0,
        "current_step": None,
    }


def _plan_change_requested(row: Row, event: Service.PlanChangeRequested) -> Row:
    return {"plan": event.plan}


def _usage_sync_requested(row: Row, event: Service.UsageSyncRequested) -> Row:
    return {}


def _activated(row: Row, event: Service.Activated) -> Row:
    return {
        "status": "active",
        "pending": None,
        "progress_done": row["progress_total"],
        "current_step": None,
    }


def _settled(status: str) -> Change:
    def change(row: Row, event: Any) -> Row:
        return {"status": status, "pending": None, "last_error": None}

    return change


def _deploy_failed(row: Row, event: Service.DeployFailed) -> Row:
    return {"status": "deploy_failed", "pending": None, "last_error": event.reason}


def _operation_failed(row: Row, event: Service.OperationFailed) -> Row:
    pending = row["pending"] if event.operation in ("terminate", "change_plan") else None
    return {"pending": pending, "last_error": f"{event.operation}: {event.reason}"}


def _terminated(row: Row, event: Service.Terminated) -> Row:
    return {
        "status": "terminated",
        "pending": None,
        "last_error": None,
        "leftovers": list(event.leftovers),
    }


CHANGES: dict[type[Any], Change] = {
    Service.SuspendRequested: _pending("suspend"),
    Service.UnsuspendRequested: _pending("unsuspend"),
    Service.TerminateRequested: _terminate_requested,
    Service.RedeployRequested: _redeploy_requested,
    Service.FactoryResetRequested: _redeploy_requested,
    Service.VerifyRepairRequested: _pending("verify"),
    Service.PlanChangeRequested: _plan_change_requested,
    Service.UsageSyncRequested: _usage_sync_requested,
    Service.Activated: _activated,
    Service.DeployFailed: _deploy_failed,
    Service.OperationFailed: _operation_failed,
    Service.PlanApplied: lambda row, event: {"last_error": None},
    Service.Suspended: _settled("suspended"),
    Service.Unsuspended: _settled("active"),
    Service.Terminated: _terminated,
}


class ServicesView:
    """Consumes Service events; emits ``services`` rows (and its aggregate-id lookup rows)."""

    name = "services"

    def __init__(self) -> None:
        self._ids = ServiceIds("services_aggregates")
        self._progress = RunProgress()
        self.tables: tuple[Table, ...] = (
            SERVICES,
            self._ids.table,
            self._progress.tasks,
            self._progress.runs,
        )

    def apply(self, recorded: Recorded, rows: Rows) -> None:
        event = recorded.event
        if isinstance(event, TASK_EVENTS):
            self._apply_task_event(recorded, rows)
            return
        if isinstance(event, Service.Ordered):
            self._ids.remember(event, rows)
            row = _ordered(event)
        else:
            change = CHANGES.get(type(event))
            if change is None:
                return
            service_id = self._ids.of(event, rows)
            before = None if service_id is None else rows.get(SERVICES.name, (service_id,))
            if before is None:
                return
            row = {**before, **change(before, event)}
            if change is _redeploy_requested:
                self._progress.forget_run(row["service_id"], rows)
        row["updated_at"] = event_time(event)
        row["last_position"] = recorded.position
        rows.put(SERVICES.name, row)

    def prefetch(self, page: Sequence[Recorded], rows: RowLoader) -> None:
        """Loads the page's reads: lookups and tasks first, then the services they name."""
        events = [recorded.event for recorded in page]
        service_ids = self._ids.load([e for e in events if type(e) in CHANGES], rows)
        service_ids |= self._progress.load(events, rows)
        keys = {(service_id,) for service_id in service_ids}
        rows.load(SERVICES.name, keys)
        rows.load(self._progress.runs.name, keys)

    def _apply_task_event(self, recorded: Recorded, rows: Rows) -> None:
        found = self._progress.change(recorded.event, rows)
        if found is None:
            return
        service_id, fields = found
        before = rows.get(SERVICES.name, (service_id,))
        if before is None:
            return
        row = {
            **before,
            **fields,
            "updated_at": event_time(recorded.event),
            "last_position": recorded.position,
        }
        rows.put(SERVICES.name, row)
