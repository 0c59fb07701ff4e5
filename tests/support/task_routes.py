"""The task routes' test set-up: the gateway over a real event store, the views projected from
it on demand, and the tasks a test planned, by step.

Consumes a gateway client, the store and database it serves from; emits projected view rows
and task ids for the test to ask the routes about.
"""

from __future__ import annotations

from dataclasses import dataclass

from domain.task import Task
from ops.store.database import Database
from ops.store.event_store import EventStore
from ops.views.projection_runner import ProjectionRunner
from ops.views.view_store import ViewStore
from projections.catalogue import all_views
from tests.fakes.clock import Clock
from tests.support.gateway import Client


@dataclass
class TaskRoutes:
    client: Client
    store: EventStore
    db: Database
    clock: Clock
    tasks: dict[str, Task]

    def project(self) -> None:
        views = all_views()
        ProjectionRunner(self.store, ViewStore(self.db, views), views).catch_up()

    def id_of(self, step: str) -> str:
        return str(self.tasks[step].id)
