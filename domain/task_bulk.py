"""Bulk changes to the task queue: what staff may ask of ``POST /v1/tasks/bulk``, validated.

``parse_bulk`` consumes the request body (untrusted JSON), the time, the actor and the
defaults, and emits a ``ChangeTasksInBulk`` command or raises InvalidInput before anything
is read or recorded. The command's ``decide`` then records at most one event on one Task:

- ``delete_succeeded`` / ``delete_failed`` / ``delete_cancelled``: ``Task.Hidden`` on tasks
  that finished in that state at least ``older_than_s`` ago (default 0: all of them);
- ``clean_completed``: ``Task.Hidden`` on every finished task older than ``older_than_s``
  (default ``clean_completed_after_s``);
- ``force_fail_stuck``: ``Task.Errored`` on open tasks stuck for at least ``older_than_s``
  (default ``stuck_after_s``): their lease ran out that long ago with no sign of life since.

``service_id`` and ``server_id`` narrow any action to one service or one node. ``decide``
checks the task's own state and times, so a view that lags the store (it proposes the
candidates) never makes it change a task that no longer qualifies.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from domain.commands import parse_external_id
from domain.errors import InvalidInput
from domain.server import parse_server_id
from domain.task import FINAL_STATES, Task

FORCE_FAIL_STUCK = "force_fail_stuck"
CLEAN_COMPLETED = "clean_completed"
# the final states each hiding action takes
HIDING_ACTIONS: dict[str, tuple[str, ...]] = {
    "delete_succeeded": ("succeeded",),
    "delete_failed": ("error",),
    "delete_cancelled": ("cancelled",),
    CLEAN_COMPLETED: FINAL_STATES,
}
BULK_ACTIONS = (*HIDING_ACTIONS, FORCE_FAIL_STUCK)
MAX_OLDER_THAN_S = 10 * 366 * 24 * 3600.0  # ten years: beyond it, no time arithmetic is sane
_BULK_FIELDS = frozenset({"action", "older_than_s", "service_id", "server_id"})


class QueueAges(Protocol):
    """The ages an action uses when the request names none (the settings hold them)."""

    @property
    def clean_completed_after_s(self) -> float: ...

    @property
    def stuck_after_s(self) -> float: ...


@dataclass(frozen=True)
class BulkDefaults:
    """Fixed ``QueueAges``: a week for clean-ups, two minutes (twice a 60 s lease) for stuck."""

    clean_completed_after_s: float = 7 * 24 * 3600.0
    stuck_after_s: float = 120.0


@dataclass(frozen=True, kw_only=True)
class ChangeTasksInBulk:
    """Hide finished tasks, or force-fail stuck ones, that match every filter given."""

    action: str
    now: datetime
    actor: str
    older_than_s: float
    service_id: str | None = None
    server_id: str | None = None

    @property
    def cutoff(self) -> datetime:
        """Tasks finished (or stuck since) at or before this time qualify."""
        return self.now - timedelta(seconds=self.older_than_s)

    @property
    def forces_failure(self) -> bool:
        return self.action == FORCE_FAIL_STUCK

    @property
    def states(self) -> tuple[str, ...]:
        """The final states a hiding action takes; empty for ``force_fail_stuck``."""
        return HIDING_ACTIONS.get(self.action, ())

    def decide(self, task: Task) -> bool:
        """Records Task.Hidden or Task.Errored on ``task`` when it qualifies; False otherwise."""
        if self.service_id is not None and task.service_id != self.service_id:
            return False
        if self.server_id is not None and task.server_id != self.server_id:
            return False
        if self.forces_failure:
            since = task.stuck_at(self.now)
            if since is None or since > self.cutoff:
                return False
            return task.force_fail(self.now, self.actor)
        if task.state not in self.states or task.finished_at is None:
            return False
        if task.finished_at > self.cutoff:
            return False
        return task.hide(self.now, self.actor, reason=self.action)


def parse_bulk(
    body: object, *, now: datetime, actor: str, defaults: QueueAges
) -> ChangeTasksInBulk:
    """Validates a ``POST /v1/tasks/bulk`` body, or raises InvalidInput."""
    if not isinstance(body, dict):
        raise InvalidInput("the request body must be a JSON object")
    unknown = sorted(map(str, set(body) - _BULK_FIELDS))
    if unknown:
        raise InvalidInput(f"unknown field(s): {', '.join(unknown)}")
    action = body.get("action")
    if action not in BULK_ACTIONS:
        raise InvalidInput(f"action must be one of {', '.join(BULK_ACTIONS)}")
    assert isinstance(action, str)
    if "older_than_s" in body:
        older_than_s = _seconds(body["older_than_s"])
    elif action == FORCE_FAIL_STUCK:
        older_than_s = defaults.stuck_after_s
    elif action == CLEAN_COMPLETED:
        older_than_s = defaults.clean_completed_after_s
    else:
        older_than_s = 0.0
    service_id = body.get("service_id")
    server_id = body.get("server_id")
    return ChangeTasksInBulk(
        action=action,
        now=now,
        actor=actor,
        older_than_s=older_than_s,
        service_id=None if service_id is None else parse_external_id(service_id, "service_id"),
        server_id=None if server_id is None else parse_server_id(server_id),
    )


def _seconds(raw: object) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise InvalidInput("older_than_s must be a number of seconds")
    # refuses NaN and infinity too (math.isfinite raises on an int too big for a float)
    if not 0 <= raw <= MAX_OLDER_THAN_S:
        raise InvalidInput(f"older_than_s must be from 0 to {MAX_OLDER_THAN_S:.0f} seconds")
    return float(raw)
