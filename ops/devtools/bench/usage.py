"""``hostwright bench usage``: one usage sync of 10,000 services on 10 simulated nodes.

The services are seeded as events (each ``Service.Ordered``, ``Placed`` and ``Activated``,
saved in batches; no name claims), not deployed: deploying 10,000 services is another
benchmark's business. Each node's users are written into its state before it starts, and what
they hold into its ``usage.json``: a third of the services unified (one user), a third split
(web, mail and DNS users on three nodes), a third vanity (a web user, and a mailbox on the
provider's shared mail user on ``n0``). The bench waits for the projections and the relay
to catch up with that history before it measures. The gateway, the relay, the projections and
the usage desk run in this process (SQLite, in-process transport), the simulated nodes too, as the
SSH floor measured first does: one process, one core's worth.

Reports: SSH calls per sync (the nodes' command journals: goal 10, or 11 with the vanity
mailbox listing), the wall time of one full sync (``POST /v1/usage/refresh`` to every node's
listing recorded), the view update time (from the last listing recorded to the usage view
holding every node's), and ``GET /v1/billing/usage`` (all tenants in one answer) p50 / p99,
beside the SSH floor (commands per second through the real driver).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncssh
import httpx

from domain.commands import OrderService
from domain.hosting_plan import HostingPlan
from domain.service import Service
from ops.adapters.usage_book import StoreUsageBook
from ops.bootstrap import System
from ops.devtools.bench.ssh_floor import ssh_command_rate
from ops.devtools.listen_ports import free_port
from ops.devtools.simnode import SimNode, read_command_log
from ops.devtools.simnode.state import MailDomain, NodeState, StateFile, UserData
from ops.devtools.simnode.usage_file import write_usage
from ops.runtime.components import serve_gateway, serve_projections, serve_relay, serve_usage
from ops.settings import Settings
from ops.store.event_store import EventStore
from ops.store.positions import PositionStore

PROVIDER_DOMAIN = "hosted.example"
SHARED_MAIL_USER = "provmail"
MODES = ("unified", "split", "vanity")
SEED_BATCH = 500


def placement_of(number: int, servers: int) -> tuple[str, dict[str, Any]]:
    """Service ``number``'s mode and nodes (``n<i>``)."""
    mode = MODES[number % 3]
    web = f"n{number % servers}"
    if mode == "split":
        mail, dns = f"n{(number + 1) % servers}", f"n{(number + 2) % servers}"
        return mode, {"web_server": web, "mail_server": mail, "dns_servers": [dns]}
    if mode == "vanity":
        return mode, {"web_server": web, "mail_server": "n0", "dns_servers": [web]}
    return mode, {"web_server": web, "mail_server": web, "dns_servers": [web]}


def seed_nodes(root: Path, services: int, servers: int) -> None:
    """Every node's users (and the shared mail user's mailboxes on ``n0``) and their figures."""
    users: dict[str, set[str]] = {f"n{i}": set() for i in range(servers)}
    mailboxes: list[str] = []
    for number in range(services):
        mode, placed = placement_of(number, servers)
        user = f"u{number}"
        users[placed["web_server"]].add(user)
        if mode == "split":
            users[placed["mail_server"]].add(user)
            users[placed["dns_servers"][0]].add(user)
        if mode == "vanity":
            mailboxes.append(f"v{number}")
    users["n0"].add(SHARED_MAIL_USER)
    chance = random.Random(15)  # noqa: S311  (figures for a benchmark, not secrets)
    for server_id, names in users.items():
        state = NodeState.fresh()
        for name in sorted(names):
            state.users[name] = UserData(conf={"PACKAGE": "default", "SUSPENDED": "no"})
        figures = {
            name: {"U_DISK": chance.randint(1, 5000), "U_BANDWIDTH": chance.randint(0, 900)}
            for name in names
        }
        usage: dict[str, Any] = {"users": figures}
        if server_id == "n0":
            accounts = {label: {"QUOTA": "unlimited", "U_DISK": "0"} for label in mailboxes}
            state.users[SHARED_MAIL_USER].mail[PROVIDER_DOMAIN] = MailDomain(
                conf={"ACCOUNTS": str(len(accounts))}, accounts=accounts
            )
            usage["mailboxes"] = {
                SHARED_MAIL_USER: {
                    PROVIDER_DOMAIN: {m: {"U_DISK": chance.randint(0, 300)} for m in mailboxes}
                }
            }
        data_dir = root / server_id
        data_dir.mkdir(parents=True, exist_ok=True)
        StateFile(data_dir).save(state)
        write_usage(data_dir, usage)


def seed_services(database_url: str, services: int, servers: int) -> None:
    """Each service's Ordered, Placed and Activated events, saved in batches."""
    store = EventStore(database_url)
    now = datetime.now(UTC)
    plan = HostingPlan.parse({"package": "bench", "disk_mb": 10_000, "bandwidth_mb": 100_000})
    try:
        batch: list[Service] = []
        for number in range(services):
            mode, placed = placement_of(number, servers)
            label = f"v{number}" if mode == "vanity" else None
            domain = f"{label}.{PROVIDER_DOMAIN}" if label else f"site{number}.example"
            command = OrderService(
                service_id=str(100_000 + number),
                client_id=str(number % 997),
                mode=mode,
                domain=domain,
                plan=plan,
                username=f"u{number}",
                label=label,
                now=now,
                actor="bench",
                command_id=None,
            )
            service = Service.order(command, None)
            service.place(now, placed)
            service.mark_active(now)
            batch.append(service)
            if len(batch) == SEED_BATCH:
                store.save(*batch)
                batch = []
        if batch:
            store.save(*batch)
    finally:
        store.close()


@contextlib.asynccontextmanager
async def running_nodes(root: Path, servers: int, public_key: str) -> AsyncIterator[list[SimNode]]:
    nodes = [
        SimNode(root / f"n{i}", ("web", "mail", "dns"), ip=f"192.0.2.{100 + i}")
        for i in range(servers)
    ]
    try:
        for node in nodes:
            await node.start()
            node.authorize(public_key)
        yield nodes
    finally:
        for node in nodes:
            await node.stop()


def listings_of(nodes: list[SimNode]) -> int:
    """Usage listings the nodes ran (``v-list-users``, ``v-list-mail-accounts``)."""
    wanted = ("v-list-users", "v-list-mail-accounts")
    return sum(
        1
        for node in nodes
        for entry in read_command_log(node.data_dir)
        if entry["argv"] and entry["argv"][0].rsplit("/", 1)[-1] in wanted
    )


async def run_usage_bench_async(
    *,
    services: int = 10_000,
    servers: int = 10,
    requests: int = 200,
    database_url: str | None = None,
) -> dict[str, Any]:
    """``database_url``: an empty database to seed and run on (default: a SQLite file)."""
    figures: dict[str, Any] = {"services": services, "servers": servers}
    with tempfile.TemporaryDirectory(prefix="hw-bench-usage-") as scratch:
        root = Path(scratch)
        figures["ssh floor (commands/s)"] = round(await ssh_command_rate(root, rounds=1), 1)
        key = asyncssh.generate_private_key("ssh-ed25519")
        key_path = root / "client_key"
        key_path.write_bytes(key.export_private_key())
        key_path.chmod(0o600)
        began = time.perf_counter()
        seed_nodes(root, services, servers)
        database_url = database_url or f"sqlite:///{root / 'hw.sqlite'}"
        figures["store"] = database_url.split(":", 1)[0]
        seed_services(database_url, services, servers)
        figures["seeding (s)"] = round(time.perf_counter() - began, 1)
        port, staff = free_port(), secrets.token_urlsafe(32)
        settings = Settings(
            database_url=database_url,
            listen=f"127.0.0.1:{port}",
            staff_token=staff,
            secret_key="bench-secret-key-" + "0" * 32,
            ssh_key=str(key_path),
            vanity_domain=PROVIDER_DOMAIN,
            vanity_mail_user=SHARED_MAIL_USER,
            vanity_dns_user="provdns",
            vanity_mail_server="n0",
            usage_period_s=86_400.0,
            command_timeout_s=60.0,
        )
        system = System(settings)
        stop = asyncio.Event()
        parts = [serve_gateway, serve_relay, serve_projections, serve_usage]
        running = [asyncio.ensure_future(part(system, stop)) for part in parts]
        client = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {staff}"},
            timeout=120,
        )
        try:
            async with running_nodes(root, servers, key.export_public_key().decode()) as nodes:
                await _wait_for(lambda: _healthy(client), 60)
                for node in nodes:
                    await _register(client, node)
                began = time.perf_counter()
                await _wait_for(lambda: _services_in_view(client, services), 600)
                await _wait_for(lambda: _relayed_all(system), 600)
                figures["catching up the seeded events (s)"] = round(time.perf_counter() - began, 1)
                figures.update(await _one_sync(client, system, nodes, servers))
                figures.update(await _billing_latency(client, services, requests))
        finally:
            await client.aclose()
            stop.set()
            await asyncio.gather(*running, return_exceptions=True)
            await system.close()
    return figures


async def _one_sync(
    client: httpx.AsyncClient, system: System, nodes: list[SimNode], servers: int
) -> dict[str, Any]:
    before = listings_of(nodes)
    started = time.perf_counter()
    reply = await client.post("/v1/usage/refresh", json={})
    reply.raise_for_status()
    book = StoreUsageBook(system.store)
    marks: dict[str, datetime] = {}

    async def listed() -> bool:
        for number in range(servers):
            usage = await asyncio.to_thread(book.usage, f"n{number}")
            if usage is None or usage.sync is not None or usage.collected_at is None:
                return False
            marks[f"n{number}"] = usage.collected_at
        return True

    await _wait_for(listed, 600, every=0.02)
    synced = time.perf_counter()

    async def in_view() -> bool:
        nodes_shown = (await client.get("/v1/usage", params={"limit": "1"})).json()["nodes"]
        seen = {n["server_id"]: n["collected_at"] for n in nodes_shown}
        return all(
            seen.get(s) == mark.astimezone(UTC).isoformat(timespec="microseconds")
            for s, mark in marks.items()
        )

    await _wait_for(in_view, 600, every=0.02)
    viewed = time.perf_counter()
    await asyncio.sleep(0)  # let the journals' last lines be written
    for node in nodes:
        node.executor.journal.flush()
    return {
        "SSH calls per sync": listings_of(nodes) - before,
        "one full sync (s)": round(synced - started, 2),
        "view update after the last listing (s)": round(viewed - synced, 2),
    }


async def _billing_latency(
    client: httpx.AsyncClient, services: int, requests: int
) -> dict[str, Any]:
    timings = []
    tenants = 0
    for _ in range(requests):
        began = time.perf_counter()
        reply = await client.get("/v1/billing/usage")
        timings.append((time.perf_counter() - began) * 1000)
        reply.raise_for_status()
        tenants = len(reply.json()["tenants"])
    first = timings[0]  # read and encoded afresh: the view moved since the last call
    timings.sort()
    p99 = timings[min(len(timings) - 1, int(0.99 * len(timings)))]
    return {
        "GET /v1/billing/usage tenants": tenants,
        "GET /v1/billing/usage first after the sync (ms)": round(first, 1),
        "GET /v1/billing/usage p50 (ms)": round(statistics.median(timings), 1),
        "GET /v1/billing/usage p99 (ms)": round(p99, 1),
    }


async def _relayed_all(system: System) -> bool:
    """The relay has published every event so far: a refresh's is not queued behind the
    seeded history (a fleet's relay is caught up; a freshly seeded store's is not)."""

    def caught_up() -> bool:
        positions = PositionStore(system.db, system.settings.view_prefix)
        return positions.get("relay") >= system.store.max_notification_id()

    return await asyncio.to_thread(caught_up)


async def _healthy(client: httpx.AsyncClient) -> bool:
    try:
        return (await client.get("/healthz")).status_code == 200
    except httpx.TransportError:
        return False


async def _services_in_view(client: httpx.AsyncClient, services: int) -> bool:
    summary = (await client.get("/v1/usage", params={"limit": "1"})).json()["summary"]
    return bool(summary["services"] >= services)


async def _register(client: httpx.AsyncClient, node: SimNode) -> None:
    body = {
        "server_id": node.data_dir.name,
        "roles": sorted(node.roles),
        "host": node.host,
        "port": node.port,
        "username": "hostwright",
        "host_key": node.host_public_key,
        "ip": node.ip,
        "max_concurrency": 8,
    }
    (await client.post("/v1/servers", json=body)).raise_for_status()


async def _wait_for(condition: Any, timeout: float, every: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(every)
    raise TimeoutError("the bench waited too long")


def run_usage_bench(
    *, services: int, servers: int, requests: int, database_url: str | None = None
) -> int:
    figures = asyncio.run(
        run_usage_bench_async(
            services=services, servers=servers, requests=requests, database_url=database_url
        )
    )
    width = max(len(name) for name in figures)
    for name, value in figures.items():
        print(f"{name:<{width}}  {value}")
    return 0
