"""Input at the edges of what Python parses: the gateway over a real SQLite store and its real
views answers each with a readable 4xx and records nothing, and an unexpected error is a
generic 500 whose stack trace is logged without the exception's message.

Each case here was a 500, or an accepted value, before: ``int()`` takes Unicode digits and
refuses more than 4300 of them, ``astimezone(UTC)`` overflows near the ends of the calendar,
and ``ipaddress`` takes any text after a ``%`` as an IPv6 scope id.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from domain.commands import OrderService
from gateway.app import create_app
from gateway.boundary import stack_trace
from ops.adapters.command_ledger import StoreLedger
from ops.adapters.sealing import PasswordSealer
from ops.adapters.server_registry import ServerRegistry
from ops.adapters.settings_book import StoreSettingsBook, runtime_defaults
from ops.settings import Settings
from ops.store.database import Database
from ops.store.event_store import EventStore
from ops.views.view_queries import SqlViewQueries
from tests.fakes.clock import Clock
from tests.support.gateway import (
    AUTH,
    PASSWORD,
    STAFF,
    START,
    TOKEN,
    Client,
    assert_readable_error,
    credentials_for_tests,
    order,
    serving,
)

JSON_AUTH = {**AUTH, "Content-Type": "application/json"}
ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKvkcWkh33XP+nVwAr39SKD2LH3ynKCVGsuxXwfRfERU"


@pytest.fixture
def store(sqlite_url: str) -> Iterator[EventStore]:
    event_store = EventStore(sqlite_url)
    yield event_store
    event_store.close()


@pytest.fixture
def client(store: EventStore, sqlite_url: str) -> Iterator[Client]:
    db = Database(sqlite_url)
    app = create_app(
        ledger=StoreLedger(store, PasswordSealer("k" * 32)),
        views=SqlViewQueries(db),
        credentials=credentials_for_tests(),
        clock=Clock(START),
        servers=ServerRegistry(store),
        settings=StoreSettingsBook(store, runtime_defaults(Settings())),
    )
    try:
        with serving(app) as test_client:
            yield test_client
    finally:
        db.close()


def server(**changes: Any) -> dict[str, Any]:
    return {
        "server_id": "web1",
        "roles": ["web"],
        "host": "web1.nodes.example.net",
        "port": 22,
        "username": "admin",
        "host_key": ED25519,
        "ip": "192.0.2.10",
        "max_concurrency": 4,
        **changes,
    }


# --- numeric ids ----------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["service_id", "client_id"])
@pytest.mark.parametrize("digits", [21, 4000])
def test_an_overlong_numeric_id_is_refused_and_records_nothing(
    client: Client, store: EventStore, field: str, digits: int
) -> None:
    body = json.dumps(order(**{field: 0})).replace(f'"{field}": 0', f'"{field}": {"9" * digits}')
    reply = client.post("/v1/services", content=body, headers=JSON_AUTH)
    assert_readable_error(reply, 422)
    assert field in reply.json()["error"]
    assert store.max_notification_id() == 0


def test_a_number_too_long_for_python_to_read_is_a_400(client: Client, store: EventStore) -> None:
    body = json.dumps(order(service_id=0)).replace('"service_id": 0', f'"service_id": {"9" * 5000}')
    assert_readable_error(client.post("/v1/services", content=body, headers=JSON_AUTH), 400)
    assert store.max_notification_id() == 0


@pytest.mark.parametrize("field", ["service_id", "client_id"])
def test_a_64_bit_numeric_id_is_still_an_id(client: Client, field: str) -> None:
    reply = client.post("/v1/services", json=order(**{field: 2**64 - 1}), headers=AUTH)
    assert reply.status_code == 202, reply.text


# --- query parameters -----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/oplog", "/v1/tasks"])
@pytest.mark.parametrize("limit", ["²", "٣", "\uff11", "9" * 5000, "0", "-1", "1.5"])
def test_a_limit_that_is_not_plain_ascii_digits_is_a_400(
    client: Client, path: str, limit: str
) -> None:
    assert_readable_error(client.get(path, params={"limit": limit}, headers=STAFF), 400)


@pytest.mark.parametrize(
    "when", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+14:00"]
)
def test_a_time_that_overflows_in_utc_is_a_400(client: Client, when: str) -> None:
    assert client.post("/v1/services", json=order(), headers=AUTH).status_code == 202
    assert_readable_error(client.get("/v1/oplog", params={"since": when}, headers=AUTH), 400)
    events = client.get("/v1/services/1001/events", params={"as_of": when}, headers=AUTH)
    assert_readable_error(events, 400)


def test_the_earliest_and_latest_utc_times_are_still_times(client: Client) -> None:
    for when in ("0001-01-01T00:00:00+00:00", "9999-12-31T23:59:59Z"):
        assert client.get("/v1/oplog", params={"since": when}, headers=AUTH).status_code == 200


@pytest.mark.parametrize(
    ("path", "method", "body"),
    [
        ("/v1/tasks/bulk", "POST", '{"action": "clean_completed", "older_than_s": %s}'),
        ("/v1/settings", "PUT", '{"queue": {"stuck_after_s": %s}}'),
        ("/v1/settings", "PUT", '{"retry": {"initial_backoff_s": %s}}'),
    ],
)
def test_a_number_of_seconds_too_big_for_a_float_is_a_422(
    client: Client, store: EventStore, path: str, method: str, body: str
) -> None:
    reply = client.request(
        method,
        path,
        content=body % ("9" * 400),
        headers={**STAFF, "Content-Type": "application/json"},
    )
    assert_readable_error(reply, 422)
    assert store.max_notification_id() == 0


# --- server addresses -----------------------------------------------------------------------


@pytest.mark.parametrize("field", ["host", "ip"])
@pytest.mark.parametrize(
    "address",
    [
        "fe80::1%eth0;rm",
        "fe80::1%$(id)",
        "fe80::1%eth0 x",
        "fe80::1%" + "a" * 300,
        "fe80::1%-oProxyCommand",
        "fe80::1%",
        "fe80::1%%eth0",
    ],
)
def test_a_bad_ipv6_scope_id_is_refused_with_a_422_and_records_nothing(
    client: Client, store: EventStore, field: str, address: str
) -> None:
    reply = client.post("/v1/servers", json=server(**{field: address}), headers=STAFF)
    assert_readable_error(reply, 422)
    assert store.max_notification_id() == 0


@pytest.mark.parametrize("address", ["fe80::1%eth0", "fe80::1%enp0s31f6", "fe80::1%3"])
def test_a_link_local_host_with_a_valid_scope_id_is_registered(
    client: Client, address: str
) -> None:
    reply = client.post("/v1/servers", json=server(host=address), headers=STAFF)
    assert reply.status_code in (200, 201, 202), reply.text


# --- the error boundary ---------------------------------------------------------------------


class ExplodingLedger(StoreLedger):
    """A ledger whose orders fail unexpectedly, with the password in the exception's text."""

    def order_service(self, command: OrderService) -> bool:
        return _explode(command)


def _explode(command: OrderService) -> bool:
    raise RuntimeError(f"boom with internals: {command.password}")


def test_every_500_logs_its_stack_trace_without_the_exception_text(
    store: EventStore, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    db = Database(sqlite_url)
    ledger = ExplodingLedger(store, PasswordSealer("k" * 32))
    app = create_app(
        ledger=ledger,
        views=SqlViewQueries(db),
        credentials=credentials_for_tests(),
        clock=Clock(START),
    )
    try:
        with caplog.at_level(logging.DEBUG), serving(app) as c:
            reply = c.post("/v1/services", json=order(), headers=AUTH)
    finally:
        db.close()
    assert reply.status_code == 500
    assert reply.json() == {"result": "error", "error": "internal error"}
    boundary = [r for r in caplog.records if r.name == "hostwright.gateway"]
    assert len(boundary) == 1
    logged = boundary[0].getMessage()
    assert "Traceback (most recent call last)" in logged
    assert "in _explode" in logged and "in order_service" in logged  # the frames, in order
    assert "RuntimeError" in logged and "POST /v1/services" in logged
    for secret in (PASSWORD, "internals", TOKEN):
        assert secret not in caplog.text


def test_the_logged_stack_trace_follows_the_chain_of_exceptions() -> None:
    def read_row() -> None:
        raise KeyError(PASSWORD)

    try:
        try:
            read_row()
        except KeyError as exc:
            raise RuntimeError(PASSWORD) from exc
    except RuntimeError as exc:
        trace = stack_trace(exc)
    assert trace.index("in read_row") < trace.index("direct cause") < trace.index("RuntimeError")
    assert "builtins.KeyError (message withheld)" in trace
    assert PASSWORD not in trace


def test_a_refusal_logs_no_stack_trace(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        assert_readable_error(client.post("/v1/services", json={}, headers=AUTH), 422)
    assert "Traceback" not in caplog.text
