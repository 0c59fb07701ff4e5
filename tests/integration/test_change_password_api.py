"""``POST /v1/services/{id}/change-password`` against the real ledger and event store (SQLite
file): what it records, what it refuses, and that the new password is never stored, shown or
logged in clear — read from the stored events' bytes and the database files themselves."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

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
    Client,
    assert_readable_error,
    credentials_for_tests,
    order,
    serving,
)

NEW = "N3w-secret 'quoted' $(x)"


@pytest.fixture
def store(sqlite_url: str) -> Iterator[EventStore]:
    event_store = EventStore(sqlite_url)
    yield event_store
    event_store.close()


@pytest.fixture
def sealer() -> PasswordSealer:
    return PasswordSealer("a-secret-key-only-for-tests")


@pytest.fixture
def client(store: EventStore, sealer: PasswordSealer) -> Iterator[Client]:
    app = create_app(
        ledger=StoreLedger(store, sealer),
        views=FakeViews(),
        credentials=credentials_for_tests(),
        clock=Clock(START),
    )
    with serving(app) as test_client:
        assert test_client.post("/v1/services", json=order(), headers=AUTH).status_code == 202
        yield test_client


def change(client: Client, body: Any, **headers: str) -> Any:
    return client.post("/v1/services/1001/change-password", json=body, headers={**AUTH, **headers})


def topics(client: Client) -> list[str]:
    reply = client.get("/v1/services/1001/events", headers=AUTH)
    assert reply.status_code == 200, reply.text
    assert NEW not in reply.text
    return [event["topic"] for event in reply.json()["events"]]


def test_a_retried_call_records_one_sealed_request(
    client: Client,
    store: EventStore,
    sealer: PasswordSealer,
    sqlite_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    for _ in range(3):
        reply = change(client, {"password": NEW}, **{"Idempotency-Key": "whmcs-pw-1"})
        assert (reply.status_code, reply.json()) == (202, {"result": "success"})
    assert topics(client).count("Service.PasswordChangeRequested") == 1
    service = store.get_service("1001")
    sealed = service.password_sealed
    assert sealed is not None and sealed.startswith(f"v2:{sealer.key_id}:")
    assert sealer.unseal(sealed) == NEW
    assert service.password_pending
    for notification in store.notifications(0, 100):  # the stored events, as bytes
        assert NEW.encode() not in notification.state
        assert NEW not in store.envelope(notification).decode()
    database = Path(sqlite_url.removeprefix("sqlite:///"))
    for path in database.parent.glob(database.name + "*"):  # the file, its -wal and -shm
        assert NEW.encode() not in path.read_bytes()
    assert NEW not in caplog.text
    # another call (another key, or none) is another request: sealing is random, so two
    # requests cannot be told equal; running the change again sets the same password
    assert change(client, {"password": NEW}).status_code == 202
    assert topics(client).count("Service.PasswordChangeRequested") == 2


BAD = [
    ({}, "password is required"),
    ({"password": None}, "password is required"),
    ({"password": "short"}, "password must be 8 to 128 characters"),
    ({"password": "tab\there!"}, "password must be printable ASCII"),
    ({"password": NEW, "force": True}, "change-password takes no force"),
    ({"password": NEW, "why": "x"}, "unknown field(s): why"),
]


@pytest.mark.parametrize(("body", "said"), BAD, ids=[said for _, said in BAD])
def test_a_missing_or_bad_password_is_a_422_naming_it_and_records_nothing(
    client: Client, store: EventStore, body: Any, said: str
) -> None:
    count = store.max_notification_id()
    reply = change(client, body)
    assert_readable_error(reply, 422)
    assert reply.json()["error"] == said
    assert NEW not in reply.text
    assert store.max_notification_id() == count


def test_a_password_on_another_action_is_a_422(client: Client, store: EventStore) -> None:
    count = store.max_notification_id()
    reply = client.post("/v1/services/1001/suspend", json={"password": NEW}, headers=AUTH)
    assert_readable_error(reply, 422)
    assert reply.json()["error"] == "suspend takes no password"
    assert store.max_notification_id() == count


def test_a_suspended_terminated_or_unknown_service_refuses_it(
    client: Client, store: EventStore, sealer: PasswordSealer
) -> None:
    assert client.post("/v1/services/1001/suspend", headers=AUTH).status_code == 202
    count = store.max_notification_id()
    reply = change(client, {"password": NEW})
    assert_readable_error(reply, 409)
    assert "unsuspend it before change password" in reply.json()["error"]
    assert client.post("/v1/services/1001/terminate", headers=AUTH).status_code == 202
    reply = change(client, {"password": NEW})
    assert_readable_error(reply, 409)
    assert "terminating; change password is not possible" in reply.json()["error"]
    reply = client.post("/v1/services/9999/change-password", json={"password": NEW}, headers=AUTH)
    assert_readable_error(reply, 404)
    assert store.max_notification_id() == count + 1  # the terminate only
    assert sealer.unseal(store.get_service("1001").password_sealed or "") == PASSWORD
