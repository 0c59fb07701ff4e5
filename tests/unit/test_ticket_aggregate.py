"""The Ticket aggregate alone: which WHMCS call is owed when, and what makes it uncertain."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from domain.errors import InvalidInput
from domain.ticket import Ticket, TicketConfig, failure_key, ticket_uuid

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
TASK = uuid.uuid4()


def ticket_with(failures: int) -> Ticket:
    ticket = Ticket.raise_for(
        service_id="42", client_id="7", domain="a.example", operation="deploy", run=1, now=T0
    )
    for attempt in range(1, failures + 1):
        ticket.record_failure(
            key=failure_key(TASK, attempt),
            step="web.user",
            action="ensure_user",
            server_id="web1",
            attempt=attempt,
            error="boom",
            now=T0,
        )
    return ticket


def test_one_ticket_per_operation_and_run() -> None:
    assert ticket_uuid("42", "deploy", 1) == ticket_uuid("42", "deploy", 1)
    assert ticket_uuid("42", "deploy", 1) != ticket_uuid("42", "deploy", 2)
    assert ticket_uuid("42", "deploy", 1) != ticket_uuid("42", "reset", 1)
    assert ticket_uuid("42", "deploy", 1) != ticket_uuid("43", "deploy", 1)


def test_a_failure_is_recorded_once() -> None:
    ticket = ticket_with(1)
    again = ticket.record_failure(
        key=failure_key(TASK, 1),
        step="web.user",
        action="ensure_user",
        server_id="web1",
        attempt=1,
        error="boom",
        now=T0,
    )
    assert again is False
    assert len(ticket.failures) == 1


def test_the_open_comes_first_then_the_notes_in_order() -> None:
    ticket = ticket_with(3)
    call = ticket.next_call(T0)
    assert call is not None and call.is_open and not call.uncertain
    ticket.attempt(call, T0, T0 + timedelta(seconds=60))
    ticket.opened(T0, 5, "HW-5", recovered=False)
    call = ticket.next_call(T0)
    assert call is not None and call.index == 1
    ticket.attempt(call, T0, T0 + timedelta(seconds=60))
    ticket.note_delivered(call, T0, recovered=False)
    call = ticket.next_call(T0)
    assert call is not None and call.index == 2
    ticket.attempt(call, T0, T0 + timedelta(seconds=60))
    ticket.note_delivered(call, T0, recovered=False)
    assert ticket.next_call(T0) is None and not ticket.has_work


def test_an_attempt_in_flight_blocks_others_until_its_lease_runs_out() -> None:
    ticket = ticket_with(1)
    call = ticket.next_call(T0)
    assert call is not None
    ticket.attempt(call, T0, T0 + timedelta(seconds=60))
    assert ticket.next_call(T0 + timedelta(seconds=59)) is None
    after = ticket.next_call(T0 + timedelta(seconds=61))
    assert after is not None and after.uncertain  # its deliverer died: look before resending


def test_a_failure_that_cannot_have_reached_whmcs_is_not_uncertain() -> None:
    ticket = ticket_with(1)
    call = ticket.next_call(T0)
    assert call is not None
    ticket.attempt(call, T0, T0 + timedelta(seconds=60))
    retry_at = T0 + timedelta(seconds=10)
    ticket.delivery_failed(call, T0, error="refused", maybe_done=False, retry_at=retry_at)
    assert ticket.next_call(T0 + timedelta(seconds=5)) is None  # back-off
    forced = ticket.next_call(T0 + timedelta(seconds=5), ignore_backoff=True)
    assert forced is not None and not forced.uncertain
    ticket.attempt(call, T0, T0 + timedelta(seconds=60))
    ticket.delivery_failed(call, T0, error="timeout", maybe_done=True, retry_at=retry_at)
    later = ticket.next_call(retry_at)
    assert later is not None and later.uncertain and ticket.failed_calls == 2


def test_ticket_config_is_validated() -> None:
    assert TicketConfig(enabled=True, department_id=3, priority="High").priority == "High"
    with pytest.raises(InvalidInput):
        TicketConfig(priority="Urgent")
    with pytest.raises(InvalidInput):
        TicketConfig(department_id=0)
