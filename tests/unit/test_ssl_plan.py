"""The ssl steps at the end of a deploy: planned only when automatic SSL is on (the planner's
``ssl``), after the site (and its PHP) and every DNS node's records; off, every chain is the
one it was before SSL existed."""

from __future__ import annotations

import pytest

from domain.deploy_plan import ProviderSettings, ServiceFacts, plan_deploy, plan_removal
from domain.lifecycle_plan import plan_change_plan, plan_suspend, plan_unsuspend
from domain.placement import Placement
from domain.server import ServerFacts
from ops.adapters.deploy_planner import DeployPlanner
from tests.support.plans import (
    IPS,
    PLAN,
    PROVIDER,
    SERVERS,
    SPLIT,
    UNIFIED,
    assert_well_formed,
    by_key,
    facts,
    vanity,
)
from tests.support.services import ordered


@pytest.mark.parametrize(
    ("service", "placement", "provider"),
    [
        (facts(plan=PLAN), SPLIT, None),
        (facts("unified"), UNIFIED, None),
        (vanity(), SPLIT, PROVIDER),
    ],
    ids=["split", "unified", "vanity"],
)
def test_ssl_off_plans_exactly_as_before(
    service: ServiceFacts, placement: Placement, provider: ProviderSettings | None
) -> None:
    plain = plan_deploy(service, placement, provider, IPS)
    assert plan_deploy(service, placement, provider, IPS, ssl=False) == plain
    assert not [s for s in plain if s.role == "ssl"]
    with_ssl = plan_deploy(service, placement, provider, IPS, ssl=True)
    assert with_ssl[: len(plain)] == plain  # the same chain, the ssl steps after it
    for run in (plan_removal, plan_suspend, plan_unsuspend, plan_change_plan):
        assert not [s for s in run(service, placement, provider, IPS) if s.role == "ssl"]


def test_split_ends_with_web_and_mail_certificates() -> None:
    steps = plan_deploy(facts(plan=PLAN), SPLIT, None, IPS, ssl=True)
    assert_well_formed(steps)
    keys = by_key(steps)
    web, mail = keys["ssl.web"], keys["ssl.mail"]
    assert [s.step for s in steps[-2:]] == ["ssl.web", "ssl.mail"]
    assert (web.role, web.action, web.server_id) == ("ssl", "seed_certificate", "web1")
    assert web.depends_on == ("web.domain", "web.php", "dns.records@dns1", "dns.records@dns2")
    assert (mail.role, mail.server_id) == ("ssl", "mail1")
    assert mail.depends_on == ("mail.domain", "dns.records@dns1", "dns.records@dns2")
    user = keys["web.user"].params["user"]
    assert web.params == {
        "role": "web",
        "names": ["shop.example.com", "www.shop.example.com"],
        "user": user,
        "domain": "shop.example.com",
        "ip": IPS["web1"],
        "dns": [
            {"server_id": "dns1", "user": user, "zone": "shop.example.com"},
            {"server_id": "dns2", "user": user, "zone": "shop.example.com"},
        ],
        "shared": None,
        "provider_domain": None,
        "owner": "42",
    }
    assert mail.params["names"] == ["mail.shop.example.com", "webmail.shop.example.com"]
    assert mail.params["ip"] == IPS["mail1"]


def test_unified_puts_both_certificates_on_its_one_node() -> None:
    steps = plan_deploy(facts("unified"), UNIFIED, None, IPS, ssl=True)
    assert_well_formed(steps)
    keys = by_key(steps)
    assert keys["ssl.web"].server_id == keys["ssl.mail"].server_id == "all1"
    assert keys["ssl.web"].depends_on == ("web.domain", "dns.records@all1")


def test_vanity_is_served_the_providers_wildcard() -> None:
    steps = plan_deploy(vanity(), SPLIT, PROVIDER, IPS, ssl=True)
    assert_well_formed(steps)
    web = by_key(steps)["ssl.web"]
    assert steps[-1] is web and "ssl.mail" not in by_key(steps)
    assert web.depends_on == ("web.domain", "dns.record@dns1", "dns.record@dns2")
    assert web.params["names"] == ["bob.example.net"]
    assert web.params["shared"] == "wildcard"
    assert web.params["provider_domain"] == "example.net"
    assert web.params["dns"][0] == {"server_id": "dns1", "user": "sharedns", "zone": "example.net"}


class _Registry:
    def ips(self) -> dict[str, str]:
        return dict(IPS)

    def servers(self) -> list[ServerFacts]:
        return SERVERS


def test_the_planner_adds_the_ssl_steps_to_deploy_and_reset_only_when_on() -> None:
    service = ordered()
    placement = SPLIT.to_json()
    off = DeployPlanner(_Registry(), None)  # type: ignore[arg-type]
    on = DeployPlanner(_Registry(), None, ssl=True)  # type: ignore[arg-type]
    for kind in ("deploy", "reset"):
        assert not [s for s in off.steps(service, placement, kind) if s.role == "ssl"]
        assert [s.step for s in on.steps(service, placement, kind) if s.role == "ssl"] == [
            "ssl.web",
            "ssl.mail",
        ]
    for kind in ("terminate", "suspend", "unsuspend", "change_plan"):
        assert on.steps(service, placement, kind) == off.steps(service, placement, kind)
