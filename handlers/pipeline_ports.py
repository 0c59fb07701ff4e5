"""What the pipeline (handlers/pipeline.py) takes: its ports — the event store, the servers'
limits, the publisher — and the inputs that arrive on its queue, relayed events and the
scheduler's ticks beside the handlers' results and heartbeats (handlers/messages.py)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from domain.service import Service
from handlers.messages import HeartbeatMessage, ResultMessage
from handlers.pipeline_runs import TaskReader


class PipelineStore(TaskReader, Protocol):
    """The event store as the pipeline needs it (synchronous; called in a thread): its Tasks
    and checkpoint (handlers/pipeline_runs.py), its Services, and saves."""

    def service(self, aggregate_id: uuid.UUID) -> Service: ...

    def save(self, *aggregates: Any) -> None:
        """Records all pending events in one transaction; raises Conflict when another
        writer recorded an event on one of them first (nothing is recorded then)."""

    def update_service(
        self, aggregate_id: uuid.UUID, decide: Callable[[Service], bool], busy: str, attempts: int
    ) -> Service:
        """Loads the service, lets ``decide`` record events on it (True when it did) and saves
        them, deciding again on fresh state when another writer was first; the service as the
        store has it now. Conflict(``busy``) when it kept changing ``attempts`` times."""


class Limits(Protocol):
    """Synchronous (it may read the store): the pipeline calls it in a thread."""

    def max_concurrency(self, server_id: str) -> int: ...


class Publisher(Protocol):
    async def publish(
        self, routing_key: str, body: bytes, message_id: str, *, again: bool = False
    ) -> None:
        """Publishes once confirmed; ``again``: a copy of a message that may have gone out
        already (the handler's inbox is asked about it)."""


@dataclass(frozen=True)
class RelayedEvent:
    """A stored event as the relay announced it."""

    topic: str
    aggregate_id: uuid.UUID
    version: int
    command_id: str | None = None  # the command that recorded it, when it came from one


@dataclass(frozen=True)
class CronTick:
    """The scheduler's periodic nudge: ``retries`` and ``stuck`` expire leases and start
    what is due; ``terminations`` tries again the failed steps of unfinished terminations."""

    job: str


PipelineInput = RelayedEvent | CronTick | ResultMessage | HeartbeatMessage
