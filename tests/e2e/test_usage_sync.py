"""Usage sync end to end on real simulated nodes (SQLite, in-process transport, one ``up``):
three nodes, 30 services of every mode deployed on them.

- one sync lists each node once (``v-list-users``; the shared mail user's mailboxes once more
  on the node holding them), whatever the number of services, and each service's figures are
  the sum of what the nodes hold for its users (split: web + mail + first DNS node; unified:
  one user; vanity: its web user and its mailbox);
- refresh all, five "Sync now" and the scheduler's tick, together, list each node once;
- a node down during a sync keeps its services' last figures, marked stale; the others update;
- the shared mail user's totals never show on any service;
- the bill and the gauges agree for every service, and ``as_of`` answers the past;
- bad input (unknown node or service, malformed ids) is refused with a 4xx, nothing recorded.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio

from ops.devtools.simnode import Faults, read_command_log
from tests.support.cli_runs import run_cli
from tests.support.deployment import PROVIDER_MAIL_USER, wait_until
from tests.support.usage_deployment import (
    MAIL_NODE,
    NODES,
    SERVICES,
    UsageDeployment,
    deployed_services,
    dumps,
)

# one deployment for the module: its tests run on one xdist worker, in file order
pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.xdist_group("usage-sync")]
SERVER_IDS = [server_id for server_id, _, _ in NODES]
SHARED_DISK = 987_654  # what the provider's shared mail user holds: never on any service


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def system(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[UsageDeployment]:
    async with deployed_services(tmp_path_factory.mktemp("usage")) as deployed:
        yield deployed


async def hold_figures(system: UsageDeployment, salt: int) -> dict[str, Any]:
    """Gives every user of every node figures of its own (``salt`` makes them new), the shared
    mail user huge ones, each vanity mailbox a disk use; returns what each node holds."""
    held: dict[str, Any] = {}
    for number, server_id in enumerate(SERVER_IDS):
        users = await system.users_on(server_id)
        figures = {}
        for i, user in enumerate(sorted(users)):
            figures[user] = {
                "U_DISK": 100 + 7 * i + 1000 * number + salt,
                "U_BANDWIDTH": 10 + i + salt,
                "U_DATABASES": i % 3,
                "U_MAIL_ACCOUNTS": i % 4,
            }
        if PROVIDER_MAIL_USER in figures:
            figures[PROVIDER_MAIL_USER].update(U_DISK=SHARED_DISK, U_MAIL_ACCOUNTS=500)
        mailboxes = None
        if server_id == MAIL_NODE:
            mailboxes = {
                f"v{s}": {"U_DISK": 3 + s % 50 + salt} for s, m in SERVICES if m == "vanity"
            }
            mailboxes["postmaster"] = {"U_DISK": 4321}  # the provider's own mailbox
        system.hold(server_id, figures, mailboxes)
        held[server_id] = {"users": figures, "mailboxes": mailboxes or {}}
    return held


async def expected(system: UsageDeployment, held: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Each service's disk, mailboxes and databases as its mode sums what the nodes hold."""
    found = {}
    for service_id, mode in SERVICES:
        body = (await system.client.get(f"/v1/services/{service_id}")).json()
        roles, user = body["roles"], body["username"]
        accounts = [(roles["web"]["servers"][0], user)]
        if mode != "vanity":
            accounts += [(roles["mail"]["servers"][0], user), (roles["dns"]["servers"][0], user)]
        totals = {"disk_mb": 0, "mail_accounts": 0, "databases": 0}
        for server_id, name in dict.fromkeys(accounts):
            figures = held[server_id]["users"][name]
            totals["disk_mb"] += figures["U_DISK"]
            totals["mail_accounts"] += figures["U_MAIL_ACCOUNTS"]
            totals["databases"] += figures["U_DATABASES"]
        if mode == "vanity":
            totals["disk_mb"] += held[MAIL_NODE]["mailboxes"][f"v{service_id}"]["U_DISK"]
            totals["mail_accounts"] += 1
        found[str(service_id)] = totals
    return found


def listings(system: UsageDeployment) -> dict[str, int]:
    return {server_id: system.listings(server_id) for server_id in SERVER_IDS}


async def all_collected_after(system: UsageDeployment, moment: str) -> bool:
    nodes = (await system.staff.get("/v1/usage")).json()["nodes"]
    done = {n["server_id"] for n in nodes if (n["collected_at"] or "") > moment}
    return done >= set(SERVER_IDS)


async def usage_of(system: UsageDeployment, service_id: str, **params: str) -> dict[str, Any]:
    reply = await system.client.get(f"/v1/services/{service_id}/usage", params=params)
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def used(body: dict[str, Any]) -> dict[str, int]:
    return {
        name: body["gauges"][name]["used"] for name in ("disk_mb", "mail_accounts", "databases")
    }


def now_text() -> str:
    """Now in the views' time text (UTC, microseconds): compared with theirs as text."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


async def listed(system: UsageDeployment, salt: int) -> dict[str, Any]:
    """``hold_figures``, then a refresh of every node, waited for: what they were listed with."""
    held = await hold_figures(system, salt)
    started = now_text()
    await refreshed(system)
    await wait_until(
        lambda: all_collected_after(system, started), 30, "a listing of every node", system.logs
    )
    return held


async def refreshed(system: UsageDeployment, body: dict[str, Any] | None = None) -> dict[str, Any]:
    reply = await system.staff.post("/v1/usage/refresh", json=body or {})
    assert reply.status_code == 202, reply.text
    found: dict[str, Any] = reply.json()
    return found


async def test_one_sync_lists_each_node_once_and_figures_are_what_the_nodes_hold(
    system: UsageDeployment,
) -> None:
    held = await hold_figures(system, salt=0)
    want = await expected(system, held)
    before, mailbox_before = listings(system), system.listings(MAIL_NODE, "v-list-mail-accounts")
    started = now_text()
    outcome = await refreshed(system)
    assert set(outcome["servers"]) == set(SERVER_IDS)

    async def figures_match() -> bool:
        if not await all_collected_after(system, started):
            return False
        for service_id in want:
            if used(await usage_of(system, service_id)) != want[service_id]:
                return False
        return True

    await wait_until(figures_match, 30, "every service's figures", system.logs)
    after = listings(system)
    assert {s: after[s] - before[s] for s in SERVER_IDS} == dict.fromkeys(SERVER_IDS, 1)
    assert system.listings(MAIL_NODE, "v-list-mail-accounts") == mailbox_before + 1
    for server_id in SERVER_IDS:
        if server_id != MAIL_NODE:
            assert system.listings(server_id, "v-list-mail-accounts") == 0


async def test_refresh_all_sync_now_five_times_and_the_tick_list_each_node_once(
    system: UsageDeployment,
) -> None:
    """The tick queues a sync of every node (the retry of a failed one: no settings to
    change), whose listing is held on a gate (``held_commands``) while "Refresh all" and five
    "Sync now" are each answered ``joined``; the gate opens and each node is listed once.
    Settled without a guess: a probe refresh after the listing must find no sync pending
    (``queued``, not ``joined``), so every listing the asks caused started before it."""
    customer = SERVICES[0][0]
    customer_nodes = await servers_of(system, customer)
    up = system.processes["up"]
    for node in system.nodes.values():
        node.set_faults(Faults(refuse=True))
        await node.apply_faults()  # refusing now, not within the watcher's look
    failing = now_text()
    seen: list[Any] = []
    try:
        seen.append(await refreshed(system))

        async def all_failed() -> bool:
            nodes = (await system.staff.get("/v1/usage")).json()["nodes"]
            seen[1:] = [nodes]
            return all((n["failed_at"] or "") > failing for n in nodes)

        await wait_until(
            all_failed, 30, "every node's failed sync", lambda: dumps(seen) + system.logs()
        )
        for node in system.nodes.values():
            node.set_faults(Faults(held_commands=["v-list-users"]))
            await node.apply_faults()
        before = listings(system)  # a held listing is counted once it answers
        started = now_text()
        log_from = len(up.log())

        async def the_tick_is_listing() -> bool:
            return all(n.executor.journal.running > 0 for n in system.nodes.values())

        # the tick queues each node's retry (HOSTWRIGHT_USAGE_RETRY_S=1): held at the gate
        await wait_until(the_tick_is_listing, 30, "the tick's listing of every node", system.logs)
        outcome = await refreshed(system)
        assert outcome["servers"] == dict.fromkeys(SERVER_IDS, "joined")
        for _ in range(5):
            reply = await system.client.post(f"/v1/services/{customer}/sync-usage")
            assert reply.status_code == 202, reply.text

        def sync_now_outcomes() -> dict[str, list[str]]:
            found: dict[str, list[str]] = {server_id: [] for server_id in customer_nodes}
            for line in up.log()[log_from:].splitlines():
                for server_id in customer_nodes:
                    marker = f"usage {server_id}: a sync-now came to "
                    if marker in line:
                        found[server_id].append(line.split(marker, 1)[1].split()[0])
            return found

        async def every_sync_now_answered() -> bool:
            return all(len(answers) >= 5 for answers in sync_now_outcomes().values())

        await wait_until(every_sync_now_answered, 30, "the five Sync now", system.logs)
        assert sync_now_outcomes() == {s: ["joined"] * 5 for s in customer_nodes}
        assert all(n.executor.journal.running > 0 for n in system.nodes.values())
    finally:
        for node in system.nodes.values():
            node.set_faults(Faults())  # the gate opens
    await wait_until(lambda: all_collected_after(system, started), 30, "the listings", system.logs)
    probe = now_text()
    outcome = await refreshed(system)
    assert outcome["servers"] == dict.fromkeys(SERVER_IDS, "queued"), "a sync was still pending"
    started_before = {s: listings_started_before(system, s, probe) for s in SERVER_IDS}
    assert {s: started_before[s] - before[s] for s in SERVER_IDS} == dict.fromkeys(SERVER_IDS, 1)
    await wait_until(lambda: all_collected_after(system, probe), 30, "the probe", system.logs)


def listings_started_before(system: UsageDeployment, server_id: str, moment: str) -> int:
    """The node's ``v-list-users`` that started before ``moment`` (the views' time text)."""
    log = read_command_log(system.nodes[server_id].data_dir)
    return sum(
        1
        for entry in log
        if entry["argv"]
        and entry["argv"][0].endswith("v-list-users")
        and datetime.fromisoformat(entry["started"]) < datetime.fromisoformat(moment)
    )


async def test_a_node_down_keeps_its_services_figures_stale_while_the_others_update(
    system: UsageDeployment,
) -> None:
    last = await listed(system, salt=45)  # what the node that goes down was last listed with
    held = await hold_figures(system, salt=50)
    down = "n3"
    system.nodes[down].set_faults(Faults(refuse=True))
    await system.nodes[down].apply_faults()  # refusing before the refresh reaches it
    started = now_text()
    try:
        await refreshed(system)

        async def settled() -> bool:
            nodes = {
                n["server_id"]: n for n in (await system.staff.get("/v1/usage")).json()["nodes"]
            }
            up = all((nodes[s]["collected_at"] or "") > started for s in SERVER_IDS if s != down)
            return up and (nodes[down]["failed_at"] or "") > started

        await wait_until(settled, 30, "the sync with n3 down", system.logs)
        touched = {str(s) for s, _ in SERVICES if down in await servers_of(system, s)}
        assert touched, "no service has figures from the node that went down"
        # the node that went down still counts what it held at the last listing
        mixed = {**held, down: last[down]}
        want = await expected(system, mixed)
        for service_id in want:
            now = await usage_of(system, service_id)
            assert used(now) == want[service_id], (service_id, dumps(now))
            assert now["stale"] == (service_id in touched), dumps(now)
            if service_id in touched:
                assert now["stale_since"] > started and now["age_s"] is not None
        rows = (await system.staff.get("/v1/usage", params={"limit": "100"})).json()["services"]
        assert {r["service_id"] for r in rows if r["stale"]} == touched
    finally:
        system.nodes[down].set_faults(Faults())
    await wait_until(  # retried by the tick once the node is back: fresh again
        lambda: no_stale(system), 40, "the retry of the node that was down", system.logs
    )


async def servers_of(system: UsageDeployment, service_id: int) -> set[str]:
    body = (await system.client.get(f"/v1/services/{service_id}")).json()
    mode, roles = body["mode"], body["roles"]
    nodes = {roles["web"]["servers"][0]}
    if mode == "vanity":
        return nodes | {MAIL_NODE}
    return nodes | {roles["mail"]["servers"][0], roles["dns"]["servers"][0]}


async def no_stale(system: UsageDeployment) -> bool:
    summary = (await system.staff.get("/v1/usage")).json()["summary"]
    return bool(summary["stale"] == 0)


async def test_the_shared_mail_users_totals_never_show_on_any_service(
    system: UsageDeployment,
) -> None:
    held = await hold_figures(system, salt=70)
    want = await expected(system, held)  # the shared user's figures are in no sum
    started = now_text()
    await refreshed(system)
    await wait_until(lambda: all_collected_after(system, started), 30, "a sync", system.logs)
    bill = (await system.client.get("/v1/billing/usage")).json()["tenants"]
    for service_id, _ in SERVICES:
        body = await usage_of(system, str(service_id))
        assert used(body) == want[str(service_id)], dumps(body)
        assert body["gauges"]["disk_mb"]["used"] < SHARED_DISK
        assert body["gauges"]["mail_accounts"]["used"] < 500
    assert all(t["metrics"]["disk_mb"] < SHARED_DISK for t in bill.values())
    assert all(t["username"] != PROVIDER_MAIL_USER for t in bill.values())


async def test_the_bill_and_the_gauges_agree_and_as_of_answers_the_past(
    system: UsageDeployment,
) -> None:
    await listed(system, salt=85)  # a known past: every node listed, nothing in flight
    past = {str(s): await usage_of(system, str(s)) for s, _ in SERVICES}
    moment = now_text()
    await hold_figures(system, salt=90)
    started = now_text()
    await refreshed(system)
    await wait_until(lambda: all_collected_after(system, started), 30, "a sync", system.logs)
    bill = (await system.client.get("/v1/billing/usage")).json()
    assert bill["key"] == "domain"
    tenants = {t["service_id"]: t for t in bill["tenants"].values()}
    assert set(tenants) == {str(s) for s, _ in SERVICES}
    for service_id in tenants:
        gauges = (await usage_of(system, service_id))["gauges"]
        shown = {name: gauge["used"] for name, gauge in gauges.items()}
        assert tenants[service_id]["metrics"] == shown
        one = (await system.client.get(f"/v1/services/{service_id}/billing")).json()
        assert one["metrics"] == shown
        then = await usage_of(system, service_id, as_of=moment)
        assert then["gauges"] == past[service_id]["gauges"], (then, past[service_id])
        assert then["gauges"] != gauges  # the new listing changed them: as_of is the past
    metrics = (await system.client.get("/v1/billing/metrics")).json()["metrics"]
    assert {m["name"]: m["type"] for m in metrics}["bandwidth_mb"] == "period_month"


BAD_REFRESHES = [
    ({"server_id": "nosuch"}, 404),
    ({"server_id": "Not A Server!"}, 422),
    ({"service_ids": ["999999"]}, 404),
    ({"service_ids": ["bad id!"]}, 422),
    ({"service_ids": []}, 422),
    ({"server_id": "n1", "service_ids": ["5000"]}, 422),
    ({"servers": ["n1"]}, 422),
]


async def test_bad_input_is_refused_with_a_4xx_and_records_nothing(
    system: UsageDeployment,
) -> None:
    events_before = await event_count(system)
    for body, status in BAD_REFRESHES:
        reply = await system.staff.post("/v1/usage/refresh", json=body)
        assert reply.status_code == status, (body, reply.text)
        assert reply.json()["result"] == "error"
    for path in ("/v1/services/999999/sync-usage", "/v1/services/bad%20id!/sync-usage"):
        reply = await system.client.post(path)
        assert 400 <= reply.status_code < 500, (path, reply.text)
    for path, status in (
        ("/v1/services/999999/usage", 404),
        ("/v1/services/bad%20id!/usage", 400),
        ("/v1/services/999999/billing", 404),
        ("/v1/services/5000/usage?as_of=yesterday", 400),
        ("/v1/usage?sort=password", 400),
        ("/v1/billing/usage?key=email", 400),
    ):
        reply = await system.client.get(path)
        assert reply.status_code == status, (path, reply.text)
    assert await event_count(system) == events_before


async def event_count(system: UsageDeployment) -> int:
    """How many events the store holds (its notification log's last id)."""
    from ops.store.event_store import EventStore

    store = EventStore(system.database_url)
    try:
        return store.max_notification_id()
    finally:
        store.close()


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_replay_rebuilds_the_usage_view_identically(
    system: UsageDeployment, workers: str
) -> None:
    """After every listing, failure and retry above: the usage tables equal their rebuild
    from event 0, in one process and split by service over two (the listings are events of
    no service, folded by every shard)."""
    rows = (await system.staff.get("/v1/usage", params={"limit": "5"})).json()["services"]
    assert rows and all(r["collected_at"] for r in rows)  # there is something to compare
    done = await asyncio.to_thread(
        run_cli, system.tmp, "replay", "--workers", workers, database_url=system.database_url
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "replay: every view equals its rebuild from event 0"
