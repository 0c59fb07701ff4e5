"""Names belong to one live service, end to end: real hostwright processes on RabbitMQ and
PostgreSQL, simulated Hestia nodes over SSH.

The attacks the claims stop (before them, each order below was accepted and deployed onto
the victim's things, and terminating it deleted them):

- another client orders the label of an active vanity service: 409 naming the conflict, no
  event recorded, its terminate is a 404, and every node is byte for byte as before;
- the same split domain (and the same username) ordered under a second service id: 409,
  nothing recorded, nothing on any node changes;
- once the vanity service is terminated, its label is free: a new order for it goes active.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.support.convergence import changes_since, event_count, log_marks, settle, snapshot_all
from tests.support.deployment import PROVIDER_DOMAIN, PROVIDER_MAIL_USER, Deployment
from tests.support.resilience import SPLIT_NODES, deployment

PROVIDER = ("mail1", ["dns1", "dns2"])


def order_body(service_id: int, mode: str, domain: str, **extra: Any) -> dict[str, Any]:
    return {
        "service_id": service_id,
        "client_id": service_id,  # every order from a client of its own
        "mode": mode,
        "domain": domain,
        "plan": {"package": "e2e", "disk_mb": 1000},
        **extra,
    }


async def refused(system: Deployment, body: dict[str, Any]) -> str:
    """POSTs the order and asserts a 409; returns its message."""
    reply = await system.client.post("/v1/services", json=body)
    assert reply.status_code == 409, reply.text
    message: str = reply.json()["error"]
    return message


async def assert_changes_nothing(system: Deployment, attack: Any) -> None:
    """Runs ``attack`` with the nodes quiet; afterwards no event was recorded, no node ran a
    state-changing command, and every node is byte for byte what it was."""
    await settle(system)
    before = snapshot_all(system)
    marks = log_marks(system)
    events = await asyncio.to_thread(event_count, system.database_url)
    await attack()
    await settle(system)
    assert await asyncio.to_thread(event_count, system.database_url) == events
    assert changes_since(system, marks) == {server_id: [] for server_id in system.nodes}
    assert snapshot_all(system) == before


async def test_a_second_order_for_a_claimed_label_is_refused_and_changes_nothing(
    tmp_path: Path, amqp_url: str, exchange_name: str, fresh_postgres_url: str
) -> None:
    async with deployment(
        tmp_path, amqp_url, exchange_name, fresh_postgres_url, SPLIT_NODES, provider=PROVIDER
    ) as system:
        label_domain = f"blog.{PROVIDER_DOMAIN}"
        await system.order(2102, "vanity", label_domain, label="blog", username="bloguser")
        await system.wait_status([2102], "active", 120)

        async def attack() -> None:
            intruder = order_body(2200, "vanity", label_domain, label="blog", username="intruder")
            message = await refused(system, intruder)
            assert "the label blog is already in use by service 2102" in message
            assert f"the domain {label_domain} is already in use by service 2102" in message
            # with the victim's username too, or none (derived from the domain)
            message = await refused(system, {**intruder, "username": "bloguser"})
            assert "the username bloguser is already in use by service 2102" in message
            del intruder["username"]
            assert "service 2102" in await refused(system, intruder)
            # nothing exists of the intruder's service to terminate
            reply = await system.client.post("/v1/services/2200/terminate", json={})
            assert reply.status_code == 404, reply.text
            assert (await system.status(2200))["status"] is None

        await assert_changes_nothing(system, attack)
        assert (await system.status(2102))["status"] == "active"


async def test_the_same_split_domain_under_a_second_id_is_refused_and_changes_nothing(
    tmp_path: Path, amqp_url: str, exchange_name: str, fresh_postgres_url: str
) -> None:
    async with deployment(
        tmp_path, amqp_url, exchange_name, fresh_postgres_url, SPLIT_NODES
    ) as system:
        await system.order(2103, "split", "shop.example.com", username="shopuser")
        await system.wait_status([2103], "active", 120)

        async def attack() -> None:
            same = order_body(2201, "split", "shop.example.com", username="shopuser")
            message = await refused(system, same)
            assert "the domain shop.example.com is already in use by service 2103" in message
            assert "the username shopuser is already in use by service 2103" in message
            other_user = {**same, "service_id": 2202, "username": "another"}
            assert "the domain shop.example.com" in await refused(system, other_user)
            other_domain = {**same, "service_id": 2203, "domain": "elsewhere.example.org"}
            assert "the username shopuser" in await refused(system, other_domain)
            for service_id in (2201, 2202, 2203):
                reply = await system.client.post(f"/v1/services/{service_id}/terminate", json={})
                assert reply.status_code == 404, reply.text

        await assert_changes_nothing(system, attack)
        assert (await system.status(2103))["status"] == "active"


async def test_a_label_can_be_ordered_again_once_its_service_is_terminated(
    tmp_path: Path, amqp_url: str, exchange_name: str, fresh_postgres_url: str
) -> None:
    async with deployment(
        tmp_path, amqp_url, exchange_name, fresh_postgres_url, SPLIT_NODES, provider=PROVIDER
    ) as system:
        label_domain = f"blog.{PROVIDER_DOMAIN}"
        await system.order(2104, "vanity", label_domain, label="blog", username="bloguser")
        await system.wait_status([2104], "active", 120)
        again = order_body(2300, "vanity", label_domain, label="blog", username="bloguser")
        assert "service 2104" in await refused(system, again)

        reply = await system.client.post("/v1/services/2104/terminate", json={})
        assert reply.status_code == 202, reply.text
        await system.wait_status([2104], "terminated", 90)

        reply = await system.client.post("/v1/services", json=again)
        assert reply.status_code == 202, reply.text
        await system.wait_status([2300], "active", 120)
        boxes = await system.on_node(
            "mail1", "v-list-mail-accounts", PROVIDER_MAIL_USER, PROVIDER_DOMAIN
        )
        assert "blog" in boxes
        assert label_domain in await system.on_node("web1", "v-list-web-domains", "bloguser")
