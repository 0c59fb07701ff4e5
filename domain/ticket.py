"""The Ticket aggregate: the WHMCS support ticket owed for one failed operation.

An operation is one run of one service (``service_id``, the run's kind, ``run``): a task of
that run failing terminally (``Task.Errored``) is a failure to report. "Try again" keeps the
run, so a second failure after it is the same operation (a note on the same ticket); a new
Redeploy or Factory reset is a new run, hence a new ticket.

A custom certificate's expiry is an operation of its own (``expiry_operation(role)``, its
``run`` the certificate's ``not_after`` in Unix seconds: one ticket per certificate expiry);
each expiry warning (30/14/7/1 days) is recorded on it as a failure, keyed by its threshold.

Failure 0 is reported by opening the ticket, each later one by a note on it; every failure is
recorded once (keyed by task id and attempt, so a redelivered ``Task.Errored`` adds nothing).
A WHMCS call is recorded as attempted *before* it is made, with a lease; until its outcome is
recorded it is uncertain, so whoever delivers next (after the lease, if the deliverer died)
first looks in WHMCS for the call's marker before sending it again. Pure: time comes in.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from eventsourcing.domain import Aggregate

from domain.errors import Conflict, InvalidInput

TICKET_NAMESPACE = uuid.UUID("8d3c6a2e-4f1b-4e57-b0a9-2c7e5d9f1a64")
PRIORITIES = ("Low", "Medium", "High")
OPENING = 0  # the failure the ticket is opened with; the others become notes


def ticket_uuid(service_id: str, operation: str, run: int) -> uuid.UUID:
    """Stable per operation, so every failure of one operation finds the same ticket."""
    return uuid.uuid5(TICKET_NAMESPACE, f"ticket/{service_id}/{operation}/{run}")


def failure_key(task_id: uuid.UUID, attempt: int) -> str:
    """One terminal failure: a task errors at most once per attempt."""
    return f"{task_id}/{attempt}"


EXPIRY_OPERATION = "certificate_expiry"


def expiry_operation(role: str) -> str:
    """The operation of a custom certificate's expiry warnings (``certificate_expiry.web``)."""
    return f"{EXPIRY_OPERATION}.{role}"


def expiry_role(operation: str) -> str | None:
    """The certificate role of an expiry ticket's operation; None for any other ticket."""
    prefix, dot, role = operation.partition(".")
    return role if prefix == EXPIRY_OPERATION and dot else None


def expiry_run(not_after: datetime) -> int:
    """An expiry ticket's run: the certificate's end, so a renewed certificate gets its own."""
    return int(not_after.timestamp())


def expiry_of(run: int) -> datetime:
    return datetime.fromtimestamp(run, UTC)


def warning_key(threshold_days: int) -> str:
    """One expiry warning: each threshold is warned once per certificate."""
    return f"expiry/{threshold_days}"


@dataclass(frozen=True)
class TicketConfig:
    """Whether failures open tickets, and where: WHMCS department id and priority."""

    enabled: bool = False
    department_id: int = 1
    priority: str = "Medium"

    def __post_init__(self) -> None:
        if isinstance(self.department_id, bool) or not isinstance(self.department_id, int):
            raise InvalidInput("the ticket department must be a WHMCS department id (an integer)")
        if self.department_id < 1:
            raise InvalidInput("the ticket department id must be at least 1")
        if self.priority not in PRIORITIES:
            raise InvalidInput(f"the ticket priority must be one of {', '.join(PRIORITIES)}")


@dataclass(frozen=True)
class TicketCall:
    """The next WHMCS call a ticket owes: open it (index 0) or add the note for a failure."""

    index: int
    uncertain: bool  # an earlier attempt may have reached WHMCS: look before sending

    @property
    def is_open(self) -> bool:
        return self.index == OPENING


class Ticket(Aggregate):
    class Raised(Aggregate.Created):
        service_id: str
        client_id: str
        domain: str
        operation: str
        run: int

    def __init__(self, service_id: str, client_id: str, domain: str, operation: str, run: int):
        self.service_id = service_id
        self.client_id = client_id
        self.domain = domain
        self.operation = operation
        self.run = run
        self.failures: list[dict[str, Any]] = []
        self.delivered: set[int] = set()  # failure indexes reported in WHMCS
        self.uncertain: set[int] = set()  # attempted; may or may not have reached WHMCS
        self.leases: dict[int, datetime] = {}  # attempts in flight, until when
        self.whmcs_ticket_id: int | None = None
        self.whmcs_tid: str | None = None
        self.retry_at: datetime | None = None
        self.failed_calls = 0  # delivery failures in a row, for the back-off
        self.last_error: str | None = None

    class FailureRecorded(Aggregate.Event):
        key: str
        step: str
        action: str
        server_id: str
        attempt: int
        error: str

        def apply(self, aggregate: Any) -> None:
            aggregate.failures = [
                *aggregate.failures,
                {
                    "key": self.key,
                    "step": self.step,
                    "action": self.action,
                    "server_id": self.server_id,
                    "attempt": self.attempt,
                    "error": self.error,
                    "at": self.timestamp,
                },
            ]

    class CallAttempted(Aggregate.Event):
        index: int
        lease_until: datetime

        def apply(self, aggregate: Any) -> None:
            aggregate.uncertain = aggregate.uncertain | {self.index}
            aggregate.leases = {**aggregate.leases, self.index: self.lease_until}

    class OpenAttempted(CallAttempted):
        """About to call OpenTicket (index is 0)."""

    class NoteAttempted(CallAttempted):
        """About to call AddTicketNote for failure ``index``."""

    class CallDelivered(Aggregate.Event):
        index: int
        recovered: bool  # found in WHMCS after an uncertain attempt, not sent again

        def apply(self, aggregate: Any) -> None:
            aggregate.delivered = aggregate.delivered | {self.index}
            aggregate.uncertain = aggregate.uncertain - {self.index}
            aggregate.leases = {k: v for k, v in aggregate.leases.items() if k != self.index}
            aggregate.retry_at = None
            aggregate.failed_calls = 0
            aggregate.last_error = None
            self.apply_to(aggregate)

        def apply_to(self, ticket: Ticket) -> None:
            pass

    class Opened(CallDelivered):
        whmcs_ticket_id: int
        tid: str

        def apply_to(self, ticket: Ticket) -> None:
            ticket.whmcs_ticket_id = self.whmcs_ticket_id
            ticket.whmcs_tid = self.tid

    class NoteDelivered(CallDelivered):
        pass

    class DeliveryFailed(Aggregate.Event):
        index: int
        error: str
        maybe_done: bool  # the call may have reached WHMCS (timeout, 5xx)
        retry_at: datetime

        def apply(self, aggregate: Any) -> None:
            if not self.maybe_done:
                aggregate.uncertain = aggregate.uncertain - {self.index}
            aggregate.leases = {k: v for k, v in aggregate.leases.items() if k != self.index}
            aggregate.retry_at = self.retry_at
            aggregate.failed_calls += 1
            aggregate.last_error = self.error

    @classmethod
    def raise_for(
        cls,
        *,
        service_id: str,
        client_id: str,
        domain: str,
        operation: str,
        run: int,
        now: datetime,
    ) -> Ticket:
        return cls._create(
            cls.Raised,
            id=ticket_uuid(service_id, operation, run),
            timestamp=now,
            service_id=service_id,
            client_id=client_id,
            domain=domain,
            operation=operation,
            run=run,
        )

    @property
    def marker(self) -> str:
        """Put in the ticket's subject, so an uncertain OpenTicket can be found again."""
        return f"[hw:{self.id.hex[:12]}]"

    def note_marker(self, index: int) -> str:
        """Put in a note, so an uncertain AddTicketNote can be found again."""
        return f"[hw:{self.id.hex[:12]}#{index + 1}]"

    @property
    def has_work(self) -> bool:
        return len(self.delivered) < len(self.failures)

    def record_failure(
        self,
        *,
        key: str,
        step: str,
        action: str,
        server_id: str,
        attempt: int,
        error: str,
        now: datetime,
    ) -> bool:
        """Adds a failure to report; False (nothing recorded) when it is already recorded."""
        if any(failure["key"] == key for failure in self.failures):
            return False
        self.trigger_event(
            Ticket.FailureRecorded,
            timestamp=now,
            key=key,
            step=step,
            action=action,
            server_id=server_id,
            attempt=attempt,
            error=error,
        )
        return True

    def next_call(self, now: datetime, *, ignore_backoff: bool = False) -> TicketCall | None:
        """The call owed now; None when nothing is owed, the back-off has not run out, or
        another deliverer's attempt is still in flight (its lease)."""
        if not self.has_work:
            return None
        if not ignore_backoff and self.retry_at is not None and now < self.retry_at:
            return None
        index = min(i for i in range(len(self.failures)) if i not in self.delivered)
        lease = self.leases.get(index)
        if lease is not None and now < lease:
            return None
        return TicketCall(index, uncertain=index in self.uncertain)

    def attempt(self, call: TicketCall, now: datetime, lease_until: datetime) -> None:
        """Recorded before the call is made: from now on it may have happened."""
        if call.index in self.delivered:
            raise Conflict(f"failure {call.index} of ticket {self.id} is reported already")
        event = Ticket.OpenAttempted if call.is_open else Ticket.NoteAttempted
        self.trigger_event(event, timestamp=now, index=call.index, lease_until=lease_until)

    def opened(self, now: datetime, whmcs_ticket_id: int, tid: str, *, recovered: bool) -> None:
        if OPENING in self.delivered:
            return
        self.trigger_event(
            Ticket.Opened,
            timestamp=now,
            index=OPENING,
            recovered=recovered,
            whmcs_ticket_id=whmcs_ticket_id,
            tid=tid,
        )

    def note_delivered(self, call: TicketCall, now: datetime, *, recovered: bool) -> None:
        if call.is_open or call.index in self.delivered:
            return
        self.trigger_event(
            Ticket.NoteDelivered, timestamp=now, index=call.index, recovered=recovered
        )

    def delivery_failed(
        self, call: TicketCall, now: datetime, *, error: str, maybe_done: bool, retry_at: datetime
    ) -> None:
        if call.index in self.delivered:
            return
        self.trigger_event(
            Ticket.DeliveryFailed,
            timestamp=now,
            index=call.index,
            error=error,
            maybe_done=maybe_done,
            retry_at=retry_at,
        )
