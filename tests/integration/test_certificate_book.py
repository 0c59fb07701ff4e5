"""The SSL adapters over a real event store (SQLite file and PostgreSQL): StoreCertificateBook
(load → decide → save, decided again on conflict) and StoreRateLedger (today's RateBucket
shards, exact across writers).

Races are made certain, not hoped for: each racer loads its state, then waits at a barrier
until the other has loaded too, so both decide on the same state and one save must lose.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from domain.acme_account import AcmeAccount
from domain.certificate import Certificate, certificate_uuid, wildcard_uuid
from domain.errors import Conflict
from domain.rate_bucket import RateBucket, RateBucketHead, bucket_uuid, head_uuid
from domain.ssl_policy import AriWindow
from domain.ssl_types import CertificateFacts, InstallTarget, OrderIntent, SslCadence
from handlers.ssl_ports import CertificateBook, RateGuard
from ops.adapters.certificate_book import StoreCertificateBook
from ops.adapters.rate_ledger import Shard, StoreRateLedger
from ops.adapters.sealing import SealError, private_key_sealer
from ops.bootstrap import System
from ops.settings import Settings
from ops.store.event_store import EventStore, aggregate_event_topics, event_topic

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
ACCOUNT = "https://acme.example/acct/1"
CADENCE = SslCadence()
CERT_ID = certificate_uuid("1001", "web")
KEY_PEM = "-----BEGIN PRIVATE KEY-----\nTESTKEYTESTKEY\n-----END PRIVATE KEY-----\n"
SEALER = private_key_sealer("a-secret-key-only-for-tests-0123456789")


@pytest.fixture
def store(database_url: str) -> Iterator[EventStore]:
    event_store = EventStore(database_url)
    yield event_store
    event_store.close()


def intent(name: str, *, replaces: str | None = None) -> OrderIntent:
    return OrderIntent(names=(name,), registered_domains=("example.com",), replaces=replaces)


def seed(book: StoreCertificateBook) -> Certificate | None:
    def decide(cert: Certificate | None) -> Certificate | None:
        if cert is not None:
            return None
        return Certificate.seed(
            service_id="1001",
            role="web",
            names=["shop.example.com", "www.shop.example.com"],
            install=InstallTarget("web1", "web", "shop", "shop.example.com"),
            dns_targets=[],
            http01=None,
            expected_addresses=["192.0.2.10"],
            cadence=CADENCE,
            now=T0,
            actor="deploy",
        )

    return book.update(CERT_ID, decide, busy="busy")


def facts() -> CertificateFacts:
    return CertificateFacts(
        serial="1f",
        not_before=T0,
        not_after=T0 + timedelta(days=90),
        names=("shop.example.com", "www.shop.example.com"),
        common_name=None,
        issuer="CN=Test",
        ari_id=None,
        fingerprint="ab" * 32,
    )


# --- the certificate book ---------------------------------------------------------------------


def test_a_certificate_is_saved_and_read_back_whole(store: EventStore, database_url: str) -> None:
    book = StoreCertificateBook(store)
    port: CertificateBook = book
    assert port.certificate(CERT_ID) is None
    assert seed(book) is not None
    assert seed(book) is None  # seeding again records nothing
    sealed = SEALER.seal(KEY_PEM)

    def order_and_issue(cert: Certificate | None) -> Certificate | None:
        assert cert is not None
        cert.place_order(T0, order_url="https://ca/o/1", names=cert.names, key_sealed=sealed)
        cert.issued(T0, certificate="CERT", chain="CHAIN", facts=facts(), cadence=CADENCE)
        cert.mark_installed(T0, "web1", "1f")
        return cert

    book.update(CERT_ID, order_and_issue, busy="busy")
    reopened = EventStore(database_url)
    try:
        again = StoreCertificateBook(reopened).certificate(CERT_ID)
    finally:
        reopened.close()
    assert again is not None
    assert again.current_facts == facts()
    assert again.current is not None and SEALER.unseal(again.current["key_sealed"]) == KEY_PEM
    assert again.installed == {"web1": "1f"} and again.state == "issued"
    assert again.renew_at is not None and again.next_check_at == T0 + timedelta(days=1)
    assert again.install_target == InstallTarget("web1", "web", "shop", "shop.example.com")
    # every event crosses the broker as a JSON envelope (facts as JSON, no sealed key)
    bodies = [json.loads(store.envelope(n)) for n in store.notifications(0, 100)]
    assert [body["topic"] for body in bodies] == [
        "Certificate.Seeded",
        "Certificate.OrderPlaced",
        "Certificate.Issued",
        "Certificate.RenewalScheduled",
        "Certificate.Installed",
    ]
    assert bodies[2]["data"]["facts"]["not_after"] == facts().not_after.isoformat()


def test_a_sealed_key_never_leaves_the_store_in_an_envelope(store: EventStore) -> None:
    book = StoreCertificateBook(store)
    seed(book)
    sealed = SEALER.seal(KEY_PEM)

    def order(cert: Certificate | None) -> Certificate | None:
        assert cert is not None
        cert.place_order(T0, order_url="https://ca/o/1", names=cert.names, key_sealed=sealed)
        return cert

    book.update(CERT_ID, order, busy="busy")
    book.update_account(
        "https://acme.example/dir",
        lambda account: account or AcmeAccount.create("https://acme.example/dir", sealed, T0),
    )
    envelopes = [store.envelope(n).decode() for n in store.notifications(0, 100)]
    assert len(envelopes) == 3
    assert all(sealed not in body and "key_sealed" not in body for body in envelopes)
    assert all("PRIVATE KEY" not in body for body in envelopes)


def test_two_writers_placing_an_order_leave_one_open_order(store: EventStore) -> None:
    seed(StoreCertificateBook(store))
    barrier = threading.Barrier(2)

    def place(url: str) -> str:
        first_load = [True]

        def decide(cert: Certificate | None) -> Certificate | None:
            assert cert is not None
            if first_load[0]:
                first_load[0] = False
                barrier.wait(timeout=30)  # both have loaded the certificate without an order
            cert.place_order(T0, order_url=url, names=cert.names, key_sealed="v2:k:x")
            return cert

        try:
            StoreCertificateBook(store).update(CERT_ID, decide, busy="busy")
        except Conflict as refused:
            return f"refused: {refused}"
        return "placed"

    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(place, ["https://ca/o/1", "https://ca/o/2"]))
    assert sorted(outcomes)[0] == "placed"
    assert "open order already" in sorted(outcomes)[1]
    topics = [event_topic(store.decode(n)) for n in store.notifications(0, 100)]
    assert topics.count("Certificate.OrderPlaced") == 1


def test_racing_creators_of_the_acme_account_share_one_key(store: EventStore) -> None:
    barrier = threading.Barrier(2)
    directory = "https://acme.example/dir"

    def create(key: str) -> str:
        first = [True]

        def decide(account: AcmeAccount | None) -> AcmeAccount | None:
            if first[0]:
                first[0] = False
                barrier.wait(timeout=30)
            return account or AcmeAccount.create(directory, key, T0)

        return StoreCertificateBook(store).update_account(directory, decide).key_sealed

    with ThreadPoolExecutor(2) as pool:
        keys = list(pool.map(create, ["v2:k:one", "v2:k:two"]))
    assert keys[0] == keys[1]
    topics = [event_topic(store.decode(n)) for n in store.notifications(0, 100)]
    assert topics == ["AcmeAccount.KeyCreated"]


def test_the_service_of_a_certificate_is_found_or_none(store: EventStore) -> None:
    assert StoreCertificateBook(store).service("no-such-service") is None


# --- the rate ledger --------------------------------------------------------------------------


def fill(ledger: StoreRateLedger, count: int, now: datetime = T0) -> None:
    for i in range(count):
        admission = ledger.admit(intent(f"s{i}.example.com"), ACCOUNT, now)
        assert admission.allowed, (i, admission.reason)


class RacingLedger(StoreRateLedger):
    """Waits at the barrier after its first load of the day's buckets, so two admissions
    decide on the same state."""

    def __init__(self, store: EventStore, barrier: threading.Barrier) -> None:
        super().__init__(store)
        self._barrier = barrier
        self._loads = 0

    def _shard(self, key: Any, now: datetime) -> Shard:
        shard = super()._shard(key, now)
        self._loads += 1
        if self._loads == 4:  # orders, domain, names, authz: all loaded once
            self._barrier.wait(timeout=30)
        return shard


def test_two_processes_racing_for_the_50th_slot_exactly_one_wins(store: EventStore) -> None:
    fill(StoreRateLedger(store), 49)
    barrier = threading.Barrier(2)

    def admit(name: str) -> bool:
        return RacingLedger(store, barrier).admit(intent(name), ACCOUNT, T0).allowed

    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(admit, ["racer-a.example.com", "racer-b.example.com"]))
    assert sorted(outcomes) == [False, True]
    refused = StoreRateLedger(store).admit(intent("late.example.com"), ACCOUNT, T0)
    assert not refused.allowed


MIDNIGHT = datetime(2026, 12, 2, tzinfo=UTC)
JUST_BEFORE, JUST_AFTER = MIDNIGHT - timedelta(milliseconds=1), MIDNIGHT + timedelta(milliseconds=1)
DOMAIN_KEY = "domain/example.com"


def shard(store: EventStore, key: str, when: datetime) -> RateBucket | None:
    return store.repository(RateBucket, "rate bucket").find(bucket_uuid(key, when.date()))


def test_two_processes_racing_across_midnight_exactly_one_wins(store: EventStore) -> None:
    """One admits at 23:59:59.999 on the day's shard, the other at 00:00:00.001 opens the
    next day's from it: both decided on the same 49 spends, and only one may have the 50th."""
    fill(StoreRateLedger(store), 49, MIDNIGHT - timedelta(hours=1))
    barrier = threading.Barrier(2)

    def admit(name_and_time: tuple[str, datetime]) -> bool:
        name, now = name_and_time
        return RacingLedger(store, barrier).admit(intent(name), ACCOUNT, now).allowed

    racers = [("racer-a.example.com", JUST_BEFORE), ("racer-b.example.com", JUST_AFTER)]
    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(admit, racers))
    assert sorted(outcomes) == [False, True]
    for when in (JUST_BEFORE, JUST_AFTER):
        assert not StoreRateLedger(store).admit(intent("late.example.com"), ACCOUNT, when).allowed
    yesterday = shard(store, DOMAIN_KEY, JUST_BEFORE)
    assert yesterday is not None
    if outcomes[1]:  # the new day spent: it carried the old day's shard forward
        assert yesterday.carried_to == MIDNIGHT.date().isoformat()
    # else a refusal records nothing, so the old day's shard may stay the live one


def test_a_clock_behind_midnight_spends_on_the_new_days_shard(store: EventStore) -> None:
    ledger = StoreRateLedger(store)
    fill(ledger, 49, MIDNIGHT - timedelta(hours=1))
    assert ledger.admit(intent("after.example.com"), ACCOUNT, JUST_AFTER).allowed  # the 50th
    behind = ledger.admit(intent("behind.example.com"), ACCOUNT, JUST_BEFORE)
    assert not behind.allowed and "registered domain" in (behind.reason or "")
    head = store.repository(RateBucketHead, "head").find(head_uuid(DOMAIN_KEY))
    assert head is not None and head.day == MIDNIGHT.date().isoformat()


def test_a_bucket_state_older_than_eight_days_is_carried(store: EventStore) -> None:
    """A 429 whose Retry-After is weeks away, and no use of the bucket in between."""
    ledger = StoreRateLedger(store)
    until = T0 + timedelta(days=20)
    ledger.rate_limited(intent("a.example.com"), ACCOUNT, until, T0)
    for days in (10, 19):
        refused = ledger.admit(intent("b.example.com"), ACCOUNT, T0 + timedelta(days=days))
        assert not refused.allowed and refused.retry_at == until, days
    assert ledger.admit(intent("b.example.com"), ACCOUNT, until).allowed


def test_the_51st_certificate_is_refused_and_tomorrow_carries_the_bucket(
    store: EventStore,
) -> None:
    ledger: RateGuard = StoreRateLedger(store)
    fill(StoreRateLedger(store), 50)
    refused = ledger.admit(intent("s50.example.com"), ACCOUNT, T0)
    assert not refused.allowed
    assert refused.retry_at == T0 + timedelta(minutes=201.6)
    assert refused.reason is not None and "registered domain" in refused.reason
    # an ARI renewal with replaces spends from no bucket
    assert ledger.admit(intent("s1.example.com", replaces="aki.serial"), ACCOUNT, T0).allowed
    # a day on, 1440 / 201.6 = 7 tokens are back, no more: yesterday's shard was carried
    tomorrow = T0 + timedelta(days=1)
    allowed = [
        ledger.admit(intent(f"t{i}.example.com"), ACCOUNT, tomorrow).allowed for i in range(8)
    ]
    assert allowed == [True] * 7 + [False]


def test_five_failed_authorizations_refuse_the_name_for_a_while(store: EventStore) -> None:
    ledger = StoreRateLedger(store)
    for minute in range(5):
        ledger.authorization_failed("shop.example.com", ACCOUNT, T0 + timedelta(minutes=minute))
    refused = ledger.admit(intent("shop.example.com"), ACCOUNT, T0 + timedelta(minutes=5))
    assert not refused.allowed and "failed authorizations" in (refused.reason or "")
    assert refused.retry_at == T0 + timedelta(minutes=12)
    assert ledger.admit(intent("other.example.com"), ACCOUNT, T0 + timedelta(minutes=5)).allowed
    assert ledger.admit(intent("shop.example.com"), ACCOUNT, T0 + timedelta(minutes=12)).allowed


def test_a_429_empties_the_orders_buckets_until_retry_after(store: EventStore) -> None:
    ledger = StoreRateLedger(store)
    until = T0 + timedelta(hours=5)
    ledger.rate_limited(intent("a.example.com"), ACCOUNT, until, T0)
    refused = ledger.admit(intent("b.example.com"), ACCOUNT, T0)
    assert not refused.allowed and refused.retry_at == until  # the registered domain's bucket
    other_domain = OrderIntent(("x.example.org",), ("example.org",))
    assert ledger.admit(other_domain, ACCOUNT, T0).allowed  # the account is not held back
    assert ledger.admit(intent("b.example.com"), ACCOUNT, until).allowed


def test_the_composition_root_builds_the_ssl_adapters(tmp_path: Path) -> None:
    system = System(
        Settings(
            database_url=f"sqlite:///{tmp_path / 'store.sqlite'}",
            secret_key="a-secret-key-only-for-tests-0123456789",
        )
    )
    try:
        book: CertificateBook = system.certificate_book()
        guard: RateGuard = system.rate_ledger()
        assert book.certificate(CERT_ID) is None
        assert guard.admit(intent("a.example.com"), ACCOUNT, T0).allowed
        keys = system.key_sealer()
        assert keys.purpose == "private-key"
        assert SEALER.unseal(keys.seal(KEY_PEM)) == KEY_PEM
        with pytest.raises(SealError):
            system.sealer().unseal(keys.seal(KEY_PEM))
    finally:
        asyncio.run(system.close())


def test_every_kind_of_certificate_event_reloads_to_the_same_state(store: EventStore) -> None:
    """A history with each event the aggregate has, saved and read back, folds to the state
    the live aggregate had: nothing is lost in the store's encoding (times, lists, nulls)."""
    book = StoreCertificateBook(store)
    seed(book)
    window = AriWindow(T0 + timedelta(days=55), T0 + timedelta(days=57))
    later = T0 + timedelta(minutes=5)

    def history(cert: Certificate | None) -> Certificate | None:
        assert cert is not None
        cert.preflight_failed(T0, "dns", "AAAA 2001:db8::1 is not this server", CADENCE)
        cert.check(T0, "waiting", CADENCE, reason="order pending")
        cert.place_order(T0, order_url="o/1", names=cert.names, key_sealed="v2:k:1")
        cert.issue_failed(
            T0,
            reason="rateLimited",
            cadence=CADENCE,
            problem="urn:ietf:params:acme:error:rateLimited",
            retry_after=later,
            authz_failed=["shop.example.com"],
        )
        cert.request_issue(later, "staff", CADENCE, adopt=False)
        cert.place_order(later, order_url="o/2", names=cert.names, key_sealed="v2:k:2")
        cert.abandon_order(later, "expired")
        cert.place_order(later, order_url="o/3", names=cert.names, key_sealed="v2:k:3")
        cert.reseal_key(later, "order", "v2:k:3b", "k")
        cert.issued(later, certificate="C", chain="I", facts=facts(), cadence=CADENCE, ari=window)
        cert.schedule_renewal(
            later, CADENCE, window, explanation_url="https://ca/why", poll_at=later
        )
        cert.mark_installed(later, "web1", "1f")
        cert.adopt(later, facts(), CADENCE)
        cert.upload_custom(
            later, certificate="X", chain="", key_sealed="v2:k:c", facts=facts(), actor="client"
        )
        cert.warn_expiry(later, 30)
        cert.remove_custom(later, "client", CADENCE)
        cert.retire(later)
        return cert

    live = book.update(CERT_ID, history, busy="busy")
    assert live is not None
    again = StoreCertificateBook(store).certificate(CERT_ID)
    assert again is not None
    assert vars(again) == vars(live)
    site = _vanity_site_served_the_wildcard(book)  # the one event only a vanity site has
    assert vars(StoreCertificateBook(store).certificate(site.id)) == vars(site)
    stored = {n.topic for n in store.notifications(0, 100)}
    assert set(aggregate_event_topics(Certificate, Certificate.Seeded)) <= stored


def _vanity_site_served_the_wildcard(book: StoreCertificateBook) -> Certificate:
    provider = "hosted.example"
    site_id = certificate_uuid("1002", "web")
    wildcard = replace(facts(), names=(f"*.{provider}",), serial="77")

    def decide(cert: Certificate | None) -> Certificate | None:
        assert cert is None
        cert = Certificate.seed(
            service_id="1002",
            role="web",
            names=[f"blog.{provider}"],
            install=InstallTarget("web1", "web", "blog", f"blog.{provider}"),
            dns_targets=[],
            http01=None,
            expected_addresses=["192.0.2.10"],
            cadence=CADENCE,
            now=T0,
            actor="deploy",
            shared=True,
            provider_domain=provider,
        )
        cert.wildcard_installed(
            T0,
            server_id="web1",
            wildcard_id=wildcard_uuid(provider),
            facts=wildcard,
            cadence=CADENCE,
        )
        return cert

    site = book.update(site_id, decide, busy="busy")
    assert site is not None
    return site
