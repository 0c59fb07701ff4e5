"""The pipeline's attempts: starting them, the role handlers' reports on them, their leases.

Consumes: the open runs (handlers/pipeline_runs.py), results and heartbeats
(handlers/messages.py), the scheduler's ticks and the settings attempts follow (retry policy,
lease, how many start per round; staff may change them while the pipeline runs). Emits: Task
events — an attempt dispatched, succeeded or failed, a lease renewed or run out, a failed
termination step tried again — recorded through the pipeline's save; a settle of each run a
report changed; and the task messages of the attempts it started, for the pipeline to publish.

Reports that arrive together are recorded in one transaction. Whenever staff changed one of
the tasks meanwhile (a cancel, a Try again, a force-fail) the store's word is taken for each
task of that transaction, and reports are applied again one at a time.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from domain.errors import Conflict
from domain.retry_policy import RetryPolicy
from domain.task import Task
from handlers import pipeline_log
from handlers.messages import HeartbeatMessage, ResultMessage, TaskMessage
from handlers.pipeline_dispatch import dispatch_ready
from handlers.pipeline_runs import OpenRuns, Run

log = logging.getLogger("handlers.pipeline")  # one logger for all of the pipeline's parts

SCHEDULER = "scheduler"

Report = ResultMessage | HeartbeatMessage


@dataclass
class PipelineSettings:
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    lease_s: float = 30.0
    batch_size: int = 200


@dataclass
class Knobs:
    """The settings and each server's limit as last read (off the event loop)."""

    settings: PipelineSettings | None = None
    limits: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Attempts:
    """The attempts of the open runs. ``save`` is the pipeline's own (a save that fails for
    another reason than a conflict makes it rebuild), ``settle`` records a run's outcome once
    the run has ended, ``settings`` gives them as they are now.

    ``settings`` and ``max_concurrency`` may read the store (behind their caches): they are
    only ever called in a thread, by ``read_knobs``, so a slow database never stalls the
    event loop; everything else uses the values it read last."""

    open_runs: OpenRuns
    max_concurrency: Callable[[str], int]
    save: Callable[..., Awaitable[Any]]
    settle: Callable[[Run], Awaitable[None]]
    settings: Callable[[], PipelineSettings]
    clock: Callable[[], datetime]
    unit_random: Callable[[], float]
    # a lease that may not run out at that moment (the broker is away: no heartbeat can come)
    spared: Callable[[Task, datetime, PipelineSettings], bool] = lambda task, now, settings: False
    knobs: Knobs = field(default_factory=Knobs)
    # failed attempts taken, logged once their recording is saved: (task, attempt, reason)
    failures: list[tuple[Task, int, str]] = field(default_factory=list)

    async def read_knobs(self) -> None:
        """Reads the settings and the limit of every server of the open runs, in a thread."""
        servers = list(self.open_runs.servers)

        def read() -> tuple[PipelineSettings, dict[str, int]]:
            return self.settings(), {s: self.max_concurrency(s) for s in servers}

        self.knobs.settings, self.knobs.limits = await asyncio.to_thread(read)

    def current(self) -> PipelineSettings:
        """The settings as last read (``read_knobs``)."""
        if self.knobs.settings is None:
            raise RuntimeError("the pipeline's settings were not read yet (read_knobs)")
        return self.knobs.settings

    def _limit(self, server_id: str) -> int:
        return self.knobs.limits.get(server_id, 0)  # not read yet: nothing starts there

    async def dispatch(self) -> list[TaskMessage]:
        """Dispatches every ready step a server has room for and records it; the task
        messages to publish once that is recorded."""
        await self.read_knobs()  # runs started since the last read may bring new servers
        settings = self.current()
        started = dispatch_ready(
            self.open_runs,
            self._limit,
            now=self.clock(),
            lease_s=settings.lease_s,
            batch_size=settings.batch_size,
        )
        if not started or not await self.save_or_refresh([task for task, _ in started]):
            return []
        return [message for _, message in started]

    def take(self, item: Report, touched: dict[uuid.UUID, Task]) -> None:
        """Applies a result or heartbeat to its task in memory (recorded by ``record``)."""
        task_id = uuid.UUID(item.task_id)
        now = self.clock()
        if isinstance(item, HeartbeatMessage):
            task = self.open_runs.by_id.get(task_id)
            # recorded at most once per half lease; otherwise extended in memory only
            if task is not None and task.heartbeat(item.attempt, now, self.current().lease_s):
                touched[task.id] = task
            return
        self.open_runs.stop_draining(task_id)  # whatever the outcome, it is off the node
        task = self.open_runs.by_id.get(task_id)
        if task is None:
            log.info("pipeline: result for a task not in an open run: %s", item.task_id)
            return
        if item.outcome == "succeeded":
            recorded = task.succeed(
                item.attempt, now, changed=item.changed, log=item.log, outputs=item.outputs
            )
        else:
            recorded = task.fail(
                item.attempt,
                now,
                error=item.error,
                retryable=item.outcome == "failed_retryable",
                log=item.log,
                policy=self.current().policy,
                unit_random=self.unit_random(),
            )
        if recorded:
            touched[task.id] = task
            if item.outcome != "succeeded":
                self.failures.append((task, item.attempt, item.error))

    async def record(self, touched: dict[uuid.UUID, Task], taken: list[Report]) -> None:
        """Saves what the reports changed, in one transaction, and settles those runs."""
        if not touched:
            taken.clear()
            return
        tasks = list(touched.values())
        touched.clear()
        if not await self._saved(tasks):
            for item in taken:
                one: dict[uuid.UUID, Task] = {}
                self.take(item, one)
                await self._saved(list(one.values()))
            tasks = [self.open_runs.by_id[t.id] for t in tasks if t.id in self.open_runs.by_id]
        taken.clear()
        for service_id in dict.fromkeys(task.service_id for task in tasks):
            run = self.open_runs.runs.get(service_id)
            if run is not None:
                await self.settle(run)

    async def _saved(self, tasks: list[Task]) -> bool:
        """``save_or_refresh``, and the failures taken for it logged once it went through;
        one that did not (or raised) recorded nothing: their reports are taken again (or
        redelivered after a rebuild), or were superseded."""
        failures, self.failures[:] = list(self.failures), []
        saved = await self.save_or_refresh(tasks)
        for task, attempt, reason in failures if saved else []:
            pipeline_log.attempt_failed(task, attempt, reason)
        return saved

    async def expire_leases(self) -> None:
        now, settings = self.clock(), self.current()
        self.open_runs.stop_draining_expired(now)
        for run in list(self.open_runs.runs.values()):
            expired = run.expire_leases(
                now, settings.policy, self.unit_random, lambda t: self.spared(t, now, settings)
            )
            if expired:
                self.failures.extend((t, t.attempt, t.error or "lease expired") for t in expired)
                await self._saved(expired)
                await self.settle(run)

    async def retry_terminations(self) -> None:
        """A termination that could not reach a node stays ``terminating``; its steps that
        failed in a way that may pass are tried again, so it finishes once the node is back."""
        now = self.clock()
        for run in list(self.open_runs.runs.values()):
            if run.kind != "terminate" or run.outcomes() is None:
                continue  # not a termination, or one still under way
            again = run.retry_failed_retryably(now, actor=SCHEDULER)
            if again and await self.save_or_refresh(again):
                run.outcome_recorded = False

    async def save_or_refresh(self, tasks: list[Task]) -> bool:
        """Records the changed tasks in one transaction; False when staff changed one of them
        meanwhile: then the store's word is taken for each, and nothing of it is recorded."""
        try:
            await self.save(*tasks)
        except Conflict:
            for task in tasks:
                await self.open_runs.refresh(task.id)
            return False
        return True
