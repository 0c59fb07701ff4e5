"""The event store as the pipeline's port (handlers.pipeline.PipelineStore)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import get_topic

from domain.errors import Conflict, NotFound
from domain.service import Service
from domain.task import Task
from ops.store.event_store import EventStore

TASK_EVENT_TOPICS = tuple(
    dict.fromkeys(
        get_topic(cls)
        for cls in (Task.Planned, *vars(Task).values())
        if isinstance(cls, type)
        and issubclass(cls, (Task.Event, Task.Planned))
        and cls not in (Task.Event, Task.Created)
    )
)
_PAGE = 5000


class StorePipelineAdapter:
    def __init__(self, store: EventStore) -> None:
        self._store = store

    def service(self, aggregate_id: uuid.UUID) -> Service:
        try:
            service: Any = self._store.app.repository.get(aggregate_id)
        except AggregateNotFoundError:
            raise NotFound(f"service {aggregate_id} not found") from None
        assert isinstance(service, Service)
        return service

    def task(self, task_id: uuid.UUID) -> Task:
        try:
            task: Any = self._store.app.repository.get(task_id)
        except AggregateNotFoundError:
            raise NotFound(f"task {task_id} not found") from None
        assert isinstance(task, Task)
        return task

    def save(self, *aggregates: Any) -> None:
        try:
            self._store.save(*aggregates)
        except IntegrityError:
            raise Conflict("another writer recorded an event first") from None

    def task_history(self) -> Iterator[Any]:
        after = 0
        recorder = self._store.recorder
        while True:
            page = recorder.select_notifications(
                start=after, limit=_PAGE, topics=TASK_EVENT_TOPICS, inclusive_of_start=False
            )
            for notification in page:
                yield self._store.decode(notification)
            if len(page) < _PAGE:
                return
            after = page[-1].id
