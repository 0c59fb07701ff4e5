"""Deploy and removal plans per mode, placement, and the Vanity invariant as a property."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.commands import parse_order
from domain.deploy_plan import (
    ProviderSettings,
    ServiceFacts,
    plan_deploy,
    plan_removal,
)
from domain.errors import Conflict, InvalidInput
from domain.hestia_package import content_package
from domain.names import validate_username
from domain.placement import Placement, placement_for
from domain.provider_settings import RESERVED_VANITY_LABELS
from domain.server import ServerFacts
from domain.service import Service
from domain.step_chain import derive_username
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

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
DEFAULT = content_package({})  # a plan that sets nothing


def test_split_builds_the_chain_on_each_node() -> None:
    steps = plan_deploy(facts(plan=PLAN), SPLIT, None, IPS)
    assert_well_formed(steps)
    assert [(s.step, s.action, s.server_id, s.depends_on) for s in steps] == [
        ("web.package", "ensure_package", "web1", ()),
        ("web.user", "ensure_user", "web1", ("web.package",)),
        ("web.domain", "ensure_web_domain", "web1", ("web.user",)),
        ("web.php", "ensure_php", "web1", ("web.domain",)),
        ("mail.user", "ensure_user", "mail1", ()),
        ("mail.domain", "ensure_mail_domain", "mail1", ("mail.user",)),
        ("mail.dkim", "ensure_dkim", "mail1", ("mail.domain",)),
        ("dns.user@dns1", "ensure_user", "dns1", ()),
        ("dns.zone@dns1", "ensure_dns_zone", "dns1", ("dns.user@dns1",)),
        ("dns.records@dns1", "ensure_dns_records", "dns1", ("dns.zone@dns1", "mail.dkim")),
        ("dns.user@dns2", "ensure_user", "dns2", ()),
        ("dns.zone@dns2", "ensure_dns_zone", "dns2", ("dns.user@dns2",)),
        ("dns.records@dns2", "ensure_dns_records", "dns2", ("dns.zone@dns2", "mail.dkim")),
    ]
    step = by_key(steps)
    quotas = {"disk_mb": 1000, "mail_accounts": None}
    package = content_package(PLAN)
    assert package.startswith("hw-") and package.endswith("-gold")
    assert step["web.package"].params == {"package": package, "plan": quotas}
    # every user step sees to the package itself, with the same quotas
    for key in ("web.user", "mail.user", "dns.user@dns1", "dns.user@dns2"):
        assert step[key].params["package"] == package
        assert step[key].params["plan"] == quotas
    assert step["web.php"].params["php_version"] == "8.2"
    assert step["web.domain"].params == {
        "user": facts().user,
        "domain": "shop.example.com",
        "ip": "192.0.2.1",
        "aliases": ["www.shop.example.com"],
        "owner": "42",
    }


@pytest.mark.parametrize("mode", ["split", "unified", "vanity"])
def test_every_step_but_the_shared_package_names_the_service_as_owner(mode: str) -> None:
    """The handlers mark what a step makes with ``owner`` and act only on what carries it."""
    service = vanity() if mode == "vanity" else facts(mode, plan=PLAN)
    placement = UNIFIED if mode == "unified" else SPLIT
    provider = PROVIDER if mode == "vanity" else None
    for steps in (
        plan_deploy(service, placement, provider, IPS),
        plan_removal(service, placement, provider, IPS),
    ):
        for step in steps:
            if step.action in ("ensure_package", "remove_unused_packages"):
                assert "owner" not in step.params, step
            else:
                assert step.params["owner"] == "42", step


def test_split_zone_records_point_web_and_mail_at_their_nodes() -> None:
    records = by_key(plan_deploy(facts(), SPLIT, None, IPS))["dns.records@dns1"].params["records"]
    assert all(record.pop("replace") is True for record in records)
    assert records == [
        {"record": "@", "type": "A", "value": "192.0.2.1"},
        {"record": "www", "type": "A", "value": "192.0.2.1"},
        {"record": "mail", "type": "A", "value": "192.0.2.3"},
        {"record": "webmail", "type": "A", "value": "192.0.2.3"},
        {"record": "@", "type": "MX", "value": "mail.shop.example.com", "priority": 10},
        {"record": "@", "type": "TXT", "value": "v=spf1 a mx ip4:192.0.2.3 -all"},
        {"record": "_dmarc", "type": "TXT", "value": "v=DMARC1; p=quarantine; pct=100"},
        {
            "record": "mail._domainkey",
            "type": "TXT",
            "value_from": {"step": "mail.dkim", "output": "dkim_txt"},
        },
    ]


def test_an_ipv6_mail_node_gets_aaaa_and_ip6_in_spf() -> None:
    placement = Placement("web1", "dns2", ("dns1",))
    records = plan_deploy(facts(), placement, None, IPS)[-1].params["records"]
    plain = [{k: v for k, v in record.items() if k != "replace"} for record in records]
    assert {"record": "mail", "type": "AAAA", "value": "2001:db8::4"} in plain
    assert {"record": "@", "type": "TXT", "value": "v=spf1 a mx ip6:2001:db8::4 -all"} in plain


def test_no_php_step_without_a_php_version() -> None:
    assert "web.php" not in by_key(plan_deploy(facts(), SPLIT, None, IPS))


def test_every_dns_server_gets_a_zone_and_its_records() -> None:
    placement = Placement("web1", "mail1", ("dns1", "dns2", "all1"))
    steps = plan_deploy(facts(), placement, None, IPS)
    for dns in placement.dns_servers:
        zone = by_key(steps)[f"dns.zone@{dns}"]
        records = by_key(steps)[f"dns.records@{dns}"]
        assert (zone.server_id, records.server_id) == (dns, dns)
        assert zone.step in records.depends_on and "mail.dkim" in records.depends_on


def test_unified_sets_the_node_up_once_and_runs_every_step_there() -> None:
    steps = plan_deploy(facts("unified", plan=PLAN), UNIFIED, None, IPS)
    assert_well_formed(steps)
    assert {s.server_id for s in steps} == {"all1"}
    assert [s.step for s in steps] == [
        "web.package",
        "web.user",
        "web.domain",
        "web.php",
        "mail.domain",
        "mail.dkim",
        "dns.zone@all1",
        "dns.records@all1",
    ]
    assert by_key(steps)["mail.domain"].depends_on == ("web.user",)


def test_split_on_a_node_with_two_roles_sets_it_up_once() -> None:
    steps = plan_deploy(facts(), Placement("all1", "all1", ("all1", "dns1")), None, IPS)
    assert_well_formed(steps)
    assert [s.action for s in steps].count("ensure_user") == 2  # all1 and dns1


def test_vanity_builds_only_its_own_site_mailbox_and_record() -> None:
    steps = plan_deploy(vanity(), SPLIT, PROVIDER, IPS)
    assert_well_formed(steps)
    user = vanity().user
    assert [(s.step, s.action, s.server_id, s.params) for s in steps] == [
        ("web.package", "ensure_package", "web1", {"package": DEFAULT, "plan": {}}),
        (
            "web.user",
            "ensure_user",
            "web1",
            {
                "user": user,
                "package": DEFAULT,
                "email": "bob@example.net",
                "password_sealed": None,
                "plan": {},
                "owner": "42",
            },
        ),
        (
            "web.domain",
            "ensure_web_domain",
            "web1",
            {
                "user": user,
                "domain": "bob.example.net",
                "ip": "192.0.2.1",
                "aliases": [],
                "owner": "42",
            },
        ),
        (
            "mail.mailbox",
            "ensure_mailbox",
            "mail1",
            {
                "user": "sharedmail",
                "domain": "example.net",
                "account": "bob",
                "password_sealed": None,
                "owner": "42",
            },
        ),
        *[
            (
                f"dns.record@{dns}",
                "ensure_dns_record",
                dns,
                {
                    "user": "sharedns",
                    "domain": "example.net",
                    "record": "bob",
                    "type": "A",
                    "value": "192.0.2.1",
                    "owner": "42",
                },
            )
            for dns in ("dns1", "dns2")
        ],
    ]


def test_vanity_mailbox_goes_to_the_providers_mail_node_and_web_ip_can_be_overridden() -> None:
    provider = ProviderSettings("example.net", "m", "d", mail_server="all1", web_ip="2001:db8::80")
    steps = by_key(plan_deploy(vanity(provider=provider), SPLIT, provider, IPS))
    assert steps["mail.mailbox"].server_id == "all1"
    assert (steps["dns.record@dns1"].params["type"], steps["dns.record@dns1"].params["value"]) == (
        "AAAA",
        "2001:db8::80",
    )


def test_split_removal_removes_what_it_built_users_last() -> None:
    steps = plan_removal(facts(), SPLIT, None, IPS)
    assert_well_formed(steps)
    assert [(s.step, s.action, s.depends_on) for s in steps] == [
        ("remove.web.domain", "remove_web_domain", ()),
        ("remove.mail.domain", "remove_mail_domain", ()),
        ("remove.dns.zone@dns1", "remove_dns_zone", ()),
        ("remove.dns.zone@dns2", "remove_dns_zone", ()),
        ("remove.web.user", "remove_user", ("remove.web.domain",)),
        ("remove.web.packages", "remove_unused_packages", ("remove.web.user",)),
        ("remove.mail.user", "remove_user", ("remove.mail.domain",)),
        ("remove.mail.packages", "remove_unused_packages", ("remove.mail.user",)),
        ("remove.dns.user@dns1", "remove_user", ("remove.dns.zone@dns1",)),
        ("remove.dns.packages@dns1", "remove_unused_packages", ("remove.dns.user@dns1",)),
        ("remove.dns.user@dns2", "remove_user", ("remove.dns.zone@dns2",)),
        ("remove.dns.packages@dns2", "remove_unused_packages", ("remove.dns.user@dns2",)),
    ]


def test_unified_removal_removes_the_one_user_after_everything_else() -> None:
    steps = plan_removal(facts("unified"), UNIFIED, None, IPS)
    assert_well_formed(steps)
    assert (steps[-1].action, steps[-1].depends_on) == ("remove_unused_packages", (steps[-2].step,))
    assert steps[-2].action == "remove_user"
    assert steps[-2].depends_on == (
        "remove.web.domain",
        "remove.mail.domain",
        "remove.dns.zone@all1",
    )


def test_removal_and_deploy_keys_never_clash() -> None:
    for service, placement, provider in (
        (facts(), SPLIT, None),
        (facts("unified"), UNIFIED, None),
        (vanity(), SPLIT, PROVIDER),
    ):
        deploy = {s.step for s in plan_deploy(service, placement, provider, IPS)}
        removal = {s.step for s in plan_removal(service, placement, provider, IPS)}
        assert not deploy & removal


def test_vanity_removal_leaves_the_providers_things_alone() -> None:
    steps = plan_removal(vanity(), SPLIT, PROVIDER, IPS)
    assert_well_formed(steps)
    assert [(s.action, s.params) for s in steps] == [
        ("remove_web_domain", {"user": vanity().user, "domain": "bob.example.net", "owner": "42"}),
        (
            "remove_mailbox",
            {"user": "sharedmail", "domain": "example.net", "account": "bob", "owner": "42"},
        ),
        *[
            (
                "remove_dns_record",
                {
                    "user": "sharedns",
                    "domain": "example.net",
                    "record": "bob",
                    "type": "A",
                    "value": "192.0.2.1",
                    "owner": "42",
                },
            )
        ]
        * 2,
        ("remove_user", {"user": vanity().user, "owner": "42"}),
        ("remove_unused_packages", {}),
    ]


@pytest.mark.parametrize(
    ("service", "provider", "message"),
    [
        (vanity(), None, "needs the provider settings"),
        (facts("vanity", domain="bob.other.net", label="bob"), PROVIDER, "is not <label>"),
        (vanity(label="mail"), PROVIDER, "reserved"),
        (vanity(label="postmaster"), PROVIDER, "reserved"),
        (vanity(label="shop"), ProviderSettings("example.net", "m", "d", None, None,
                                                frozenset({"shop"})), "reserved"),
        (facts(username="sharedmail"), PROVIDER, "shared users"),
        (facts("vanity", domain="bob.example.net", label="bob", username="sharedns"),
         PROVIDER, "shared users"),
        (facts(domain="example.net"), PROVIDER, "provider's own domain"),
    ],
)  # fmt: skip
def test_plans_that_could_touch_the_providers_things_are_refused(
    service: ServiceFacts, provider: ProviderSettings | None, message: str
) -> None:
    for plan in (plan_deploy, plan_removal):
        with pytest.raises(Conflict, match=message):
            plan(service, SPLIT, provider, IPS)


def test_a_node_without_an_ip_is_a_conflict() -> None:
    with pytest.raises(Conflict, match="web1 has no registered ip"):
        plan_deploy(facts(), SPLIT, None, {"mail1": "192.0.2.3"})


@pytest.mark.parametrize(
    ("domain", "service_id"),
    [
        ("shop.example.com", "42"),
        ("123-go.example.com", "1"),
        ("xn--mnchen-3ya.example", "9"),
        ("a" * 63 + ".example.com", "x" * 64),
        ("admin.example.com", "7"),
    ],
)
def test_derived_usernames_are_valid_and_stable(domain: str, service_id: str) -> None:
    name = derive_username(domain, service_id)
    assert validate_username(name) == name == derive_username(domain, service_id)
    assert len(name) <= 32
    assert derive_username(domain, service_id + "0") != name


def test_an_ordered_username_is_used_as_is() -> None:
    assert facts(username="customer1").user == "customer1"


def test_facts_come_from_the_service_aggregate() -> None:
    order = parse_order(
        {
            "service_id": 5,
            "client_id": 1,
            "mode": "vanity",
            "domain": "bob.example.net",
            "label": "bob",
            "plan": {"php_version": "8.3"},
        },
        now=NOW,
        actor="whmcs",
    )
    service_facts = ServiceFacts.from_service(Service.order(order, "sealed:x"))
    assert (service_facts.label, service_facts.password_sealed) == ("bob", "sealed:x")
    assert service_facts.plan["php_version"] == "8.3"
    assert "sealed" not in repr(service_facts)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"provider_domain": "Example.NET"}, "lowercase"),
        ({"provider_domain": "a;b"}, "domain"),
        ({"shared_mail_user": "$(x)"}, "shared_mail_user"),
        ({"provider_dns_user": "a b"}, "provider_dns_user"),
        ({"mail_server": "Mail 1"}, "server_id"),
        ({"web_ip": "1.2.3"}, "web_ip"),
    ],
)
def test_provider_settings_are_validated(changes: dict[str, str], message: str) -> None:
    fields = {"provider_domain": "example.net", "shared_mail_user": "m", "provider_dns_user": "d"}
    with pytest.raises(InvalidInput, match=message):
        ProviderSettings(**{**fields, **changes})  # type: ignore[arg-type]


# --- placement


def test_split_placement_is_deterministic_and_uses_every_dns_server() -> None:
    placement = placement_for("42", "split", SERVERS)
    assert placement == placement_for("42", "split", list(reversed(SERVERS)))
    assert placement.web_server in {"web1", "web2", "all1"}
    assert placement.mail_server in {"mail1", "all1"}
    assert placement.dns_servers == ("all1", "dns1", "dns2")


def test_placement_spreads_services_over_the_web_nodes() -> None:
    chosen = {placement_for(str(n), "split", SERVERS).web_server for n in range(50)}
    assert chosen == {"web1", "web2", "all1"}


def test_adding_a_web_node_moves_only_services_to_the_new_node() -> None:
    before = {n: placement_for(str(n), "split", SERVERS).web_server for n in range(200)}
    grown = [*SERVERS, ServerFacts("web3", ("web",), "192.0.2.30")]
    after = {n: placement_for(str(n), "split", grown).web_server for n in range(200)}
    assert {after[n] for n in range(200) if after[n] != before[n]} == {"web3"}


def test_load_counts_pick_the_least_loaded_node() -> None:
    load = {"web1": 5, "web2": 0, "all1": 3, "mail1": 1}
    placement = placement_for("42", "split", SERVERS, load=load)
    assert (placement.web_server, placement.mail_server) == ("web2", "mail1")


def test_unified_placement_needs_a_node_with_every_role() -> None:
    assert placement_for("42", "unified", SERVERS) == UNIFIED
    with pytest.raises(Conflict, match="all of the web, mail and dns roles"):
        placement_for("42", "unified", SERVERS[:5])


@pytest.mark.parametrize("missing", ["web", "mail", "dns"])
def test_a_missing_role_is_a_readable_conflict(missing: str) -> None:
    servers = [s for s in SERVERS if missing not in s.roles]
    with pytest.raises(Conflict, match=f"no registered server has the {missing} role"):
        placement_for("42", "vanity", servers)


def test_placement_refuses_an_unknown_mode_and_duplicate_servers() -> None:
    with pytest.raises(InvalidInput, match="mode"):
        placement_for("42", "cluster", SERVERS)
    with pytest.raises(InvalidInput, match="twice"):
        placement_for("42", "split", [*SERVERS, SERVERS[0]])


# --- the Vanity invariant


@settings(max_examples=300, deadline=None)
@given(label=labels, provider=providers, placement=placements, username=st.none() | users)
def test_vanity_steps_touch_only_the_labels_own_things(
    label: str, provider: ProviderSettings, placement: Placement, username: str | None
) -> None:
    service = facts(
        "vanity", domain=f"{label}.{provider.provider_domain}", label=label, username=username
    )
    try:
        steps = plan_deploy(service, placement, provider, IPS) + plan_removal(
            service, placement, provider, IPS
        )
    except Conflict:
        # refused outright: a reserved label, or a user name shared with the provider
        assert label in RESERVED_VANITY_LABELS or service.user in provider.users
        return
    own_domain = f"{label}.{provider.provider_domain}"
    for step in steps:
        params = step.params
        if step.action in ("ensure_dns_record", "remove_dns_record"):
            assert (params["domain"], params["record"]) == (provider.provider_domain, label)
            assert params["user"] == provider.provider_dns_user
        elif step.action in ("ensure_mailbox", "remove_mailbox"):
            assert (params["domain"], params["account"]) == (provider.provider_domain, label)
            assert params["user"] == provider.shared_mail_user
        else:
            assert params.get("domain", own_domain) == own_domain, step
            assert params.get("user", service.user) == service.user not in provider.users
            assert step.action in (
                "ensure_package",
                "ensure_user",
                "ensure_web_domain",
                "ensure_php",
                "remove_web_domain",
                "remove_user",
                "remove_unused_packages",  # node-wide, but only hostwright's unused packages
            ), step
