"""A role handler service (web, mail or dns): one task message in, one result message out.

``RoleHandler.handle(message)`` consumes a delivery's ``body`` (a ``TaskMessage``), finds the
node in the ``ServerDirectory``, runs the task's step action against that node's driver (an
owned action planned before owner marks takes the task's service id as ``owner``:
handlers/ownership.py ``with_owner``) while a ``HeartbeatMessage`` goes out every
``heartbeat_interval`` seconds, and publishes exactly one ``ResultMessage``: ``succeeded`` (with
``changed``, outputs and log), ``failed_retryable`` or ``failed_permanent`` (with a readable
error and the log). Whatever the step raises becomes a result; only a malformed body raises
(ValueError), so the consumer loop dead-letters it. The publisher given in production waits a
broker outage out (the step ran: its result gets out once the broker is back); a publish that
still fails raises: the delivery is then not acked, comes back, and the idempotent step runs
again. Drivers (with their SSH pools) live as long as the handler.
The step runs inside its step fence (handlers/step_fence.py): another attempt of the same
service's work of that role on that node, in this process or another, runs before or after it,
never at the same time; an attempt waiting for the fence keeps sending its heartbeats. Once
it holds the fence, an attempt the store says was superseded (``Attempts``) is dropped: it
touches nothing and publishes ``failed_permanent`` "superseded; not run", which the pipeline
records nowhere but takes as word that the attempt is off the node (a newer run of the service
waiting for it dispatches at once).
Each line the step's log notes also goes, as it is noted, to ``live`` (handlers/live_lines.py:
best effort, never waited on) for whoever follows the task's log while it runs, until the step
ends: lines not sent by then are left to the result's log, what is recorded for the task, the
same with or without the live channel (a superseded attempt's, recorded nowhere, are dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from domain.correlation import command_context
from handlers.hestia_command import NodeError
from handlers.hestia_driver import HestiaDriver, NodeAccess
from handlers.live_lines import LiveLines
from handlers.messages import HeartbeatMessage, ResultMessage, TaskMessage
from handlers.ownership import with_owner
from handlers.step import NodeDriver, StepAction, StepLog, StepOutcome, StepParamsError
from handlers.step_fence import (
    Attempts,
    GateOfParts,
    LocalFences,
    StepFences,
    StepGate,
    fence_key,
    gated,
)
from handlers.step_params import Unseal, resolve_params
from handlers.step_registry import STEP_ACTIONS

log = logging.getLogger(__name__)


class Publisher(Protocol):
    async def publish(self, routing_key: str, body: bytes, message_id: str) -> None:
        """Publishes one message and returns once the broker has confirmed it."""


class ServerDirectory(Protocol):
    async def node_access(self, server_id: str) -> NodeAccess | None:
        """How to reach the node, or None when no such server is registered."""


class ClosableDriver(NodeDriver, Protocol):
    async def close(self) -> None: ...


class InboundMessage(Protocol):
    @property
    def body(self) -> bytes: ...


DriverFactory = Callable[[NodeAccess], ClosableDriver]


class RoleHandler:
    def __init__(
        self,
        role: str,
        *,
        directory: ServerDirectory,
        publisher: Publisher,
        heartbeat_interval: float = 5.0,
        drivers: DriverFactory | None = None,
        actions: Mapping[str, StepAction] | None = None,
        unseal: Unseal | None = None,
        fences: StepFences | None = None,
        fence_poll_s: float = 0.5,
        attempts: Attempts | None = None,
        gate: StepGate | None = None,
        live: LiveLines | None = None,
    ) -> None:
        """``gate`` asks the step fence and the current attempt at once; without one, they
        are asked of ``fences`` (this process only, by default) and ``attempts`` (none: every
        attempt runs). ``live``: where the steps' log lines go as they are noted (None:
        nowhere; the recorded log is the same either way)."""
        self.role = role
        self._directory = directory
        self._publisher = publisher
        self._heartbeat_interval = heartbeat_interval
        self._make_driver: DriverFactory = drivers or HestiaDriver
        self._actions = dict(STEP_ACTIONS if actions is None else actions)
        self._drivers: dict[str, tuple[NodeAccess, ClosableDriver]] = {}
        self._unseal = unseal or _cannot_unseal
        self._gate: StepGate = gate or GateOfParts(fences or LocalFences(), attempts)
        self._fence_poll_s = fence_poll_s
        self._live = live

    async def handle(self, message: InboundMessage) -> None:
        task = decode_task(message.body)
        with command_context(task.command_id):  # every line of this step carries it
            await self._handle(task)

    async def _handle(self, task: TaskMessage) -> None:
        step = object()  # this handling's lines, apart from another's of the same task
        steplog = StepLog(self._live_sink(task.task_id, step))
        began = time.monotonic()
        heartbeat = asyncio.create_task(self._heartbeats(task))
        result: ResultMessage
        try:
            async with self._gated(task, steplog) as current:
                if current is not False:
                    result = await self._run(task, steplog)
                    _log_step(task, result, time.monotonic() - began)
                else:
                    log.info(
                        "%s: %s (%s) was superseded; dropped", self.role, task.message_id, task.step
                    )
                    result = _not_run(task, self.role, steplog)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        took = f"{(time.monotonic() - began) * 1000:.0f} ms in the {self.role} handler"
        if self._live is not None:  # the result carries its whole log: the rest need not go
            self._live.settled(task.task_id, step)
        result = dataclasses.replace(result, log=[*result.log, took])
        await self._publisher.publish(result.routing_key, result.to_json(), result.message_id)

    async def close(self) -> None:
        drivers, self._drivers = self._drivers, {}
        for _, driver in drivers.values():
            await driver.close()
        await self._gate.close()
        if self._live is not None:
            await self._live.close()

    def _live_sink(self, task_id: str, step: object) -> Callable[[str], None] | None:
        live = self._live
        if live is None:
            return None
        return lambda line: live.send(task_id, line, step)

    def _gated(
        self, task: TaskMessage, steplog: StepLog
    ) -> AbstractAsyncContextManager[bool | None]:
        """The task's step fence, held for the body, which learns whether the attempt is still
        the task's current one (False only when the store says it was superseded or its task
        ended); a wait shows in the step's log and ours."""

        def waiting(reason: str) -> None:
            steplog.note(reason)
            log.info("%s: %s (%s): %s", self.role, task.message_id, task.step, reason)

        return gated(
            self._gate,
            fence_key(task),
            task.task_id,
            task.attempt,
            poll_s=self._fence_poll_s,
            on_wait=waiting,
        )

    async def _run(self, task: TaskMessage, steplog: StepLog) -> ResultMessage:
        def failed(error: str, *, retryable: bool) -> ResultMessage:
            outcome = "failed_retryable" if retryable else "failed_permanent"
            steplog.note(f"{outcome}: {error}")
            return ResultMessage(
                task.task_id, task.attempt, self.role, outcome, error=error, log=steplog.lines
            )

        action = self._actions.get(task.action)
        if action is None:
            return failed(f"unknown action {task.action!r}", retryable=False)
        steplog.note(f"{task.action} on {task.server_id} (attempt {task.attempt})")
        try:
            driver = await self._driver(task.server_id)
            if driver is None:
                return failed(f"unknown server {task.server_id!r}", retryable=False)
            planned = with_owner(task.action, task.params, task.service_id)
            params = resolve_params(planned, task.inputs, self._unseal)
            outcome: StepOutcome = await action(driver, params, task.inputs, steplog)
        except NodeError as exc:
            return failed(str(exc), retryable=exc.retryable)
        except StepParamsError as exc:
            return failed(f"bad params for {task.action}: {exc}", retryable=False)
        except Exception as exc:
            # Not a node answer nor bad params: most likely our own bug or something passing.
            # Retrying is bounded by the pipeline's policy, and the traceback is in our log.
            log.exception("%s: %s failed unexpectedly", self.role, task.message_id)
            return failed(f"unexpected {type(exc).__name__}: {exc}", retryable=True)
        steplog.note("changed" if outcome.changed else "already as wanted; nothing changed")
        return ResultMessage(
            task.task_id,
            task.attempt,
            self.role,
            "succeeded",
            changed=outcome.changed,
            log=steplog.lines,
            outputs=outcome.outputs,
        )

    async def _driver(self, server_id: str) -> ClosableDriver | None:
        access = await self._directory.node_access(server_id)
        if access is None:
            return None
        known = self._drivers.get(server_id)
        if known is not None and known[0] == access:
            return known[1]
        if known is not None:
            # The server was re-registered (new address or host key): drop the old pool.
            await known[1].close()
        driver = self._make_driver(access)
        self._drivers[server_id] = (access, driver)
        return driver

    async def _heartbeats(self, task: TaskMessage) -> None:
        sequence = 0
        while True:
            await asyncio.sleep(self._heartbeat_interval)
            sequence += 1
            beat = HeartbeatMessage(task.task_id, task.attempt, self.role, sequence)
            try:
                await self._publisher.publish(beat.routing_key, beat.to_json(), beat.message_id)
            except Exception:
                # A lost heartbeat only shortens the lease; the step must not stop for it.
                log.warning("%s: heartbeat %d for %s not sent", self.role, sequence, task.task_id)


def decode_task(body: bytes) -> TaskMessage:
    """The task in ``body``, or ValueError (missing fields and wrong types included)."""
    try:
        task = TaskMessage.from_json(body)
    except TypeError as exc:
        raise ValueError(f"malformed task message: {exc}") from exc
    checks: dict[str, tuple[Any, type | tuple[type, ...]]] = {
        "task_id": (task.task_id, str),
        "attempt": (task.attempt, int),
        "service_id": (task.service_id, str),
        "step": (task.step, str),
        "role": (task.role, str),
        "action": (task.action, str),
        "server_id": (task.server_id, str),
        "params": (task.params, dict),
        "inputs": (task.inputs, dict),
        "command_id": (task.command_id, (str, type(None))),
    }
    for name, (value, kind) in checks.items():
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ValueError(f"malformed task message: {name} has the wrong type")
    return task


def _log_step(task: TaskMessage, result: ResultMessage, took_s: float) -> None:
    """One line per step run: what, where, how it ended and why not well (the error is the
    node's answer or ours, never a password: commands are logged with it masked)."""
    failed = result.outcome != "succeeded"
    log.log(
        logging.WARNING if failed else logging.INFO,
        "%s: step %s of service %s on %s (attempt %d): %s%s in %.0f ms",
        result.role,
        task.step,
        task.service_id,
        task.server_id,
        task.attempt,
        result.outcome,
        f": {result.error}" if failed else (", changed" if result.changed else ""),
        took_s * 1000,
        extra={
            "service": task.service_id,
            "task": task.task_id,
            "step": task.step,
            "server": task.server_id,
            "attempt": task.attempt,
            "outcome": result.outcome,
            "reason": result.error or None,
            "duration_ms": round(took_s * 1000, 1),
        },
    )


def _cannot_unseal(sealed: str) -> str:
    raise StepParamsError("this handler has no key to unseal passwords (HOSTWRIGHT_SECRET_KEY)")


def _not_run(task: TaskMessage, role: str, steplog: StepLog) -> ResultMessage:
    """The result of a superseded attempt, not run: the pipeline records nothing of it (not
    the task's current attempt), but it tells the pipeline that attempt is off the node, so a
    newer run of the service that waits for it (draining) dispatches at once, not a lease later."""
    steplog.note("superseded; not run")
    return ResultMessage(
        task.task_id,
        task.attempt,
        role,
        "failed_permanent",
        error="superseded; not run",
        log=steplog.lines,
    )
