"""Two attempts of one step never run at once on a node, across handler processes.

Two role handlers, each with fences of its own (what two handler processes have: their own
database session, their own open files), on SQLite and on PostgreSQL, take the same step at
the same moment while the node's apply is slow: the node's command record shows the second
attempt's commands only after the first attempt's last one ended, and the thing was made once.
A fence held by a process that then dies lets the waiting attempt run.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from domain.retry_policy import RetryPolicy
from handlers.hestia_driver import NodeAccess
from handlers.messages import TaskMessage
from handlers.role_handler import RoleHandler
from handlers.step_fence import StepFences, StepGate, fence_key
from ops.adapters import step_gate as step_gate_module
from ops.adapters.step_fence import BUCKETS, FileFences, step_fences
from ops.adapters.step_gate import step_gate
from ops.devtools.simnode import Faults, SimNode, read_command_log
from ops.store.event_store import EventStore
from tests.fakes.publisher import RecordingPublisher
from tests.support.budget import budget
from tests.support.planned_tasks import at, plan
from tests.support.simnode_driver import access_for, client_key_file, start_node

USER = {"user": "alice", "password": "pw-Secret9", "email": "alice@example.com", "owner": "7"}


@dataclass(frozen=True)
class Delivered:
    body: bytes


class Directory:
    def __init__(self, access: NodeAccess) -> None:
        self.access = access

    async def node_access(self, server_id: str) -> NodeAccess | None:
        return self.access if server_id == self.access.server_id else None


def ensure_user(attempt: int) -> TaskMessage:
    return TaskMessage(
        task_id="t-1",
        attempt=attempt,
        service_id="svc-1",
        step="web.user",
        role="web",
        action="ensure_user",
        server_id="web1",
        params=USER,
    )


@dataclass
class Handler:
    role_handler: RoleHandler
    publisher: RecordingPublisher

    async def handle(self, task: TaskMessage) -> None:
        await self.role_handler.handle(Delivered(task.to_json()))


@dataclass
class Setup:
    node: SimNode
    handlers: list[Handler]
    database_url: str


@pytest.fixture
async def setup(tmp_path: Path, database_url: str) -> AsyncIterator[Setup]:
    node = await start_node(tmp_path)
    key_path, public = client_key_file(tmp_path / "keys")
    node.authorize(public)
    directory = Directory(access_for(node, key_path))
    handlers, stores = [], []
    for _ in range(2):  # as two handler processes: fences (the gate) of their own
        publisher = RecordingPublisher()
        stores.append(EventStore(database_url))
        role_handler = RoleHandler(
            "web",
            directory=directory,
            publisher=publisher,
            heartbeat_interval=0.1,
            gate=step_gate(database_url, stores[-1]),
            fence_poll_s=0.1,
        )
        handlers.append(Handler(role_handler, publisher))
    try:
        yield Setup(node, handlers, database_url)
    finally:
        for handler in handlers:
            await handler.role_handler.close()
        for store in stores:
            store.close()
        await node.stop()


def commands(node: SimNode) -> list[dict[str, Any]]:
    return sorted(read_command_log(node.data_dir), key=lambda e: e["started"])


def assert_one_at_a_time(entries: list[dict[str, Any]]) -> None:
    """Each command ended before the next one began (the record's own times)."""
    for before, after in itertools.pairwise(entries):
        ended = datetime.fromisoformat(before["finished"])
        began = datetime.fromisoformat(after["started"])
        assert ended <= began, f"{before['argv']} overlapped {after['argv']}: {entries}"


@pytest.mark.parametrize("second_attempt", [1, 2], ids=["redelivered", "next-attempt"])
async def test_two_attempts_of_one_step_never_overlap_on_the_node(
    setup: Setup, second_attempt: int
) -> None:
    setup.node.set_faults(Faults(slow_commands={"v-add-user": 1500}))
    first, second = setup.handlers
    await asyncio.gather(first.handle(ensure_user(1)), second.handle(ensure_user(second_attempt)))

    entries = commands(setup.node)
    assert_one_at_a_time(entries)
    adds = [e for e in entries if e["argv"][0] == "v-add-user"]
    assert len(adds) == 1 and adds[0]["changed"], entries
    [one], [other] = first.publisher.results(), second.publisher.results()
    assert (one.outcome, other.outcome) == ("succeeded", "succeeded")
    assert sorted([one.changed, other.changed]) == [False, True]  # made once, then found made
    waited = other if one.changed else one
    assert any("another attempt is running" in line for line in waited.log), waited.log


async def test_a_waiting_attempt_heartbeats_and_runs_once_the_holder_dies(setup: Setup) -> None:
    handler = setup.handlers[0]
    task = ensure_user(2)
    other_process: StepFences = step_fences(setup.database_url)
    assert await other_process.try_take(fence_key(task))
    running = asyncio.create_task(handler.handle(task))
    try:

        async def heartbeats(count: int) -> None:
            while len(handler.publisher.heartbeats()) < count:
                await asyncio.sleep(0.05)

        await asyncio.wait_for(heartbeats(5), budget(30))
        assert not running.done() and read_command_log(setup.node.data_dir) == []
        other_process.close()  # the holder's process dies: its session, its open files go
        await asyncio.wait_for(running, budget(30))
    finally:
        other_process.close()
        running.cancel()
    [result] = handler.publisher.results()
    assert result.outcome == "succeeded" and result.changed, result
    assert {b.attempt for b in handler.publisher.heartbeats()} == {2}


async def test_another_service_does_not_wait_for_the_fence(setup: Setup) -> None:
    second = setup.handlers[1]
    mine = ensure_user(1)
    held: StepFences = step_fences(setup.database_url)
    try:
        assert await held.try_take(fence_key(mine))
        other_service = TaskMessage(**{**mine.__dict__, "service_id": "svc-2"})
        await asyncio.wait_for(second.handle(other_service), budget(30))
        [result] = second.publisher.results()
        assert result.outcome == "succeeded"
    finally:
        held.close()


class Fences:
    """A process's fences as these tests use them: ``PostgresFences`` (the SSL desk's) or the
    role handlers' ``PostgresGate``, whose advisory locks are the same."""

    def __init__(self, url: str, kind: str) -> None:
        self._store = EventStore(url) if kind == "gate" else None
        self._gate = step_gate(url, self._store) if self._store else None
        self._fences = None if self._gate else step_fences(url)

    async def take(self, key: int) -> bool:
        if self._gate is not None:
            return (await self._gate.enter(key, "no-such-task", 1)).taken
        assert self._fences is not None
        return await self._fences.try_take(key)

    async def release(self, key: int) -> None:
        if self._gate is not None:
            await self._gate.leave(key)
        else:
            assert self._fences is not None
            await self._fences.release(key)

    async def close(self) -> None:
        if self._gate is not None:
            await self._gate.close()
        if self._fences is not None:
            self._fences.close()
        if self._store is not None:
            self._store.close()


def drop_fence_sessions(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'hostwright step fences' AND datname = current_database()"
        )


async def taken_once_the_session_is_found_gone(fences: Fences, key: int) -> bool:
    """``fences.take(key)``, asked again when the statement finds the session gone (the
    gate's unlock, riding with it or sent on its own just before, may be what finds it)."""
    try:
        return await fences.take(key)
    except psycopg.OperationalError:
        return await fences.take(key)


@pytest.mark.parametrize("kind", ["fences", "gate"])
async def test_fences_held_when_the_database_session_drops_are_taken_again(
    fresh_postgres_url: str, kind: str
) -> None:
    """A PostgreSQL restart or a cut connection ends the fence session and frees its locks: the
    next use opens a new session and takes again the fences its steps still hold."""
    mine, theirs = Fences(fresh_postgres_url, kind), Fences(fresh_postgres_url, "fences")
    try:
        assert await mine.take(1)
        drop_fence_sessions(fresh_postgres_url)
        with pytest.raises(psycopg.OperationalError):
            await mine.take(2)  # the dead session is found out
        assert await mine.take(2)  # a new one, holding 1 again
        assert not await theirs.take(1) and not await theirs.take(2)
        await mine.release(1)  # the gate's unlock reaches the server a moment later
        assert await asyncio.wait_for(eventually_taken(theirs, 1), budget(30))
        assert not await theirs.take(2)
    finally:
        await mine.close()
        await theirs.close()


@pytest.mark.parametrize("kind", ["fences", "gate"])
async def test_a_fence_released_after_its_session_dropped_is_not_taken_again(
    fresh_postgres_url: str, kind: str
) -> None:
    """The session drops while a step runs: the step's release fails (the session is gone),
    yet the fence is let go for good: the next session of this process does not take it
    again, and another process can take it."""
    mine, theirs = Fences(fresh_postgres_url, kind), Fences(fresh_postgres_url, "fences")
    try:
        assert await mine.take(1)
        drop_fence_sessions(fresh_postgres_url)
        if kind == "fences":
            with pytest.raises(psycopg.OperationalError):
                await mine.release(1)  # the dead session is found out by the release
            assert await mine.take(2)  # a new session: it must not take 1 again
        else:
            await mine.release(1)  # let go here; the server is told with the next statement
            assert await taken_once_the_session_is_found_gone(mine, 2)
        assert await asyncio.wait_for(eventually_taken(theirs, 1), budget(30))
        assert not await theirs.take(2)
    finally:
        await mine.close()
        await theirs.close()


@pytest.mark.parametrize("kind", ["fences", "gate"])
async def test_a_caller_cancelled_while_its_statement_runs_leaves_the_fence_free(
    fresh_postgres_url: str, kind: str
) -> None:
    """A step cancelled (its handler stopping) while the statement taking its fence is under
    way: the statement cannot be cut off half-way, so it finishes, and what it took is let go
    after it — neither another process nor this one finds the fence held by nobody."""
    mine, theirs = Fences(fresh_postgres_url, kind), Fences(fresh_postgres_url, "fences")
    try:
        taking = asyncio.create_task(mine.take(1))
        await asyncio.sleep(0)  # under way: the session is being opened, then the statement
        taking.cancel()
        with pytest.raises(asyncio.CancelledError):
            await taking

        async def taken_by(fences: Fences) -> None:
            while not await fences.take(1):
                await asyncio.sleep(0.05)

        await asyncio.wait_for(taken_by(theirs), budget(30))
        await theirs.release(1)
        # nor is it left held in this process (its statement may only run now: let it end)
        await asyncio.wait_for(taken_by(mine), budget(30))
    finally:
        await mine.close()
        await theirs.close()


@dataclass
class GatePair:
    """A handler process's gate on a fresh database, and another process's fences."""

    url: str
    store: EventStore
    gate: StepGate
    theirs: Fences


@pytest.fixture
async def pair(fresh_postgres_url: str) -> AsyncIterator[GatePair]:
    store = EventStore(fresh_postgres_url)
    gate = step_gate(fresh_postgres_url, store)
    theirs = Fences(fresh_postgres_url, "fences")
    try:
        yield GatePair(fresh_postgres_url, store, gate, theirs)
    finally:
        await gate.close()
        await theirs.close()
        store.close()


async def test_steps_entering_and_leaving_together_share_statements_each_with_its_answer(
    pair: GatePair,
) -> None:
    """Many steps of one handler process entering at once: each gets its own answer (its fence,
    and whether its attempt is current), in fewer statements than steps; leaving at once frees
    every fence for another process, again in fewer statements (here one, sent when no entry
    came to carry the unlocks)."""
    gate, theirs = pair.gate, pair.theirs
    asked_with = statements_of(gate)
    keys = range(100, 132)
    assert await theirs.take(131)  # another process holds one of them
    entries = await asyncio.gather(*(gate.enter(k, "no-such-task", 1) for k in keys))
    assert [entry.taken for entry in entries] == [k != 131 for k in keys]
    assert 0 < len(asked_with) < len(keys)
    for k in keys:
        assert not await theirs.take(k) or k == 131
    asked_with.clear()
    await asyncio.gather(*(gate.leave(k) for k in keys if k != 131))
    for k in keys:
        if k != 131:
            assert await asyncio.wait_for(eventually_taken(theirs, k), budget(30))
    assert len(asked_with) == 1


def statements_of(gate: StepGate) -> list[bytes]:
    """The statements ``gate`` (a ``PostgresGate``) sends from now on, in order, as sent."""
    sent: list[bytes] = []
    execute_all = gate._execute_all  # type: ignore[attr-defined]

    async def recorded(sql: bytes, params: tuple[Any, ...]) -> Any:
        sent.append(sql)
        return await execute_all(sql, params)

    gate._execute_all = recorded  # type: ignore[attr-defined]
    return sent


def planned_task(store: EventStore, service_id: str, *, superseded: bool) -> str:
    """A task recorded with attempt 1 dispatched (and, if ``superseded``, its lease lapsed
    since, so attempt 1 is no longer current); its id."""
    task = plan("web-user", service_id=service_id)
    task.dispatch(at(0), 30)
    if superseded:
        task.expire_lease(at(31), RetryPolicy(), 0.5)
    store.save(task)
    return str(task.id)


async def test_entries_sharing_a_statement_each_learn_whether_their_own_attempt_is_current(
    pair: GatePair,
) -> None:
    store, gate = pair.store, pair.gate
    current = planned_task(store, "svc-1", superseded=False)
    stale = planned_task(store, "svc-2", superseded=True)
    unknown = "6f1c4e3a-0d3b-4f7e-9a51-2f1f7d3c0b11"  # a task id no event has
    asked = [current, stale, unknown, "not-a-uuid"]
    entries = await asyncio.gather(
        *(gate.enter(200 + i, task_id, 1) for i, task_id in enumerate(asked))
    )
    assert [(entry.taken, entry.current) for entry in entries] == [
        (True, True),
        (True, False),
        (True, None),
        (True, None),
    ]


async def test_an_entry_alone_learns_whether_its_attempt_is_current_and_its_leave_frees_it(
    pair: GatePair,
) -> None:
    """A step entering or leaving alone (a round of one, asked without arrays) is told as much
    as one sharing a round."""
    store, gate, theirs = pair.store, pair.gate, pair.theirs
    asked_with = statements_of(gate)
    current = planned_task(store, "svc-1", superseded=False)
    stale = planned_task(store, "svc-2", superseded=True)
    unknown = "6f1c4e3a-0d3b-4f7e-9a51-2f1f7d3c0b11"  # a task id no event has
    asked = [current, stale, unknown, "not-a-uuid"]
    entries = [await gate.enter(500 + i, task_id, 1) for i, task_id in enumerate(asked)]
    assert [(entry.taken, entry.current) for entry in entries] == [
        (True, True),
        (True, False),
        (True, None),
        (True, None),
    ]
    assert await theirs.take(600)  # held elsewhere: not taken, and not left taken here
    assert not (await gate.enter(600, current, 1)).taken
    for i in range(len(asked)):
        assert not await theirs.take(500 + i)
        await gate.leave(500 + i)
        assert await asyncio.wait_for(eventually_taken(theirs, 500 + i), budget(30))
    assert asked_with and not any(b"unnest" in sql for sql in asked_with)


async def test_a_gate_closed_while_steps_enter_leaves_no_session_holding_a_fence(
    pair: GatePair,
) -> None:
    gate, theirs = pair.gate, pair.theirs
    keys = range(300, 316)
    entering = [asyncio.ensure_future(gate.enter(k, "no-such-task", 1)) for k in keys]
    while getattr(gate, "_rounds", None) is None:  # asked: their round is under way
        await asyncio.sleep(0)
    await gate.close()
    await asyncio.gather(*entering, return_exceptions=True)
    with pytest.raises(RuntimeError, match="closed"):
        await gate.enter(400, "no-such-task", 1)
    for k in keys:  # the closed gate's session, and every fence it took, is gone
        assert await asyncio.wait_for(eventually_taken(theirs, k), budget(30))


async def eventually_taken(fences: Fences, key: int) -> bool:
    """Takes ``key`` once its holder's session has ended (the server notices at once)."""
    while not await fences.take(key):
        await asyncio.sleep(0.05)
    return True


async def test_a_leave_rides_with_the_next_entry_and_one_alone_goes_within_moments(
    pair: GatePair,
) -> None:
    """A step leaving does not wait for the server: its unlock goes with the next step's
    entry, in its statement, so another process can take that fence as soon as the entry is
    answered; a leave no entry follows reaches the server on its own a moment later."""
    gate, theirs = pair.gate, pair.theirs
    asked_with = statements_of(gate)
    assert (await gate.enter(700, "no-such-task", 1)).taken
    await gate.leave(700)
    assert (await gate.enter(701, "no-such-task", 1)).taken
    assert len(asked_with) == 2 and b"pg_advisory_unlock" in asked_with[1]
    assert await theirs.take(700)  # no wait: the entry's statement let it go
    await gate.leave(701)
    assert await asyncio.wait_for(eventually_taken(theirs, 701), budget(30))
    assert len(asked_with) == 3


async def test_a_step_entering_the_fence_its_process_just_left_holds_it_once(
    pair: GatePair,
) -> None:
    """The next step of a key enters while the last one's unlock has not reached the server:
    the unlock and the entry share a statement, or follow one another, and the fence is held
    once either way (one more leave frees it)."""
    gate, theirs = pair.gate, pair.theirs
    for attempt in range(1, 4):
        assert (await gate.enter(800, "no-such-task", attempt)).taken
        assert not await theirs.take(800)
        await gate.leave(800)
        if attempt == 2:  # this time the unlock goes on its own before the entry
            assert await asyncio.wait_for(eventually_taken(theirs, 800), budget(30))
            await theirs.release(800)
    assert await asyncio.wait_for(eventually_taken(theirs, 800), budget(30))


async def test_an_unlock_asked_on_a_lost_session_is_not_run_on_the_next(
    pair: GatePair,
) -> None:
    """The session drops; a step leaves before the gate opens the next one and the step after
    it enters that key again: the old session's unlock is not run on the new session, where
    it could let the new step's fence go."""
    gate, theirs = pair.gate, pair.theirs
    asked_with = statements_of(gate)
    assert (await gate.enter(900, "no-such-task", 1)).taken
    drop_fence_sessions(pair.url)
    with pytest.raises(psycopg.OperationalError):
        await gate.enter(901, "no-such-task", 1)  # the gate finds the session gone
    await gate.leave(900)  # asked of the lost session
    assert (await gate.enter(900, "no-such-task", 2)).taken  # on a new one
    assert b"pg_advisory_unlock" not in asked_with[-1]  # the old unlock did not ride
    assert not await theirs.take(900)


async def test_a_fence_left_while_the_gate_takes_it_again_in_vain_is_not_unlocked_later(
    pair: GatePair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session drops and another process takes a fence a step of ours held; the step
    leaves, and the next step of that key enters, while the gate's new session is taking its
    fences again, and that re-take fails. The other process lets go: the entry takes the
    fence, and no unlock rides with it, where it could undo it (the key was not this
    session's when the step left)."""
    gate, theirs = pair.gate, pair.theirs
    monkeypatch.setattr(step_gate_module, "LEAVE_DELAY_S", 60.0)  # unlocks only ride
    assert (await gate.enter(1000, "no-such-task", 1)).taken
    drop_fence_sessions(pair.url)
    assert await asyncio.wait_for(eventually_taken(theirs, 1000), budget(30))
    connect = psycopg.AsyncConnection.connect
    entering: list[asyncio.Future[Any]] = []

    async def connect_and_step_on_while_taking_again(*args: Any, **kwargs: Any) -> Any:
        conn = await connect(*args, **kwargs)
        execute = conn.execute

        async def around_the_take(query: Any, params: Any = None, **options: Any) -> Any:
            again = "pg_try_advisory_lock" in str(query) and params == (1000,)
            if again:
                await gate.leave(1000)  # the step ends while its fence is asked again
                entering.append(asyncio.ensure_future(gate.enter(1000, "no-such-task", 2)))
                await asyncio.sleep(0)  # its entry is asked: it goes in the next round
            cursor = await execute(query, params, **options)
            if again:
                await theirs.release(1000)  # after their fence refused ours
            return cursor

        conn.execute = around_the_take  # type: ignore[method-assign]
        return conn

    monkeypatch.setattr(psycopg.AsyncConnection, "connect", connect_and_step_on_while_taking_again)
    asked_with = statements_of(gate)
    with pytest.raises(psycopg.OperationalError):
        await gate.enter(1001, "no-such-task", 1)  # finds the session gone
    assert (await gate.enter(1001, "no-such-task", 1)).taken  # a new one: 1000 not had
    [entry] = await asyncio.gather(*entering)
    assert entry.taken
    assert not any(b"pg_advisory_unlock" in sql for sql in asked_with)
    assert not await theirs.take(1000)


async def test_sqlite_fences_of_one_bucket_held_by_one_process_are_taken_at_once(
    tmp_path: Path,
) -> None:
    # the desk holds a certificate's fence while the installer asks for the node's; when both
    # keys share a bucket file the second must not wait for the process itself
    first, same_bucket, third = 7, 7 + BUCKETS, 7 - BUCKETS
    ours, theirs = FileFences(tmp_path / "db.sqlite"), FileFences(tmp_path / "db.sqlite")
    try:
        assert await ours.try_take(first)
        assert await ours.try_take(same_bucket)  # at once: no second flock
        assert not await ours.try_take(first)  # a key this process holds is still refused
        assert not await theirs.try_take(third)  # another process: the bucket is ours
        await ours.release(first)
        assert not await theirs.try_take(third)  # still held for the other key
        await ours.release(same_bucket)
        assert await theirs.try_take(third)  # the last key gone: the bucket unlocked
        assert not await ours.try_take(first)
        await theirs.release(third)
        assert await ours.try_take(first)
        await ours.release(first)
    finally:
        ours.close()
        theirs.close()
