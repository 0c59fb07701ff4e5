"""A service's SSL over the gateway, on SQLite and PostgreSQL, over the real event store and
the real SSL view: the GET shape, Issue now (202; 409 while a rate limit froze it), a custom
certificate (five bad ones refused with their reason and nothing recorded; a good one
recorded with its key sealed, never in clear in the store or an answer) and its removal."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from domain.certificate import (
    FROZEN_BY_FAILURES,
    FROZEN_BY_RATE_LIMIT,
    Certificate,
    certificate_uuid,
)
from domain.ssl_types import Http01Spot, InstallTarget, SslCadence
from gateway.app import create_app
from handlers import x509_tools
from ops.adapters.certificate_book import StoreCertificateBook
from ops.adapters.certificate_inspector import CertificateInspector
from ops.adapters.certificate_ledger import StoreCertificateLedger
from ops.adapters.command_ledger import StoreLedger
from ops.adapters.sealing import PasswordSealer
from ops.devtools.mini_ca import MiniCa
from ops.store.database import Database
from ops.store.event_store import EventStore
from ops.store.log_rows import log_rows
from ops.views.projection_runner import ProjectionRunner
from ops.views.ssl_queries import SqlSslQueries
from ops.views.view_queries import SqlViewQueries
from ops.views.view_store import ViewStore
from projections.catalogue import all_views
from tests.fakes.clock import Clock
from tests.support.gateway import (
    AUTH,
    Client,
    assert_readable_error,
    credentials_for_tests,
    order,
    serving,
)

NOW = datetime.now(UTC).replace(microsecond=0)
DOMAIN = "shop.example.com"
NAMES = [DOMAIN, f"www.{DOMAIN}"]
SECRET = "a-secret-key-only-for-tests-0123456789"
SSL = "/v1/services/1001/ssl"


@dataclass
class Api:
    client: Client
    store: EventStore
    book: StoreCertificateBook
    runner: ProjectionRunner
    clock: Clock
    ca: MiniCa
    sealer: PasswordSealer

    @property
    def cert_id(self) -> uuid.UUID:
        return certificate_uuid("1001", "web")

    @property
    def cert(self) -> Certificate:
        found = self.book.certificate(self.cert_id)
        assert found is not None
        return found

    def show(self) -> dict[str, Any]:
        self.runner.catch_up()
        reply = self.client.get(SSL, headers=AUTH)
        assert reply.status_code == 200, reply.text
        body: dict[str, Any] = reply.json()
        return body

    def put(self, **body: Any) -> Any:
        return self.client.request("PUT", f"{SSL}/web/custom", json=body, headers=AUTH)

    def stored(self) -> list[bytes]:
        return [bytes(row[4]) for row in log_rows(self.store, 0, 100_000)]


@pytest.fixture
def api(database_url: str) -> Iterator[Api]:
    store, db, clock = EventStore(database_url), Database(database_url), Clock(NOW)
    views = all_views()
    runner = ProjectionRunner(store, ViewStore(db, views), views)
    book = StoreCertificateBook(store)
    sealer = PasswordSealer(SECRET, purpose="private-key")
    ca = MiniCa("hostwright API test root", now=NOW)  # the gateway's clock, not the run's
    ledger = StoreLedger(store, PasswordSealer(SECRET))
    app = create_app(
        ledger=ledger,
        views=SqlViewQueries(db),
        credentials=credentials_for_tests(),
        clock=clock,
        certificates=StoreCertificateLedger(
            book, sealer, CertificateInspector(ca.certificate_pem), SslCadence
        ),
        ssl_views=SqlSslQueries(db),
    )
    try:
        with serving(app) as client:
            reply = client.post(
                "/v1/services", json=order(service_id=1001, domain=DOMAIN), headers=AUTH
            )
            assert reply.status_code == 202, reply.text
            seed = Certificate.seed(
                service_id="1001",
                role="web",
                names=list(NAMES),
                install=InstallTarget("web1", "web", "shop1", DOMAIN),
                dns_targets=[],
                http01=Http01Spot("web1", "shop1", f"/home/shop1/web/{DOMAIN}/public_html"),
                expected_addresses=["192.0.2.10"],
                cadence=SslCadence(),
                now=NOW,
                actor="deploy",
            )
            book.update(seed.id, lambda _: seed, "busy")
            yield Api(client, store, book, runner, clock, ca, sealer)
    finally:
        store.close()
        db.close()


def _pem_key(leaf_key_pem: str, password: bytes | None = None) -> str:
    key = serialization.load_pem_private_key(leaf_key_pem.encode(), None)
    encryption: serialization.KeySerializationEncryption = (
        serialization.NoEncryption()
        if password is None
        else serialization.BestAvailableEncryption(password)
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    ).decode()


def test_get_shows_each_role_with_its_state_and_no_pem(api: Api) -> None:
    body = api.show()
    assert body["service_id"] == "1001"
    (web,) = body["certificates"]
    assert web == {
        "role": "web",
        "mode": "auto",
        "state": "pending",
        "frozen_until": None,
        "names": NAMES,
        "issuer": None,
        "not_before": None,
        "not_after": None,
        "next_check_at": None,
        "last_error": None,
        "renew_at": None,
        "ari": None,
    }
    reply = api.client.get("/v1/services/999/ssl", headers=AUTH)
    assert_readable_error(reply, 404)


def test_issue_is_accepted_lifts_a_failure_freeze_and_is_refused_under_a_rate_limit(
    api: Api,
) -> None:
    cadence = SslCadence()

    def freeze(kind: str, hours: int) -> None:
        def decide(cert: Certificate | None) -> Certificate | None:
            assert cert is not None
            cert.freeze(NOW, NOW + timedelta(hours=hours), f"{kind} for a test", kind)
            return cert

        api.book.update(api.cert_id, decide, "busy")

    freeze(FROZEN_BY_FAILURES, 6)
    reply = api.client.post(f"{SSL}/web/issue", headers=AUTH)
    assert reply.status_code == 202, reply.text
    assert api.cert.frozen_until is None and api.cert.issue_requested
    assert api.show()["certificates"][0]["state"] != "frozen"

    freeze(FROZEN_BY_RATE_LIMIT, 3)
    version = api.cert.version
    reply = api.client.post(f"{SSL}/web/issue", headers=AUTH)
    assert_readable_error(reply, 409)
    until = (NOW + timedelta(hours=3)).strftime("%Y-%m-%d %H:%M:%S")
    assert until in reply.json()["error"]
    assert api.cert.version == version  # nothing recorded
    shown = api.show()["certificates"][0]
    assert shown["state"] == "frozen" and shown["frozen_until"].startswith(until[:10])
    assert_readable_error(api.client.post(f"{SSL}/dns/issue", headers=AUTH), 404)
    assert cadence.fast_attempts == api.cert.fast_left


def test_five_bad_custom_certificates_are_refused_with_reasons_and_nothing_recorded(
    api: Api,
) -> None:
    good = api.ca.leaf(NAMES)
    other = api.ca.leaf(NAMES)
    stranger = api.ca.leaf(["other.example.net"])
    expired = api.ca.leaf(
        NAMES, not_before=NOW - timedelta(days=100), not_after=NOW - timedelta(days=10)
    )
    bad = {
        "garbage": ({"certificate": "garbage", "private_key": good.key_pem}, "certificate"),
        "encrypted key": (
            {
                "certificate": good.certificate_pem,
                "private_key": _pem_key(good.key_pem, b"secret"),
            },
            "encrypted",
        ),
        "key mismatch": (
            {"certificate": good.certificate_pem, "private_key": other.key_pem},
            "does not belong",
        ),
        "names not covered": (
            {"certificate": stranger.certificate_pem, "private_key": stranger.key_pem},
            "does not cover",
        ),
        "expired": (
            {"certificate": expired.certificate_pem, "private_key": expired.key_pem},
            "expired",
        ),
    }
    version, stored = api.cert.version, len(api.stored())
    for case, (body, reason) in bad.items():
        reply = api.put(**body)
        assert_readable_error(reply, 422)
        error = reply.json()["error"]
        assert reason in error, (case, error)
        assert "BEGIN" not in error, case  # never echoes PEM
    assert api.cert.version == version and len(api.stored()) == stored


def test_a_custom_full_chain_in_any_order_is_recorded_as_the_leaf_and_its_chain(
    api: Api,
) -> None:
    upper = api.ca.intermediate("upper intermediate")
    lower = upper.intermediate("lower intermediate")
    leaf = lower.leaf(NAMES)
    reply = api.put(
        certificate=leaf.certificate_pem + upper.certificate_pem,
        private_key=leaf.key_pem,
        chain=api.ca.certificate_pem + lower.certificate_pem,
    )
    assert reply.status_code == 202, reply.text
    current = api.cert.current
    assert current is not None
    assert current["certificate"] == leaf.certificate_pem
    assert current["chain"] == lower.certificate_pem + upper.certificate_pem


def test_a_good_custom_certificate_is_recorded_with_its_key_sealed_then_removed(
    api: Api,
) -> None:
    leaf = api.ca.leaf(NAMES)
    reply = api.put(certificate=leaf.certificate_pem, private_key=leaf.key_pem, chain="")
    assert reply.status_code == 202, reply.text
    assert "BEGIN" not in reply.text
    cert = api.cert
    assert cert.mode == "custom"
    sealed = cert.current["key_sealed"]  # type: ignore[index]
    assert api.sealer.unseal(sealed) == leaf.key_pem
    assert all(b"PRIVATE KEY" not in state for state in api.stored())
    shown = api.show()["certificates"][0]
    facts = x509_tools.facts(leaf.certificate_pem)
    assert shown["mode"] == "custom" and shown["state"] == "issued"
    assert shown["issuer"] == facts.issuer
    assert shown["not_after"].startswith(facts.not_after.strftime("%Y-%m-%dT%H:%M:%S"))
    events = api.client.get("/v1/services/1001/events", headers=AUTH).text
    assert "PRIVATE KEY" not in events

    assert_readable_error(api.client.post(f"{SSL}/web/issue", headers=AUTH), 409)
    reply = api.client.delete(f"{SSL}/web/custom", headers=AUTH)
    assert reply.status_code == 202, reply.text
    cert = api.cert
    assert cert.mode == "auto" and cert.current is None and cert.issue_requested
    assert api.show()["certificates"][0]["mode"] == "auto"
    version = cert.version
    assert api.client.delete(f"{SSL}/web/custom", headers=AUTH).status_code == 202
    assert api.cert.version == version  # nothing more to hand back


def test_a_role_not_seeded_and_a_malformed_body_are_refused(api: Api) -> None:
    leaf = api.ca.leaf(NAMES)
    reply = api.client.request(
        "PUT",
        f"{SSL}/mail/custom",
        json={"certificate": leaf.certificate_pem, "private_key": leaf.key_pem},
        headers=AUTH,
    )
    assert_readable_error(reply, 404)
    assert_readable_error(api.put(certificate=leaf.certificate_pem), 422)
    assert_readable_error(api.put(certificate=1, private_key="x"), 422)
