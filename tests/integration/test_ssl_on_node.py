"""A real certificate, end to end on the node side: pebble issues it over HTTP-01 answered by a
file ``ChallengeSpots`` copied onto a simulated web node, ``CertificateInstaller`` installs it
with Hestia's commands, and an HTTPS handshake with SNI against the node presents it, verified
against pebble's root alone.

The node (web and DNS) is 127.0.0.51: pebble dials the address the name's A record gives, on
its one HTTP-01 port, which is the node's HTTP port. A DelegationDns on 127.0.0.1 is pebble's
resolver: it names the node authoritative for ``shop.test`` and asks it, so pebble validates
what the node's own zone says. Nothing leaves 127.0.0.0/8.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from domain.ssl_types import Http01Spot, InstallTarget
from handlers import x509_tools
from handlers.acme_client import AcmeClient
from handlers.hestia_driver import HestiaDriver
from handlers.ssl_challenges import ChallengeSpots
from handlers.ssl_install import CertificateInstaller
from handlers.step import StepLog
from handlers.step_fence import LocalFences
from ops.devtools.delegation_dns import DelegationDns
from ops.devtools.pebble import Pebble, free_port
from ops.devtools.simnode import SimNode, read_command_log
from tests.support.budget import budget
from tests.support.run_leftovers import RUN_MARK, this_run
from tests.support.simnode_driver import access_for, client_key_file

pytestmark = pytest.mark.slow

NODE_IP, USER, DOMAIN = "127.0.0.51", "alice", "shop.test"
NAMES = [DOMAIN, f"www.{DOMAIN}"]  # www is the template's CNAME to the apex


@dataclass
class World:
    node: SimNode
    driver: HestiaDriver
    pebble: Pebble
    acme: AcmeClient


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    node = SimNode(
        tmp_path / "node", ["web", "dns"], NODE_IP, http_port=free_port(NODE_IP), ip=NODE_IP
    )
    resolver: DelegationDns | None = None
    pebble: Pebble | None = None
    driver: HestiaDriver | None = None
    acme: AcmeClient | None = None
    try:
        await node.start()
        resolver = DelegationDns("127.0.0.1", 0, auth_port=int(node.ports()["dns"] or 0))
        await resolver.start()
        resolver.delegate(DOMAIN, [(f"ns1.{DOMAIN}", NODE_IP)])
        key_path, public = client_key_file(tmp_path / "keys")
        node.authorize(public)
        driver = HestiaDriver(access_for(node, key_path), command_timeout=10.0)
        for argv in (
            ["v-add-user", USER, "pw", f"{USER}@example.com"],
            ["v-add-web-domain", USER, DOMAIN],
            ["v-add-dns-domain", USER, DOMAIN, NODE_IP, f"ns1.{DOMAIN}", f"ns2.{DOMAIN}"],
        ):
            await driver.check(argv)
        pebble = Pebble(
            tmp_path / "pebble",
            http_port=int(node.ports()["http"] or 0),
            tls_port=free_port(),
            dns_server=resolver.address,
            env={RUN_MARK: str(this_run())},
        ).start()
        acme = AcmeClient(
            pebble.directory_url,
            x509_tools.new_key(),
            ca_bundle=str(pebble.ca_bundle_path),
            poll_s=0.05,
        )
        await acme.register(["ops@shop.test"])
        yield World(node, driver, pebble, acme)
    finally:
        if acme is not None:
            acme.close()
        if pebble is not None:
            pebble.stop()
        if driver is not None:
            await driver.close()
        if resolver is not None:
            await resolver.stop()
        await node.stop()


async def _issue(world: World, spot: Http01Spot, log: StepLog) -> tuple[str, str]:
    """An order for NAMES proven over HTTP-01 on the node: (full chain, its private key)."""
    spots, acme = ChallengeSpots(), world.acme
    order = await acme.new_order(NAMES)
    placed: list[str] = []
    try:
        for url in order.authorizations:
            challenge = (await acme.authorization(url)).challenge("http-01")
            assert challenge is not None
            body = acme.key_authorization(challenge.token)
            await spots.put_http01(world.driver, spot, challenge.token, body, log)
            placed.append(challenge.token)
            await acme.answer(challenge.url)
            done = await acme.wait_authorization(url, timeout_s=budget(20))
            assert done.status == "valid", done.error
    finally:
        for token in placed:
            await spots.remove_http01(world.driver, spot, token, log)
    ready = await acme.wait_order(order.url, timeout_s=budget(20))
    assert ready.status == "ready", ready.error
    key = x509_tools.new_key()
    await acme.finalize(ready, x509_tools.csr_der(key, NAMES))
    valid = await acme.wait_order(order.url, timeout_s=budget(20))
    assert valid.status == "valid" and valid.certificate, valid.error
    return await acme.download(valid.certificate), key


async def _presented(world: World, name: str) -> x509.Certificate:
    """The certificate the node presents for SNI ``name``, verified against pebble's root."""
    context = ssl.create_default_context(cafile=str(world.pebble.roots_path))
    _, writer = await asyncio.open_connection(
        NODE_IP, world.node.ports()["https"], ssl=context, server_hostname=name
    )
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
        await writer.wait_closed()
    return x509.load_der_x509_certificate(der)


async def test_pebble_issues_over_http01_on_the_node_and_the_node_serves_it(
    world: World,
) -> None:
    listed = await world.driver.list_json(["v-list-web-domain", USER, DOMAIN])
    spot = Http01Spot("web1", USER, listed[DOMAIN]["DOCUMENT_ROOT"])
    log = StepLog()
    fullchain, key = await _issue(world, spot, log)
    bundle = x509_tools.split_fullchain(fullchain)
    assert bundle.chain  # pebble's intermediate: Hestia's .ca

    installer = CertificateInstaller(LocalFences(), poll_s=0.02)
    target = InstallTarget("web1", "web", USER, DOMAIN)
    assert await installer.install(world.driver, target, bundle, key, log)
    issued = x509_tools.facts(bundle.certificate)
    for name in NAMES:
        presented = await _presented(world, name)
        assert format(presented.serial_number, "x") == issued.serial
    assert world.pebble.orders_created() == 1
    assert not await installer.install(world.driver, target, bundle, key, log)  # already there

    commands = [entry["argv"][0] for entry in read_command_log(world.node.data_dir)]
    assert commands.count("v-copy-fs-file") == len(NAMES)
    assert commands.count("v-delete-fs-file") == len(NAMES)
    assert commands.count("v-add-web-domain-ssl") == 1
    assert key not in "\n".join(log.lines)
