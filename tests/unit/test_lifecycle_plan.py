"""Suspend, unsuspend and change-plan plans per mode, the run kinds of the DeployPlanner, and
the Vanity invariant for them as a property."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.commands import parse_order
from domain.deploy_plan import (
    ProviderSettings,
    ServiceFacts,
    StepSpec,
    plan_deploy,
    plan_removal,
)
from domain.errors import Conflict, InvalidInput
from domain.hestia_package import content_package
from domain.lifecycle_plan import plan_change_plan, plan_suspend, plan_unsuspend
from domain.placement import Placement
from domain.provider_settings import RESERVED_VANITY_LABELS
from domain.server import ServerFacts
from domain.service import Service
from ops.adapters.deploy_planner import RUN_KINDS, DeployPlanner, PlanFunction
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
    labels,
    placements,
    providers,
    users,
    vanity,
)

Plan = PlanFunction
SWITCHES: list[tuple[str, Plan]] = [("suspend", plan_suspend), ("unsuspend", plan_unsuspend)]
LIFECYCLE: list[Plan] = [plan_suspend, plan_unsuspend, plan_change_plan]


def shape(steps: list[StepSpec]) -> list[tuple[str, str, str, tuple[str, ...]]]:
    return [(s.step, s.action, s.server_id, s.depends_on) for s in steps]


@pytest.mark.parametrize(("kind", "plan"), SWITCHES)
def test_split_switches_the_user_on_every_node_at_once(kind: str, plan: Plan) -> None:
    steps = plan(facts(plan=PLAN), SPLIT, None, IPS)
    assert_well_formed(steps)
    assert shape(steps) == [
        (f"{kind}.web.user", f"{kind}_user", "web1", ()),
        (f"{kind}.mail.user", f"{kind}_user", "mail1", ()),
        (f"{kind}.dns.user@dns1", f"{kind}_user", "dns1", ()),
        (f"{kind}.dns.user@dns2", f"{kind}_user", "dns2", ()),
    ]
    owner = {"user": facts().user, "owner": "42"}
    assert all(step.params == owner for step in steps)
    assert [s.role for s in steps] == ["web", "mail", "dns", "dns"]


@pytest.mark.parametrize(("kind", "plan"), SWITCHES)
def test_a_node_serving_several_roles_is_switched_once(kind: str, plan: Plan) -> None:
    assert shape(plan(facts("unified"), UNIFIED, None, IPS)) == [
        (f"{kind}.web.user", f"{kind}_user", "all1", ()),
    ]
    shared = Placement("web1", "all1", ("all1", "dns1"))
    assert [s.step for s in plan(facts(), shared, None, IPS)] == [
        f"{kind}.web.user",
        f"{kind}.mail.user",
        f"{kind}.dns.user@dns1",
    ]


def test_vanity_suspend_names_its_user_mailbox_and_record_only() -> None:
    steps = plan_suspend(vanity(), SPLIT, PROVIDER, IPS)
    assert_well_formed(steps)
    assert [(s.step, s.action, s.server_id, s.params) for s in steps] == [
        ("suspend.web.user", "suspend_user", "web1",
         {"user": vanity().user, "owner": "42"}),
        ("suspend.mail.mailbox", "suspend_mailbox", "mail1",
         {"user": "sharedmail", "domain": "example.net", "account": "bob", "owner": "42"}),
        *[
            (f"suspend.dns.record@{dns}", "suspend_dns_record", dns,
             {"user": "sharedns", "domain": "example.net", "record": "bob", "type": "A",
              "value": "192.0.2.1", "owner": "42"})
            for dns in ("dns1", "dns2")
        ],
    ]  # fmt: skip
    assert not any(step.depends_on for step in steps)


def test_vanity_unsuspend_carries_the_mailbox_quota_of_the_plan() -> None:
    plain = by_key(plan_unsuspend(vanity(), SPLIT, PROVIDER, IPS))
    assert "quota" not in plain["unsuspend.mail.mailbox"].params
    quota = facts("vanity", domain="bob.example.net", label="bob", plan={"mailbox_quota_mb": 250})
    steps = by_key(plan_unsuspend(quota, SPLIT, PROVIDER, IPS))
    assert steps["unsuspend.mail.mailbox"].params["quota"] == 250
    assert (
        "quota"
        not in by_key(plan_suspend(quota, SPLIT, PROVIDER, IPS))["suspend.mail.mailbox"].params
    )
    # the record follows the provider's published address, as the deploy put it there
    moved = ProviderSettings("example.net", "sharedmail", "sharedns", web_ip="2001:db8::7")
    record = by_key(plan_unsuspend(vanity(provider=moved), SPLIT, moved, IPS))
    params = record["unsuspend.dns.record@dns2"].params
    assert (params["type"], params["value"]) == ("AAAA", "2001:db8::7")


def test_split_change_plan_sets_the_package_and_user_on_every_node() -> None:
    service = facts(plan=PLAN)
    steps = plan_change_plan(service, SPLIT, None, IPS)
    assert_well_formed(steps)
    assert shape(steps) == [
        ("change_plan.web.package", "ensure_package", "web1", ()),
        ("change_plan.web.user", "ensure_user", "web1", ("change_plan.web.package",)),
        ("change_plan.web.packages", "remove_unused_packages", "web1", ("change_plan.web.user",)),
        ("change_plan.mail.user", "ensure_user", "mail1", ()),
        (
            "change_plan.mail.packages",
            "remove_unused_packages",
            "mail1",
            ("change_plan.mail.user",),
        ),
        ("change_plan.dns.user@dns1", "ensure_user", "dns1", ()),
        (
            "change_plan.dns.packages@dns1",
            "remove_unused_packages",
            "dns1",
            ("change_plan.dns.user@dns1",),
        ),
        ("change_plan.dns.user@dns2", "ensure_user", "dns2", ()),
        (
            "change_plan.dns.packages@dns2",
            "remove_unused_packages",
            "dns2",
            ("change_plan.dns.user@dns2",),
        ),
    ]
    # the same package and user as the deploy makes, so a redeploy agrees with it
    deployed = by_key(plan_deploy(service, SPLIT, None, IPS))
    changed = by_key(steps)
    for key in ("web.package", "web.user", "mail.user", "dns.user@dns1", "dns.user@dns2"):
        assert changed[f"change_plan.{key}"].params == deployed[key].params
    assert changed["change_plan.web.package"].params == {
        "package": content_package(PLAN),
        "plan": {"disk_mb": 1000, "mail_accounts": None},
    }
    unified = plan_change_plan(facts("unified", plan=PLAN), UNIFIED, None, IPS)
    assert [s.step for s in unified] == [
        "change_plan.web.package",
        "change_plan.web.user",
        "change_plan.web.packages",
    ]


def test_vanity_change_plan_never_names_the_providers_package_or_users() -> None:
    steps = plan_change_plan(vanity(), SPLIT, PROVIDER, IPS)
    assert [(s.step, s.server_id) for s in steps] == [
        ("change_plan.web.package", "web1"),
        ("change_plan.web.user", "web1"),
        ("change_plan.web.packages", "web1"),
    ]
    assert by_key(steps)["change_plan.web.user"].params["user"] == vanity().user
    service = facts(
        "vanity", domain="bob.example.net", label="bob",
        plan={"package": "gold", "mailbox_quota_mb": 0},
    )  # fmt: skip
    quota = by_key(plan_change_plan(service, SPLIT, PROVIDER, IPS))
    assert quota["change_plan.mail.mailbox_quota"].params == {
        "user": "sharedmail", "domain": "example.net", "account": "bob", "quota": 0,
        "owner": "42",
    }  # fmt: skip
    assert quota["change_plan.mail.mailbox_quota"].server_id == "mail1"
    assert "mailbox_quota_mb" not in quota["change_plan.web.package"].params["plan"]
    bad = facts("vanity", domain="bob.example.net", label="bob", plan={"mailbox_quota_mb": -1})
    with pytest.raises(InvalidInput, match="mailbox_quota_mb"):
        plan_change_plan(bad, SPLIT, PROVIDER, IPS)


@pytest.mark.parametrize("plan", LIFECYCLE)
@pytest.mark.parametrize(
    ("service", "provider", "message"),
    [
        (vanity(), None, "needs the provider settings"),
        (vanity(label="postmaster"), PROVIDER, "reserved"),
        (facts(username="sharedmail"), PROVIDER, "shared users"),
        (facts(domain="example.net"), PROVIDER, "provider's own domain"),
    ],
)
def test_lifecycle_plans_that_could_touch_the_providers_things_are_refused(
    plan: Plan, service: ServiceFacts, provider: ProviderSettings | None, message: str
) -> None:
    with pytest.raises(Conflict, match=message):
        plan(service, SPLIT, provider, IPS)


@settings(max_examples=200, deadline=None)
@given(label=labels, provider=providers, placement=placements, username=st.none() | users)
def test_vanity_lifecycle_steps_touch_only_the_labels_own_things(
    label: str, provider: ProviderSettings, placement: Placement, username: str | None
) -> None:
    service = facts(
        "vanity", domain=f"{label}.{provider.provider_domain}", label=label, username=username,
        plan={"package": "gold", "mailbox_quota_mb": 100},
    )  # fmt: skip
    try:
        steps = [step for plan in LIFECYCLE for step in plan(service, placement, provider, IPS)]
    except Conflict:
        assert label in RESERVED_VANITY_LABELS or service.user in provider.users
        return
    own_domain = f"{label}.{provider.provider_domain}"
    for step in steps:
        params = step.params
        if step.action.endswith("_dns_record"):
            assert (params["user"], params["domain"]) == (
                provider.provider_dns_user,
                provider.provider_domain,
            )
            assert params["record"] == label
        elif "mailbox" in step.action:
            assert (params["user"], params["domain"], params["account"]) == (
                provider.shared_mail_user,
                provider.provider_domain,
                label,
            )
        else:
            assert params.get("domain", own_domain) == own_domain, step
            assert params.get("user", service.user) == service.user not in provider.users
            assert step.action in (
                "ensure_package",
                "ensure_user",
                "suspend_user",
                "unsuspend_user",
                "remove_unused_packages",  # node-wide, but only hostwright's unused packages
            ), step


class FakeRegistry:
    def servers(self) -> list[ServerFacts]:
        return SERVERS

    def ips(self) -> dict[str, str]:
        return IPS

    def refresh(self) -> None:
        pass


def ordered(mode: str = "split") -> Service:
    order = parse_order(
        {
            "service_id": 42,
            "client_id": 1,
            "mode": mode,
            "domain": "shop.example.com",
            "plan": {"package": "gold"},
        },
        now=datetime(2026, 11, 23, 12, 0, tzinfo=UTC),
        actor="whmcs",
    )
    return Service.order(order, None)


def test_the_planner_knows_every_run_kind() -> None:
    planner = DeployPlanner(FakeRegistry(), None)  # type: ignore[arg-type]
    service = ordered()
    placement = {"web_server": "web1", "mail_server": "mail1", "dns_servers": ["dns1"]}
    assert set(RUN_KINDS) == {
        "deploy",
        "reset",
        "terminate",
        "suspend",
        "unsuspend",
        "change_plan",
        "change_password",  # tests/unit/test_change_password.py
    }
    # every DNS node registered now is planned, not only the recorded ones
    nodes = Placement("web1", "mail1", ("dns1", "dns2", "all1"))
    service_facts = ServiceFacts.from_service(service)
    expected = {
        "deploy": plan_deploy(service_facts, nodes, None, IPS),
        "terminate": plan_removal(service_facts, nodes, None, IPS),
        "suspend": plan_suspend(service_facts, nodes, None, IPS),
        "unsuspend": plan_unsuspend(service_facts, nodes, None, IPS),
        "change_plan": plan_change_plan(service_facts, nodes, None, IPS),
    }
    for kind, steps in expected.items():
        assert planner.steps(service, placement, kind) == steps, kind
    reset = planner.steps(service, placement, "reset")
    removal = tuple(s.step for s in expected["terminate"])
    assert reset[: len(removal)] == expected["terminate"]
    for built, deployed in zip(reset[len(removal) :], expected["deploy"], strict=True):
        assert built.depends_on == (deployed.depends_on or removal)
    with pytest.raises(ValueError, match="unknown run kind 'verify'"):
        planner.steps(service, placement, "verify")
