"""The SSL desk against the ACME double (a real HTTPS ACME server: ARI, ``replaces``,
``alreadyReplaced``, 429 with ``Retry-After``, failing challenges), with the node side and
the pre-flight faked and a clock the test moves. Each test counts the orders the CA got.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from domain.certificate import (
    DEPLOY_ACTOR,
    FROZEN_BY_FAILURES,
    FROZEN_BY_RATE_LIMIT,
    Certificate,
)
from domain.service import Service
from domain.ssl_types import (
    Http01Spot,
    InstallTarget,
    OrderIntent,
    PreflightVerdict,
    SslCadence,
)
from handlers import x509_tools
from handlers.acme_client import AcmeClient
from handlers.ssl_account import SslAccount
from handlers.ssl_desk import SslDesk, certificate_fence_key
from handlers.ssl_issue import IssueParts
from handlers.step_fence import LocalFences
from ops.adapters.public_suffix import public_suffix_rules
from ops.adapters.sealing import PasswordSealer
from ops.devtools.mini_ca import MiniCa
from tests.fakes.certificate_book import MemoryCertificateBook
from tests.fakes.clock import Clock
from tests.fakes.rate_guard import MemoryRateGuard
from tests.fakes.ssl_node import FakeChallenges, FakeDrivers, FakeInstaller, FakePreflight
from tests.fakes.step_fences import ScriptedFences
from tests.support.acme_double import AcmeDouble
from tests.support.services import ordered

pytestmark = pytest.mark.slow

NAMES = ["shop.test", "www.shop.test"]
TARGET = InstallTarget("web1", "web", "shop", "shop.test")
SECRET = "desk-test-secret-key-0123456789abcdef"


@pytest.fixture
def double() -> Iterator[AcmeDouble]:
    with AcmeDouble() as running:
        yield running


class Rig:
    """A desk over in-memory ports, the double as its CA, one seeded web certificate."""

    def __init__(
        self, double: AcmeDouble, cadence: SslCadence | None = None, profile: str | None = None
    ) -> None:
        self.double = double
        self.cadence = cadence = cadence or SslCadence()
        self.clock = Clock(datetime.now(UTC).replace(microsecond=0))
        self.service: Service = ordered()
        self.book = MemoryCertificateBook({self.service.service_id: self.service})
        self.guard = MemoryRateGuard()
        self.preflight = FakePreflight()
        self.installer = FakeInstaller()
        self.challenges = FakeChallenges()
        self.sealer = PasswordSealer(SECRET, purpose="private-key")
        self.account = SslAccount(
            self.book, self.sealer, self._connect, double.directory_url, clock=self.clock
        )
        self.fences = LocalFences()
        self.expiring: list[uuid.UUID] = []
        self.desk = SslDesk(
            self.book,
            IssueParts(
                guard=self.guard,
                preflight=self.preflight,
                challenges=self.challenges,
                drivers=FakeDrivers(),
                sealer=self.sealer,
                suffixes=public_suffix_rules(),
                profile=profile,
                wait_s=10.0,
            ),
            self.account,
            self.installer,
            self.fences,
            lambda: self.cadence,
            self.clock,
            listing=self,
        )
        cert = Certificate.seed(
            service_id=self.service.service_id,
            role="web",
            names=list(NAMES),
            install=TARGET,
            dns_targets=[],
            http01=Http01Spot("web1", "shop", "/home/shop/web/shop.test/public_html"),
            expected_addresses=["127.0.0.1"],
            cadence=cadence,
            now=self.clock(),
            actor="deploy",
        )
        self.cert_id = cert.id
        self.book.update(cert.id, lambda _: cert, "busy")

    def _connect(self, directory: str, key_pem: str, account_url: str | None) -> AcmeClient:
        return AcmeClient(
            directory,
            key_pem,
            account_url=account_url,
            ca_bundle=self.double.ca_bundle_path,
            poll_s=0.05,
        )

    def custom_expiring(self, before: datetime) -> list[uuid.UUID]:
        return list(self.expiring)

    def shared_sites(self) -> list[uuid.UUID]:
        return []  # no vanity site here (tests/integration/test_ssl_desk_shared.py)

    @property
    def cert(self) -> Certificate:
        found = self.book.certificate(self.cert_id)
        assert found is not None
        return found

    async def check(self) -> str:
        return await self.desk.check(self.cert_id)

    async def check_when_due(self) -> str:
        """Moves the clock to the certificate's next check (None: due now), then checks."""
        due = self.cert.next_check_at
        if due is not None:
            self.clock.now = max(self.clock.now, due)
        return await self.check()

    def since(self, mark: int) -> list[str]:
        return [topic.removeprefix("Certificate.") for topic in self.book.recorded[mark:]]

    def close(self) -> None:
        self.account.close()


@pytest.fixture
def rig(double: AcmeDouble) -> Iterator[Rig]:
    made = Rig(double)
    yield made
    made.close()


async def test_a_first_check_orders_before_it_proves_then_issues_installs_and_schedules(
    rig: Rig,
) -> None:
    assert await rig.check() == "issued"
    topics = rig.book.recorded
    assert topics.index("Certificate.OrderPlaced") < topics.index("Certificate.Issued")
    assert rig.since(topics.index("Certificate.Issued")) == [
        "Issued",
        "RenewalScheduled",
        "Installed",
    ]
    cert = rig.cert
    assert rig.double.orders == 1
    assert cert.state == "issued" and cert.order is None
    facts = cert.current_facts
    assert facts is not None and set(facts.names) == set(NAMES)
    assert rig.installer.installs == [(TARGET, facts.serial)]
    assert cert.installed == {"web1": facts.serial}
    assert rig.challenges.files == {}  # every challenge file removed again
    assert rig.challenges.placed == 2 + 2  # the self-check's and the CA's, one per name
    sealed = cert.current["key_sealed"]  # type: ignore[index]
    assert "PRIVATE KEY" not in sealed
    assert x509_tools.key_matches(cert.current["certificate"], rig.sealer.unseal(sealed))  # type: ignore[index]
    assert cert.ari is not None and cert.ari["start"] <= cert.renew_at <= cert.ari["end"]


async def test_a_renewal_inside_the_ari_window_is_ordered_with_replaces(rig: Rig) -> None:
    now = rig.clock()
    why = "https://ca.test/why-renew"
    rig.double.window = (now + timedelta(days=10), now + timedelta(days=12), why)
    assert await rig.check() == "issued"
    first = rig.cert.current_facts
    assert first is not None and first.ari_id is not None
    assert rig.cert.ari == {
        "start": now + timedelta(days=10),
        "end": now + timedelta(days=12),
        "explanation_url": why,
    }
    renew_at = rig.cert.renew_at
    assert renew_at is not None and now + timedelta(days=10) <= renew_at <= now + timedelta(days=12)

    rig.clock.now = renew_at + timedelta(minutes=1)
    assert await rig.check() == "issued"
    assert rig.double.orders == 2 and rig.double.orders_with_replaces == 1
    assert rig.double.replaced == [first.ari_id]
    assert rig.cert.current_facts.serial != first.serial  # type: ignore[union-attr]
    assert [serial for _, serial in rig.installer.installs][-1] == rig.cert.installed["web1"]
    assert [intent.replaces for intent in rig.guard.admitted] == [None, first.ari_id]


async def test_an_early_ari_window_renews_our_served_certificate_instead_of_adopting_it(
    rig: Rig,
) -> None:
    now = rig.clock()
    rig.double.window = (now + timedelta(days=10), now + timedelta(days=12), None)
    assert await rig.check() == "issued"
    first = rig.cert.current_facts
    assert first is not None and rig.cert.renew_at is not None
    rig.preflight.served = first  # the node serves ours, "valid" until its ⅓ point
    rig.clock.now = rig.cert.renew_at + timedelta(minutes=1)
    assert await rig.check() == "issued"
    assert rig.double.orders == 2 and rig.double.replaced == [first.ari_id]
    assert "Adopted" not in rig.since(0)
    assert rig.cert.current["key_sealed"]  # type: ignore[index]


async def test_the_ari_window_is_asked_again_at_its_poll_time_without_an_order(
    rig: Rig,
) -> None:
    assert await rig.check() == "issued"
    poll_at = rig.cert.ari_poll_at
    assert poll_at is not None and poll_at == rig.clock() + timedelta(hours=6)  # Retry-After
    assert rig.cert.next_check_at == poll_at
    moved = (rig.clock() + timedelta(days=5), rig.clock() + timedelta(days=6), None)
    rig.double.window = moved
    assert await rig.check_when_due() == "rescheduled"
    cert = rig.cert
    assert cert.ari is not None and (cert.ari["start"], cert.ari["end"]) == moved[:2]
    assert cert.renew_at is not None and moved[0] <= cert.renew_at <= moved[1]
    assert cert.next_check_at is not None and cert.next_check_at > rig.clock()
    assert rig.double.orders == 1


async def test_an_ari_window_missed_at_issue_or_without_retry_after_is_asked_every_6h(
    rig: Rig,
) -> None:
    rig.double.ari_answer = "missing"  # the first fetch fails
    assert await rig.check() == "issued"
    assert rig.cert.ari is None
    assert rig.cert.ari_poll_at == rig.clock() + timedelta(hours=6)
    rig.double.ari_answer = "no-retry-after"
    window = (rig.clock() + timedelta(days=5), rig.clock() + timedelta(days=6), None)
    rig.double.window = window
    assert await rig.check_when_due() == "rescheduled"
    cert = rig.cert
    assert cert.ari is not None and (cert.ari["start"], cert.ari["end"]) == window[:2]
    assert cert.ari_poll_at == rig.clock() + timedelta(hours=6)  # no Retry-After: 6 h
    assert rig.double.orders == 1


async def test_a_renewal_asked_for_before_the_ari_window_spends_as_a_new_order(rig: Rig) -> None:
    now = rig.clock()
    rig.double.window = (now + timedelta(days=10), now + timedelta(days=12), None)
    assert await rig.check() == "issued"
    rig.clock.now = now + timedelta(days=2)  # the window still days away

    def ask(cert: Certificate | None) -> Certificate | None:
        assert cert is not None
        cert.request_issue(rig.clock(), "admin", rig.cadence)
        return cert

    rig.book.update(rig.cert_id, ask, "busy")
    assert await rig.check() == "issued"
    assert rig.double.orders == 2 and rig.double.orders_with_replaces == 0
    assert [intent.replaces for intent in rig.guard.admitted] == [None, None]


async def test_already_replaced_is_ordered_once_more_without_replaces(rig: Rig) -> None:
    assert await rig.check() == "issued"
    first = rig.cert.current_facts
    assert first is not None
    rig.double.replaces_answer = "alreadyReplaced"
    rig.clock.now = rig.cert.renew_at + timedelta(minutes=1)  # type: ignore[operator]
    assert await rig.check() == "issued"
    assert rig.double.orders == 2 and rig.double.orders_with_replaces == 0
    # the retry without replaces is a new order like any other: the guard admitted it
    assert [intent.replaces for intent in rig.guard.admitted] == [None, first.ari_id, None]


async def test_without_ari_the_renewal_falls_at_a_third_of_the_lifetime_left(rig: Rig) -> None:
    rig.double.offers_ari = False
    assert await rig.check() == "issued"
    cert = rig.cert
    facts = cert.current_facts
    assert facts is not None and cert.ari is None and cert.renew_at is not None
    left = facts.not_after - cert.renew_at
    assert facts.lifetime / 3 <= left <= facts.lifetime / 2
    assert cert.next_check_at is not None and cert.next_check_at <= cert.renew_at

    rig.clock.now = cert.renew_at - timedelta(minutes=1)
    assert await rig.check_when_due() in ("valid", "not_due")
    assert rig.double.orders == 1
    rig.clock.now = cert.renew_at
    assert await rig.check() == "issued"
    assert rig.double.orders == 2 and rig.double.orders_with_replaces == 0


async def test_a_429_freezes_the_names_until_its_retry_after(rig: Rig) -> None:
    rig.double.rate_limit_next = 3600
    now = rig.clock()
    assert await rig.check() == "rate_limited"
    cert = rig.cert
    assert cert.state == "frozen" and cert.frozen_kind == FROZEN_BY_RATE_LIMIT
    assert cert.frozen_until == now + timedelta(seconds=3600)
    assert cert.order is None and rig.double.orders == 0
    assert "rateLimited" in (cert.last_error or "")
    # the guard knows: the same order is refused by the model, not sent to the CA
    intent = OrderIntent(tuple(NAMES), ("shop.test",))
    assert not rig.guard.admit(intent, "someone", now + timedelta(minutes=1)).allowed

    rig.clock.advance(30)
    assert await rig.check() == "frozen"
    assert rig.double.orders == 0
    rig.clock.now = now + timedelta(seconds=3600, minutes=1)
    assert await rig.check() == "issued"
    assert rig.double.orders == 1


async def test_a_429_at_finalize_freezes_and_tells_the_guard_from_when_it_came(
    rig: Rig,
) -> None:
    rig.double.rate_limit_finalize_next = 3600
    put = rig.challenges.put_http01

    async def slow_put(*args: Any) -> None:  # every file put takes ten minutes of the clock
        rig.clock.advance(10)
        await put(*args)

    rig.challenges.put_http01 = slow_put  # type: ignore[method-assign]
    started = rig.clock()
    assert await rig.check() == "rate_limited"
    answered = rig.clock()
    assert answered > started
    cert = rig.cert
    assert cert.state == "frozen" and cert.frozen_kind == FROZEN_BY_RATE_LIMIT
    assert cert.frozen_until == answered + timedelta(seconds=3600)
    assert rig.double.orders == 1
    # the guard was told: the same names are refused by the model until then
    intent = OrderIntent(tuple(NAMES), ("shop.test",))
    assert not rig.guard.admit(intent, "someone", answered + timedelta(minutes=59)).allowed


async def test_failures_in_a_row_freeze_the_name_for_the_cadences_hours(double: AcmeDouble) -> None:
    rig = Rig(double, SslCadence(freeze_after=3, freeze_s=2 * 3600))
    try:
        double.refuse_challenges = True
        outcomes = [await rig.check_when_due() for _ in range(3)]
        assert outcomes == ["failed"] * 3
        cert = rig.cert
        assert cert.state == "frozen" and cert.frozen_kind == FROZEN_BY_FAILURES
        assert cert.frozen_until == rig.clock() + timedelta(hours=2)
        assert "was not validated" in (cert.last_error or "")
        assert any(key.startswith("authz/") for key in rig.guard.tats)  # counted per name
        assert double.orders == 3

        rig.clock.advance(60)
        assert await rig.check() == "frozen"
        assert double.orders == 3
    finally:
        rig.close()


async def test_an_acme_profile_the_ca_does_not_offer_is_refused_before_any_order(
    double: AcmeDouble,
) -> None:
    """A typo in HOSTWRIGHT_ACME_PROFILE: no order (the CA would answer invalidProfile to
    every one), no rate token spent, and a reason that names what the CA offers."""
    rig = Rig(double, profile="tlsservr")
    try:
        mark = len(rig.book.recorded)
        assert await rig.check() == "refused"
        assert double.orders == 0 and rig.guard.admitted == []
        assert rig.since(mark)[-1] == "Checked" and "OrderPlaced" not in rig.since(0)
        event = rig.book.events[-1]
        assert event.reason == (
            "the CA offers no ACME profile 'tlsservr' (offers: classic, tlsserver)"
        )
    finally:
        rig.close()
    offered = Rig(double, profile="tlsserver")
    try:
        assert await offered.check() == "issued"
        assert double.orders == 1 and double.profiles_seen == ["tlsserver"]
    finally:
        offered.close()


def _ask(rig: Rig, actor: str) -> None:
    """An Issue asked for by ``actor`` (``deploy``: a redeploy's ssl step)."""

    def ask(cert: Certificate | None) -> Certificate | None:
        assert cert is not None
        cert.request_issue(rig.clock(), actor, rig.cadence)
        return cert

    rig.book.update(rig.cert_id, ask, "busy")


async def test_a_redeploy_puts_ours_back_on_the_node_while_a_rate_limit_freezes_it(
    rig: Rig,
) -> None:
    """The renewal is frozen by a 429; the customer redeploys and Hestia re-creates the
    domain without SSL: the certificate we hold is put back at once, no CA asked."""
    assert await rig.check() == "issued"
    serial = rig.cert.installed["web1"]
    rig.double.rate_limit_next = 3600
    _ask(rig, "staff")  # a renewal now
    assert await rig.check() == "rate_limited"
    until = rig.cert.frozen_until
    assert until is not None and rig.double.orders == 1
    rig.installer.served.clear()  # the domain re-created without SSL
    rig.clock.advance(5)
    _ask(rig, DEPLOY_ACTOR)
    assert await rig.check() == "frozen"
    cert = rig.cert
    assert rig.installer.installs[-1] == (TARGET, serial) and cert.installed == {"web1": serial}
    assert rig.double.orders == 1 and cert.frozen_until == until
    assert cert.next_check_at == until  # not picked at every tick till then
    mark = len(rig.book.recorded)
    assert await rig.check() == "frozen"  # looked at again: nothing to do, nothing recorded
    assert rig.since(mark) == [] and len(rig.installer.installs) == 2


async def test_a_redeploy_neither_lifts_a_failure_freeze_nor_orders_again(
    double: AcmeDouble,
) -> None:
    rig = Rig(double, SslCadence(freeze_after=2, freeze_s=2 * 3600))
    try:
        assert await rig.check() == "issued"
        double.refuse_challenges = True
        _ask(rig, "staff")
        assert [await rig.check_when_due() for _ in range(2)] == ["failed"] * 2
        cert = rig.cert
        assert cert.frozen_kind == FROZEN_BY_FAILURES and cert.failures == 2
        until = cert.frozen_until
        _ask(rig, DEPLOY_ACTOR)
        assert await rig.check() == "frozen"
        cert = rig.cert
        assert double.orders == 3 and cert.failures == 2 and cert.frozen_until == until
        assert len(rig.installer.installs) == 1  # the node holds it still: nothing put
    finally:
        rig.close()


async def test_the_51st_certificate_of_a_registered_domain_is_refused_before_the_ca(
    rig: Rig,
) -> None:
    now = rig.clock()
    for n in range(50):
        intent = OrderIntent((f"site{n}.shop.test",), ("shop.test",))
        assert rig.guard.admit(intent, "another-account", now).allowed
    assert await rig.check() == "refused"
    cert = rig.cert
    assert rig.double.orders == 0
    assert cert.state == "frozen" and cert.frozen_kind == FROZEN_BY_RATE_LIMIT
    assert cert.frozen_until is not None and cert.frozen_until > now
    assert "registered domain" in (cert.frozen_reason or "")
    assert "OrderPlaced" not in rig.since(0)


async def test_the_preflight_is_told_dns01_is_impossible_without_a_zone_to_prove_in(
    rig: Rig,
) -> None:
    """The method the pre-flight checks CAA for is the one the order uses: HTTP-01 when
    the certificate has no DNS target, whoever serves its names."""
    rig.preflight.verdict = PreflightVerdict(True, dns01=True, authorities=("127.0.0.1",))
    assert await rig.check() == "issued"
    assert rig.preflight.dns01_possible == [False]
    assert rig.challenges.txt == {} and rig.challenges.placed == 4  # proved by HTTP-01


async def test_a_failed_preflight_is_a_readable_reason_and_no_order(rig: Rig) -> None:
    reason = "AAAA 2001:db8::1 is not this server"
    rig.preflight.verdict = PreflightVerdict(False, "dns", reason)
    assert await rig.check() == "preflight_failed"
    cert = rig.cert
    assert cert.last_error == reason and cert.last_check == "dns" and cert.state == "failed"
    assert rig.double.orders == 0
    assert rig.preflight.calls == ["dns"]  # nothing dialled after DNS failed

    rig.preflight.verdict = PreflightVerdict(True, authorities=("127.0.0.1",))
    rig.preflight.http01_reason = "http://127.0.0.1/.well-known/acme-challenge/… answered 403"
    assert await rig.check_when_due() == "preflight_failed"
    assert rig.cert.last_check == "http01" and rig.double.orders == 0


async def test_a_valid_certificate_already_served_is_adopted_without_an_order(rig: Rig) -> None:
    leaf = MiniCa().leaf(NAMES)
    rig.preflight.served = x509_tools.facts(leaf.certificate_pem)
    assert await rig.check() == "adopted"
    cert = rig.cert
    assert cert.state == "issued" and cert.current_facts == rig.preflight.served
    assert rig.double.orders == 0 and rig.installer.installs == []
    assert rig.since(0)[-2:] == ["Adopted", "RenewalScheduled"]


async def test_a_domain_suspended_on_the_node_is_not_recorded_installed(rig: Rig) -> None:
    rig.installer.suspended.add(TARGET)
    assert await rig.check() == "issued_not_installed"
    cert = rig.cert
    assert cert.installed == {} and "Installed" not in rig.since(0)
    assert cert.last_check == "install" and "suspended" in (cert.last_error or "")

    rig.installer.suspended.clear()  # back on the node: the next look installs it
    assert await rig.check_when_due() == "valid"
    assert rig.cert.installed == {"web1": cert.current_facts.serial}  # type: ignore[union-attr]


async def test_a_check_stopped_after_its_order_resumes_that_order(rig: Rig) -> None:
    rig.challenges.fail_put = 3  # after the self-check's two, the CA's first file fails
    outcome = await rig.check()
    assert outcome == "error", rig.cert.last_error
    assert rig.cert.order is not None and rig.double.orders == 1
    assert rig.since(0)[-2:] == ["OrderPlaced", "Checked"]

    assert await rig.check_when_due() == "issued"
    assert rig.double.orders == 1  # the open order, never a second one
    assert rig.cert.state == "issued" and len(rig.installer.installs) == 1


async def test_a_held_fence_skips_the_check(rig: Rig) -> None:
    desk = SslDesk(
        rig.book,
        rig.desk._parts,
        rig.account,
        rig.installer,
        ScriptedFences(False),
        lambda: rig.cadence,
        rig.clock,
    )
    mark = len(rig.book.recorded)
    assert await desk.check(rig.cert_id) == "busy"
    assert rig.since(mark) == [] and rig.double.orders == 0


async def test_suspended_services_are_skipped_and_terminated_ones_retired(rig: Rig) -> None:
    rig.service.mark_suspended(rig.clock())
    mark = len(rig.book.recorded)
    assert await rig.check() == "suspended"
    assert rig.since(mark) == ["Checked"] and rig.double.orders == 0
    assert rig.cert.next_check_at is not None and rig.cert.next_check_at > rig.clock()
    assert await rig.check() == "not_due"  # not picked again at once
    rig.service.mark_terminated(rig.clock(), [])
    assert await rig.check() == "retired"
    assert rig.since(mark) == ["Checked", "Retired"] and rig.cert.retired
    assert await rig.check() == "retired" and rig.double.orders == 0


async def test_a_custom_certificate_is_installed_never_ordered_and_warned_once_per_threshold(
    rig: Rig,
) -> None:
    now = rig.clock()
    leaf = MiniCa().leaf(NAMES, not_after=now + timedelta(days=40))
    facts = x509_tools.facts(leaf.certificate_pem)

    def upload(cert: Certificate | None) -> Certificate | None:
        assert cert is not None
        cert.upload_custom(
            now,
            certificate=leaf.certificate_pem,
            chain="",
            key_sealed=rig.sealer.seal(leaf.key_pem),
            facts=facts,
            actor="whmcs",
        )
        return cert

    rig.book.update(rig.cert_id, upload, "busy")
    assert await rig.check() == "custom"
    assert rig.installer.installs == [(TARGET, facts.serial)]
    assert rig.double.orders == 0

    rig.expiring = [rig.cert_id]
    warned = []
    for days_left in (31, 29, 28, 13, 12, 6, 0.5, 0.25):
        rig.clock.now = facts.not_after - timedelta(days=days_left)
        warned += [days for _, days in await rig.desk.warn_expiring(rig.clock())]
    assert warned == [30, 14, 7, 1]
    assert rig.book.recorded.count("Certificate.ExpiryWarned") == 4


def _upload_custom(rig: Rig) -> str:
    """The customer's own certificate uploaded now (as the API does); its serial."""
    leaf = MiniCa().leaf(NAMES)
    facts = x509_tools.facts(leaf.certificate_pem)

    def upload(cert: Certificate | None) -> Certificate | None:
        assert cert is not None
        cert.upload_custom(
            rig.clock(),
            certificate=leaf.certificate_pem,
            chain="",
            key_sealed=rig.sealer.seal(leaf.key_pem),
            facts=facts,
            actor="whmcs",
        )
        return cert

    rig.book.update(rig.cert_id, upload, "busy")
    return facts.serial


async def test_a_custom_certificate_uploaded_while_the_ca_works_is_not_replaced_by_ours(
    rig: Rig,
) -> None:
    put = rig.challenges.put_http01
    custom: list[str] = []

    async def upload_at_the_cas_first_file(*args: Any) -> None:
        await put(*args)
        if rig.challenges.placed == 3 and not custom:  # after the self-check's two
            custom.append(_upload_custom(rig))

    rig.challenges.put_http01 = upload_at_the_cas_first_file  # type: ignore[method-assign]
    assert await rig.check() == "superseded"
    assert rig.double.orders == 1 and custom
    assert rig.installer.installs == []  # ours never put on the node
    cert = rig.cert
    assert cert.mode == "custom" and cert.due(rig.clock())
    assert await rig.check() == "custom"
    assert rig.installer.installs == [(TARGET, custom[0])]


async def test_a_custom_certificate_uploaded_as_ours_is_installed_is_installed_at_the_next_look(
    rig: Rig,
) -> None:
    install = rig.installer.install
    custom: list[str] = []

    async def upload_once_ours_is_on(*args: Any) -> Any:
        done = await install(*args)
        if not custom:
            custom.append(_upload_custom(rig))
        return done

    rig.installer.install = upload_once_ours_is_on  # type: ignore[method-assign]
    assert await rig.check() == "superseded"
    ours = rig.installer.installs[0][1]
    cert = rig.cert
    assert cert.mode == "custom" and cert.installed == {"web1": ours}  # what the node holds
    assert cert.due(rig.clock())  # not a day later
    assert await rig.check() == "custom"
    assert rig.installer.installs == [(TARGET, ours), (TARGET, custom[0])]


async def test_the_fence_is_per_certificate() -> None:
    one, other = uuid.uuid4(), uuid.uuid4()
    assert certificate_fence_key(one) == certificate_fence_key(one)
    assert certificate_fence_key(one) != certificate_fence_key(other)
