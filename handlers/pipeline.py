"""The pipeline: turns service events into runs of Task aggregates and drives them to the end.

Consumes: the Service events that start runs (RUN_STARTERS), Server.Registered, Task events
recorded by staff (Retried, Cancelled), the role handlers' results and heartbeats, a clock
tick. Emits: Task events, Service status events and task messages to ``task.<role>.<server>``.

Its working state — the open runs and their tasks — is rebuilt from the event store on
start, so a killed pipeline resumes where the store says it was. One pipeline instance is
active at a time (ops/services/pipeline_lead.py sees to it); handlers are what scales out.

This module starts runs and settles them, and takes what arrives in order; the other
``handlers/pipeline_*.py`` modules hold its parts (docs/architecture.md says which holds what:
working state, attempts, dispatch, planning, sweep, sending, the operator's log lines).
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from domain.correlation import command_context, current_command_id
from domain.errors import Conflict, DomainError
from domain.run_outcome import (
    DEPLOY_KINDS,
    RUN_STARTERS,
    STAFF_TASK_TOPICS,
    StepOutcome,
    builds_first,
    may_start,
    pending_kind,
    record_outcome,
)
from domain.run_outcome import waits_for as _waits_for
from domain.service import Service, service_uuid
from domain.task import Task
from handlers import pipeline_log
from handlers.messages import HeartbeatMessage, ResultMessage, TaskMessage
from handlers.pipeline_attempts import Attempts, Report
from handlers.pipeline_attempts import PipelineSettings as PipelineSettings
from handlers.pipeline_dispatch import dispatched_attempts
from handlers.pipeline_planning import PlacementWaits, Planner, plan_run
from handlers.pipeline_ports import CronTick as CronTick
from handlers.pipeline_ports import Limits, PipelineStore
from handlers.pipeline_ports import PipelineInput as PipelineInput
from handlers.pipeline_ports import Publisher as Publisher
from handlers.pipeline_ports import RelayedEvent as RelayedEvent
from handlers.pipeline_runs import OpenRuns
from handlers.pipeline_runs import Run as _Run
from handlers.pipeline_sending import LeaseHold, TaskSender, TransientPublishError, os_level_error
from handlers.pipeline_sweep import Sweep, UnsettledServices
from handlers.pipeline_writes import ThreadedWrites

log = logging.getLogger(__name__)

CHECKPOINT_S = 30.0  # how often the working state's checkpoint is recorded (on a tick)


class PipelineHalted(Exception):
    """This pipeline was halted (its lead lost, or it stopped): it records and sends nothing."""


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
        unsettled: UnsettledServices | None = None,
        transient_publish_error: TransientPublishError = os_level_error,
    ) -> None:
        self._store = store
        self._planner = planner
        fixed = settings if isinstance(settings, PipelineSettings) else PipelineSettings()
        self._clock = clock
        # its writes, followed to their end: one still in a thread when the lead is lost
        # may commit later, and the next leader must rebuild after it (pipeline_writes.py)
        self._writes = ThreadedWrites()
        self._open = OpenRuns(store, self._writes)
        # only a publish that failed for a passing reason holds its attempt's lease
        current, transient = self._open.is_current, transient_publish_error
        self._sender = TaskSender(publisher, current=current, clock=clock, transient=transient)
        self._hold = LeaseHold(self._sender, clock)
        self._attempts = Attempts(
            open_runs=self._open,
            max_concurrency=limits.max_concurrency,
            save=self._save,
            settle=self._settle,
            # as they are now: staff may change them while the pipeline runs
            settings=settings if callable(settings) else lambda: fixed,
            clock=clock,
            unit_random=unit_random,
            spared=lambda task, now, settings: self._hold.spares(task, now, settings.lease_s),
        )
        self._sweep = Sweep(
            source=unsettled,
            open_runs=self._open,
            load=lambda aggregate_id: asyncio.to_thread(self._store.service, aggregate_id),
            start_run=self._start_run,
            settle=self._settle,
        )
        # The first rebuild sends again every attempt the store has dispatched: one recorded
        # as the last leader lost its lead (or died) may never have been published, and the
        # in-process transport's queued messages die with the process. The copies are marked
        # (``again``): a handler asks its inbox about them.
        self._resend_dispatched = True
        self._lock = asyncio.Lock()
        self._stale = False  # a save failed: memory must be rebuilt from the store
        self.halted = False  # see halt()
        self.changed = asyncio.Event()  # set after each batch: the next due moment may move

    @property
    def _runs(self) -> dict[str, _Run]:
        return self._open.runs

    # --- state -------------------------------------------------------------------------

    async def rebuild(self) -> None:
        """Rebuilds the open runs from the store's Task events, then sweeps."""
        async with self._lock:
            await self._rebuild()
            # Only the first rebuild may find attempts whose message never went out; on a
            # later one (after a failed save, under the same lead) what was recorded went out.
            # Cleared once a rebuild went through: one the database broke off is tried again.
            outgoing = dispatched_attempts(self._open) if self._resend_dispatched else []
            self._resend_dispatched = False
        await self._send(outgoing, again=True)

    async def _rebuild(self) -> None:
        await self._open.reload()
        self._stale = False
        # While nobody drove (no pipeline, or this one waiting on the store), heartbeats
        # waited in the queue: no stored lease runs out before they have been read.
        self._hold.fresh_leases()
        for run in list(self._runs.values()):
            await self._settle(run)
        log.info("pipeline: rebuilt %d runs", len(self._runs))
        await self._sweep.run()
        self._check_halted()
        await self._open.checkpoint(self._clock())

    async def sweep(self) -> None:
        """Starts every run a service waits for that has none (pipeline_sweep.py)."""
        async with self._lock:
            await self._fresh()
            await self._sweep.run()
            outgoing = await self._attempts.dispatch()
        await self._send(outgoing)

    async def _fresh(self) -> None:
        """After a save failed for another reason than a conflict, memory may hold changes the
        store does not (they left with the failed save): the store's word is taken again."""
        if self._stale:
            log.warning("pipeline: a save failed earlier; rebuilding from the store")
            await self._rebuild()

    def now(self) -> datetime:
        return self._clock()

    def next_due(self) -> datetime | None:
        """When something is next due without any message arriving (pipeline_runs.py)."""
        return self._open.next_due()

    def in_flight(self, server_id: str) -> int:
        return self._open.in_flight_by_server().get(server_id, 0)

    # --- inputs ------------------------------------------------------------------------

    async def on_event(self, topic: str, aggregate_id: uuid.UUID, version: int) -> None:
        """A relayed event: starts runs for service events, refreshes tasks staff changed."""
        await self.on_batch([RelayedEvent(topic, aggregate_id, version)])

    async def on_result(self, result: ResultMessage) -> None:
        await self.on_batch([result])

    async def on_heartbeat(self, beat: HeartbeatMessage) -> None:
        await self.on_batch([beat])

    async def on_batch(self, inputs: list[PipelineInput]) -> None:
        """Everything that arrived together: new runs planned and their first steps dispatched
        first; then results and heartbeats recorded in one transaction, the runs they touched
        settled, one dispatch round (one more transaction); other inputs keep their place. Task
        messages go out once the lock is let go: the next batch is decided while confirmed."""
        async with self._lock:
            await self._fresh()
            await self._attempts.read_knobs()
            # New runs first, and their first steps out at once: an order's first step does
            # not wait behind the recording of other services' results in the same batch.
            starts = [i for i in inputs if isinstance(i, RelayedEvent) and i.topic in RUN_STARTERS]
            for event in starts:
                await self._take_event(event)
            if starts:
                await self._send(await self._attempts.dispatch())
            touched: dict[uuid.UUID, Task] = {}
            taken: list[Report] = []
            for item in inputs:
                if any(item is event for event in starts):
                    continue
                if isinstance(item, RelayedEvent):
                    await self._attempts.record(touched, taken)
                    await self._take_event(item)
                elif isinstance(item, CronTick):
                    await self._attempts.record(touched, taken)
                    await self._take_cron(item)
                else:
                    self._attempts.take(item, touched)
                    taken.append(item)
            await self._attempts.record(touched, taken)
            outgoing = await self._attempts.dispatch()
            self.changed.set()  # the timer may have something sooner to wait for
        await self._send(outgoing)

    async def _take_event(self, event: RelayedEvent) -> None:
        kind = RUN_STARTERS.get(event.topic)
        if kind is not None:
            await self._start_run(event.aggregate_id, event.version, kind, event.command_id)
        elif event.topic == "Server.Registered":
            await self._sweep.run()  # a build waiting for a node with that role may start
        elif event.topic in STAFF_TASK_TOPICS:
            run = await self._open.refresh(event.aggregate_id)
            if run is not None:
                await self._settle(run)  # a force-failed attempt may end the run

    async def _take_cron(self, tick: CronTick) -> None:
        if tick.job == "terminations":
            await self._attempts.retry_terminations()
        elif tick.job in ("retries", "stuck"):
            await self._attempts.expire_leases()

    async def tick(self) -> None:
        """Expires leases and starts whatever is due."""
        async with self._lock:
            await self._fresh()
            await self._attempts.read_knobs()
            await self._attempts.expire_leases()
            outgoing = await self._attempts.dispatch()
            if not self.halted:
                await self._open.checkpoint(self._clock(), every_s=CHECKPOINT_S)
        await self._send(outgoing)

    # --- decisions ---------------------------------------------------------------------

    async def _start_run(
        self, aggregate_id: uuid.UUID, run_no: int, kind: str, command_id: str | None = None
    ) -> None:
        with command_context(command_id):  # its lines and its tasks carry the command's id
            for _ in range(5):
                if await self._try_start_run(aggregate_id, run_no, kind):
                    return
        raise Conflict(f"could not start run {run_no} of {aggregate_id}: the service kept changing")

    async def _try_start_run(self, aggregate_id: uuid.UUID, run_no: int, kind: str) -> bool:
        """Plans and records the run; False when the service changed meanwhile (try again)."""
        service = await asyncio.to_thread(self._store.service, aggregate_id)
        service_id = service.service_id
        current = self._runs.get(service_id)
        # (the store is asked only about an event older than the service: a redelivery)
        if await self._open.last_run(service_id, ask_store=service.version > run_no) >= run_no:
            return True  # a redelivery, or an older event than the run we have
        if not may_start(service, kind):
            return True
        under_way = current is not None and current.outcomes() is None
        if builds_first(service, kind) and not (
            under_way and current is not None and current.kind in DEPLOY_KINDS
        ):
            kind = "deploy"  # not built yet (its order's run lost or not started): build first
        if under_way and current is not None and _waits_for(kind, current.kind):
            if kind == "change_plan" and current.kind in DEPLOY_KINDS:
                kind = "deploy"  # a deploy under way: deploy again, with the new plan
            else:
                return True  # still pending on the service: started when that run ends
        now = self._clock()
        try:  # the planner reads the server registry: never on the event loop
            tasks = await asyncio.to_thread(
                plan_run, self._planner, service, run_no, kind, now, current_command_id()
            )
        except PlacementWaits as waits:
            await self._wait_for_placement(service_id, waits.reason)
            return True  # started by the sweep once a node with the role is registered
        except DomainError as exc:  # a reserved vanity label…: say why
            failure = StepOutcome("plan", "", "plan", "error", str(exc))
            await self._record_outcome(service_id, kind, [failure])
            return True
        superseded = []
        if current is not None:
            superseded = [t for t in current.open_tasks() if t.is_open]
            for old in superseded:
                if old.state == "dispatched" and old.lease_expires_at is not None:
                    self._open.draining.setdefault(service_id, {})[old.id] = (
                        old.server_id,
                        old.lease_expires_at,
                    )
                old.cancel(now, actor="pipeline: superseded by a newer run")
        try:
            await self._save(service, *superseded, *tasks)
            redelivered = False
        except Conflict:  # planned before (a redelivery; the run may have ended long ago)
            tasks, redelivered = await self._open.stored(tasks), True  # as the store has them
            if not tasks:
                for old in superseded:
                    await self._open.refresh(old.id)
                return False  # the service changed under us; plan again on fresh state
        for task in tasks:
            self._open.remember(task)
        if not redelivered:
            pipeline_log.run_planned(tasks, service_id, run_no, kind)
        if redelivered and current is None:
            await self._settle(self._runs[service_id])  # ended already: forgotten again
        if not tasks:  # nothing to do on any node: the run has ended as it began
            if current is not None:
                for old in current.tasks.values():
                    self._open.by_id.pop(old.id, None)
            empty = self._runs[service_id] = _Run(service_id, run_no, kind)
            await self._settle(empty)
        return True

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
        pipeline_log.run_ended(run.service_id, run.run, run.kind, outcomes, run.command_id)
        ended_well = all(o.state in ("succeeded", "cancelled") for o in outcomes)
        if ended_well or service.status == "terminated":
            self._open.forget(run)
        waiting = pending_kind(service)
        if waiting is not None and waiting != run.kind:
            command_id = service.last_request_command  # the request that waited
            await self._start_run(service.id, service.version, waiting, command_id)

    async def _wait_for_placement(self, service_id: str, reason: str) -> None:
        self._check_halted()
        await self._writes.run(
            self._store.update_service,
            service_uuid(service_id),
            lambda service: service.wait_for_placement(self._clock(), reason),
            f"service {service_id} kept changing",
            5,
        )

    async def _record_outcome(
        self, service_id: str, kind: str, outcomes: list[StepOutcome]
    ) -> Service | None:
        """Records the outcome; the service as the store has it now (None: it kept changing)."""
        self._check_halted()
        try:
            return await self._writes.run(
                self._store.update_service,
                service_uuid(service_id),
                lambda service: record_outcome(service, kind, outcomes, self._clock()),
                f"service {service_id} kept changing",
                5,
            )
        except Conflict:
            log.warning("pipeline: could not record the %s outcome of %s", kind, service_id)
            return None

    async def _send(self, messages: list[TaskMessage], *, again: bool = False) -> None:
        if not self.halted:  # recorded already; halted: left to the next leader (leases)
            await self._sender.send(messages, again=again)

    async def resend(self, stop: asyncio.Event) -> None:
        """Re-sends task messages whose publish was not confirmed, until ``stop``."""
        await self._sender.run(stop)

    def halt(self) -> None:
        """Records, publishes and checkpoints nothing from now: a new leader's word stands."""
        self.halted = True

    async def writes_ended(self) -> None:
        """Returns once none of this pipeline's writes runs in a thread any more (one under
        way as it was halted may still commit: the next leader must read the store after)."""
        await self._writes.ended()

    def _check_halted(self) -> None:
        if self.halted:
            raise PipelineHalted("the pipeline was halted")

    def broker_connection(self, up: bool) -> None:
        """Lost: no heartbeat can come, so no lease runs out until it is back. Back: open
        leases get one lease more from now; kept task messages go out at once."""
        (self._hold.broker_back if up else self._hold.broker_lost)()

    async def _save(self, *aggregates: Any) -> None:
        if not aggregates:
            return
        self._check_halted()
        try:
            await self._writes.run(self._store.save, *aggregates)
        except Conflict:
            raise
        except Exception:
            self._stale = True  # nothing of it was recorded, but memory moved on
            raise
