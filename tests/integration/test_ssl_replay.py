"""``hostwright replay`` after SSL events, on SQLite and PostgreSQL: services with web and mail
certificates through every kind of Certificate event, the shared wildcard that names no
service and a vanity site served it, replay to views equal to the live ones — in one process
and sharded over workers, whose shards learn a certificate's service from its ``Seeded``
event. A changed SSL row is named."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from domain.certificate import FROZEN_BY_FAILURES, Certificate, wildcard_uuid
from domain.commands import parse_order
from domain.ssl_policy import AriWindow
from domain.ssl_types import CertificateFacts, Http01Spot, InstallTarget, SslCadence
from ops.adapters.certificate_book import StoreCertificateBook
from ops.cli import main
from ops.store.database import Database
from ops.store.event_store import EventStore
from ops.views.projection_runner import ProjectionRunner
from ops.views.replay import replay_and_compare
from ops.views.view_store import ViewStore
from projections.catalogue import all_views

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
CADENCE = SslCadence(fast_attempts=2, freeze_after=2, freeze_s=3600)
SEALED = "v2:k:sealed-key-text"


def _facts(serial: str, at: datetime) -> CertificateFacts:
    return CertificateFacts(
        serial=serial,
        not_before=at,
        not_after=at + timedelta(days=90),
        names=("a.test",),
        common_name=None,
        issuer="CN=Replay CA",
        ari_id=f"aki.{serial}",
        fingerprint=serial * 8,
    )


class History:
    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.book = StoreCertificateBook(store)
        self.now = T0

    def tick(self) -> datetime:
        self.now += timedelta(minutes=5)
        return self.now

    def order(self, service_id: int) -> None:
        body = {
            "service_id": service_id,
            "client_id": 7,
            "mode": "split",
            "domain": f"site{service_id}.test",
            "plan": {"package": "basic"},
        }
        self.store.order_service(parse_order(body, now=self.tick(), actor="whmcs"), None)

    def seed(self, service_id: str | None, role: str) -> Certificate:
        """``role`` ``shared``: a vanity site's web certificate, served the wildcard."""
        names = {"wildcard": ["*.provider.test"], "shared": [f"s{service_id}.provider.test"]}
        cert = Certificate.seed(
            service_id=service_id,
            role="web" if role == "shared" else role,
            names=names.get(role, [f"{role}.s{service_id}.test"]),
            install=None if service_id is None else InstallTarget("web1", "web", "u", "d.test"),
            dns_targets=[],
            http01=None if service_id is None else Http01Spot("web1", "u", "/home/u/public"),
            expected_addresses=["192.0.2.10"],
            cadence=CADENCE,
            now=self.tick(),
            actor="deploy",
            shared=role == "shared",
            provider_domain="provider.test" if role in ("wildcard", "shared") else None,
        )
        self.book.update(cert.id, lambda _: cert, "busy")
        return cert

    def act(self, cert: Certificate, *steps: str) -> None:
        for step in steps:
            if step == "later":  # past any freeze
                self.now += timedelta(hours=2)
                continue
            now = self.tick()

            def decide(
                held: Certificate | None, step: str = step, now: datetime = now
            ) -> Certificate | None:
                assert held is not None
                _STEPS[step](held, now)
                return held

            self.book.update(cert.id, decide, "busy")


def _order(cert: Certificate, now: datetime) -> None:
    cert.place_order(now, order_url=f"https://ca/o/{now:%H%M}", names=cert.names, key_sealed=SEALED)


def _issue(cert: Certificate, now: datetime) -> None:
    window = AriWindow(now + timedelta(days=60), now + timedelta(days=61))
    cert.issued(
        now,
        certificate="CERT",
        chain="",
        facts=_facts(f"{now:%H%M}", now),
        cadence=CADENCE,
        ari=window,
        explanation_url="https://ca/why",
        poll_at=now + timedelta(hours=6),
    )


_STEPS = {
    "preflight": lambda c, n: c.preflight_failed(
        n, "dns", "A 192.0.2.99 is not this server", CADENCE
    ),
    "order": _order,
    "fail": lambda c, n: c.issue_failed(n, reason="unauthorized", cadence=CADENCE),
    "issue_now": lambda c, n: c.request_issue(n, "whmcs", CADENCE),
    "issue_now_adopting": lambda c, n: c.request_issue(n, "whmcs", CADENCE, adopt=True),
    "issue": _issue,
    "install": lambda c, n: c.mark_installed(n, "web1", c.current_facts.serial),
    "check": lambda c, n: c.check(n, "valid", CADENCE),
    "rate_limited": lambda c, n: c.issue_failed(
        n, reason="rateLimited", cadence=CADENCE, retry_after=n + timedelta(hours=1)
    ),
    "abandon": lambda c, n: c.abandon_order(n, "expired"),
    "custom": lambda c, n: c.upload_custom(
        n, certificate="C", chain="", key_sealed=SEALED, facts=_facts("cc", n), actor="whmcs"
    ),
    "warn": lambda c, n: c.warn_expiry(n, 30),
    "uncustom": lambda c, n: c.remove_custom(n, "whmcs", CADENCE),
    "adopt": lambda c, n: c.adopt(n, _facts("ad", n), CADENCE),
    "freeze": lambda c, n: c.freeze(n, n + timedelta(hours=2), "test", FROZEN_BY_FAILURES),
    "retire": lambda c, n: c.retire(n),
    "wait": lambda c, n: c.check(n, "waiting", CADENCE, waiting=True),
    "serve": lambda c, n: c.wildcard_installed(
        n,
        server_id="web1",
        wildcard_id=wildcard_uuid("provider.test"),
        facts=replace(_facts(f"{n:%H%M}", n), names=("*.provider.test",)),
        cadence=CADENCE,
    ),
}


@pytest.fixture
def projected(database_url: str) -> Iterator[tuple[EventStore, Database]]:
    store, db = EventStore(database_url), Database(database_url)
    history = History(store)
    try:
        for service_id in (1001, 1002, 1003, 1004):
            history.order(service_id)
        web = history.seed("1001", "web")
        history.act(web, "preflight", "order", "fail", "order", "fail", "issue_now", "order")
        history.act(
            web, "issue", "install", "check", "rate_limited", "later", "check", "order", "abandon"
        )
        mail = history.seed("1001", "mail")
        history.act(mail, "custom", "warn", "uncustom", "issue_now_adopting", "adopt", "freeze")
        other = history.seed("1002", "web")
        history.act(other, "order", "issue", "install", "retire")
        history.seed("1003", "web")
        wildcard = history.seed(None, "wildcard")
        history.act(wildcard, "order", "issue", "check")
        vanity = history.seed("1004", "shared")
        history.act(vanity, "wait", "serve", "issue_now", "serve", "retire")
        views = all_views()
        ProjectionRunner(store, ViewStore(db, views), views).catch_up()
        yield store, db
    finally:
        db.close()
        store.close()


def test_ssl_events_replay_to_the_live_ssl_view_in_one_process_and_sharded(
    projected: tuple[EventStore, Database],
) -> None:
    store, db = projected
    with db.transaction() as cur:
        cur.execute("SELECT COUNT(*), COUNT(service_id) FROM hw_ssl_certificates")
        assert tuple(cur.fetchone()) == (6, 5)  # the wildcard's row names no service
    assert replay_and_compare(store, db, all_views()) is None
    assert replay_and_compare(store, db, all_views(), workers=2) is None


def test_hostwright_replay_exits_0_then_names_a_changed_ssl_row(
    projected: tuple[EventStore, Database],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store, db = projected
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOSTWRIGHT_DATABASE_URL", store.database_url)
    assert main(["replay"]) == 0
    assert "every view equals its rebuild" in capsys.readouterr().out
    with db.transaction() as cur:
        cur.execute("UPDATE hw_ssl_certificates SET state = 'issued' WHERE role = 'mail'")
    assert main(["replay"]) == 1
    assert "ssl_certificates" in capsys.readouterr().out
