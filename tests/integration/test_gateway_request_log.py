"""One log line per HTTP request, over a real event store: method, path, status, duration and
the caller's credential name, with the command id the call recorded — never the token, never
the order's password. A call naming no command id gets one, so every command correlates."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.types import ASGIApp

from domain.commands import OrderService
from gateway.app import create_app
from ops.adapters.command_ledger import StoreLedger
from ops.adapters.sealing import PasswordSealer
from ops.store.event_store import EventStore
from tests.fakes.clock import Clock
from tests.fakes.view_queries import FakeViews
from tests.support.gateway import (
    AUTH,
    PASSWORD,
    START,
    TOKEN,
    Client,
    credentials_for_tests,
    order,
    serving,
)

LOGGER = "hostwright.gateway.requests"


class FailingLedger(StoreLedger):
    """A ledger whose orders fail in a way nobody planned for, the password in the message."""

    def order_service(self, command: OrderService) -> bool:
        raise RuntimeError(f"boom: {command.password}")


def app_over(store: EventStore, ledger: type[StoreLedger] = StoreLedger) -> ASGIApp:
    return create_app(
        ledger=ledger(store, PasswordSealer("a-secret-key-only-for-tests")),
        views=FakeViews(),
        credentials=credentials_for_tests(),
        clock=Clock(START),
    )


@pytest.fixture
def store(sqlite_url: str) -> Iterator[EventStore]:
    event_store = EventStore(sqlite_url)
    yield event_store
    event_store.close()


@pytest.fixture
def client(store: EventStore) -> Iterator[Client]:
    with serving(app_over(store)) as test_client:
        yield test_client


def field(line: logging.LogRecord, name: str) -> Any:
    """A field the line was given (``extra``, or the command id filter's); None if none."""
    return vars(line).get(name)


def request_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == LOGGER]


def fields(record: logging.LogRecord) -> dict[str, Any]:
    names = ("method", "path", "status", "credential", "command_id")
    return {name: getattr(record, name, None) for name in names}


def test_an_order_is_one_line_with_its_credential_and_command_id_and_no_secret(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        reply = client.post("/v1/services", json=order(command_id="order-1001"), headers=AUTH)
    assert reply.status_code == 202, reply.text

    (line,) = request_lines(caplog)
    assert fields(line) == {
        "method": "POST",
        "path": "/v1/services",
        "status": 202,
        "credential": "whmcs",
        "command_id": "order-1001",
    }
    duration = field(line, "duration_ms")
    assert isinstance(duration, float) and duration >= 0
    assert line.levelno == logging.INFO
    assert TOKEN not in caplog.text and PASSWORD not in caplog.text


def test_a_call_without_a_command_id_gets_one_and_the_event_records_it(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        assert client.post("/v1/services", json=order(), headers=AUTH).status_code == 202
        suspend = client.post("/v1/services/1001/suspend", json={"reason": "x"}, headers=AUTH)
    assert suspend.status_code == 202, suspend.text

    ordered, suspended = (field(line, "command_id") for line in request_lines(caplog))
    assert ordered and suspended and ordered != suspended
    events = client.get("/v1/services/1001/events", headers=AUTH).json()["events"]
    recorded = [e["data"]["command_id"] for e in events if "command_id" in e["data"]]
    assert recorded == [ordered, suspended]


def test_a_refused_token_is_logged_as_401_with_no_credential_and_not_the_token(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "not-a-known-token-0123456789-abcdef"
    with caplog.at_level(logging.INFO):
        reply = client.get("/v1/services/1001", headers={"Authorization": f"Bearer {wrong}"})
    assert reply.status_code == 401

    (line,) = request_lines(caplog)
    assert fields(line) == {
        "method": "GET",
        "path": "/v1/services/1001",
        "status": 401,
        "credential": None,
        "command_id": None,
    }
    assert wrong not in caplog.text


def test_a_refused_order_is_logged_with_its_status(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        reply = client.post("/v1/services", json=order(mode="nonsense"), headers=AUTH)
    assert reply.status_code == 422

    (line,) = request_lines(caplog)
    assert (field(line, "status"), field(line, "credential")) == (422, "whmcs")
    assert PASSWORD not in caplog.text


def test_a_call_that_fails_unexpectedly_is_logged_as_500_without_its_secrets(
    store: EventStore, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO), serving(app_over(store, FailingLedger)) as failing:
        reply = failing.post("/v1/services", json=order(command_id="order-500"), headers=AUTH)
    assert reply.status_code == 500

    (line,) = request_lines(caplog)
    assert fields(line) == {
        "method": "POST",
        "path": "/v1/services",
        "status": 500,
        "credential": "whmcs",
        "command_id": "order-500",
    }
    assert PASSWORD not in caplog.text and TOKEN not in caplog.text
