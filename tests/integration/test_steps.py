"""Step actions against a real SimNode: idempotent, exact argv, conflicts, no leaked passwords."""

from __future__ import annotations

from typing import Any

import pytest

from handlers.dns_records import DesiredRecord, canonical_value, listed_key
from handlers.hestia_command import PermanentNodeError
from handlers.hestia_driver import HestiaDriver
from handlers.step import StepParamsError
from ops.devtools.simnode import SimNode, read_command_log
from tests.support.simnode_driver import env  # noqa: F401 - the shared fixture
from tests.support.steps import ALICE, OWNER, PASSWORD, changes, step, twice


async def test_package_is_made_once_and_never_rewritten(
    env: tuple[SimNode, HestiaDriver],
) -> None:
    node, driver = env
    gold = {
        "package": "gold",
        "quotas": {"WEB_DOMAINS": 1, "DISK_QUOTA": 500, "NS": ["ns1.h.test", "ns2.h.test"]},
    }
    await twice(node, driver, "ensure_package", gold)
    listed = await driver.list_json(["v-list-user-package", "gold"])
    assert listed["gold"]["WEB_DOMAINS"] == "1" and listed["gold"]["DISK_QUOTA"] == "500"
    assert listed["gold"]["BANDWIDTH"] == "unlimited"
    adds = [argv for argv in changes(node) if argv[0] == "v-add-user-package"]
    assert len(adds) == 1 and adds[0][2:] == ["gold"]
    gold["quotas"]["DISK_QUOTA"] = 800  # type: ignore[index]
    with pytest.raises(PermanentNodeError, match="holds other limits \\(DISK_QUOTA\\)"):
        await step(driver, "ensure_package", gold)
    assert changes(node) == adds
    assert not list((node.data_dir / "fs/tmp").glob("*.pkg"))
    with pytest.raises(StepParamsError):
        await step(driver, "ensure_package", {"package": "x", "quotas": {"SHELL": "a'b"}})


async def test_user_once_its_package_and_its_owner(env: tuple[SimNode, HestiaDriver]) -> None:
    node, driver = env
    await twice(node, driver, "ensure_user", ALICE)
    await step(driver, "ensure_package", {"package": "gold", "quotas": {"WEB_DOMAINS": 3}})
    outcome, _ = await step(driver, "ensure_user", {**ALICE, "package": "gold"})
    assert outcome.changed and changes(node)[-1] == ["v-change-user-package", "alice", "gold"]
    assert not (await step(driver, "ensure_user", {**ALICE, "package": "gold"}))[0].changed
    listed = await driver.list_json(["v-list-user", "alice"])
    assert listed["alice"]["NAME"] == f"hostwright service {OWNER}"  # its owner mark
    # the same contact is no proof: only the mark is
    theirs = r"user alice on web1 belongs to another service \(hostwright service 7\)"
    with pytest.raises(PermanentNodeError, match=f"conflict: {theirs}; not adopted"):
        await step(driver, "ensure_user", {**ALICE, "owner": "8"})
    with pytest.raises(PermanentNodeError, match=f"refused: {theirs}; left as it is"):
        await step(driver, "remove_user", {"user": "alice", "owner": "8"})


async def test_user_with_quotas_sees_to_its_package_first(
    env: tuple[SimNode, HestiaDriver],
) -> None:
    """A mail or DNS node's user step carries the plan: package, then user, in one step."""
    node, driver = env
    gold = {**ALICE, "package": "gold", "quotas": {"WEB_DOMAINS": 3, "DISK_QUOTA": 500}}
    await twice(node, driver, "ensure_user", gold)
    assert [argv[0] for argv in changes(node)] == ["v-add-user-package", "v-add-user"]
    listed = await driver.list_json(["v-list-user", "alice"])
    assert (listed["alice"]["PACKAGE"], listed["alice"]["DISK_QUOTA"]) == ("gold", "500")
    # a plan change is another package: made, and the user moved onto it; gold is untouched
    gold = {**gold, "package": "gold2", "quotas": {"WEB_DOMAINS": 3, "DISK_QUOTA": 800}}
    outcome, lines = await step(driver, "ensure_user", gold)
    assert outcome.changed and any("on package gold, wants gold2" in line for line in lines)
    assert [argv[0] for argv in changes(node)[-2:]] == [
        "v-add-user-package",
        "v-change-user-package",
    ]
    assert (await driver.list_json(["v-list-user-package", "gold"]))["gold"]["DISK_QUOTA"] == "500"
    listed = await driver.list_json(["v-list-user", "alice"])
    assert listed["alice"]["DISK_QUOTA"] == "800"
    assert not (await step(driver, "ensure_user", gold))[0].changed


async def test_web_domain_php_and_conflict(env: tuple[SimNode, HestiaDriver]) -> None:
    node, driver = env
    await step(driver, "ensure_user", ALICE)
    web = {"user": "alice", "owner": OWNER, "domain": "Shop.Test."}
    out = await twice(node, driver, "ensure_web_domain", web)
    assert out.outputs == {"document_root": "/home/alice/web/shop.test/public_html/"}
    await twice(node, driver, "ensure_php", {**web, "php_version": "8.2"})
    assert changes(node)[-1] == ["v-change-web-domain-backend-tpl", "alice", "shop.test", "PHP-8_2"]
    bob = {"user": "bob", "owner": OWNER, "password": "x", "email": "bob@example.com"}
    await step(driver, "ensure_user", bob)
    with pytest.raises(PermanentNodeError) as caught:
        await step(
            driver, "ensure_web_domain", {"user": "bob", "owner": OWNER, "domain": "shop.test"}
        )
    assert str(caught.value) == "conflict: shop.test is owned by alice on web1"
    with pytest.raises(PermanentNodeError, match=r"conflict: www\.shop\.test is owned by alice"):
        await step(
            driver, "ensure_web_domain", {"user": "bob", "owner": OWNER, "domain": "www.shop.test"}
        )


async def test_mail_domain_dkim_and_mailbox(env: tuple[SimNode, HestiaDriver]) -> None:
    node, driver = env
    await step(driver, "ensure_user", ALICE)
    mail = {
        "user": "alice",
        "owner": OWNER,
        "domain": "mail.test",
        "dkim": False,
        "dkim_size": 1024,
    }
    await twice(node, driver, "ensure_mail_domain", mail)
    assert changes(node)[-1] == [
        "v-add-mail-domain", "alice", "mail.test", "yes", "yes", "no", "1024",
    ]  # fmt: skip
    out = await twice(node, driver, "ensure_dkim", mail)
    assert out.outputs["dkim_txt"].startswith("v=DKIM1; k=rsa; p=MI")
    assert out.outputs["dkim_record"] == "mail._domainkey"
    box = {
        "user": "alice",
        "owner": OWNER,
        "domain": "mail.test",
        "account": "Info",
        "password": PASSWORD,
    }
    out = await twice(node, driver, "ensure_mailbox", {**box, "quota": 100})
    assert out.outputs == {"address": "info@mail.test"}
    accounts = await driver.list_json(["v-list-mail-accounts", "alice", "mail.test"])
    assert accounts["info"]["QUOTA"] == "100"
    await twice(node, driver, "remove_mailbox", box)
    await twice(node, driver, "remove_mail_domain", mail)


async def test_dns_records_never_duplicate(env: tuple[SimNode, HestiaDriver]) -> None:
    node, driver = env
    await step(driver, "ensure_user", ALICE)
    zone = {"user": "alice", "owner": OWNER, "domain": "zone.test", "ip": "192.0.2.10"}
    await twice(
        node, driver, "ensure_dns_zone", {**zone, "nameservers": ["ns1.h.test", "ns2.h.test"]}
    )
    wanted = {
        "user": "alice",
        "owner": OWNER,
        "domain": "zone.test",
        "records": [
            {"record": "@", "type": "A", "value": "192.0.2.10"},  # already in the template
            {"record": "app", "type": "A", "value": "192.0.2.20"},
            {"record": "@", "type": "MX", "value": "mx2.zone.test", "priority": 20},
            {"record": "www", "type": "CNAME", "value": "zone.test."},
            {"record": "@", "type": "TXT", "value": "v=spf1 a mx ip4:192.0.2.10 -all"},
        ],
    }
    await twice(node, driver, "ensure_dns_records", wanted)
    added = [argv for argv in changes(node) if argv[0] == "v-add-dns-record"]
    assert added == [
        ["v-add-dns-record", "alice", "zone.test", "app", "A", "192.0.2.20"],
        ["v-add-dns-record", "alice", "zone.test", "@", "MX", "mx2.zone.test", "20"],
    ]
    records = await driver.list_json(["v-list-dns-records", "alice", "zone.test"])
    keys = [listed_key(r) for r in records.values()]
    for raw in wanted["records"]:
        assert keys.count(DesiredRecord.parse(raw).key) == 1


async def test_dns_records_restore_one_deleted_and_drop_duplicates(
    env: tuple[SimNode, HestiaDriver],
) -> None:
    node, driver = env
    await step(driver, "ensure_user", ALICE)
    await step(
        driver,
        "ensure_dns_zone",
        {"user": "alice", "owner": OWNER, "domain": "z.test", "ip": "192.0.2.1"},
    )
    wanted = {
        "user": "alice",
        "owner": OWNER,
        "domain": "z.test",
        "records": [
            {"record": "a", "type": "A", "value": "192.0.2.2"},
            {"record": "b", "type": "A", "value": "192.0.2.3"},
        ],
    }
    await step(driver, "ensure_dns_records", wanted)
    records = await driver.list_json(["v-list-dns-records", "alice", "z.test"])
    doomed = next(i for i, r in records.items() if r["RECORD"] == "a")
    await driver.check(["v-delete-dns-record", "alice", "z.test", doomed])
    await driver.check(["v-add-dns-record", "alice", "z.test", "b", "A", "192.0.2.3"])
    total = len(records)
    before = len(changes(node))
    outcome, lines = await step(driver, "ensure_dns_records", wanted)
    assert outcome.changed
    applied = changes(node)[before:]
    assert [argv[0] for argv in applied] == ["v-add-dns-record", "v-delete-dns-record"]
    assert applied[0] == ["v-add-dns-record", "alice", "z.test", "a", "A", "192.0.2.2"]
    assert any("removing duplicate" in line for line in lines)
    after = await driver.list_json(["v-list-dns-records", "alice", "z.test"])
    assert len(after) == total


async def test_dkim_record_from_inputs_long_and_replaced(
    env: tuple[SimNode, HestiaDriver],
) -> None:
    node, driver = env
    await step(driver, "ensure_user", ALICE)
    # Split mode's order: the mail domain (2048-bit key) first, the zone later, so Hestia does
    # not add the DKIM record itself and ensure_dns_records must.
    await step(driver, "ensure_mail_domain", {"user": "alice", "owner": OWNER, "domain": "d.test"})
    dkim, _ = await step(
        driver, "ensure_dkim", {"user": "alice", "owner": OWNER, "domain": "d.test"}
    )
    txt = dkim.outputs["dkim_txt"]
    assert len(txt) > 255
    await step(
        driver,
        "ensure_dns_zone",
        {"user": "alice", "owner": OWNER, "domain": "d.test", "ip": "192.0.2.1"},
    )
    params = {"user": "alice", "owner": OWNER, "domain": "d.test", "records": []}
    await twice(node, driver, "ensure_dns_records", params, inputs=dkim.outputs)
    assert changes(node)[-1] == [
        "v-add-dns-record", "alice", "d.test", "mail._domainkey", "TXT", txt,
    ]  # fmt: skip
    # A new key replaces the published one instead of sitting beside it.
    newer = txt[:-8] + "AAAAAAAA"
    outcome, _ = await step(driver, "ensure_dns_records", params, {"dkim_txt": newer})
    assert outcome.changed
    records = await driver.list_json(["v-list-dns-records", "alice", "d.test"])
    dkims = [r for r in records.values() if r["RECORD"] == "mail._domainkey"]
    assert len(dkims) == 1 and canonical_value("TXT", dkims[0]["VALUE"]) == newer


async def test_unified_node_dkim_added_by_hestia_is_recognised(
    env: tuple[SimNode, HestiaDriver],
) -> None:
    node, driver = env
    await step(driver, "ensure_user", ALICE)
    await step(
        driver,
        "ensure_dns_zone",
        {"user": "alice", "owner": OWNER, "domain": "u.test", "ip": "192.0.2.1"},
    )
    await step(
        driver,
        "ensure_mail_domain",
        {"user": "alice", "owner": OWNER, "domain": "u.test", "dkim_size": 1024},
    )
    dkim, _ = await step(
        driver, "ensure_dkim", {"user": "alice", "owner": OWNER, "domain": "u.test"}
    )
    before = changes(node)
    params = {"user": "alice", "owner": OWNER, "domain": "u.test", "records": []}
    outcome, _ = await step(driver, "ensure_dns_records", params, dkim.outputs)
    assert not outcome.changed and changes(node) == before


async def test_single_record_in_anothers_zone_and_exact_argv(
    env: tuple[SimNode, HestiaDriver],
) -> None:
    node, driver = env
    provider = {"user": "provider", "owner": OWNER, "password": "x", "email": "ops@hoster.test"}
    await step(driver, "ensure_user", provider)
    await step(
        driver,
        "ensure_dns_zone",
        {"user": "provider", "owner": OWNER, "domain": "hoster.test", "ip": "192.0.2.1"},
    )
    before = await driver.list_json(["v-list-dns-records", "provider", "hoster.test"])
    record = {
        "user": "provider",
        "owner": OWNER,
        "domain": "hoster.test",
        "record": "shop",
        "type": "A",
    }
    out = await twice(node, driver, "ensure_dns_record", {**record, "value": "192.0.2.50"})
    assert out.outputs == {"fqdn": "shop.hoster.test"}
    odd = "v=x1; note='it''s' \\ $(touch /tmp/pwned) `id` & more"
    txt = {**record, "type": "TXT", "value": odd}
    await twice(node, driver, "ensure_dns_record", txt)
    assert changes(node)[-1] == ["v-add-dns-record", "provider", "hoster.test", "shop", "TXT", odd]
    after = await driver.list_json(["v-list-dns-records", "provider", "hoster.test"])
    assert len(after) == len(before) + 3  # the two, and their name's owner mark
    mark = ("shop", "TXT", f"hostwright-owner={OWNER}")
    assert [k for k in after if (after[k]["RECORD"], after[k]["TYPE"], after[k]["VALUE"]) == mark]
    assert all(after[i] == r for i, r in before.items() if i in after)
    # Moving the service to another web node replaces only its own A record.
    moved = {**record, "value": "192.0.2.60", "replace": True}
    assert (await step(driver, "ensure_dns_record", moved))[0].changed
    shop = await driver.list_json(["v-list-dns-records", "provider", "hoster.test"])
    assert sorted(
        r["VALUE"] for r in shop.values() if r["RECORD"] == "shop" and r["TYPE"] == "A"
    ) == ["192.0.2.60"]
    await twice(node, driver, "remove_dns_record", {**record, "value": "192.0.2.60"})
    await twice(node, driver, "remove_dns_record", txt)
    final = await driver.list_json(["v-list-dns-records", "provider", "hoster.test"])
    assert {i: r["VALUE"] for i, r in final.items()} == {i: r["VALUE"] for i, r in before.items()}


async def test_removals_are_idempotent(env: tuple[SimNode, HestiaDriver]) -> None:
    node, driver = env
    await step(driver, "ensure_user", ALICE)
    site = {"user": "alice", "owner": OWNER, "domain": "gone.test"}
    await step(driver, "ensure_web_domain", site)
    await step(driver, "ensure_dns_zone", {**site, "ip": "192.0.2.1"})
    await step(driver, "ensure_mail_domain", site)
    await twice(node, driver, "remove_web_domain", site)
    await twice(node, driver, "remove_dns_zone", site)
    await twice(node, driver, "remove_mail_domain", site)
    await twice(node, driver, "remove_user", {"user": "alice", "owner": OWNER})
    # With the user gone every removal still reports "already done".
    for action in ("remove_web_domain", "remove_dns_zone", "remove_mail_domain"):
        assert not (await step(driver, action, site))[0].changed
    box = {**site, "account": "info"}
    assert not (await step(driver, "remove_mailbox", box))[0].changed


async def test_passwords_never_reach_a_log(env: tuple[SimNode, HestiaDriver]) -> None:
    node, driver = env
    _, lines = await step(driver, "ensure_user", ALICE)
    await step(
        driver,
        "ensure_mail_domain",
        {"user": "alice", "owner": OWNER, "domain": "m.test", "dkim": False},
    )
    box = {
        "user": "alice",
        "owner": OWNER,
        "domain": "m.test",
        "account": "info",
        "password": PASSWORD,
    }
    _, more = await step(driver, "ensure_mailbox", box)
    text = "\n".join(lines + more)
    assert "v-add-user alice '*****' alice@example.com" in text
    assert PASSWORD not in text
    assert PASSWORD not in (node.data_dir / "commands.jsonl").read_text()
    with pytest.raises(PermanentNodeError) as caught:
        await step(driver, "ensure_mailbox", {**box, "domain": "nomail.test"})
    assert PASSWORD not in str(caught.value)


async def test_bad_params_are_refused_before_the_node(env: tuple[SimNode, HestiaDriver]) -> None:
    node, driver = env
    bad: list[tuple[str, dict[str, Any]]] = [
        ("ensure_user", {"user": "alice", "owner": OWNER, "password": 5, "email": "a@x.test"}),
        ("ensure_web_domain", {"user": "alice", "owner": OWNER}),
        ("ensure_web_domain", {"user": "alice", "owner": OWNER,
                               "domain": "a.test\nv-delete-user x"}),
        ("ensure_dns_records", {"user": "a", "domain": "z.test", "records": [{"record": "x"}]}),
        ("ensure_dns_record", {"user": "a", "domain": "z.test", "record": "x y", "type": "A",
                               "value": "1.2.3.4"}),
        ("ensure_php", {"user": "a", "domain": "z.test", "php_version": "eight"}),
        ("ensure_user", {**ALICE, "owner": "7 $(id)"}),  # an owner mark is a service id
        ("remove_user", {"user": "alice"}),  # no owner: nothing to prove it is ours
    ]  # fmt: skip
    for action, params in bad:
        with pytest.raises(StepParamsError):
            await step(driver, action, params)
    assert read_command_log(node.data_dir) == []
