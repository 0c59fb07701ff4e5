"""The Task aggregate: one idempotent step of one operation on one node, and its attempts.

planned → dispatched(attempt n, lease) → succeeded
                                     → failed → retry scheduled → dispatched(n+1) …
                                              → error (permanent, or out of attempts)
any open state → cancelled
a stuck attempt (dispatched, or awaiting its retry after a lease expiry) → error (force-failed)
any final state → hidden (a bulk delete: gone from the queue view, its events all kept)

A step's params are fixed when it is planned, a sealed password among them
(``password_sealed``), and every attempt's task message carries them. ``PasswordResealed``
is the one change to them: ``hostwright rotate-key`` seals that password afresh under the
current key on every task that may still run (open, or in error or cancelled and so open to a
Try again), so a retry after the old key is dropped still unseals.

A result or lease expiry for an attempt other than the current one is ignored: once an
attempt is superseded (its lease ran out, it was force-failed, the task was cancelled),
whatever its handler reports later changes nothing.

``stuck_since`` is when the current streak of lease expiries began (the first expired
lease's end); any sign of life from a handler — a renewed lease, a result — ends the streak.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from eventsourcing.domain import Aggregate

from domain.errors import Conflict
from domain.retry_policy import RetryPolicy

TASK_NAMESPACE = uuid.UUID("0f6f8d43-2a8e-4a55-9c3e-3f0b7f2f6a21")
OPEN_STATES = ("planned", "dispatched", "retry_scheduled")
FINAL_STATES = ("succeeded", "error", "cancelled")
LEASE_EXPIRED = "the handler's lease expired"


def task_uuid(service_id: str, run: int, step: str) -> uuid.UUID:
    """Stable per (service, run, step): planning the same run twice makes the same tasks."""
    return uuid.uuid5(TASK_NAMESPACE, f"task/{service_id}/{run}/{step}")


def _finish(task: Any, state: str, at: datetime) -> None:
    """An error or a cancel: no lease, no retry due, no streak of lease expiries any more."""
    task.state = state
    task.lease_expires_at = None
    task.due_at = None
    task.stuck_since = None
    task.finished_at = at


class Task(Aggregate):
    class Planned(Aggregate.Created):
        service_id: str
        run: int
        step: str
        role: str
        action: str
        server_id: str
        params: dict[str, Any]
        depends_on: list[str]
        operation: str  # what its run does: deploy, reset, suspend, unsuspend, terminate, …
        # the command whose event started the run: the correlation id of the task's log lines
        command_id: str | None

        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["command_id"] = None  # planned before runs knew their command

    def __init__(
        self,
        service_id: str,
        run: int,
        step: str,
        role: str,
        action: str,
        server_id: str,
        params: dict[str, Any],
        depends_on: list[str],
        operation: str = "deploy",
        command_id: str | None = None,
    ) -> None:
        self.service_id = service_id
        self.run = run
        self.step = step
        self.role = role
        self.action = action
        self.server_id = server_id
        self.params = params
        self.depends_on = depends_on
        self.operation = operation
        self.command_id = command_id
        self.state = "planned"
        self.attempt = 0
        self.round_start = 0  # attempts before the last "Try again"
        self.lease_expires_at: datetime | None = None
        # The lease as recorded; ``lease_expires_at`` may run further, on heartbeats held in
        # memory only (``heartbeat``)
        self.recorded_lease: datetime | None = None
        self.due_at: datetime | None = None
        self.error: str | None = None
        self.failed_retryably = False  # the last failure was one that may pass (node away…)
        self.outputs: dict[str, Any] = {}
        self.stuck_since: datetime | None = None
        self.finished_at: datetime | None = None
        self.hidden = False

    class Dispatched(Aggregate.Event):
        attempt: int
        lease_expires_at: datetime

        def apply(self, aggregate: Any) -> None:
            aggregate.state = "dispatched"
            aggregate.attempt = self.attempt
            aggregate.lease_expires_at = self.lease_expires_at
            aggregate.recorded_lease = self.lease_expires_at
            aggregate.due_at = None

    class LeaseRenewed(Aggregate.Event):
        attempt: int
        lease_expires_at: datetime

        def apply(self, aggregate: Any) -> None:
            aggregate.lease_expires_at = self.lease_expires_at
            aggregate.recorded_lease = self.lease_expires_at
            aggregate.stuck_since = None  # the handler is alive

    class Succeeded(Aggregate.Event):
        attempt: int
        changed: bool
        log: list[str]
        outputs: dict[str, Any]  # facts later steps need, e.g. the DKIM record's value

        def apply(self, aggregate: Any) -> None:
            aggregate.state = "succeeded"
            aggregate.lease_expires_at = None
            aggregate.error = None
            aggregate.outputs = self.outputs
            aggregate.stuck_since = None
            aggregate.finished_at = self.timestamp

    class Failed(Aggregate.Event):
        attempt: int
        error: str
        retryable: bool
        log: list[str]
        lease_expired: bool  # no result came: the attempt's lease ran out

        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["lease_expired"] = str(state["error"]).endswith(LEASE_EXPIRED)

        def apply(self, aggregate: Any) -> None:
            if self.lease_expired:
                began = aggregate.stuck_since or aggregate.lease_expires_at or self.timestamp
                aggregate.stuck_since = began
            else:
                aggregate.stuck_since = None
            aggregate.error = self.error
            aggregate.lease_expires_at = None
            aggregate.failed_retryably = self.retryable

    class RetryScheduled(Aggregate.Event):
        due_at: datetime

        def apply(self, aggregate: Any) -> None:
            aggregate.state = "retry_scheduled"
            aggregate.due_at = self.due_at

    class Errored(Aggregate.Event):
        error: str

        def apply(self, aggregate: Any) -> None:
            _finish(aggregate, "error", self.timestamp)
            aggregate.error = self.error

    class Cancelled(Aggregate.Event):
        actor: str

        def apply(self, aggregate: Any) -> None:
            _finish(aggregate, "cancelled", self.timestamp)

    class Retried(Aggregate.Event):
        """Staff asked to try an errored task again (Try again): attempts start afresh."""

        actor: str

        def apply(self, aggregate: Any) -> None:
            aggregate.state = "planned"
            aggregate.error = None
            aggregate.round_start = aggregate.attempt
            aggregate.stuck_since = None
            aggregate.finished_at = None

    class Hidden(Aggregate.Event):
        """Staff deleted a finished task from the queue (a bulk delete or clean-up); its
        events stay, so the audit replay and the timeline still show it."""

        actor: str
        reason: str

        def apply(self, aggregate: Any) -> None:
            aggregate.hidden = True

    class PasswordResealed(Aggregate.Event):
        """The step's sealed password, sealed afresh under key ``key_id`` (never in clear)."""

        password_sealed: str
        key_id: str

        def apply(self, aggregate: Any) -> None:
            aggregate.params = {**aggregate.params, "password_sealed": self.password_sealed}

    @classmethod
    def plan(
        cls,
        *,
        service_id: str,
        run: int,
        step: str,
        role: str,
        action: str,
        server_id: str,
        params: dict[str, Any],
        depends_on: list[str],
        now: datetime,
        operation: str = "deploy",
        command_id: str | None = None,
    ) -> Task:
        return cls._create(
            cls.Planned,
            id=task_uuid(service_id, run, step),
            timestamp=now,
            service_id=service_id,
            run=run,
            step=step,
            role=role,
            action=action,
            server_id=server_id,
            params=params,
            depends_on=depends_on,
            operation=operation,
            command_id=command_id,
        )

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    def stuck_at(self, now: datetime) -> datetime | None:
        """Since when the task has been stuck as of ``now``: the start of its streak of lease
        expiries, or the end of the current attempt's lease once that has passed; None when
        it is not stuck (finished, waiting its turn, or its handler showed life)."""
        if not self.is_open:
            return None
        if self.stuck_since is not None:
            return self.stuck_since
        lease = self.lease_expires_at
        if self.state == "dispatched" and lease is not None and lease <= now:
            return lease
        return None

    def is_due(self, now: datetime) -> bool:
        """Ready to dispatch, as far as this task alone can tell (dependencies are checked
        by whoever holds the whole run)."""
        if self.state == "planned":
            return True
        return self.state == "retry_scheduled" and self.due_at is not None and self.due_at <= now

    def dispatch(self, now: datetime, lease_s: float) -> int:
        """Starts the next attempt; returns its number."""
        if not self.is_due(now):
            raise Conflict(f"task {self.step} is {self.state}; it cannot be dispatched now")
        attempt = self.attempt + 1
        self.trigger_event(
            Task.Dispatched,
            timestamp=now,
            attempt=attempt,
            lease_expires_at=now + timedelta(seconds=lease_s),
        )
        return attempt

    def renew_lease(self, attempt: int, now: datetime, lease_s: float) -> bool:
        if self.state != "dispatched" or attempt != self.attempt:
            return False
        self.trigger_event(
            Task.LeaseRenewed,
            timestamp=now,
            attempt=attempt,
            lease_expires_at=now + timedelta(seconds=lease_s),
        )
        return True

    def heartbeat(self, attempt: int, now: datetime, lease_s: float) -> bool:
        """A sign of life from the current attempt's handler: its lease runs ``lease_s`` from
        now. Recorded (``LeaseRenewed``, True) only when that matters to anyone reading the
        store — the recorded lease has half its length or less left, or the attempt counts as
        stuck; else the lease is extended in memory only (False), so the heartbeats of a long
        step add one event per half lease at most, not one per beat. The recorded lease thus
        never runs out while the handler beats: the views do not call the task stuck, and a
        pipeline that takes over from the store does not expire it."""
        if self.state != "dispatched" or attempt != self.attempt:
            return False
        expires = now + timedelta(seconds=lease_s)
        recorded = self.recorded_lease
        lasts = recorded is not None and (recorded - now).total_seconds() > lease_s / 2
        if self.stuck_since is None and lasts:
            if self.lease_expires_at is None or expires > self.lease_expires_at:
                self.lease_expires_at = expires
            return False
        return self.renew_lease(attempt, now, lease_s)

    def succeed(
        self,
        attempt: int,
        now: datetime,
        *,
        changed: bool,
        log: list[str],
        outputs: dict[str, Any] | None = None,
    ) -> bool:
        """Records the attempt's success; False (nothing recorded) for a superseded attempt."""
        if self.state != "dispatched" or attempt != self.attempt:
            return False
        self.trigger_event(
            Task.Succeeded,
            timestamp=now,
            attempt=attempt,
            changed=changed,
            log=log,
            outputs=outputs or {},
        )
        return True

    def fail(
        self,
        attempt: int,
        now: datetime,
        *,
        error: str,
        retryable: bool,
        log: list[str],
        policy: RetryPolicy,
        unit_random: float,
        lease_expired: bool = False,
    ) -> bool:
        """Records the attempt's failure and what follows: a retry when the policy allows,
        else error. False (nothing recorded) for a superseded attempt. ``lease_expired``: no
        result came, the attempt's lease ran out (``expire_lease``)."""
        if self.state != "dispatched" or attempt != self.attempt:
            return False
        self.trigger_event(
            Task.Failed,
            timestamp=now,
            attempt=attempt,
            error=error,
            retryable=retryable,
            log=log,
            lease_expired=lease_expired,
        )
        tries = attempt - self.round_start
        if retryable and not policy.gives_up_after(tries):
            due = now + timedelta(seconds=policy.delay(tries, unit_random))
            self.trigger_event(Task.RetryScheduled, timestamp=now, due_at=due)
        else:
            reason = error if not retryable else f"gave up after {tries} attempts: {error}"
            self.trigger_event(Task.Errored, timestamp=now, error=reason)
        return True

    def expire_lease(self, now: datetime, policy: RetryPolicy, unit_random: float) -> bool:
        """The handler went silent: its attempt fails (retryably) once the lease has run out."""
        if self.state != "dispatched" or self.lease_expires_at is None:
            return False
        if self.lease_expires_at > now:
            return False
        return self.fail(
            self.attempt,
            now,
            error=f"attempt {self.attempt}: {LEASE_EXPIRED}",
            retryable=True,
            log=[],
            lease_expired=True,
            policy=policy,
            unit_random=unit_random,
        )

    def force_fail(self, now: datetime, actor: str) -> bool:
        """Staff gave up on a stuck attempt — one in flight, or one awaiting its retry after
        its lease ran out: error now. Every attempt up to the current one is superseded, so
        whatever their handlers report later changes nothing (``succeed`` and ``fail`` only
        take the current attempt of a dispatched task)."""
        stuck_retry = self.state == "retry_scheduled" and self.stuck_since is not None
        if self.state != "dispatched" and not stuck_retry:
            return False
        self.trigger_event(
            Task.Errored,
            timestamp=now,
            error=f"force-failed by {actor} while attempt {self.attempt} was stuck",
        )
        return True

    def cancel(self, now: datetime, actor: str) -> bool:
        if self.state in FINAL_STATES:
            return False
        self.trigger_event(Task.Cancelled, timestamp=now, actor=actor)
        return True

    def retry(self, now: datetime, actor: str) -> bool:
        if self.state not in ("error", "cancelled") or self.hidden:
            return False
        self.trigger_event(Task.Retried, timestamp=now, actor=actor)
        return True

    @property
    def may_run_again(self) -> bool:
        """Open, or finished in a way staff may Try again (error, cancelled; not hidden)."""
        return self.state != "succeeded" and not self.hidden

    @property
    def password_sealed(self) -> str | None:
        """The sealed password among the step's params, when it has one."""
        sealed = self.params.get("password_sealed")
        return sealed if isinstance(sealed, str) and sealed else None

    def reseal_password(self, now: datetime, password_sealed: str, key_id: str) -> bool:
        """Takes the step's password sealed afresh; False (nothing recorded) when the step
        has none, will not run again, or already has this text."""
        if not self.may_run_again or self.password_sealed in (None, password_sealed):
            return False
        self.trigger_event(
            Task.PasswordResealed, timestamp=now, password_sealed=password_sealed, key_id=key_id
        )
        return True

    def hide(self, now: datetime, actor: str, reason: str) -> bool:
        """Deletes a finished task from the queue view; False (nothing recorded) while it is
        open or when it is hidden already."""
        if self.state not in FINAL_STATES or self.hidden:
            return False
        self.trigger_event(Task.Hidden, timestamp=now, actor=actor, reason=reason)
        return True


# The events that set a task's ``state``; ``Dispatched`` also sets its ``attempt``. So the
# latest of them says whether an attempt is current: a ``Dispatched`` of that attempt (what a
# store can answer from one row: ops/adapters/step_gate.py). tests/unit/test_task_state_events.py
# holds this list to the events' own ``apply``.
STATE_EVENTS: tuple[type[Any], ...] = (
    Task.Planned,
    Task.Dispatched,
    Task.Succeeded,
    Task.RetryScheduled,
    Task.Errored,
    Task.Cancelled,
    Task.Retried,
)


def is_current_attempt(latest_state_event: Any, attempt: int) -> bool:
    """Whether ``attempt`` is the task's current one, given the latest of its ``STATE_EVENTS``:
    what ``task.state == "dispatched" and task.attempt == attempt`` says of the whole task."""
    return isinstance(latest_state_event, Task.Dispatched) and latest_state_event.attempt == attempt
