"""Names belong to one live service: the claims an order makes in the event store (SQLite and
PostgreSQL), refused when another live service holds a name, released with the service's
termination, and decided once when two orders race for one name."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from domain.claim import Claim, ClaimedName
from domain.commands import OrderService, TerminateService, parse_order
from domain.errors import Conflict, NotFound
from domain.service import Service, service_uuid
from domain.step_chain import derive_username
from ops.adapters.pipeline_store import StorePipelineAdapter
from ops.store.event_store import EventStore

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
SERVICE_TOPICS = ("Service.",)


def order(service_id: int, domain: str, mode: str = "split", **extra: Any) -> OrderService:
    body = {
        "service_id": service_id,
        "client_id": service_id,
        "mode": mode,
        "domain": domain,
        "plan": {"package": "default"},
    }
    return parse_order({**body, **extra}, now=NOW, actor="whmcs")


def vanity(service_id: int, label: str = "blog", **extra: Any) -> OrderService:
    return order(service_id, f"{label}.hosted.example", "vanity", label=label, **extra)


@pytest.fixture
def store(database_url: str) -> Iterator[EventStore]:
    event_store = EventStore(database_url)
    yield event_store
    event_store.close()


def topics(store: EventStore) -> list[str]:
    return [n.topic.rpartition(":")[2] for n in store.notifications(0, 1000)]


def terminate(store: EventStore, service_id: int) -> None:
    """Terminate asked for, and the pipeline recording its end as it does."""
    store.request(TerminateService(service_id=str(service_id), now=NOW, actor="whmcs"))
    finish(store, service_id, lambda service: service.mark_terminated(NOW, []))


def finish(store: EventStore, service_id: int, mark: Any) -> Service:
    def decide(service: Service) -> bool:
        mark(service)
        return True

    adapter = StorePipelineAdapter(store)
    return adapter.update_service(service_uuid(str(service_id)), decide, "busy", 3)


def test_an_order_claims_its_domain_and_username_in_the_same_save(store: EventStore) -> None:
    assert store.order_service(order(2102, "shop.example.com", username="shopuser"), None)
    assert topics(store) == ["Service.Ordered", "Claim.Made", "Claim.Made"]


def test_a_second_order_for_a_claimed_domain_is_refused_naming_it_and_records_nothing(
    store: EventStore,
) -> None:
    store.order_service(order(2102, "shop.example.com", username="victim"), None)
    before = store.max_notification_id()
    with pytest.raises(Conflict) as refused:
        store.order_service(order(2200, "Shop.Example.com", username="victim"), None)
    message = str(refused.value)
    assert "the domain shop.example.com is already in use by service 2102" in message
    assert "the username victim is already in use by service 2102" in message
    assert store.max_notification_id() == before
    with pytest.raises(NotFound):
        store.events_of("2200")


def test_the_username_alone_is_a_claim_of_its_own(store: EventStore) -> None:
    store.order_service(order(2102, "shop.example.com", username="victim"), None)
    with pytest.raises(Conflict, match="the username victim is already in use by service 2102"):
        store.order_service(order(2200, "other.example.org", username="victim"), None)
    # a derived username is claimed too: ordering it as a given username is refused
    store.order_service(order(2300, "derived.example.com"), None)
    derived = derive_username("derived.example.com", "2300")
    with pytest.raises(Conflict, match=f"the username {derived} is already in use"):
        store.order_service(order(2301, "third.example.com", username=derived), None)


def test_a_second_order_for_a_claimed_vanity_label_is_refused(store: EventStore) -> None:
    store.order_service(vanity(2102, username="bloguser"), None)
    before = store.max_notification_id()
    with pytest.raises(Conflict, match="the label blog is already in use by service 2102"):
        store.order_service(vanity(2200, username="intruder"), None)
    assert store.max_notification_id() == before


def test_the_same_order_again_stays_idempotent_and_records_nothing(store: EventStore) -> None:
    assert store.order_service(vanity(2102), None) is True
    before = store.max_notification_id()
    assert store.order_service(vanity(2102), None) is False
    assert store.max_notification_id() == before


def test_the_same_service_id_with_other_details_is_still_a_conflict(store: EventStore) -> None:
    store.order_service(order(2102, "shop.example.com"), None)
    with pytest.raises(Conflict, match="already exists with other details"):
        store.order_service(order(2102, "elsewhere.example.com"), None)


def test_a_failed_or_suspended_service_keeps_its_names(store: EventStore) -> None:
    store.order_service(order(2102, "shop.example.com"), None)
    finish(store, 2102, lambda service: service.mark_deploy_failed(NOW, "boom"))
    with pytest.raises(Conflict, match="in use by service 2102"):
        store.order_service(order(2200, "shop.example.com"), None)
    finish(store, 2102, lambda service: service.mark_suspended(NOW))
    with pytest.raises(Conflict, match="in use by service 2102"):
        store.order_service(order(2200, "shop.example.com"), None)


def test_termination_releases_the_names_in_the_same_save_and_they_can_be_ordered_again(
    store: EventStore,
) -> None:
    store.order_service(vanity(2102, username="bloguser"), None)
    terminate(store, 2102)
    assert topics(store)[-4:] == [
        "Service.Terminated",
        "Claim.Released",
        "Claim.Released",
        "Claim.Released",
    ]
    assert store.order_service(vanity(2200, username="bloguser"), None) is True
    assert topics(store)[-4:] == [
        "Service.Ordered",
        "Claim.Retaken",
        "Claim.Retaken",
        "Claim.Retaken",
    ]
    # and the new holder is protected as the first one was
    with pytest.raises(Conflict, match="in use by service 2200"):
        store.order_service(vanity(2300), None)


def test_two_orders_racing_for_one_name_exactly_one_wins(store: EventStore) -> None:
    contenders = range(3000, 3008)
    outcomes: dict[int, object] = {}
    barrier = threading.Barrier(len(contenders))

    def place(service_id: int) -> None:
        barrier.wait()
        try:
            outcomes[service_id] = store.order_service(
                order(service_id, "contested.example.com"), None
            )
        except Conflict as exc:
            outcomes[service_id] = str(exc)

    threads = [threading.Thread(target=place, args=(i,)) for i in contenders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [i for i, outcome in outcomes.items() if outcome is True]
    assert len(winners) == 1, outcomes
    for service_id in set(contenders) - set(winners):
        assert outcomes[service_id] == (
            f"the domain contested.example.com is already in use by service {winners[0]}"
        )
        with pytest.raises(NotFound):
            store.events_of(str(service_id))
    assert topics(store).count("Service.Ordered") == 1


def test_a_terminated_holder_that_never_released_its_names_does_not_keep_them(
    store: EventStore,
) -> None:
    store.order_service(order(2102, "shop.example.com", username="shopuser"), None)
    # an old pipeline (before claims were released) records the end without releasing
    store.request(TerminateService(service_id="2102", now=NOW, actor="whmcs"))
    service = store.get_service("2102")
    service.mark_terminated(NOW, [])
    store.save(service)
    assert store.order_service(order(2200, "shop.example.com", username="shopuser"), None)
    assert topics(store)[-5:] == [
        "Service.Ordered",
        "Claim.Released",
        "Claim.Retaken",
        "Claim.Released",
        "Claim.Retaken",
    ]
    with pytest.raises(Conflict, match="in use by service 2200"):
        store.order_service(order(2300, "shop.example.com"), None)


def test_a_claim_whose_holder_does_not_exist_is_taken_over(store: EventStore) -> None:
    store.save(Claim.make(ClaimedName("domain", "ghost.example.com"), "9999", NOW))
    assert store.order_service(order(2200, "ghost.example.com"), None) is True


def test_a_live_holder_still_keeps_its_names_against_a_takeover(store: EventStore) -> None:
    store.order_service(order(2102, "shop.example.com"), None)
    with pytest.raises(Conflict, match="in use by service 2102"):
        store.order_service(order(2200, "shop.example.com"), None)


def test_a_subdomain_of_another_customers_domain_is_refused_in_the_store(
    store: EventStore,
) -> None:
    store.order_service(order(2102, "shop.example.com"), None)
    before = store.max_notification_id()
    with pytest.raises(
        Conflict, match=r"the domain shop\.example\.com is already in use by service 2102"
    ):
        store.order_service(order(2200, "www.shop.example.com"), None)
    assert store.max_notification_id() == before
    # the same client may: service 2300 of client 2102
    same_client = parse_order(
        {
            "service_id": 2300,
            "client_id": 2102,
            "mode": "split",
            "domain": "blog.shop.example.com",
            "plan": {"package": "default"},
        },
        now=NOW,
        actor="whmcs",
    )
    assert store.order_service(same_client, None) is True
    # and a terminated parent holds nothing
    terminate(store, 2102)
    assert store.order_service(order(2400, "www.shop.example.com"), None) is True
