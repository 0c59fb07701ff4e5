"""Reads of the usage view (projections/usage_view.py): ``SqlUsageQueries``.

Consumes a Database (the view's tables in a ViewStore of its own); emits a service's row
(``service_usage``), its sums as they stood at a time (``usage_as_of``, from
``usage_history``), a sorted page of every service's sums with the whole fleet's summary
(``usage_page``, ``usage_summary``), and every service's billed sums at once
(``billing_rows``: plain columns only, no JSON decoded, so all tenants come back fast).
Synchronous: call it through ``asyncio.to_thread``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ops.store.database import Database
from ops.views.view_store import ViewStore
from projections.usage_view import (
    SUMMED,
    USAGE_HISTORY,
    USAGE_NODES,
    USAGE_SERVICES,
    UsageView,
)
from projections.view import Row, iso_time

# the columns a page and the bill read: no JSON among them
PLAIN = (
    "service_id",
    "client_id",
    "mode",
    "domain",
    "username",
    "status",
    *SUMMED,
    "bandwidth_billed_mb",
    "billing_month",
    "collected_at",
    "stale",
    "stale_since",
)
SORTABLE = frozenset({*PLAIN} - {"stale"})


class SqlUsageQueries:
    def __init__(self, db: Database, prefix: str = "hw_") -> None:
        self._store = ViewStore(db, [UsageView()], prefix)

    def service_usage(self, service_id: str) -> Row | None:
        found = self._store.select(
            USAGE_SERVICES.name, "service_id = ?", (service_id,), "service_id", 1
        )
        return found[0] if found else None

    def usage_as_of(self, service_id: str, at: datetime) -> Row | None:
        """The sums in force at ``at`` (the latest change at or before it); None before any."""
        found = self._store.select(
            USAGE_HISTORY.name,
            "service_id = ? AND at <= ?",
            (service_id, iso_time(at)),
            "at DESC",
            1,
        )
        return found[0] if found else None

    def usage_page(
        self, *, sort: str, descending: bool, limit: int, offset: int, client_id: str | None
    ) -> list[Row]:
        """Services' sums, sorted by ``sort`` (one of ``SORTABLE``), then by service id."""
        if sort not in SORTABLE:
            raise ValueError(f"cannot sort by {sort!r}")
        where, params = ("WHERE client_id = ?", [client_id]) if client_id else ("", [])
        direction = "DESC" if descending else "ASC"
        sql = (
            f"SELECT {', '.join(PLAIN)} FROM {self._table(USAGE_SERVICES.name)} {where}"  # noqa: S608
            f" ORDER BY {sort} {direction}, service_id {direction}"
            f" LIMIT {int(limit)} OFFSET {int(offset)}"
        )
        return [_plain(values) for values in self._store.fetch(sql, params)]

    def usage_summary(self, client_id: str | None = None) -> Row:
        """How many services, how many stale, and the sums of every figure."""
        where, params = ("WHERE client_id = ?", [client_id]) if client_id else ("", [])
        sums = ", ".join(f"COALESCE(SUM({name}), 0)" for name in (*SUMMED, "bandwidth_billed_mb"))
        stale = "SUM(CASE WHEN stale THEN 1 ELSE 0 END)"
        sql = f"SELECT COUNT(*), COALESCE({stale}, 0), {sums} FROM {self._table(USAGE_SERVICES.name)} {where}"  # noqa: S608,E501
        values = self._store.fetch(sql, params)[0]
        names = ("services", "stale", *SUMMED, "bandwidth_billed_mb")
        return {name: int(value or 0) for name, value in zip(names, values, strict=True)}

    def nodes(self) -> list[Row]:
        return self._store.select(USAGE_NODES.name, "", (), "server_id", None)

    def position(self) -> int:
        """How far the usage view has followed the store: its rows change only when it moves."""
        return self._store.positions().get(UsageView.name, 0)

    def billing_rows(self) -> list[Row]:
        """Every service's billed sums (plain columns only), by service id."""
        sql = (
            f"SELECT {', '.join(PLAIN)} FROM {self._table(USAGE_SERVICES.name)} ORDER BY service_id"  # noqa: S608
        )
        return [_plain(values) for values in self._store.fetch(sql, ())]

    def _table(self, name: str) -> str:
        return self._store.table_sql_name(name)


def _plain(values: tuple[Any, ...]) -> Row:
    row = dict(zip(PLAIN, values, strict=True))
    row["stale"] = bool(row["stale"])
    return row
