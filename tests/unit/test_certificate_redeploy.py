"""An Issue asked for by a deploy (a redeploy, a verify & repair) while a certificate of ours
is current wants that certificate on its node, not a new one: looked at now, its installs
asked of the node again, renewed only at its renewal moment. Anyone else's Issue, or a
deploy's for a certificate that is not ours (adopted) or not there yet, still orders."""

from __future__ import annotations

from datetime import timedelta

from domain.certificate import DEPLOY_ACTOR, FROZEN_BY_FAILURES, Certificate
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


def test_a_deploy_of_ours_leaves_a_failure_freeze_and_the_failures_as_they_are() -> None:
    """A failing renewal is not ordered again on every redeploy (Let's Encrypt's
    failed-validation limit): the freeze and the count stand; only the look is now."""
    cert = _ours_installed()
    at = LATER
    for n in range(CADENCE.freeze_after):
        cert.place_order(at, order_url=f"https://ca/o/{n}", names=cert.names, key_sealed="s")
        cert.issue_failed(at, reason="unauthorized", cadence=CADENCE)
    assert cert.frozen(at) and cert.frozen_kind == FROZEN_BY_FAILURES
    until, failures = cert.frozen_until, cert.failures
    cert.request_issue(at, DEPLOY_ACTOR, CADENCE)
    assert cert.frozen(at) and cert.frozen_until == until and cert.failures == failures
    assert cert.due(at) and cert.installed == {}  # looked at now: put back on its node
    cert.check(at, "frozen", CADENCE)  # that look changed nothing: next at the freeze's end
    assert until is not None and cert.next_check_at is not None
    assert cert.next_check_at >= until
    cert.request_issue(at, "staff", CADENCE)  # anyone else's ask still lifts it
    assert not cert.frozen(at) and cert.failures == 0


def test_a_deploy_of_ours_leaves_a_rate_limit_freeze() -> None:
    cert = _ours_installed()
    cert.place_order(LATER, order_url="https://ca/o/1", names=cert.names, key_sealed="s")
    retry = LATER + timedelta(days=2)
    cert.issue_failed(LATER, reason="rateLimited", cadence=CADENCE, retry_after=retry)
    cert.request_issue(LATER, DEPLOY_ACTOR, CADENCE)
    assert cert.frozen(LATER) and cert.frozen_until == retry and cert.due(LATER)
