"""The step fence: one service's work of one role on one node runs one step at a time.

A task message can be handled twice at once: a redelivery while the first handler process
still runs it, a stale pipeline leader dispatching again after a failover, an attempt whose
lease lapsed while it still runs (a stopped process, a slow node) and the next attempt of the
same step. Steps are idempotent, but two of them interleaving on a node is not: both probes
see "absent", both apply. So a role handler holds a fence for the whole run of a step (probe,
apply, verify), and a second attempt that finds the fence held waits until the holder ends or
dies, then runs; its probe sees what the first did.

The fence's key is (service id, role, server id), not the step's name: an old run's attempt
still running must not interleave with the next run's step on the same things either (a
deploy's ``web.domain`` and a removal's ``remove.web.domain``). Within one run, no two steps
with the same key run in parallel (each role's steps on a node form a dependency chain), so the
fence costs a healthy deploy nothing but taking and dropping it.

``StepFences`` is the port: ``try_take`` never blocks for long, and a fence dies with the
process holding it (ops/adapters/step_fence.py: a PostgreSQL session advisory lock, an
``flock`` next to a SQLite database). ``fenced`` waits for a fence by polling it, never busy.
``LocalFences`` guards one process only: the default when no shared fence is wired in.

Once it holds the fence, an attempt that is no longer the task's current one (``Attempts``:
the store has a later attempt, or the task has ended) is dropped without touching the node:
a message that waited in a queue or at the fence past its attempt, even past its run, must not
redo a step after what came later (a removal) has run.

A role handler asks both at once through a ``StepGate`` (``enter``: the fence, and with it
whether the attempt is current; ``leave``): ``GateOfParts`` asks a ``StepFences`` and then
``Attempts``; a store that can answer both in one statement (ops/adapters/step_gate.py, on
PostgreSQL) implements the gate itself, which is most of what the two cost a step.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

from handlers.messages import TaskMessage

log = logging.getLogger(__name__)

POLL_S = 0.5  # how often a waiting attempt looks at a held fence again, at most
# the first wait is short: a fence its holder has just let go in its process may reach the
# server a moment later (ops/adapters/step_gate.py); the waits double up to the poll
FIRST_POLL_S = 0.05


class StepFences(Protocol):
    async def try_take(self, key: int) -> bool:
        """Takes the fence ``key`` for this process if no one holds it; False if someone does.
        Raises when it cannot tell (the database is away)."""

    async def release(self, key: int) -> None:
        """Drops a fence ``try_take`` took."""

    def close(self) -> None:
        """Drops every fence still held and what holds them (the handler is stopping)."""


class Attempts(Protocol):
    async def is_current(self, task_id: str, attempt: int) -> bool | None:
        """Whether ``attempt`` is the task's dispatched attempt now; None when it cannot tell
        (no such task recorded)."""


def fence_key(task: TaskMessage) -> int:
    """A stable signed 64-bit key (PostgreSQL's bigint) for the task's service, role and node.
    A hash of the three, so keys do not collide across services (Python's ``hash`` differs per
    process, so it is no use here)."""
    identity = f"step-fence/{task.service_id}/{task.role}/{task.server_id}".encode()
    digest = hashlib.blake2b(identity, digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class LocalFences:
    """Fences within one process (the in-process guard of every shared implementation)."""

    def __init__(self) -> None:
        self._held: set[int] = set()

    async def try_take(self, key: int) -> bool:
        if key in self._held:
            return False
        self._held.add(key)
        return True

    async def release(self, key: int) -> None:
        self._held.discard(key)

    def discard(self, key: int) -> None:
        """``release`` for code that cannot await."""
        self._held.discard(key)

    def close(self) -> None:
        self._held.clear()

    @property
    def held(self) -> frozenset[int]:
        return frozenset(self._held)


@dataclass(frozen=True)
class Entry:
    """What ``StepGate.enter`` found: whether it took the fence and, with it, whether the
    attempt is still the task's current one (None: it cannot tell, or did not take it)."""

    taken: bool
    current: bool | None = None


class StepGate(Protocol):
    async def enter(self, key: int, task_id: str, attempt: int) -> Entry:
        """Takes the fence ``key`` if no one holds it and says whether the attempt is current;
        ``Entry(False)`` if someone holds it. Raises when it cannot tell (the database is away)."""

    async def leave(self, key: int) -> None:
        """Drops a fence ``enter`` took."""

    async def close(self) -> None:
        """Drops every fence still held and what holds them (the handler is stopping)."""


class GateOfParts:
    """A ``StepGate`` asking a ``StepFences`` and then, once the fence is taken, ``Attempts``
    (none: every attempt runs). A failed ``is_current`` is no answer, so the attempt runs."""

    def __init__(self, fences: StepFences, attempts: Attempts | None = None) -> None:
        self._fences = fences
        self._attempts = attempts

    async def enter(self, key: int, task_id: str, attempt: int) -> Entry:
        if not await self._fences.try_take(key):
            return Entry(False)
        if self._attempts is None:
            return Entry(True)
        try:
            return Entry(True, await self._attempts.is_current(task_id, attempt))
        except Exception:
            log.warning("cannot tell if attempt %d of task %s is current", attempt, task_id)
            return Entry(True)

    async def leave(self, key: int) -> None:
        await self._fences.release(key)

    async def close(self) -> None:
        self._fences.close()


@asynccontextmanager
async def fenced(
    fences: StepFences,
    key: int,
    *,
    poll_s: float = POLL_S,
    on_wait: Callable[[str], None] | None = None,
) -> AsyncIterator[None]:
    """Holds the fence ``key`` for the body; waits (polling soon, then every ``poll_s``) while
    another attempt holds it or while the fence cannot be reached. ``on_wait`` hears why, once per
    reason."""

    async def take() -> Entry:
        return Entry(await fences.try_take(key))

    async with _held(take, fences.release, key, poll_s, on_wait):
        yield


@asynccontextmanager
async def gated(
    gate: StepGate,
    key: int,
    task_id: str,
    attempt: int,
    *,
    poll_s: float = POLL_S,
    on_wait: Callable[[str], None] | None = None,
) -> AsyncIterator[bool | None]:
    """``fenced`` through a ``StepGate``: holds the fence for the body, which is given whether
    the attempt is current (None when that cannot be told)."""
    async with _held(
        lambda: gate.enter(key, task_id, attempt), gate.leave, key, poll_s, on_wait
    ) as entry:
        yield entry.current


@asynccontextmanager
async def _held(
    take: Callable[[], Awaitable[Entry]],
    release: Callable[[int], Awaitable[None]],
    key: int,
    poll_s: float,
    on_wait: Callable[[str], None] | None,
) -> AsyncIterator[Entry]:
    told: set[str] = set()
    wait = min(poll_s, FIRST_POLL_S)
    while True:
        try:
            entry = await take()
            if entry.taken:
                break
            reason = "another attempt is running on this service's node; waiting for it to end"
        except Exception as exc:
            reason = f"cannot reach the step fence ({type(exc).__name__}); waiting for it"
            log.warning("step fence %d: %s: %s", key, reason, exc)
        if reason not in told:
            told.add(reason)
            if on_wait is not None:
                on_wait(reason)
        await asyncio.sleep(wait)
        wait = min(poll_s, wait * 2)
    try:
        yield entry
    finally:
        try:
            await release(key)
        except Exception:
            # the fence dies with its connection anyway; nothing to do but say so
            log.warning("step fence %d: not released cleanly", key, exc_info=True)
