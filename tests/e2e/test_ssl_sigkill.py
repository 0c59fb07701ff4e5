"""The ssl handler SIGKILLed in the middle of an issue, then started again: the certificate is
ordered once at pebble and installed once on the node, and the node serves it.

Two moments, each held open by a simulated node's slow command so the kill lands inside it
(and each test checks, from the store, that it did):

- after ``OrderPlaced`` and before ``Issued``: the DNS-01 TXT record is being added on the DNS
  node (the domain is pointed at us only after the service is active, so the first command
  the ssl handler sends that node is the one after the order); the restarted handler resumes
  the open order, never places a second one;
- after ``Issued`` and before ``Installed``: Hestia's install is running on the web node; the
  restarted handler finds the certificate there and records it installed, never runs a second
  install (and never orders again).

Every part is a real process on RabbitMQ and PostgreSQL, pebble is the CA, the nodes are
simulated Hestia nodes over SSH on 127.0.1.x (tests/support/ssl_deployment.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ops.devtools.simnode.faults import Faults
from tests.support.deployment import wait_until
from tests.support.ssl_deployment import SslDeployment, split_nodes

pytestmark = pytest.mark.slow

WEB_IP, MAIL_IP, DNS_IP = "127.0.1.1", "127.0.1.2", "127.0.1.3"
# how long the command the kill lands in takes: under HOSTWRIGHT_COMMAND_TIMEOUT_S (8 s), so
# only the kill ends the handler's wait
SLOW_MS = 6_000


@pytest.fixture
async def deployment(
    tmp_path: Path, amqp_url: str, exchange_name: str, fresh_postgres_url: str
) -> AsyncIterator[SslDeployment]:
    ips = (WEB_IP, MAIL_IP, DNS_IP)
    async with split_nodes(tmp_path, amqp_url, exchange_name, fresh_postgres_url, ips) as system:
        yield system


async def _wait_topic(system: SslDeployment, service_id: int, role: str, topic: str) -> None:
    async def recorded() -> bool:
        return topic in await system.certificate_topics(service_id, role)

    await wait_until(recorded, 90, f"{role} certificate {topic}", system.logs)


async def _wait_issued_and_served(system: SslDeployment, service_id: int, domain: str) -> None:
    async def issued() -> bool:
        states = await system.ssl_state(service_id)
        return [states.get(r, {}).get("state") for r in ("web", "mail")] == ["issued"] * 2

    await wait_until(issued, 120, "both certificates issued", system.logs)
    for role in ("web", "mail"):
        await _wait_topic(system, service_id, role, "Installed")
    await system.wait_served(WEB_IP, [domain, f"www.{domain}"], 30)
    await system.wait_served(MAIL_IP, [f"mail.{domain}", f"webmail.{domain}"], 30)


async def _assert_once_each(system: SslDeployment, service_id: int, domain: str) -> None:
    """One order at pebble per certificate, one Issued and one Installed recorded, one
    install run on each node."""
    assert system.pebble is not None
    for role, node in (("web", "web1"), ("mail", "mail1")):
        topics = await system.certificate_topics(service_id, role)
        counts = {t: topics.count(t) for t in ("OrderPlaced", "Issued", "Installed")}
        assert counts == {"OrderPlaced": 1, "Issued": 1, "Installed": 1}, (role, topics)
        runs = system.install_runs(node, domain)
        assert [run["exit_code"] for run in runs] == [0], (role, runs)
    assert system.pebble.orders_created() == 2  # web and mail, each once


async def test_killed_after_the_order_the_restarted_handler_resumes_it(
    deployment: SslDeployment,
) -> None:
    system = deployment
    domain = "resume.example.com"
    await system.order(1, "split", domain, username="resumeuser")
    await system.wait_status([1], "active", 90)

    async def refused() -> bool:  # not pointed at us yet: the pre-flight says so, no order
        return bool((await system.ssl_state(1)).get("web", {}).get("last_error"))

    await wait_until(refused, 60, "the web pre-flight failing", system.logs)
    assert system.pebble is not None and system.pebble.orders_created() == 0
    # the order's first command on the DNS node (the TXT record) is slow: the kill lands there
    system.nodes["dns1"].set_faults(Faults(slow_commands={"v-add-dns-record": SLOW_MS}))
    system.delegate(domain, ["dns1"])
    reply = await system.client.post("/v1/services/1/ssl/web/issue")
    assert reply.status_code == 202, reply.text
    await _wait_topic(system, 1, "web", "OrderPlaced")

    system.crash("handler ssl")
    topics = await system.certificate_topics(1, "web")
    assert "OrderPlaced" in topics and "Issued" not in topics, topics  # killed mid-issue
    placed = system.pebble.orders_created()
    assert placed >= 1  # the web order (the mail one too, perhaps)
    system.nodes["dns1"].set_faults(Faults())
    await system.wait_node_idle("dns1", 60)  # the TXT record the killed handler asked for
    assert system.install_runs("web1", domain) == []
    system.start("handler ssl")

    await _wait_issued_and_served(system, 1, domain)
    await _assert_once_each(system, 1, domain)


async def test_killed_while_installing_the_restarted_handler_installs_nothing_twice(
    deployment: SslDeployment,
) -> None:
    system = deployment
    domain = "install.example.com"
    system.nodes["web1"].set_faults(Faults(slow_commands={"v-add-web-domain-ssl": SLOW_MS}))
    system.delegate(domain, ["dns1"])
    await system.order(2, "split", domain, username="installuser")
    await system.wait_status([2], "active", 90)
    await _wait_topic(system, 2, "web", "OrderPlaced")

    async def installing() -> bool:  # its files are up and Hestia's install of them runs
        node = system.nodes["web1"]
        uploaded = any(
            ".hostwright" in p.parts for p in node.executor.fs_root.rglob(domain + ".key")
        )
        return uploaded and node.executor.journal.running > 0

    await wait_until(installing, 60, "the install running on web1", system.logs)
    system.crash("handler ssl")
    topics = await system.certificate_topics(2, "web")
    assert "OrderPlaced" in topics and "Installed" not in topics, topics  # killed mid-install
    assert system.install_runs("web1", domain) == []  # not finished yet
    system.nodes["web1"].set_faults(Faults())
    await system.wait_node_idle("web1", 60)  # the install the killed handler started ends
    system.start("handler ssl")

    await _wait_issued_and_served(system, 2, domain)
    await _assert_once_each(system, 2, domain)
