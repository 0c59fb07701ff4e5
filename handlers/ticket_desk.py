"""The ticket desk: turns terminal task failures, and custom certificates near their end,
into WHMCS tickets, once each.

``record_failure(task, service)`` records a ``Task.Errored`` on the operation's Ticket
aggregate (nothing when tickets are disabled, nothing new for a failure seen before);
``record_expiry(warning, service)`` records a certificate's ``ExpiryWarned`` on that
certificate expiry's ticket: the first warning opens it, each later threshold is a note;
``deliver(ticket_id)`` makes the WHMCS calls the ticket owes, in order — OpenTicket, then one
AddTicketNote per later failure — recording each attempt before the call and its outcome
after; ``deliver_pending()`` retries every ticket that still owes a call, once its back-off
has run out. An attempt whose outcome was never recorded (a crash, a timeout, a 5xx) is
looked for in WHMCS (GetTickets / GetTicket, by marker) before it is sent again, and an
attempt still inside its lease belongs to another deliverer, so a ticket is neither lost nor
duplicated. A WHMCS refusal (bad department, credentials) is retried at the longest back-off:
once the configuration is fixed, the ticket arrives.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from domain.errors import Conflict
from domain.retry_policy import RetryPolicy
from domain.service import Service
from domain.task import Task
from domain.ticket import (
    Ticket,
    TicketCall,
    TicketConfig,
    expiry_operation,
    expiry_run,
    failure_key,
    ticket_uuid,
    warning_key,
)
from handlers import ticket_text
from handlers.whmcs_api import WhmcsError, WhmcsTicket, WhmcsUnavailable

log = logging.getLogger(__name__)

_CONFLICT_RETRIES = 10
DEFAULT_POLICY = RetryPolicy(max_attempts=100, initial_backoff_s=10.0, max_backoff_s=900.0)

TicketDecision = Callable[[Ticket | None], Ticket | None]


@dataclass(frozen=True)
class ExpiryWarning:
    """A custom certificate's ``Certificate.ExpiryWarned``: whose, which, when it ends, and the
    threshold reached (days)."""

    service_id: str
    role: str
    server_id: str  # where it is installed ("" when it is not)
    not_after: datetime
    threshold_days: int


class TicketStore(Protocol):
    """The event store as the desk needs it (synchronous; called in a thread)."""

    def ticket(self, ticket_id: uuid.UUID) -> Ticket | None: ...

    def save(self, *aggregates: Any) -> None:
        """Records the pending events; raises Conflict when another writer was first."""

    def update(
        self, ticket_id: uuid.UUID, decide: TicketDecision, busy: str, attempts: int
    ) -> None:
        """Loads the ticket (None: there is none yet) and saves the ticket ``decide`` returns
        with its new events (None: nothing to record); decides again on fresh state when
        another writer was first. Conflict(``busy``) when it kept changing ``attempts`` times."""

    def tickets_after(self, position: int) -> tuple[list[uuid.UUID], int]:
        """Ids of tickets with events after ``position`` in the store, and the new position."""

    def settled_position(self) -> int:
        """The position up to which no ticket owed a call when last recorded (0: none)."""

    def settle_position(self, position: int) -> None:
        """Records that no ticket with events up to ``position`` owes a call (only forward)."""


class TicketApi(Protocol):
    """WHMCS as the desk needs it; raises handlers.whmcs_api.WhmcsError on failure."""

    async def open_ticket(
        self,
        *,
        department_id: int,
        subject: str,
        message: str,
        priority: str,
        client_id: int,
        service_id: int | None,
    ) -> WhmcsTicket: ...

    async def add_ticket_note(self, *, ticket_id: int, message: str) -> None: ...

    async def find_ticket(self, *, client_id: int, marker: str) -> WhmcsTicket | None: ...

    async def ticket_has_note(self, *, ticket_id: int, marker: str) -> bool: ...


class TicketDesk:
    def __init__(
        self,
        store: TicketStore,
        api: TicketApi,
        config: Callable[[], TicketConfig],
        *,
        clock: Callable[[], datetime],
        unit_random: Callable[[], float] = random.random,
        policy: RetryPolicy = DEFAULT_POLICY,
        lease_s: float = 60.0,
    ) -> None:
        self._store = store
        self._api = api
        self._config = config
        self._clock = clock
        self._random = unit_random
        self._policy = policy
        self._lease = timedelta(seconds=lease_s)  # longer than any one WHMCS call may take
        self._position: int | None = None  # read from the store on first use
        self._owing: set[uuid.UUID] = set()
        self._settled = 0

    async def record_failure(self, task: Task, service: Service) -> uuid.UUID | None:
        """Records the task's terminal failure on its operation's ticket; returns the ticket
        id, or None when tickets are disabled or the task has not errored."""
        if not self._config().enabled or task.state != "error":
            return None
        ticket_id = ticket_uuid(task.service_id, task.operation, task.run)

        def decide(found: Ticket | None) -> Ticket | None:
            now = self._clock()
            ticket = found or Ticket.raise_for(
                service_id=task.service_id,
                client_id=service.client_id,
                domain=service.domain,
                operation=task.operation,
                run=task.run,
                now=now,
            )
            recorded = ticket.record_failure(
                key=failure_key(task.id, task.attempt),
                step=task.step,
                action=task.action,
                server_id=task.server_id,
                attempt=task.attempt,
                error=task.error or "no error message",
                now=now,
            )
            return ticket if recorded else None

        busy = f"ticket {ticket_id} is busy; its failure was not recorded"
        await asyncio.to_thread(self._store.update, ticket_id, decide, busy, _CONFLICT_RETRIES)
        return ticket_id

    async def record_expiry(self, warning: ExpiryWarning, service: Service) -> uuid.UUID | None:
        """Records an expiry warning on the certificate expiry's ticket (opened by the first
        warning, noted by each later threshold, nothing new for one seen before); returns the
        ticket id, or None when tickets are disabled."""
        if not self._config().enabled:
            return None
        operation, run = expiry_operation(warning.role), expiry_run(warning.not_after)
        ticket_id = ticket_uuid(warning.service_id, operation, run)

        def decide(found: Ticket | None) -> Ticket | None:
            now = self._clock()
            ticket = found or Ticket.raise_for(
                service_id=warning.service_id,
                client_id=service.client_id,
                domain=service.domain,
                operation=operation,
                run=run,
                now=now,
            )
            recorded = ticket.record_failure(
                key=warning_key(warning.threshold_days),
                step=f"ssl.{warning.role} (custom)",
                action="expiry_warning",
                server_id=warning.server_id,
                attempt=warning.threshold_days,  # an expiry's "attempt": the days threshold
                error=ticket_text.expiry_line(warning.not_after, warning.threshold_days),
                now=now,
            )
            return ticket if recorded else None

        busy = f"ticket {ticket_id} is busy; the expiry warning was not recorded"
        await asyncio.to_thread(self._store.update, ticket_id, decide, busy, _CONFLICT_RETRIES)
        return ticket_id

    async def deliver(self, ticket_id: uuid.UUID, *, ignore_backoff: bool = False) -> None:
        """Makes the calls the ticket owes until none is owed or one fails (recorded, to be
        retried by ``deliver_pending``)."""
        while self._config().enabled:
            ticket = await self._load(ticket_id)
            if ticket is None:
                return
            call = ticket.next_call(self._clock(), ignore_backoff=ignore_backoff)
            if call is None or not await self._make(ticket, call):
                return

    async def deliver_pending(self) -> int:
        """Retries every ticket that owes a call; returns how many still owe one."""
        if not self._config().enabled:
            return 0
        if self._position is None:  # up to there every ticket was delivered: not read again
            self._position = self._settled = await asyncio.to_thread(self._store.settled_position)
        changed, position = await asyncio.to_thread(self._store.tickets_after, self._position)
        self._position = position
        self._owing.update(changed)
        for ticket_id in sorted(self._owing):
            try:
                await self.deliver(ticket_id)
            except Exception:
                log.exception("tickets: delivering %s failed; it stays pending", ticket_id)
                continue
            ticket = await self._load(ticket_id)
            if ticket is None or not ticket.has_work:
                self._owing.discard(ticket_id)
        if not self._owing and position > self._settled:
            # nothing owed up to here: a desk starting later begins here
            await asyncio.to_thread(self._store.settle_position, position)
            self._settled = position
        return len(self._owing)

    async def _make(self, ticket: Ticket, call: TicketCall) -> bool:
        """One owed call: look first if uncertain, else record the attempt and send.
        True once it is delivered; False when it failed or another deliverer got there."""
        client_id = _whmcs_id(ticket.client_id)
        if client_id is None:
            error = f"service {ticket.service_id}: client id {ticket.client_id!r} is not a WHMCS id"
            await self._fail(ticket, call, error, maybe_done=False, permanent=True)
            return False
        try:
            if call.uncertain and await self._found(ticket, call, client_id):
                return True
        except WhmcsError as exc:
            # Looking failed, so the earlier attempt stays uncertain.
            await self._fail(ticket, call, str(exc), maybe_done=True, permanent=_permanent(exc))
            return False
        now = self._clock()
        ticket.attempt(call, now, now + self._lease)
        try:
            await asyncio.to_thread(self._store.save, ticket)
        except Conflict:
            return False  # another deliverer is at work on this ticket
        try:
            await self._send(ticket, call, client_id)
        except WhmcsError as exc:
            log.warning("tickets: %s", exc)
            await self._fail(
                ticket, call, str(exc), maybe_done=exc.maybe_done, permanent=_permanent(exc)
            )
            return False
        return True

    async def _send(self, ticket: Ticket, call: TicketCall, client_id: int) -> None:
        if call.is_open:
            config = self._config()
            opened = await self._api.open_ticket(
                department_id=config.department_id,
                subject=ticket_text.subject(ticket),
                message=ticket_text.opening_message(ticket),
                priority=config.priority,
                client_id=client_id,
                service_id=_whmcs_id(ticket.service_id),
            )
            await self._record(
                ticket, lambda t: t.opened(self._clock(), opened.id, opened.tid, recovered=False)
            )
        else:
            assert ticket.whmcs_ticket_id is not None
            await self._api.add_ticket_note(
                ticket_id=ticket.whmcs_ticket_id,
                message=ticket_text.note_message(ticket, call.index),
            )
            await self._record(
                ticket, lambda t: t.note_delivered(call, self._clock(), recovered=False)
            )

    async def _found(self, ticket: Ticket, call: TicketCall, client_id: int) -> bool:
        """Whether an uncertain earlier attempt did reach WHMCS (then recorded as delivered)."""
        if call.is_open:
            found = await self._api.find_ticket(client_id=client_id, marker=ticket.marker)
            if found is None:
                return False
            await self._record(
                ticket, lambda t: t.opened(self._clock(), found.id, found.tid, recovered=True)
            )
            return True
        assert ticket.whmcs_ticket_id is not None
        marker = ticket.note_marker(call.index)
        if not await self._api.ticket_has_note(ticket_id=ticket.whmcs_ticket_id, marker=marker):
            return False
        await self._record(ticket, lambda t: t.note_delivered(call, self._clock(), recovered=True))
        return True

    async def _fail(
        self, ticket: Ticket, call: TicketCall, error: str, *, maybe_done: bool, permanent: bool
    ) -> None:
        """Records a failed call and when to try again: the back-off for the failures in a
        row, or the longest one when WHMCS refused (it will until someone fixes the cause)."""

        def failed(ticket: Ticket) -> None:
            tries = ticket.failed_calls + 1
            delay = self._policy.max_backoff_s
            if not permanent:
                delay = self._policy.delay(tries, self._random())
            now = self._clock()
            ticket.delivery_failed(
                call,
                now,
                error=error,
                maybe_done=maybe_done,
                retry_at=now + timedelta(seconds=delay),
            )

        await self._record(ticket, failed)

    async def _record(self, ticket: Ticket, change: Callable[[Ticket], None]) -> None:
        """Records an outcome on the ticket as the store has it; when another writer recorded
        something first (a new failure, say), applies it again to the fresh ticket (the domain
        ignores it if moot)."""

        def decide(found: Ticket | None) -> Ticket:
            assert found is not None
            change(found)
            return found

        busy = f"ticket {ticket.id} is busy; an outcome was not recorded"
        await asyncio.to_thread(self._store.update, ticket.id, decide, busy, _CONFLICT_RETRIES)

    async def _load(self, ticket_id: uuid.UUID) -> Ticket | None:
        return await asyncio.to_thread(self._store.ticket, ticket_id)


def _permanent(exc: WhmcsError) -> bool:
    return not isinstance(exc, WhmcsUnavailable)


def _whmcs_id(value: str) -> int | None:
    """WHMCS ids are positive integers; hostwright also accepts other ids, which WHMCS lacks."""
    return int(value) if value.isdigit() and int(value) > 0 else None


__all__ = [
    "ExpiryWarning",
    "TicketApi",
    "TicketConfig",
    "TicketDecision",
    "TicketDesk",
    "TicketStore",
]
