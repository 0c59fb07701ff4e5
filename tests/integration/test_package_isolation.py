"""One service's plan never changes another's limits: Hestia packages named after their
content, made once, never rewritten, removed when no user uses them — planned by
domain/deploy_plan.py and domain/lifecycle_plan.py, run against a real SimNode over SSH."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from domain.deploy_plan import ServiceFacts, plan_deploy, plan_removal
from domain.hestia_package import content_package
from domain.lifecycle_plan import plan_change_plan
from domain.placement import Placement
from handlers.hestia_command import CommandResult, PermanentNodeError, TransientNodeError
from handlers.hestia_driver import HestiaDriver
from ops.devtools.simnode import SimNode, read_command_log
from tests.support.simnode_driver import env  # noqa: F401 - the shared fixture
from tests.support.steps import ALICE, changes, run_plan, step

ONE_NODE = Placement("web1", "web1", ("web1",))
IPS = {"web1": "127.0.0.1"}


def service(number: int, **plan: Any) -> ServiceFacts:
    return ServiceFacts(str(number), "unified", f"shop{number}.test", plan=plan)


async def user_listing(driver: HestiaDriver, user: str) -> str:
    """``v-list-user USER json`` as the node prints it, byte for byte."""
    result = await driver.run(["v-list-user", user, "json"])
    assert result.exit_status == 0
    return result.stdout


async def package_of(driver: HestiaDriver, user: str) -> tuple[str, dict[str, Any]]:
    """The package ``user`` is on and that package's listing."""
    package = (await driver.list_json(["v-list-user", user]))[user]["PACKAGE"]
    listed = await driver.probe_json(["v-list-user-package", package])
    assert listed is not None, f"{user} is on {package}, which does not exist"
    return package, listed[package]


async def packages(driver: HestiaDriver) -> set[str]:
    return set(await driver.list_json(["v-list-user-packages"]))


async def test_two_services_on_one_package_name_keep_their_own_limits(
    env: tuple[SimNode, HestiaDriver],
) -> None:
    """A on ``basic`` with 1 GB, B on ``basic`` with 5 GB (WHMCS configurable options): every
    deploy, verify & repair and change plan of one leaves the other's limits alone."""
    _, driver = env
    a, b = service(1, package="basic", disk_mb=1024), service(2, package="basic", disk_mb=5120)
    await run_plan(driver, plan_deploy(a, ONE_NODE, None, IPS))
    await run_plan(driver, plan_deploy(b, ONE_NODE, None, IPS))
    a_before = await user_listing(driver, a.user)
    await run_plan(driver, plan_deploy(a, ONE_NODE, None, IPS))  # A's verify & repair
    b_bigger = service(2, package="basic", disk_mb=8192)
    await run_plan(driver, plan_change_plan(b_bigger, ONE_NODE, None, IPS))
    await run_plan(driver, plan_deploy(a, ONE_NODE, None, IPS))  # and again, after B's change
    assert await user_listing(driver, a.user) == a_before
    a_package, a_limits = await package_of(driver, a.user)
    b_package, b_limits = await package_of(driver, b.user)
    assert (a_limits["DISK_QUOTA"], b_limits["DISK_QUOTA"]) == ("1024", "8192")
    assert a_package != b_package
    assert {a_package, b_package} == {content_package(a.plan), content_package(b_bigger.plan)}
    # B's first package (5 GB) went with B's change plan: nobody uses it any more
    assert content_package(b.plan) not in await packages(driver)


async def test_a_deploy_wave_adds_the_package_once_per_node(
    env: tuple[SimNode, HestiaDriver],
) -> None:
    node, driver = env
    wave = [service(n, package="basic", disk_mb=1024) for n in range(1, 7)]
    await asyncio.gather(*(run_plan(driver, plan_deploy(s, ONE_NODE, None, IPS)) for s in wave))
    added = [argv for argv in changes(node) if argv[0] == "v-add-user-package"]
    assert [argv[2:] for argv in added] == [[content_package(wave[0].plan)]]
    every_add = [e["argv"] for e in read_command_log(node.data_dir)]
    assert not [argv for argv in every_add if argv[0] == "v-add-user-package" and "yes" in argv]
    for s in wave:
        assert (await package_of(driver, s.user))[1]["DISK_QUOTA"] == "1024"


async def test_terminate_removes_a_package_only_once_no_user_uses_it(
    env: tuple[SimNode, HestiaDriver],
) -> None:
    node, driver = env
    a, c = service(1, package="basic", disk_mb=1024), service(3, package="basic", disk_mb=1024)
    shared = content_package(a.plan)
    await step(driver, "ensure_package", {"package": "basic", "quotas": {"DISK_QUOTA": 7}})
    for s in (a, c):
        await run_plan(driver, plan_deploy(s, ONE_NODE, None, IPS))
    removal = plan_removal(a, ONE_NODE, None, IPS)
    assert removal[-1].step == "remove.web.packages"
    assert removal[-1].depends_on == ("remove.web.user",)
    await run_plan(driver, removal)
    assert shared in await packages(driver)  # C is still on it
    assert (await package_of(driver, c.user))[0] == shared
    await run_plan(driver, plan_removal(c, ONE_NODE, None, IPS))
    assert await packages(driver) == {"default", "system", "basic"}  # the admin's kept
    assert changes(node)[-1] == ["v-delete-user-package", shared]
    again = await run_plan(driver, plan_removal(c, ONE_NODE, None, IPS))
    assert not any(again.values())


async def test_change_plan_moves_the_user_and_removes_the_package_it_left(
    env: tuple[SimNode, HestiaDriver],
) -> None:
    node, driver = env
    small, big = (
        service(1, package="basic", disk_mb=1024),
        service(1, package="basic", disk_mb=2048),
    )
    await run_plan(driver, plan_deploy(small, ONE_NODE, None, IPS))
    change = plan_change_plan(big, ONE_NODE, None, IPS)
    assert [s.step for s in change] == [
        "change_plan.web.package",
        "change_plan.web.user",
        "change_plan.web.packages",
    ]
    await run_plan(driver, change)
    assert changes(node)[-2:] == [
        ["v-change-user-package", small.user, content_package(big.plan)],
        ["v-delete-user-package", content_package(small.plan)],
    ]
    assert (await package_of(driver, small.user))[1]["DISK_QUOTA"] == "2048"
    assert await packages(driver) == {"default", "system", content_package(big.plan)}
    assert not any((await run_plan(driver, change)).values())


async def test_verify_and_repair_moves_a_user_off_an_old_shared_package_and_keeps_that(
    env: tuple[SimNode, HestiaDriver],
) -> None:
    """A user an older hostwright put on plain ``basic``: verify & repair moves it onto its
    content-named package; ``basic`` is not recognisably ours, so it stays."""
    _, driver = env
    a = service(1, package="basic", disk_mb=1024)
    quotas = {"DISK_QUOTA": 1024}
    await step(driver, "ensure_package", {"package": "basic", "quotas": quotas})
    owner = {"user": a.user, "email": f"webmaster@{a.domain}", "owner": a.service_id}
    await step(driver, "ensure_user", {**ALICE, **owner, "package": "basic"})
    await run_plan(driver, plan_deploy(a, ONE_NODE, None, IPS))
    assert (await package_of(driver, a.user))[0] == content_package(a.plan)
    await run_plan(driver, plan_change_plan(a, ONE_NODE, None, IPS))
    assert "basic" in await packages(driver)


async def test_a_package_of_that_name_with_other_limits_is_a_conflict_never_rewritten(
    env: tuple[SimNode, HestiaDriver],
) -> None:
    node, driver = env
    gold = {"package": "gold", "quotas": {"WEB_DOMAINS": 1, "DISK_QUOTA": 500}}
    await step(driver, "ensure_package", gold)
    before = changes(node)
    with pytest.raises(PermanentNodeError, match="conflict: package gold on web1 holds other"):
        await step(driver, "ensure_package", {**gold, "quotas": {"DISK_QUOTA": 800}})
    with pytest.raises(PermanentNodeError, match="DISK_QUOTA"):
        await step(driver, "ensure_user", {**ALICE, **gold, "quotas": {"DISK_QUOTA": 800}})
    assert changes(node) == before
    listed = await driver.list_json(["v-list-user-package", "gold"])
    assert listed["gold"]["DISK_QUOTA"] == "500"


class RunsFirst:
    """A driver that, just before the first ``before`` command, runs ``other``: what another
    service's run does on the same node at that moment."""

    def __init__(self, driver: HestiaDriver, before: str, other: list[str]) -> None:
        self._driver, self._before, self._other = driver, before, other
        self.server_id = driver.server_id

    def __getattr__(self, name: str) -> Any:
        return getattr(self._driver, name)

    async def run(self, argv: Sequence[str]) -> CommandResult:
        if argv[0] == self._before and self._other:
            other, self._other = self._other, []
            assert (await self._driver.run(other)).exit_status == 0
        return await self._driver.run(argv)


async def test_a_package_removed_just_before_the_user_joins_it_is_made_again_on_the_retry(
    env: tuple[SimNode, HestiaDriver],
) -> None:
    """Another service's terminate removes the package between this user step's package check
    and its ``v-add-user``: a transient error, and the retry makes the package again first."""
    _, driver = env
    package = content_package({"package": "basic", "disk_mb": 1024})
    params = {**ALICE, "package": package, "quotas": {"DISK_QUOTA": 1024}}
    racing = RunsFirst(driver, "v-add-user", ["v-delete-user-package", package])
    with pytest.raises(TransientNodeError, match=f"package {package} went away"):
        await step(racing, "ensure_user", params)  # type: ignore[arg-type]
    assert (await step(driver, "ensure_user", params))[0].changed
    assert (await package_of(driver, "alice"))[1]["DISK_QUOTA"] == "1024"


LEFT = content_package({"package": "basic", "disk_mb": 1024})


async def removing_the_left_package_while(
    driver: HestiaDriver, other: list[str], *, other_service: ServiceFacts | None = None
) -> tuple[str, list[str]]:
    """A package no user is on any more (``LEFT``); runs ``remove_unused_packages`` with
    ``other`` run just before its ``v-delete-user-package``. The package and the step's log."""
    await step(driver, "ensure_package", {"package": LEFT, "quotas": {"DISK_QUOTA": 1024}})
    if other_service is not None:
        await run_plan(driver, plan_deploy(other_service, ONE_NODE, None, IPS))
    racing = RunsFirst(driver, "v-delete-user-package", other)
    outcome, lines = await step(racing, "remove_unused_packages", {})  # type: ignore[arg-type]
    assert outcome.changed
    return LEFT, lines


async def test_a_user_joining_a_package_while_it_is_removed_is_put_back_on_it(
    env: tuple[SimNode, HestiaDriver],
) -> None:
    _, driver = env
    joiner = ["v-add-user", "carol", "Pa55-w0rd", "carol@shop2.test", LEFT, "hostwright service 2"]
    left, lines = await removing_the_left_package_while(driver, joiner)
    assert any("carol joined it while it was removed; put back" in line for line in lines)
    package, limits = await package_of(driver, "carol")
    assert (package, limits["DISK_QUOTA"]) == (left, "1024")
    assert (await driver.list_json(["v-list-user", "carol"]))["carol"]["DISK_QUOTA"] == "1024"


async def test_a_user_moved_from_its_package_onto_one_being_removed_is_put_back_on_it(
    env: tuple[SimNode, HestiaDriver],
) -> None:
    """Service 2's user already existed on its own package when the remover listed the users;
    another of service 2's runs moves it onto the package being removed just before Hestia's
    delete, which moves it to ``default``: it is put back on the package, never left there."""
    _, driver = env
    other = service(2, package="basic", disk_mb=4096)
    mover = ["v-change-user-package", other.user, LEFT]
    left, lines = await removing_the_left_package_while(driver, mover, other_service=other)
    assert any(f"{other.user} joined it while it was removed; put back" in x for x in lines)
    package, limits = await package_of(driver, other.user)
    assert (package, limits["DISK_QUOTA"]) == (left, "1024")


async def test_an_admins_new_user_on_default_is_left_alone_by_the_package_removal(
    env: tuple[SimNode, HestiaDriver],
) -> None:
    """A user an admin makes on ``default`` while a package is removed carries no hostwright
    owner mark: it stays on ``default``, and the package stays removed."""
    _, driver = env
    admins = ["v-add-user", "eve", "Pa55-w0rd", "eve@admin.test", "default"]
    left, lines = await removing_the_left_package_while(driver, admins)
    assert any(f"package {left}: removed, no user used it" in line for line in lines)
    assert (await package_of(driver, "eve"))[0] == "default"
    assert left not in await packages(driver)


async def test_a_deploy_that_moves_the_user_removes_the_package_it_left_unless_shared(
    env: tuple[SimNode, HestiaDriver],
) -> None:
    """Verify & repair after the plan's limits changed (no change plan run) moves the user onto
    the new package; the package left goes at once when no one else is on it, with no extra
    step in the deploy, and stays while another service uses it."""
    _, driver = env
    a, b = service(1, package="basic", disk_mb=1024), service(2, package="basic", disk_mb=1024)
    bigger = {**a.plan, "disk_mb": 2048}
    for s in (a, b):
        await run_plan(driver, plan_deploy(s, ONE_NODE, None, IPS))
    deploy = plan_deploy(service(1, **bigger), ONE_NODE, None, IPS)
    assert not [s for s in deploy if s.action == "remove_unused_packages"]
    await run_plan(driver, deploy)
    assert content_package(a.plan) in await packages(driver)  # B is still on it
    await run_plan(driver, plan_deploy(service(2, **bigger), ONE_NODE, None, IPS))
    assert await packages(driver) == {"default", "system", content_package(bigger)}
    for s in (a, b):
        assert (await package_of(driver, s.user))[1]["DISK_QUOTA"] == "2048"
