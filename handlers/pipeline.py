"""The pipeline: turns service events into runs of Task aggregates and drives them to the end.

Consumes: Service events (a new run for Ordered / RedeployRequested / VerifyRepairRequested /
FactoryResetRequested), Task events recorded by staff (Retried, Cancelled), the role
handlers' results and heartbeats, and a clock tick. Emits: Task events, Service status
events (Activated, DeployFailed) and task messages to ``task.<role>.<server_id>``.

Its working state — the open runs and their tasks — is rebuilt from the event store on
start, so a killed pipeline resumes where the store says it was. One pipeline instance is
active at a time; handlers are what scales out.

Dispatch rules: a step starts when every step it depends on has succeeded, its server has
fewer than ``max_concurrency`` attempts in flight, and at most ``batch_size`` steps start
per tick. An attempt holds a lease that heartbeats renew; when it runs out the attempt
fails (retryably) and any later result for it is ignored.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from domain.deploy_plan import StepSpec
from domain.errors import Conflict, DomainError, NotFound
from domain.retry_policy import RetryPolicy
from domain.service import Service, service_uuid
from domain.task import Task
from handlers.messages import HeartbeatMessage, ResultMessage, TaskMessage

log = logging.getLogger(__name__)

RUN_STARTERS = {
    "Service.Ordered": "deploy",
    "Service.RedeployRequested": "deploy",
    "Service.VerifyRepairRequested": "deploy",
    "Service.FactoryResetRequested": "reset",
}


class PipelineStore(Protocol):
    """The event store as the pipeline needs it (synchronous; called in a thread)."""

    def service(self, aggregate_id: uuid.UUID) -> Service: ...

    def task(self, task_id: uuid.UUID) -> Task: ...

    def save(self, *aggregates: Any) -> None:
        """Records all pending events in one transaction; raises Conflict when another
        writer recorded an event on one of them first (nothing is recorded then)."""

    def task_history(self) -> Iterable[Any]:
        """Every Task domain event in order, for rebuilding the working state."""


class Planner(Protocol):
    def place(self, service: Service) -> dict[str, Any]:
        """Chooses the nodes for a service that has none yet (recorded as Service.Placed)."""

    def steps(self, service: Service, placement: dict[str, Any], kind: str) -> list[StepSpec]:
        """The steps of a run of ``kind`` ("deploy" or "reset") for the service as it is now."""


class Limits(Protocol):
    def max_concurrency(self, server_id: str) -> int: ...


class Publisher(Protocol):
    async def publish(self, routing_key: str, body: bytes, message_id: str) -> None: ...


@dataclass
class PipelineSettings:
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    lease_s: float = 30.0
    batch_size: int = 200


@dataclass
class _Run:
    service_id: str
    run: int
    tasks: dict[str, Task] = field(default_factory=dict)  # by step
    outcome_recorded: bool = False

    def open_tasks(self) -> list[Task]:
        return [t for t in self.tasks.values() if t.is_open]


class Pipeline:
    def __init__(
        self,
        store: PipelineStore,
        planner: Planner,
        limits: Limits,
        publisher: Publisher,
        *,
        settings: PipelineSettings | None = None,
        clock: Callable[[], datetime],
        unit_random: Callable[[], float] = random.random,
    ) -> None:
        self._store = store
        self._planner = planner
        self._limits = limits
        self._publisher = publisher
        self._settings = settings or PipelineSettings()
        self._clock = clock
        self._random = unit_random
        self._runs: dict[str, _Run] = {}  # latest run per service
        self._by_id: dict[uuid.UUID, Task] = {}
        # Attempts of a superseded run that may still be running on a node: a newer run of the
        # same service waits for them (result, or lease out) so an old removal cannot land
        # after a new ensure. {service_id: {task_id: (server_id, lease_expires_at)}}
        self._draining: dict[str, dict[uuid.UUID, tuple[str, datetime]]] = {}
        self._lock = asyncio.Lock()

    # --- state -------------------------------------------------------------------------

    async def rebuild(self) -> None:
        """Rebuilds the open runs from the store's Task events."""
        tasks = await asyncio.to_thread(_replay_tasks, self._store)
        async with self._lock:
            self._runs.clear()
            self._by_id.clear()
            for task in tasks:
                self._remember(task)
            for run in list(self._runs.values()):
                if not run.open_tasks():
                    await self._settle(run)
        log.info("pipeline: rebuilt %d runs", len(self._runs))

    def _remember(self, task: Task) -> None:
        current = self._runs.get(task.service_id)
        if current is None or task.run > current.run:
            if current is not None:
                for old in current.tasks.values():
                    self._by_id.pop(old.id, None)
            current = self._runs[task.service_id] = _Run(task.service_id, task.run)
        if task.run == current.run:
            current.tasks[task.step] = task
            self._by_id[task.id] = task

    def in_flight(self, server_id: str) -> int:
        running = sum(
            1
            for run in self._runs.values()
            for task in run.tasks.values()
            if task.server_id == server_id and task.state == "dispatched"
        )
        draining = sum(
            1
            for attempts in self._draining.values()
            for server, _ in attempts.values()
            if server == server_id
        )
        return running + draining

    # --- inputs ------------------------------------------------------------------------

    async def on_event(self, topic: str, aggregate_id: uuid.UUID, version: int) -> None:
        """A relayed event (topic, aggregate, version): starts runs for service events,
        refreshes tasks that staff changed."""
        kind = RUN_STARTERS.get(topic)
        async with self._lock:
            if kind is not None:
                await self._start_run(aggregate_id, version, kind)
            elif topic in ("Task.Retried", "Task.Cancelled"):
                await self._refresh_task(aggregate_id)
            await self._dispatch_ready()

    async def on_result(self, result: ResultMessage) -> None:
        async with self._lock:
            self._stop_draining(uuid.UUID(result.task_id))
            task = self._by_id.get(uuid.UUID(result.task_id))
            if task is None:
                log.info("pipeline: result for a task not in an open run: %s", result.task_id)
                await self._dispatch_ready()  # it may have been what a newer run waited for
                return
            now = self._clock()
            if result.outcome == "succeeded":
                recorded = task.succeed(
                    result.attempt,
                    now,
                    changed=result.changed,
                    log=result.log,
                    outputs=result.outputs,
                )
            else:
                recorded = task.fail(
                    result.attempt,
                    now,
                    error=result.error,
                    retryable=result.outcome == "failed_retryable",
                    log=result.log,
                    policy=self._settings.policy,
                    unit_random=self._random(),
                )
            if recorded:
                try:
                    await self._save(task)
                except Conflict:
                    await self._refresh_task(task.id)
                    return
                await self._settle(self._runs[task.service_id])
            await self._dispatch_ready()

    async def on_heartbeat(self, beat: HeartbeatMessage) -> None:
        async with self._lock:
            task = self._by_id.get(uuid.UUID(beat.task_id))
            if task is not None and task.renew_lease(
                beat.attempt, self._clock(), self._settings.lease_s
            ):
                await self._save(task)

    async def tick(self) -> None:
        """Expires leases and starts whatever is due."""
        async with self._lock:
            now = self._clock()
            for service_id, attempts in list(self._draining.items()):
                for task_id, (_, lease) in list(attempts.items()):
                    if lease <= now:
                        self._stop_draining(task_id, service_id)
            for run in list(self._runs.values()):
                expired = [
                    t
                    for t in run.open_tasks()
                    if t.expire_lease(now, self._settings.policy, self._random())
                ]
                if expired:
                    await self._save(*expired)
                    await self._settle(run)
            await self._dispatch_ready()

    # --- decisions ---------------------------------------------------------------------

    async def _start_run(self, aggregate_id: uuid.UUID, run_no: int, kind: str) -> None:
        for _ in range(5):
            if await self._try_start_run(aggregate_id, run_no, kind):
                return
        raise Conflict(f"could not start run {run_no} of {aggregate_id}: the service kept changing")

    async def _try_start_run(self, aggregate_id: uuid.UUID, run_no: int, kind: str) -> bool:
        """Plans and records the run; False when the service changed meanwhile (try again)."""
        service = await asyncio.to_thread(self._store.service, aggregate_id)
        service_id = service.service_id
        current = self._runs.get(service_id)
        if current is not None and current.run >= run_no:
            return True  # a redelivery, or an older event than the run we have
        if service.status in ("terminating", "terminated", "suspended"):
            return True
        now = self._clock()
        try:
            placement = service.placement
            if placement is None:
                placement = self._planner.place(service)
                service.place(now, placement)
            steps = self._planner.steps(service, placement, kind)
        except DomainError as exc:
            reason = str(exc)  # no node for a role, a reserved vanity label…: say why
        else:
            reason = ""
        if reason:
            await self._mark_service(
                service_id, "deploy_failed", lambda s: s.mark_deploy_failed(now, reason)
            )
            return True
        tasks = [
            Task.plan(
                service_id=service_id,
                run=run_no,
                step=s.step,
                role=s.role,
                action=s.action,
                server_id=s.server_id,
                params=s.params,
                depends_on=list(s.depends_on),
                now=now,
                operation=kind,
            )
            for s in steps
        ]
        superseded = []
        if current is not None:
            superseded = [t for t in current.open_tasks() if t.is_open]
            for old in superseded:
                if old.state == "dispatched" and old.lease_expires_at is not None:
                    self._draining.setdefault(service_id, {})[old.id] = (
                        old.server_id,
                        old.lease_expires_at,
                    )
                old.cancel(now, actor="pipeline: superseded by a newer run")
        try:
            await self._save(service, *superseded, *tasks)
        except Conflict:
            try:  # planned before (a redelivered event after a crash): take the store's tasks
                tasks = [await asyncio.to_thread(self._store.task, t.id) for t in tasks]
            except NotFound:
                for old in superseded:
                    await self._refresh_task(old.id)
                return False  # the service changed under us; plan again on fresh state
        for task in tasks:
            self._remember(task)
        if not tasks:
            await self._settle(self._runs.setdefault(service_id, _Run(service_id, run_no)))
        return True

    def _stop_draining(self, task_id: uuid.UUID, service_id: str | None = None) -> None:
        for sid in [service_id] if service_id else list(self._draining):
            attempts = self._draining.get(sid)
            if attempts and attempts.pop(task_id, None) is not None and not attempts:
                del self._draining[sid]

    async def _refresh_task(self, task_id: uuid.UUID) -> None:
        if task_id not in self._by_id:
            return
        task = await asyncio.to_thread(self._store.task, task_id)
        self._remember(task)
        run = self._runs.get(task.service_id)
        if run is not None and task.is_open:
            run.outcome_recorded = False  # "Try again": the run's outcome is open once more

    async def _settle(self, run: _Run) -> None:
        """Records the service's outcome once the run has one (and only if not yet recorded,
        so settling again after a restart records nothing twice)."""
        if run.outcome_recorded:
            return
        states = [t.state for t in run.tasks.values()]
        now = self._clock()
        if "error" in states:
            errors = "; ".join(
                f"{t.step}: {t.error}" for t in run.tasks.values() if t.state == "error"
            )
            await self._mark_service(
                run.service_id, "deploy_failed", lambda s: s.mark_deploy_failed(now, errors)
            )
            run.outcome_recorded = True
        elif all(state in ("succeeded", "cancelled") for state in states):
            await self._mark_service(run.service_id, "active", lambda s: s.mark_active(now))
            run.outcome_recorded = True

    async def _mark_service(
        self, service_id: str, status: str, change: Callable[[Service], None]
    ) -> None:
        for _ in range(5):
            service = await asyncio.to_thread(self._store.service, service_uuid(service_id))
            if service.status in ("terminating", "terminated", "suspended"):
                return
            if service.status == status and service.pending is None:
                return  # recorded before a restart
            change(service)
            try:
                await asyncio.to_thread(self._store.save, service)
                return
            except Conflict:
                continue  # someone recorded a command meanwhile: decide again

    async def _dispatch_ready(self) -> None:
        now = self._clock()
        budget = self._settings.batch_size
        in_flight: dict[str, int] = {}
        started: list[tuple[Task, TaskMessage]] = []
        for run in self._runs.values():
            for task in run.tasks.values():
                if budget <= 0:
                    break
                if not task.is_due(now) or not self._dependencies_met(run, task):
                    continue
                if self._draining.get(run.service_id):
                    continue  # the superseded run still has attempts out on a node
                if task.server_id not in in_flight:
                    in_flight[task.server_id] = self.in_flight(task.server_id)
                if in_flight[task.server_id] >= self._limits.max_concurrency(task.server_id):
                    continue
                attempt = task.dispatch(now, self._settings.lease_s)
                in_flight[task.server_id] += 1
                budget -= 1
                started.append((task, self._message(run, task, attempt)))
        if not started:
            return
        try:
            await self._save(*(task for task, _ in started))
        except Conflict:
            # Staff changed one of them meanwhile (cancel, retry): take the store's word.
            for task, _ in started:
                await self._refresh_task(task.id)
            return
        for _, message in started:
            # Saved first: if this publish is lost, the lease runs out and the step is retried.
            await self._publisher.publish(
                message.routing_key, message.to_json(), message.message_id
            )

    def _dependencies_met(self, run: _Run, task: Task) -> bool:
        return all(
            run.tasks.get(dep) is not None and run.tasks[dep].state == "succeeded"
            for dep in task.depends_on
        )

    def _message(self, run: _Run, task: Task, attempt: int) -> TaskMessage:
        inputs = {dep: run.tasks[dep].outputs for dep in task.depends_on}
        return TaskMessage(
            task_id=str(task.id),
            attempt=attempt,
            service_id=task.service_id,
            step=task.step,
            role=task.role,
            action=task.action,
            server_id=task.server_id,
            params=task.params,
            inputs=inputs,
        )

    async def _save(self, *aggregates: Any) -> None:
        if aggregates:
            await asyncio.to_thread(self._store.save, *aggregates)


def _replay_tasks(store: PipelineStore) -> list[Task]:
    tasks: dict[uuid.UUID, Any] = {}
    for event in store.task_history():
        tasks[event.originator_id] = event.mutate(tasks.get(event.originator_id))
    return list(tasks.values())
