"""``StoreLedger``: the gateway's CommandLedger port over the event store.

It consumes validated commands and emits events through ``EventStore``; an order's password, and
a change-password's, is sealed here, so the clear text never reaches the store, the outbox or
the broker. Staff's retry and cancel of a task become ``Task.Retried`` / ``Task.Cancelled`` on
the Task aggregate; a customer's Try again (``retry_failed_deploy``) becomes ``Task.Retried`` on
the failed steps the domain lets a customer run again (``domain.customer_changes``); a bulk
change (``ChangeTasksInBulk``) becomes ``Task.Hidden`` or ``Task.Errored`` on each task that
qualifies, saved ``_BULK_BATCH`` tasks at a time. A task hidden by a bulk delete is gone as far
as retry and cancel can tell (404), as it is from the queue's reads.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from domain.commands import ChangePassword, Command, OrderService
from domain.customer_changes import customer_may_retry_deploy, customer_retries
from domain.errors import Conflict, NotFound
from domain.run_outcome import RUN_STARTERS
from domain.service import Service
from domain.step_chain import ServiceFacts
from domain.task import Task
from domain.task_bulk import ChangeTasksInBulk
from ops.adapters.sealing import PasswordSealer
from ops.store.event_store import EventStore
from ops.store.unit_of_work import Decision

_BULK_BATCH = 200  # tasks per save: one transaction, one lock of the PostgreSQL store

log = logging.getLogger(__name__)


class StoreLedger:
    """Implements ``gateway.ports.CommandLedger``. Synchronous, like the store behind it."""

    def __init__(self, store: EventStore, sealer: PasswordSealer) -> None:
        self._store = store
        self._sealer = sealer
        self._tasks = store.repository(Task, "task")

    def order_service(self, command: OrderService) -> bool:
        sealed = None if command.password is None else self._sealer.seal(command.password)
        return self._store.order_service(command, sealed)

    def request(self, command: Command) -> bool:
        if isinstance(command, ChangePassword) and command.password is not None:
            sealed = self._sealer.seal(command.password)
            command = replace(command, password=None, password_sealed=sealed)
        return self._store.request(command)

    def events_of(self, service_id: str, as_of: datetime | None) -> list[dict[str, Any]]:
        return self._store.events_of(service_id, as_of)

    def recorded_service(self, service_id: str) -> dict[str, Any] | None:
        try:
            service = self._store.get_service(service_id)
        except NotFound:
            return None
        return {
            "service_id": service.service_id,
            "client_id": service.client_id,
            "mode": service.mode,
            "domain": service.domain,
            "label": service.label,
            "status": service.status,
            "plan": service.plan,
            "hestia_user": ServiceFacts.from_service(service).user,
            "placement": service.placement,
            "ordered_at": service.created_on,
            "updated_at": service.modified_on,
            # a run asked for; whether it has begun is the views' to know
            "requested": _requested(service),
            "current_step": "place" if service.waiting_for_placement else None,
        }

    def ping(self) -> None:
        self._store.max_notification_id()

    def retry_task(self, task_id: str, now: datetime, actor: str) -> bool:
        return self._change_task(
            task_id,
            lambda task: task.retry(now, actor),
            "can be retried only in error or cancelled",
        )

    def retry_failed_deploy(
        self, service_id: str, task_ids: Sequence[str], now: datetime, actor: str
    ) -> list[str]:
        nothing = "nothing has failed that could be tried again"
        service = self._store.get_service(service_id)  # NotFound for an unknown service
        if not customer_may_retry_deploy(service.status, _requested(service)):
            raise Conflict(nothing)
        retried = []
        for task_id in dict.fromkeys(task_ids):
            try:
                self._change_task(
                    task_id,
                    lambda task: customer_retries(task, service_id) and task.retry(now, actor),
                    "is not a failed step of this service",
                )
            except (Conflict, NotFound):  # not one to run again, or retried meanwhile
                continue
            retried.append(task_id)
        if not retried:
            raise Conflict(nothing)
        return retried

    def cancel_task(self, task_id: str, now: datetime, actor: str) -> bool:
        return self._change_task(
            task_id,
            lambda task: task.cancel(now, actor),
            "has finished; it cannot be cancelled",
        )

    def change_tasks(self, command: ChangeTasksInBulk, task_ids: Sequence[str]) -> list[str]:
        unique = list(dict.fromkeys(task_ids))
        changed: list[str] = []
        for start in range(0, len(unique), _BULK_BATCH):
            changed += self._change_batch(command, unique[start : start + _BULK_BATCH])
        return changed

    def _change_batch(self, command: ChangeTasksInBulk, task_ids: Sequence[str]) -> list[str]:
        """Decides on each task and saves every change in one call; when another writer got
        to one of them first (nothing is saved then), decides on each again, one by one."""
        found = (self._known_task(task_id) for task_id in task_ids)
        decided = [task for task in found if task is not None and command.decide(task)]
        if not decided:
            return []
        try:
            self._store.work.save(*decided)
        except Conflict:
            ids = [str(task.id) for task in decided]
            return [task_id for task_id in ids if self._change_one(command, task_id)]
        return [str(task.id) for task in decided]

    def _change_one(self, command: ChangeTasksInBulk, task_id: str) -> bool:
        def decide() -> Decision[bool]:
            task = self._known_task(task_id)
            changed = task is not None and command.decide(task)
            return Decision.of(changed, task, changed=changed)

        try:
            return self._store.work.run(decide, busy=f"task {task_id} is busy")
        except Conflict:
            log.warning("bulk %s: task %s kept changing; left as it was", command.action, task_id)
            return False

    def _known_task(self, task_id: str) -> Task | None:
        try:
            return self._task(task_id)
        except NotFound:
            return None

    def _change_task(self, task_id: str, decide: Callable[[Task], bool], refusal: str) -> bool:
        """Loads the task, lets ``decide`` record one event, saves it; decides again on fresh
        state when another writer (the pipeline) recorded an event on the task first."""

        def change() -> Decision[bool]:
            task = self._task(task_id)
            if task.hidden:
                raise NotFound(f"task {task_id} was deleted from the queue")
            if not decide(task):
                raise Conflict(f"task {task_id} is {task.state}: it {refusal}")
            return Decision(True, (task,))

        return self._store.work.run(change, busy=f"task {task_id} is busy; try again")

    def _task(self, task_id: str) -> Task:
        try:
            aggregate_id = uuid.UUID(task_id)
        except ValueError:
            raise NotFound(f"task {task_id} not found") from None
        return self._tasks.get(aggregate_id, task_id)


def _requested(service: Service) -> str | None:
    """The run asked for and not yet done (``suspend``, ``terminate``, …), or None."""
    return RUN_STARTERS.get(f"Service.{service.last_request[0]}") if service.pending else None
