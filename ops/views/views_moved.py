"""PostgreSQL's word that the views moved: ``NOTIFY`` from the projection runner's commit,
``LISTEN`` in each gateway, so its live pages hear of a change at once instead of at the
next poll.

``notify_moved`` is run by ``ViewStore.apply_page`` in the transaction that moves the views
(PostgreSQL delivers it when that commits, never for a page rolled back). ``ViewsMoved``
consumes those notifications on one connection of its own: ``moved(most_s)`` returns at the
first one, or after ``most_s``; a lost connection is opened again on the next call (meanwhile
``moved`` waits ``most_s``: the feed's poll still finds every change, only later).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import psycopg
from psycopg.sql import SQL, Identifier

from ops.store.database import CONNECT_TIMEOUT_S, Cursor, postgres_conninfo

log = logging.getLogger(__name__)


def channel(prefix: str) -> str:
    """The notification channel of the views kept under ``prefix``."""
    return f"{prefix}views_moved"


def notify_moved(cur: Cursor, prefix: str, position: int) -> None:
    cur.execute("SELECT pg_notify(?, ?)", (channel(prefix), str(position)))


class ViewsMoved:
    def __init__(self, database_url: str, prefix: str) -> None:
        self._conninfo = postgres_conninfo(database_url)
        self._channel = channel(prefix)
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def moved(self, most_s: float) -> None:
        try:
            conn = await self._connection()
            async for _ in conn.notifies(timeout=most_s, stop_after=1):
                return
        except psycopg.Error as exc:
            log.warning("live pages: no word from PostgreSQL (%s); polling", type(exc).__name__)
            await self.close()
            await asyncio.sleep(most_s)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            conn = await psycopg.AsyncConnection.connect(
                self._conninfo,
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT_S,
                application_name="hostwright live pages",
            )
            await conn.execute(SQL("LISTEN {}").format(Identifier(self._channel)))
            self._conn = conn
        return self._conn
