"""The provider's wildcard through the SSL desk: Debian's pebble issues ``*.provider.test``
over DNS-01 (its DNS a static answer on 127.0.0.1 serving the TXT records the fake challenge
spots put), and the desk installs it on every vanity site served it, one install per site:
two on one node and one on another get it; a suspended site is left alone; a terminated one's
certificate is retired, never installed on. A site seeded after the wildcard was issued gets
it at its first check; one that serves it already is not installed on again (a second
delivery, a repeated check); a renewal of the wildcard reaches every live site. Pebble
created one order per wildcard, never one per site. The installer is faked (it counts
installs by target and serial)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from domain.certificate import Certificate, certificate_uuid
from domain.service import Service
from domain.ssl_types import DnsTarget, Http01Spot, InstallTarget, SslCadence
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
from tests.support.run_leftovers import RUN_MARK, this_run
from tests.support.services import ordered
from tests.support.static_dns import StaticDns

pytestmark = pytest.mark.slow

PROVIDER = "provider.test"
CADENCE = SslCadence()


class SharedRig:
    """A desk over in-memory ports with pebble as its CA, the wildcard seeded, and vanity
    sites added by ``site``; it lists the shared certificates as the SSL view would."""

    def __init__(self, ca: Pebble, dns: StaticDns) -> None:
        self.ca = ca
        self.clock = Clock(datetime.now(UTC).replace(microsecond=0))
        self.book = MemoryCertificateBook()
        self.installer = FakeInstaller()
        self.challenges = FakeChallenges()
        self.challenges.txt = dns.txt  # what the static DNS answers
        sealer = PasswordSealer("shared-desk-test-secret-0123456789abcdef", purpose="private-key")
        self.account = SslAccount(
            self.book, sealer, self._connect, ca.directory_url, clock=self.clock
        )
        self.desk = SslDesk(
            self.book,
            IssueParts(
                guard=MemoryRateGuard(),
                preflight=FakePreflight(dns01=True),
                challenges=self.challenges,
                drivers=FakeDrivers(),
                sealer=sealer,
                suffixes=public_suffix_rules(),
                wait_s=budget(30),
            ),
            self.account,
            self.installer,
            LocalFences(),
            lambda: CADENCE,
            self.clock,
            listing=self,
        )
        wildcard = Certificate.seed(
            service_id=None,
            role="wildcard",
            names=[f"*.{PROVIDER}"],
            install=None,
            dns_targets=[DnsTarget("dns1", "provdns", PROVIDER)],
            http01=None,
            expected_addresses=[],
            cadence=CADENCE,
            now=self.clock(),
            actor="deploy",
            provider_domain=PROVIDER,
        )
        self.wildcard_id = wildcard.id
        self.book.update(wildcard.id, lambda _: wildcard, "busy")

    def _connect(self, directory: str, key_pem: str, account_url: str | None) -> AcmeClient:
        return AcmeClient(
            directory, key_pem, account_url=account_url, ca_bundle=str(self.ca.ca_bundle_path)
        )

    def site(self, service_id: int, label: str, server_id: str = "web1") -> InstallTarget:
        service: Service = ordered(service_id=service_id, domain=f"{label}.{PROVIDER}")
        self.book.services[service.service_id] = service
        name, user = f"{label}.{PROVIDER}", f"{label}user"
        target = InstallTarget(server_id, "web", user, name)
        cert = Certificate.seed(
            service_id=service.service_id,
            role="web",
            names=[name],
            install=target,
            dns_targets=[DnsTarget("dns1", "provdns", PROVIDER)],
            http01=Http01Spot(server_id, user, f"/home/{user}/web/{name}/public_html"),
            expected_addresses=["127.0.0.1"],
            cadence=CADENCE,
            now=self.clock(),
            actor="deploy",
            shared=True,
            provider_domain=PROVIDER,
        )
        self.book.update(cert.id, lambda _: cert, "busy")
        return target

    def shared_sites(self) -> list[uuid.UUID]:
        return [
            cert_id
            for cert_id, cert in self.book.certificates.items()
            if cert.mode == "shared" and not cert.retired
        ]

    def custom_expiring(self, before: datetime) -> list[uuid.UUID]:
        return []

    def cert(self, cert_id: uuid.UUID) -> Certificate:
        found = self.book.certificate(cert_id)
        assert found is not None
        return found

    def serial(self) -> str:
        facts = self.cert(self.wildcard_id).current_facts
        assert facts is not None
        return facts.serial


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[SharedRig]:
    dns = StaticDns().start()
    try:
        ca = Pebble(
            tmp_path / "pebble",
            http_port=free_port(),
            tls_port=free_port(),
            dns_server=dns.address,
            env={RUN_MARK: str(this_run())},
        )
        with ca:
            made = SharedRig(ca, dns)
            try:
                yield made
            finally:
                made.account.close()
    finally:
        dns.stop()


def _site_id(service_id: int) -> uuid.UUID:
    return certificate_uuid(str(service_id), "web")


async def test_one_wildcard_order_is_installed_on_every_live_vanity_site(rig: SharedRig) -> None:
    blog, shop = rig.site(1, "blog"), rig.site(2, "shop")
    other = rig.site(3, "other", server_id="web2")
    rig.site(4, "away")
    rig.site(5, "gone")
    rig.book.services["4"].mark_suspended(rig.clock())
    rig.book.services["5"].mark_terminated(rig.clock(), [])

    assert await rig.desk.check(_site_id(1)) == "waiting"  # no wildcard yet: still pending
    assert rig.cert(_site_id(1)).state == "pending" and rig.installer.installs == []

    assert await rig.desk.check(rig.wildcard_id) == "issued"
    serial = rig.serial()
    assert rig.ca.orders_created() == 1
    assert sorted(rig.installer.installs, key=str) == sorted(
        [(blog, serial), (shop, serial), (other, serial)], key=str
    )
    for service_id in (1, 2, 3):
        site = rig.cert(_site_id(service_id))
        target = site.install_target
        assert target is not None
        assert site.state == "issued" and site.installed == {target.server_id: serial}
        facts = site.current_facts
        assert facts is not None and facts.names == (f"*.{PROVIDER}",)
    assert rig.cert(_site_id(4)).state == "pending"  # suspended: left alone
    assert rig.cert(_site_id(5)).retired  # terminated: retired, never installed on
    assert rig.challenges.txt.get(f"_acme-challenge.{PROVIDER}") in (None, [])  # removed

    # a site seeded now gets it at its first check; a repeated check installs nothing more
    late = rig.site(6, "late")
    assert await rig.desk.check(_site_id(6)) == "installed"
    assert rig.installer.installs[-1] == (late, serial)
    installs = len(rig.installer.installs)
    rig.clock.advance(24 * 60 + 1)  # its next look: the node holds it already
    assert await rig.desk.check(_site_id(6)) == "shared"
    assert len(rig.installer.installs) == installs

    # a redeploy asks again: the installer probes, finds it served, and runs nothing
    def ask(cert: Certificate | None) -> Certificate | None:
        assert cert is not None
        cert.request_issue(rig.clock(), "deploy", CADENCE)
        return cert

    rig.book.update(_site_id(1), ask, "busy")
    assert await rig.desk.check(_site_id(1)) == "installed"
    assert len(rig.installer.installs) == installs and rig.installer.served[blog] == serial
    assert not rig.cert(_site_id(1)).issue_requested

    # back from suspension, the site's own check serves it
    rig.book.services["4"].mark_unsuspended(rig.clock())
    assert await rig.desk.check(_site_id(4)) == "installed"
    assert rig.ca.orders_created() == 1


async def test_a_sites_daily_look_asks_the_node_and_puts_back_a_lost_wildcard(
    rig: SharedRig,
) -> None:
    blog = rig.site(1, "blog")
    assert await rig.desk.check(rig.wildcard_id) == "issued"
    serial = rig.serial()
    assert rig.installer.installs == [(blog, serial)]
    rig.installer.served.clear()  # the node lost it (Hestia re-created the domain)
    rig.clock.advance(24 * 60 + 1)
    assert await rig.desk.check(_site_id(1)) == "shared"
    assert rig.installer.installs == [(blog, serial), (blog, serial)]
    assert rig.cert(_site_id(1)).installed == {blog.server_id: serial}
    next_look = rig.cert(_site_id(1)).next_check_at
    assert next_look is not None and next_look > rig.clock()  # looked at again in a day


async def test_a_renewed_wildcard_reaches_every_site_once(rig: SharedRig) -> None:
    targets = [rig.site(1, "blog"), rig.site(2, "shop", server_id="web2")]
    assert await rig.desk.check(rig.wildcard_id) == "issued"
    first = rig.serial()

    renew_at = rig.cert(rig.wildcard_id).renew_at
    assert renew_at is not None
    rig.clock.now = renew_at + timedelta(minutes=1)
    assert await rig.desk.check(rig.wildcard_id) == "issued"
    second = rig.serial()
    assert second != first and rig.ca.orders_created() == 2
    assert sorted(rig.installer.installs, key=str) == sorted(
        [(t, s) for t in targets for s in (first, second)], key=str
    )
    for service_id, target in zip((1, 2), targets, strict=True):
        assert rig.cert(_site_id(service_id)).installed == {target.server_id: second}

    # the sites' own looks find the renewal there already: nothing more installed
    rig.clock.advance(24 * 60 + 1)
    for service_id in (1, 2):
        assert await rig.desk.check(_site_id(service_id)) == "shared"
    assert len(rig.installer.installs) == 4
