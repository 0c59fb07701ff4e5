"""The pipeline's sweep: no service that waits for work is left without a run.

Consumes: the ids of the services not settled yet (``UnsettledServices``: in production the
services view's rows with a pending request or a status of provisioning / terminating,
ops/views/unsettled_services.py), the open runs, and each such service as the store has it.
Emits: through the pipeline's own start, the run the service's latest request asked for (the
start decides as for a relayed event: start it, let it wait behind a build, or nothing), and a
settle of an ended run whose outcome is not recorded yet.

Why: a run-starting event can be lost for good (dead-lettered; queued in a process that
died), an outcome may not have been recorded (the service kept changing), and a build may wait
for a node to be registered. The pipeline sweeps when it rebuilds, every ``SWEEP_S`` seconds
(ops/services/pipeline.py) and when a server is registered.

Cost: one indexed query for the unsettled ids; a service with a run under way is skipped
without a load, so only the services that really wait are loaded (one aggregate each).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from domain.run_outcome import RUN_STARTERS
from domain.service import Service, service_uuid
from handlers.pipeline_runs import OpenRuns, Run

log = logging.getLogger("handlers.pipeline")  # one logger for all of the pipeline's parts

SWEEP_S = 30.0


class UnsettledServices(Protocol):
    """The services that may still wait for a run (synchronous; called in a thread). It may
    lag the store and name settled services too: the sweep checks each against the store."""

    def unsettled_services(self) -> list[str]: ...


@dataclass(frozen=True, kw_only=True)
class Sweep:
    source: UnsettledServices | None
    open_runs: OpenRuns
    load: Callable[[uuid.UUID], Awaitable[Service]]
    start_run: Callable[[uuid.UUID, int, str, str | None], Awaitable[None]]
    settle: Callable[[Run], Awaitable[None]]

    async def run(self) -> int:
        """Starts what the unsettled services wait for; how many it looked at in the store."""
        if self.source is None:
            return 0
        try:
            service_ids = await asyncio.to_thread(self.source.unsettled_services)
        except Exception:
            log.exception("pipeline: the sweep could not read the unsettled services")
            return 0
        loaded = 0
        for service_id in service_ids:
            run = self.open_runs.runs.get(service_id)
            if run is not None and run.outcomes() is None:
                continue  # under way: what comes after it is started when it ends
            try:
                if run is not None and not run.outcome_recorded:
                    await self.settle(run)  # records the outcome, starts a queued request
                loaded += 1
                await self._start_latest(service_id)
            except Exception:
                log.exception("pipeline: the sweep could not start the work of %s", service_id)
        return loaded

    async def _start_latest(self, service_id: str) -> None:
        service = await self.load(service_uuid(service_id))
        name, version = service.last_request
        if await self.open_runs.last_run(service_id, ask_store=True) >= version:
            return  # the request has its run (or waited for one that took it along)
        command_id = service.last_request_command
        log.info(
            "pipeline: sweep starts %s of %s (no run yet)",
            name,
            service_id,
            extra={"service": service_id, "command_id": command_id},
        )
        await self.start_run(service.id, version, RUN_STARTERS[f"Service.{name}"], command_id)
