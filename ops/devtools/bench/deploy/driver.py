"""Drives one latency setting of ``hostwright bench deploy``: starts the nodes and every part,
registers the nodes, and offers the warm-up, the measured burst, the paced orders and the
profiled burst, waiting for each to settle.

Shape: every hostwright part is its own ``hostwright serve …`` process, as production runs
them on RabbitMQ and as tests/support/deployment.py does: it spreads the work over both cores (one
``hostwright up`` process would put everything behind one GIL), and it lets the pipeline be
profiled and its CPU counted on its own. Each node is a ``hostwright simnode`` process, its
directory on tmpfs when the machine has one (``scratch_root``), and the mail node makes its
DKIM keys before the clock starts: both are costs of the machines the nodes stand for. The
run gets a scratch PostgreSQL database and, when the broker is local, a scratch RabbitMQ
virtual host (queue names are global within a vhost, so a bench sharing one with a running
test suite would take its messages); both are removed afterwards.

Consumes a scratch database, virtual host and folder; emits the setting's Run.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from ops.devtools.bench.deploy.costs import commits, cpu_seconds, node_commands
from ops.devtools.bench.deploy.profile import start_profiler, stop_profiler, summarise
from ops.devtools.bench.deploy.timing import EventReader, Phase
from ops.devtools.bench.orders import split_orders
from ops.devtools.bench.scratch import free_port
from ops.devtools.demo_nodes import SPLIT_NODES, SimnodeProcesses, ensure_client_key
from ops.devtools.http_load import LoadResult, open_loop
from ops.store.event_store import EventStore

PARTS = (
    "gateway",
    "relay",
    "projections",
    "pipeline",
    "handler web",
    "handler mail",
    "handler dns",
)

# offers ``count`` orders numbered from ``first`` at ``rate``/s: their ids and the HTTP figures
OrderOffer = Callable[[int, int, float], Awaitable[tuple[range, LoadResult]]]


@dataclass
class Run:
    latency_ms: int
    burst: Phase
    paced: Phase
    cpu_s: dict[str, float]
    wall_s: float
    commits: int
    events: int
    profile: list[str] = field(default_factory=list)
    step_ms: dict[str, list[float]] = field(default_factory=dict)
    node_commands: Counter[str] = field(default_factory=Counter)


def measure(
    tmp: Path,
    *,
    latency_ms: int,
    services: int,
    amqp_url: str,
    database_url: str,
    burst_rate: float,
    paced: int,
    paced_rate: float,
    node_concurrency: int,
    profile: bool,
) -> Run:
    tmp.mkdir(parents=True)
    key_path = tmp / "client_key"
    public_key = ensure_client_key(key_path)
    # The mail node's DKIM keys are made before the clock starts: a real node spends that CPU
    # on its own machine, not on the one whose throughput is measured.
    nodes = SimnodeProcesses(
        tmp / "nodes",
        public_key,
        SPLIT_NODES,
        latency_ms=latency_ms,
        dkim_keys_ahead=services + paced + 10,
    )
    port = free_port()
    tokens = (secrets.token_urlsafe(32), secrets.token_urlsafe(32))  # WHMCS's, staff's
    env = environment(database_url, amqp_url, port, tokens, key_path)
    print(f"[{latency_ms} ms/command] starting nodes and {len(PARTS)} processes …", flush=True)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        addresses = nodes.start()
        start_parts(tmp, env, procs)
        pids = {part: proc.pid for part, proc in procs.items()}
        pids.update({f"simnode {sid}": p.pid for sid, p in nodes.procs.items()})
        return asyncio.run(
            _drive(
                tmp,
                f"http://127.0.0.1:{port}",
                tokens,
                [a.registration(node_concurrency) for a in addresses],
                database_url,
                pids,
                latency_ms=latency_ms,
                services=services,
                burst_rate=burst_rate,
                paced=paced,
                paced_rate=paced_rate,
                profile=profile,
            )
        )
    except BaseException:
        for part in procs:
            print(f"--- {part} ---\n{log_path(tmp, part).read_text(errors='replace')[-2000:]}")
        raise
    finally:
        stop_parts(procs)
        nodes.stop()


def environment(
    database_url: str, amqp_url: str, port: int, tokens: tuple[str, str], key_path: Path
) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("HOSTWRIGHT_")},
        "HOSTWRIGHT_DATABASE_URL": database_url,
        "HOSTWRIGHT_AMQP_URL": amqp_url,
        "HOSTWRIGHT_EXCHANGE": f"hw-bench-{uuid.uuid4().hex[:8]}",
        "HOSTWRIGHT_LISTEN": f"127.0.0.1:{port}",
        "HOSTWRIGHT_API_TOKEN": tokens[0],
        "HOSTWRIGHT_STAFF_TOKEN": tokens[1],
        "HOSTWRIGHT_SECRET_KEY": secrets.token_urlsafe(32),
        "HOSTWRIGHT_SSH_KEY": str(key_path),
        "HOSTWRIGHT_LEASE_S": "120",
        "HOSTWRIGHT_HEARTBEAT_S": "10",
        "HOSTWRIGHT_COMMAND_TIMEOUT_S": "60",
    }


def start_parts(
    tmp: Path,
    env: dict[str, str],
    procs: dict[str, subprocess.Popen[bytes]],
    parts: tuple[str, ...] = PARTS,
) -> None:
    """Starts each part into ``procs`` as it goes, so a failure part-way still stops the
    ones already running; each logs to ``log_path(tmp, part)``."""
    for part in parts:
        with log_path(tmp, part).open("wb") as log:
            procs[part] = subprocess.Popen(
                [sys.executable, "-m", "ops.cli", *_command(part)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )


def _command(part: str) -> list[str]:
    """``up`` runs every part in one process; any other part is ``serve <part>``."""
    return ["up"] if part == "up" else ["serve", *part.split()]


def stop_parts(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    for proc in procs.values():
        proc.send_signal(signal.SIGTERM)
    for proc in procs.values():
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def log_path(tmp: Path, part: str) -> Path:
    return tmp / f"{part.replace(' ', '-')}.log"


async def _drive(
    tmp: Path,
    url: str,
    tokens: tuple[str, str],
    registrations: list[dict[str, Any]],
    database_url: str,
    pids: dict[str, int],
    *,
    latency_ms: int,
    services: int,
    burst_rate: float,
    paced: int,
    paced_rate: float,
    profile: bool,
) -> Run:
    headers = {"Authorization": f"Bearer {tokens[0]}"}
    staff = {"Authorization": f"Bearer {tokens[1]}"}
    store = EventStore(database_url)
    reader = EventReader(store)
    host, port = urlsplit(url).hostname or "127.0.0.1", urlsplit(url).port or 80

    async def offer(first: int, count: int, rate: float) -> tuple[range, LoadResult]:
        orders = split_orders(first, with_username=True)
        result = await open_loop(
            host, port, headers, orders, rate=rate, seconds=count / rate, expect=202
        )
        return range(first, first + count), result

    slack = 1 + latency_ms / 10  # every node command's added latency stretches the waits
    try:
        await register(url, staff, registrations)
        # warm-up: SSH connections, caches and queues exist before anything is measured
        await offer(1, 5, 50)
        await reader.wait_settled(range(1, 6), timeout=120)

        print(f"[{latency_ms} ms/command] burst: {services} orders at {burst_rate:.0f}/s …")
        cpu_before = cpu_seconds(pids)
        commits_before = commits(database_url)
        commands_before = node_commands(tmp / "nodes")
        events_before = store.max_notification_id()
        began = time.perf_counter()
        ids, orders = await offer(1000, services, burst_rate)
        await reader.wait_settled(ids, timeout=max(120.0, services * slack))
        wall = time.perf_counter() - began
        cpu = {k: v - cpu_before.get(k, 0.0) for k, v in cpu_seconds(pids).items()}
        commands = node_commands(tmp / "nodes") - commands_before
        await asyncio.sleep(0.7)  # PostgreSQL's statistics lag by up to half a second
        commits_after = commits(database_url)
        committed = commits_after - commits_before if min(commits_before, commits_after) >= 0 else 0
        events = store.max_notification_id() - events_before
        burst = reader.phase("burst", ids, orders)
        step_ms = reader.step_times(ids)

        print(f"[{latency_ms} ms/command] paced: {paced} orders at {paced_rate:g}/s …")
        paced_ids, paced_orders = await offer(100_000, paced, paced_rate)
        await reader.wait_settled(paced_ids, timeout=120 + paced * slack)
        paced_phase = reader.phase("paced", paced_ids, paced_orders)

        profile_lines: list[str] = []
        if profile:
            profiled = max(1, services // 2)
            profile_lines = await _profiled_burst(
                offer, reader, tmp, pids["pipeline"], profiled, burst_rate, slack, latency_ms
            )
    finally:
        store.close()
    return Run(
        latency_ms,
        burst,
        paced_phase,
        cpu,
        wall,
        committed,
        events,
        summarise(profile_lines),
        step_ms,
        commands,
    )


async def register(url: str, headers: dict[str, str], registrations: list[dict[str, Any]]) -> None:
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as client:
        await wait_healthy(client)
        for body in registrations:
            reply = await client.post("/v1/servers", json=body)
            assert reply.status_code == 202, reply.text


async def _profiled_burst(
    offer: OrderOffer,
    reader: EventReader,
    tmp: Path,
    pipeline_pid: int,
    count: int,
    rate: float,
    slack: float,
    latency_ms: int,
) -> list[str]:
    """A sampling profiler slows the process it samples (and takes CPU of its own), so the
    profile comes from a burst of its own, after the measured ones."""
    spy = start_profiler(tmp / "pipeline.spy", pipeline_pid)
    if spy is None:
        return []
    print(f"[{latency_ms} ms/command] profiled burst: {count} orders (not measured) …")
    ids, _ = await offer(200_000, count, rate)
    await reader.wait_settled(ids, timeout=max(120.0, count * slack))
    return stop_profiler(spy)


async def wait_healthy(client: httpx.AsyncClient) -> None:
    deadline = time.monotonic() + 60
    last: object = None
    while time.monotonic() < deadline:
        try:
            reply = await client.get("/healthz")
            if reply.status_code == 200:
                return
            last = f"{reply.status_code} {reply.text[:200]}"
        except httpx.TransportError as exc:
            last = repr(exc)
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the gateway did not come up: {last}")
