"""A thin SQL layer over SQLite and PostgreSQL for what is not the event store itself:
view tables, tracking positions, the relay's position and consumer inboxes.

SQL is written once with ``?`` placeholders; ``Database.sql`` adapts it to the dialect.
"""

from __future__ import annotations

import select
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import psycopg
from eventsourcing import persistence
from psycopg_pool import ConnectionPool

# What PostgreSQL may raise when processes race on CREATE TABLE IF NOT EXISTS (the check and
# the create are not atomic): the loser finds the table made by the winner.
TABLE_CREATION_RACE = (
    psycopg.errors.UniqueViolation,
    psycopg.errors.DuplicateObject,
    psycopg.errors.DuplicateTable,
)


# How pooled connections behave when PostgreSQL goes away and comes back:
# - each is checked before it is handed out (``ConnectionCheck``), so one the server
#   dropped is replaced instead of failing the caller's first statement after a restart;
# - a caller waits at most POOL_WAIT_S for a connection, then gets an OperationalError
#   (psycopg_pool.PoolTimeout) it may retry: no thread is parked for the pool's default 30 s
#   while the database is down (eventsourcing tries each read and write 10 times);
# - a lost connection is reconnected for RECONNECT_S only: psycopg_pool's attempts back off
#   exponentially (1, 2, 4 … 32 s apart) and callers asking meanwhile open no new one, so
#   after a minute's outage the pool would stay away for half a minute more. Given up
#   sooner, the slot is free and the next caller's request opens a connection at once.
POOL_WAIT_S = 2.0
RECONNECT_S = 2.0
CONNECT_TIMEOUT_S = 5

# What says "the database cannot be reached or the connection broke": worth waiting out,
# unlike a bad statement, a conflict, a full disk or a cancelled query (the same work fails
# the same way again). PostgreSQL's by SQLSTATE: connection exceptions (class 08), shutdowns
# and a server not yet taking connections (57P01-57P03), too many connections (53300); an
# error without SQLSTATE is the client's (connection closed or refused); a pool that handed
# out no connection in time. SQLite's: a busy or unopenable database file.
_UNAVAILABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300"})
_SQLITE_UNAVAILABLE = ("database is locked", "unable to open")


def database_unavailable(exc: BaseException) -> bool:
    """True when ``exc``, or an error it was raised from, means the database was unavailable
    (down, restarting, unreachable, the connection cut) rather than that the work was wrong."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        verdict = _unavailable(current)
        if verdict is not None:
            return verdict
        if current.__cause__ is not None:
            current = current.__cause__
        else:
            current = None if current.__suppress_context__ else current.__context__
    return False


def _unavailable(exc: BaseException) -> bool | None:
    """Whether this one error says the database is unavailable; None: not a database error
    (or a wrapping of one: its cause says)."""
    if isinstance(exc, psycopg.InterfaceError):
        return True
    if isinstance(exc, psycopg.Error):
        state = exc.sqlstate
        if state is None:
            return isinstance(exc, psycopg.OperationalError)  # PoolTimeout, a closed connection
        return state.startswith("08") or state in _UNAVAILABLE_SQLSTATES
    if isinstance(exc, sqlite3.OperationalError):
        return any(text in str(exc) for text in _SQLITE_UNAVAILABLE)
    if isinstance(exc, persistence.OperationalError | persistence.InterfaceError):
        # eventsourcing's wrapping (raised from psycopg's or SQLite's error): the cause says
        return None if exc.__cause__ is not None else True
    return None


class ConnectionCheck:
    """A pool's check of an idle connection before it hands it out (psycopg_pool's ``check``):
    raises when the connection is no good, so the pool replaces it.

    A round trip only when the server said something since the connection went idle: a
    sound idle connection has nothing to read, while one whose server restarted, ended the
    session or had it cut has its goodbye (or its end) waiting on the socket. Checking every
    connection with a round trip (psycopg_pool's ``check_connection``) cost a deploy a third
    of its PostgreSQL round trips; this looks at the socket instead, at no cost.

    A connection found dead means the others idle beside it most likely are too (a restart
    ends them all): the pool's own ``check`` looks at them all at once, rather than the
    caller finding them one by one with psycopg_pool's back-off of 1, 2, 4 … s in between
    (3 s after a restart with three idle connections)."""

    def __init__(self, pool: ConnectionPool[Any] | None = None) -> None:
        self.pool = pool  # set once the pool is made, when it is made with this check

    def __call__(self, conn: psycopg.Connection[Any]) -> None:
        if conn.closed or conn.broken:
            raise psycopg.OperationalError("the pooled connection is closed")
        # poll, not select: a busy process may hold descriptors past select's 1024
        waiting = select.poll()
        waiting.register(conn.fileno(), select.POLLIN)
        if not waiting.poll(0):
            return
        try:
            ConnectionPool.check_connection(conn)
        except Exception:
            if self.pool is not None:
                self.pool.check()
            raise


def resilient_pool_settings() -> dict[str, Any]:
    """The ``psycopg_pool.ConnectionPool`` arguments every pool of hostwright's uses (give
    its ``check`` the pool once it is made)."""
    return {
        "check": ConnectionCheck(),
        "timeout": POOL_WAIT_S,
        "reconnect_timeout": RECONNECT_S,
    }


class Cursor(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ...) -> Any: ...
    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> Any: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Database:
    """One database by URL: ``sqlite:///path`` or ``postgresql://…``."""

    def __init__(self, url: str, *, pool_size: int = 4) -> None:
        self.url = url
        self.dialect = "sqlite" if url.startswith("sqlite:") else "postgresql"
        self._pool: ConnectionPool[psycopg.Connection[Any]] | None = None
        self._pool_size = pool_size
        self._lock = threading.Lock()
        self._tables_made: set[str] = set()
        self._tables_lock = threading.Lock()

    @property
    def sqlite_path(self) -> str:
        return sqlite_path(self.url)

    def sql(self, text: str) -> str:
        return text if self.dialect == "sqlite" else text.replace("?", "%s")

    def create_table(self, name: str, columns: str) -> None:
        """``CREATE TABLE IF NOT EXISTS name (columns)``, once per table for this object.
        Several threads may ask at once (one of them creates it), and on PostgreSQL another
        process may win the race between the check and the create: neither is an error."""
        with self._tables_lock:
            if name in self._tables_made:
                return
            try:
                with self.transaction() as cur:
                    cur.execute(f"CREATE TABLE IF NOT EXISTS {name} ({columns})")
            except TABLE_CREATION_RACE:
                pass  # the table is there: another process created it a moment ago
            self._tables_made.add(name)

    @contextmanager
    def transaction(self) -> Iterator[Cursor]:
        """One transaction; commits on success, rolls back on error."""
        if self.dialect == "sqlite":
            conn = sqlite3.connect(self.sqlite_path, timeout=30, isolation_level=None)
            try:
                conn.execute("PRAGMA busy_timeout = 30000")
                conn.execute("BEGIN IMMEDIATE")
                cursor = conn.cursor()
                try:
                    yield _SqliteCursor(cursor, self)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            finally:
                conn.close()
        else:
            with (
                self._postgres_pool().connection() as pg,
                pg.transaction(),
                pg.cursor() as cur,
            ):
                yield _PostgresCursor(cur, self)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def _postgres_pool(self) -> ConnectionPool[psycopg.Connection[Any]]:
        with self._lock:
            if self._pool is None:
                settings = resilient_pool_settings()
                self._pool = ConnectionPool(
                    postgres_conninfo(self.url),
                    kwargs={"connect_timeout": CONNECT_TIMEOUT_S},
                    min_size=1,
                    max_size=self._pool_size,
                    open=True,
                    **settings,
                )
                settings["check"].pool = self._pool
            return self._pool


class _SqliteCursor:
    def __init__(self, cursor: sqlite3.Cursor, db: Database) -> None:
        self._cursor = cursor
        self._db = db

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._cursor.execute(sql, params)

    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> Any:
        return self._cursor.executemany(sql, params)

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()


class _PostgresCursor:
    def __init__(self, cursor: psycopg.Cursor[Any], db: Database) -> None:
        self._cursor = cursor
        self._db = db

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._cursor.execute(self._db.sql(sql), params)

    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> Any:
        return self._cursor.executemany(self._db.sql(sql), params)

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()


def sqlite_path(url: str) -> str:
    """``sqlite:///relative.db`` and ``sqlite:////abs/path.db`` → the file path."""
    if not url.startswith("sqlite:///"):
        raise ValueError(f"not a sqlite URL: {url}")
    return url[len("sqlite:///") :]


def postgres_conninfo(url: str) -> str:
    return url.replace("postgres://", "postgresql://", 1)


def postgres_env(url: str) -> dict[str, str]:
    """eventsourcing's POSTGRES_* variables for a ``postgresql://user:pass@host:port/db`` URL."""
    parts = urlsplit(postgres_conninfo(url))
    env = {
        "POSTGRES_DBNAME": unquote(parts.path.lstrip("/")) or "postgres",
        "POSTGRES_HOST": parts.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(parts.port or 5432),
        "POSTGRES_USER": unquote(parts.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
    }
    return env
