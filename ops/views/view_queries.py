"""The gateway's read port in SQL: ``SqlViewQueries`` implements ``gateway.ports.ViewQueries``.

Consumes a Database, keeping the services, oplog, task-queue and timeline views' tables in a
ViewStore of its own; emits their rows as the gateway reads them: a service's status with
its progress nested, log entries oldest first, a service's latest run's steps, and (from
``TaskQueueQueries``) the visible tasks. Synchronous: call it through ``asyncio.to_thread``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ops.store.database import Database
from ops.views.task_queue_queries import TaskQueueQueries
from ops.views.view_store import ViewStore
from projections.oplog_view import OPLOG, OperationLogView
from projections.services_view import SERVICES, ServicesView
from projections.task_queue_view import TaskQueueView
from projections.timeline_view import TIMELINE, DeployTimelineView
from projections.view import View, iso_time


class SqlViewQueries(TaskQueueQueries):
    """The gateway's ``ViewQueries`` over the services, oplog, task-queue and timeline tables;
    the task-queue reads are ``TaskQueueQueries``'."""

    def __init__(self, db: Database, prefix: str = "hw_") -> None:
        views: list[View] = [
            ServicesView(),
            OperationLogView(),
            TaskQueueView(),
            DeployTimelineView(),
        ]
        super().__init__(ViewStore(db, views, prefix))

    def service(self, service_id: str) -> dict[str, Any] | None:
        """The service's row, with its progress also nested as the status body shows it."""
        found = self._store.select(SERVICES.name, "service_id = ?", (service_id,), "service_id", 1)
        if not found:
            return None
        row = found[0]
        row["progress"] = {
            "done": row["progress_done"],
            "total": row["progress_total"],
            "current_step": row["current_step"],
        }
        return row

    def oplog(
        self, *, service_id: str | None, since: datetime | None, limit: int
    ) -> list[dict[str, Any]]:
        """Log entries oldest first. With ``since``: the first ``limit`` entries at or after it
        (page forward by asking again from the last ``at``); without: the latest ``limit``."""
        conditions, params = [], []
        if service_id is not None:
            conditions.append("service_id = ?")
            params.append(service_id)
        if since is not None:
            conditions.append("at >= ?")
            params.append(iso_time(since))
        where = " AND ".join(conditions)
        if since is not None:
            return self._store.select(OPLOG.name, where, params, "position", limit)
        latest = self._store.select(OPLOG.name, where, params, "position DESC", limit)
        return latest[::-1]

    def timeline(self, service_id: str) -> list[dict[str, Any]] | None:
        """The steps of the service's latest run in planning order; None for an unknown service."""
        known = self._store.select(SERVICES.name, "service_id = ?", (service_id,), "service_id", 1)
        if not known:
            return None
        return self._store.select(TIMELINE.name, "service_id = ?", (service_id,), "position", None)
