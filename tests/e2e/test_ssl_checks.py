"""Automatic SSL's checks end to end on RabbitMQ and PostgreSQL, every part a real process,
pebble the CA (tests/support/ssl_deployment.py), nodes on 127.0.0.9x:

- the pre-flight: a stray AAAA, a CAA record that forbids the CA, and a web node that does
  not serve the HTTP-01 challenge (its web server down; or another server on its address
  that knows no site) each end with a readable reason on ``GET …/ssl`` and no order at
  pebble. The customer's DNS is someone else's there (a node we do not register), so the
  names are proven by HTTP-01 and the self-check is the one that stands between them and
  the CA;
- adoption: a certificate from the customer's CA (ops/devtools/mini_ca.py, its root trusted
  through ``HOSTWRIGHT_TRUSTED_ROOTS``) already served on the nodes when the SSL desk first
  looks is taken as it is: issued, its ``not_after``, no order;
- custom certificates: bad ones refused with 422 and a reason, nothing recorded; a good one
  served by SNI, auto-SSL suspended for it; ``DELETE`` hands it back and pebble's
  certificate replaces it on the node; its private key shows up in no answer, event or log.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from ops.devtools.mini_ca import Leaf, MiniCa
from tests.support.deployment import wait_until
from tests.support.ssl_deployment import SslDeployment

pytestmark = pytest.mark.slow

WEB_IP, MAIL_IP, DNS_IP, FOREIGN_IP = "127.0.0.91", "127.0.0.92", "127.0.0.93", "127.0.0.94"
STRAY_IPV6 = "2001:db8::1"


class CustomersCa:
    """The customer's own CA: a root (trusted by the processes) and the intermediate that
    signs their certificates."""

    def __init__(self) -> None:
        self.root = MiniCa("customer root")
        self.intermediate = self.root.intermediate("customer intermediate")

    @property
    def chain(self) -> str:
        return self.intermediate.certificate_pem

    def leaf(self, names: list[str], **shape: Any) -> Leaf:
        return self.intermediate.leaf(names, **shape)


@pytest.fixture
def customers_ca() -> CustomersCa:
    return CustomersCa()


@pytest.fixture
async def system(
    tmp_path: Path,
    amqp_url: str,
    exchange_name: str,
    fresh_postgres_url: str,
    customers_ca: CustomersCa,
) -> AsyncIterator[SslDeployment]:
    """Nodes and pebble up, the customer's root trusted; hostwright not started yet."""
    deployment = SslDeployment(tmp_path, amqp_url, exchange_name, fresh_postgres_url)
    try:
        await deployment.add_node("web1", ("web",), WEB_IP)
        await deployment.add_node("mail1", ("mail",), MAIL_IP)
        await deployment.add_node("dns1", ("dns",), DNS_IP)
        await deployment.start_ssl()
        deployment.trust_roots(customers_ca.root.certificate_pem)
        yield deployment
    finally:
        await deployment.close()


async def _run(system: SslDeployment, *held: str) -> None:
    await system.start_all_but(*held)
    await system.register_nodes()


async def _web(system: SslDeployment, service_id: int) -> dict[str, Any]:
    return dict((await system.ssl_state(service_id)).get("web", {}))


def _orders(system: SslDeployment) -> int:
    assert system.pebble is not None
    return system.pebble.orders_created()


# --- the pre-flight ------------------------------------------------------------------


async def _elsewhere_dns(system: SslDeployment, domain: str, *records: tuple[str, ...]) -> None:
    """The customer's DNS at someone else's server: its A records our web node's address
    (Hestia's default zone: ``@`` A, ``www`` a CNAME of it), plus ``records``."""
    await system.add_node("foreign", ("dns",), FOREIGN_IP)
    await system.on_node("foreign", "v-add-user", "other", "Other-pass-1", "o@example.org")
    await system.on_node("foreign", "v-add-dns-domain", "other", domain, WEB_IP)
    for record in records:
        await system.on_node("foreign", "v-add-dns-record", "other", domain, *record)
    system.delegate(domain, ["foreign"])


async def _refused(system: SslDeployment, service_id: int) -> dict[str, Any]:
    """The web certificate once the pre-flight has said why not."""

    async def said_why() -> bool:
        return bool((await _web(system, service_id)).get("last_error"))

    await wait_until(said_why, 60, "a readable pre-flight failure", system.logs)
    return await _web(system, service_id)


async def _ordered(system: SslDeployment, service_id: int, domain: str, user: str) -> None:
    await system.order(service_id, "split", domain, username=user)
    await system.wait_status([service_id], "active", 90)


async def test_a_stray_aaaa_record_is_never_ordered(system: SslDeployment) -> None:
    await _run(system)
    domain = "six.example.com"
    await _elsewhere_dns(system, domain, ("@", "AAAA", STRAY_IPV6))
    await _ordered(system, 11, domain, "sixuser")
    web = await _refused(system, 11)
    assert f"AAAA {STRAY_IPV6} is not this server" in str(web["last_error"]), web
    assert web["state"] == "failed" and _orders(system) == 0


async def test_a_caa_record_that_forbids_the_ca_is_never_ordered(system: SslDeployment) -> None:
    await _run(system)
    domain = "caa.example.com"
    await _elsewhere_dns(system, domain, ("@", "CAA", '0 issue "otherca.example"'))
    await _ordered(system, 12, domain, "caauser")
    web = await _refused(system, 12)
    reason = str(web["last_error"])
    assert f"CAA at {domain}" in reason and "allows only otherca.example" in reason, web
    assert web["state"] == "failed" and _orders(system) == 0


@pytest.mark.parametrize("http", ["down", "a stranger's"])
async def test_a_node_that_does_not_serve_the_challenge_is_never_ordered(
    system: SslDeployment, http: str
) -> None:
    await _run(system)
    domain = "mute.example.com"
    await _elsewhere_dns(system, domain)
    node = system.nodes["web1"]
    if http == "down":  # nothing listens on the web node's HTTP port any more
        assert node.web is not None
        await node.web.stop()
    else:  # something else took it, and knows none of our sites
        await system.http_answered_by_stranger("web1")
    await _ordered(system, 13, domain, "muteuser")
    web = await _refused(system, 13)
    reason = str(web["last_error"])
    shown = f"http://{domain}/.well-known/acme-challenge/"
    where = f"{WEB_IP}:{system.http_port}"
    assert shown in reason and where in reason, web
    if http == "down":
        assert "could not be fetched" in reason, web
    else:
        assert "answered 404 Not Found" in reason, web
    assert web["state"] == "failed" and _orders(system) == 0


# --- adoption --------------------------------------------------------------------------


async def test_a_certificate_already_valid_on_the_node_is_adopted_without_an_order(
    system: SslDeployment, customers_ca: CustomersCa
) -> None:
    # the SSL handler starts late: the deploy waits at its SSL steps, its sites made, while
    # staff put the customer's certificates on them (a site moved here with its own)
    system.settings["HOSTWRIGHT_LEASE_S"] = "120"  # the held SSL tasks' leases do not run out
    await _run(system, "handler ssl")
    domain = "kept.example.com"
    system.delegate(domain, ["dns1"])
    await system.order(21, "split", domain, username="keptuser")

    async def waits_for_ssl() -> bool:
        tasks = (await system.staff.get("/v1/tasks", params={"service_id": "21"})).json()
        others = [t for t in tasks["tasks"] if t["role"] != "ssl"]
        return bool(others) and all(t["state"] == "succeeded" for t in others)

    await wait_until(waits_for_ssl, 90, "the deploy at its SSL steps", system.logs)
    web_names, mail_names = [domain, f"www.{domain}"], [f"mail.{domain}", f"webmail.{domain}"]
    served = {}
    for kind, server, ip, names in (
        ("web", "web1", WEB_IP, web_names),
        ("mail", "mail1", MAIL_IP, mail_names),
    ):
        leaf = customers_ca.leaf(names)
        pems = (leaf.certificate_pem, leaf.key_pem, customers_ca.chain)
        await system.serve_certificate(server, kind, "keptuser", domain, pems)
        served[kind] = await system.presented_under(ip, names[1], customers_ca.root.certificate_pem)
    system.start("handler ssl")
    await system.wait_status([21], "active", 90)

    async def both_settled() -> bool:
        states = await system.ssl_state(21)
        return [states.get(r, {}).get("state") for r in ("web", "mail")] == ["issued"] * 2

    await wait_until(both_settled, 60, "both certificates adopted", system.logs)
    states = await system.ssl_state(21)
    for role, certificate in served.items():
        assert states[role]["not_after"] is not None
        not_after = datetime.fromisoformat(str(states[role]["not_after"]))
        assert not_after == certificate.not_valid_after_utc, states[role]
        assert "customer intermediate" in str(states[role]["issuer"]), states[role]
        topics = [e["topic"].rsplit(".", 1)[-1] for e in await system.certificate_events(21, role)]
        # the first look took it: no pre-flight failure before, no order ever
        assert topics[:3] == ["Seeded", "Adopted", "RenewalScheduled"], topics
        assert "OrderPlaced" not in topics, topics
    assert _orders(system) == 0
    # still the customer's, untouched
    got = await system.presented_under(WEB_IP, domain, customers_ca.root.certificate_pem)
    assert got.serial_number == served["web"].serial_number


# --- custom certificates ---------------------------------------------------------------


def _upload(leaf: Leaf, chain: str) -> dict[str, str]:
    return {"certificate": leaf.certificate_pem, "private_key": leaf.key_pem, "chain": chain}


def _encrypted(key_pem: str) -> str:
    key = load_pem_private_key(key_pem.encode(), password=None)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"the customer's passphrase"),
    ).decode()


def _serial(leaf: Leaf) -> int:
    return x509.load_pem_x509_certificate(leaf.certificate_pem.encode()).serial_number


def _a_key_line(key_pem: str) -> str:
    """A line from the middle of a PEM key: what would give it away in any text."""
    lines = [ln for ln in key_pem.splitlines() if ln and not ln.startswith("-----")]
    return lines[len(lines) // 2]


def _since_last(events: list[dict[str, Any]], name: str) -> list[str]:
    """The names of the events from the last ``name`` on ([] without one)."""
    names = [e["topic"].rsplit(".", 1)[-1] for e in events]
    return names[len(names) - 1 - names[::-1].index(name) :] if name in names else []


async def test_a_custom_certificate_is_checked_served_kept_from_auto_ssl_and_handed_back(
    system: SslDeployment, customers_ca: CustomersCa
) -> None:
    await _run(system)
    domain = "own.example.com"
    names = [domain, f"www.{domain}"]
    system.delegate(domain, ["dns1"])
    await _ordered(system, 31, domain, "ownuser")

    async def both_issued() -> bool:  # ours first, from pebble
        states = await system.ssl_state(31)
        return [states.get(r, {}).get("state") for r in ("web", "mail")] == ["issued"] * 2

    await wait_until(both_issued, 90, "both certificates issued by pebble", system.logs)
    await system.wait_served(WEB_IP, names, 30)
    orders = _orders(system)

    # bad ones: 422 with the reason, nothing recorded
    path = "/v1/services/31/ssl/web/custom"
    good, stranger = customers_ca.leaf(names), customers_ca.leaf(names)
    now = datetime.now(UTC)
    expired = customers_ca.leaf(
        names, not_before=now - timedelta(days=100), not_after=now - timedelta(days=10)
    )
    bad = {
        "a key that is not the certificate's": (
            {**_upload(good, customers_ca.chain), "private_key": stranger.key_pem},
            "the private key does not belong to the certificate",
        ),
        "names not covered": (
            _upload(customers_ca.leaf([f"shop.{domain}"]), customers_ca.chain),
            f"does not cover {domain}, www.{domain}",
        ),
        "expired": (_upload(expired, customers_ca.chain), "the certificate expired on"),
        "an encrypted key": (
            {**_upload(good, customers_ca.chain), "private_key": _encrypted(good.key_pem)},
            "the private key is encrypted",
        ),
    }
    shown_before = await system.ssl_state(31)
    events_before = await system.certificate_events(31, "web")
    service_events_before = (await system.client.get("/v1/services/31/events")).json()
    for what, (body, reason) in bad.items():
        reply = await system.client.put(path, json=body)
        assert reply.status_code == 422, (what, reply.text)
        answer = reply.json()
        assert answer["result"] == "error" and reason in answer["error"], (what, answer)
    assert await system.ssl_state(31) == shown_before
    assert await system.certificate_events(31, "web") == events_before
    assert (await system.client.get("/v1/services/31/events")).json() == service_events_before

    # a good one: installed, served by SNI, auto-SSL suspended for it
    reply = await system.client.put(path, json=_upload(good, customers_ca.chain))
    assert reply.status_code == 202, reply.text

    async def custom_looked_at() -> bool:
        after = _since_last(await system.certificate_events(31, "web"), "CustomUploaded")
        return "Installed" in after and "Checked" in after

    await wait_until(custom_looked_at, 60, "the custom certificate installed", system.logs)
    root = customers_ca.root.certificate_pem
    for name in names:
        assert (await system.presented_under(WEB_IP, name, root)).serial_number == _serial(good)
    web = await _web(system, 31)
    assert web["mode"] == "custom" and web["state"] == "issued", web
    assert web["renew_at"] is None and "customer intermediate" in str(web["issuer"]), web
    not_after = x509.load_pem_x509_certificate(good.certificate_pem.encode()).not_valid_after_utc
    assert datetime.fromisoformat(str(web["not_after"])) == not_after, web
    reply = await system.client.post("/v1/services/31/ssl/web/issue")
    assert reply.status_code == 409 and "custom certificate" in reply.json()["error"], reply.text
    assert _orders(system) == orders  # neither the look after the upload nor the ask ordered

    # handed back: pebble's certificate replaces the customer's on the node
    reply = await system.client.delete(path)
    assert reply.status_code == 202, reply.text

    async def ours_again() -> bool:
        web = await _web(system, 31)
        return web.get("mode") == "auto" and web.get("state") == "issued"

    await wait_until(ours_again, 90, "auto-SSL's certificate again", system.logs)
    assert _orders(system) == orders + 1
    await system.wait_served(WEB_IP, names, 30)  # verified against pebble's root alone
    web = await _web(system, 31)
    for name in names:
        presented = await system.presented(WEB_IP, name)
        assert presented.not_valid_after_utc == datetime.fromisoformat(str(web["not_after"]))

    # no key of the customer's, taken or refused, in any answer, event or log
    texts = {
        "GET ssl": str(await system.ssl_state(31)),
        "the certificate's events": str(await system.certificate_events(31, "web")),
        "GET events": (await system.client.get("/v1/services/31/events")).text,
        "the logs": system.full_logs(),
    }
    assert f"PUT {path} 202" in texts["the logs"]  # the gateway's log is among them
    for key in (good.key_pem, stranger.key_pem):
        line = _a_key_line(key)
        assert [where for where, text in texts.items() if line in text] == []
