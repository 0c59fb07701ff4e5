"""Which WHMCS service id each Service aggregate belongs to, kept in a view's own table.

Only ``Service.Ordered`` carries the WHMCS service id; later events name their aggregate by
UUID. ``ServiceIds`` consumes the orders (``remember``) and, for any later Service event,
emits its service id (``of``) from an ``aggregate_id → service_id`` table the view owns, so
every view that needs the lookup keeps it without reading another view's tables.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from domain.service import Service
from projections.view import RowLoader, Rows, Table, aggregate_id, columns


class ServiceIds:
    """Remembers which WHMCS service id each Service aggregate belongs to, in a view's table."""

    def __init__(self, table_name: str) -> None:
        self.table = Table(
            name=table_name,
            columns=columns("aggregate_id service_id"),
            key=("aggregate_id",),
        )

    def remember(self, ordered: Service.Ordered, rows: Rows) -> None:
        rows.put(
            self.table.name,
            {"aggregate_id": aggregate_id(ordered), "service_id": ordered.service_id},
        )

    def of(self, event: Any, rows: Rows) -> str | None:
        """The service id of a later event's aggregate; None when its order was never seen."""
        found = rows.get(self.table.name, (aggregate_id(event),))
        return None if found is None else str(found["service_id"])

    def load(self, events: Iterable[Any], rows: RowLoader) -> set[str]:
        """Loads what ``of`` reads for these events at once; returns the service ids found."""
        found = rows.load(self.table.name, {(aggregate_id(event),) for event in events})
        return {str(row["service_id"]) for row in found}
