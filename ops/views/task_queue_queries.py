"""The task-queue view's reads in SQL: ``GET /v1/tasks`` rows and the bulk actions' candidates.

``TaskQueueQueries`` consumes a ViewStore that keeps ``TaskQueueView``'s table and emits
visible rows only (a bulk delete hides rows; it never removes them). ``stuck`` and
``stuck_since`` are completed at query time: a view knows time only through events, so a
task dispatched past its lease is stuck from the lease's end before any event says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from ops.views.view_store import ViewStore
from projections.task_queue_view import TASK_QUEUE, stuck_since_at
from projections.view import Row, iso_time

# hidden is a bool column: INTEGER on SQLite, BOOLEAN on PostgreSQL; NOT hidden reads both
_FALSE_HIDDEN = "(hidden IS NULL OR NOT hidden)"
# since when a task is stuck, or NULL: the view's streak, else a dispatched task's lease end
# (compared with a time, so a lease still running does not count); ``stuck_since_at`` in SQL
_STUCK_SINCE = "COALESCE(stuck_since, CASE WHEN state = 'dispatched' THEN lease_expires_at END)"


class TaskQueueQueries:
    """Reads of the ``task_queue`` table. Synchronous: call it through ``asyncio.to_thread``."""

    def __init__(self, store: ViewStore) -> None:
        self._store = store

    def tasks(
        self,
        *,
        state: str | None = None,
        service_id: str | None = None,
        server_id: str | None = None,
        stuck: bool | None = None,
        limit: int = 200,
        now: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """The latest ``limit`` visible tasks matching every filter given, in planning order
        (oldest first), without their logs; stuck as of ``now`` (default: the clock)."""
        at = _now_text(now)
        conditions, params = _filters(service_id=service_id, server_id=server_id)
        if state is not None:
            conditions.append("state = ?")
            params.append(state)
        if stuck is True:
            conditions.append(f"{_STUCK_SINCE} <= ?")
            params.append(at)
        elif stuck is False:
            conditions.append(f"({_STUCK_SINCE} IS NULL OR {_STUCK_SINCE} > ?)")
            params.append(at)
        latest = self._store.select(
            TASK_QUEUE.name,
            " AND ".join(conditions),
            params,
            "position DESC",
            limit,
            without=("log",),
        )
        return [_shown(row, at, with_log=False) for row in reversed(latest)]

    def task(self, task_id: str, now: datetime | None = None) -> dict[str, Any] | None:
        """One visible task with its log; None when unknown or hidden."""
        found = self._store.select(
            TASK_QUEUE.name, f"task_id = ? AND {_FALSE_HIDDEN}", (task_id,), "task_id", 1
        )
        if not found:
            return None
        return _shown(found[0], _now_text(now), with_log=True)

    def task_ids(
        self,
        *,
        states: Sequence[str] = (),
        finished_before: datetime | None = None,
        stuck_before: datetime | None = None,
        service_id: str | None = None,
        server_id: str | None = None,
    ) -> list[str]:
        """Ids of the visible tasks matching every filter given, oldest first."""
        conditions, params = _filters(service_id=service_id, server_id=server_id)
        if states:
            conditions.append(f"state IN ({', '.join('?' for _ in states)})")
            params.extend(states)
        if finished_before is not None:
            conditions.append("finished_at <= ?")
            params.append(iso_time(finished_before))
        if stuck_before is not None:
            conditions.append(f"{_STUCK_SINCE} <= ?")
            params.append(iso_time(stuck_before))
        found = self._store.select(
            TASK_QUEUE.name, " AND ".join(conditions), params, "position", None
        )
        return [str(row["task_id"]) for row in found]


def _filters(*, service_id: str | None, server_id: str | None) -> tuple[list[str], list[Any]]:
    conditions, params = [_FALSE_HIDDEN], []
    for column, value in (("service_id", service_id), ("server_id", server_id)):
        if value is not None:
            conditions.append(f"{column} = ?")
            params.append(value)
    return conditions, params


def _now_text(now: datetime | None) -> str:
    return iso_time(now if now is not None else datetime.now(UTC))


def _shown(row: Row, now: str, *, with_log: bool) -> Row:
    """The row as the gateway shows it: no ``hidden`` (never true here), ``log`` only for one
    task, and ``stuck`` / ``stuck_since`` as of ``now``."""
    dropped = {"hidden"} if with_log else {"hidden", "log"}
    shown = {name: value for name, value in row.items() if name not in dropped}
    since = stuck_since_at(row, now)
    shown["stuck"] = since is not None
    shown["stuck_since"] = since
    return shown
