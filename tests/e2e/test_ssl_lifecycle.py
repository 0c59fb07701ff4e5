"""Automatic SSL through a service's lifecycle, end to end: every part a real process on
RabbitMQ and PostgreSQL, pebble as the CA, simulated Hestia nodes over SSH on 127.0.1.1x
(tests/support/ssl_deployment.py).

- A redeploy, then a verify & repair, put back the certificate someone removed from the web
  node (``v-delete-web-domain-ssl``): the node serves the same certificate again, and pebble
  sees no new order (the recorded one is still valid).
- A suspended service is not renewed (an Issue now while suspended orders nothing); once
  unsuspended the renewal goes on; terminating it retires both certificates (shown
  ``retired``, an Issue now refused, no order after).
- ``hostwright replay`` exits 0 afterwards: every view equals its rebuild from event 0.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.cli_runs import run_cli
from tests.support.deployment import wait_until
from tests.support.ssl_deployment import SslDeployment, split_nodes

pytestmark = pytest.mark.slow

WEB_IP, MAIL_IP, DNS_IP = "127.0.1.11", "127.0.1.12", "127.0.1.13"


@pytest.fixture
async def deployment(
    tmp_path: Path, amqp_url: str, exchange_name: str, fresh_postgres_url: str
) -> AsyncIterator[SslDeployment]:
    ips = (WEB_IP, MAIL_IP, DNS_IP)
    async with split_nodes(tmp_path, amqp_url, exchange_name, fresh_postgres_url, ips) as system:
        yield system


async def _issued_service(system: SslDeployment, service_id: int, domain: str, user: str) -> None:
    """A split service ordered, active, both certificates issued, installed and served."""
    system.delegate(domain, ["dns1"])
    await system.order(service_id, "split", domain, username=user)
    await system.wait_status([service_id], "active", 90)

    async def installed() -> bool:
        for role in ("web", "mail"):
            if "Installed" not in await system.certificate_topics(service_id, role):
                return False
        return True

    await wait_until(installed, 120, "both certificates issued and installed", system.logs)
    await system.wait_served(WEB_IP, [domain, f"www.{domain}"], 30)
    await system.wait_served(MAIL_IP, [f"mail.{domain}", f"webmail.{domain}"], 30)


async def _serial_served(system: SslDeployment, ip: str, name: str) -> int | None:
    try:
        return (await system.presented(ip, name)).serial_number
    except (ssl.SSLError, OSError):
        return None


async def _act(system: SslDeployment, service_id: int, action: str) -> None:
    reply = await system.client.post(f"/v1/services/{service_id}/{action}", json={})
    assert reply.status_code == 202, reply.text


async def _replay_exits_0(system: SslDeployment) -> None:
    done = await asyncio.to_thread(
        run_cli, system.tmp, "replay", "--workers", "1", database_url=system.database_url
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert done.stdout.strip() == "replay: every view equals its rebuild from event 0"


async def test_redeploy_and_verify_repair_put_the_certificate_back_without_an_order(
    deployment: SslDeployment,
) -> None:
    system = deployment
    domain, user = "again.example.com", "againuser"
    await _issued_service(system, 1, domain, user)
    assert system.pebble is not None
    orders = system.pebble.orders_created()
    assert orders == 2  # web and mail
    serial = await _serial_served(system, WEB_IP, domain)
    assert serial is not None

    for runs, action in enumerate(("redeploy", "verify-repair"), 2):
        await system.on_node("web1", "v-delete-web-domain-ssl", user, domain)
        listing = await system.on_node("web1", "v-list-web-domain-ssl", user, domain, "json")
        assert listing[domain]["CRT"] == ""  # gone from the node
        await _act(system, 1, action)

        async def served_again() -> bool:
            return await _serial_served(system, WEB_IP, domain) == serial

        await wait_until(
            served_again, 90, f"the certificate served again after {action}", system.logs
        )
        await system.wait_status([1], "active", 90)
        assert system.pebble.orders_created() == orders, action  # the recorded one, reused
        installs = system.install_runs("web1", domain)
        assert [run["exit_code"] for run in installs] == [0] * runs, (action, installs)
        assert len(system.install_runs("mail1", domain)) == 1  # still there: left alone

    for role in ("web", "mail"):
        topics = await system.certificate_topics(1, role)
        assert topics.count("OrderPlaced") == 1 and topics.count("Issued") == 1, topics
    await _replay_exits_0(system)


async def test_suspended_not_renewed_unsuspended_renewed_terminated_retired(
    deployment: SslDeployment,
) -> None:
    system = deployment
    domain, user = "cycle.example.com", "cycleuser"
    await _issued_service(system, 2, domain, user)
    assert system.pebble is not None
    orders = system.pebble.orders_created()
    first = await _serial_served(system, WEB_IP, domain)

    await _act(system, 2, "suspend")
    await system.wait_status([2], "suspended", 90)
    reply = await system.client.post("/v1/services/2/ssl/web/issue")
    assert reply.status_code == 202, reply.text

    async def looked_at_suspended() -> bool:
        events = await asyncio.to_thread(system.stored_certificate_events, 2, "web")
        asked = max(i for i, e in enumerate(events) if e["topic"] == "IssueRequested")
        return any(
            e["topic"] == "Checked" and e["data"].get("outcome") == "suspended"
            for e in events[asked:]
        )

    await wait_until(
        looked_at_suspended, 60, "the desk passing the suspended service by", system.logs
    )
    assert system.pebble.orders_created() == orders  # not renewed while suspended
    assert (await system.certificate_topics(2, "web")).count("OrderPlaced") == 1

    await _act(system, 2, "unsuspend")
    await system.wait_status([2], "active", 90)

    async def renewed() -> bool:
        web = (await system.ssl_state(2)).get("web", {})
        topics = await system.certificate_topics(2, "web")
        return web.get("state") == "issued" and topics.count("Installed") == 2

    await wait_until(renewed, 120, "the renewal asked for while suspended", system.logs)
    assert system.pebble.orders_created() == orders + 1
    renewed_serial = await _serial_served(system, WEB_IP, domain)
    assert renewed_serial is not None and renewed_serial != first

    await _act(system, 2, "terminate")
    await system.wait_status([2], "terminated", 120)

    async def retired() -> bool:
        states = await system.ssl_state(2)
        return [states.get(r, {}).get("state") for r in ("web", "mail")] == ["retired"] * 2

    await wait_until(retired, 60, "both certificates retired", system.logs)
    refused = await system.client.post("/v1/services/2/ssl/web/issue")
    assert refused.status_code == 409, refused.text
    for role in ("web", "mail"):
        topics = await system.certificate_topics(2, role)
        assert topics[-1] == "Retired", topics  # nothing recorded after it, no order
    assert system.pebble.orders_created() == orders + 1
    await _replay_exits_0(system)
