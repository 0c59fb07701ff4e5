"""Step fences shared by every handler process of one system (the port: handlers/step_fence.py).

- PostgreSQL: a session advisory lock per fence (``pg_try_advisory_lock(key)``) on one
  connection of the handler process's own, kept open while it runs. The server drops every lock
  of a session when the session ends, so a fence dies with the process that holds it (a crash,
  a SIGKILL); TCP keepalives make a vanished host's session end within about half a minute.
  A stopped process (SIGSTOP) keeps its fences: it may go on with its step when it resumes.
- SQLite: an ``flock`` on one of ``BUCKETS`` files in ``<database>.fences/`` beside the
  database (a bounded set of files; two keys in one bucket only wait for each other now and
  then). The kernel drops the lock when the process dies.

Both keep an in-process guard first (``LocalFences``): session advisory locks are re-entrant
within their session, so two attempts in one process would both get the same key.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import psycopg

from handlers.step_fence import LocalFences, StepFences
from ops.store.database import postgres_conninfo, sqlite_path

T = TypeVar("T")
log = logging.getLogger(__name__)

BUCKETS = 4096
CONNECT_TIMEOUT_S = 5
# the session fences are held on (here and in ops/adapters/step_gate.py): a vanished peer is
# noticed in about 10 + 3 x 5 seconds, and its fences drop
FENCE_SESSION: dict[str, Any] = {
    "autocommit": True,
    "connect_timeout": CONNECT_TIMEOUT_S,
    "application_name": "hostwright step fences",
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}


def step_fences(database_url: str) -> StepFences:
    """The shared fences for the system whose database is at ``database_url``."""
    if database_url.startswith("sqlite:"):
        return FileFences(Path(sqlite_path(database_url)))
    return PostgresFences(database_url)


class ShieldedTakes:
    """Takes a key with a database statement that cannot be cut off half-way.

    The key is taken in this process first (``LocalFences``: session locks are re-entrant, so
    the database would let a second task of ours in). The statement is shielded: one cut off
    half-way may or may not have taken the lock, so a caller cancelled meanwhile leaves it to
    finish, and what it took is let go afterwards (``release``); one that fails, or does not
    take the key, lets the process's hold go at once."""

    def __init__(self, local: LocalFences, release: Callable[[int], Awaitable[None]]) -> None:
        self._local = local
        self._release = release
        self._undoing: set[asyncio.Future[None]] = set()

    async def take(
        self, key: int, ask: Callable[[], Awaitable[T]], took: Callable[[T], bool]
    ) -> T | None:
        """``ask()``'s answer (``took`` says whether it took the key); None when this process
        holds the key already."""
        if not await self._local.try_take(key):
            return None
        asking = asyncio.ensure_future(ask())
        try:
            answer = await asyncio.shield(asking)
        except asyncio.CancelledError:
            asking.add_done_callback(lambda done: self._undo_after_cancel(key, done, took))
            raise
        except BaseException:
            await self._local.release(key)
            raise
        if not took(answer):
            await self._local.release(key)
        return answer

    def _undo_after_cancel(
        self, key: int, done: asyncio.Future[T], took: Callable[[T], bool]
    ) -> None:
        """The caller of ``take`` went away: drop what its statement took, if anything."""
        if done.cancelled() or done.exception() is not None or not took(done.result()):
            self._local.discard(key)
            return
        undo = asyncio.ensure_future(self._release(key))
        self._undoing.add(undo)
        undo.add_done_callback(self._undoing.discard)


class PostgresFences:
    """Session advisory locks on one dedicated connection (opened on first use)."""

    def __init__(self, database_url: str) -> None:
        self._conninfo = postgres_conninfo(database_url)
        self._local = LocalFences()
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()
        self._taken: set[int] = set()  # the keys this session holds (taken again on a new one)
        self._takes = ShieldedTakes(self._local, self.release)

    async def try_take(self, key: int) -> bool:
        answer = await self._takes.take(
            key, lambda: asyncio.to_thread(self._ask, key, take=True), bool
        )
        return bool(answer)

    async def release(self, key: int) -> None:
        try:
            await asyncio.to_thread(self._ask, key, take=False)
        finally:
            await self._local.release(key)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            self._taken.clear()
        self._local.close()

    def _ask(self, key: int, *, take: bool) -> bool:
        """Takes (``pg_try_advisory_lock``) or drops (``pg_advisory_unlock``) ``key``."""
        sql = "SELECT pg_try_advisory_lock(%s)" if take else "SELECT pg_advisory_unlock(%s)"
        with self._lock:
            if not take:
                # Let go whatever the unlock does: a key left here would be taken again by the
                # next session and never unlocked (session locks are re-entrant: nobody notices).
                self._taken.discard(key)
            conn = self._connection()
            try:
                row = conn.execute(sql, (key,)).fetchone()
            except psycopg.Error:
                # a broken session has lost its locks already; the next ask opens a new one
                self._conn = None
                conn.close()
                raise
            answer = bool(row and row[0])
            if take and answer:
                self._taken.add(key)
            return answer

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        conn = psycopg.connect(self._conninfo, **FENCE_SESSION)
        if self._taken:
            log.warning(
                "step fences: the database session holding %d fence(s) was lost; taking them again",
                len(self._taken),
            )
            for key in list(self._taken):
                # Best effort: a fence another process took meanwhile stays theirs.
                row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
                if not (row and row[0]):
                    self._taken.discard(key)
        self._conn = conn
        return conn


class FileFences:
    """``flock``s on bucket files beside a SQLite database.

    A process holds one open file per bucket, counted by the keys it holds in that bucket: a
    second ``flock`` on a new file of a bucket the process holds already would wait for the
    process itself (the desk holds a certificate's fence while the installer waits for the
    node's; both in one bucket never got it). A key in a bucket this process holds for
    another key is taken at once; the bucket unlocks when its last key is released."""

    def __init__(self, database: Path) -> None:
        self._dir = database.parent / f"{database.name}.fences"
        self._local = LocalFences()
        self._buckets: dict[int, tuple[int, set[int]]] = {}  # bucket -> (its file, keys)

    async def try_take(self, key: int) -> bool:
        if not await self._local.try_take(key):  # held by this process already: refused
            return False
        try:
            taken = self._lock(key)
        except BaseException:
            await self._local.release(key)
            raise
        if not taken:
            await self._local.release(key)
        return taken

    async def release(self, key: int) -> None:
        try:
            held = self._buckets.get(self._bucket(key))
            if held is not None and key in held[1]:
                held[1].discard(key)
                if not held[1]:
                    del self._buckets[self._bucket(key)]
                    os.close(held[0])  # closing the file drops its flock
        finally:
            await self._local.release(key)

    def close(self) -> None:
        buckets, self._buckets = self._buckets, {}
        for fd, _ in buckets.values():
            os.close(fd)
        self._local.close()

    @staticmethod
    def _bucket(key: int) -> int:
        return key % BUCKETS

    def _lock(self, key: int) -> bool:
        bucket = self._bucket(key)
        held = self._buckets.get(bucket)
        if held is not None:  # ours already, for another key: no second flock
            held[1].add(key)
            return True
        self._dir.mkdir(exist_ok=True)
        path = self._dir / f"{bucket:03x}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._buckets[bucket] = (fd, {key})
        return True
