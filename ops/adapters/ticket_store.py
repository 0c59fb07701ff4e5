"""The event store as the ticket desk's port (handlers.ticket_desk.TicketStore), plus the
reads the ticket feed needs.

Consumes the desk's loads, decisions and saves of Ticket aggregates and the feed's reads of
Task, Certificate and Service; emits the aggregates, Conflict when another writer recorded
first, the ids of tickets changed since a position in the store, and the position up to which every
ticket was delivered (kept in the positions table, so a desk starting does not read every
ticket event ever).
"""

from __future__ import annotations

import uuid
from typing import Any

from domain.certificate import Certificate
from domain.service import Service
from domain.task import Task
from domain.ticket import Ticket
from handlers.ticket_desk import TicketDecision
from ops.store.event_store import EventStore, aggregate_event_topics
from ops.store.positions import PositionStore
from ops.store.unit_of_work import Decision

TICKET_EVENT_TOPICS = aggregate_event_topics(Ticket, Ticket.Raised)
SETTLED = "tickets.settled"  # the position up to which no ticket owes a WHMCS call


class StoreTicketAdapter:
    """Synchronous, like the store behind it."""

    def __init__(self, store: EventStore, positions: PositionStore | None = None) -> None:
        """``positions``: where the desk keeps the position up to which no ticket owes a
        call (without one, each desk starts from the beginning of the log)."""
        self._store = store
        self._positions = positions
        self._tickets = store.repository(Ticket, "ticket")
        self._tasks = store.repository(Task, "task")
        self._certificates = store.repository(Certificate, "certificate")

    def ticket(self, ticket_id: uuid.UUID) -> Ticket | None:
        return self._tickets.find(ticket_id)

    def task(self, task_id: uuid.UUID, version: int) -> Task:
        """The task as it was right after its event ``version``."""
        return self._tasks.get(task_id, version=version)

    def certificate(self, cert_id: uuid.UUID, version: int) -> Certificate:
        """The certificate as it was right after its event ``version``."""
        return self._certificates.get(cert_id, version=version)

    def service(self, service_id: str) -> Service:
        return self._store.get_service(service_id)

    def save(self, *aggregates: Any) -> None:
        self._store.work.save(*aggregates)

    def update(
        self, ticket_id: uuid.UUID, decide: TicketDecision, busy: str, attempts: int
    ) -> None:
        def decided() -> Decision[None]:
            ticket = decide(self.ticket(ticket_id))
            return Decision(None, () if ticket is None else (ticket,))

        self._store.work.run(decided, busy=busy, attempts=attempts)

    def tickets_after(self, position: int) -> tuple[list[uuid.UUID], int]:
        ids: dict[uuid.UUID, None] = {}
        for notification in self._store.notifications_of(TICKET_EVENT_TOPICS, after=position):
            ids[uuid.UUID(str(notification.originator_id))] = None
            position = notification.id
        return list(ids), position

    def settled_position(self) -> int:
        return 0 if self._positions is None else self._positions.get(SETTLED)

    def settle_position(self, position: int) -> None:
        if self._positions is not None:
            self._positions.advance(SETTLED, position)
