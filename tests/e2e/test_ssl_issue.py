"""Automatic SSL end to end on RabbitMQ and PostgreSQL, every part a real process with
HOSTWRIGHT_SSL=auto: a split service ordered through the gateway goes active, then pebble
issues its web certificate and the web node serves it by SNI for the domain and ``www.``,
verified against pebble's root alone, and its mail certificate (DNS-01 on our DNS node),
which the mail node serves for ``mail.`` and ``webmail.``; a unified service gets both on
its one node; a service whose A record points elsewhere is never ordered and says why.
Nodes on 127.0.0.7x share one HTTP, HTTPS and DNS port; the DelegationDns is pebble's and
hostwright's only resolver (tests/support/ssl_deployment.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.support.deployment import wait_until
from tests.support.ssl_deployment import SslDeployment, split_nodes

pytestmark = pytest.mark.slow

WEB_IP, MAIL_IP, DNS_IP, ELSEWHERE_IP = "127.0.0.71", "127.0.0.72", "127.0.0.73", "127.0.0.74"
UNI_IP = "127.0.0.75"


@pytest.fixture
async def deployment(
    tmp_path: Path, amqp_url: str, exchange_name: str, fresh_postgres_url: str
) -> AsyncIterator[SslDeployment]:
    ips = (WEB_IP, MAIL_IP, DNS_IP)
    async with split_nodes(tmp_path, amqp_url, exchange_name, fresh_postgres_url, ips) as system:
        yield system


async def _state(system: SslDeployment, service_id: int, role: str) -> dict[str, object]:
    return (await system.ssl_state(service_id)).get(role, {})


async def test_a_split_service_goes_active_then_gets_its_web_certificate_from_pebble(
    deployment: SslDeployment,
) -> None:
    system = deployment
    domain = "shop.example.com"
    system.delegate(domain, ["dns1"])
    await system.order(1, "split", domain, username="shopuser")
    await system.wait_status([1], "active", 90)  # without waiting for the CA

    async def issued() -> bool:
        return (await _state(system, 1, "web")).get("state") == "issued"

    await wait_until(
        issued, 90, "the web certificate issued", lambda: f"{_last(system)}\n{system.logs()}"
    )
    web = await _state(system, 1, "web")
    assert web["names"] == [domain, f"www.{domain}"] and web["last_error"] is None
    await system.wait_served(WEB_IP, [domain, f"www.{domain}"], 30)
    not_after = datetime.fromisoformat(str(web["not_after"]))
    for name in (domain, f"www.{domain}"):
        presented = await system.presented(WEB_IP, name)  # raises unless it verifies
        assert presented.not_valid_after_utc == not_after  # the one the view shows

    async def mail_issued() -> bool:  # DNS-01: the mail node serves no HTTP-01 for its names
        return (await _state(system, 1, "mail")).get("state") == "issued"

    await wait_until(mail_issued, 90, "the mail certificate issued", system.logs)
    await system.wait_served(MAIL_IP, [f"mail.{domain}", f"webmail.{domain}"], 30)
    assert system.pebble is not None and system.pebble.orders_created() == 2


async def test_a_unified_service_gets_both_certificates_on_its_one_node(
    deployment: SslDeployment,
) -> None:
    system = deployment
    domain = "one.example.com"
    await system.add_node("uni1", ("web", "mail", "dns"), UNI_IP)
    await system.register_nodes(only=("uni1",))
    system.delegate(domain, ["uni1"])
    await system.order(3, "unified", domain, username="oneuser")
    await system.wait_status([3], "active", 90)

    async def both_issued() -> bool:
        states = await system.ssl_state(3)
        return [states.get(r, {}).get("state") for r in ("web", "mail")] == ["issued"] * 2

    await wait_until(both_issued, 90, "both certificates issued", system.logs)
    names = [domain, f"www.{domain}", f"mail.{domain}", f"webmail.{domain}"]
    await system.wait_served(UNI_IP, names, 30)


async def test_a_service_whose_a_record_points_elsewhere_is_never_ordered(
    deployment: SslDeployment,
) -> None:
    system = deployment
    domain = "away.example.com"
    # the customer's domain is served by someone else's DNS, whose A is not our web node
    await system.add_node("foreign", ("dns",), ELSEWHERE_IP)
    await system.on_node("foreign", "v-add-user", "other", "Other-pass-1", "o@example.org")
    await system.on_node("foreign", "v-add-dns-domain", "other", domain, ELSEWHERE_IP)
    system.delegate(domain, ["foreign"])
    await system.order(2, "split", domain, username="awayuser")
    await system.wait_status([2], "active", 90)

    async def refused() -> bool:
        return bool((await _state(system, 2, "web")).get("last_error"))

    await wait_until(refused, 60, "a readable pre-flight failure", lambda: system.logs())
    web = await _state(system, 2, "web")
    assert ELSEWHERE_IP in str(web["last_error"]), web
    assert web["state"] != "issued"
    assert system.pebble is not None and system.pebble.orders_created() == 0


def _last(system: SslDeployment) -> str:
    return f"http {system.http_port} https {system.https_port} dns {system.dns_port}"
