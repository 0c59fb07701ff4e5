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

``acquire(stop)`` tries every ``STANDBY_S`` until it leads (True) or ``stop`` is set (False);
each try gives way to ``stop`` at once, even while the database hangs. ``took_over`` says
another pipeline may have led a moment ago: if its session ended under a live process (a
database restart, say), that process may go on for up to ``TAKEOVER_WAIT_S`` before it
notices, so a pipeline that took over waits that long before it rebuilds its working state
from the store and pilots. On PostgreSQL each leader records itself (``holder``, a random id
per process) in ``hostwright_pipeline_lead`` right after it takes the lock and before it
pilots, so a pipeline that lost the lead with its connection and takes it again knows whether
anyone else led in between: when the record still names it, nobody else piloted, and it
drives again at once. A first ``acquire`` waits when a try found the lock held.

The same object may ``acquire`` again after ``lost`` (or ``release``): a pipeline whose
connection failed stands by and leads again, in the same process.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import uuid
from collections.abc import Awaitable
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import make_conninfo

from ops.runtime.pause import pause
from ops.store.database import TABLE_CREATION_RACE, postgres_conninfo, sqlite_path
from ops.store.outage import Outage

log = logging.getLogger(__name__)
T = TypeVar("T")

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
HOLDER_TABLE = "hostwright_pipeline_lead"
_SERVER_SIDE = (
    "SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; "
    "SET tcp_keepalives_count = 3; SET tcp_user_timeout = 10000"
)


class PipelineLead:
    def __init__(self, database_url: str) -> None:
        self._url = database_url
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._file: int | None = None
        self._watch: asyncio.Task[None] | None = None
        self.holder = uuid.uuid4().hex  # this process, in the holder record
        self.lost = asyncio.Event()
        self.took_over = False
        self._led_before = False

    async def acquire(self, stop: asyncio.Event) -> bool:
        said = False
        outage = Outage("pipeline", "the database (asking for the lead)")
        self.took_over = False
        self.lost = asyncio.Event()
        while not stop.is_set():
            try:
                held = await _unless_stopped(self._try(), stop)
                if held is None:
                    break
                outage.recovered()
                if held:
                    log.info("pipeline: leading%s", " (took over)" if self.took_over else "")
                    self._led_before = True
                    if self._conn is not None:
                        self._watch = asyncio.ensure_future(self._check())
                    return True
                self.took_over = True
                if not said:
                    log.info("pipeline: another pipeline leads; standing by")
                    said = True
            except (OSError, psycopg.Error) as exc:
                outage.failed(exc)
                await self._drop_connection()
                if not self._led_before:
                    self.took_over = True  # today's rule for a first lead: it cannot tell
            await pause(stop, STANDBY_S)
        await self._drop_connection()
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
        if not (row and row[0]):
            return False
        previous = await self._record_holder(self._conn)
        if self._led_before and previous not in (None, self.holder):
            self.took_over = True  # another pipeline led while this one stood by
        return True

    async def _record_holder(self, conn: psycopg.AsyncConnection[Any]) -> str | None:
        """Names this pipeline the holder; returns who was named before. Only the lock's
        holder writes here, so reading then writing needs no more than the lock."""
        with contextlib.suppress(*TABLE_CREATION_RACE):  # made a moment ago by another
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {HOLDER_TABLE} "
                "(id INT PRIMARY KEY, holder TEXT NOT NULL, since TIMESTAMPTZ NOT NULL)"
            )
        cursor = await conn.execute(f"SELECT holder FROM {HOLDER_TABLE} WHERE id = 1")  # noqa: S608
        row = await cursor.fetchone()
        await conn.execute(
            f"INSERT INTO {HOLDER_TABLE} (id, holder, since) VALUES (1, %s, now()) "  # noqa: S608
            "ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, since = excluded.since",
            (self.holder,),
        )
        return str(row[0]) if row else None

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
                await self._drop_connection()
                return

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                await conn.close()  # the server lets the advisory lock go with the session


async def _unless_stopped(work: Awaitable[T], stop: asyncio.Event) -> T | None:
    """``work``'s result, or None (``work`` cancelled) if ``stop`` is set first."""
    doing = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({doing, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if doing.done():
        return doing.result()
    doing.cancel()
    await asyncio.gather(doing, return_exceptions=True)
    return None
