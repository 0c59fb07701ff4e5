"""Where a deploy's time goes, read from the store: order → first step started (the service's
first Task.Dispatched minus its Service.Ordered), order → pipeline planning (Service.Placed),
order → active (Service.Activated), and each step's time from ready to dispatched to done.

Consumes the store's notification log (only the topics the figures come from); emits a Phase
per burst and, per step, the spans in ms.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from eventsourcing.utils import get_topic

from domain.service import Service
from domain.task import Task
from ops.devtools.http_load import LoadResult
from ops.store.event_store import EventStore

_OUTCOME_TOPICS = (
    get_topic(Service.Ordered),
    get_topic(Service.Activated),
    get_topic(Service.DeployFailed),
)
_TOPICS = {
    get_topic(Service.Ordered): "ordered",
    get_topic(Service.Placed): "placed",
    get_topic(Service.Activated): "activated",
    get_topic(Service.DeployFailed): "failed",
    get_topic(Task.Planned): "planned",
    get_topic(Task.Dispatched): "dispatched",
    get_topic(Task.Succeeded): "succeeded",
}


@dataclass
class Phase:
    name: str
    services: int
    active: int
    failed: int
    span_s: float  # first Ordered → last Activated
    first_step_ms: list[float]
    active_ms: list[float]
    orders: LoadResult
    # order → the pipeline began planning it (relay, broker, the pipeline's queue)
    planning_ms: list[float] = field(default_factory=list)

    @property
    def per_minute(self) -> float:
        return self.active / self.span_s * 60 if self.span_s else 0.0


class EventReader:
    """Follows the store's notification log for the events the figures come from."""

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self._after = 0
        self._task_service: dict[uuid.UUID, str] = {}
        self._service_of: dict[uuid.UUID, str] = {}
        self.ordered: dict[str, datetime] = {}
        self.first_dispatch: dict[str, datetime] = {}
        self.placed: dict[str, datetime] = {}  # when the pipeline began planning it
        self.activated: dict[str, datetime] = {}
        self.failed: dict[str, datetime] = {}
        self._steps: dict[uuid.UUID, _StepTimes] = {}
        self._outcomes_after = 0

    def poll(self) -> None:
        """Reads every event the figures come from (after a phase: it decodes ~48 a service)."""
        self._after = self._read(list(_TOPICS), self._after)

    def poll_outcomes(self) -> None:
        """Reads only what says a service settled: cheap enough to do while a burst runs on
        the same two cores, where decoding every task event would take CPU from it."""
        self._outcomes_after = self._read(list(_OUTCOME_TOPICS), self._outcomes_after)

    def _read(self, topics: list[str], after: int) -> int:
        while True:
            page = self._store.recorder.select_notifications(
                start=after, limit=5000, topics=topics, inclusive_of_start=False
            )
            for notification in page:
                self._take(_TOPICS[notification.topic], self._store.decode(notification))
            if page:
                after = page[-1].id
            if len(page) < 5000:
                return after

    def _take(self, kind: str, event: Any) -> None:
        if kind == "ordered":
            self._service_of[event.originator_id] = event.service_id
            self.ordered[event.service_id] = event.timestamp
        elif kind == "planned":
            self._task_service[event.originator_id] = event.service_id
            self._steps[event.originator_id] = _StepTimes(
                event.service_id,
                event.run,
                event.step,
                event.role,
                event.timestamp,
                tuple(event.depends_on),
            )
        elif kind == "dispatched":
            sid = self._task_service.get(event.originator_id)
            if sid is not None and sid not in self.first_dispatch:
                self.first_dispatch[sid] = event.timestamp
            times = self._steps.get(event.originator_id)
            if times is not None:
                times.dispatched = event.timestamp
        elif kind == "succeeded":
            times = self._steps.get(event.originator_id)
            if times is not None:
                times.succeeded = event.timestamp
                times.handler_ms, times.commands_ms = _handler_timing(event.log)
        elif kind == "placed":
            sid = self._service_of.get(event.originator_id)
            if sid is not None:
                self.placed.setdefault(sid, event.timestamp)
        elif kind in ("activated", "failed"):
            sid = self._service_of.get(event.originator_id)
            if sid is not None:
                getattr(self, kind).setdefault(sid, event.timestamp)

    async def wait_settled(self, ids: range, timeout: float) -> None:
        wanted = {str(i) for i in ids}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            await asyncio.to_thread(self.poll_outcomes)
            if wanted <= set(self.activated) | set(self.failed):
                await asyncio.to_thread(self.poll)
                return
            await asyncio.sleep(0.25)
        done = len(wanted & (set(self.activated) | set(self.failed)))
        raise TimeoutError(f"only {done} of {len(wanted)} services settled in {timeout:.0f}s")

    def step_times(self, ids: range) -> dict[str, list[float]]:
        """Where a step's time goes, in ms: from ready (planned, or its last dependency
        succeeded) to dispatched — the pipeline, with per-server limits — and from dispatched
        to its success recorded, per role — the broker, the handler, SSH and the node — with
        the part the handler itself timed and, of that, its node commands (the step's log)."""
        wanted = {str(i) for i in ids}
        by_key = {(t.service_id, t.run, t.step): t for t in self._steps.values()}
        spans: dict[str, list[float]] = defaultdict(list)
        for t in self._steps.values():
            if t.service_id not in wanted or t.dispatched is None or t.succeeded is None:
                continue
            deps = [by_key.get((t.service_id, t.run, d)) for d in t.depends_on]
            done = [d.succeeded for d in deps if d is not None and d.succeeded is not None]
            ready = max([t.planned, *done])
            spans["ready → dispatched (pipeline)"].append(_ms(t.dispatched - ready))
            spans[f"dispatched → succeeded, {t.role}"].append(_ms(t.succeeded - t.dispatched))
            if t.handler_ms is not None:
                spans[f"dispatched → succeeded, {t.role}: in the handler"].append(t.handler_ms)
                spans[f"dispatched → succeeded, {t.role}: node commands"].append(t.commands_ms)
        return dict(spans)

    def phase(self, name: str, ids: range, orders: LoadResult) -> Phase:
        sids = [str(i) for i in ids]
        ordered = [self.ordered[s] for s in sids if s in self.ordered]
        active = [self.activated[s] for s in sids if s in self.activated]
        span = (max(active) - min(ordered)).total_seconds() if active and ordered else 0.0
        return Phase(
            name,
            len(sids),
            len(active),
            sum(1 for s in sids if s in self.failed),
            span,
            [
                _ms(self.first_dispatch[s] - self.ordered[s])
                for s in sids
                if s in self.first_dispatch
            ],
            [_ms(self.activated[s] - self.ordered[s]) for s in sids if s in self.activated],
            orders,
            [_ms(self.placed[s] - self.ordered[s]) for s in sids if s in self.placed],
        )


@dataclass
class _StepTimes:
    service_id: str
    run: int
    step: str
    role: str
    planned: datetime
    depends_on: tuple[str, ...]
    dispatched: datetime | None = None
    succeeded: datetime | None = None
    handler_ms: float | None = None  # the handler's own timing, from the step's log
    commands_ms: float = 0.0


_COMMAND_MS = re.compile(r" -> exit \d+ \((\d+) ms\)$")
_HANDLER_MS = re.compile(r"^(\d+) ms in the \w+ handler$")


def _handler_timing(log: list[str]) -> tuple[float | None, float]:
    """(ms the step spent in the handler, ms of it in node commands), from the step's log."""
    handler = next((float(m[1]) for line in log if (m := _HANDLER_MS.match(line))), None)
    commands = sum(float(m[1]) for line in log if (m := _COMMAND_MS.search(line)))
    return handler, commands


def _ms(delta: Any) -> float:
    return float(delta.total_seconds() * 1000)
