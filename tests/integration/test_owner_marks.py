"""Owner marks against real SimNodes over SSH: one service's steps never adopt, change or remove
another's user, mailbox or record, even when intake is bypassed (a stale message, a thing made
by hand, two services whose plans collide), and still adopt and remove their own.

Service A (2101) deploys first; service B (2102) then runs its own steps on the very same
names. Each attack ends with every node's whole state — A's user, domains, mailbox password,
quota and aliases, records, serials — byte for byte what it was before B started.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from domain.deploy_plan import ProviderSettings, ServiceFacts, plan_deploy, plan_removal
from domain.lifecycle_plan import plan_change_plan, plan_suspend, plan_unsuspend
from domain.placement import Placement
from handlers.hestia_command import NodeError, PermanentNodeError, TransientNodeError
from handlers.hestia_driver import HestiaDriver
from handlers.step import StepOutcome
from ops.devtools.simnode import Faults, SimNode, read_state_json
from tests.support.simnode_driver import nodes_and_drivers
from tests.support.steps import run_steps, step

A, B = "2101", "2102"
PROVIDER = ProviderSettings("hoster.test", "hoster", "hoster")
SHOP_MAILBOX = {"user": "hoster", "domain": "hoster.test", "account": "shop"}
SHOP_RECORD = {
    "user": "hoster",
    "domain": "hoster.test",
    "record": "shop",
    "type": "A",
    "value": "127.0.0.1",
}
DNS_NODES = ("dns1", "dns2")

Nodes = dict[str, tuple[SimNode, HestiaDriver]]


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[Nodes]:
    """web1, mail1, dns1 and dns2, each a node of its own."""
    found = await nodes_and_drivers(tmp_path, ["web1", "mail1", *DNS_NODES])
    yield found
    for node, driver in found.values():
        await driver.close()
        await node.stop()


def snapshot(nodes: Nodes) -> dict[str, str]:
    """Every node's whole state as canonical JSON text."""
    return {server_id: read_state_json(node.data_dir) for server_id, (node, _) in nodes.items()}


def drivers(nodes: Nodes) -> dict[str, HestiaDriver]:
    return {server_id: driver for server_id, (_, driver) in nodes.items()}


async def provision_provider(nodes: Nodes) -> None:
    """The provider's shared mail user and domain, and its zone on every DNS node, by hand."""
    mail = nodes["mail1"][1]
    await mail.check(["v-add-user", "hoster", "Provider-pass-1", "postmaster@hoster.test"])
    await mail.check(["v-add-mail-domain", "hoster", "hoster.test"])
    for dns in DNS_NODES:
        driver = nodes[dns][1]
        await driver.check(["v-add-user", "hoster", "Provider-pass-1", "hostmaster@hoster.test"])
        await driver.check(["v-add-dns-domain", "hoster", "hoster.test", "127.0.0.1"])


async def refused(
    driver: HestiaDriver, action: str, params: dict[str, Any], message: str
) -> PermanentNodeError:
    with pytest.raises(PermanentNodeError, match=message) as caught:
        await step(driver, action, params)
    return caught.value


async def test_a_second_service_cannot_adopt_change_or_remove_another_services_mailbox(
    nodes: Nodes,
) -> None:
    await provision_provider(nodes)
    mail = nodes["mail1"][1]
    box = {**SHOP_MAILBOX, "password": "A-secret-1", "quota": 100}
    await step(mail, "ensure_mailbox", {**box, "owner": A})
    before = snapshot(nodes)
    theirs = r"mailbox shop@hoster\.test on mail1 belongs to another service"
    mine = {**SHOP_MAILBOX, "owner": B}
    await refused(mail, "ensure_mailbox", {**mine, "password": "B-pass-22"}, f"conflict: {theirs}")
    await refused(mail, "remove_mailbox", mine, f"refused: {theirs}.*; left as it is")
    await refused(mail, "suspend_mailbox", mine, f"conflict: {theirs}")
    await refused(mail, "ensure_mailbox_quota", {**mine, "quota": 5}, f"conflict: {theirs}")
    await refused(mail, "unsuspend_mailbox", {**mine, "quota": 5}, f"conflict: {theirs}")
    assert snapshot(nodes) == before
    # and with A's mailbox suspended, B cannot open it again either
    await step(mail, "suspend_mailbox", {**SHOP_MAILBOX, "owner": A})
    before = snapshot(nodes)
    await refused(mail, "unsuspend_mailbox", mine, f"conflict: {theirs}")
    assert snapshot(nodes) == before


async def test_a_mailbox_made_by_hand_is_neither_adopted_nor_removed(nodes: Nodes) -> None:
    await provision_provider(nodes)
    mail = nodes["mail1"][1]
    await mail.check(["v-add-mail-account", "hoster", "hoster.test", "shop", "Hand-made-1"])
    before = snapshot(nodes)
    unmarked = r"mailbox shop@hoster\.test on mail1 carries no hostwright owner mark"
    mine = {**SHOP_MAILBOX, "owner": B}
    await refused(mail, "ensure_mailbox", {**mine, "password": "B-pass-22"}, unmarked)
    await refused(mail, "remove_mailbox", mine, f"refused: {unmarked}")
    await refused(mail, "suspend_mailbox", mine, unmarked)
    assert snapshot(nodes) == before


async def test_a_label_that_is_another_mailboxs_alias_is_not_taken(nodes: Nodes) -> None:
    await provision_provider(nodes)
    mail = nodes["mail1"][1]
    await step(mail, "ensure_mailbox", {**SHOP_MAILBOX, "password": "A-secret-1", "owner": A})
    alias = ["v-add-mail-account-alias", "hoster", "hoster.test", "shop", "sales"]
    await mail.check(alias)  # staff gave A's mailbox a second address
    before = snapshot(nodes)
    sales = {**SHOP_MAILBOX, "account": "sales", "password": "B-pass-22", "owner": B}
    message = r"conflict: sales@hoster\.test on mail1 is an alias of another mailbox"
    await refused(mail, "ensure_mailbox", sales, message)
    assert snapshot(nodes) == before


async def test_a_second_service_cannot_adopt_switch_or_remove_another_services_records(
    nodes: Nodes,
) -> None:
    """On every DNS node."""
    await provision_provider(nodes)
    for dns in DNS_NODES:
        await step(nodes[dns][1], "ensure_dns_record", {**SHOP_RECORD, "owner": A})
    before = snapshot(nodes)
    mine = {**SHOP_RECORD, "owner": B}
    for dns in DNS_NODES:
        driver = nodes[dns][1]
        theirs = rf"record shop.* in hoster\.test on {dns} belongs to another service"
        await refused(driver, "ensure_dns_record", mine, f"conflict: {theirs}")
        await refused(driver, "remove_dns_record", mine, f"refused: {theirs}")
        await refused(driver, "suspend_dns_record", mine, f"conflict: {theirs}")
        await refused(driver, "unsuspend_dns_record", mine, f"conflict: {theirs}")
        # another value under the same name is no way in either
        await refused(driver, "ensure_dns_record", {**mine, "value": "127.0.0.2"}, theirs)
    assert snapshot(nodes) == before


async def test_a_record_made_by_hand_is_neither_adopted_nor_removed(nodes: Nodes) -> None:
    await provision_provider(nodes)
    for dns in DNS_NODES:
        argv = ["v-add-dns-record", "hoster", "hoster.test", "shop", "A", "127.0.0.1"]
        await nodes[dns][1].check(argv)
    before = snapshot(nodes)
    mine = {**SHOP_RECORD, "owner": B}
    for dns in DNS_NODES:
        driver = nodes[dns][1]
        unmarked = rf"record shop.* in hoster\.test on {dns} carries no hostwright owner mark"
        await refused(driver, "ensure_dns_record", mine, f"conflict: {unmarked}")
        await refused(driver, "remove_dns_record", mine, f"refused: {unmarked}")
        await refused(driver, "suspend_dns_record", mine, unmarked)
    assert snapshot(nodes) == before


async def test_an_order_for_a_taken_label_fails_and_its_terminate_leaves_the_first_intact(
    nodes: Nodes,
) -> None:
    """The issue's sequence: B orders A's label, fails on the web conflict, is terminated."""
    await provision_provider(nodes)
    placement = Placement("web1", "mail1", DNS_NODES)
    first = ServiceFacts(A, "vanity", "shop.hoster.test", label="shop")
    assert not failures(
        await run_steps(drivers(nodes), plan_deploy(first, placement, PROVIDER, IPS))
    )
    before = snapshot(nodes)
    second = ServiceFacts(B, "vanity", "shop.hoster.test", label="shop")
    deploy = failures(
        await run_steps(drivers(nodes), plan_deploy(second, placement, PROVIDER, IPS))
    )
    assert (
        deploy["web.domain"] == "conflict: shop.hoster.test is owned by " + first.user + " on web1"
    )
    assert "belongs to another service (hostwright.owner.2101)" in deploy["mail.mailbox"]
    for dns in DNS_NODES:
        assert "belongs to another service (hostwright-owner=2101)" in deploy[f"dns.record@{dns}"]
    removal = plan_removal(second, placement, PROVIDER, IPS)
    left = failures(await run_steps(drivers(nodes), removal))
    assert set(left) == {"remove.mail.mailbox", *(f"remove.dns.record@{d}" for d in DNS_NODES)}
    assert all(error.startswith("refused: ") for error in left.values()), left
    # B's own web user came and went; everything of A's, on every node, is as it was
    assert snapshot(nodes) == before


def own_domain(mode: str, service_id: str) -> ServiceFacts:
    """Two orders for shop.test with the same username: the same contact, webmaster@shop.test."""
    return ServiceFacts(service_id, mode, "shop.test", username="shopuser")


PLACEMENTS = {
    "split": Placement("web1", "mail1", DNS_NODES),
    "unified": Placement("web1", "web1", ("web1",)),
}
IPS = {server_id: "127.0.0.1" for server_id in ("web1", "mail1", *DNS_NODES)}


def failures(outcomes: Mapping[str, StepOutcome | NodeError]) -> dict[str, str]:
    return {k: str(o) for k, o in outcomes.items() if isinstance(o, NodeError)}


@pytest.mark.parametrize("mode", ["split", "unified"])
async def test_an_order_for_the_same_domain_and_username_cannot_take_or_delete_the_users_account(
    nodes: Nodes, mode: str
) -> None:
    placement = PLACEMENTS[mode]
    first = await run_steps(drivers(nodes), plan_deploy(own_domain(mode, A), placement, None, IPS))
    assert not failures(first)
    before = snapshot(nodes)
    second = own_domain(mode, B)
    runs = {
        "deploy": plan_deploy,
        "suspend": plan_suspend,
        "unsuspend": plan_unsuspend,
        "change plan": plan_change_plan,
        "terminate": plan_removal,
    }
    for run, plan in runs.items():
        steps = plan(second, placement, None, IPS)
        outcomes = await run_steps(drivers(nodes), steps)
        touching = [s.step for s in steps if s.action != "ensure_package"]
        assert set(failures(outcomes)) >= set(touching), (run, outcomes)
        for step_key in touching:
            error = str(outcomes[step_key])
            assert "user shopuser on" in error and "belongs to another service" in error, error
            assert "(hostwright service 2101)" in error, error
        assert snapshot(nodes) == before, f"{run} changed a node"


async def test_a_service_adopts_its_own_things_on_a_retry_and_removes_them_on_terminate(
    nodes: Nodes,
) -> None:
    await provision_provider(nodes)
    placement = Placement("web1", "mail1", DNS_NODES)
    vanity = ServiceFacts(B, "vanity", "shop.hoster.test", label="shop", plan={"disk_mb": 10})
    split = own_domain("split", A)
    provider_before = snapshot(nodes)
    for service, provider in ((vanity, PROVIDER), (split, None)):
        steps = plan_deploy(service, placement, provider, IPS)
        first = await run_steps(drivers(nodes), steps)
        assert not failures(first)
        deployed = snapshot(nodes)
        assert f"hostwright service {service.service_id}" in deployed["web1"]  # its user's name
        again = await run_steps(drivers(nodes), steps)
        assert not failures(again)
        assert not [k for k, o in again.items() if isinstance(o, StepOutcome) and o.changed]
        assert snapshot(nodes) == deployed
    mailboxes = await nodes["mail1"][1].list_json(["v-list-mail-accounts", "hoster", "hoster.test"])
    assert mailboxes["shop"]["ALIAS"] == f"hostwright.owner.{B}"
    for dns in DNS_NODES:
        zone = await nodes[dns][1].list_json(["v-list-dns-records", "hoster", "hoster.test"])
        shop = sorted((r["TYPE"], r["VALUE"]) for r in zone.values() if r["RECORD"] == "shop")
        assert shop == [("A", "127.0.0.1"), ("TXT", f"hostwright-owner={B}")], dns
    for service, provider in ((vanity, PROVIDER), (split, None)):
        removal = await run_steps(drivers(nodes), plan_removal(service, placement, provider, IPS))
        assert not failures(removal)
    after = snapshot(nodes)
    for server_id, state in after.items():
        assert "shopuser" not in state and "hostwright" not in state, server_id
        assert ('"shop"' in state) == ('"shop"' in provider_before[server_id]), server_id


async def test_a_record_whose_mark_was_written_before_a_crash_is_finished_on_the_retry(
    nodes: Nodes,
) -> None:
    await provision_provider(nodes)
    driver = nodes["dns1"][1]
    zone = ["v-add-dns-record", "hoster", "hoster.test"]
    await driver.check([*zone, "shop", "TXT", f"hostwright-owner={B}"])  # the crash came here
    outcome, _ = await step(driver, "ensure_dns_record", {**SHOP_RECORD, "owner": B})
    assert outcome.changed
    records = await driver.list_json(["v-list-dns-records", "hoster", "hoster.test"])
    shop = sorted((r["TYPE"], r["VALUE"]) for r in records.values() if r["RECORD"] == "shop")
    assert shop == [("A", "127.0.0.1"), ("TXT", f"hostwright-owner={B}")]
    # a removal that stopped after the record leaves the mark, which the retry takes away
    ident = next(i for i, r in records.items() if r["RECORD"] == "shop" and r["TYPE"] == "A")
    await driver.check(["v-delete-dns-record", "hoster", "hoster.test", ident])
    outcome, _ = await step(driver, "remove_dns_record", {**SHOP_RECORD, "owner": B})
    assert outcome.changed
    records = await driver.list_json(["v-list-dns-records", "hoster", "hoster.test"])
    assert not [r for r in records.values() if r["RECORD"] == "shop"]


async def test_a_mailbox_that_could_not_be_marked_is_taken_back_and_made_again(
    nodes: Nodes,
) -> None:
    await provision_provider(nodes)
    node, mail = nodes["mail1"]
    box = {**SHOP_MAILBOX, "password": "B-pass-22", "owner": B}
    node.set_faults(Faults(fail_commands={"v-add-mail-account-alias": 20}))
    with pytest.raises(TransientNodeError):
        await step(mail, "ensure_mailbox", box)
    accounts = await mail.list_json(["v-list-mail-accounts", "hoster", "hoster.test"])
    assert "shop" not in accounts, "an unmarked mailbox was left behind"
    node.set_faults(Faults())
    outcome, _ = await step(mail, "ensure_mailbox", box)
    assert outcome.changed
    accounts = await mail.list_json(["v-list-mail-accounts", "hoster", "hoster.test"])
    assert accounts["shop"]["ALIAS"] == f"hostwright.owner.{B}"
