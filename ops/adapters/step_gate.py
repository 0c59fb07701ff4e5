"""The role handlers' step gate (the port: handlers/step_fence.py ``StepGate``).

``step_gate(database_url, store)``:
- PostgreSQL: ``PostgresGate``, one statement per step on one asyncio connection of the
  handler process's own: it takes the fence (``pg_try_advisory_lock``, a session lock as
  ops/adapters/step_fence.py's ``PostgresFences`` takes, so the two exclude each other) and
  reads, in the same round trip, the task's latest state-setting event
  (``domain.task.STATE_EVENTS``), which says whether the attempt is current
  (``is_current_attempt``). Leaving is one more statement. No thread hand-off and no
  aggregate rebuilt: what a step paid for a fence and a ``StoreAttempts`` read was about a
  third of a role handler's time outside its node commands.
- SQLite: ``GateOfParts`` over the ``flock`` fences and ``StoreAttempts``.

The connection is opened on first use with TCP keepalives (a vanished host's session, and
its fences, end within about half a minute); a session lost while fences are held is
replaced, and those fences are taken again where no one else took them meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import psycopg
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import get_topic
from psycopg.sql import SQL, Composed, Identifier, Literal

from domain.task import STATE_EVENTS, is_current_attempt
from handlers.step_fence import Entry, GateOfParts, LocalFences, StepGate
from ops.adapters.current_attempts import StoreAttempts
from ops.adapters.step_fence import FENCE_SESSION, ShieldedTakes, step_fences
from ops.store.database import postgres_conninfo
from ops.store.event_decoding import EventDecoder
from ops.store.event_store import EventStore

log = logging.getLogger(__name__)


def step_gate(database_url: str, store: EventStore) -> StepGate:
    """The gate for the system whose database is at ``database_url`` (``store`` its events)."""
    if isinstance(store.recorder, PostgresApplicationRecorder):
        return PostgresGate(database_url, store)
    return GateOfParts(step_fences(database_url), StoreAttempts(store))


class PostgresGate:
    """Session advisory locks and the current-attempt read, one statement each step."""

    def __init__(self, database_url: str, store: EventStore) -> None:
        recorder = store.recorder
        assert isinstance(recorder, PostgresApplicationRecorder)
        self._conninfo = postgres_conninfo(database_url)
        self._enter_sql = _enter_statement(recorder)
        self._decode = EventDecoder(store.app.mapper).decode_row
        self._local = LocalFences()  # session locks are re-entrant: guard this process first
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._lock = asyncio.Lock()  # one statement at a time on the connection
        self._taken: set[int] = set()  # the keys this session holds (taken again on a new one)
        self._takes = ShieldedTakes(self._local, self.leave)

    async def enter(self, key: int, task_id: str, attempt: int) -> Entry:
        try:
            task = uuid.UUID(task_id)
        except ValueError:
            task = None  # no such task can be recorded: taken, current unknown
        row = await self._takes.take(key, lambda: self._enter(key, task), _took)
        if row is None or not row[0]:
            return Entry(False)
        _, version, topic, state = row
        if task is None or topic is None:
            return Entry(True)
        latest = self._decode((0, task, version, topic, state))
        return Entry(True, is_current_attempt(latest, attempt))

    async def leave(self, key: int) -> None:
        try:
            async with self._lock:
                # let go whatever the unlock does: a key left here would be taken again by
                # the next session and never unlocked (session locks are re-entrant)
                self._taken.discard(key)
                await self._execute("SELECT pg_advisory_unlock(%s)", (key,))
        finally:
            await self._local.release(key)

    async def close(self) -> None:
        async with self._lock:
            conn, self._conn = self._conn, None
            self._taken.clear()
            if conn is not None:
                await conn.close()
        self._local.close()

    async def _enter(self, key: int, task: uuid.UUID | None) -> tuple[Any, ...]:
        async with self._lock:
            row = await self._execute(self._enter_sql, (key, task))
            if row[0]:
                self._taken.add(key)
            return row

    async def _execute(self, sql: str | Composed, params: tuple[Any, ...]) -> tuple[Any, ...]:
        conn = await self._connection()
        try:
            cursor = await conn.execute(sql, params, prepare=True, binary=True)
            row = await cursor.fetchone()
        except psycopg.Error:
            # a broken session has lost its locks already; the next statement opens a new one
            self._conn = None
            await conn.close()
            raise
        assert row is not None
        return tuple(row)

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        conn = await psycopg.AsyncConnection.connect(self._conninfo, **FENCE_SESSION)
        if self._taken:
            log.warning(
                "step gate: the database session holding %d fence(s) was lost; taking them again",
                len(self._taken),
            )
            for key in list(self._taken):
                # best effort: a fence another process took meanwhile stays theirs
                cursor = await conn.execute("SELECT pg_try_advisory_lock(%s)", (key,))
                row = await cursor.fetchone()
                if not (row and row[0]):
                    self._taken.discard(key)
        self._conn = conn
        return conn


def _enter_statement(recorder: PostgresApplicationRecorder) -> Composed:
    """The fence taken and the task's latest state-setting event read, in one statement (a
    task with no such event yet, or none at all, reads as NULLs)."""
    return SQL(
        "SELECT pg_try_advisory_lock(%s), latest.originator_version, latest.topic, latest.state "
        "FROM (SELECT 1) AS one LEFT JOIN LATERAL ("
        "  SELECT originator_version, topic, state FROM {schema}.{table}"
        "  WHERE originator_id = %s AND topic IN ({topics})"
        "  ORDER BY originator_version DESC LIMIT 1"
        ") AS latest ON true"
    ).format(
        schema=Identifier(recorder.datastore.schema),
        table=Identifier(recorder.events_table_name),
        # the topics are the code's own, fixed: written into the statement, not sent each time
        topics=SQL(", ").join(Literal(get_topic(cls)) for cls in STATE_EVENTS),
    )


def _took(row: tuple[Any, ...]) -> bool:
    """Whether the gate's statement took the key (its first column)."""
    return bool(row[0])
