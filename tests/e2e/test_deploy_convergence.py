"""Re-running a deployed service converges instead of piling up, end to end on RabbitMQ and
PostgreSQL; and what reaches a node is always the argv hostwright meant.

- Redeploy of active split, vanity and unified services changes nothing on any node (state,
  files) and runs no state-changing command.
- Verify & Repair after staff deleted one record by hand on one DNS node puts back exactly
  that record, there, once.
- Odd-but-valid names (IDN, ``-``/``_`` usernames, a dotted package) reach the nodes as exactly
  the intended argv; names built to break a shell are refused at the gateway and reach nothing.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from domain.hestia_package import content_package
from domain.own_domain_plan import DMARC_POLICY
from domain.placement import placement_for
from domain.server import ServerFacts
from ops.devtools.simnode import read_command_log
from tests.support.convergence import (
    changes_since,
    commands_since,
    event_count,
    log_marks,
    request,
    settle,
    snapshot,
    snapshot_all,
    wait_run,
)
from tests.support.deployment import (
    DNS1_IP,
    DNS2_IP,
    MAIL_IP,
    PROVIDER_DNS_USER,
    PROVIDER_DOMAIN,
    PROVIDER_MAIL_USER,
    UNI_IP,
    WEB_IP,
    Deployment,
    dumps,
    records_of,
)

ROLES = {
    "web1": ("web",),
    "mail1": ("mail",),
    "dns1": ("dns",),
    "dns2": ("dns",),
    "uni1": ("web", "mail", "dns"),
}
IPS = {"web1": WEB_IP, "mail1": MAIL_IP, "dns1": DNS1_IP, "dns2": DNS2_IP, "uni1": UNI_IP}


@pytest.fixture
async def deployment(
    tmp_path: Path, amqp_url: str, exchange_name: str, fresh_postgres_url: str
) -> AsyncIterator[Deployment]:
    """Every node registered from the start, so no later registration widens a service's DNS
    set between its deploy and its redeploy: uni1 is a DNS node of every split and vanity
    service too, and holds the provider's zone like dns1 and dns2."""
    system = Deployment(tmp_path, amqp_url, exchange_name, fresh_postgres_url)
    try:
        for server_id, roles in ROLES.items():
            await system.add_node(server_id, roles, IPS[server_id])
        await system.provision_provider("mail1", ["dns1", "dns2", "uni1"])
        await system.start_all()
        await system.register_nodes()
        yield system
    finally:
        await system.close()


def service_id_with_mail_on(mode: str, mail_server: str, start: int) -> int:
    """The first service id from ``start`` that placement puts on ``mail_server``: a vanity
    mailbox goes to its placement's mail node, and only mail1 holds the provider's mail user."""
    servers = [ServerFacts(sid, roles, IPS[sid]) for sid, roles in ROLES.items()]
    for candidate in range(start, start + 1000):
        if placement_for(str(candidate), mode, servers).mail_server == mail_server:
            return candidate
    raise AssertionError("no service id places its mail on " + mail_server)


async def zone(
    system: Deployment, server_id: str, user: str, domain: str
) -> list[tuple[str, str, str]]:
    return records_of(await system.on_node(server_id, "v-list-dns-records", user, domain))


async def test_redeploy_leaves_every_node_byte_for_byte_the_same_and_ends_active(
    deployment: Deployment,
) -> None:
    system = deployment
    vanity = service_id_with_mail_on("vanity", "mail1", 12)
    orders = {
        11: ("split", "shop.example.com", {"username": "shopuser"}),
        vanity: ("vanity", f"blog.{PROVIDER_DOMAIN}", {"label": "blog", "username": "bloguser"}),
        13: ("unified", "all-in-one.example.org", {"username": "uniuser"}),
    }
    for service_id, (mode, domain, extra) in orders.items():
        await system.order(service_id, mode, domain, **extra)
    await system.wait_status(list(orders), "active", 90)
    await settle(system)

    before = snapshot_all(system)
    first_runs = {
        sid: (await system.client.get(f"/v1/services/{sid}/timeline")).json()["steps"]
        for sid in orders
    }
    marks = log_marks(system)
    runs = {sid: await request(system, sid, "redeploy") for sid in orders}
    for service_id, run in runs.items():
        await wait_run(system, service_id, run, 90)
    await settle(system)

    # the redeploy did run: every step again, as new tasks, and every node was probed
    for service_id in orders:
        steps = (await system.client.get(f"/v1/services/{service_id}/timeline")).json()["steps"]
        old = first_runs[service_id]
        assert len(steps) == len(old)
        assert not {s["task_id"] for s in steps} & {s["task_id"] for s in old}
        assert (await system.status(service_id))["status"] == "active"
    ran = commands_since(system, marks)
    for server_id, entries in ran.items():
        assert entries, f"the redeploy never probed {server_id}"
    # nothing changed, nothing was even attempted: probes only
    assert changes_since(system, marks) == {sid: [] for sid in system.nodes}, dumps(ran)
    after = snapshot_all(system)
    for server_id in system.nodes:
        assert after[server_id].files == before[server_id].files, server_id
        assert after[server_id].state == before[server_id].state, server_id


async def test_verify_and_repair_restores_just_the_record_deleted_by_hand_on_one_dns_node(
    deployment: Deployment,
) -> None:
    system = deployment
    domain, user = "repair.example.net", "repairuser"
    await system.order(21, "split", domain, username=user)
    await system.wait_status([21], "active", 90)
    await settle(system)
    zones_before = {dns: await zone(system, dns, user, domain) for dns in ("dns1", "dns2", "uni1")}
    listing = await system.on_node("dns2", "v-list-dns-records", user, domain)
    dmarc = [rid for rid, r in listing.items() if r["RECORD"] == "_dmarc" and r["TYPE"] == "TXT"]
    assert len(dmarc) == 1, listing

    await system.on_node("dns2", "v-delete-dns-record", user, domain, dmarc[0])
    assert ("_dmarc", "TXT", DMARC_POLICY) not in await zone(system, "dns2", user, domain)
    before = snapshot_all(system)
    marks = log_marks(system)
    run = await request(system, 21, "verify-repair")
    await wait_run(system, 21, run, 90)
    await settle(system)

    changes = changes_since(system, marks)
    assert len(changes["dns2"]) == 1, dumps(changes)
    added = changes["dns2"][0]
    assert added[:6] == ["v-add-dns-record", user, domain, "_dmarc", "TXT", DMARC_POLICY], added
    assert {sid: argvs for sid, argvs in changes.items() if sid != "dns2"} == {
        sid: [] for sid in system.nodes if sid != "dns2"
    }
    # dns2 holds the zone it had before the deletion (the record once, under a new id) …
    assert await zone(system, "dns2", user, domain) == zones_before["dns2"]
    assert zones_before["dns2"].count(("_dmarc", "TXT", DMARC_POLICY)) == 1
    # … and no other node changed at all
    for server_id in system.nodes:
        if server_id != "dns2":
            assert snapshot(system, server_id) == before[server_id], server_id
    for dns in ("dns1", "uni1"):
        assert await zone(system, dns, user, domain) == zones_before[dns]


class Like:
    """An argv item known only by its shape (a random upload name, a record id, a DKIM key)."""

    def __init__(self, pattern: str) -> None:
        self.pattern = re.compile(pattern)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and self.pattern.fullmatch(other) is not None

    def __hash__(self) -> int:
        return hash(self.pattern.pattern)

    def __repr__(self) -> str:
        return f"Like({self.pattern.pattern!r})"


IDN_DOMAIN, IDN_ASCII = "bücher-shop.example", "bücher-shop.example".encode("idna").decode()
IDN_LABEL, IDN_LABEL_ASCII = "bücher", "bücher".encode("idna").decode()
SPLIT_USER, VANITY_USER, PACKAGE = "shop_user-1", "van_user-2", "e2e.basic"
PLAN = {"package": PACKAGE, "disk_mb": 1000}
HESTIA_PACKAGE = content_package(PLAN)  # the package named after the plan's limits
RECORD_ID = Like(r"[0-9]+")
UPLOAD = Like(rf"/tmp/hostwright-{re.escape(HESTIA_PACKAGE)}-[0-9a-f]{{12}}-[0-9a-f]{{8}}\.pkg")
HOSTILE_ORDERS: list[dict[str, Any]] = [
    {"mode": "split", "domain": "a.com; rm -rf /"},
    {"mode": "split", "domain": "$(reboot).example.com"},
    {"mode": "split", "domain": "`reboot`.example.com"},
    {"mode": "split", "domain": "a.com\nv-delete-user admin"},
    {"mode": "split", "domain": "a.com' 'x"},
    {"mode": "split", "domain": "ok.example.com", "username": "$(reboot)"},
    {"mode": "split", "domain": "ok.example.com", "username": "u`id`x"},
    {"mode": "split", "domain": "ok.example.com", "username": "bad\nname"},
    {"mode": "split", "domain": "ok.example.com", "username": "a;b"},
    {"mode": "split", "domain": "ok.example.com", "plan": {"package": "e2e;reboot"}},
    {"mode": "split", "domain": "ok.example.com", "plan": {"package": "$(reboot)"}},
    {"mode": "split", "domain": "ok.example.com", "plan": {"package": "x\ny"}},
    {"mode": "vanity", "domain": f"$(reboot).{PROVIDER_DOMAIN}", "label": "$(reboot)"},
    {"mode": "vanity", "domain": f"`id`.{PROVIDER_DOMAIN}", "label": "`id`"},
    {"mode": "vanity", "domain": f"a;b.{PROVIDER_DOMAIN}", "label": "a;b"},
    {"mode": "vanity", "domain": f"x.{PROVIDER_DOMAIN}", "label": "x\nv-delete-user provmail"},
]
HOSTILE_TOKENS = ("reboot", "rm -rf", "`", "$(", ";b", "\n", "delete-user admin", "'x")


def intended_commands(
    dkim: str, vanity_web: str, vanity_mail: str, dns_servers: list[str], vanity_id: int
) -> dict[str, dict[str, list[list[Any]]]]:
    """Every state-changing argv the two deploys send, per node, in the order each node runs
    them (dependencies order them; the two services' commands interleave, so compared per
    service), owner marks included."""
    email = f"webmaster@{IDN_ASCII}"
    split_mark, vanity_mark = "hostwright service 31", f"hostwright service {vanity_id}"
    zone_records = [
        ["www", "A", WEB_IP],
        ["mail", "A", MAIL_IP],
        ["webmail", "A", MAIL_IP],
        ["@", "MX", f"mail.{IDN_ASCII}", "10"],
        ["@", "TXT", f"v=spf1 a mx ip4:{MAIL_IP} -all"],
        ["mail._domainkey", "TXT", dkim],
    ]
    split: dict[str, list[list[Any]]] = {
        "web1": [
            ["v-add-user-package", UPLOAD, HESTIA_PACKAGE],
            ["v-add-user", SPLIT_USER, "*****", email, HESTIA_PACKAGE, split_mark],
            ["v-add-web-domain", SPLIT_USER, IDN_ASCII, WEB_IP, "", f"www.{IDN_ASCII}"],
        ],
        "mail1": [
            ["v-add-user-package", UPLOAD, HESTIA_PACKAGE],
            ["v-add-user", SPLIT_USER, "*****", email, HESTIA_PACKAGE, split_mark],
            ["v-add-mail-domain", SPLIT_USER, IDN_ASCII, "yes", "yes", "yes", "2048"],
        ],
    }
    for dns in dns_servers:
        steps: list[list[Any]] = [
            ["v-add-user-package", UPLOAD, HESTIA_PACKAGE],
            ["v-add-user", SPLIT_USER, "*****", email, HESTIA_PACKAGE, split_mark],
            ["v-add-dns-domain", SPLIT_USER, IDN_ASCII, WEB_IP],
        ]
        for index, record in enumerate(zone_records):
            steps.append(["v-add-dns-record", SPLIT_USER, IDN_ASCII, *record])
            if index < len(zone_records) - 1:  # the template's own record under that name goes
                steps.append(["v-delete-dns-record", SPLIT_USER, IDN_ASCII, RECORD_ID])
        split[dns] = steps
    vanity_ip = IPS[vanity_web]
    vanity_email = f"{IDN_LABEL_ASCII}@{PROVIDER_DOMAIN}"
    vanity_domain = f"{IDN_LABEL_ASCII}.{PROVIDER_DOMAIN}"
    vanity: dict[str, list[list[Any]]] = {
        vanity_web: [
            ["v-add-user-package", UPLOAD, HESTIA_PACKAGE],
            ["v-add-user", VANITY_USER, "*****", vanity_email, HESTIA_PACKAGE, vanity_mark],
            ["v-add-web-domain", VANITY_USER, vanity_domain, vanity_ip],
        ],
        vanity_mail: [
            ["v-add-mail-account", PROVIDER_MAIL_USER, PROVIDER_DOMAIN, IDN_LABEL_ASCII, "*****"],
            [
                "v-add-mail-account-alias",
                PROVIDER_MAIL_USER,
                PROVIDER_DOMAIN,
                IDN_LABEL_ASCII,
                f"hostwright.owner.{vanity_id}",
            ],
        ],
    }
    for dns in dns_servers:
        vanity[dns] = [
            [  # the owner mark first, so a crash never leaves a record nobody can prove
                "v-add-dns-record",
                PROVIDER_DNS_USER,
                PROVIDER_DOMAIN,
                IDN_LABEL_ASCII,
                "TXT",
                f"hostwright-owner={vanity_id}",
            ],
            [
                "v-add-dns-record",
                PROVIDER_DNS_USER,
                PROVIDER_DOMAIN,
                IDN_LABEL_ASCII,
                "A",
                vanity_ip,
            ],
        ]
    return {"split": split, "vanity": vanity}


def owner(argv: list[str]) -> str:
    """Which of the two services an argv belongs to (by the user or the name it carries)."""
    if SPLIT_USER in argv:
        return "split"
    if VANITY_USER in argv or IDN_LABEL_ASCII in argv:
        return "vanity"
    if argv[0] == "v-add-user-package":
        return "package"
    return "?"


async def test_odd_names_reach_nodes_as_the_intended_argv_and_hostile_ones_reach_nothing(
    deployment: Deployment,
) -> None:
    system = deployment
    dns_servers = ["dns1", "dns2", "uni1"]
    split_id = 31
    vanity_id = service_id_with_mail_on("vanity", "mail1", 32)
    servers = [ServerFacts(sid, roles, IPS[sid]) for sid, roles in ROLES.items()]
    split_place = placement_for(str(split_id), "split", servers)
    vanity_place = placement_for(str(vanity_id), "vanity", servers)
    await settle(system)
    marks = log_marks(system)
    plan = PLAN
    await system.order(split_id, "split", IDN_DOMAIN, username=SPLIT_USER, plan=plan)
    await system.order(
        vanity_id,
        "vanity",
        f"{IDN_LABEL}.{PROVIDER_DOMAIN}",
        label=IDN_LABEL,
        username=VANITY_USER,
        plan=plan,
    )
    await system.wait_status([split_id, vanity_id], "active", 90)
    await settle(system)
    status = await system.status(split_id)
    assert status["domain"] == IDN_ASCII == "xn--bcher-shop-9db.example"
    assert IDN_LABEL_ASCII == "xn--bcher-kva"

    # what the nodes ran: per node and per service exactly the intended state-changing argv …
    dkim_listing = await system.on_node(
        split_place.mail_server, "v-list-mail-domain-dkim-dns", SPLIT_USER, IDN_ASCII
    )
    dkim = next(iter(dkim_listing.values()))["TXT"].strip("'\"")
    expected = intended_commands(
        dkim, vanity_place.web_server, vanity_place.mail_server, dns_servers, vanity_id
    )
    assert (split_place.web_server, split_place.mail_server) == ("web1", "mail1"), split_place
    changes = changes_since(system, marks)
    packages_on = set()
    for server_id, argvs in changes.items():
        by_owner: dict[str, list[list[str]]] = {}
        for argv in argvs:
            by_owner.setdefault(owner(argv), []).append(argv)
        assert "?" not in by_owner, f"{server_id} ran argv of no service: {by_owner['?']}"
        packages = by_owner.pop("package", [])
        # the package is made once per node, by whichever of the two services got there first;
        # when both raced, the loser's add exits 4 and it finds the same limits: never rewritten
        add = ["v-add-user-package", UPLOAD, HESTIA_PACKAGE]
        assert packages in ([], [add], [add, add]), packages
        if packages:
            packages_on.add(server_id)
        for service in ("split", "vanity"):
            want = [a for a in expected[service].get(server_id, []) if a[0] != "v-add-user-package"]
            assert by_owner.get(service, []) == want, (server_id, service, dumps(argvs))
    wanted_packages = {
        sid for s in expected.values() for sid, a in s.items() if a[0][0].endswith("package")
    }
    assert packages_on == wanted_packages
    # … and every argv at all, probes included, carries only ASCII names and no shell syntax
    for server_id, entries in commands_since(system, marks).items():
        for entry in entries:
            for arg in entry["argv"]:
                assert arg.isascii() and arg.isprintable(), (server_id, entry["argv"])
            assert IDN_DOMAIN not in " ".join(entry["argv"])

    # hostile input: refused at the gateway, nothing recorded, nothing sent to a node
    marks = log_marks(system)
    events_before = await asyncio.to_thread(event_count, system.database_url)
    refused = []
    for index, hostile in enumerate(HOSTILE_ORDERS):
        body = {"service_id": 900 + index, "client_id": 1, "plan": {"package": "e2e"}, **hostile}
        reply = await system.client.post("/v1/services", json=body)
        refused.append((reply.status_code, hostile))
        assert 400 <= reply.status_code < 500, (reply.status_code, hostile, reply.text)
        assert reply.json()["result"] == "error", reply.text
    for path in ("/v1/services/1;reboot/redeploy", "/v1/services/$(reboot)/factory-reset"):
        reply = await system.client.post(path, json={})
        assert 400 <= reply.status_code < 500, (path, reply.status_code, reply.text)
    assert await asyncio.to_thread(event_count, system.database_url) == events_before
    for index in range(len(HOSTILE_ORDERS)):
        assert (await system.status(900 + index))["status"] is None
    # a barrier: a run ordered after the hostile calls finishes, so anything they had set off
    # would have reached the nodes by now
    run = await request(system, split_id, "verify-repair")
    await wait_run(system, split_id, run, 90)
    await settle(system)
    assert changes_since(system, marks) == {sid: [] for sid in system.nodes}
    for server_id, node in system.nodes.items():
        for entry in read_command_log(node.data_dir):
            line = "\x00".join(entry["argv"])
            assert not any(token in line for token in HOSTILE_TOKENS), (server_id, entry)
