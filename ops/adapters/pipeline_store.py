"""The event store as the pipeline's port (handlers.pipeline.PipelineStore).

Consumes the pipeline's loads, decisions and saves of Service and Task aggregates, and its
checkpoints (ops/adapters/pipeline_checkpoint.py); emits the aggregates, Conflict when another
writer recorded first, and the open work a rebuild loads. A
decision that leaves the service terminated releases the claims on its names
(domain/claim.py) in the same transaction, so the names are free exactly when the service is
gone.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from domain.claim import claimed_names
from domain.service import Service
from domain.step_chain import ServiceFacts
from domain.task import Task
from ops.adapters.pipeline_checkpoint import PipelineCheckpoint
from ops.store.database import Database
from ops.store.event_store import EventStore, aggregate_event_topics
from ops.store.unit_of_work import Decision

TASK_EVENT_TOPICS = aggregate_event_topics(Task, Task.Planned)
_PAGE = 5000


class StorePipelineAdapter:
    """``db``: the database of the views, where the pipeline's checkpoint is kept
    (ops/adapters/pipeline_checkpoint.py); by default the store's own database, opened on
    first use."""

    def __init__(self, store: EventStore, db: Database | None = None, prefix: str = "hw_") -> None:
        self._store = store
        self._services = store.repository(Service, "service")
        self._tasks = store.repository(Task, "task")
        self._checkpoint = PipelineCheckpoint(
            store, lambda: db or Database(store.database_url), prefix
        )

    def service(self, aggregate_id: uuid.UUID) -> Service:
        return self._services.get(aggregate_id)

    def task(self, task_id: uuid.UUID) -> Task:
        return self._tasks.get(task_id)

    def save(self, *aggregates: Any) -> None:
        self._store.work.save(*aggregates)

    def update_service(
        self, aggregate_id: uuid.UUID, decide: Callable[[Service], bool], busy: str, attempts: int
    ) -> Service:
        def decided() -> Decision[Service]:
            service = self.service(aggregate_id)
            if not decide(service):
                return Decision(service)
            return Decision(service, (service, *self._released_claims(service)))

        return self._store.work.run(decided, busy=busy, attempts=attempts)

    def _released_claims(self, service: Service) -> list[Any]:
        if service.status != "terminated":
            return []  # deploy_failed and suspended services are live: they keep their names
        names = claimed_names(ServiceFacts.from_service(service))
        return list(self._store.claims.release(names, service.service_id, service.modified_on))

    def open_work(self) -> list[Task]:
        return self._checkpoint.open_work()

    def position(self) -> int:
        return self._checkpoint.position()

    def checkpoint(
        self, position: int, task_ids: Sequence[uuid.UUID], finished: Mapping[str, int]
    ) -> None:
        self._checkpoint.save(position, task_ids, finished)

    def finished_run(self, service_id: str) -> int:
        return self._checkpoint.finished_run(service_id)

    def task_history(self) -> Iterator[Any]:
        """Every Task event in order (the tests' and the tools' view of the history)."""
        for notification in self._store.notifications_of(TASK_EVENT_TOPICS, page=_PAGE):
            yield self._store.decode(notification)
