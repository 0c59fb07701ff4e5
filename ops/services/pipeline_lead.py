"""One active pipeline: the lead is held in the database, any other pipeline stands by.

The pipeline keeps its open runs in memory and counts each server's slots there, so two
pipelines active at once would each fill every server up to its limit and could dispatch the
same ready step twice. ``PipelineLead`` consumes the database URL and emits the lead:

- on PostgreSQL a session advisory lock (one key per database: the event store is not
  prefixed, so neither is its pilot) on an async connection of its own, never a pooled one.
  While it leads the connection is pinged every ``CHECK_S`` within ``PING_TIMEOUT_S``; when a
  ping fails the lock may be gone with the session, and ``lost`` is set: the process must
  stop piloting at once. Keepalives on both ends (the server's set for this session) make
  the server end the session of a vanished host within ~15 s, which lets the lock go.
- on SQLite an exclusive ``flock`` on ``<database>.pipeline-lead``, which only the process's
  end lets go.

``acquire(stop)`` tries every ``STANDBY_S`` until it leads (True) or ``stop`` is set (False).
``took_over`` says the first try did not lead: another pipeline led a moment ago, and if its
session ended under a live process (a database restart, say), that process may go on for up
to ``TAKEOVER_WAIT_S`` before it notices, so a pipeline that took over waits that long before
it rebuilds its working state from the store and pilots.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from ops.runtime.pause import pause
from ops.store.database import postgres_conninfo, sqlite_path

log = logging.getLogger(__name__)

STANDBY_S = 1.0
CHECK_S = 2.0
PING_TIMEOUT_S = 3.0
TAKEOVER_WAIT_S = CHECK_S + PING_TIMEOUT_S + 1.0
LOCK_KEY = int.from_bytes(hashlib.sha256(b"hostwright pipeline lead").digest()[:8], signed=True)
_CLIENT_SIDE = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,
    "connect_timeout": 10,
}
_SERVER_SIDE = (
    "SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; "
    "SET tcp_keepalives_count = 3; SET tcp_user_timeout = 10000"
)


class LeadLost(RuntimeError):
    """The pipeline's lead went with its database connection; the process must stop."""


class PipelineLead:
    def __init__(self, database_url: str) -> None:
        self._url = database_url
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._file: int | None = None
        self._watch: asyncio.Task[None] | None = None
        self.lost = asyncio.Event()
        self.took_over = False

    async def acquire(self, stop: asyncio.Event) -> bool:
        said = False
        while not stop.is_set():
            try:
                if await self._try():
                    log.info("pipeline: leading%s", " (took over)" if self.took_over else "")
                    if self._conn is not None:
                        self._watch = asyncio.ensure_future(self._check())
                    return True
                if not said:
                    log.info("pipeline: another pipeline leads; standing by")
                    said = True
            except (OSError, psycopg.Error) as exc:
                log.warning("pipeline: cannot ask for the lead (%s); trying again", exc)
                await self._drop_connection()
            self.took_over = True
            await pause(stop, STANDBY_S)
        return False

    async def release(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
            self._watch = None
        await self._drop_connection()
        if self._file is not None:
            os.close(self._file)  # closing the file lets the flock go
            self._file = None

    async def _try(self) -> bool:
        if self._url.startswith("sqlite:"):
            return self._try_file()
        if self._conn is None:
            conninfo = make_conninfo(postgres_conninfo(self._url), **_CLIENT_SIDE)
            self._conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
            await self._conn.execute(_SERVER_SIDE)
        cursor = await self._conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,))
        row = await cursor.fetchone()
        return bool(row and row[0])

    def _try_file(self) -> bool:
        if self._file is None:
            path = f"{sqlite_path(self._url)}.pipeline-lead"
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            self._file = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    async def _check(self) -> None:
        assert self._conn is not None
        while True:
            await asyncio.sleep(CHECK_S)
            try:
                await asyncio.wait_for(self._conn.execute("SELECT 1"), PING_TIMEOUT_S)
            except (OSError, psycopg.Error, TimeoutError) as exc:
                log.error("pipeline: lost the lead with its database connection (%r)", exc)
                self.lost.set()
                return

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                await conn.close()  # the server lets the advisory lock go with the session
