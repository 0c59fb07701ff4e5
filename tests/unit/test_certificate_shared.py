"""A vanity site's certificate (mode ``shared``) and the provider's wildcard: the site names
its wildcard by its own name's parent, wants it until its node is recorded holding the
wildcard's serial (again when someone asks, or the wildcard is renewed), records it once per
serial, refuses a wildcard that does not cover it, and is still wanted (rechecked, not put off
for a day) while the wildcard is not issued."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from domain.certificate import Certificate, wildcard_uuid
from domain.errors import Conflict
from domain.ssl_types import CertificateFacts, Http01Spot, InstallTarget
from tests.support.ssl_values import CADENCE, T0, facts

PROVIDER = "hosted.example"
SITE = f"blog.{PROVIDER}"
WILDCARD = replace(facts("77"), names=(f"*.{PROVIDER}",))


def site() -> Certificate:
    return Certificate.seed(
        service_id="2001",
        role="web",
        names=[SITE],
        install=InstallTarget("web1", "web", "bloguser", SITE),
        dns_targets=[],
        http01=Http01Spot("web1", "bloguser", f"/home/bloguser/web/{SITE}/public_html"),
        expected_addresses=["192.0.2.10"],
        cadence=CADENCE,
        now=T0,
        actor="deploy",
        shared=True,
        provider_domain=PROVIDER,
    )


def topics(cert: Certificate) -> list[str]:
    return [type(e).__qualname__ for e in cert.collect_events()]


def install(cert: Certificate, served: CertificateFacts = WILDCARD) -> bool:
    return cert.wildcard_installed(
        T0, server_id="web1", wildcard_id=wildcard_uuid(PROVIDER), facts=served, cadence=CADENCE
    )


def test_a_vanity_site_names_the_wildcard_of_its_parent_and_wants_it() -> None:
    cert = site()
    assert cert.wildcard_id == wildcard_uuid(PROVIDER)
    assert cert.wants_wildcard(WILDCARD)
    auto = Certificate.seed(**{**_seed_fields(), "shared": False})
    assert auto.wildcard_id is None and not auto.wants_wildcard(WILDCARD)


def _seed_fields() -> dict[str, Any]:
    return {
        "service_id": "2002",
        "role": "web",
        "names": ["own.example"],
        "install": InstallTarget("web1", "web", "own", "own.example"),
        "dns_targets": [],
        "http01": None,
        "expected_addresses": ["192.0.2.10"],
        "cadence": CADENCE,
        "now": T0,
        "actor": "deploy",
    }


def test_the_installed_wildcard_is_the_sites_current_certificate_once_per_serial() -> None:
    cert = site()
    cert.collect_events()
    assert install(cert)
    assert topics(cert) == ["Certificate.WildcardInstalled"]
    assert cert.state == "issued" and cert.installed == {"web1": "77"}
    assert cert.current_facts == WILDCARD
    assert cert.current is not None and cert.current["key_sealed"] is None  # the wildcard's
    assert cert.current["certificate"] is None
    assert cert.next_check_at == T0 + timedelta(seconds=CADENCE.active_interval_s)
    assert not cert.wants_wildcard(WILDCARD) and not cert.renewal_due(T0)
    assert not install(cert)  # the same serial again: nothing recorded
    assert topics(cert) == []

    renewed = replace(WILDCARD, serial="78")
    assert cert.wants_wildcard(renewed) and install(cert, renewed)
    assert cert.installed == {"web1": "78"}


def test_asked_again_the_site_wants_the_wildcard_it_holds_once_more() -> None:
    cert = site()
    install(cert)
    cert.request_issue(T0, "deploy", CADENCE)  # a redeploy: the node may have lost it
    assert cert.wants_wildcard(WILDCARD) and cert.due(T0)
    assert install(cert)
    assert not cert.issue_requested and not cert.wants_wildcard(WILDCARD)


def test_a_wildcard_that_is_not_the_sites_or_does_not_cover_it_is_refused() -> None:
    cert = site()
    with pytest.raises(Conflict):
        install(cert, replace(WILDCARD, names=("*.other.example",)))
    with pytest.raises(Conflict):
        cert.wildcard_installed(
            T0,
            server_id="web1",
            wildcard_id=wildcard_uuid("other.example"),
            facts=WILDCARD,
            cadence=CADENCE,
        )
    auto = Certificate.seed(**_seed_fields())
    with pytest.raises(Conflict):
        auto.wildcard_installed(
            T0,
            server_id="web1",
            wildcard_id=wildcard_uuid(PROVIDER),
            facts=WILDCARD,
            cadence=CADENCE,
        )


def test_waiting_for_the_wildcard_is_rechecked_not_put_off() -> None:
    cert = site()
    for n in range(CADENCE.fast_attempts):
        cert.check(T0 + timedelta(minutes=n), "waiting", CADENCE, waiting=True)
    last = T0 + timedelta(minutes=CADENCE.fast_attempts - 1)
    assert cert.next_check_at == last + timedelta(seconds=CADENCE.recheck_interval_s)
    assert cert.state == "pending"


def test_a_retired_site_is_never_installed_on() -> None:
    cert = site()
    cert.retire(T0)
    assert not cert.wants_wildcard(WILDCARD)
    with pytest.raises(Conflict):
        install(cert)
