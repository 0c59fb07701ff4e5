"""Suspend, unsuspend and change-plan steps against a real SimNode, as planned by
domain/lifecycle_plan.py: idempotent, exact argv, and in vanity mode only the service's own
user, mailbox and record change."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from domain.deploy_plan import ProviderSettings, ServiceFacts, plan_deploy
from domain.hestia_package import content_package
from domain.lifecycle_plan import plan_change_plan, plan_suspend, plan_unsuspend
from domain.placement import Placement
from handlers.hestia_command import CommandResult, PermanentNodeError
from handlers.hestia_driver import HestiaDriver
from handlers.step import StepLog
from handlers.step_registry import STEP_ACTIONS
from ops.devtools.simnode import SimNode, read_command_log
from tests.support.simnode_driver import env  # noqa: F401 - the shared fixture
from tests.support.steps import ALICE, OWNER, changes, run_plan, step, twice

ONE_NODE = Placement("web1", "web1", ("web1",))
IPS = {"web1": "127.0.0.1"}
PROVIDER = ProviderSettings("hoster.test", "hoster", "hoster")
SHOP = ServiceFacts("7", "unified", "shop.test", plan={"package": "bronze", "disk_mb": 500})
BOB = ServiceFacts("42", "vanity", "bob.hoster.test", label="bob", plan={"package": "bronze"})


async def user_conf(driver: HestiaDriver, user: str) -> dict[str, Any]:
    return dict((await driver.list_json(["v-list-user", user]))[user])


async def test_suspend_twice_then_unsuspend_a_unified_service(
    env: tuple[SimNode, HestiaDriver],
) -> None:
    node, driver = env
    await run_plan(driver, plan_deploy(SHOP, ONE_NODE, None, IPS))
    suspend = plan_suspend(SHOP, ONE_NODE, None, IPS)
    assert [(s.step, s.action) for s in suspend] == [("suspend.web.user", "suspend_user")]
    assert await run_plan(driver, suspend) == {"suspend.web.user": True}
    assert changes(node)[-1] == ["v-suspend-user", SHOP.user]
    conf = await user_conf(driver, SHOP.user)
    assert (conf["SUSPENDED"], conf["SUSPENDED_WEB"], conf["SUSPENDED_MAIL"]) == ("yes", "1", "1")
    before = len(read_command_log(node.data_dir))
    assert await run_plan(driver, suspend) == {"suspend.web.user": False}
    # probed and left alone: not even a command that Hestia would refuse with exit 5
    assert [e["argv"][0] for e in read_command_log(node.data_dir)[before:]] == ["v-list-user"]
    unsuspend = plan_unsuspend(SHOP, ONE_NODE, None, IPS)
    assert await run_plan(driver, unsuspend) == {"unsuspend.web.user": True}
    assert changes(node)[-1] == ["v-unsuspend-user", SHOP.user]
    zone = await driver.list_json(["v-list-dns-domain", SHOP.user, "shop.test"])
    assert zone["shop.test"]["SUSPENDED"] == "no"
    assert await run_plan(driver, unsuspend) == {"unsuspend.web.user": False}


async def test_user_steps_refuse_what_is_not_theirs(env: tuple[SimNode, HestiaDriver]) -> None:
    node, driver = env
    owner = {"user": "alice", "owner": OWNER}
    with pytest.raises(PermanentNodeError, match="user alice does not exist; there is nothing"):
        await step(driver, "suspend_user", owner)
    await step(driver, "ensure_user", ALICE)
    with pytest.raises(PermanentNodeError, match="conflict: user alice on web1 belongs to another"):
        await step(driver, "suspend_user", {**owner, "owner": "8"})
    assert (await user_conf(driver, "alice"))["SUSPENDED"] == "no"
    await twice(node, driver, "suspend_user", owner)
    await twice(node, driver, "unsuspend_user", owner)


async def test_unsuspend_finishes_a_half_done_unsuspend(env: tuple[SimNode, HestiaDriver]) -> None:
    node, driver = env
    await step(driver, "ensure_user", ALICE)
    await step(
        driver, "ensure_web_domain", {"user": "alice", "owner": OWNER, "domain": "half.test"}
    )
    # v-unsuspend-user clears the user's mark before its domains: a crash can leave this
    await driver.check(["v-suspend-web-domain", "alice", "half.test"])
    outcome, _ = await step(driver, "unsuspend_user", {"user": "alice", "owner": OWNER})
    assert outcome.changed and changes(node)[-1] == ["v-unsuspend-user", "alice"]
    web = await driver.list_json(["v-list-web-domain", "alice", "half.test"])
    assert web["half.test"]["SUSPENDED"] == "no"


class RacingDriver:
    """A node where another run suspends the user between our probe and our command."""

    server_id = "web1"

    def __init__(self) -> None:
        self.probes = iter(["no", "yes"])
        self.ran: list[list[str]] = []

    async def run(self, argv: Sequence[str]) -> CommandResult:
        self.ran.append(list(argv))
        return CommandResult(5, "Error: user alice is suspended\n", "", 1.0)

    async def probe_json(self, argv: Sequence[str]) -> Any:
        mark = f"hostwright service {OWNER}"
        return {"alice": {"NAME": mark, "SUSPENDED": next(self.probes)}}

    async def list_json(self, argv: Sequence[str]) -> Any:
        raise AssertionError("not used")

    async def put_file(self, path: str, data: bytes, *, mode: int = 0o600) -> None:
        raise AssertionError("not used")

    async def remove_file(self, path: str) -> None:
        raise AssertionError("not used")

    async def put_private_files(self, directory: str, files: Mapping[str, bytes]) -> str:
        raise AssertionError("not used")

    async def put_fresh_file(self, root: str, name: str, data: bytes, *, mode: int) -> str:
        raise AssertionError("not used")

    async def remove_tree(self, directory: str) -> None:
        raise AssertionError("not used")


async def test_exit_5_on_suspend_means_done() -> None:
    driver = RacingDriver()
    params = {"user": "alice", "owner": OWNER}
    outcome = await STEP_ACTIONS["suspend_user"](driver, params, {}, StepLog())
    assert not outcome.changed and driver.ran == [["v-suspend-user", "alice"]]


async def set_up_provider(driver: HestiaDriver) -> dict[str, Any]:
    """The provider's user with its shared zone and mail domain, made by hand, and a second
    customer, carol (service 9)."""
    await driver.check(["v-add-user", "hoster", "x", "ops@hoster.test"])
    await driver.check(["v-add-dns-domain", "hoster", "hoster.test", "127.0.0.1"])
    await driver.check(["v-add-mail-domain", "hoster", "hoster.test", "yes", "yes", "no"])
    carol = {"user": "hoster", "domain": "hoster.test", "record": "carol", "type": "A"}
    await step(driver, "ensure_dns_record", {**carol, "value": "127.0.0.1", "owner": "9"})
    box = {"user": "hoster", "domain": "hoster.test", "account": "carol", "password": "pw123456"}
    await step(driver, "ensure_mailbox", {**box, "owner": "9"})
    await run_plan(driver, plan_deploy(BOB, ONE_NODE, PROVIDER, IPS))
    return dict(await driver.list_json(["v-list-dns-records", "hoster", "hoster.test"]))


async def provider_view(driver: HestiaDriver) -> dict[str, Any]:
    """What must never change: the provider's user, domains, other mailboxes and records."""
    user = await user_conf(driver, "hoster")
    records = await driver.list_json(["v-list-dns-records", "hoster", "hoster.test"])
    mailboxes = await driver.list_json(["v-list-mail-accounts", "hoster", "hoster.test"])
    return {
        "user": (user["SUSPENDED"], user["PACKAGE"]),
        "zone": (await driver.list_json(["v-list-dns-domain", "hoster", "hoster.test"]))[
            "hoster.test"
        ]["SUSPENDED"],
        "mail": (await driver.list_json(["v-list-mail-domain", "hoster", "hoster.test"]))[
            "hoster.test"
        ]["SUSPENDED"],
        "records": {i: r for i, r in records.items() if r["RECORD"] != "bob"},
        "mailboxes": {a: m for a, m in mailboxes.items() if a != "bob"},
    }


async def bob_state(driver: HestiaDriver) -> tuple[str, str, list[str]]:
    box = await driver.list_json(["v-list-mail-account", "hoster", "hoster.test", "bob"])
    records = await driver.list_json(["v-list-dns-records", "hoster", "hoster.test"])
    return (
        (await user_conf(driver, BOB.user))["SUSPENDED"],
        box["bob"]["SUSPENDED"],
        # its A record; the TXT owner mark beside it stays as it is
        [r["SUSPENDED"] for r in records.values() if (r["RECORD"], r["TYPE"]) == ("bob", "A")],
    )


async def test_vanity_suspend_touches_only_the_services_own_things(
    env: tuple[SimNode, HestiaDriver],
) -> None:
    node, driver = env
    await set_up_provider(driver)
    provider_before = await provider_view(driver)
    assert await bob_state(driver) == ("no", "no", ["no"])
    already = len(changes(node))
    suspend = plan_suspend(BOB, ONE_NODE, PROVIDER, IPS)
    assert all((await run_plan(driver, suspend)).values())
    assert await bob_state(driver) == ("yes", "yes", ["yes"])
    assert await provider_view(driver) == provider_before
    applied = changes(node)[already:]
    bob_id = applied[-1][3]
    assert applied == [
        ["v-suspend-user", BOB.user],
        ["v-suspend-mail-account", "hoster", "hoster.test", "bob"],
        ["v-suspend-dns-record", "hoster", "hoster.test", bob_id],
    ]
    assert not any((await run_plan(driver, suspend)).values())
    assert len(changes(node)) == already + 3
    unsuspend = plan_unsuspend(BOB, ONE_NODE, PROVIDER, IPS)
    assert all((await run_plan(driver, unsuspend)).values())
    assert await bob_state(driver) == ("no", "no", ["no"])
    assert await provider_view(driver) == provider_before
    assert not any((await run_plan(driver, unsuspend)).values())


async def test_change_plan_moves_the_user_to_the_new_package(
    env: tuple[SimNode, HestiaDriver],
) -> None:
    node, driver = env
    await run_plan(driver, plan_deploy(SHOP, ONE_NODE, None, IPS))
    silver = ServiceFacts(
        "7", "unified", "shop.test", plan={"package": "silver", "disk_mb": 900, "web_domains": 2}
    )
    change = plan_change_plan(silver, ONE_NODE, None, IPS)
    assert await run_plan(driver, change) == {
        "change_plan.web.package": True,
        "change_plan.web.user": True,
        "change_plan.web.packages": False,  # the user step removed the one it left
    }
    silver_package = content_package(silver.plan)
    assert changes(node)[-2:] == [
        ["v-change-user-package", SHOP.user, silver_package],
        ["v-delete-user-package", content_package(SHOP.plan)],
    ]
    conf = await user_conf(driver, SHOP.user)
    assert (conf["PACKAGE"], conf["DISK_QUOTA"], conf["WEB_DOMAINS"]) == (
        silver_package,
        "900",
        "2",
    )
    before = changes(node)
    assert not any((await run_plan(driver, change)).values())
    assert changes(node) == before


async def test_vanity_change_plan_sets_the_mailbox_quota_or_leaves_it_for_the_unsuspend(
    env: tuple[SimNode, HestiaDriver],
) -> None:
    node, driver = env
    await set_up_provider(driver)
    provider_before = await provider_view(driver)
    gold = ServiceFacts(
        "42", "vanity", "bob.hoster.test", label="bob",
        plan={"package": "gold", "disk_mb": 2000, "mailbox_quota_mb": 250},
    )  # fmt: skip
    change = plan_change_plan(gold, ONE_NODE, PROVIDER, IPS)
    ran = await run_plan(driver, change)
    # the user step removed the package it left: the packages step finds nothing more
    assert ran.pop("change_plan.web.packages") is False and all(ran.values())
    assert (await user_conf(driver, BOB.user))["PACKAGE"] == content_package(gold.plan)
    box = await driver.list_json(["v-list-mail-account", "hoster", "hoster.test", "bob"])
    assert box["bob"]["QUOTA"] == "250"
    assert await provider_view(driver) == provider_before
    assert not any((await run_plan(driver, change)).values())
    # a plan change while suspended: the closed mailbox gets its quota when it opens again
    await run_plan(driver, plan_suspend(gold, ONE_NODE, PROVIDER, IPS))
    bigger = ServiceFacts(
        "42", "vanity", "bob.hoster.test", label="bob",
        plan={"package": "gold", "disk_mb": 2000, "mailbox_quota_mb": 500},
    )  # fmt: skip
    quota_step = plan_change_plan(bigger, ONE_NODE, PROVIDER, IPS)[-1]
    outcome, lines = await step(driver, "ensure_mailbox_quota", quota_step.params)
    assert outcome.outputs == {"deferred": True} and not outcome.changed
    assert any("waits for the unsuspend" in line for line in lines)
    already = len(changes(node))
    await run_plan(driver, plan_unsuspend(bigger, ONE_NODE, PROVIDER, IPS))
    box = await driver.list_json(["v-list-mail-account", "hoster", "hoster.test", "bob"])
    assert (box["bob"]["QUOTA"], box["bob"]["SUSPENDED"]) == ("500", "no")
    assert [argv[0] for argv in changes(node)[already:]] == [
        "v-unsuspend-user",
        "v-unsuspend-mail-account",
        "v-change-mail-account-quota",
        "v-unsuspend-dns-record",
    ]
    assert await provider_view(driver) == provider_before


async def test_missing_things_are_permanent_readable_errors(
    env: tuple[SimNode, HestiaDriver],
) -> None:
    _, driver = env
    await set_up_provider(driver)
    box = {"user": "hoster", "domain": "hoster.test", "account": "nobody", "owner": BOB.service_id}
    with pytest.raises(PermanentNodeError, match=r"mailbox nobody@hoster\.test of hoster does not"):
        await step(driver, "suspend_mailbox", box)
    record = {
        "user": "hoster", "domain": "hoster.test", "record": "nobody", "type": "A",
        "owner": BOB.service_id,
    }  # fmt: skip
    with pytest.raises(PermanentNodeError, match=r"nobody A 127\.0\.0\.1 is not in hoster\.test"):
        await step(driver, "suspend_dns_record", {**record, "value": "127.0.0.1"})
    with pytest.raises(PermanentNodeError, match=r"DNS zone other\.test of hoster does not exist"):
        await step(
            driver, "suspend_dns_record", {**record, "domain": "other.test", "value": "127.0.0.1"}
        )
    # a different value is a different record: bob's is matched by value, not by name
    bob = {**record, "record": "bob", "value": "127.0.0.2"}
    with pytest.raises(PermanentNodeError, match=r"is not in hoster\.test"):
        await step(driver, "suspend_dns_record", bob)
    # the provider's zone suspended as a whole: bob's record cannot come back on its own
    await driver.check(["v-suspend-dns-domain", "hoster", "hoster.test"])
    with pytest.raises(PermanentNodeError, match="suspended as a whole"):
        await step(driver, "unsuspend_dns_record", {**bob, "value": "127.0.0.1"})
    await driver.check(["v-suspend-mail-domain", "hoster", "hoster.test"])
    with pytest.raises(PermanentNodeError, match="cannot be unsuspended while user hoster"):
        await step(driver, "unsuspend_mailbox", {**box, "account": "bob"})
