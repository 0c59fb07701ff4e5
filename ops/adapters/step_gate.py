"""The role handlers' step gate (the port: handlers/step_fence.py ``StepGate``).

``step_gate(database_url, store)``:
- PostgreSQL: ``PostgresGate``, on one asyncio connection of the handler process's own: one
  statement takes the fence (``pg_try_advisory_lock``, a session lock as
  ops/adapters/step_fence.py's ``PostgresFences`` takes, so the two exclude each other) and
  reads, in the same round trip, the task's latest state-setting event
  (``domain.task.STATE_EVENTS``), which says whether the attempt is current
  (``is_current_attempt``). No thread hand-off and no aggregate rebuilt: what a step paid for
  a fence and a ``StoreAttempts`` read was about a third of a role handler's time outside
  its node commands.

  Steps entering while a round is under way go together in the next one (one statement:
  over arrays, or without them for a round of one), as the consumer's inbox writes do: in a
  burst, two statements of its own for every step were a fifth of the role handlers' CPU and
  of the database's.

  A step leaving lets its fence go in this process at once and does not wait for the server:
  the unlock rides with the next round's entries, in their statement (a CTE run before the
  entries' locks), or, when no entry comes for ``LEAVE_DELAY_S`` (50 ms), goes in a round of
  its own, so in a busy handler most steps cost one statement, not two. Another process
  asking for that fence meanwhile finds it held and asks again soon after (handlers/
  step_fence.py: the first wait is short). An unlock is asked only for a key this session
  holds, and runs on that session only: a session lost meanwhile took its locks with it,
  and the fences still held here are taken again on the next one.
- SQLite: ``GateOfParts`` over the ``flock`` fences and ``StoreAttempts``.

The connection is opened on first use with TCP keepalives (a vanished host's session, and
its fences, end within about half a minute); a session lost while fences are held is
replaced, and those fences are taken again where no one else took them meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

import psycopg
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import get_topic
from psycopg.sql import SQL, Identifier, Literal

from domain.task import STATE_EVENTS, is_current_attempt
from handlers.step_fence import Entry, GateOfParts, LocalFences, StepGate
from ops.adapters.current_attempts import StoreAttempts
from ops.adapters.step_fence import FENCE_SESSION, ShieldedTakes, step_fences
from ops.store.database import postgres_conninfo
from ops.store.event_decoding import EventDecoder
from ops.store.event_store import EventStore

log = logging.getLogger(__name__)

# how long a fence let go here waits for an entry to carry its unlock before it goes alone
# (later still when a round is under way then)
LEAVE_DELAY_S = 0.05


def step_gate(database_url: str, store: EventStore) -> StepGate:
    """The gate for the system whose database is at ``database_url`` (``store`` its events)."""
    if isinstance(store.recorder, PostgresApplicationRecorder):
        return PostgresGate(database_url, store)
    return GateOfParts(step_fences(database_url), StoreAttempts(store))


class PostgresGate:
    """Session advisory locks and the current-attempt read, in rounds of statements."""

    def __init__(self, database_url: str, store: EventStore) -> None:
        recorder = store.recorder
        assert isinstance(recorder, PostgresApplicationRecorder)
        self._conninfo = postgres_conninfo(database_url)
        self._enter_sql = _enter_statement(recorder)
        self._enter_one_sql = _enter_one_statement(recorder)
        self._leave_enter_sql = _leave_enter_statement(recorder)
        self._leave_enter_one_sql = _leave_enter_one_statement(recorder)
        self._decode = EventDecoder(store.app.mapper).decode_row
        self._local = LocalFences()  # session locks are re-entrant: guard this process first
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._lock = asyncio.Lock()  # one round at a time on the connection
        self._taken: set[int] = set()  # the keys this session holds (taken again on a new one)
        self._takes = ShieldedTakes(self._local, self.leave)
        self._waiting: list[_Request] = []  # entries asked while a round is under way
        self._leaving: list[tuple[int, int]] = []  # fences let go here, not yet on the server
        self._session = 0  # counts the sessions opened: an unlock is for its own session only
        self._flush: asyncio.TimerHandle | None = None
        self._rounds: asyncio.Future[None] | None = None
        self._closed = False

    async def enter(self, key: int, task_id: str, attempt: int) -> Entry:
        try:
            task = uuid.UUID(task_id)
        except ValueError:
            task = None  # no such task can be recorded: taken, current unknown
        row = await self._takes.take(key, lambda: self._ask(_Request(key, task)), _took)
        if row is None or not row[0]:
            return Entry(False)
        _, version, topic, state = row
        if task is None or topic is None:
            return Entry(True)
        try:
            latest = self._decode((0, task, version, topic, state))
            return Entry(True, is_current_attempt(latest, attempt))
        except Exception:  # held now, whatever the event says: the attempt runs, as unknown
            log.warning("cannot tell if attempt %d of task %s is current", attempt, task_id)
            return Entry(True)

    async def leave(self, key: int) -> None:
        """Lets the fence go in this process at once, and on the server with the next
        entries' statement or, when none comes for ``LEAVE_DELAY_S``, in a round of its own."""
        held = key in self._taken
        self._taken.discard(key)  # not taken again by a next session (session locks count)
        try:
            # a key this session does not hold (its re-take on a new session failed) is not
            # unlocked: an unlock riding with an entry of that key could undo the entry
            if held and not self._closed:
                self._leaving.append((key, self._session))
                if self._flush is None:
                    loop = asyncio.get_running_loop()
                    self._flush = loop.call_later(LEAVE_DELAY_S, self._flush_leaves)
        finally:
            await self._local.release(key)

    async def close(self) -> None:
        """Refuses what is asked from now on and lets the round under way end, then ends the
        session (and with it every fence it holds)."""
        self._closed = True
        if self._flush is not None:
            self._flush.cancel()  # the unlocks not run go with the session
            self._flush = None
        rounds = self._rounds
        if rounds is not None:
            await asyncio.wait([rounds])
        async with self._lock:
            conn, self._conn = self._conn, None
            self._taken.clear()
            if conn is not None:
                await conn.close()
        self._local.close()

    async def _ask(self, request: _Request) -> tuple[Any, ...]:
        """``request``'s answer, from the round it goes in (this one's, or the next)."""
        if self._closed:
            raise RuntimeError("the step gate is closed")
        self._waiting.append(request)
        self._start_rounds()
        return await asyncio.shield(request.answer)

    def _flush_leaves(self) -> None:
        """No entry came to carry the unlocks: they go in a round of their own."""
        self._flush = None
        if self._leaving and not self._closed:
            self._start_rounds()

    def _start_rounds(self) -> None:
        if self._rounds is None or self._rounds.done():
            self._rounds = asyncio.ensure_future(self._run_rounds())

    async def _run_rounds(self) -> None:
        while self._waiting or self._leaving:
            round_, self._waiting = self._waiting, []
            leaving, self._leaving = self._leaving, []
            if leaving and self._flush is not None:  # they ride now: a later leave waits anew
                self._flush.cancel()
                self._flush = None
            try:
                async with self._lock:
                    await self._run_round(round_, leaving)
            except BaseException as exc:
                for request in round_:
                    if not request.answer.done():
                        request.answer.set_exception(_failed_round(exc))
                        request.answer.exception()  # told to whoever still waits: no warning
                # what the round took or let go is unknown (a round cut off half-way: the
                # loop is closing): the session goes, and every fence with it (those steps
                # still hold are taken again on the next one)
                await self._drop_connection()
                if not isinstance(exc, Exception):
                    raise

    async def _run_round(self, entering: list[_Request], leaving: list[tuple[int, int]]) -> None:
        """One statement: the round's unlocks, those of the session still open (a new
        session holds none of the old one's locks), with its entries."""
        await self._connection()
        unlocks = [key for key, session in leaving if session == self._session]
        if not entering:
            if len(unlocks) == 1:
                await self._execute(_LEAVE_ONE, (unlocks[0],))
            elif unlocks:
                await self._execute(_LEAVE, (unlocks,))
            return
        if len(entering) == 1:
            key, task = entering[0].key, entering[0].task
            if unlocks:
                rows = await self._execute_all(self._leave_enter_one_sql, (unlocks, key, task))
            else:
                rows = await self._execute_all(self._enter_one_sql, (key, task))
        else:
            keys = [request.key for request in entering]
            tasks = [request.task for request in entering]
            if unlocks:
                rows = await self._execute_all(self._leave_enter_sql, (unlocks, keys, tasks))
            else:
                rows = await self._execute_all(self._enter_sql, (keys, tasks))
        for request, row in zip(entering, rows, strict=True):
            if row[0]:
                self._taken.add(request.key)
            request.answer.set_result(row)

    async def _execute(self, sql: bytes, params: tuple[Any, ...]) -> tuple[Any, ...]:
        rows = await self._execute_all(sql, params)
        assert rows
        return rows[0]

    async def _execute_all(self, sql: bytes, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        conn = await self._connection()
        try:
            cursor = await conn.execute(sql, params, prepare=True, binary=True)
            rows = await cursor.fetchall()
        except psycopg.Error:
            # a broken session has lost its locks already; the next statement opens a new one
            await self._drop_connection()
            raise
        return [tuple(row) for row in rows]

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        conn = await psycopg.AsyncConnection.connect(self._conninfo, **FENCE_SESSION)
        self._session += 1
        if self._taken:
            log.warning(
                "step gate: the database session holding %d fence(s) was lost; taking them again",
                len(self._taken),
            )
            try:
                for key in list(self._taken):
                    # best effort: a fence another process took meanwhile stays theirs
                    cursor = await conn.execute("SELECT pg_try_advisory_lock(%s)", (key,))
                    row = await cursor.fetchone()
                    if not (row and row[0]):
                        self._taken.discard(key)
                        # nor let go: a step that left it meanwhile asked this session for an
                        # unlock, which would ride with, and could undo, a later entry of it
                        self._leaving = [(k, s) for k, s in self._leaving if k != key]
            except BaseException:
                await conn.close()  # with the fences it took again: none is left unowned
                raise
        self._conn = conn
        return conn


@dataclass
class _Request:
    """A step entering ``key`` (``task``: its id, None when it cannot be recorded);
    ``answer``: the statement's row for it."""

    key: int
    task: uuid.UUID | None
    answer: asyncio.Future[tuple[Any, ...]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


def _failed_round(exc: BaseException) -> Exception:
    """What each caller of a failed round is told: its error, or that it was cut off."""
    if isinstance(exc, Exception):
        return exc
    return RuntimeError("the step gate's round was cut off")


# every key of a round's leaves unlocked, when no entry came to carry them (a key not held is
# a warning in the server's log); one leave alone is unlocked without an array
# (an array to build and unnest made a lone step's statements cost about half as much again)
_LEAVE = b"SELECT count(pg_advisory_unlock(k)) FROM unnest(%s::bigint[]) AS k"
_LEAVE_ONE = b"SELECT pg_advisory_unlock(%s::bigint)"


def _enter_statement(recorder: PostgresApplicationRecorder) -> bytes:
    """Per key of a round's entries, in their order: the fence taken and the task's latest
    state-setting event read, in one statement (a task with no such event yet, or none at all,
    reads as NULLs). No two entries of a round have one key: this process holds each key it
    asks for (``LocalFences``) until its leave is asked, and the unlocks asked before an entry
    run in its statement or an earlier one."""
    return _rendered(
        "SELECT pg_try_advisory_lock(asked.key), "
        "latest.originator_version, latest.topic, latest.state "
        "FROM unnest(%s::bigint[], %s::uuid[]) WITH ORDINALITY AS asked(key, task, n) "
        "LEFT JOIN LATERAL ({latest}) AS latest ON true "
        "ORDER BY asked.n",
        recorder,
    )


# the unlocks that ride with a round's entries. A CTE that calls volatile functions is
# scanned once; the entries' rows join its one row, so in practice it runs before their locks
# are taken. The order does not matter anyway: an unlock is asked only for a key this
# session holds, so a key unlocked and taken again in one statement is held once either way
# round (session locks count: 1 - 1 + 1 or 1 + 1 - 1)
_RELEASED = (
    "WITH released AS MATERIALIZED ("
    "  SELECT count(pg_advisory_unlock(k)) AS n FROM unnest(%s::bigint[]) AS k"
    ") "
)


def _leave_enter_statement(recorder: PostgresApplicationRecorder) -> bytes:
    """``_enter_statement`` that first lets go of the keys of its first parameter."""
    return _rendered(
        _RELEASED + "SELECT pg_try_advisory_lock(asked.key), "
        "latest.originator_version, latest.topic, latest.state "
        "FROM released, unnest(%s::bigint[], %s::uuid[]) WITH ORDINALITY AS asked(key, task, n) "
        "LEFT JOIN LATERAL ({latest}) AS latest ON true "
        "ORDER BY asked.n",
        recorder,
    )


def _leave_enter_one_statement(recorder: PostgresApplicationRecorder) -> bytes:
    """``_enter_one_statement`` that first lets go of the keys of its first parameter."""
    return _rendered(
        _RELEASED + "SELECT pg_try_advisory_lock(asked.key), "
        "latest.originator_version, latest.topic, latest.state "
        "FROM released, (SELECT %s::bigint AS key, %s::uuid AS task) AS asked "
        "LEFT JOIN LATERAL ({latest}) AS latest ON true",
        recorder,
    )


def _enter_one_statement(recorder: PostgresApplicationRecorder) -> bytes:
    """``_enter_statement`` for a round of one entry: its key and task without arrays."""
    return _rendered(
        "SELECT pg_try_advisory_lock(asked.key), "
        "latest.originator_version, latest.topic, latest.state "
        "FROM (SELECT %s::bigint AS key, %s::uuid AS task) AS asked "
        "LEFT JOIN LATERAL ({latest}) AS latest ON true",
        recorder,
    )


def _rendered(statement: str, recorder: PostgresApplicationRecorder) -> bytes:
    """``statement`` with ``{latest}``, the asked task's latest state-setting event, written
    in; rendered once, not at each round."""
    latest = SQL(
        "SELECT originator_version, topic, state FROM {schema}.{table}"
        "  WHERE originator_id = asked.task AND topic IN ({topics})"
        "  ORDER BY originator_version DESC LIMIT 1"
    ).format(
        schema=Identifier(recorder.datastore.schema),
        table=Identifier(recorder.events_table_name),
        # the topics are the code's own, fixed: written into the statement, not sent each time
        topics=SQL(", ").join(Literal(get_topic(cls)) for cls in STATE_EVENTS),
    )
    return SQL(statement).format(latest=latest).as_bytes(None)


def _took(row: tuple[Any, ...]) -> bool:
    """Whether the gate's statement took the key (its first column)."""
    return bool(row[0])
