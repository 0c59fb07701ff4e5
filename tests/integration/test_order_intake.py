"""What an order is refused for at intake, before anything is recorded: a name another live
service holds (409 naming it), and everything a deploy of it would refuse later (422): a
vanity domain not under the provider's real domain, a reserved label, a vanity order where no
provider domain is configured, the provider's own domain or users.

The gateway over a real event store (SQLite file) and a fake of the views.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from domain.provider_settings import ProviderSettings
from gateway.app import create_app
from ops.adapters.command_ledger import StoreLedger
from ops.adapters.sealing import PasswordSealer
from ops.store.event_store import EventStore
from tests.fakes.clock import Clock
from tests.fakes.view_queries import FakeViews
from tests.support.gateway import (
    AUTH,
    START,
    Client,
    assert_readable_error,
    credentials_for_tests,
    order,
    serving,
)

PROVIDER = ProviderSettings(
    provider_domain="hosted.example",
    shared_mail_user="provmail",
    provider_dns_user="provdns",
    reserved_labels=frozenset({"billing"}),
)


@pytest.fixture
def store(sqlite_url: str) -> Iterator[EventStore]:
    event_store = EventStore(sqlite_url)
    yield event_store
    event_store.close()


def gateway(store: EventStore, provider: ProviderSettings | None) -> Any:
    return create_app(
        ledger=StoreLedger(store, PasswordSealer("a-secret-key-only-for-tests")),
        views=FakeViews(),
        credentials=credentials_for_tests(),
        clock=Clock(START),
        provider=provider,
    )


@pytest.fixture
def client(store: EventStore) -> Iterator[Client]:
    with serving(gateway(store, PROVIDER)) as test_client:
        yield test_client


def vanity(label: str = "blog", **changes: Any) -> dict[str, Any]:
    return order(
        **{"mode": "vanity", "label": label, "domain": f"{label}.hosted.example", **changes}
    )


def refused(client: Client, store: EventStore, body: dict[str, Any], status: int) -> str:
    """POSTs the order; asserts it is refused with ``status`` and records nothing."""
    before = store.max_notification_id()
    reply = client.post("/v1/services", json=body, headers=AUTH)
    assert_readable_error(reply, status)
    assert store.max_notification_id() == before
    message: str = reply.json()["error"]
    return message


def test_a_vanity_domain_not_under_the_provider_domain_is_422_naming_it(
    client: Client, store: EventStore
) -> None:
    message = refused(client, store, vanity(domain="blog.example.net"), 422)
    assert "hosted.example" in message
    assert "example.net" not in message.replace("blog.example.net", "")


def test_a_vanity_domain_not_starting_with_its_label_is_422_naming_the_provider_domain(
    client: Client, store: EventStore
) -> None:
    message = refused(client, store, vanity(domain="x.example.net"), 422)
    assert "<label>.hosted.example" in message and "blog.hosted.example" in message


def test_a_vanity_domain_one_level_too_deep_is_422(client: Client, store: EventStore) -> None:
    message = refused(client, store, vanity(domain="blog.x.hosted.example"), 422)
    assert "<label>.hosted.example" in message


@pytest.mark.parametrize("label", ["mail", "postmaster", "billing"])
def test_a_reserved_vanity_label_is_422_at_once(
    client: Client, store: EventStore, label: str
) -> None:
    assert "reserved" in refused(client, store, vanity(label), 422)


def test_the_provider_s_own_users_and_domain_are_422_at_once(
    client: Client, store: EventStore
) -> None:
    assert "provider" in refused(client, store, order(username="provmail"), 422)
    assert "provider" in refused(client, store, order(domain="hosted.example"), 422)


def test_a_vanity_order_where_no_provider_domain_is_configured_is_422(store: EventStore) -> None:
    with serving(gateway(store, None)) as client:
        message = refused(client, store, vanity(), 422)
    assert "vanity" in message and "configured" in message


def test_a_valid_vanity_order_is_accepted(client: Client, store: EventStore) -> None:
    reply = client.post("/v1/services", json=vanity(username="bloguser"), headers=AUTH)
    assert reply.status_code == 202, reply.text


def test_a_name_held_by_another_live_service_is_409_naming_the_holder(
    client: Client, store: EventStore
) -> None:
    reply = client.post("/v1/services", json=vanity(username="bloguser"), headers=AUTH)
    assert reply.status_code == 202, reply.text
    intruder = vanity(service_id=2200, client_id=99, username="intruder")
    message = refused(client, store, intruder, 409)
    assert "the label blog is already in use by service 1001" in message
    # nothing was recorded for the intruder: it does not exist
    reply = client.post("/v1/services/2200/terminate", json={}, headers=AUTH)
    assert reply.status_code == 404
    events = client.get("/v1/services/2200/events", headers=AUTH)
    assert isinstance(events, httpx.Response) and events.status_code == 404


def test_a_subdomain_of_another_customers_domain_is_refused(
    client: Client, store: EventStore
) -> None:
    reply = client.post("/v1/services", json=order(username="shopuser"), headers=AUTH)
    assert reply.status_code == 202, reply.text
    for domain in ("www.shop.example.com", "a.b.shop.example.com"):
        intruder = order(service_id=2200, client_id=99, domain=domain, username="intruder")
        message = refused(client, store, intruder, 409)
        assert "the domain shop.example.com is already in use by service 1001" in message


def test_the_same_client_may_host_a_subdomain_beside_its_domain(
    client: Client, store: EventStore
) -> None:
    reply = client.post("/v1/services", json=order(username="shopuser"), headers=AUTH)
    assert reply.status_code == 202, reply.text
    blog = order(service_id=2200, domain="blog.shop.example.com", username="bloguser")
    reply = client.post("/v1/services", json=blog, headers=AUTH)
    assert reply.status_code == 202, reply.text


@pytest.mark.parametrize(
    "domain", ["mail.hosted.example", "free.hosted.example", "a.b.hosted.example"]
)
def test_a_name_under_the_provider_domain_is_422_unless_vanity(
    client: Client, store: EventStore, domain: str
) -> None:
    message = refused(client, store, order(domain=domain, username="intruder"), 422)
    assert "hosted.example" in message


def terminate(client: Client, store: EventStore, *, finished: bool) -> None:
    """Asks for service 1001's terminate; ``finished``: the nodes are done (``terminated``),
    else it stays ``terminating``."""
    reply = client.post("/v1/services/1001/terminate", json={}, headers=AUTH)
    assert reply.status_code == 202, reply.text
    if finished:
        service = store.get_service("1001")
        service.mark_terminated(START, [])
        store.save(service)


@pytest.mark.parametrize("finished", [True, False], ids=["terminated", "terminating"])
def test_a_terminated_service_id_is_closed_for_good_same_order_or_not(
    client: Client, store: EventStore, finished: bool
) -> None:
    first = order()
    assert client.post("/v1/services", json=first, headers=AUTH).status_code == 202
    terminate(client, store, finished=finished)
    status = "terminated" if finished else "terminating"
    again = order(domain="fresh.example.com", username="fresh1", plan={"package": "gold"})
    for body in (first, again):
        message = refused(client, store, body, 409)
        assert f"service 1001 is {status}" in message, message
        assert "closed for good" in message and "a new order needs a new service id" in message
    reply = client.get("/v1/services/1001", headers=AUTH)
    assert reply.status_code == 200 and reply.json()["status"] == status
    # the same order under a new id is welcome (its names were freed by the terminate)
    if finished:
        reply = client.post("/v1/services", json=order(service_id=1002), headers=AUTH)
        assert reply.status_code == 202, reply.text


@pytest.mark.parametrize("plan", [None, {}], ids=["missing", "empty"])
def test_an_order_without_a_plan_is_422_plan_is_required(
    client: Client, store: EventStore, plan: dict[str, Any] | None
) -> None:
    body = {k: v for k, v in order().items() if k != "plan"}
    if plan is not None:
        body["plan"] = plan
    message = refused(client, store, body, 422)
    assert message.startswith("plan is required: "), message
    assert "package" in message and "disk_mb" in message


@pytest.mark.parametrize("plan", [None, {}], ids=["null", "empty"])
def test_a_plan_change_to_no_plan_is_422_plan_is_required(
    client: Client, store: EventStore, plan: dict[str, Any] | None
) -> None:
    assert client.post("/v1/services", json=order(), headers=AUTH).status_code == 202
    before = store.max_notification_id()
    reply = client.post("/v1/services/1001/change-plan", json={"plan": plan}, headers=AUTH)
    assert_readable_error(reply, 422)
    assert reply.json()["error"].startswith("plan is required: ")
    assert store.max_notification_id() == before
