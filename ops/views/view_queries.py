"""The gateway's read port in SQL: ``SqlViewQueries`` implements ``gateway.ports.ViewQueries``.

Consumes a Database, keeping the services, oplog, task-queue and timeline views' tables in a
ViewStore of its own; emits their rows as the gateway reads them: a service's status with
its progress nested, pages of the services list newest first, log entries oldest first, a
service's latest run's steps, and (from ``TaskQueueQueries``) the visible tasks.
Synchronous: call it through ``asyncio.to_thread``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ops.store.database import Database
from ops.views.task_queue_queries import TaskQueueQueries
from ops.views.view_store import ViewStore
from projections.oplog_view import OPLOG, OperationLogView
from projections.services_view import SERVICE_SERVERS, SERVICES, ServicesView
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
        return _with_progress(found[0])

    def services_page(
        self,
        *,
        status: str | None = None,
        mode: str | None = None,
        client_id: str | None = None,
        server_id: str | None = None,
        domain: str | None = None,
        after: tuple[str, str] | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Services rows matching every filter given, newest order first (``ordered_at``, then
        ``service_id``, both descending), the first ``limit`` after ``after`` (the
        ``(ordered_at, service_id)`` of the last row of the page before)."""
        conditions, params = [], []
        for column, value in (("status", status), ("mode", mode), ("client_id", client_id)):
            if value is not None:
                conditions.append(f"{column} = ?")
                params.append(value)
        if server_id is not None:
            servers = self._store.sql_name(SERVICE_SERVERS.name)
            conditions.append(
                f"service_id IN (SELECT service_id FROM {servers} WHERE server_id = ?)"  # noqa: S608
            )
            params.append(server_id)
        if domain is not None:
            conditions.append("LOWER(domain) LIKE ? ESCAPE '!'")
            params.append(f"%{_like_literal(domain.lower())}%")
        if after is not None:
            conditions.append("(ordered_at < ? OR (ordered_at = ? AND service_id < ?))")
            params += [after[0], after[0], after[1]]
        found = self._store.select(
            SERVICES.name,
            " AND ".join(conditions),
            params,
            "ordered_at DESC, service_id DESC",
            limit,
        )
        return [_with_progress(row) for row in found]

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


def _with_progress(row: dict[str, Any]) -> dict[str, Any]:
    """The row with its progress also nested, as the status body shows it."""
    row["progress"] = {
        "done": row["progress_done"],
        "total": row["progress_total"],
        "current_step": row["current_step"],
    }
    return row


def _like_literal(text: str) -> str:
    """``text`` matched as itself by LIKE … ESCAPE '!': its wildcards are plain characters."""
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")
