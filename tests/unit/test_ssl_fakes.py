"""The SSL ports' in-memory fakes (tests/fakes) keep the contract the store-backed adapters
keep (tests/integration/test_certificate_book.py), so tests built on them cannot drift: a
conflict makes the decision be taken again, the 51st certificate is refused, ARI is exempt."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.acme_account import AcmeAccount
from domain.certificate import Certificate, certificate_uuid
from domain.errors import Conflict
from domain.ssl_types import OrderIntent, SslCadence
from tests.fakes.certificate_book import MemoryCertificateBook
from tests.fakes.rate_guard import MemoryRateGuard

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
CERT_ID = certificate_uuid("1001", "web")
ACCOUNT = "https://acme.example/acct/1"


def seed(cert: Certificate | None) -> Certificate | None:
    if cert is not None:
        return None
    return Certificate.seed(
        service_id="1001",
        role="web",
        names=["a.example.com"],
        install=None,
        dns_targets=[],
        http01=None,
        expected_addresses=[],
        cadence=SslCadence(),
        now=T0,
        actor="deploy",
    )


def test_the_memory_book_decides_again_after_a_lost_save() -> None:
    book = MemoryCertificateBook()
    book.update(CERT_ID, seed, "busy")
    decisions = []

    def order(cert: Certificate | None) -> Certificate | None:
        assert cert is not None
        decisions.append(cert.version)
        cert.place_order(T0, order_url="o", names=cert.names, key_sealed="v2:k:x")
        return cert

    book.conflicts = 1
    book.update(CERT_ID, order, "busy")
    assert decisions == [1, 1]
    assert book.recorded == ["Certificate.Seeded", "Certificate.OrderPlaced"]
    with pytest.raises(Conflict, match="open order"):
        book.update(CERT_ID, order, "busy")
    made = book.update_account("d", lambda a: a or AcmeAccount.create("d", "v2:k:y", T0))
    assert book.update_account("d", lambda a: None).key_sealed == made.key_sealed


def test_the_memory_guard_refuses_the_51st_and_exempts_ari() -> None:
    guard = MemoryRateGuard()
    for i in range(50):
        assert guard.admit(
            OrderIntent((f"s{i}.example.com",), ("example.com",)), ACCOUNT, T0
        ).allowed
    refused = guard.admit(OrderIntent(("x.example.com",), ("example.com",)), ACCOUNT, T0)
    assert not refused.allowed and refused.retry_at == T0 + timedelta(minutes=201.6)
    ari = OrderIntent(("s1.example.com",), ("example.com",), replaces="aki.serial")
    assert guard.admit(ari, ACCOUNT, T0).allowed
    assert (len(guard.admitted), len(guard.refused)) == (51, 1)
