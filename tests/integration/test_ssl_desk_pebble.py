"""One real issuance through the SSL desk: Debian's pebble as the CA, its DNS a static answer
on 127.0.0.1 and HTTP-01 served by a tiny static responder the (fake) challenge spots write
into; the installer is faked. The certificate the desk records and installs chains to
pebble's root, for every name, and pebble created exactly one order."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509 import DNSName
from cryptography.x509.verification import PolicyBuilder, Store

from domain.certificate import Certificate
from domain.ssl_types import Http01Spot, InstallTarget, SslCadence
from handlers.acme_client import AcmeClient
from handlers.ssl_account import SslAccount
from handlers.ssl_desk import SslDesk
from handlers.ssl_issue import IssueParts
from handlers.step_fence import LocalFences
from ops.adapters.public_suffix import public_suffix_rules
from ops.adapters.sealing import PasswordSealer
from ops.devtools.pebble import Pebble, free_port
from tests.fakes.certificate_book import MemoryCertificateBook
from tests.fakes.clock import Clock
from tests.fakes.rate_guard import MemoryRateGuard
from tests.fakes.ssl_node import FakeChallenges, FakeDrivers, FakeInstaller, FakePreflight
from tests.support.budget import budget
from tests.support.http01_files import Http01Files
from tests.support.run_leftovers import RUN_MARK, this_run
from tests.support.services import ordered
from tests.support.static_dns import StaticDns

pytestmark = pytest.mark.slow

NAMES = ["shop.test", "www.shop.test"]
TARGET = InstallTarget("web1", "web", "shop", "shop.test")


@pytest.fixture
def pebble(tmp_path: Path) -> Iterator[tuple[Pebble, StaticDns, Http01Files]]:
    dns, http = StaticDns().start(), Http01Files()
    try:
        http.start()
        ca = Pebble(
            tmp_path / "pebble",
            http_port=http.port,
            tls_port=free_port(),
            dns_server=dns.address,
            env={RUN_MARK: str(this_run())},
        )
        with ca:
            yield ca, dns, http
        assert not ca.running
    finally:
        http.stop()
        dns.stop()


async def test_the_desk_issues_a_real_certificate_from_pebble(
    pebble: tuple[Pebble, StaticDns, Http01Files],
) -> None:
    ca, dns, http = pebble
    dns.a.update({name: "127.0.0.1" for name in NAMES})
    clock = Clock(datetime.now(UTC))
    service = ordered()
    book = MemoryCertificateBook({service.service_id: service})
    sealer = PasswordSealer("pebble-desk-test-secret-0123456789abcdef", purpose="private-key")
    installer = FakeInstaller()

    def connect(directory: str, key_pem: str, account_url: str | None) -> AcmeClient:
        return AcmeClient(
            directory, key_pem, account_url=account_url, ca_bundle=str(ca.ca_bundle_path)
        )

    account = SslAccount(book, sealer, connect, ca.directory_url, clock=clock)
    desk = SslDesk(
        book,
        IssueParts(
            guard=MemoryRateGuard(),
            preflight=FakePreflight(),
            challenges=FakeChallenges(http.files),  # what the responder serves
            drivers=FakeDrivers(),
            sealer=sealer,
            suffixes=public_suffix_rules(),
            wait_s=budget(30),
        ),
        account,
        installer,
        LocalFences(),
        SslCadence,
        clock,
    )
    cert = Certificate.seed(
        service_id=service.service_id,
        role="web",
        names=list(NAMES),
        install=TARGET,
        dns_targets=[],
        http01=Http01Spot("web1", "shop", "/home/shop/web/shop.test/public_html"),
        expected_addresses=["127.0.0.1"],
        cadence=SslCadence(),
        now=clock(),
        actor="deploy",
    )
    book.update(cert.id, lambda _: cert, "busy")
    try:
        assert await desk.check(cert.id) == "issued"
    finally:
        account.close()

    issued = book.certificate(cert.id)
    assert issued is not None and issued.current is not None
    leaf = x509.load_pem_x509_certificate(issued.current["certificate"].encode())
    chain = x509.load_pem_x509_certificates(issued.current["chain"].encode())
    roots = x509.load_pem_x509_certificates(ca.roots_path.read_bytes())
    for name in NAMES:
        verifier = PolicyBuilder().store(Store(roots)).build_server_verifier(DNSName(name))
        verifier.verify(leaf, chain)
    assert installer.installs == [(TARGET, issued.current_facts.serial)]  # type: ignore[union-attr]
    assert ca.orders_created() == 1
    assert {host.split(":")[0] for host, _ in http.fetched} == set(NAMES)
    assert issued.renew_at is not None and issued.ari is None  # pebble 2.4 has no ARI
