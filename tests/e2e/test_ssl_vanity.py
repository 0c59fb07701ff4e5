"""The vanity services' one wildcard end to end on RabbitMQ and PostgreSQL, every part a real
process with HOSTWRIGHT_SSL=auto: two vanity services ordered through the gateway go active;
pebble issues ONE certificate, ``*.<provider domain>``, over DNS-01 in the provider's zone on
our DNS node; the web node then presents that same certificate (one serial) for each vanity
name by SNI, verified against pebble's root alone; and ``GET …/ssl`` of each service says
``issued`` with the wildcard's names and dates. A third vanity service ordered afterwards is
served the same certificate, with no new order. Nodes on 127.0.0.8x share one HTTP, HTTPS
and DNS port; the DelegationDns is pebble's and hostwright's only resolver
(tests/support/ssl_deployment.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.support.deployment import PROVIDER_DOMAIN, wait_until
from tests.support.ssl_deployment import SslDeployment, split_nodes

pytestmark = pytest.mark.slow

WEB_IP, MAIL_IP, DNS_IP = "127.0.0.81", "127.0.0.82", "127.0.0.83"
LABELS = {11: "blog", 12: "shop"}


@pytest.fixture
async def deployment(
    tmp_path: Path, amqp_url: str, exchange_name: str, fresh_postgres_url: str
) -> AsyncIterator[SslDeployment]:
    ips = (WEB_IP, MAIL_IP, DNS_IP)
    async with split_nodes(tmp_path, amqp_url, exchange_name, fresh_postgres_url, ips) as system:
        await system.provision_provider("mail1", ["dns1"])  # the provider's zone: on our node
        system.delegate(PROVIDER_DOMAIN, ["dns1"])
        yield system


async def test_two_vanity_services_share_one_wildcard_from_pebble(
    deployment: SslDeployment,
) -> None:
    system = deployment
    names = {sid: f"{label}.{PROVIDER_DOMAIN}" for sid, label in LABELS.items()}
    for sid, label in LABELS.items():
        await system.order(sid, "vanity", names[sid], label=label, username=f"{label}user")
    await system.wait_status(list(LABELS), "active", 90)  # without waiting for the CA

    async def both_issued() -> bool:
        states = [(await system.ssl_state(sid)).get("web", {}) for sid in LABELS]
        return all(state.get("state") == "issued" for state in states)

    await wait_until(both_issued, 120, "both vanity sites issued", system.logs)
    await system.wait_served(WEB_IP, list(names.values()), 30)
    presented = {sid: await system.presented(WEB_IP, name) for sid, name in names.items()}
    serials = {cert.serial_number for cert in presented.values()}
    assert len(serials) == 1, serials  # one certificate for both
    wildcard = f"*.{PROVIDER_DOMAIN}"
    for sid in LABELS:
        web = (await system.ssl_state(sid))["web"]
        assert (web["mode"], web["names"], web["last_error"]) == ("shared", [wildcard], None)
        not_after = datetime.fromisoformat(str(web["not_after"]))
        assert presented[sid].not_valid_after_utc == not_after  # the one the view shows
    assert system.pebble is not None and system.pebble.orders_created() == 1

    # a vanity service ordered once the wildcard is issued is served it at once: no order
    late = f"late.{PROVIDER_DOMAIN}"
    await system.order(13, "vanity", late, label="late", username="lateuser")
    await system.wait_status([13], "active", 90)

    async def late_issued() -> bool:
        return (await system.ssl_state(13)).get("web", {}).get("state") == "issued"

    await wait_until(late_issued, 60, "the late vanity site issued", system.logs)
    await system.wait_served(WEB_IP, [late], 30)
    assert (await system.presented(WEB_IP, late)).serial_number in serials
    assert system.pebble.orders_created() == 1
