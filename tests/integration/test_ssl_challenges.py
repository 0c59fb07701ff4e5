"""ACME challenges placed on simulated Hestia nodes over real SSH: an HTTP-01 file copied into a
site's document root with Hestia's file commands and served by the node's web server for the
domain and its alias; a DNS-01 TXT record added once on every DNS node holding the zone, served
by their DNS, and removed again without touching another value at the same name."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import dns.asyncquery
import dns.message
import dns.rdatatype
import httpx
import pytest

from domain.ssl_types import DnsTarget, Http01Spot
from handlers.hestia_command import PermanentNodeError
from handlers.hestia_driver import HestiaDriver
from handlers.ssl_challenges import UPLOAD_ROOT, ChallengeSpots
from handlers.step import StepLog
from ops.devtools.simnode import SimNode, read_command_log
from tests.support.simnode_driver import nodes_and_drivers

USER, DOMAIN = "alice", "shop.test"
TOKEN = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"
BODY = f"{TOKEN}.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[dict[str, tuple[SimNode, HestiaDriver]]]:
    found = await nodes_and_drivers(tmp_path, ["web1", "dns1", "dns2"])
    try:
        for _, driver in found.values():
            await driver.check(["v-add-user", USER, "pw", f"{USER}@example.com"])
        yield found
    finally:
        for node, driver in found.values():
            await driver.close()
            await node.stop()


async def _fetch(node: SimNode, host: str, token: str = TOKEN) -> httpx.Response:
    url = f"http://127.0.0.1:{node.ports()['http']}/.well-known/acme-challenge/{token}"
    async with httpx.AsyncClient(trust_env=False) as client:
        return await client.get(url, headers={"Host": host})


async def test_an_http01_file_is_served_for_the_domain_and_its_alias(
    nodes: dict[str, tuple[SimNode, HestiaDriver]],
) -> None:
    node, driver = nodes["web1"]
    await driver.check(["v-add-web-domain", USER, DOMAIN])
    listed = await driver.list_json(["v-list-web-domain", USER, DOMAIN])
    spot = Http01Spot("web1", USER, listed[DOMAIN]["DOCUMENT_ROOT"])
    spots, log = ChallengeSpots(), StepLog()
    assert (await _fetch(node, DOMAIN)).status_code == 404

    await spots.put_http01(driver, spot, TOKEN, BODY, log)
    for host in (DOMAIN, f"www.{DOMAIN}"):
        answer = await _fetch(node, host)
        assert answer.status_code == 200 and answer.text == BODY
    assert not any((node.data_dir / "fs" / UPLOAD_ROOT.lstrip("/")).iterdir())
    await spots.put_http01(driver, spot, TOKEN, BODY, log)  # a second time is harmless
    assert (await _fetch(node, DOMAIN)).text == BODY
    copied = [
        e["argv"] for e in read_command_log(node.data_dir) if e["argv"][0] == "v-copy-fs-file"
    ]
    assert copied[0][:2] == ["v-copy-fs-file", USER]
    upload = copied[0][2].split("/")  # a fresh random folder of its own under the root
    assert "/".join(upload[:-2]) == UPLOAD_ROOT and upload[-1] == TOKEN
    assert len(upload[-2]) == 32 and copied[1][2] != copied[0][2]
    assert copied[0][3] == (
        f"/home/{USER}/web/{DOMAIN}/public_html/.well-known/acme-challenge/{TOKEN}"
    )

    await spots.remove_http01(driver, spot, TOKEN, log)
    await spots.remove_http01(driver, spot, TOKEN, log)  # gone already: fine
    assert (await _fetch(node, DOMAIN)).status_code == 404
    assert all("-> exit 0" in line for line in log.lines if line.startswith("$"))


@pytest.mark.parametrize("planted", ["open to all", "a link"])
async def test_an_upload_root_planted_by_someone_else_is_refused(
    nodes: dict[str, tuple[SimNode, HestiaDriver]], planted: str
) -> None:
    node, driver = nodes["web1"]
    await driver.check(["v-add-web-domain", USER, DOMAIN])
    spot = Http01Spot("web1", USER, f"/home/{USER}/web/{DOMAIN}/public_html")
    fs = node.data_dir / "fs"
    root, trap = fs / UPLOAD_ROOT.lstrip("/"), fs / "tmp/trap"
    trap.mkdir(parents=True)
    if planted == "a link":
        root.symlink_to(trap)
    else:
        root.mkdir()
        root.chmod(0o777)
    with pytest.raises(PermanentNodeError, match="not a folder of ours"):
        await ChallengeSpots().put_http01(driver, spot, TOKEN, BODY, StepLog())
    assert not any(trap.iterdir())
    if planted != "a link":
        assert not any(root.iterdir())
    assert (await _fetch(node, DOMAIN)).status_code == 404


async def test_unsafe_tokens_and_unreachable_roots_are_refused(
    nodes: dict[str, tuple[SimNode, HestiaDriver]],
) -> None:
    node, driver = nodes["web1"]
    spots, log = ChallengeSpots(), StepLog()
    home = Http01Spot("web1", USER, f"/home/{USER}/web/{DOMAIN}/public_html")
    before = len(read_command_log(node.data_dir))
    for token in ("../../etc/passwd", "a b", "x;rm", ""):
        with pytest.raises(ValueError):
            await spots.put_http01(driver, home, token, BODY, log)
    with pytest.raises(ValueError):
        await spots.put_http01(driver, Http01Spot("web1", USER, "/home/../etc"), TOKEN, BODY, log)
    with pytest.raises(ValueError):  # a driver for another node
        await spots.put_http01(driver, Http01Spot("web2", USER, home.docroot), TOKEN, BODY, log)
    assert len(read_command_log(node.data_dir)) == before
    # webmail's root is outside the user's home: Hestia's file commands refuse it (exit 2)
    webmail = Http01Spot("web1", USER, "/var/lib/roundcube/public_html")
    with pytest.raises(PermanentNodeError) as refused:
        await spots.put_http01(driver, webmail, TOKEN, BODY, log)
    assert refused.value.exit_status == 2
    assert not any((node.data_dir / "fs" / UPLOAD_ROOT.lstrip("/")).iterdir())


async def _txt_served(node: SimNode, name: str) -> list[str]:
    query = dns.message.make_query(name, dns.rdatatype.TXT)
    port = int(node.ports()["dns"] or 0)
    reply = await dns.asyncquery.udp(query, "127.0.0.1", port=port, timeout=5)
    return sorted(
        b"".join(item.strings).decode()
        for rrset in reply.answer
        for item in rrset
        if rrset.rdtype == dns.rdatatype.TXT
    )


async def test_a_dns01_record_is_added_once_on_every_dns_node_then_removed_alone(
    nodes: dict[str, tuple[SimNode, HestiaDriver]],
) -> None:
    dns_nodes = {sid: nodes[sid] for sid in ("dns1", "dns2")}
    for _, driver in dns_nodes.values():
        await driver.check(["v-add-dns-domain", USER, DOMAIN, "127.0.0.1"])
    drivers = {sid: driver for sid, (_, driver) in dns_nodes.items()}
    targets = [DnsTarget(sid, USER, DOMAIN) for sid in drivers]
    fqdn, value, other = f"_acme-challenge.{DOMAIN}", "gfj9Xq-Rd0x_value-one", "second-value_2"
    spots, log = ChallengeSpots(), StepLog()

    await spots.add_txt_everywhere(drivers, targets, fqdn, value, log)
    await spots.add_txt_everywhere(drivers, targets, fqdn, value, log)  # present: not again
    await spots.add_txt_everywhere(drivers, targets, fqdn + ".", other, log)
    for node, _ in dns_nodes.values():
        added = [
            e["argv"] for e in read_command_log(node.data_dir) if e["argv"][0] == "v-add-dns-record"
        ]
        assert [a[3:6] for a in added if a[3] == "_acme-challenge"] == [
            ["_acme-challenge", "TXT", value],
            ["_acme-challenge", "TXT", other],
        ]
        assert await _txt_served(node, fqdn) == sorted([value, other])

    await spots.remove_txt_everywhere(drivers, targets, fqdn, value, log)
    assert not await spots.remove_txt(drivers["dns1"], targets[0], fqdn, value, log)
    for node, _ in dns_nodes.values():
        assert await _txt_served(node, fqdn) == [other]  # only that exact value went
    with pytest.raises(ValueError):
        await spots.add_txt(
            drivers["dns1"], targets[0], "_acme-challenge.elsewhere.test", value, log
        )
