"""The SSL view's reads on SQLite and PostgreSQL: what the desk's tick should look at now
(never-checked first, then the longest waiting; retired and not-yet-due ones left out), the
custom certificates near their end, and a service's certificates web first."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from domain.certificate import Certificate
from domain.ssl_types import CertificateFacts, SslCadence
from ops.adapters.certificate_book import StoreCertificateBook
from ops.store.database import Database
from ops.store.event_store import EventStore
from ops.views.projection_runner import ProjectionRunner
from ops.views.ssl_queries import SqlSslQueries
from ops.views.view_store import ViewStore
from projections.catalogue import all_views

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
CADENCE = SslCadence(fast_attempts=0, recheck_interval_s=3600)


class Certificates:
    def __init__(self, store: EventStore) -> None:
        self.book = StoreCertificateBook(store)

    def seed(self, service_id: str, role: str = "web", *, shared: bool = False) -> uuid.UUID:
        cert = Certificate.seed(
            service_id=service_id,
            role=role,
            names=[f"s{service_id}.provider.test" if shared else f"{role}.s{service_id}.test"],
            install=None,
            dns_targets=[],
            http01=None,
            expected_addresses=[],
            cadence=CADENCE,
            now=T0,
            actor="deploy",
            shared=shared,
            provider_domain="provider.test" if shared else None,
        )
        self.book.update(cert.id, lambda _: cert, "busy")
        return cert.id

    def change(self, cert_id: uuid.UUID, decide: object) -> None:
        def on(cert: Certificate | None) -> Certificate | None:
            assert cert is not None
            decide(cert)  # type: ignore[operator]
            return cert

        self.book.update(cert_id, on, "busy")


def _facts(not_after: datetime) -> CertificateFacts:
    return CertificateFacts("ab", T0, not_after, ("x.test",), None, "CN=Q", None, "ff" * 8)


@pytest.fixture
def reads(database_url: str) -> Iterator[tuple[Certificates, SqlSslQueries, ProjectionRunner]]:
    store, db = EventStore(database_url), Database(database_url)
    views = all_views()
    try:
        yield (
            Certificates(store),
            SqlSslQueries(db),
            ProjectionRunner(store, ViewStore(db, views), views),
        )
    finally:
        db.close()
        store.close()


def test_due_lists_what_the_tick_should_look_at_now(
    reads: tuple[Certificates, SqlSslQueries, ProjectionRunner],
) -> None:
    certs, queries, runner = reads
    fresh = certs.seed("1")
    waited_long = certs.seed("2")
    certs.change(waited_long, lambda c: c.check(T0, "valid", CADENCE))  # next in 1 h
    waited_less = certs.seed("3")
    later = T0 + timedelta(minutes=20)
    certs.change(waited_less, lambda c: c.check(later, "valid", CADENCE))  # next in 1 h 20
    retired = certs.seed("4")
    certs.change(retired, lambda c: c.retire(T0))
    runner.catch_up()

    assert queries.due(T0 + timedelta(minutes=30), 10) == [fresh]
    now = T0 + timedelta(hours=2)
    assert queries.due(now, 10) == [fresh, waited_long, waited_less]
    assert queries.due(now, 2) == [fresh, waited_long]


def test_custom_expiring_and_a_services_certificates_web_first(
    reads: tuple[Certificates, SqlSslQueries, ProjectionRunner],
) -> None:
    certs, queries, runner = reads
    mail, web = certs.seed("1", "mail"), certs.seed("1", "web")
    soon, far = T0 + timedelta(days=20), T0 + timedelta(days=200)
    for cert_id, not_after in ((mail, soon), (web, far)):
        certs.change(
            cert_id,
            lambda c, end=not_after: c.upload_custom(
                T0, certificate="C", chain="", key_sealed="v2:k:s", facts=_facts(end), actor="a"
            ),
        )
    runner.catch_up()
    assert queries.custom_expiring(T0 + timedelta(days=30)) == [mail]
    assert queries.custom_expiring(T0 + timedelta(days=365)) == [mail, web]
    assert [row["role"] for row in queries.ssl("1")] == ["web", "mail"]
    assert queries.ssl("2") == []


def test_shared_sites_are_the_live_vanity_sites(
    reads: tuple[Certificates, SqlSslQueries, ProjectionRunner],
) -> None:
    certs, queries, runner = reads
    live = certs.seed("1", shared=True)
    gone = certs.seed("2", shared=True)
    certs.change(gone, lambda c: c.retire(T0))
    certs.seed("3")  # a certificate of its own
    runner.catch_up()
    assert queries.shared_sites() == [live]
