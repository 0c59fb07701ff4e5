"""Which attempt of a task is current, from the event store (the port: handlers/step_fence.py
``Attempts``): the one a role handler may still run once it holds the step fence.

One read of the Task aggregate per step. The pipeline records an attempt's ``Dispatched``
before it publishes the attempt's message, so a handler never finds its own current attempt
missing from the store.
"""

from __future__ import annotations

import asyncio
import uuid

from domain.task import Task
from ops.store.event_store import EventStore


class StoreAttempts:
    def __init__(self, store: EventStore) -> None:
        self._tasks = store.repository(Task, "task")

    async def is_current(self, task_id: str, attempt: int) -> bool | None:
        return await asyncio.to_thread(self._is_current, task_id, attempt)

    def _is_current(self, task_id: str, attempt: int) -> bool | None:
        try:
            aggregate_id = uuid.UUID(task_id)
        except ValueError:
            return None
        task = self._tasks.find(aggregate_id)
        if task is None:
            return None
        return task.state == "dispatched" and task.attempt == attempt
