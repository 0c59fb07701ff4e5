"""One active pipeline: the lead is held in the database, any other pipeline stands by.

The pipeline keeps its open runs in memory and counts each server's slots there, so two
pipelines active at once would each fill every server up to its limit and could dispatch the
same ready step twice. ``PipelineLead`` consumes the database URL and emits the lead:

- on PostgreSQL a session advisory lock, on a connection of its own (never a pooled one),
  keyed by the table prefix so two installs sharing a server do not block each other. While
  it leads, the connection is checked every ``CHECK_S``; if it is gone, so is the lock (the
  server lets it go with the session), and ``lost`` is set: the process must stop piloting,
  as another pipeline may already have taken over.
- on SQLite an exclusive ``flock`` on a file beside the database, which only the process's
  end lets go.

``acquire(stop)`` waits, trying every ``STANDBY_S``, until it leads (True) or ``stop`` is set
(False). A pipeline rebuilds its working state from the store only once it leads, so it
starts from what the last leader recorded.
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

from ops.database import postgres_conninfo, sqlite_path

log = logging.getLogger(__name__)

STANDBY_S = 1.0
CHECK_S = 2.0
# A dead link to PostgreSQL is noticed within ~5 + 2 * 3 s, not after the kernel's 2 hours.
_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "connect_timeout": 10,
}


class LeadLost(RuntimeError):
    """The pipeline's lead went with its database connection; the process must stop."""


def lock_key(prefix: str) -> int:
    """The advisory lock's key: a signed 64-bit number from the install's table prefix."""
    digest = hashlib.sha256(f"hostwright pipeline lead {prefix}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PipelineLead:
    def __init__(self, database_url: str, prefix: str) -> None:
        self._url = database_url
        self._key = lock_key(prefix)
        self._conn: psycopg.Connection[Any] | None = None
        self._file: int | None = None
        self._watch: asyncio.Task[None] | None = None
        self.lost = asyncio.Event()

    async def acquire(self, stop: asyncio.Event) -> bool:
        said = False
        while not stop.is_set():
            try:
                if await asyncio.to_thread(self._try):
                    log.info("pipeline: leading (took the lead)")
                    if self._conn is not None:
                        self._watch = asyncio.ensure_future(self._check())
                    return True
            except (OSError, psycopg.Error) as exc:
                log.warning("pipeline: cannot ask for the lead (%s); trying again", exc)
                self._drop_connection()
            if not said:
                log.info("pipeline: another pipeline leads; standing by")
                said = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), STANDBY_S)
        return False

    async def release(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        await asyncio.to_thread(self._drop_connection)
        if self._file is not None:
            os.close(self._file)  # closing the file lets the flock go
            self._file = None

    def _try(self) -> bool:
        if self._url.startswith("sqlite:"):
            return self._try_file()
        if self._conn is None:
            conninfo = make_conninfo(postgres_conninfo(self._url), **_KEEPALIVES)
            self._conn = psycopg.connect(conninfo, autocommit=True)
        row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self._key,)).fetchone()
        return bool(row and row[0])

    def _try_file(self) -> bool:
        if self._file is None:
            path = f"{sqlite_path(self._url)}.pipeline-lead"
            self._file = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    async def _check(self) -> None:
        while True:
            await asyncio.sleep(CHECK_S)
            try:
                await asyncio.to_thread(self._ping)
            except (OSError, psycopg.Error) as exc:
                log.error("pipeline: lost the lead with the database connection (%s)", exc)
                self.lost.set()
                return

    def _ping(self) -> None:
        assert self._conn is not None
        self._conn.execute("SELECT 1")

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()  # the server lets the advisory lock go with the session
