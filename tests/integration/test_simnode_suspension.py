"""The simulated node's suspend, unsuspend and quota commands: Hestia's arguments, exit codes,
the SUSPENDED fields of the json listings, and what a suspension does to DNS and HTTP."""

from __future__ import annotations

from pathlib import Path

import asyncssh
import dns.asyncquery
import dns.message
import httpx
import pytest

from ops.devtools.simnode import SimNode
from tests.support.simnode_ssh import Client


@pytest.fixture
async def env(tmp_path: Path):
    key = asyncssh.generate_private_key("ssh-ed25519")
    node = SimNode(tmp_path / "node")
    node.authorize(key.export_public_key().decode())
    await node.start()
    client = Client(node, key)
    yield node, client
    await client.close()
    await node.stop()


async def exit_of(client: Client, *argv: str) -> int | None:
    return (await client.run(*argv)).exit_status


async def record_id(client: Client, user: str, zone: str, name: str) -> str:
    records = await client.json("v-list-dns-records", user, zone, "json")
    return next(i for i, r in records.items() if r["RECORD"] == name)


async def test_dns_record_suspend_exits_and_publishing(env: tuple[SimNode, Client]) -> None:
    node, client = env
    await client.run("v-add-user", "hoster", "pw", "ops@hoster.test")
    await client.run("v-add-dns-domain", "hoster", "hoster.test", "192.0.2.1", "ns1.h.t", "ns2.h.t")
    await client.run("v-add-dns-record", "hoster", "hoster.test", "bob", "A", "192.0.2.50")
    ident = await record_id(client, "hoster", "hoster.test", "bob")
    port = node.ports()["dns"]
    assert isinstance(port, int)

    async def answers() -> int:
        query = dns.message.make_query("bob.hoster.test", "A")
        reply = await dns.asyncquery.udp(query, "127.0.0.1", port=port, timeout=2)
        return len(reply.answer)

    assert await answers() == 1
    suspend = ("v-suspend-dns-record", "hoster", "hoster.test", ident)
    assert await exit_of(client, *suspend) == 0
    records = await client.json("v-list-dns-records", "hoster", "hoster.test", "json")
    assert records[ident]["SUSPENDED"] == "yes"
    assert [r["SUSPENDED"] for i, r in records.items() if i != ident] == ["no"] * (len(records) - 1)
    assert await answers() == 0
    assert await exit_of(client, *suspend) == 5
    assert await exit_of(client, "v-suspend-dns-record", "hoster", "hoster.test", "999") == 3
    assert await exit_of(client, "v-suspend-dns-record", "hoster", "nozone.test", ident) == 3
    assert await exit_of(client, "v-suspend-dns-record", "hoster", "hoster.test", "x1") == 2
    assert await exit_of(client, "v-suspend-dns-record", "hoster", "hoster.test") == 1
    unsuspend = ("v-unsuspend-dns-record", "hoster", "hoster.test", ident)
    assert await exit_of(client, *unsuspend) == 0
    assert await answers() == 1
    # Hestia does not check that the record is suspended: a second unsuspend exits 0
    assert await exit_of(client, *unsuspend) == 0
    # a suspended zone refuses record changes with 5, and suspends every record itself
    assert await exit_of(client, "v-suspend-dns-domain", "hoster", "hoster.test") == 0
    assert await exit_of(client, *unsuspend) == 5
    assert await exit_of(client, *suspend) == 5
    records = await client.json("v-list-dns-records", "hoster", "hoster.test", "json")
    assert {r["SUSPENDED"] for r in records.values()} == {"yes"}


async def test_mail_account_listing_quota_and_suspension(env: tuple[SimNode, Client]) -> None:
    _, client = env
    await client.run("v-add-user", "hoster", "pw", "ops@hoster.test")
    await client.run("v-add-mail-domain", "hoster", "hoster.test", "yes", "yes", "no")
    for account in ("bob", "carol"):
        await client.run("v-add-mail-account", "hoster", "hoster.test", account, "pw123456")
    bob = await client.json("v-list-mail-account", "hoster", "hoster.test", "bob", "json")
    assert list(bob) == ["bob"]
    assert (bob["bob"]["QUOTA"], bob["bob"]["SUSPENDED"]) == ("unlimited", "no")
    assert bob["bob"]["WEBMAIL_ALIAS"] == "webmail.hoster.test"
    assert await exit_of(client, "v-list-mail-account", "hoster", "hoster.test", "dave") == 3
    quota = ("v-change-mail-account-quota", "hoster", "hoster.test", "bob")
    assert await exit_of(client, *quota, "250") == 0
    listed = await client.json("v-list-mail-account", "hoster", "hoster.test", "bob", "json")
    assert listed["bob"]["QUOTA"] == "250"
    assert await exit_of(client, *quota, "0") == 0
    listed = await client.json("v-list-mail-account", "hoster", "hoster.test", "bob", "json")
    assert listed["bob"]["QUOTA"] == "unlimited"
    assert await exit_of(client, *quota, "lots") == 2
    assert await exit_of(client, *quota) == 1
    assert (
        await exit_of(client, "v-change-mail-account-quota", "hoster", "hoster.test", "dave", "5")
        == 3
    )
    suspend = ("v-suspend-mail-account", "hoster", "hoster.test", "bob")
    unsuspend = ("v-unsuspend-mail-account", "hoster", "hoster.test", "bob")
    assert await exit_of(client, *unsuspend) == 6
    assert await exit_of(client, *suspend) == 0
    assert await exit_of(client, *quota, "100") == 5
    accounts = await client.json("v-list-mail-accounts", "hoster", "hoster.test", "json")
    assert (accounts["bob"]["SUSPENDED"], accounts["carol"]["SUSPENDED"]) == ("yes", "no")
    assert await exit_of(client, *unsuspend) == 0
    # the user's suspension reaches every mailbox, and its unsuspension opens them again
    assert await exit_of(client, "v-suspend-user", "hoster") == 0
    assert await exit_of(client, *suspend) == 5
    accounts = await client.json("v-list-mail-accounts", "hoster", "hoster.test", "json")
    assert {a["SUSPENDED"] for a in accounts.values()} == {"yes"}
    user = await client.json("v-list-user", "hoster", "json")
    assert (user["hoster"]["SUSPENDED"], user["hoster"]["SUSPENDED_MAIL"]) == ("yes", "1")
    assert await exit_of(client, "v-unsuspend-user", "hoster") == 0
    assert await exit_of(client, "v-unsuspend-user", "hoster") == 0  # Hestia: never exit 6
    accounts = await client.json("v-list-mail-accounts", "hoster", "hoster.test", "json")
    assert {a["SUSPENDED"] for a in accounts.values()} == {"no"}


async def test_change_user_package_exits(env: tuple[SimNode, Client]) -> None:
    _, client = env
    await client.run("v-add-user", "alice", "pw", "alice@example.com")
    assert await exit_of(client, "v-change-user-package", "alice", "system") == 0
    user = await client.json("v-list-user", "alice", "json")
    assert (user["alice"]["PACKAGE"], user["alice"]["SHELL"]) == ("system", "bash")
    assert await exit_of(client, "v-change-user-package", "alice", "nosuch") == 3
    assert await exit_of(client, "v-change-user-package", "bob", "default") == 3
    assert await exit_of(client, "v-change-user-package", "alice") == 1
    await client.run("v-suspend-user", "alice")
    # a suspended user's package can still be changed
    assert await exit_of(client, "v-change-user-package", "alice", "default") == 0


async def test_a_suspended_site_shows_the_suspended_page(env: tuple[SimNode, Client]) -> None:
    node, client = env
    await client.run("v-add-user", "alice", "pw", "alice@example.com")
    await client.run("v-add-web-domain", "alice", "site.test")
    url = f"http://127.0.0.1:{node.ports()['http']}/index.html"
    async with httpx.AsyncClient() as http:
        assert (await http.get(url, headers={"Host": "site.test"})).status_code == 404
        await client.run("v-suspend-user", "alice")
        web = await client.json("v-list-web-domain", "alice", "site.test", "json")
        assert web["site.test"]["SUSPENDED"] == "yes"
        reply = await http.get(url, headers={"Host": "www.site.test"})
        assert reply.status_code == 403
        assert "This site is currently suspended" in reply.text
        assert reply.headers["content-type"] == "text/html"
        await client.run("v-unsuspend-user", "alice")
        assert (await http.get(url, headers={"Host": "site.test"})).status_code == 404
