"""The pipeline: turns service events into runs of Task aggregates and drives them to the end.

Consumes: Service events (a new run for Ordered / RedeployRequested / VerifyRepairRequested /
FactoryResetRequested), Task events recorded by staff (Retried, Cancelled), the role
handlers' results and heartbeats, and a clock tick. Emits: Task events, Service status
events (Activated, DeployFailed) and task messages to ``task.<role>.<server_id>``.

Its working state — the open runs and their tasks — is rebuilt from the event store on
start, so a killed pipeline resumes where the store says it was. One pipeline instance is
active at a time (ops/services/pipeline_lead.py sees to it); handlers are what scales out.

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
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from domain.deploy_plan import StepSpec
from domain.errors import Conflict, DomainError, NotFound
from domain.retry_policy import RetryPolicy
from domain.run_outcome import (
    DEPLOY_KINDS,
    RUN_STARTERS,
    STAFF_TASK_TOPICS,
    StepOutcome,
    may_start,
    pending_kind,
    record_outcome,
    step_outcomes,
)
from domain.run_outcome import waits_for as _waits_for
from domain.service import Service, service_uuid
from domain.task import Task, task_uuid
from handlers.messages import HeartbeatMessage, ResultMessage, TaskMessage

log = logging.getLogger(__name__)

SCHEDULER = "scheduler"


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
    kind: str
    tasks: dict[str, Task] = field(default_factory=dict)  # by step
    outcome_recorded: bool = False

    def open_tasks(self) -> list[Task]:
        return [t for t in self.tasks.values() if t.is_open]

    def outcomes(self) -> list[StepOutcome] | None:
        """Each step's outcome once nothing more can happen in the run; None while
        something still can (domain/run_outcome.py)."""
        return step_outcomes(self.kind, self.tasks)


@dataclass(frozen=True)
class RelayedEvent:
    """A stored event as the relay announced it."""

    topic: str
    aggregate_id: uuid.UUID
    version: int


@dataclass(frozen=True)
class CronTick:
    """The scheduler's periodic nudge: ``retries`` and ``stuck`` expire leases and start
    what is due; ``terminations`` tries again the failed steps of unfinished terminations."""

    job: str


PipelineInput = RelayedEvent | CronTick | ResultMessage | HeartbeatMessage


class Pipeline:
    def __init__(
        self,
        store: PipelineStore,
        planner: Planner,
        limits: Limits,
        publisher: Publisher,
        *,
        settings: PipelineSettings | Callable[[], PipelineSettings] | None = None,
        clock: Callable[[], datetime],
        unit_random: Callable[[], float] = random.random,
    ) -> None:
        self._store = store
        self._planner = planner
        self._limits = limits
        self._publisher = publisher
        fixed = settings if isinstance(settings, PipelineSettings) else PipelineSettings()
        self._settings_of = settings if callable(settings) else lambda: fixed
        self._clock = clock
        self._random = unit_random
        self._runs: dict[str, _Run] = {}  # latest run per service
        self._by_id: dict[uuid.UUID, Task] = {}
        self._finished: dict[str, int] = {}  # last run that ended well, per service
        # Attempts of a superseded run that may still be running on a node: a newer run of the
        # same service waits for them (result, or lease out) so an old removal cannot land
        # after a new ensure. {service_id: {task_id: (server_id, lease_expires_at)}}
        self._draining: dict[str, dict[uuid.UUID, tuple[str, datetime]]] = {}
        self._servers: set[str] = set()  # every server a remembered task runs on
        self._lock = asyncio.Lock()
        self._stale = False  # a save failed: memory must be rebuilt from the store
        self.changed = asyncio.Event()  # set after each batch: the next due moment may move

    @property
    def _settings(self) -> PipelineSettings:
        """The settings as they are now (staff may change them while the pipeline runs)."""
        return self._settings_of()

    # --- state -------------------------------------------------------------------------

    async def rebuild(self) -> None:
        """Rebuilds the open runs from the store's Task events."""
        async with self._lock:
            await self._rebuild()

    async def _rebuild(self) -> None:
        tasks = await asyncio.to_thread(_replay_tasks, self._store)
        self._runs.clear()
        self._by_id.clear()
        self._finished.clear()
        for task in tasks:
            self._remember(task)
        self._stale = False
        for run in list(self._runs.values()):
            await self._settle(run)
        log.info("pipeline: rebuilt %d runs", len(self._runs))

    async def _fresh(self) -> None:
        """After a save failed for another reason than a conflict, memory may hold changes
        the store does not (the events left the aggregates with the failed save): the store's
        word is taken again before anything else is decided."""
        if self._stale:
            log.warning("pipeline: a save failed earlier; rebuilding from the store")
            await self._rebuild()

    def _remember(self, task: Task) -> None:
        current = self._runs.get(task.service_id)
        if current is None or task.run > current.run:
            if current is not None:
                for old in current.tasks.values():
                    self._by_id.pop(old.id, None)
            current = self._runs[task.service_id] = _Run(task.service_id, task.run, task.operation)
        if task.run == current.run:
            current.tasks[task.step] = task
            self._by_id[task.id] = task
            self._servers.add(task.server_id)

    def now(self) -> datetime:
        return self._clock()

    def next_due(self) -> datetime | None:
        """The earliest moment something is due without any message arriving: a retry's
        back-off ending, a lease running out, a superseded attempt's lease ending."""
        moments = [
            moment
            for run in self._runs.values()
            for task in run.tasks.values()
            for moment in (
                task.due_at if task.state == "retry_scheduled" else None,
                task.lease_expires_at if task.state == "dispatched" else None,
            )
            if moment is not None
        ]
        moments += [lease for attempts in self._draining.values() for _, lease in attempts.values()]
        return min(moments, default=None)

    def in_flight(self, server_id: str) -> int:
        return self._in_flight_by_server().get(server_id, 0)

    def _in_flight_by_server(self) -> Counter[str]:
        counts: Counter[str] = Counter(
            task.server_id
            for run in self._runs.values()
            for task in run.tasks.values()
            if task.state == "dispatched"
        )
        for attempts in self._draining.values():
            counts.update(server for server, _ in attempts.values())
        return counts

    # --- inputs ------------------------------------------------------------------------

    async def on_event(self, topic: str, aggregate_id: uuid.UUID, version: int) -> None:
        """A relayed event (topic, aggregate, version): starts runs for service events,
        refreshes tasks that staff changed."""
        await self.on_batch([RelayedEvent(topic, aggregate_id, version)])

    async def on_result(self, result: ResultMessage) -> None:
        await self.on_batch([result])

    async def on_heartbeat(self, beat: HeartbeatMessage) -> None:
        await self.on_batch([beat])

    async def on_batch(self, inputs: list[PipelineInput]) -> None:
        """Everything that arrived together: new runs are planned and their first steps
        dispatched first; then results and heartbeats are recorded in one transaction, the
        runs they touched settle and one dispatch round follows (one more transaction).
        Other relayed events (staff's task commands, scheduler ticks) keep their place.
        The round's task messages are published once the lock is let go, so the next batch
        can be decided while they are confirmed."""
        async with self._lock:
            await self._fresh()
            # New runs first, and their first steps out at once: an order's first step does
            # not wait behind the recording of other services' results in the same batch.
            starts = [i for i in inputs if isinstance(i, RelayedEvent) and i.topic in RUN_STARTERS]
            for event in starts:
                await self._take_event(event)
            if starts:
                await self._send(await self._dispatch_ready())
            touched: dict[uuid.UUID, Task] = {}
            taken: list[ResultMessage | HeartbeatMessage] = []
            for item in inputs:
                if any(item is event for event in starts):
                    continue
                if isinstance(item, RelayedEvent):
                    await self._record(touched, taken)
                    await self._take_event(item)
                elif isinstance(item, CronTick):
                    await self._record(touched, taken)
                    await self._take_cron(item)
                else:
                    self._take_report(item, touched)
                    taken.append(item)
            await self._record(touched, taken)
            outgoing = await self._dispatch_ready()
            self.changed.set()  # the timer may have something sooner to wait for
        await self._send(outgoing)

    def _take_report(
        self, item: ResultMessage | HeartbeatMessage, touched: dict[uuid.UUID, Task]
    ) -> None:
        """Applies a result or heartbeat to its task in memory (recorded by ``_record``)."""
        task_id = uuid.UUID(item.task_id)
        now = self._clock()
        if isinstance(item, HeartbeatMessage):
            task = self._by_id.get(task_id)
            if task is not None and task.renew_lease(item.attempt, now, self._settings.lease_s):
                touched[task.id] = task
            return
        self._stop_draining(task_id)  # whatever the outcome, it is off the node
        task = self._by_id.get(task_id)
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
                policy=self._settings.policy,
                unit_random=self._random(),
            )
        if recorded:
            touched[task.id] = task

    async def _record(
        self, touched: dict[uuid.UUID, Task], taken: list[ResultMessage | HeartbeatMessage]
    ) -> None:
        """Saves what the reports changed, in one transaction, and settles those runs. On a
        conflict (staff changed one of the tasks meanwhile) the store's word is taken for
        every touched task and the reports are applied again one at a time."""
        if not touched:
            taken.clear()
            return
        tasks = list(touched.values())
        touched.clear()
        try:
            await self._save(*tasks)
        except Conflict:
            for task in tasks:
                await self._refresh_task(task.id)
            for item in taken:
                one: dict[uuid.UUID, Task] = {}
                self._take_report(item, one)
                try:
                    await self._save(*one.values())
                except Conflict:
                    for task in one.values():
                        await self._refresh_task(task.id)
            tasks = [self._by_id[t.id] for t in tasks if t.id in self._by_id]
        taken.clear()
        for service_id in dict.fromkeys(task.service_id for task in tasks):
            run = self._runs.get(service_id)
            if run is not None:
                await self._settle(run)

    async def _take_event(self, event: RelayedEvent) -> None:
        kind = RUN_STARTERS.get(event.topic)
        if kind is not None:
            await self._start_run(event.aggregate_id, event.version, kind)
        elif event.topic in STAFF_TASK_TOPICS:
            run = await self._refresh_task(event.aggregate_id)
            if run is not None:
                await self._settle(run)  # a force-failed attempt may end the run

    async def _take_cron(self, tick: CronTick) -> None:
        if tick.job == "terminations":
            await self._retry_terminations()
        elif tick.job in ("retries", "stuck"):
            await self._expire_leases()

    async def _retry_terminations(self) -> None:
        """A termination that could not reach a node stays ``terminating``; its steps that
        failed in a way that may pass are tried again, so it finishes once the node is back."""
        now = self._clock()
        for run in list(self._runs.values()):
            if run.kind != "terminate" or run.outcomes() is None:
                continue  # not a termination, or one still under way
            again = [
                t
                for t in run.tasks.values()
                if t.state == "error" and t.failed_retryably and t.retry(now, actor=SCHEDULER)
            ]
            if again:
                try:
                    await self._save(*again)
                except Conflict:  # staff changed one meanwhile: take the store's word
                    for task in again:
                        await self._refresh_task(task.id)
                    continue
                run.outcome_recorded = False

    async def tick(self) -> None:
        """Expires leases and starts whatever is due."""
        async with self._lock:
            await self._fresh()
            await self._expire_leases()
            outgoing = await self._dispatch_ready()
        await self._send(outgoing)

    async def _expire_leases(self) -> None:
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
                try:
                    await self._save(*expired)
                except Conflict:  # staff force-failed or cancelled one meanwhile
                    for task in expired:
                        await self._refresh_task(task.id)
                await self._settle(run)

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
        if (current.run if current else self._finished.get(service_id, 0)) >= run_no:
            return True  # a redelivery, or an older event than the run we have
        if not may_start(service, kind):
            return True
        under_way = current is not None and current.outcomes() is None
        if under_way and current is not None and _waits_for(kind, current.kind):
            if kind == "change_plan" and current.kind in DEPLOY_KINDS:
                kind = "deploy"  # a deploy under way: deploy again, with the new plan
            else:
                return True  # still pending on the service: started when that run ends
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
            failure = StepOutcome("plan", "", "plan", "error", reason)
            await self._record_outcome(service_id, kind, [failure])
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
        if not tasks:  # nothing to do on any node: the run has ended as it began
            if current is not None:
                for old in current.tasks.values():
                    self._by_id.pop(old.id, None)
            empty = self._runs[service_id] = _Run(service_id, run_no, kind)
            await self._settle(empty)
        return True

    def _stop_draining(self, task_id: uuid.UUID, service_id: str | None = None) -> None:
        for sid in [service_id] if service_id else list(self._draining):
            attempts = self._draining.get(sid)
            if attempts and attempts.pop(task_id, None) is not None and not attempts:
                del self._draining[sid]

    async def _refresh_task(self, task_id: uuid.UUID) -> _Run | None:
        """Takes the store's word for a task; returns its run when that is open here."""
        if task_id not in self._by_id:
            await self._reopen_finished(task_id)
            return None
        task = await asyncio.to_thread(self._store.task, task_id)
        self._remember(task)
        run = self._runs.get(task.service_id)
        if run is not None and task.is_open:
            run.outcome_recorded = False  # "Try again": the run's outcome is open once more
        return run

    async def _reopen_finished(self, task_id: uuid.UUID) -> None:
        """Staff retried a (cancelled) task of a run that had ended and been forgotten: the
        run comes back with that task and every step it depends on, as the store has them."""
        try:
            task = await asyncio.to_thread(self._store.task, task_id)
        except NotFound:
            return
        if not task.is_open or task.run < self._finished.get(task.service_id, 0):
            return
        current = self._runs.get(task.service_id)
        if current is not None and current.run != task.run:
            return  # a newer run is under way; this one stays closed
        self._finished.pop(task.service_id, None)
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
            self._remember(each)
        self._runs[task.service_id].outcome_recorded = False  # its outcome is open again

    async def _settle(self, run: _Run) -> None:
        """Records the service's outcome once the run has ended (and only once: settling
        again after a restart records nothing twice). A run that ended well, or whose
        service is terminated, is forgotten; a request that waited for the run starts now."""
        if run.outcome_recorded:
            return
        outcomes = run.outcomes()
        if outcomes is None:
            return
        service = await self._record_outcome(run.service_id, run.kind, outcomes)
        if service is None:
            return  # not recorded: the next settle of this run tries again
        run.outcome_recorded = True
        ended_well = all(o.state in ("succeeded", "cancelled") for o in outcomes)
        if ended_well or service.status == "terminated":
            self._forget(run)
        waiting = pending_kind(service)
        if waiting is not None and waiting != run.kind:
            await self._start_run(service.id, service.version, waiting)

    def _forget(self, run: _Run) -> None:
        """A run that ended well leaves the working state (only failed runs wait there for a
        Try again), so the pipeline's memory and its scans stay the size of the open work."""
        if self._runs.get(run.service_id) is run:
            del self._runs[run.service_id]
            self._finished[run.service_id] = run.run
        for task in run.tasks.values():
            self._by_id.pop(task.id, None)

    async def _record_outcome(
        self, service_id: str, kind: str, outcomes: list[StepOutcome]
    ) -> Service | None:
        """Records the outcome; returns the service as the store has it now (None if it
        kept changing under us)."""
        for _ in range(5):
            service = await asyncio.to_thread(self._store.service, service_uuid(service_id))
            if not record_outcome(service, kind, outcomes, self._clock()):
                return service
            try:
                await asyncio.to_thread(self._store.save, service)
                return service
            except Conflict:
                continue  # someone recorded a command meanwhile: decide again
        log.warning("pipeline: could not record the %s outcome of %s", kind, service_id)
        return None

    async def _dispatch_ready(self) -> list[TaskMessage]:
        """Dispatches every ready step a server has room for and records it; the task
        messages to publish (``_send``) once that is recorded."""
        now = self._clock()
        budget = self._settings.batch_size
        in_flight = self._in_flight_by_server()
        # Free slots per server; the scan of the open runs (oldest first) stops as soon as no
        # server has one left, which in a backlog is after the first few ready steps.
        room = {s: max(0, self._limits.max_concurrency(s) - in_flight[s]) for s in self._servers}
        free = sum(room.values())
        started: list[tuple[Task, TaskMessage]] = []
        for run in self._runs.values():
            if budget <= 0 or free <= 0:
                break
            if self._draining.get(run.service_id):
                continue  # the superseded run still has attempts out on a node
            for task in run.tasks.values():
                if budget <= 0 or room[task.server_id] <= 0:
                    continue
                if not task.is_due(now) or not self._dependencies_met(run, task):
                    continue
                attempt = task.dispatch(now, self._settings.lease_s)
                room[task.server_id] -= 1
                free -= 1
                budget -= 1
                started.append((task, self._message(run, task, attempt)))
        if not started:
            return []
        try:
            await self._save(*(task for task, _ in started))
        except Conflict:
            # Staff changed one of them meanwhile (cancel, retry): take the store's word.
            for task, _ in started:
                await self._refresh_task(task.id)
            return []
        return [message for _, message in started]

    async def _send(self, messages: list[TaskMessage]) -> None:
        # Recorded first: if a publish is lost, its lease runs out and the step is retried.
        await asyncio.gather(
            *(
                self._publisher.publish(message.routing_key, message.to_json(), message.message_id)
                for message in messages
            )
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
        if not aggregates:
            return
        try:
            await asyncio.to_thread(self._store.save, *aggregates)
        except Conflict:
            raise
        except Exception:
            self._stale = True  # nothing of it was recorded, but memory moved on
            raise


def _replay_tasks(store: PipelineStore) -> list[Task]:
    tasks: dict[uuid.UUID, Any] = {}
    for event in store.task_history():
        tasks[event.originator_id] = event.mutate(tasks.get(event.originator_id))
    return list(tasks.values())
