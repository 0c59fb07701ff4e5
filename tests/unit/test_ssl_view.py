"""The SSL view folds a certificate's events into the row the API shows, and after every event
that row says what the Certificate aggregate itself says (state, mode, freeze, next check,
last error, the current certificate, renewal, installs, warnings): the view keeps no rule of
its own that could drift from the aggregate's. Every event kind is exercised."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from domain.certificate import FROZEN_BY_RATE_LIMIT, Certificate, wildcard_uuid
from domain.ssl_policy import AriWindow
from domain.ssl_types import CertificateFacts, Http01Spot, InstallTarget, SslCadence
from projections.catalogue import SERVICE_NAMING
from projections.ssl_view import FOLDS, SSL_CERTIFICATES, SslView
from projections.view import Recorded, iso_time
from tests.fakes.rows import MemoryRows

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
CADENCE = SslCadence(fast_attempts=3, freeze_after=3, freeze_s=6 * 3600)
SEALED = "v2:abc:sealed-order-key"


def facts(serial: str = "1f", at: datetime = T0) -> CertificateFacts:
    return CertificateFacts(
        serial=serial,
        not_before=at,
        not_after=at + timedelta(days=90),
        names=("shop.example", "www.shop.example"),
        common_name=None,
        issuer="CN=Test Intermediate",
        ari_id="a.b",
        fingerprint="ab" * 32,
    )


def seeded(**changes: Any) -> Certificate:
    fields: dict[str, Any] = {
        "service_id": "1001",
        "role": "web",
        "names": ["shop.example", "www.shop.example"],
        "install": InstallTarget("web1", "web", "shop", "shop.example"),
        "dns_targets": [],
        "http01": Http01Spot("web1", "shop", "/home/shop/web/shop.example/public_html"),
        "expected_addresses": ["192.0.2.10"],
        "cadence": CADENCE,
        "now": T0,
        "actor": "deploy",
        **changes,
    }
    return Certificate.seed(**fields)


class Walk:
    def __init__(self, cert: Certificate) -> None:
        self.cert = cert
        self.view = SslView()
        self.rows = MemoryRows([self.view])
        self.position = 0
        self.kinds: set[type[Any]] = set()
        self.fold()

    def fold(self) -> None:
        for event in self.cert.collect_events():
            self.position += 1
            self.kinds.add(type(event))
            self.view.apply(Recorded(self.position, event), self.rows)
        self.same()

    @property
    def row(self) -> dict[str, Any]:
        found = self.rows.get(SSL_CERTIFICATES.name, (str(self.cert.id),))
        assert found is not None
        return found

    def same(self) -> None:
        cert, row = self.cert, self.row
        current = cert.current_facts
        expected = {
            "service_id": cert.service_id,
            "role": cert.role,
            "mode": cert.mode,
            "state": cert.state,
            # a vanity site shows what it is served: the wildcard's names
            "names": list(current.names) if cert.mode == "shared" and current else cert.names,
            "issuer": None if current is None else current.issuer,
            "serial": None if current is None else current.serial,
            "not_after": None if current is None else iso_time(current.not_after),
            "frozen_until": _text(cert.frozen_until),
            "frozen_kind": cert.frozen_kind,
            "next_check_at": _text(cert.next_check_at),
            "last_error": cert.last_error,
            "renew_at": _text(cert.renew_at) if cert.mode == "auto" else row["renew_at"],
            "installed": cert.installed,
            "warned": cert.warned,
        }
        assert {name: row[name] for name in expected} == expected


def _text(moment: datetime | None) -> str | None:
    return None if moment is None else iso_time(moment)


def test_every_event_folds_to_what_the_aggregate_says() -> None:
    walk = Walk(seeded())
    cert = walk.cert
    assert walk.row["state"] == "pending" and walk.row["next_check_at"] is None
    cert.preflight_failed(T0, "dns", "AAAA 2001:db8::1 is not this server", CADENCE)
    walk.fold()
    now = T0
    for n in range(3):  # three failures in a row: frozen for the cadence's hours
        now += timedelta(minutes=1)
        cert.place_order(now, order_url=f"https://ca/o/{n}", names=cert.names, key_sealed=SEALED)
        walk.fold()
        cert.issue_failed(now, reason="unauthorized", cadence=CADENCE)
        walk.fold()
    assert walk.row["state"] == "frozen"
    cert.request_issue(now, "whmcs", CADENCE)  # lifts a failure freeze
    walk.fold()
    assert walk.row["state"] == "failed" and walk.row["frozen_until"] is None
    cert.place_order(now, order_url="https://ca/o/9", names=cert.names, key_sealed=SEALED)
    walk.fold()
    cert.abandon_order(now, "expired at the CA")
    walk.fold()
    cert.place_order(now, order_url="https://ca/o/10", names=cert.names, key_sealed=SEALED)
    walk.fold()
    window = AriWindow(now + timedelta(days=60), now + timedelta(days=62))
    cert.issued(
        now,
        certificate="CERT",
        chain="CHAIN",
        facts=facts(at=now),
        cadence=CADENCE,
        ari=window,
        explanation_url="https://ca/why",
        poll_at=now + timedelta(hours=6),
    )
    walk.fold()
    assert walk.row["ari"] == {
        "start": iso_time(window.start),
        "end": iso_time(window.end),
        "explanation_url": "https://ca/why",
    }
    assert walk.row["renewal_source"] == "ari"
    cert.mark_installed(now, "web1", "1f")
    walk.fold()
    now += timedelta(days=1)
    cert.check(now, "valid", CADENCE)
    walk.fold()
    cert.schedule_renewal(now, CADENCE, None)
    walk.fold()
    cert.issue_failed(
        now, reason="rateLimited", cadence=CADENCE, retry_after=now + timedelta(hours=1)
    )
    walk.fold()
    assert walk.row["frozen_kind"] == FROZEN_BY_RATE_LIMIT and walk.row["state"] == "frozen"
    now += timedelta(hours=2)
    cert.check(now, "valid", CADENCE)  # the freeze is over: thawed, as the aggregate does
    walk.fold()
    cert.upload_custom(
        now,
        certificate="CUSTOM",
        chain="",
        key_sealed=SEALED,
        facts=facts("2e", at=now),
        actor="whmcs",
    )
    walk.fold()
    cert.warn_expiry(now + timedelta(days=61), 30)
    walk.fold()
    cert.remove_custom(now, "whmcs", CADENCE)
    walk.fold()
    cert.request_issue(now, "whmcs", CADENCE, adopt=True)
    walk.fold()
    cert.adopt(now, facts("3d", at=now), CADENCE)
    walk.fold()
    cert.reseal_key(now, "current", "v2:new:sealed", "new")  # not folded: nothing shown changes
    walk.fold()
    cert.retire(now)
    walk.fold()
    assert walk.row["state"] == "retired" and walk.row["next_check_at"] is None
    # every kind but a vanity site's own (walked below)
    assert set(FOLDS) - {Certificate.WildcardInstalled} == walk.kinds - {Certificate.KeyResealed}


def test_a_reasoned_check_shows_its_reason() -> None:
    """The aggregate keeps ``last_error`` for failures; the view also shows why a check
    changed nothing (the CA away, a check stopped half-way)."""
    walk = Walk(seeded())
    walk.cert.check(T0, "ca_unavailable", CADENCE, "the CA cannot be reached: timed out")
    for event in walk.cert.collect_events():
        walk.view.apply(Recorded(2, event), walk.rows)
    assert walk.row["last_error"] == "the CA cannot be reached: timed out"


def test_the_wildcard_has_no_service_and_seeding_names_the_service() -> None:
    assert Certificate.Seeded in SERVICE_NAMING
    wildcard = seeded(
        service_id=None,
        role="wildcard",
        names=["*.provider.test"],
        provider_domain="provider.test",
        install=None,
    )
    walk = Walk(wildcard)
    assert walk.row["service_id"] is None and walk.row["role"] == "wildcard"
    assert all(column.name != "key_sealed" for column in SSL_CERTIFICATES.columns)


def test_a_vanity_site_is_pending_until_the_wildcard_is_installed_then_shows_it() -> None:
    site = "blog.provider.test"
    walk = Walk(
        seeded(
            names=[site],
            install=InstallTarget("web1", "web", "bloguser", site),
            shared=True,
            provider_domain="provider.test",
        )
    )
    cert = walk.cert
    cert.check(T0, "waiting", CADENCE, waiting=True)  # the wildcard not issued yet
    walk.fold()
    assert walk.row["state"] == "pending" and walk.row["names"] == [site]
    wildcard = replace(facts("77"), names=("*.provider.test",))
    now = T0 + timedelta(minutes=5)
    cert.wildcard_installed(
        now,
        server_id="web1",
        wildcard_id=wildcard_uuid("provider.test"),
        facts=wildcard,
        cadence=CADENCE,
    )
    walk.fold()
    row = walk.row
    assert (row["state"], row["mode"], row["serial"]) == ("issued", "shared", "77")
    assert row["names"] == ["*.provider.test"] and row["issuer"] == "CN=Test Intermediate"
    assert Certificate.WildcardInstalled in walk.kinds
    cert.preflight_failed(now, "install", "installing on web1 failed: gone", CADENCE)
    walk.fold()  # a failed install of the renewal keeps the one served
    assert walk.row["state"] == "issued"
    cert.wildcard_installed(
        now,
        server_id="web1",
        wildcard_id=wildcard_uuid("provider.test"),
        facts=replace(wildcard, serial="78"),
        cadence=CADENCE,
    )
    walk.fold()
    assert walk.row["serial"] == "78" and walk.row["last_error"] is None
    cert.retire(now)
    walk.fold()
    assert walk.row["state"] == "retired"


def test_a_deploy_wanting_ours_back_on_its_node_shows_it_not_installed_as_the_aggregate() -> None:
    """A redeploy of a certificate of ours empties its installs (the node is asked again);
    the row says so too, and a freeze stands in both (a redeploy orders nothing)."""
    walk = Walk(seeded())
    cert = walk.cert
    cert.place_order(T0, order_url="https://ca/o/1", names=cert.names, key_sealed=SEALED)
    cert.issued(T0, certificate="CERT", chain="CHAIN", facts=facts(), cadence=CADENCE)
    cert.mark_installed(T0, "web1", "1f")
    walk.fold()
    assert walk.row["installed"] == {"web1": "1f"}
    now = T0 + timedelta(days=60)
    for n in range(3):
        cert.place_order(now, order_url=f"https://ca/o/r{n}", names=cert.names, key_sealed=SEALED)
        cert.issue_failed(now, reason="unauthorized", cadence=CADENCE)
    walk.fold()
    cert.request_issue(now, "deploy", CADENCE)
    walk.fold()  # same() compares installed, the freeze and the next look
    assert walk.row["installed"] == {} and walk.row["state"] == "frozen"
