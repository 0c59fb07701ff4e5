"""The gateway's ``ViewQueries`` port with rows the test puts in.

Consumes the services and oplog entries a test sets; emits them to the routes as the SQL views
would, and records every oplog query so a test can check the filters the route passed on.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from gateway.ports import ViewQueries


class FakeViews:
    """Satisfies ViewQueries with rows the test puts in; records what oplog was asked."""

    def __init__(self) -> None:
        self.services: dict[str, dict[str, Any]] = {}
        self.oplog_entries: list[dict[str, Any]] = []
        self.oplog_calls: list[dict[str, Any]] = []

    def service(self, service_id: str) -> dict[str, Any] | None:
        return self.services.get(service_id)

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
        """The rows put in, newest order first; only ``status`` filters here."""
        rows = sorted(
            self.services.values(),
            key=lambda row: (str(row.get("ordered_at")), str(row["service_id"])),
            reverse=True,
        )
        return [row for row in rows if status in (None, row.get("status"))][:limit]

    def oplog(
        self, *, service_id: str | None, since: datetime | None, limit: int
    ) -> list[dict[str, Any]]:
        self.oplog_calls.append({"service_id": service_id, "since": since, "limit": limit})
        return self.oplog_entries[:limit]

    def timeline(self, service_id: str) -> list[dict[str, Any]] | None:
        return [] if service_id in self.services else None

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
        return []

    def task(self, task_id: str, now: datetime | None = None) -> dict[str, Any] | None:
        return None

    def task_ids(
        self,
        *,
        states: Sequence[str] = (),
        finished_before: datetime | None = None,
        stuck_before: datetime | None = None,
        service_id: str | None = None,
        server_id: str | None = None,
    ) -> list[str]:
        return []


_: ViewQueries = FakeViews()
