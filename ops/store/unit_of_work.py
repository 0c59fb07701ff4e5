"""Load → decide → save, retried on conflict: the one way an adapter changes an aggregate.

``Repository`` consumes an eventsourcing repository and emits aggregates of one type (NotFound
when there is none, or the id names another type). ``UnitOfWork`` runs a decision — which loads
what it needs fresh and records events on it — and saves the ``Decision``'s changed aggregates in
one transaction; when another writer recorded an event first (eventsourcing's IntegrityError) it
decides again on fresh state, and raises ``Conflict`` with the caller's message once it gives up.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.application import Repository as EventsourcingRepository
from eventsourcing.persistence import IntegrityError

from domain.errors import Conflict, NotFound

A = TypeVar("A")
R = TypeVar("R")


class Repository(Generic[A]):
    """Aggregates of one type by id; ``noun`` names them in NotFound ("task … not found")."""

    def __init__(
        self, repository: EventsourcingRepository[uuid.UUID], kind: type[A], noun: str
    ) -> None:
        self._repository = repository
        self._kind = kind
        self._noun = noun

    def get(self, aggregate_id: uuid.UUID, name: object = None, *, version: int | None = None) -> A:
        """The aggregate (as of ``version`` when given); ``name`` is how NotFound calls it,
        the id when not given."""
        found = self.find(aggregate_id, version=version)
        if found is None:
            raise NotFound(f"{self._noun} {aggregate_id if name is None else name} not found")
        return found

    def find(self, aggregate_id: uuid.UUID, *, version: int | None = None) -> A | None:
        try:
            found: Any = self._repository.get(aggregate_id, version=version)
        except AggregateNotFoundError:
            return None
        return found if isinstance(found, self._kind) else None


@dataclass(frozen=True)
class Decision(Generic[R]):
    """What a decision came to: its result, and the aggregates with new events to save
    (none: nothing is recorded)."""

    result: R
    changed: tuple[Any, ...] = ()

    @classmethod
    def of(cls, result: R, aggregate: Any, *, changed: bool) -> Decision[R]:
        return cls(result, (aggregate,) if changed else ())


class UnitOfWork:
    """Synchronous, like the store whose ``save`` it is given (one transaction per call;
    raises IntegrityError when another writer recorded an event on one aggregate first)."""

    def __init__(self, save: Callable[..., object]) -> None:
        self._save = save

    def save(self, *aggregates: Any) -> None:
        """Saves once; Conflict when another writer recorded an event on one of them first
        (nothing is recorded then)."""
        try:
            self._save(*aggregates)
        except IntegrityError:
            raise Conflict("another writer recorded an event first") from None

    def run(self, decide: Callable[[], Decision[R]], *, busy: str, attempts: int = 10) -> R:
        """Decides and saves what changed; Conflict(``busy``) after ``attempts`` conflicts."""
        for _ in range(attempts):
            decision = decide()
            if not decision.changed:
                return decision.result
            try:
                self._save(*decision.changed)
            except IntegrityError:
                continue  # another writer got there first: decide again on fresh state
            return decision.result
        raise Conflict(busy)
