"""``StoreLedger``: the gateway's CommandLedger port over the event store.

It consumes validated commands and emits events through ``EventStore``; an order's password
is sealed here, so the clear text never reaches the store, the outbox or the broker. Staff's
retry and cancel of a task become ``Task.Retried`` / ``Task.Cancelled`` on the Task aggregate.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from domain.commands import Command, OrderService
from domain.errors import Conflict, NotFound
from domain.task import Task
from ops.event_store import EventStore
from ops.sealing import PasswordSealer

_MAX_CONFLICT_RETRIES = 10


class StoreLedger:
    """Implements ``gateway.ports.CommandLedger``. Synchronous, like the store behind it."""

    def __init__(self, store: EventStore, sealer: PasswordSealer) -> None:
        self._store = store
        self._sealer = sealer

    def order_service(self, command: OrderService) -> bool:
        sealed = None if command.password is None else self._sealer.seal(command.password)
        return self._store.order_service(command, sealed)

    def request(self, command: Command) -> bool:
        return self._store.request(command)

    def events_of(self, service_id: str, as_of: datetime | None) -> list[dict[str, Any]]:
        return self._store.events_of(service_id, as_of)

    def ping(self) -> None:
        self._store.max_notification_id()

    def retry_task(self, task_id: str, now: datetime, actor: str) -> bool:
        return self._change_task(
            task_id,
            lambda task: task.retry(now, actor),
            "can be retried only in error or cancelled",
        )

    def cancel_task(self, task_id: str, now: datetime, actor: str) -> bool:
        return self._change_task(
            task_id,
            lambda task: task.cancel(now, actor),
            "has finished; it cannot be cancelled",
        )

    def _change_task(self, task_id: str, decide: Callable[[Task], bool], refusal: str) -> bool:
        """Loads the task, lets ``decide`` record one event, saves it; decides again on fresh
        state when another writer (the pipeline) recorded an event on the task first."""
        for _ in range(_MAX_CONFLICT_RETRIES):
            task = self._task(task_id)
            if not decide(task):
                raise Conflict(f"task {task_id} is {task.state}: it {refusal}")
            try:
                self._store.save(task)
            except IntegrityError:
                continue
            return True
        raise Conflict(f"task {task_id} is busy; try again")

    def _task(self, task_id: str) -> Task:
        try:
            aggregate_id = uuid.UUID(task_id)
        except ValueError:
            raise NotFound(f"task {task_id} not found") from None
        try:
            found: Any = self._store.app.repository.get(aggregate_id)
        except AggregateNotFoundError:
            raise NotFound(f"task {task_id} not found") from None
        if not isinstance(found, Task):
            raise NotFound(f"task {task_id} not found")
        return found
