"""The pipeline's working state: the open run of each service and its Task aggregates.

Consumes: Task aggregates — the store's open work on start (the tasks of the pipeline's last
checkpoint and every task recorded on since, never every Task ever), read again one at a time
when staff changed one, or planned and changed by the pipeline itself. Emits nothing: the
pipeline asks it which runs are open, how many attempts each server has in flight and when
something next falls due, and records what changed itself (handlers/pipeline.py). Nothing
here reads a clock; all it writes is the checkpoint (which tasks it holds, as of which
position in the store).

Only open work stays: a run that ended well is forgotten (remembering just its number for
the services that finished one lately, so a redelivered event does not start it again; the
checkpoint keeps them all, and a redelivery past that is recognised by its tasks being in the
store already), while a failed run waits here for a Try again.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from domain.errors import NotFound
from domain.retry_policy import RetryPolicy
from domain.run_outcome import StepOutcome, step_outcomes
from domain.task import Task, task_uuid
from handlers.messages import TaskMessage
from handlers.pipeline_writes import ThreadedWrites


class TaskReader(Protocol):
    """The event store's Tasks and the pipeline's checkpoint (synchronous; called in a
    thread)."""

    def task(self, task_id: uuid.UUID) -> Task: ...

    def open_work(self) -> Iterable[Task]:
        """The tasks of the last checkpoint and every task an event was recorded on since."""

    def position(self) -> int:
        """The store's latest notification id (read before the tasks are captured)."""

    def checkpoint(
        self, position: int, task_ids: Sequence[uuid.UUID], finished: Mapping[str, int]
    ) -> None:
        """Records the tasks held as of ``position`` and the runs ended well since the last."""

    def finished_run(self, service_id: str) -> int:
        """The last run of the service that ended well, as checkpointed; 0 for none."""


log = logging.getLogger("handlers.pipeline")  # one logger for all of the pipeline's parts

FINISHED_KEPT = 1_000  # services whose last finished run is kept in memory (the rest: store)


@dataclass
class Run:
    service_id: str
    run: int
    kind: str
    tasks: dict[str, Task] = field(default_factory=dict)  # by step
    outcome_recorded: bool = False

    def open_tasks(self) -> list[Task]:
        return [t for t in self.tasks.values() if t.is_open]

    @property
    def command_id(self) -> str | None:
        """The command that started the run (its tasks carry it), when known."""
        return next((t.command_id for t in self.tasks.values()), None)

    def expire_leases(
        self,
        now: datetime,
        policy: RetryPolicy,
        unit_random: Callable[[], float],
        spared: Callable[[Task], bool] = lambda task: False,
    ) -> list[Task]:
        """Fails (retryably) the attempts whose lease ran out, but for the ``spared`` ones;
        the tasks that changed."""
        return [
            t
            for t in self.open_tasks()
            if not spared(t) and t.expire_lease(now, policy, unit_random())
        ]

    def retry_failed_retryably(self, now: datetime, actor: str) -> list[Task]:
        """Tries again the steps in error whose failure may pass; the tasks that changed."""
        return [
            t
            for t in self.tasks.values()
            if t.state == "error" and t.failed_retryably and t.retry(now, actor=actor)
        ]

    def outcomes(self) -> list[StepOutcome] | None:
        """Each step's outcome once nothing more can happen in the run; None while
        something still can (domain/run_outcome.py)."""
        return step_outcomes(self.kind, self.tasks)


class OpenRuns:
    """The latest run per service, its tasks by id, the last run that ended well per service,
    and the attempts of superseded runs that may still be running on a node."""

    def __init__(self, store: TaskReader, writes: ThreadedWrites | None = None) -> None:
        self._store = store
        self._writes = writes or ThreadedWrites()  # the checkpoint's, followed to their end
        self.runs: dict[str, Run] = {}  # latest run per service
        self.by_id: dict[uuid.UUID, Task] = {}
        # The last run that ended well, for the services that finished one lately (at most
        # FINISHED_KEPT; the checkpoint has them all); those not checkpointed yet.
        self.finished: OrderedDict[str, int] = OrderedDict()
        self._unsaved: dict[str, int] = {}
        self._checkpointed_at: datetime | None = None
        # Attempts of a superseded run that may still be running on a node: a newer run of the
        # same service waits for them (result, or lease out) so an old removal cannot land
        # after a new ensure. {service_id: {task_id: (server_id, lease_expires_at)}}
        self.draining: dict[str, dict[uuid.UUID, tuple[str, datetime]]] = {}
        self.servers: set[str] = set()  # every server a remembered task runs on

    async def reload(self) -> None:
        """Takes the store's open work as the whole working state: the tasks of the last
        checkpoint and those recorded on since (never every Task ever). Superseded attempts
        still out on a node are kept: the store has them only as cancelled tasks."""
        tasks = await asyncio.to_thread(lambda: list(self._store.open_work()))
        held = dict(self.by_id)  # leases extended in memory by heartbeats stay extended
        self.runs.clear()
        self.by_id.clear()
        self.finished.clear()
        for task in tasks:
            _keep_lease(held.get(task.id), task)
            self.remember(task)

    async def checkpoint(self, now: datetime, every_s: float = 0.0) -> None:
        """Records what a rebuild must load (once ``every_s`` has passed since the last time):
        the tasks held now, as of the store's position read first (the caller holds the
        pipeline's lock: nothing is recorded meanwhile). A failure only means the next
        rebuild reads more of the log."""
        last = self._checkpointed_at
        if last is not None and (now - last).total_seconds() < every_s:
            return
        self._checkpointed_at = now
        try:
            await self._write_checkpoint()
        except Exception:
            log.exception("pipeline: could not record the checkpoint; trying again later")

    async def _write_checkpoint(self) -> None:
        position = await asyncio.to_thread(self._store.position)
        ids = list(self.by_id)
        unsaved = dict(self._unsaved)
        await self._writes.run(self._store.checkpoint, position, ids, unsaved)
        for service_id, run in unsaved.items():
            if self._unsaved.get(service_id) == run:
                del self._unsaved[service_id]

    async def last_run(self, service_id: str, *, ask_store: bool) -> int:
        """The service's run held here, else the last that ended well (``finished_run``)."""
        current = self.runs.get(service_id)
        if current is not None:
            return current.run
        return await self.finished_run(service_id, ask_store=ask_store)

    async def finished_run(self, service_id: str, *, ask_store: bool = True) -> int:
        """The last run of the service that ended well (asking the checkpoint, if
        ``ask_store``, when it is not among those kept in memory; else 0)."""
        known = self.finished.get(service_id, self._unsaved.get(service_id))
        if known is not None or not ask_store:
            return known or 0
        return await asyncio.to_thread(self._store.finished_run, service_id)

    def remember(self, task: Task) -> None:
        """Takes the task as it is now; a task of a newer run replaces the service's run."""
        _keep_lease(self.by_id.get(task.id), task)
        current = self.runs.get(task.service_id)
        if current is None or task.run > current.run:
            if current is not None:
                for old in current.tasks.values():
                    self.by_id.pop(old.id, None)
            current = self.runs[task.service_id] = Run(task.service_id, task.run, task.operation)
        if task.run == current.run:
            current.tasks[task.step] = task
            self.by_id[task.id] = task
            self.servers.add(task.server_id)

    async def refresh(self, task_id: uuid.UUID) -> Run | None:
        """Takes the store's word for a task; returns its run when that is open here."""
        if task_id not in self.by_id:
            await self._reopen_finished(task_id)
            return None
        task = await asyncio.to_thread(self._store.task, task_id)
        self.remember(task)
        run = self.runs.get(task.service_id)
        if run is not None and task.is_open:
            run.outcome_recorded = False  # "Try again": the run's outcome is open once more
        return run

    async def stored(self, tasks: list[Task]) -> list[Task]:
        """Those of ``tasks`` the store has, as it has them (a run planned before, perhaps
        to a plan that has changed since)."""
        found = []
        for task in tasks:
            try:
                found.append(await asyncio.to_thread(self._store.task, task.id))
            except NotFound:
                continue
        return found

    async def _reopen_finished(self, task_id: uuid.UUID) -> None:
        """Staff retried a (cancelled) task of a run that had ended and been forgotten: the
        run comes back with that task and every step it depends on, as the store has them."""
        try:
            task = await asyncio.to_thread(self._store.task, task_id)
        except NotFound:
            return
        if not task.is_open or task.run < await self.finished_run(task.service_id):
            return
        current = self.runs.get(task.service_id)
        if current is not None and current.run != task.run:
            return  # a newer run is under way; this one stays closed
        self.finished.pop(task.service_id, None)
        self._unsaved.pop(task.service_id, None)
        wanted, loaded = list(task.depends_on), [task]
        while wanted:
            step = wanted.pop()
            if any(t.step == step for t in loaded):
                continue
            dep = await asyncio.to_thread(
                self._store.task, task_uuid(task.service_id, task.run, step)
            )
            loaded.append(dep)
            wanted.extend(dep.depends_on)
        for each in loaded:
            self.remember(each)
        self.runs[task.service_id].outcome_recorded = False  # its outcome is open again

    def forget(self, run: Run) -> None:
        """A run that ended well leaves the working state (only failed runs wait there for a
        Try again), so the pipeline's memory and its scans stay the size of the open work."""
        if self.runs.get(run.service_id) is run:
            del self.runs[run.service_id]
            self.finished[run.service_id] = self._unsaved[run.service_id] = run.run
            self.finished.move_to_end(run.service_id)
            while len(self.finished) > FINISHED_KEPT:
                self.finished.popitem(last=False)
        for task in run.tasks.values():
            self.by_id.pop(task.id, None)

    def is_current(self, message: TaskMessage) -> bool:
        """Whether the message is of its task's attempt under way."""
        task = self.by_id.get(uuid.UUID(message.task_id))
        return task is not None and task.state == "dispatched" and task.attempt == message.attempt

    def stop_draining(self, task_id: uuid.UUID, service_id: str | None = None) -> None:
        for sid in [service_id] if service_id else list(self.draining):
            attempts = self.draining.get(sid)
            if attempts and attempts.pop(task_id, None) is not None and not attempts:
                del self.draining[sid]

    def stop_draining_expired(self, now: datetime) -> None:
        """A superseded attempt whose lease ran out is no longer waited for."""
        for service_id, attempts in list(self.draining.items()):
            for task_id, (_, lease) in list(attempts.items()):
                if lease <= now:
                    self.stop_draining(task_id, service_id)

    def next_due(self) -> datetime | None:
        """The earliest moment something is due without any message arriving: a retry's
        back-off ending, a lease running out, a superseded attempt's lease ending."""
        moments = [
            moment
            for run in self.runs.values()
            for task in run.tasks.values()
            for moment in (
                task.due_at if task.state == "retry_scheduled" else None,
                task.lease_expires_at if task.state == "dispatched" else None,
            )
            if moment is not None
        ]
        moments += [lease for attempts in self.draining.values() for _, lease in attempts.values()]
        return min(moments, default=None)

    def in_flight_by_server(self) -> Counter[str]:
        counts: Counter[str] = Counter(
            task.server_id
            for run in self.runs.values()
            for task in run.tasks.values()
            if task.state == "dispatched"
        )
        for attempts in self.draining.values():
            counts.update(server for server, _ in attempts.values())
        return counts


def _keep_lease(known: Task | None, task: Task) -> None:
    """The store's word for a task keeps the lease its heartbeats extended in memory only
    (domain/task.py ``heartbeat``) while it is the same attempt."""
    if known is None or known is task or task.state != "dispatched":
        return
    if known.state != "dispatched" or known.attempt != task.attempt:
        return
    held, stored = known.lease_expires_at, task.lease_expires_at
    if held is not None and (stored is None or held > stored):
        task.lease_expires_at = held
