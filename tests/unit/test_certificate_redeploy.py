"""An Issue asked for by a deploy (a redeploy, a verify & repair) while a certificate of ours
is current wants that certificate on its node, not a new one: looked at now, its installs
asked of the node again, renewed only at its renewal moment. Anyone else's Issue, or a
deploy's for a certificate that is not ours (adopted) or not there yet, still orders."""

from __future__ import annotations

from datetime import timedelta

from domain.certificate import DEPLOY_ACTOR, Certificate
from domain.ssl_types import InstallTarget
from tests.support.ssl_values import CADENCE, T0, facts

LATER = T0 + timedelta(hours=2)


def _seeded() -> Certificate:
    return Certificate.seed(
        service_id="1001",
        role="web",
        names=["shop.example", "www.shop.example"],
        install=InstallTarget("web1", "web", "shop", "shop.example"),
        dns_targets=[],
        http01=None,
        expected_addresses=["192.0.2.10"],
        cadence=CADENCE,
        now=T0,
        actor=DEPLOY_ACTOR,
    )


def _ours_installed() -> Certificate:
    cert = _seeded()
    cert.place_order(T0, order_url="https://ca/order/1", names=cert.names, key_sealed="sealed")
    cert.issued(T0, certificate="CERT", chain="CHAIN", facts=facts(at=T0), cadence=CADENCE)
    cert.mark_installed(T0, "web1", facts(at=T0).serial)
    return cert


def test_a_deploy_looks_at_ours_now_and_asks_the_node_again_without_ordering() -> None:
    cert = _ours_installed()
    assert not cert.due(LATER)
    cert.request_issue(LATER, DEPLOY_ACTOR, CADENCE)
    assert cert.due(LATER) and not cert.renewal_due(LATER)
    assert cert.installed == {}  # the next look installs it where the node lacks it
    assert cert.state == "issued" and cert.fast_left == 0
    renew_at = cert.renew_at
    assert renew_at is not None and cert.renewal_due(renew_at)  # renewed on time still


def test_anyone_elses_issue_orders_a_new_one() -> None:
    cert = _ours_installed()
    cert.request_issue(LATER, "staff", CADENCE)
    assert cert.renewal_due(LATER) and cert.installed == {"web1": facts(at=T0).serial}


def test_a_deploy_of_a_certificate_not_ours_orders_as_before() -> None:
    adopted = _seeded()
    adopted.adopt(T0, facts(at=T0), CADENCE)  # the node's, no key of ours
    adopted.request_issue(LATER, DEPLOY_ACTOR, CADENCE)
    assert adopted.renewal_due(LATER)
    none_yet = _seeded()
    none_yet.request_issue(LATER, DEPLOY_ACTOR, CADENCE)
    assert none_yet.renewal_due(LATER) and none_yet.fast_left == CADENCE.fast_attempts
