"""``UsageViews`` and ``UsageRefresh`` (gateway/ports.py) over dicts, counting the reads."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from gateway.ports import UsageRefresh, UsageViews


class FakeUsageViews:
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = {row["service_id"]: row for row in rows}
        self.at = 1  # the view's position
        self.billing_reads = 0
        self.past: dict[str, dict[str, Any]] = {}  # service id → its usage_history row

    def service_usage(self, service_id: str) -> dict[str, Any] | None:
        return self.rows.get(service_id)

    def usage_as_of(self, service_id: str, at: datetime) -> dict[str, Any] | None:
        return self.past.get(service_id)

    def usage_page(
        self, *, sort: str, descending: bool, limit: int, offset: int, client_id: str | None
    ) -> list[dict[str, Any]]:
        found = sorted(self.rows.values(), key=lambda r: (r[sort], r["service_id"]))
        return (found[::-1] if descending else found)[offset : offset + limit]

    def usage_summary(
        self, client_id: str | None = None, month: str | None = None
    ) -> dict[str, Any]:
        return {"services": len(self.rows)}

    def nodes(self) -> list[dict[str, Any]]:
        return []

    def billing_rows(self) -> list[dict[str, Any]]:
        self.billing_reads += 1
        return list(self.rows.values())

    def position(self) -> int:
        return self.at


class FakeUsageRefresh:
    def __init__(self, services: dict[str, list[str]]) -> None:
        self.services = services
        self.asked: list[tuple[list[str], str]] = []

    def refresh(self, server_ids: list[str], by: str, now: datetime) -> dict[str, str]:
        self.asked.append((list(server_ids), by))
        return dict.fromkeys(server_ids, "queued")

    def servers_of(self, service_id: str) -> list[str] | None:
        return self.services.get(service_id)


_views: UsageViews = FakeUsageViews([])
_refresh: UsageRefresh = FakeUsageRefresh({})
