"""Which services changed in the views since a position: the screens' live feed's source.

``SqlLiveChanges`` implements ``gateway.screens.live_feed.ChangeSource`` over a Database:
the furthest position of the views the screens show (one read of the tracking table), and
the services whose row in the services view was written after a position (its
``last_position``; every event of a service or of its tasks moves it). Synchronous: call it
through ``asyncio.to_thread``.
"""

from __future__ import annotations

from ops.store.database import Database
from ops.views.view_store import ViewStore
from projections.services_view import SERVICES, ServicesView
from projections.view import View


class SqlLiveChanges:
    def __init__(self, db: Database, prefix: str = "hw_", views: list[View] | None = None) -> None:
        self._services = ViewStore(db, [ServicesView()], prefix)
        self._positions = ViewStore(db, views or [ServicesView()], prefix)

    def changes_after(self, position: int | None) -> tuple[int, set[str]]:
        now = max(self._positions.positions().values(), default=0)
        if position is None or now <= position:
            return now, set()
        rows = self._services.fetch(
            f"SELECT service_id FROM {self._services.table_sql_name(SERVICES.name)} "  # noqa: S608
            "WHERE last_position > ?",
            (position,),
        )
        return now, {str(service_id) for (service_id,) in rows}
