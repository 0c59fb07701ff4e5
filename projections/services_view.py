"""The services view: one row per service with its status, in-flight operation and progress.

Consumes every ``Service.*`` event; emits rows of the ``services`` table keyed by
``service_id``, which the gateway turns into ``GET /v1/services/{id}``. Times are the
events' own timestamps, never the clock, so a replay from event 0 gives identical rows.

Later Service events name their aggregate by UUID; the view finds their service id in its
own ``services_aggregates`` table (``ServiceIds``).

The progress fields follow ``Task.*`` events of the service's latest run (``RunProgress``):
``progress_total`` counts its planned tasks, ``progress_done`` its succeeded ones, and
``current_step`` is the step of its most recently dispatched task still open (or null).

The operation under way: ``run_operation`` is the kind of the latest run (``deploy``,
``reset``, ``suspend``, ``unsuspend``, ``change_plan``, ``change_password``, ``terminate``: its
tasks' ``operation``) and ``run_open`` whether it is still going — from its first planned task to
the Service event that records its outcome. ``requested`` is the kind of a run asked for
whose tasks are not planned yet (queued behind another run, or waiting for a node).

``hestia_user`` is the Hestia user the service owns (as ordered, or the one derived from its
domain and id); ``placement`` the nodes it was placed on, also kept one row per role and
node in ``services_servers`` so the list can find the services on a node.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from domain.run_outcome import RUN_STARTERS
from domain.service import Service
from domain.step_chain import derive_username
from domain.task import Task
from projections.run_progress import PROGRESS_FOLDS, RunProgress
from projections.service_ids import ServiceIds
from projections.view import (
    Change,
    Recorded,
    Row,
    RowLoader,
    Rows,
    Table,
    columns,
    event_time,
    fields_of,
)

SERVICES = Table(
    name="services",
    # last_error: why the last operation failed, until one succeeds;
    # leftovers: what a forced terminate left behind, per node
    columns=columns(
        "service_id client_id mode domain label username status plan:json pending"
        " progress_done:int progress_total:int current_step last_error leftovers:json"
        " ordered_at updated_at last_position:int"
        " hestia_user placement:json requested run_operation run_open:bool"
    ),
    key=("service_id",),
    # the pipeline's sweep reads the services not settled yet (ops/views/unsettled_services.py);
    # the API's list pages newest first and filters by client; the screens' live feed asks
    # which services changed after a position (ops/views/live_changes.py)
    indexes=(
        ("pending",),
        ("status",),
        ("ordered_at", "service_id"),
        ("client_id",),
        ("last_position",),
    ),
)

# every node a service was placed on, with the role it has there
SERVICE_SERVERS = Table(
    name="services_servers",
    columns=columns("service_id role server_id"),
    key=("service_id", "role", "server_id"),
    indexes=(("server_id",),),
)

# the Service events that record a run's outcome: the run is over
_RUN_ENDS = (
    Service.Activated,
    Service.DeployFailed,
    Service.Suspended,
    Service.Unsuspended,
    Service.PlanApplied,
    Service.PasswordChanged,
    Service.OperationFailed,
    Service.Terminated,
)


# an order, a redeploy or a factory reset starts a new pipeline run: progress from zero
_DEPLOY_STARTS: Row = {
    "status": "provisioning",
    "pending": "deploy",
    "progress_done": 0,
    "progress_total": 0,
    "current_step": None,
}


def _ordered(event: Service.Ordered) -> Row:
    return {
        **fields_of(event, "service_id client_id mode domain label username plan"),
        **_DEPLOY_STARTS,
        "ordered_at": event_time(event),
        "hestia_user": event.username or derive_username(event.domain, event.service_id),
        "requested": "deploy",
        "run_open": False,
    }


def _requested(event: Any) -> str | None:
    """The kind of run a request asks for (None: it starts none)."""
    return RUN_STARTERS.get(f"Service.{type(event).__name__}")


def _operation_fields(row: Row, event: Any) -> Row:
    """How the event moves the operation under way: a request queues its run; an outcome
    ends the latest run and the request it answered."""
    if (kind := _requested(event)) is not None:
        return {"requested": kind}
    if not isinstance(event, _RUN_ENDS):
        return {}
    ended = {
        Service.Suspended: ("suspend",),
        Service.Unsuspended: ("unsuspend",),
        Service.PlanApplied: ("change_plan",),
        Service.PasswordChanged: ("change_password",),
        Service.Activated: ("deploy", "reset"),
        Service.DeployFailed: ("deploy", "reset"),
    }.get(type(event), ())
    if isinstance(event, Service.OperationFailed):
        ended = (event.operation,)
    requested = row.get("requested")
    if isinstance(event, Service.Terminated) or requested in ended:
        requested = None
    return {"run_open": False, "requested": requested}


def _pending(operation: str) -> Change:
    def change(row: Row, event: Any) -> Row:
        return {"pending": operation}

    return change


def _terminate_requested(row: Row, event: Service.TerminateRequested) -> Row:
    return {"status": "terminating", "pending": "terminate"}


def _redeploy_requested(row: Row, event: Any) -> Row:
    return {**_DEPLOY_STARTS, "run_open": False, "run_operation": None}


def _plan_change_requested(row: Row, event: Service.PlanChangeRequested) -> Row:
    # pending until applied or failed, so the pipeline's sweep finds a plan change whose run
    # never started (a request already pending, a build say, takes it along)
    return {"plan": event.plan, "pending": row["pending"] or "change_plan"}


def _plan_applied(row: Row, event: Service.PlanApplied) -> Row:
    pending = None if row["pending"] == "change_plan" else row["pending"]
    return {"pending": pending, "last_error": None}


def _password_change_requested(row: Row, event: Service.PasswordChangeRequested) -> Row:
    # pending until changed or failed, like a plan change: the sweep finds one whose run
    # never started; the sealed password itself is never copied into the view
    return {"pending": row["pending"] or "change_password"}


def _password_changed(row: Row, event: Service.PasswordChanged) -> Row:
    pending = None if row["pending"] == "change_password" else row["pending"]
    return {"pending": pending, "last_error": None}


def _usage_sync_requested(row: Row, event: Service.UsageSyncRequested) -> Row:
    return {}


def _activated(row: Row, event: Service.Activated) -> Row:
    # asked for during the build: next (a password change is never done by the build)
    queued = row["pending"] in ("suspend", "unsuspend", "change_password")
    return {
        "status": "active",
        "pending": row["pending"] if queued else None,
        "progress_done": row["progress_total"],
        "current_step": None,
    }


def _placement_waiting(row: Row, event: Service.PlacementWaiting) -> Row:
    """No node for a role it needs yet: the build waits at the step ``place``, saying why."""
    return {"current_step": "place", "last_error": f"waiting: {event.reason}"}


def _placed(row: Row, event: Service.Placed) -> Row:
    placement = {"placement": dict(event.placement)}
    if row["current_step"] != "place":
        return placement
    return {**placement, "current_step": None, "last_error": None}


def _settled(status: str) -> Change:
    def change(row: Row, event: Any) -> Row:
        return {"status": status, "pending": None, "last_error": None}

    return change


def _deploy_failed(row: Row, event: Service.DeployFailed) -> Row:
    # asked for during the build: next
    queued = row["pending"] in ("suspend", "unsuspend", "change_password")
    pending = row["pending"] if queued else None
    return {"status": "deploy_failed", "pending": pending, "last_error": event.reason}


def _operation_failed(row: Row, event: Service.OperationFailed) -> Row:
    lasting = ("terminate", "change_plan", "change_password")
    pending = row["pending"] if event.operation in lasting else None
    if event.operation in ("change_plan", "change_password") and pending == event.operation:
        pending = None  # it ended, failed: nothing waits for a run any more
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
    Service.PasswordChangeRequested: _password_change_requested,
    Service.PasswordChanged: _password_changed,
    Service.PlacementWaiting: _placement_waiting,
    Service.Placed: _placed,
    Service.Activated: _activated,
    Service.DeployFailed: _deploy_failed,
    Service.OperationFailed: _operation_failed,
    Service.PlanApplied: _plan_applied,
    Service.Suspended: _settled("suspended"),
    Service.Unsuspended: _settled("active"),
    Service.Terminated: _terminated,
}


class ServicesView:
    """Consumes Service events; emits ``services`` rows (and its aggregate-id lookup rows)."""

    name = "services"
    version = 1
    folds: frozenset[type[Any]] = frozenset({Service.Ordered, *CHANGES, *PROGRESS_FOLDS})

    def __init__(self) -> None:
        self._ids = ServiceIds("services_aggregates")
        self._progress = RunProgress(SERVICES.name)
        self.tables: tuple[Table, ...] = (
            SERVICES,
            SERVICE_SERVERS,
            self._ids.table,
            self._progress.tasks,
            self._progress.runs,
        )

    def apply(self, recorded: Recorded, rows: Rows) -> None:
        event = recorded.event
        if type(event) in PROGRESS_FOLDS:
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
            row.update(_operation_fields(row, event))
            if change is _redeploy_requested:
                self._progress.forget_run(row["service_id"], rows)
            if isinstance(event, Service.Placed):
                _put_servers(row["service_id"], event.placement, rows)
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
        event = recorded.event
        if type(event) is Task.Planned and before.get("requested") == event.operation:
            fields["requested"] = None  # its run has begun
        row = {**before, **fields}
        row["updated_at"] = event_time(event)
        row["last_position"] = recorded.position
        rows.put(SERVICES.name, row)


def _put_servers(service_id: str, placement: dict[str, Any], rows: Rows) -> None:
    by_role = {
        "web": [placement.get("web_server")],
        "mail": [placement.get("mail_server")],
        "dns": list(placement.get("dns_servers") or []),
    }
    for role, servers in by_role.items():
        for server_id in servers:
            if server_id:
                rows.put(
                    SERVICE_SERVERS.name,
                    {"service_id": service_id, "role": role, "server_id": str(server_id)},
                )
