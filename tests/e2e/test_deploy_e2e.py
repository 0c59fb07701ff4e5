"""Orders to active services on simulated nodes, end to end on RabbitMQ and PostgreSQL:
every part a real process, every node a real SSH server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.deployment import (
    DNS1_IP,
    DNS2_IP,
    MAIL_IP,
    PROVIDER_DNS_USER,
    PROVIDER_DOMAIN,
    PROVIDER_MAIL_USER,
    UNI_IP,
    WEB_IP,
    Deployment,
    records_of,
)


@pytest.fixture
async def deployment(
    tmp_path: Path, amqp_url: str, exchange_name: str, fresh_postgres_url: str
) -> AsyncIterator[Deployment]:
    system = Deployment(tmp_path, amqp_url, exchange_name, fresh_postgres_url)
    try:
        await system.add_node("web1", ("web",), WEB_IP)
        await system.add_node("mail1", ("mail",), MAIL_IP)
        await system.add_node("dns1", ("dns",), DNS1_IP)
        await system.add_node("dns2", ("dns",), DNS2_IP)
        await system.add_node("uni1", ("web", "mail", "dns"), UNI_IP)
        await system.provision_provider("mail1", ["dns1", "dns2"])
        await system.start_all()
        # the unified node joins later: until then split and vanity cannot land on it
        await system.register_nodes(only=("web1", "mail1", "dns1", "dns2"))
        yield system
    finally:
        await system.close()


async def zone(system: Deployment, server_id: str, user: str, domain: str) -> list[tuple]:
    return records_of(await system.on_node(server_id, "v-list-dns-records", user, domain))


async def test_split_unified_and_vanity_orders_reach_active_with_the_planned_node_state(
    deployment: Deployment,
) -> None:
    system = deployment
    # unified needs a node holding all three roles; split and vanity must not land on it
    await system.order(1, "split", "shop.example.com", username="shopuser")
    await system.order(2, "vanity", f"blog.{PROVIDER_DOMAIN}", label="blog", username="bloguser")
    await system.wait_status([1, 2], "active", 90)

    # split: the web user and domain on web1, mail domain with DKIM on mail1 …
    web = await system.on_node("web1", "v-list-web-domains", "shopuser")
    assert "shop.example.com" in web
    mail = await system.on_node("mail1", "v-list-mail-domain", "shopuser", "shop.example.com")
    assert mail["shop.example.com"]["DKIM"] == "yes"
    dkim = await system.on_node(
        "mail1", "v-list-mail-domain-dkim-dns", "shopuser", "shop.example.com"
    )
    dkim_value = next(iter(dkim.values()))["TXT"].strip("'\"")
    # … and the zone with every record on BOTH DNS nodes, none twice
    for dns in ("dns1", "dns2"):
        records = await zone(system, dns, "shopuser", "shop.example.com")
        assert len(records) == len(set(records)), f"duplicate records on {dns}: {records}"
        wanted = {
            ("@", "A", WEB_IP),
            ("www", "A", WEB_IP),
            ("mail", "A", MAIL_IP),
            ("webmail", "A", MAIL_IP),
            ("@", "MX", "mail.shop.example.com."),
            ("@", "TXT", f"v=spf1 a mx ip4:{MAIL_IP} -all"),
            ("_dmarc", "TXT", "v=DMARC1; p=quarantine; pct=100"),
        }
        have = {
            (name, rtype, value.rstrip(".") + ("." if rtype == "MX" else ""))
            for name, rtype, value in records
        }
        assert wanted <= have, f"{dns} lacks {wanted - have}"
        dkim_records = [r for r in records if r[0] == "mail._domainkey"]
        assert len(dkim_records) == 1
        assert dkim_records[0][2].replace(" ", "").replace("\\", "") == dkim_value.replace(
            " ", ""
        ).replace("\\", "")

    # vanity: its own web domain, one mailbox on the shared user, one record in the provider zone
    assert f"blog.{PROVIDER_DOMAIN}" in await system.on_node(
        "web1", "v-list-web-domains", "bloguser"
    )
    boxes = await system.on_node(
        "mail1", "v-list-mail-accounts", PROVIDER_MAIL_USER, PROVIDER_DOMAIN
    )
    assert list(boxes) == ["blog"]
    assert boxes["blog"]["ALIAS"] == "hostwright.owner.2"  # its owner mark
    for dns in ("dns1", "dns2"):
        records = await zone(system, dns, PROVIDER_DNS_USER, PROVIDER_DOMAIN)
        assert [r for r in records if r[0] == "blog"] == [
            ("blog", "A", WEB_IP),
            ("blog", "TXT", "hostwright-owner=2"),  # its owner mark
        ]

    # unified: on the node with all three roles, registered now
    await system.register_nodes(only=("uni1",))
    await system.order(3, "unified", "all-in-one.example.org", username="uniuser")
    await system.wait_status([3], "active", 60)
    assert "all-in-one.example.org" in await system.on_node("uni1", "v-list-web-domains", "uniuser")
    uni_records = await zone(system, "uni1", "uniuser", "all-in-one.example.org")
    assert ("@", "A", UNI_IP) in uni_records
    assert len(uni_records) == len(set(uni_records))

    timeline = (await system.client.get("/v1/services/1/timeline")).json()["steps"]
    assert timeline and all(step["state"] == "succeeded" for step in timeline)
    assert {step["server_id"] for step in timeline} == {"web1", "mail1", "dns1", "dns2"}
