"""A store from before names were claimed: ``hostwright backfill-claims`` makes every live
service hold its names (SQLite and PostgreSQL), reports the names two live services already
share, and records nothing when run again."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from domain.commands import OrderService, parse_order
from domain.errors import Conflict
from domain.service import Service
from ops.cli import main as cli_main
from ops.store.claims_backfill import backfill_claims
from ops.store.event_store import EventStore

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def ordered_before_claims(store: EventStore, service_id: int, domain: str, **extra: Any) -> None:
    """An order as the store recorded it before claims: the Service event alone."""
    body = {
        "service_id": service_id,
        "client_id": 1,
        "mode": "split",
        "domain": domain,
        "plan": {"package": "default"},
        **extra,
    }
    store.save(Service.order(parse_order(body, now=NOW, actor="whmcs"), None))


@pytest.fixture
def store(database_url: str) -> Iterator[EventStore]:
    event_store = EventStore(database_url)
    ordered_before_claims(event_store, 1, "shop.example.com", username="shopuser")
    ordered_before_claims(event_store, 2, "shop.example.com", username="copycat")  # the attack
    ordered_before_claims(event_store, 3, "gone.example.com", username="goneuser")
    gone = event_store.get_service("3")
    gone.mark_terminated(NOW, [])
    event_store.save(gone)
    yield event_store
    event_store.close()


def test_backfill_claims_the_live_services_names_and_reports_the_shared_ones(
    store: EventStore,
) -> None:
    conflicts = backfill_claims(store, NOW)
    assert conflicts == ["service 2: the domain shop.example.com is already in use by service 1"]
    with pytest.raises(Conflict, match="in use by service 1"):
        store.order_service(later(4, "shop.example.com"), None)
    with pytest.raises(Conflict, match="the username copycat is already in use by service 2"):
        store.order_service(later(5, "x.example.com", "copycat"), None)
    # the terminated service holds nothing
    assert store.order_service(later(6, "gone.example.com", "goneuser"), None)


def test_backfill_again_records_nothing(store: EventStore) -> None:
    backfill_claims(store, NOW)
    count = store.max_notification_id()
    assert backfill_claims(store, NOW) == [
        "service 2: the domain shop.example.com is already in use by service 1"
    ]
    assert store.max_notification_id() == count


def test_the_cli_command_backfills_and_exits_1_naming_the_shared_names(
    store: EventStore, database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setenv("HOSTWRIGHT_DATABASE_URL", database_url)
    monkeypatch.delenv("HOSTWRIGHT_CONFIG", raising=False)
    assert cli_main(["backfill-claims"]) == 1
    out = capsys.readouterr().out
    assert "service 2: the domain shop.example.com is already in use by service 1" in out
    with pytest.raises(Conflict):
        store.order_service(later(4, "shop.example.com"), None)


def later(service_id: int, domain: str, username: str | None = None) -> OrderService:
    """An order placed after the upgrade, by another client."""
    body: dict[str, Any] = {
        "service_id": service_id,
        "client_id": 9,
        "mode": "split",
        "plan": {"package": "default"},
    }
    if username:
        body["username"] = username
    return parse_order({**body, "domain": domain}, now=NOW, actor="whmcs")
