"""Which services changed in the views since a position: the screens' live feed's source.

``SqlLiveChanges`` implements ``gateway.screens.live_feed.ChangeSource`` over a Database:
the furthest position of the views (one read of the tracking table), and the services
whose rows changed after a position —

- in the services view: a row written after the position (its ``last_position``; every
  event of a service or of its tasks moves it);
- in the usage and SSL views (a sync's figures, a certificate's state), which keep no
  position per row: a row whose ``updated_at`` (its last event's time) is one this source
  has not seen yet. Only rows from ``SKEW_S`` before the latest time seen are read, so an
  event stamped a little earlier by another process's clock is still found, and each row's
  time is remembered while it is within that window, so it is reported once.

``changes_after`` is synchronous: call it through ``asyncio.to_thread``. ``moved`` waits
for the views to move: on PostgreSQL for the projection runner's ``NOTIFY``
(``ops.views.views_moved``; then the feed's poll is only a fallback, every ``LISTENING_POLL_S``),
on SQLite simply for the feed's poll period.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from ops.store.database import Database
from ops.views.view_store import ViewStore
from ops.views.views_moved import ViewsMoved
from projections.services_view import SERVICES, ServicesView
from projections.ssl_view import SSL_CERTIFICATES, SslView
from projections.usage_view import USAGE_SERVICES, UsageView
from projections.view import View

SKEW_S = 60.0
LISTENING_POLL_S = 5.0  # how often the feed looks anyway while it listens for NOTIFY


class _TimedRows:
    """The rows of one table, known by ``(service_id, updated_at)``, that changed."""

    def __init__(self, store: ViewStore, table: str) -> None:
        self._store = store
        self._sql_name = store.table_sql_name(table)
        self._seen: dict[str, str] = {}  # service id → the time of its row last seen
        self._latest: str | None = None

    def start(self) -> None:
        """Remembers the rows as they are: what changes from here on is reported."""
        found = self._store.fetch(f"SELECT max(updated_at) FROM {self._sql_name}", ())  # noqa: S608
        self._latest = found[0][0] if found and found[0][0] else None
        self._seen = {}
        self.changed()

    def changed(self) -> set[str]:
        """The services whose row has a time not seen before (within the window)."""
        since = _earlier(self._latest, SKEW_S)
        rows = self._store.fetch(
            f"SELECT service_id, updated_at FROM {self._sql_name} "  # noqa: S608
            "WHERE updated_at IS NOT NULL AND service_id IS NOT NULL"
            + ("" if since is None else " AND updated_at >= ?"),
            () if since is None else (since,),
        )
        changed: set[str] = set()
        for service_id, updated_at in rows:
            key, at = str(service_id), str(updated_at)
            if self._seen.get(key) != at:
                changed.add(key)
                self._seen[key] = at
            if self._latest is None or at > self._latest:
                self._latest = at
        window = _earlier(self._latest, SKEW_S) or ""
        self._seen = {key: at for key, at in self._seen.items() if at >= window}
        return changed


def _earlier(time_text: str | None, seconds: float) -> str | None:
    if time_text is None:
        return None
    return (datetime.fromisoformat(time_text) - timedelta(seconds=seconds)).isoformat(
        timespec="microseconds"
    )


class SqlLiveChanges:
    def __init__(self, db: Database, prefix: str = "hw_", views: list[View] | None = None) -> None:
        self._listening = None if db.dialect == "sqlite" else ViewsMoved(db.url, prefix)
        self._services = ViewStore(db, [ServicesView()], prefix)
        self._positions = ViewStore(db, views or [ServicesView()], prefix)
        self._timed = [
            _TimedRows(ViewStore(db, [UsageView()], prefix), USAGE_SERVICES.name),
            _TimedRows(ViewStore(db, [SslView()], prefix), SSL_CERTIFICATES.name),
        ]

    def changes_after(self, position: int | None) -> tuple[int, set[str]]:
        now = max(self._positions.positions().values(), default=0)
        if position is None:
            for rows in self._timed:
                rows.start()
            return now, set()
        if now <= position:
            return now, set()
        found = self._services.fetch(
            f"SELECT service_id FROM {self._services.table_sql_name(SERVICES.name)} "  # noqa: S608
            "WHERE last_position > ?",
            (position,),
        )
        changed = {str(service_id) for (service_id,) in found}
        for rows in self._timed:
            changed |= rows.changed()
        return now, changed

    async def moved(self, most_s: float) -> None:
        if self._listening is None:
            await asyncio.sleep(most_s)
        else:
            await self._listening.moved(max(most_s, LISTENING_POLL_S))

    async def quiet(self) -> None:
        if self._listening is not None:
            await self._listening.close()
