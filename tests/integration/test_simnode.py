"""The simulated Hestia node, driven over real SSH (host key pinned), UDP DNS and HTTP(S)."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path

import asyncssh
import dns.asyncquery
import dns.message
import dns.rcode
import httpx
import pytest

from ops.devtools.simnode import Faults, SimNode, read_command_log, read_state_json, read_stats
from ops.devtools.simnode.faults import SETTLED_NS, FaultFile
from ops.devtools.simnode.v_users import password_matches
from tests.support.budget import budget
from tests.support.simnode_ssh import Client


@pytest.fixture
def client_key() -> asyncssh.SSHKey:
    return asyncssh.generate_private_key("ssh-ed25519")


async def _start(data: Path, key: asyncssh.SSHKey, **kwargs: object) -> SimNode:
    node = SimNode(data, **kwargs)  # type: ignore[arg-type]
    node.authorize(key.export_public_key().decode())
    await node.start()
    return node


@pytest.fixture
async def node(tmp_path: Path, client_key: asyncssh.SSHKey):
    node = await _start(tmp_path / "node", client_key)
    yield node
    await node.stop()


@pytest.fixture
async def client(node: SimNode, client_key: asyncssh.SSHKey):
    client = Client(node, client_key)
    yield client
    await client.close()


async def test_user_lifecycle(client: Client) -> None:
    assert (
        await client.run("v-add-user", "alice", "s3cret!", "alice@example.com")
    ).exit_status == 0
    users = await client.json("v-list-user", "alice", "json")
    assert users["alice"]["CONTACT"] == "alice@example.com"
    assert users["alice"]["PACKAGE"] == "default"
    assert users["alice"]["SUSPENDED"] == "no"
    assert (await client.run("v-add-user", "alice", "x", "a@example.com")).exit_status == 4
    assert (await client.run("v-add-user", "alice")).exit_status == 1
    assert (await client.run("v-add-user", "1bad", "x", "a@example.com")).exit_status == 2
    assert (await client.run("v-suspend-user", "alice")).exit_status == 0
    assert (await client.json("v-list-user", "alice", "json"))["alice"]["SUSPENDED"] == "yes"
    assert (await client.run("v-suspend-user", "alice")).exit_status == 5
    assert (await client.run("v-unsuspend-user", "alice")).exit_status == 0
    assert (await client.json("v-list-users", "json"))["alice"]["SUSPENDED"] == "no"
    assert (await client.run("v-delete-user", "alice")).exit_status == 0
    assert (await client.run("v-list-user", "alice", "json")).exit_status == 3


async def test_user_name_as_given_to_v_add_user_and_changed_as_hestia_does(
    client: Client,
) -> None:
    add = ("v-add-user", "alice", "pw", "alice@example.com", "default", "hostwright service 7")
    assert (await client.run(*add)).exit_status == 0
    assert (await client.json("v-list-user", "alice", "json"))["alice"]["NAME"] == (
        "hostwright service 7"
    )
    assert (await client.run("v-change-user-name", "alice", "Alice", "Smith")).exit_status == 0
    assert (await client.json("v-list-user", "alice", "json"))["alice"]["NAME"] == "Alice Smith"
    for bad in ("a;b", "a:b", " lead", "q'uote"):
        assert (await client.run("v-change-user-name", "alice", bad)).exit_status == 2, bad
    assert (await client.run("v-change-user-name", "nobody", "Bob")).exit_status == 3
    assert (await client.run("v-suspend-user", "alice")).exit_status == 0
    assert (await client.run("v-change-user-name", "alice", "Bob")).exit_status == 5


async def test_mail_account_alias_is_added_once_and_never_over_an_address_in_use(
    client: Client,
) -> None:
    await client.run("v-add-user", "alice", "pw", "alice@example.com")
    await client.run("v-add-mail-domain", "alice", "m.test")
    await client.run("v-add-mail-account", "alice", "m.test", "info", "pw")
    await client.run("v-add-mail-account", "alice", "m.test", "sales", "pw")
    alias = ("v-add-mail-account-alias", "alice", "m.test")
    assert (await client.run(*alias, "info", "hostwright.owner.7")).exit_status == 0
    assert (await client.run(*alias, "info", "hi")).exit_status == 0
    box = await client.json("v-list-mail-account", "alice", "m.test", "info", "json")
    assert box["info"]["ALIAS"] == "hostwright.owner.7,hi"
    assert (await client.run(*alias, "sales", "hi")).exit_status == 4  # an alias in use
    assert (await client.run(*alias, "sales", "info")).exit_status == 4  # a mailbox's name
    assert (await client.run(*alias, "nobody", "x")).exit_status == 3
    assert (await client.run(*alias, "sales", "bad alias")).exit_status == 2
    # a new mailbox cannot take an alias's address either
    add = ("v-add-mail-account", "alice", "m.test", "hostwright.owner.7", "pw")
    assert (await client.run(*add)).exit_status == 4


async def test_passwords_change_as_hestia_changes_them_and_never_on_a_suspended_one(
    client: Client, node: SimNode
) -> None:
    def stored(user: str, account: str | None = None) -> str:
        users = json.loads(read_state_json(node.data_dir))["users"]
        if account is None:
            return str(users[user]["conf"]["MD5"])
        return str(users[user]["mail"]["m.test"]["accounts"][account]["MD5"])

    await client.run("v-add-user", "alice", "first-pw", "alice@example.com")
    await client.run("v-add-mail-domain", "alice", "m.test")
    await client.run("v-add-mail-account", "alice", "m.test", "info", "first-pw")
    new = "n3w 'pw' $(x)"
    assert (await client.run("v-change-user-password", "alice", new)).exit_status == 0
    change_box = ("v-change-mail-account-password", "alice", "m.test", "info")
    assert (await client.run(*change_box, new)).exit_status == 0
    for user, account in (("alice", None), ("alice", "info")):
        assert password_matches(stored(user, account), new)
        assert not password_matches(stored(user, account), "first-pw")
    assert (await client.run(*change_box)).exit_status == 1  # no password
    assert (await client.run(*change_box[:3], "nobody", new)).exit_status == 3
    assert (await client.run("v-suspend-mail-account", "alice", "m.test", "info")).exit_status == 0
    assert (await client.run(*change_box, "other-pw")).exit_status == 5
    assert (await client.run("v-suspend-user", "alice")).exit_status == 0
    assert (await client.run("v-change-user-password", "alice", "other-pw")).exit_status == 5
    assert password_matches(stored("alice"), new)
    assert password_matches(stored("alice", "info"), new)
    journal = json.dumps(read_command_log(node.data_dir))
    assert new not in journal and "other-pw" not in journal  # masked as Hestia's log does


async def test_domain_of_another_user_exits_4(client: Client) -> None:
    for user in ("alice", "bob"):
        await client.run("v-add-user", user, "pw", f"{user}@example.com")
    assert (await client.run("v-add-web-domain", "alice", "shop.test")).exit_status == 0
    assert (await client.run("v-add-web-domain", "bob", "shop.test")).exit_status == 4
    assert (await client.run("v-add-dns-domain", "bob", "shop.test", "127.0.0.1")).exit_status == 4
    assert (await client.run("v-add-mail-domain", "bob", "shop.test")).exit_status == 4
    # The same user may hold the web, DNS and mail sides of one domain; its own web twice is 4.
    assert (await client.run("v-add-web-domain", "alice", "shop.test")).exit_status == 4
    assert (
        await client.run("v-add-dns-domain", "alice", "shop.test", "127.0.0.1")
    ).exit_status == 0
    web = await client.json("v-list-web-domain", "alice", "shop.test", "json")
    assert web["shop.test"]["DOCUMENT_ROOT"] == "/home/alice/web/shop.test/public_html/"
    assert web["shop.test"]["ALIAS"] == "www.shop.test"
    assert (
        await client.run("v-change-web-domain-backend-tpl", "alice", "shop.test", "PHP-8_2")
    ).exit_status == 0
    web = await client.json("v-list-web-domains", "alice", "json")
    assert web["shop.test"]["BACKEND"] == "PHP-8_2"
    assert (await client.run("v-suspend-web-domain", "alice", "shop.test")).exit_status == 0
    assert (await client.run("v-suspend-web-domain", "alice", "shop.test")).exit_status == 5
    assert (await client.run("v-unsuspend-web-domain", "alice", "shop.test")).exit_status == 0
    assert (await client.run("v-unsuspend-web-domain", "alice", "shop.test")).exit_status == 6
    assert (await client.run("v-delete-web-domain", "alice", "shop.test")).exit_status == 0
    assert (await client.run("v-delete-web-domain", "alice", "shop.test")).exit_status == 3


async def test_dns_zone_defaults_and_duplicate_records(client: Client) -> None:
    await client.run("v-add-user", "alice", "pw", "alice@example.com")
    add = (
        "v-add-dns-domain",
        "alice",
        "zone.test",
        "192.0.2.10",
        "ns1.hoster.test",
        "ns2.hoster.test",
    )
    assert (await client.run(*add)).exit_status == 0
    records = await client.json("v-list-dns-records", "alice", "zone.test", "json")
    summary = {(r["RECORD"], r["TYPE"], r["VALUE"]) for r in records.values()}
    assert ("@", "NS", "ns1.hoster.test.") in summary
    assert ("@", "A", "192.0.2.10") in summary
    assert ("www", "CNAME", "zone.test.") in summary
    assert ("@", "MX", "mail.zone.test.") in summary
    assert len(records) == 15
    record = ("v-add-dns-record", "alice", "zone.test", "app", "A", "192.0.2.20")
    assert (await client.run(*record)).exit_status == 0
    assert (await client.run(*record)).exit_status == 0
    records = await client.json("v-list-dns-records", "alice", "zone.test", "json")
    ids = [i for i, r in records.items() if r["RECORD"] == "app"]
    assert len(ids) == 2 and ids[0] != ids[1]
    assert (await client.run("v-delete-dns-record", "alice", "zone.test", ids[0])).exit_status == 0
    assert (await client.run("v-delete-dns-record", "alice", "zone.test", ids[0])).exit_status == 3
    assert (await client.run("v-suspend-dns-domain", "alice", "zone.test")).exit_status == 0
    assert (await client.run(*record)).exit_status == 5
    assert (await client.run("v-unsuspend-dns-domain", "alice", "zone.test")).exit_status == 0
    zone = await client.json("v-list-dns-domain", "alice", "zone.test", "json")
    assert zone["zone.test"]["RECORDS"] == "16"
    assert zone["zone.test"]["SOA"] == "ns1.hoster.test"


async def test_command_forms_and_no_shell(client: Client, node: SimNode) -> None:
    assert (await client.run(raw="v-add-user alice pw alice@example.com")).exit_status == 0
    full = "sudo /usr/local/hestia/bin/v-list-user alice json"
    assert (await client.run(raw=full)).exit_status == 0
    assert (await client.run(raw="/usr/local/hestia/bin/v-list-users json")).exit_status == 0
    marker = node.data_dir / "pwned"
    evil = f"a.com;touch {marker}"
    result = await client.run("v-add-web-domain", "alice", evil)
    assert result.exit_status == 2 and "invalid domain format" in str(result.stdout)
    result = await client.run(raw=f"v-add-web-domain alice x.com; touch {marker}")
    assert not marker.exists()
    unknown = await client.run("v-frobnicate", "x")
    assert unknown.exit_status == 127 and "command not found" in str(unknown.stderr)
    assert (await client.run(raw="ls /")).exit_status == 127


async def test_missing_role_is_disabled(tmp_path: Path, client_key: asyncssh.SSHKey) -> None:
    node = await _start(tmp_path / "dns-only", client_key, roles=["dns"])
    client = Client(node, client_key)
    try:
        await client.run("v-add-user", "alice", "pw", "alice@example.com")
        assert (await client.run("v-add-web-domain", "alice", "a.test")).exit_status == 11
        assert (await client.run("v-add-mail-domain", "alice", "a.test")).exit_status == 11
        assert (
            await client.run("v-add-dns-domain", "alice", "a.test", "127.0.0.1")
        ).exit_status == 0
    finally:
        await client.close()
        await node.stop()


async def test_fail_next_refuse_and_latency(client: Client, node: SimNode) -> None:
    node.set_faults(Faults(fail_next=2))
    codes = [(await client.run("v-list-users", "json")).exit_status for _ in range(3)]
    assert codes == [15, 15, 0]
    node.set_faults(Faults(fail_commands={"v-add-user": 20}))
    assert (await client.run("v-add-user", "al", "pw", "al@example.com")).exit_status == 20
    node.set_faults(Faults(refuse=True))
    await node.apply_faults()
    with pytest.raises(OSError):
        await Client(node, client.key).connect()
    node.set_faults(Faults(latency_ms=150))
    await node.apply_faults()
    other = Client(node, client.key)
    try:
        started = time.monotonic()
        assert (await other.run("v-list-users", "json")).exit_status == 0
        assert time.monotonic() - started >= 0.15
    finally:
        await other.close()


def test_fault_file_is_parsed_again_whenever_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node keeps its parse of a settled faults.json; every kind of change is seen."""
    faults = FaultFile(tmp_path)
    assert faults.read() == Faults()
    faults.write(Faults(fail_next=1))
    assert faults.read().fail_next == 1
    faults.read().fail_commands["v-add-user"] = 3  # a caller's copy, not the parsed one
    assert faults.read().fail_commands == {}
    parses = 0
    real_read_text = Path.read_text

    def counted(path: Path, *args: object, **kwargs: object) -> str:
        nonlocal parses
        parses += 1 if path == faults.path else 0
        return real_read_text(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", counted)
    for _ in range(3):
        faults.read()
    assert parses == 3  # a file younger than SETTLED_NS is parsed on every look
    time.sleep(SETTLED_NS / 1e9 + 0.02)
    for _ in range(3):
        faults.read()
    assert parses == 4  # settled and unchanged: a stat, no parse
    # the node's own write (as if the inode freed by the last replace came back, same size)
    assert faults.take_failure() == 15
    assert faults.read().fail_next == 0
    # an editor writing in place a moment later: same inode, same size, new content
    time.sleep(SETTLED_NS / 1e9 + 0.02)
    text = faults.path.read_text(encoding="utf-8")
    assert faults.read().latency_ms == 0
    with faults.path.open("r+", encoding="utf-8") as edit:
        edit.write(text.replace('"latency_ms": 0', '"latency_ms": 7'))
    assert faults.read().latency_ms == 7
    # half written: no faults, and never kept, so finishing the file within a tick is seen
    faults.path.write_text('{"fail_next":  2', encoding="utf-8")  # the size it will have
    assert faults.read() == Faults()
    faults.path.write_text('{"fail_next": 2}', encoding="utf-8")
    assert faults.read().fail_next == 2
    faults.path.unlink()
    assert faults.read() == Faults()


async def test_hang_never_answers(client: Client, node: SimNode) -> None:
    await client.run("v-list-users", "json")
    node.set_faults(Faults(hang=True))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(client.run("v-list-users", "json"), 0.3)


async def test_command_log_and_peak_concurrency(client: Client, node: SimNode) -> None:
    await client.run("v-add-user", "alice", "topsecret", "alice@example.com")
    node.set_faults(Faults(latency_ms=300))
    results = await asyncio.gather(*(client.run("v-list-user", "alice", "json") for _ in range(5)))
    assert all(r.exit_status == 0 for r in results)
    assert read_stats(node.data_dir)["peak_running"] == 5
    log = read_command_log(node.data_dir)
    assert len(log) == 6
    first = log[0]
    assert first["argv"] == ["v-add-user", "alice", "*****", "alice@example.com"]
    assert first["user"] == "hostwright" and first["exit_code"] == 0 and first["changed"] is True
    assert all(entry["changed"] is False for entry in log[1:])
    assert first["started"] <= first["finished"]


async def test_state_survives_restart(tmp_path: Path, client_key: asyncssh.SSHKey) -> None:
    data = tmp_path / "node"
    node = await _start(data, client_key)
    client = Client(node, client_key)
    await client.run("v-add-user", "alice", "pw", "alice@example.com")
    await client.run("v-add-web-domain", "alice", "kept.test")
    host_key = node.host_public_key
    await client.close()
    await node.stop()
    node = await _start(data, client_key)
    client = Client(node, client_key)
    try:
        assert node.host_public_key == host_key
        assert "kept.test" in await client.json("v-list-web-domains", "alice", "json")
    finally:
        await client.close()
        await node.stop()


async def test_dns_over_udp(client: Client, node: SimNode) -> None:
    await client.run("v-add-user", "alice", "pw", "alice@example.com")
    await client.run(
        "v-add-dns-domain", "alice", "zone.test", "192.0.2.10", "ns1.h.test", "ns2.h.test"
    )
    port = node.ports()["dns"]
    assert isinstance(port, int)

    async def ask(name: str, rdtype: str) -> dns.message.Message:
        query = dns.message.make_query(name, rdtype)
        return await dns.asyncquery.udp(query, "127.0.0.1", port=port, timeout=2)

    reply = await ask("zone.test", "A")
    assert [r.to_text() for r in reply.answer[0]] == ["192.0.2.10"]
    reply = await ask("zone.test", "MX")
    assert reply.answer[0][0].to_text() == "0 mail.zone.test."
    assert (await ask("nothing.zone.test", "A")).rcode() == dns.rcode.NXDOMAIN
    assert (await ask("elsewhere.test", "A")).rcode() == dns.rcode.REFUSED
    ports = json.loads((node.data_dir / "ports.json").read_text())
    assert ports["dns"] == port and ports["ssh"] == node.port


async def test_mail_domain_dkim(client: Client, node: SimNode) -> None:
    await client.run("v-add-user", "alice", "pw", "alice@example.com")
    await client.run(
        "v-add-dns-domain", "alice", "mail.test", "192.0.2.10", "ns1.h.test", "ns2.h.test"
    )
    add = ("v-add-mail-domain", "alice", "mail.test", "yes", "yes", "yes", "1024")
    assert (await client.run(*add)).exit_status == 0
    dkim = await client.json("v-list-mail-domain-dkim-dns", "alice", "mail.test", "json")
    txt = dkim["mail._domainkey"]["TXT"]
    assert txt.startswith("'v=DKIM1; k=rsa; p=MI") and txt.endswith("'")
    assert (await client.run("v-add-mail-domain-dkim", "alice", "mail.test")).exit_status == 4
    account = ("v-add-mail-account", "alice", "mail.test", "info", "pw123456")
    assert (await client.run(*account)).exit_status == 0
    assert (await client.run(*account)).exit_status == 4
    accounts = await client.json("v-list-mail-accounts", "alice", "mail.test", "json")
    assert accounts["info"]["SUSPENDED"] == "no"
    assert (
        await client.run("v-suspend-mail-account", "alice", "mail.test", "info")
    ).exit_status == 0
    assert (
        await client.run("v-suspend-mail-account", "alice", "mail.test", "info")
    ).exit_status == 5
    query = dns.message.make_query("mail._domainkey.mail.test", "TXT")
    reply = await dns.asyncquery.udp(query, "127.0.0.1", port=node.ports()["dns"], timeout=2)  # type: ignore[arg-type]
    text = b"".join(reply.answer[0][0].strings).decode()
    assert text.startswith("v=DKIM1; k=rsa; p=MI")
    assert (await client.run("v-delete-mail-domain", "alice", "mail.test")).exit_status == 0
    records = await client.json("v-list-dns-records", "alice", "mail.test", "json")
    assert not [r for r in records.values() if r["RECORD"] == "mail._domainkey"]


GOLD = {
    **{key: "unlimited" for key in ("WEB_ALIASES", "DNS_RECORDS", "MAIL_DOMAINS", "DATABASES")},
    **{key: "unlimited" for key in ("MAIL_ACCOUNTS", "CRON_JOBS", "DISK_QUOTA", "BANDWIDTH")},
    "WEB_DOMAINS": "1",
    "DNS_DOMAINS": "5",
    "RATE_LIMIT": "200",
    "BACKUPS": "1",
    "NS": "ns1.hoster.test,ns2.hoster.test",
    "SHELL": "/usr/sbin/nologin",
}


async def test_package_file_via_sftp(client: Client) -> None:
    conn = await client.connect()
    try:
        async with conn.start_sftp_client() as sftp:
            await sftp.makedirs("/tmp", exist_ok=True)
            async with sftp.open("/tmp/gold.pkg", "w") as pkg:
                await pkg.write("".join(f"{k}='{v}'\n" for k, v in GOLD.items()))
    finally:
        conn.close()
    assert (await client.run("v-add-user-package", "/tmp/gold.pkg", "gold")).exit_status == 0
    assert (await client.run("v-add-user-package", "/tmp/gold.pkg", "gold")).exit_status == 4
    assert (await client.json("v-list-user-package", "gold", "json"))["gold"]["WEB_DOMAINS"] == "1"
    await client.run("v-add-user", "alice", "pw", "alice@example.com", "gold")
    assert (await client.run("v-add-web-domain", "alice", "one.test")).exit_status == 0
    assert (await client.run("v-add-web-domain", "alice", "two.test")).exit_status == 8


async def test_deleting_a_package_moves_its_users_and_every_prefixed_ones_to_default(
    client: Client,
) -> None:
    """As Hestia's v-delete-user-package does (it greps ``PACKAGE='NAME``): a package in use is
    not refused, and users on any package whose name starts with it go to ``default`` too."""
    conn = await client.connect()
    try:
        async with conn.start_sftp_client() as sftp:
            await sftp.makedirs("/tmp", exist_ok=True)
            async with sftp.open("/tmp/gold.pkg", "w") as pkg:
                await pkg.write("".join(f"{k}='{v}'\n" for k, v in GOLD.items()))
    finally:
        conn.close()
    for package in ("gold", "gold-2", "silver"):
        await client.run("v-add-user-package", "/tmp/gold.pkg", package)
    for user, package in (("alice", "gold"), ("bob", "gold-2"), ("carol", "silver")):
        await client.run("v-add-user", user, "pw", f"{user}@example.com", package)
    listed = await client.json("v-list-user-package", "gold", "json")
    assert {"RATE_LIMIT", "BACKEND_TEMPLATE", "BACKUPS_INCREMENTAL"} <= set(listed["gold"])
    assert (await client.run("v-delete-user-package", "gold")).exit_status == 0
    users = await client.json("v-list-users", "json")
    assert {u: c["PACKAGE"] for u, c in users.items()} == {
        "alice": "default",
        "bob": "default",
        "carol": "silver",
    }
    assert users["alice"]["WEB_DOMAINS"] == "unlimited"  # the default package's limits
    assert set(await client.json("v-list-user-packages", "json")) == {
        "default",
        "system",
        "gold-2",
        "silver",
    }
    assert (await client.run("v-delete-user-package", "gold")).exit_status == 3
    assert (await client.run("v-delete-user-package")).exit_status == 1


async def test_acme_challenge_over_http(client: Client, node: SimNode) -> None:
    await client.run("v-add-user", "alice", "pw", "alice@example.com")
    await client.run("v-add-web-domain", "alice", "site.test")
    challenge = node.data_dir / "fs/home/alice/web/site.test/public_html/.well-known/acme-challenge"
    challenge.mkdir(parents=True)
    (challenge / "tok123").write_text("tok123.thumbprint")
    ports = node.ports()
    async with httpx.AsyncClient() as http:
        url = f"http://127.0.0.1:{ports['http']}/.well-known/acme-challenge/tok123"
        reply = await http.get(url, headers={"Host": "www.site.test"})
        assert reply.status_code == 200 and reply.text == "tok123.thumbprint"
        other = await http.get(url, headers={"Host": "other.test"})
        assert other.status_code == 404
    async with httpx.AsyncClient(verify=False) as https:  # noqa: S501 — self-signed by design
        reply = await https.get(
            f"https://127.0.0.1:{ports['https']}/", headers={"Host": "site.test"}
        )
        assert reply.status_code == 404


async def test_cli_prints_ports_and_stops_on_sigterm(tmp_path: Path) -> None:
    code = (
        "import sys; from ops.devtools.simnode import run_simnode;"
        " sys.exit(run_simnode(sys.argv[1:]))"
    )
    args = ["--roles", "web,dns", "--listen", "127.0.0.1:0", "--data", str(tmp_path / "cli")]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, *args, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), budget(20))).decode()
    fields = dict(item.split("=", 1) for item in line.split()[1:])
    assert int(fields["ssh"]) > 0 and int(fields["dns"]) > 0 and "mail" not in fields
    assert Path(fields["host_key"]).read_text().startswith("ssh-ed25519 ")
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), budget(10)) == 0


async def test_a_slow_command_shows_as_running_while_it_runs(client: Client, node: SimNode) -> None:
    """``slow_commands`` slows that command alone; stats.json counts a running command soon
    after it starts, also when it does not raise the peak."""
    await client.run("v-list-users", "json")  # the peak is 1 from now on
    node.set_faults(Faults(slow_commands={"v-add-user": 1500}))
    started = time.monotonic()
    assert (await client.run("v-list-users", "json")).exit_status == 0
    await asyncio.sleep(0.2)  # the end's rewrite of stats.json is done: only the start can tell
    running = asyncio.create_task(client.run("v-add-user", "al", "pw", "al@example.com"))

    async def shows_running(count: int) -> None:
        while read_stats(node.data_dir).get("running") != count:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(shows_running(1), budget(10))
    assert not running.done()
    assert (await running).exit_status == 0 and time.monotonic() - started >= 1.5
    await asyncio.wait_for(shows_running(0), budget(10))
    assert read_stats(node.data_dir) == {"running": 0, "peak_running": 1, "commands": 3}


async def test_a_held_command_waits_until_it_is_taken_off_the_list(
    client: Client, node: SimNode
) -> None:
    """``held_commands`` is a gate: the command starts (counted as running) and answers only
    once the list no longer names it; other commands run meanwhile."""
    node.set_faults(Faults(held_commands=["v-list-users"]))
    held = asyncio.create_task(client.run("v-list-users", "json"))

    async def shows_running() -> None:
        while node.executor.journal.running != 1:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(shows_running(), budget(10))
    await asyncio.wait_for(client.run("v-list-user", "nobody", "json"), budget(10))  # answered
    assert not held.done()
    node.set_faults(Faults())
    assert (await asyncio.wait_for(held, budget(10))).exit_status == 0
    assert node.executor.journal.running == 0
