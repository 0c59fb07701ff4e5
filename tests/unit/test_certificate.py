"""The Certificate and AcmeAccount aggregates alone: what each decision records, the
invariants (one open order, custom never orders, frozen refuses until its time, retired is
final), the freeze after failures and after a rate limit, and keys that are only ever sealed."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from domain.acme_account import AcmeAccount, account_uuid
from domain.certificate import (
    FROZEN_BY_FAILURES,
    FROZEN_BY_RATE_LIMIT,
    Certificate,
    certificate_uuid,
    facts_from_json,
    facts_json,
    wildcard_uuid,
)
from domain.errors import Conflict, InvalidInput
from domain.ssl_policy import AriWindow
from domain.ssl_types import DnsTarget, Http01Spot, InstallTarget
from tests.support.ssl_values import CADENCE, T0, facts

SEALED = "v2:abc:sealed-order-key"


def seeded(**changes: Any) -> Certificate:
    fields: dict[str, Any] = {
        "service_id": "1001",
        "role": "web",
        "names": ["shop.example", "www.shop.example"],
        "install": InstallTarget("web1", "web", "shop", "shop.example"),
        "dns_targets": [DnsTarget("dns1", "shop", "shop.example")],
        "http01": Http01Spot("web1", "shop", "/home/shop/web/shop.example/public_html"),
        "expected_addresses": ["192.0.2.10"],
        "cadence": CADENCE,
        "now": T0,
        "actor": "deploy",
        **changes,
    }
    return Certificate.seed(**fields)


def topics(cert: Certificate | AcmeAccount) -> list[str]:
    return [type(e).__qualname__ for e in cert.collect_events()]


def issued_cert(now: datetime = T0) -> Certificate:
    cert = seeded()
    cert.place_order(now, order_url="https://ca/order/1", names=cert.names, key_sealed=SEALED)
    cert.issued(now, certificate="CERT", chain="CHAIN", facts=facts(at=now), cadence=CADENCE)
    return cert


def test_ids_are_stable_per_service_and_role() -> None:
    assert certificate_uuid("1001", "web") == seeded().id
    assert certificate_uuid("1001", "web") != certificate_uuid("1001", "mail")
    assert certificate_uuid("1001", "web") != certificate_uuid("1002", "web")
    assert wildcard_uuid("Provider.NET") == wildcard_uuid("provider.net")
    wildcard = seeded(
        service_id=None, role="wildcard", names=["*.provider.net"], provider_domain="provider.net"
    )
    assert wildcard.id == wildcard_uuid("provider.net")
    with pytest.raises(InvalidInput):
        seeded(role="ftp")
    with pytest.raises(InvalidInput):
        seeded(service_id=None, role="wildcard", names=["*.p.net"])


def test_a_seeded_certificate_is_due_at_once_in_fast_mode_with_its_targets() -> None:
    cert = seeded()
    assert (cert.state, cert.mode, cert.fast_left) == ("pending", "auto", 3)
    assert cert.due(T0) and cert.renewal_due(T0)
    assert cert.install_target == InstallTarget("web1", "web", "shop", "shop.example")
    assert cert.dns01_targets == (DnsTarget("dns1", "shop", "shop.example"),)
    assert cert.http01_spot is not None and cert.http01_spot.server_id == "web1"
    assert seeded(shared=True).mode == "shared"


def test_fast_mode_checks_n_times_then_at_the_recheck_interval() -> None:
    cert = seeded()
    now, gaps = T0, []
    for _ in range(4):
        cert.preflight_failed(now, "dns", "A 198.51.100.7 is not this server", CADENCE)
        assert cert.next_check_at is not None
        gaps.append(cert.next_check_at - now)
        now = cert.next_check_at
    assert gaps == [timedelta(seconds=30)] * 2 + [timedelta(hours=1)] * 2
    assert cert.state == "failed" and cert.last_error == "A 198.51.100.7 is not this server"
    assert cert.failures == 0  # a pre-flight failure costs the CA nothing: no freeze
    assert not cert.due(now - timedelta(seconds=1)) and cert.due(now)


def test_an_issued_certificate_schedules_its_renewal_and_keeps_the_order_key() -> None:
    cert = issued_cert()
    assert topics(cert) == [
        "Certificate.Seeded",
        "Certificate.OrderPlaced",
        "Certificate.Issued",
        "Certificate.RenewalScheduled",
    ]
    assert cert.state == "issued" and cert.order is None
    assert cert.current is not None and cert.current["key_sealed"] == SEALED
    assert cert.current_facts == facts()
    assert cert.renew_at is not None
    left = facts().not_after - cert.renew_at
    assert timedelta(days=30) <= left <= timedelta(days=45)
    assert cert.next_check_at == T0 + timedelta(days=1)  # the active interval comes first
    assert not cert.renewal_due(T0) and cert.renewal_due(cert.renew_at)


def test_renewal_inside_an_ari_window_and_the_window_recorded() -> None:
    cert = issued_cert()
    window = AriWindow(T0 + timedelta(days=60), T0 + timedelta(days=62))
    poll = T0 + timedelta(hours=6)
    cert.schedule_renewal(T0, CADENCE, window, explanation_url="https://ca/why", poll_at=poll)
    assert cert.renew_at is not None and window.start <= cert.renew_at <= window.end
    assert cert.ari == {
        "start": window.start,
        "end": window.end,
        "explanation_url": "https://ca/why",
    }
    assert cert.next_check_at == poll


def test_one_open_order_at_a_time() -> None:
    cert = seeded()
    cert.place_order(T0, order_url="https://ca/order/1", names=cert.names, key_sealed=SEALED)
    assert cert.state == "checking"
    with pytest.raises(Conflict, match="open order"):
        cert.place_order(T0, order_url="https://ca/order/2", names=cert.names, key_sealed=SEALED)
    assert cert.abandon_order(T0, "expired at the CA")
    assert not cert.abandon_order(T0, "again")
    cert.place_order(T0, order_url="https://ca/order/2", names=cert.names, key_sealed=SEALED)
    with pytest.raises(InvalidInput):
        seeded().place_order(T0, order_url="u", names=["a"], key_sealed="")


def test_a_certificate_without_an_open_order_is_not_issued() -> None:
    with pytest.raises(Conflict, match="no open order"):
        seeded().issued(T0, certificate="C", chain="", facts=facts(), cadence=CADENCE)


def test_n_failures_in_a_row_freeze_for_m_and_refuse_orders_until_then() -> None:
    cert = seeded()
    for n in range(1, 4):
        cert.place_order(T0, order_url=f"https://ca/o/{n}", names=cert.names, key_sealed=SEALED)
        cert.issue_failed(
            T0, reason="HTTP-01 got 404", cadence=CADENCE, authz_failed=["shop.example"]
        )
    assert cert.state == "frozen" and cert.frozen_kind == FROZEN_BY_FAILURES
    assert cert.frozen_until == T0 + timedelta(hours=6) == cert.next_check_at
    assert cert.frozen_reason is not None and "3 failures in a row" in cert.frozen_reason
    later = T0 + timedelta(hours=6) - timedelta(seconds=1)
    with pytest.raises(Conflict, match="frozen until"):
        cert.place_order(later, order_url="https://ca/o/4", names=cert.names, key_sealed=SEALED)
    cert.place_order(T0 + timedelta(hours=6), order_url="x", names=cert.names, key_sealed=SEALED)
    assert cert.state == "checking" and not cert.frozen(T0 + timedelta(hours=6))


def test_a_rate_limit_freezes_until_retry_after_and_issue_now_does_not_lift_it() -> None:
    cert = seeded()
    cert.place_order(T0, order_url="https://ca/o/1", names=cert.names, key_sealed=SEALED)
    retry_after = T0 + timedelta(minutes=202)
    cert.issue_failed(
        T0,
        reason="rateLimited: too many certificates",
        cadence=CADENCE,
        problem="urn:ietf:params:acme:error:rateLimited",
        retry_after=retry_after,
    )
    assert (cert.frozen_until, cert.frozen_kind) == (retry_after, FROZEN_BY_RATE_LIMIT)
    cert.request_issue(T0, "staff", CADENCE)
    assert cert.frozen(T0)  # the CA would refuse anyway
    cert.freeze(T0, T0 + timedelta(minutes=5), "shorter", FROZEN_BY_RATE_LIMIT)
    assert cert.frozen_until == retry_after  # never shortened


def test_issue_now_lifts_a_failure_freeze_and_starts_fast_mode_again() -> None:
    cert = seeded()
    cert.freeze(T0, T0 + timedelta(hours=6), "failures", FROZEN_BY_FAILURES)
    cert.request_issue(T0 + timedelta(minutes=1), "staff", CADENCE)
    assert not cert.frozen(T0 + timedelta(minutes=1))
    assert (cert.fast_left, cert.failures, cert.issue_requested) == (3, 0, True)
    assert cert.due(T0 + timedelta(minutes=1))


def test_adopting_a_served_certificate_needs_no_order() -> None:
    cert = seeded()
    cert.adopt(T0, facts(), CADENCE)
    assert cert.state == "issued" and cert.current is not None
    assert cert.current["key_sealed"] is None and cert.renew_at is not None
    removed = seeded()
    removed.upload_custom(
        T0, certificate="C", chain="", key_sealed=SEALED, facts=facts(), actor="client"
    )
    removed.remove_custom(T0, "client", CADENCE)
    with pytest.raises(Conflict, match="new certificate"):
        removed.adopt(T0, facts(), CADENCE)  # the node still serves the customer's


def test_a_custom_certificate_settles_a_failing_frozen_one() -> None:
    cert = seeded()
    for n in range(1, 4):
        cert.place_order(T0, order_url=f"https://ca/o/{n}", names=cert.names, key_sealed=SEALED)
        cert.issue_failed(T0, reason="HTTP-01 got 404", cadence=CADENCE)
    assert cert.state == "frozen" and cert.failures == 3
    cert.upload_custom(T0, certificate="C", chain="", key_sealed=SEALED, facts=facts(), actor="c")
    assert (cert.state, cert.failures, cert.fast_left, cert.last_error) == ("issued", 0, 0, None)
    assert cert.frozen_until is None and not cert.frozen(T0) and not cert.issue_requested


def test_a_custom_certificate_is_never_ordered_and_delete_hands_back() -> None:
    cert = issued_cert()
    cert.upload_custom(
        T0, certificate="CUSTOM", chain="CA", key_sealed="v2:k:custom", facts=facts("ee"), actor="c"
    )
    assert (cert.mode, cert.state, cert.renew_at) == ("custom", "issued", None)
    assert not cert.renewal_due(T0 + timedelta(days=89))
    with pytest.raises(Conflict, match="never ordered"):
        cert.place_order(T0, order_url="u", names=cert.names, key_sealed=SEALED)
    with pytest.raises(Conflict, match="custom certificate"):
        cert.request_issue(T0, "staff", CADENCE)
    cert.check(T0, "custom", CADENCE)
    assert cert.next_check_at == T0 + timedelta(days=1)  # looked at daily for its expiry
    assert cert.remove_custom(T0, "client", CADENCE)
    assert not cert.remove_custom(T0, "client", CADENCE)
    assert (cert.mode, cert.state, cert.current) == ("auto", "pending", None)
    assert cert.renewal_due(T0) and cert.due(T0) and not cert.adopt_served


def test_a_shared_certificate_is_never_ordered() -> None:
    cert = seeded(shared=True)
    assert not cert.renewal_due(T0)
    with pytest.raises(Conflict):
        cert.place_order(T0, order_url="u", names=cert.names, key_sealed=SEALED)


def test_expiry_warnings_once_per_threshold_and_afresh_for_a_new_certificate() -> None:
    cert = seeded()
    cert.upload_custom(T0, certificate="C", chain="", key_sealed=SEALED, facts=facts(), actor="c")
    assert cert.warn_expiry(T0, 30)
    assert not cert.warn_expiry(T0, 30)
    assert cert.warn_expiry(T0, 14) and cert.warned == [30, 14]
    cert.upload_custom(
        T0, certificate="C2", chain="", key_sealed=SEALED, facts=facts("2"), actor="c"
    )
    assert cert.warned == [] and cert.warn_expiry(T0, 30)


def test_installs_are_recorded_once_per_serial_and_node() -> None:
    cert = issued_cert()
    assert cert.mark_installed(T0, "web1", "1f")
    assert not cert.mark_installed(T0, "web1", "1f")
    assert cert.mark_installed(T0, "web1", "20") and cert.installed == {"web1": "20"}


def test_retired_is_final() -> None:
    cert = issued_cert()
    assert cert.retire(T0) and not cert.retire(T0)
    assert cert.state == "retired" and not cert.due(T0 + timedelta(days=400))
    assert not cert.renewal_due(T0 + timedelta(days=400))
    for attempt in (
        lambda: cert.place_order(T0, order_url="u", names=["a"], key_sealed=SEALED),
        lambda: cert.request_issue(T0, "staff", CADENCE),
        lambda: cert.check(T0, "x", CADENCE),
        lambda: cert.mark_installed(T0, "web1", "99"),
        lambda: cert.upload_custom(
            T0, certificate="C", chain="", key_sealed=SEALED, facts=facts(), actor="c"
        ),
    ):
        with pytest.raises(Conflict, match="retired"):
            attempt()
    assert not cert.reseal_key(T0, "current", "v2:new:x", "new")


def test_keys_are_resealed_per_slot_and_never_held_in_clear() -> None:
    cert = seeded()
    cert.place_order(T0, order_url="u", names=cert.names, key_sealed=SEALED)
    assert cert.reseal_key(T0, "order", "v2:new:order", "new")
    assert not cert.reseal_key(T0, "order", "v2:new:order", "new")
    assert not cert.reseal_key(T0, "current", "v2:new:x", "new")  # nothing current yet
    cert.issued(T0, certificate="C", chain="", facts=facts(), cadence=CADENCE)
    assert cert.current is not None and cert.current["key_sealed"] == "v2:new:order"
    events = cert.collect_events()
    resealed = [e for e in events if type(e).__qualname__ == "Certificate.KeyResealed"]
    assert [(e.slot, e.key_id) for e in resealed] == [("order", "new")]  # type: ignore[attr-defined]


def test_facts_round_trip_as_json() -> None:
    assert facts_from_json(facts_json(facts())) == facts()
    assert isinstance(facts_json(facts())["not_after"], str)


def test_the_acme_account_is_created_with_its_sealed_key_then_registered() -> None:
    account = AcmeAccount.create("https://acme.example/dir", "v2:k:account", T0)
    assert account.id == account_uuid("https://acme.example/dir")
    assert account.id != account_uuid("https://staging.example/dir")
    assert not account.registered
    assert account.register(T0, "https://acme.example/acct/7", ["mailto:ops@example.net"])
    assert not account.register(T0, "https://acme.example/acct/7", ["mailto:ops@example.net"])
    with pytest.raises(Conflict):
        account.register(T0, "https://acme.example/acct/8", [])
    assert (
        account.reseal_key(T0, "v2:new:account", "new") and account.key_sealed == "v2:new:account"
    )
    assert not account.reseal_key(T0, "v2:new:account", "new")
    assert topics(account) == [
        "AcmeAccount.KeyCreated",
        "AcmeAccount.Registered",
        "AcmeAccount.KeyResealed",
    ]
    with pytest.raises(InvalidInput):
        AcmeAccount.create("https://acme.example/dir", "", T0)
