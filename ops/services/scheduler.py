"""The cron runner: one scheduler for all periodic work, safe to run in any number of processes.

Time is cut into periods per job: period ``n`` of a job that runs every ``p`` seconds is ``[n*p,
(n+1)*p)`` in Unix time, so every scheduler on every machine numbers them alike. At each
period's start a scheduler claims ``(job, n)`` in the database
(ops/services/schedule_claims.py); only the one whose claim succeeds runs the job for that
period, so each job runs once per period however many schedulers run. Periods nobody was up for
are not made up: after a restart a job runs once, for the current period. A job that raises is
logged and runs again next period; one still running when its next period starts is not started
again here, and the period is left unclaimed for another scheduler.

Consumes: a clock (Unix seconds, injectable). Emits: calls to each job's action with a
``Tick`` (what ops/services/cron_jobs.py publishes as ``cron.<job>``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import random
import re
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from ops.runtime.pause import pause
from ops.services.schedule_claims import ClaimStore
from ops.store.database import database_unavailable
from ops.store.outage import Outage

log = logging.getLogger(__name__)

_JOB_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
_MIN_DELAY = 0.001  # a timer may fire a hair before the boundary; never spin on it


@dataclass(frozen=True)
class Tick:
    """One run of one job: period ``period`` of ``period_s`` seconds."""

    job: str
    period: int
    period_s: float

    @property
    def due_at(self) -> datetime:
        """When the period started (UTC)."""
        return datetime.fromtimestamp(self.period * self.period_s, UTC)

    def to_json(self) -> bytes:
        body = {**asdict(self), "due_at": self.due_at.isoformat()}
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, body: bytes) -> Tick:
        """Raises ValueError on anything malformed."""
        try:
            value: Any = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a JSON cron tick: {exc}") from exc
        if not isinstance(value, dict):
            raise ValueError("a cron tick is a JSON object")
        job, period, period_s = value.get("job"), value.get("period"), value.get("period_s")
        if not isinstance(job, str) or not _JOB_NAME.fullmatch(job):
            raise ValueError("a cron tick needs a job name")
        if not isinstance(period, int) or isinstance(period, bool) or period < 0:
            raise ValueError("a cron tick needs a whole, non-negative period")
        if not isinstance(period_s, int | float) or isinstance(period_s, bool) or period_s <= 0:
            raise ValueError("a cron tick needs period_s above 0")
        return cls(job=job, period=period, period_s=float(period_s))


Action = Callable[[Tick], Awaitable[None]]


@dataclass(frozen=True)
class Job:
    """``action`` runs once per period of ``period_s`` seconds, across all schedulers."""

    name: str
    period_s: float
    action: Action

    def __post_init__(self) -> None:
        if not _JOB_NAME.fullmatch(self.name):
            raise ValueError(f"job name {self.name!r}: lowercase letters, digits and '_'")
        if not (math.isfinite(self.period_s) and self.period_s > 0):
            raise ValueError(f"job {self.name}: period_s must be above 0")

    def period_at(self, now: float) -> int:
        return math.floor(now / self.period_s)


class Scheduler:
    def __init__(
        self,
        jobs: Sequence[Job],
        claims: ClaimStore,
        *,
        name: str | None = None,
        clock: Callable[[], float] = time.time,
        max_jitter_s: float = 0.02,
        stop_grace: float = 10.0,
        retry_s: float = 1.0,
    ) -> None:
        names = [job.name for job in jobs]
        if not names:
            raise ValueError("a scheduler needs at least one job")
        if len(set(names)) != len(names):
            raise ValueError(f"job names must be unique: {', '.join(names)}")
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self._jobs = list(jobs)
        self._claims = claims
        self._clock = clock
        # Schedulers waking at the same instant would always let the fastest win the claim;
        # a little jitter spreads both the load and the wins.
        self._max_jitter_s = min(max_jitter_s, min(job.period_s for job in jobs) / 10)
        self._stop_grace = stop_grace
        self._retry_s = retry_s
        self._handled: dict[str, int] = {}  # job -> last period this scheduler dealt with
        self._running: dict[str, asyncio.Task[None]] = {}
        self._unclaimable: set[str] = set()  # jobs whose claim failed (database trouble)
        self._outage = Outage("scheduler")

    async def run_due(self) -> list[Tick]:
        """Claims the current period of every job not yet dealt with in it and starts the
        ones it won (without waiting for them); returns their ticks."""
        self._unclaimable.clear()
        now = self._clock()
        started = []
        for job in self._jobs:
            period = job.period_at(now)
            if self._handled.get(job.name, -1) >= period:
                continue
            running = self._running.get(job.name)
            if running is not None and not running.done():
                log.warning(
                    "scheduler: %s still running; period %d left to others", job.name, period
                )
                self._handled[job.name] = period
                continue
            try:
                won = await asyncio.to_thread(
                    self._claims.claim, job.name, period, job.period_s, self.name, now
                )
            except Exception as exc:
                if database_unavailable(exc):
                    self._outage.failed(exc)  # one warning per outage, not per job and try
                else:
                    log.exception(
                        "scheduler: cannot claim %s period %d; trying again", job.name, period
                    )
                self._unclaimable.add(job.name)
                continue
            self._outage.recovered()
            self._handled[job.name] = period
            if won:
                tick = Tick(job.name, period, job.period_s)
                self._running[job.name] = asyncio.ensure_future(self._run(job, tick))
                started.append(tick)
        return started

    async def run(self, stop: asyncio.Event) -> None:
        """Runs jobs at each period's start until ``stop`` is set, then lets running jobs
        finish within ``stop_grace``."""
        plan = ", ".join(f"{job.name} every {job.period_s:g}s" for job in self._jobs)
        log.info("scheduler %s: running %s", self.name, plan)
        try:
            while not stop.is_set():
                await self.run_due()
                await pause(stop, self._delay())
        finally:
            await self.finish()

    async def finish(self) -> None:
        """Waits for running jobs within ``stop_grace``, then cancels what is left."""
        running = [task for task in self._running.values() if not task.done()]
        if running:
            _, late = await asyncio.wait(running, timeout=self._stop_grace)
            for task in late:
                log.warning("scheduler: cancelling a job that outlived the stop grace")
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    def _delay(self) -> float:
        """Until the earliest period not yet dealt with: at once when a period began while
        the last round ran; ``retry_s`` after a failed claim."""
        now = self._clock()
        starts = []
        for job in self._jobs:
            period = max(job.period_at(now), self._handled.get(job.name, -1) + 1)
            start = period * job.period_s
            if job.name in self._unclaimable:
                start = max(start, now + self._retry_s)
            starts.append(start)
        delay = min(starts) - now + random.uniform(0, self._max_jitter_s)  # noqa: S311 (not security)
        return max(delay, _MIN_DELAY)

    async def _run(self, job: Job, tick: Tick) -> None:
        try:
            await job.action(tick)
        except Exception:
            log.exception(
                "scheduler: %s failed in period %d; it runs again next period",
                job.name,
                tick.period,
            )
