"""Reads of the usage view (projections/usage_view.py): ``SqlUsageQueries``.

Consumes a Database (the view's tables in a ViewStore of its own); emits a service's row
(``service_usage``), its sums as they stood at a time (``usage_as_of``, from
``usage_history``), a sorted page of every service's sums with the whole fleet's summary
(``usage_page``, ``usage_summary``: terminated services counted apart, in no sum), and every
service's billed sums at once (``billing_rows``: plain columns only, no JSON decoded, so all
tenants come back fast). Synchronous: call it through ``asyncio.to_thread``.
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

    def usage_summary(self, client_id: str | None = None, month: str | None = None) -> Row:
        """The fleet's figures: how many services live, how many of them stale, the sums of
        their figures, and how many terminated (whose last figures are in no sum). With
        ``month`` (``YYYY-MM``) the billed bandwidth sums only what was counted for it."""
        where, params = ("WHERE client_id = ?", [client_id]) if client_id else ("", [])
        live = "status <> 'terminated'"
        billed = f"{live} AND billing_month = ?" if month else live
        sums = [f"SUM(CASE WHEN {live} THEN {name} ELSE 0 END)" for name in SUMMED]
        counted = [
            f"SUM(CASE WHEN {live} THEN 1 ELSE 0 END)",
            f"SUM(CASE WHEN {live} AND stale THEN 1 ELSE 0 END)",
            *sums,
            f"SUM(CASE WHEN {billed} THEN bandwidth_billed_mb ELSE 0 END)",
            f"SUM(CASE WHEN {live} THEN 0 ELSE 1 END)",
        ]
        table = self._table(USAGE_SERVICES.name)
        sql = f"SELECT {', '.join(counted)} FROM {table} {where}"  # noqa: S608
        values = self._store.fetch(sql, [*([month] if month else []), *params])[0]
        names = ("services", "stale", *SUMMED, "bandwidth_billed_mb", "terminated")
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
