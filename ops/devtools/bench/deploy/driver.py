"""``hostwright bench deploy``: Split orders to active services, beside the broker's own floor.

For each ``--latency-ms`` value (added by the simulated nodes to every command), all in one run:
  0. the floors: RabbitMQ's own publish→consume round trip (one message at a time: p50/p99;
     pipelined confirms: msgs/s) and PostgreSQL's single-event save rate (eventsourcing);
  1. a burst: ``--services`` Split orders offered at ``--burst-rate``/s; Split services active
     per minute = services / (last Service.Activated - first Service.Ordered);
  2. paced: ``--paced`` orders at ``--paced-rate``/s, so latency is measured without a queue
     of hundreds of services in front of it;
  for both, order → first step started (the service's first Task.Dispatched timestamp minus
  its Service.Ordered timestamp) and order → active (Service.Activated), p50/p99, read from
  the store. During the burst: CPU seconds per process, PostgreSQL commits and events per
  service; then, unmeasured, a burst of half as many orders with the pipeline process
  profiled by py-spy (when installed: sampling slows the process it samples).

Shape: every hostwright part is its own ``hostwright serve …`` process, as production runs
them on RabbitMQ and as tests/deployment.py does: it spreads the work over both cores (one
``hostwright up`` process would put everything behind one GIL), and it lets the pipeline be
profiled and its CPU counted on its own. Each node is a ``hostwright simnode`` process, its
directory on tmpfs when the machine has one (``_scratch_root``), and the mail node makes its
DKIM keys before the clock starts: both are costs of the machines the nodes stand for. The
run gets a scratch PostgreSQL database and, when the broker is local, a scratch RabbitMQ
virtual host (queue names are global within a vhost, so a bench sharing one with a running
test suite would take its messages); both are removed afterwards.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
from eventsourcing.utils import get_topic

from domain.service import Service
from domain.task import Task
from ops.devtools.bench.intake import (
    DEFAULT_POSTGRES,
    _free_port,
    _scratch_postgres,
    _store_save_rate,
)
from ops.devtools.bench.ssh_floor import ssh_command_rate
from ops.devtools.demo_nodes import SPLIT_NODES, SimnodeProcesses, ensure_client_key
from ops.devtools.http_load import LoadResult, json_body, open_loop
from ops.devtools.simnode import read_command_log
from ops.messaging.amqp_transport import AmqpTransport
from ops.messaging.transport import Delivery, Message
from ops.store.event_store import EventStore

DEFAULT_AMQP = "amqp://guest:guest@127.0.0.1:5672/"
PARTS = (
    "gateway",
    "relay",
    "projections",
    "pipeline",
    "handler web",
    "handler mail",
    "handler dns",
)
OUTCOME_TOPICS = (
    get_topic(Service.Ordered),
    get_topic(Service.Activated),
    get_topic(Service.DeployFailed),
)
TOPICS = {
    get_topic(Service.Ordered): "ordered",
    get_topic(Service.Placed): "placed",
    get_topic(Service.Activated): "activated",
    get_topic(Service.DeployFailed): "failed",
    get_topic(Task.Planned): "planned",
    get_topic(Task.Dispatched): "dispatched",
    get_topic(Task.Succeeded): "succeeded",
}


@dataclass
class Floor:
    round_trip_ms: list[float]
    msgs_per_s: float
    store_saves_per_s: float
    ssh_commands_per_s: float


@dataclass
class Phase:
    name: str
    services: int
    active: int
    failed: int
    span_s: float  # first Ordered → last Activated
    first_step_ms: list[float]
    active_ms: list[float]
    orders: LoadResult
    # order → the pipeline began planning it (relay, broker, the pipeline's queue)
    planning_ms: list[float] = field(default_factory=list)

    @property
    def per_minute(self) -> float:
        return self.active / self.span_s * 60 if self.span_s else 0.0


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


def run_deploy_bench(
    *,
    services: int,
    latencies: tuple[int, ...],
    amqp_url: str | None,
    postgres_url: str | None,
    burst_rate: float,
    paced: int,
    paced_rate: float,
    node_concurrency: int,
    profile: bool,
) -> int:
    amqp = amqp_url or os.environ.get("HOSTWRIGHT_AMQP_URL") or DEFAULT_AMQP
    server = postgres_url or DEFAULT_POSTGRES
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="hw-bench-deploy-", dir=_scratch_root()) as tmp:
        with _scratch_vhost(amqp) as vhost_url:
            print("floor: broker publish→consume round trip …", flush=True)
            floor_rt, floor_rate = asyncio.run(_broker_floor(vhost_url))
        with _scratch_postgres(server) as db_url:
            print("floor: PostgreSQL single-event saves for 3 s …", flush=True)
            saves = _store_save_rate(db_url, 3.0)
        print("floor: Hestia commands over SSH, driver and simulated node in one process …")
        ssh_rate = asyncio.run(ssh_command_rate(Path(tmp)))
        floor = Floor(floor_rt, floor_rate, saves, ssh_rate)
        for latency in latencies:
            # a fresh database and virtual host each: queue names are global in a vhost
            with _scratch_postgres(server) as db_url, _scratch_vhost(amqp) as vhost_url:
                run = _measure(
                    Path(tmp) / f"lat{latency}",
                    latency_ms=latency,
                    services=services,
                    amqp_url=vhost_url,
                    database_url=db_url,
                    burst_rate=burst_rate,
                    paced=paced,
                    paced_rate=paced_rate,
                    node_concurrency=node_concurrency,
                    profile=profile,
                )
            runs.append(run)
    _report(floor, runs, node_concurrency)
    return 0


# --- floors --------------------------------------------------------------------------------


async def _broker_floor(
    amqp_url: str, sequential: int = 1000, pipelined: int = 5000
) -> tuple[list[float], float]:
    """The broker alone, through the same transport the parts use: one message at a time
    (publish with confirm → delivered to a consumer → acked), then ``pipelined`` at once."""
    transport = AmqpTransport(amqp_url, f"hw-floor-{uuid.uuid4().hex[:8]}")
    await transport.connect()
    queue = f"floor-{uuid.uuid4().hex[:8]}"
    await transport.declare_queue(queue, ["floor.#"])
    arrived: dict[str, float] = {}
    waiting: dict[str, asyncio.Future[None]] = {}

    async def on_delivery(delivery: Delivery) -> None:
        arrived[delivery.message.message_id] = time.perf_counter()
        await delivery.ack()
        future = waiting.pop(delivery.message.message_id, None)
        if future is not None and not future.done():
            future.set_result(None)

    subscription = await transport.consume(queue, on_delivery, prefetch=256)
    body = b"x" * 200
    round_trips = []
    loop = asyncio.get_running_loop()
    try:
        for i in range(sequential):
            message_id = f"s{i}"
            delivered = waiting[message_id] = loop.create_future()
            began = time.perf_counter()
            await transport.publish(Message("floor.one", body, message_id))
            await asyncio.wait_for(delivered, 10)
            round_trips.append((arrived[message_id] - began) * 1000)
        everything = loop.create_future()
        last = f"p{pipelined - 1}"
        waiting[last] = everything
        began = time.perf_counter()
        for start in range(0, pipelined, 500):
            batch = [Message("floor.many", body, f"p{i}") for i in range(start, start + 500)]
            await transport.publish_many(batch)
        await asyncio.wait_for(everything, 60)
        rate = pipelined / (time.perf_counter() - began)
    finally:
        await subscription.cancel()
        await transport.delete_queue(queue)
        await transport.delete_queue(f"{queue}.dead")
        await transport.delete_exchange()
        await transport.close()
    return round_trips, rate


# --- one latency setting --------------------------------------------------------------------


def _scratch_root() -> str | None:
    """Where the run's files go: tmpfs when there is one. The simulated nodes rewrite a state
    file per changing command, and on this machine's ext4 a replace-by-rename costs ~3 ms of
    blocking I/O (auto_da_alloc) — a cost of the machines the nodes stand for, not of ours."""
    shm = Path("/dev/shm")  # noqa: S108 — a scratch directory, removed afterwards
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


def _measure(
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
    port = _free_port()
    token = secrets.token_urlsafe(16)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HOSTWRIGHT_")},
        "HOSTWRIGHT_DATABASE_URL": database_url,
        "HOSTWRIGHT_AMQP_URL": amqp_url,
        "HOSTWRIGHT_EXCHANGE": f"hw-bench-{uuid.uuid4().hex[:8]}",
        "HOSTWRIGHT_LISTEN": f"127.0.0.1:{port}",
        "HOSTWRIGHT_API_TOKEN": token,
        "HOSTWRIGHT_SECRET_KEY": secrets.token_urlsafe(16),
        "HOSTWRIGHT_SSH_KEY": str(key_path),
        "HOSTWRIGHT_LEASE_S": "120",
        "HOSTWRIGHT_HEARTBEAT_S": "10",
        "HOSTWRIGHT_COMMAND_TIMEOUT_S": "60",
    }
    print(f"[{latency_ms} ms/command] starting nodes and {len(PARTS)} processes …", flush=True)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        addresses = nodes.start()
        for part in PARTS:
            with (tmp / f"{part.replace(' ', '-')}.log").open("wb") as log:
                procs[part] = subprocess.Popen(
                    [sys.executable, "-m", "ops.cli", "serve", *part.split()],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
        pids = {part: proc.pid for part, proc in procs.items()}
        pids.update({f"simnode {sid}": p.pid for sid, p in nodes.procs.items()})
        return asyncio.run(
            _drive(
                tmp,
                f"http://127.0.0.1:{port}",
                token,
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
            log_path = tmp / f"{part.replace(' ', '-')}.log"
            print(f"--- {part} ---\n{log_path.read_text(errors='replace')[-2000:]}")
        raise
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        nodes.stop()


async def _drive(
    tmp: Path,
    url: str,
    token: str,
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
    headers = {"Authorization": f"Bearer {token}"}
    store = EventStore(database_url)
    reader = _EventReader(store)
    host, port = urlsplit(url).hostname or "127.0.0.1", urlsplit(url).port or 80
    try:
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as client:
            await _wait_healthy(client)
            for body in registrations:
                reply = await client.post("/v1/servers", json=body)
                assert reply.status_code == 202, reply.text
        # warm-up: SSH connections, caches and queues exist before anything is measured
        await open_loop(host, port, headers, _orders(1), rate=50, seconds=0.1, expect=202)
        await reader.wait_settled(range(1, 6), timeout=120)

        print(f"[{latency_ms} ms/command] burst: {services} orders at {burst_rate:.0f}/s …")
        cpu_before = _cpu_seconds(pids)
        commits_before = _commits(database_url)
        commands_before = _node_commands(tmp / "nodes")
        events_before = store.max_notification_id()
        began = time.perf_counter()
        ids = range(1000, 1000 + services)
        orders = await open_loop(
            host,
            port,
            headers,
            _orders(1000),
            rate=burst_rate,
            seconds=services / burst_rate,
            expect=202,
        )
        await reader.wait_settled(ids, timeout=max(120.0, services * (1 + latency_ms / 10)))
        wall = time.perf_counter() - began
        cpu = {k: v - cpu_before.get(k, 0.0) for k, v in _cpu_seconds(pids).items()}
        commands = _node_commands(tmp / "nodes") - commands_before
        await asyncio.sleep(0.7)  # PostgreSQL's statistics lag by up to half a second
        commits_after = _commits(database_url)
        commits = commits_after - commits_before if min(commits_before, commits_after) >= 0 else 0
        events = store.max_notification_id() - events_before
        burst = reader.phase("burst", ids, orders)
        step_ms = reader.step_times(ids)

        print(f"[{latency_ms} ms/command] paced: {paced} orders at {paced_rate:g}/s …")
        paced_ids = range(100_000, 100_000 + paced)
        paced_orders = await open_loop(
            host,
            port,
            headers,
            _orders(100_000),
            rate=paced_rate,
            seconds=paced / paced_rate,
            expect=202,
        )
        await reader.wait_settled(paced_ids, timeout=120 + paced * (1 + latency_ms / 10))
        paced_phase = reader.phase("paced", paced_ids, paced_orders)

        # A sampling profiler slows the process it samples (and takes CPU of its own), so
        # the profile comes from a burst of its own, after the measured ones.
        profile_lines: list[str] = []
        spy = _start_profiler(tmp / "pipeline.spy", pids["pipeline"]) if profile else None
        if spy is not None:
            profiled = max(1, services // 2)
            print(f"[{latency_ms} ms/command] profiled burst: {profiled} orders (not measured) …")
            await open_loop(
                host,
                port,
                headers,
                _orders(200_000),
                rate=burst_rate,
                seconds=profiled / burst_rate,
                expect=202,
            )
            await reader.wait_settled(
                range(200_000, 200_000 + profiled),
                timeout=max(120.0, profiled * (1 + latency_ms / 10)),
            )
            profile_lines = _stop_profiler(spy)
    finally:
        store.close()
    return Run(
        latency_ms,
        burst,
        paced_phase,
        cpu,
        wall,
        commits,
        events,
        _summarise(profile_lines),
        step_ms,
        commands,
    )


async def _wait_healthy(client: httpx.AsyncClient) -> None:
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


def _orders(offset: int):  # type: ignore[no-untyped-def]
    def make(i: int) -> tuple[str, str, bytes]:
        sid = offset + i
        body = {
            "service_id": sid,
            "client_id": sid % 997,
            "mode": "split",
            "domain": f"bench{sid}.example.com",
            "username": f"bench{sid}",
            "plan": {"package": "bench", "disk_mb": 1024},
        }
        return "POST", "/v1/services", json_body(body)

    return make


class _EventReader:
    """Follows the store's notification log for the events the figures come from."""

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self._after = 0
        self._task_service: dict[uuid.UUID, str] = {}
        self._service_of: dict[uuid.UUID, str] = {}
        self.ordered: dict[str, datetime] = {}
        self.first_dispatch: dict[str, datetime] = {}
        self.placed: dict[str, datetime] = {}  # when the pipeline began planning it
        self.activated: dict[str, datetime] = {}
        self.failed: dict[str, datetime] = {}
        self._steps: dict[uuid.UUID, _StepTimes] = {}
        self._outcomes_after = 0

    def poll(self) -> None:
        """Reads every event the figures come from (after a phase: it decodes ~48 a service)."""
        self._after = self._read(list(TOPICS), self._after)

    def poll_outcomes(self) -> None:
        """Reads only what says a service settled: cheap enough to do while a burst runs on
        the same two cores, where decoding every task event would take CPU from it."""
        self._outcomes_after = self._read(list(OUTCOME_TOPICS), self._outcomes_after)

    def _read(self, topics: list[str], after: int) -> int:
        while True:
            page = self._store.recorder.select_notifications(
                start=after, limit=5000, topics=topics, inclusive_of_start=False
            )
            for notification in page:
                self._take(TOPICS[notification.topic], self._store.decode(notification))
            if page:
                after = page[-1].id
            if len(page) < 5000:
                return after

    def _take(self, kind: str, event: Any) -> None:
        if kind == "ordered":
            self._service_of[event.originator_id] = event.service_id
            self.ordered[event.service_id] = event.timestamp
        elif kind == "planned":
            self._task_service[event.originator_id] = event.service_id
            self._steps[event.originator_id] = _StepTimes(
                event.service_id,
                event.run,
                event.step,
                event.role,
                event.timestamp,
                tuple(event.depends_on),
            )
        elif kind == "dispatched":
            sid = self._task_service.get(event.originator_id)
            if sid is not None and sid not in self.first_dispatch:
                self.first_dispatch[sid] = event.timestamp
            times = self._steps.get(event.originator_id)
            if times is not None:
                times.dispatched = event.timestamp
        elif kind == "succeeded":
            times = self._steps.get(event.originator_id)
            if times is not None:
                times.succeeded = event.timestamp
                times.handler_ms, times.commands_ms = _handler_timing(event.log)
        elif kind == "placed":
            sid = self._service_of.get(event.originator_id)
            if sid is not None:
                self.placed.setdefault(sid, event.timestamp)
        elif kind in ("activated", "failed"):
            sid = self._service_of.get(event.originator_id)
            if sid is not None:
                getattr(self, kind).setdefault(sid, event.timestamp)

    async def wait_settled(self, ids: range, timeout: float) -> None:
        wanted = {str(i) for i in ids}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            await asyncio.to_thread(self.poll_outcomes)
            if wanted <= set(self.activated) | set(self.failed):
                await asyncio.to_thread(self.poll)
                return
            await asyncio.sleep(0.25)
        done = len(wanted & (set(self.activated) | set(self.failed)))
        raise TimeoutError(f"only {done} of {len(wanted)} services settled in {timeout:.0f}s")

    def step_times(self, ids: range) -> dict[str, list[float]]:
        """Where a step's time goes, in ms: from ready (planned, or its last dependency
        succeeded) to dispatched — the pipeline, with per-server limits — and from dispatched
        to its success recorded, per role — the broker, the handler, SSH and the node — with
        the part the handler itself timed and, of that, its node commands (the step's log)."""
        wanted = {str(i) for i in ids}
        by_key = {(t.service_id, t.run, t.step): t for t in self._steps.values()}
        spans: dict[str, list[float]] = defaultdict(list)
        for t in self._steps.values():
            if t.service_id not in wanted or t.dispatched is None or t.succeeded is None:
                continue
            deps = [by_key.get((t.service_id, t.run, d)) for d in t.depends_on]
            done = [d.succeeded for d in deps if d is not None and d.succeeded is not None]
            ready = max([t.planned, *done])
            spans["ready → dispatched (pipeline)"].append(_ms(t.dispatched - ready))
            spans[f"dispatched → succeeded, {t.role}"].append(_ms(t.succeeded - t.dispatched))
            if t.handler_ms is not None:
                spans[f"dispatched → succeeded, {t.role}: in the handler"].append(t.handler_ms)
                spans[f"dispatched → succeeded, {t.role}: node commands"].append(t.commands_ms)
        return dict(spans)

    def phase(self, name: str, ids: range, orders: LoadResult) -> Phase:
        sids = [str(i) for i in ids]
        ordered = [self.ordered[s] for s in sids if s in self.ordered]
        active = [self.activated[s] for s in sids if s in self.activated]
        span = (max(active) - min(ordered)).total_seconds() if active and ordered else 0.0
        return Phase(
            name,
            len(sids),
            len(active),
            sum(1 for s in sids if s in self.failed),
            span,
            [
                _ms(self.first_dispatch[s] - self.ordered[s])
                for s in sids
                if s in self.first_dispatch
            ],
            [_ms(self.activated[s] - self.ordered[s]) for s in sids if s in self.activated],
            orders,
            [_ms(self.placed[s] - self.ordered[s]) for s in sids if s in self.placed],
        )


@dataclass
class _StepTimes:
    service_id: str
    run: int
    step: str
    role: str
    planned: datetime
    depends_on: tuple[str, ...]
    dispatched: datetime | None = None
    succeeded: datetime | None = None
    handler_ms: float | None = None  # the handler's own timing, from the step's log
    commands_ms: float = 0.0


_COMMAND_MS = re.compile(r" -> exit \d+ \((\d+) ms\)$")
_HANDLER_MS = re.compile(r"^(\d+) ms in the \w+ handler$")


def _handler_timing(log: list[str]) -> tuple[float | None, float]:
    """(ms the step spent in the handler, ms of it in node commands), from the step's log."""
    handler = next((float(m[1]) for line in log if (m := _HANDLER_MS.match(line))), None)
    commands = sum(float(m[1]) for line in log if (m := _COMMAND_MS.search(line)))
    return handler, commands


def _ms(delta: Any) -> float:
    return float(delta.total_seconds() * 1000)


# --- where the time goes ----------------------------------------------------------------------


def _cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """utime + stime of each of our processes, and of PostgreSQL's and RabbitMQ's."""
    tick = os.sysconf("SC_CLK_TCK")
    found: dict[str, float] = {}

    def stat(pid: int) -> tuple[str, float] | None:
        try:
            raw = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        name = raw[raw.index("(") + 1 : raw.rindex(")")]
        parts = raw[raw.rindex(")") + 2 :].split()
        return name, (int(parts[11]) + int(parts[12])) / tick

    for label, pid in pids.items():
        if (got := stat(pid)) is not None:
            found[label] = got[1]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (got := stat(int(entry.name))) is not None:
            name, seconds = got
            if name == "postgres":
                found["postgresql (all backends)"] = (
                    found.get("postgresql (all backends)", 0) + seconds
                )
            elif name == "beam.smp":
                found["rabbitmq"] = found.get("rabbitmq", 0) + seconds
    return found


def _node_commands(nodes_dir: Path) -> Counter[str]:
    """Every command the simulated nodes have run so far, by command name."""
    counts: Counter[str] = Counter()
    for node_dir in nodes_dir.iterdir():
        if node_dir.is_dir():
            counts.update(entry["argv"][0] for entry in read_command_log(node_dir))
    return counts


def _commits(database_url: str) -> int:
    """Transactions committed in the database so far; -1 when the server has no free slot."""
    name = urlsplit(database_url).path.lstrip("/")
    try:
        with psycopg.connect(database_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (name,)
            ).fetchone()
    except psycopg.OperationalError as exc:
        print(f"(could not count PostgreSQL commits: {exc})")
        return -1
    return int(row[0]) if row else 0


def _py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def _start_profiler(out: Path, pid: int) -> tuple[subprocess.Popen[bytes], Path] | None:
    spy = _py_spy()
    if spy is None:
        print("(py-spy not installed: no profile; `pip install py-spy` for one)")
        return None
    argv = [spy, "record", "-p", str(pid), "-o", str(out), "-f", "raw", "-r", "200"]
    proc = subprocess.Popen(
        [*argv, "--idle", "--threads"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)  # attached before the first order
    return proc, out


def _stop_profiler(spy: tuple[subprocess.Popen[bytes], Path] | None) -> list[str]:
    if spy is None:
        return []
    proc, out = spy
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
    return out.read_text().splitlines() if out.exists() else []


# Innermost frame first: the first of these a sample's stack passes through names its cost.
_CATEGORIES = (
    ("psycopg", "PostgreSQL client (psycopg)"),
    ("eventsourcing", "eventsourcing (aggregates, mapping, recorder)"),
    ("aiormq", "AMQP client (aio-pika/aiormq/pamqp)"),
    ("aio_pika", "AMQP client (aio-pika/aiormq/pamqp)"),
    ("pamqp", "AMQP client (aio-pika/aiormq/pamqp)"),
    ("json", "JSON encode/decode"),
    ("domain/", "domain (Task/Service aggregates, plans)"),
    ("handlers/pipeline", "pipeline decisions (handlers/pipeline.py)"),
    ("ops/", "hostwright ops glue (consumer, inbox, registry)"),
    ("asyncio", "asyncio event loop machinery"),
    ("threading", "thread hand-offs"),
    ("concurrent", "thread hand-offs"),
)
# (function, file) of a leaf frame that is waiting for work, not doing any
# (an idle pool worker blocks in C inside SimpleQueue.get, so its leaf frame is _worker; on
# uvloop the loop itself is C, so Runner.run as the leaf is waiting or the loop's own work)
_IDLE_LEAVES = (
    ("select", "selectors"),
    ("wait", "threading"),
    ("get", "queue"),
    ("_worker", "thread"),
    ("run", "runners"),
)


def _category(frames: list[str]) -> str:
    leaf = frames[-1]
    function = leaf.split(" (")[0].rsplit(".", 1)[-1]
    if "psycopg_pool" in leaf or any(
        function == name and f"{where}.py" in leaf for name, where in _IDLE_LEAVES
    ):
        return "idle"
    if "psycopg" in leaf and "wait" in leaf:
        return "waiting for PostgreSQL"
    for frame in reversed(frames):
        for pattern, label in _CATEGORIES:
            if pattern in frame:
                return label
    return "other"


def _summarise(lines: list[str]) -> list[str]:
    """py-spy raw stacks (``--idle --threads``, 200 samples/s) → where the pipeline's time
    goes: its event-loop thread (decisions, AMQP) and the threads it hands store calls to."""
    rate = 200.0
    threads: dict[str, Counter[str]] = {"loop": Counter(), "store": Counter()}
    busy_functions: Counter[str] = Counter()
    for line in lines:
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit() or not stack.startswith("thread ("):
            continue
        count = int(count_text)
        name, _, rest = stack.partition("): ")[2].partition(";")
        frames = rest.split(";") if rest else [name]
        kind = "loop" if name.startswith("MainThread") else "store"
        if kind == "store" and not name.startswith(("asyncio_", "uvloop_")):
            continue  # psycopg's pool maintenance threads: idle all along
        category = _category(frames)
        threads[kind][category] += count
        if kind == "loop" and category != "idle":
            for function in dict.fromkeys(f.split(" (")[0] + " " + _short_file(f) for f in frames):
                busy_functions[function] += count
    loop_total = sum(threads["loop"].values())
    if not loop_total:
        return []
    out = [f"pipeline process profile (py-spy, {loop_total / rate:.0f} s of the profiled burst):"]
    idle = threads["loop"]["idle"]
    out.append(
        f"  event-loop thread: {1 - idle / loop_total:.0%} in Python, {idle / loop_total:.0%} "
        "waiting (for the broker, or a store call in a thread) or in uvloop's own C code"
    )
    out += [
        f"    {n / loop_total:6.1%}  {label}"
        for label, n in threads["loop"].most_common()
        if label != "idle"
    ]
    store = threads["store"]
    store_busy = sum(n for label, n in store.items() if label != "idle")
    out.append(
        f"  store-call threads (asyncio.to_thread): {store_busy / rate:.1f} thread-seconds "
        f"in calls ({store_busy / loop_total:.2f} calls in flight on average)"
    )
    out += [
        f"    {n / rate:6.1f} s  {label}" for label, n in store.most_common() if label != "idle"
    ]
    out.append("  event-loop thread, busiest functions (inclusive):")
    skip = ("<module>", "Runner.", "BaseEventLoop.", "Handle._run", "main ", "run ", "_run_")
    out += [
        f"    {n / loop_total:6.1%}  {name}"
        for name, n in busy_functions.most_common(60)
        if not name.startswith(skip)
    ][:12]
    return out


def _short_file(frame: str) -> str:
    inside = frame.partition(" (")[2].rstrip(")")
    path = inside.rsplit(":", 1)[0]
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"({path})"


# --- scratch RabbitMQ virtual host ------------------------------------------------------------


@contextmanager
def _scratch_vhost(amqp_url: str) -> Iterator[str]:
    parts = urlsplit(amqp_url)
    ctl = shutil.which("rabbitmqctl")
    if ctl is None or parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        print("(not a local broker: sharing its virtual host; run nothing else on it meanwhile)")
        yield amqp_url
        return
    name = f"hw-bench-{uuid.uuid4().hex[:8]}"
    user = parts.username or "guest"
    subprocess.run([ctl, "-q", "add_vhost", name], check=True, capture_output=True)
    try:
        subprocess.run(
            [ctl, "-q", "set_permissions", "-p", name, user, ".*", ".*", ".*"],
            check=True,
            capture_output=True,
        )
        yield parts._replace(path=f"/{name}").geturl()
    finally:
        subprocess.run([ctl, "-q", "delete_vhost", name], check=False, capture_output=True)


# --- report -----------------------------------------------------------------------------------


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def _report(floor: Floor, runs: list[Run], node_concurrency: int) -> None:
    print()
    rt = floor.round_trip_ms
    print(
        f"floor  broker publish→consume, one at a time: p50 {_pct(rt, 50):.2f} ms / "
        f"p99 {_pct(rt, 99):.2f} ms ({1000 / statistics.mean(rt):.0f} round trips/s); "
        f"confirms pipelined: {floor.msgs_per_s:.0f} msgs/s"
    )
    print(f"floor  PostgreSQL single-event saves: {floor.store_saves_per_s:.0f}/s")
    print(
        f"floor  Hestia commands over SSH (asyncssh client + simulated node, one process, "
        f"one core): {floor.ssh_commands_per_s:.0f}/s"
    )
    print(f"(4 nodes: web1, mail1, dns1, dns2; max_concurrency {node_concurrency} per node)")
    print()
    print(
        "ms/cmd  phase  services  active/min  first step p50/p99 ms   active p50/p99 ms"
        "      failed  order HTTP p99 ms"
    )
    for run in runs:
        for phase in (run.burst, run.paced):
            print(
                f"{run.latency_ms:>6}  {phase.name:<5}  {phase.active:>4}/{phase.services:<4}"
                f"{phase.per_minute:>10.0f}  "
                f"{_pct(phase.first_step_ms, 50):>9.0f} /{_pct(phase.first_step_ms, 99):>7.0f}"
                f"  {_pct(phase.active_ms, 50):>9.0f} /{_pct(phase.active_ms, 99):>7.0f}"
                f"  {phase.failed:>8}  {phase.orders.percentile(99):>10.1f}"
            )
    for run in runs:
        n = run.burst.services
        print()
        print(
            f"[{run.latency_ms} ms/command] burst of {n}: {run.wall_s:.1f} s wall; "
            f"{run.events / n:.1f} events and {run.commits / n:.1f} PostgreSQL commits "
            f"per service ({run.commits / run.wall_s:.0f} commits/s)"
        )
        print("  CPU seconds during the burst (2 cores = 2 s per s):")
        for label, seconds in sorted(run.cpu_s.items(), key=lambda kv: -kv[1]):
            if seconds >= 0.05:
                print(f"  {seconds:8.1f}  {seconds / run.wall_s:6.0%}  {label}")
        commands = run.node_commands
        top = ", ".join(f"{name} {count / n:.1f}" for name, count in commands.most_common(6))
        per_service = sum(commands.values()) / n
        ceiling = floor.ssh_commands_per_s * 2 * 60 / per_service if per_service else 0.0
        print(
            f"  node commands per service: {per_service:.1f} "
            f"(over SSH, each a session on a pooled connection; most: {top})"
        )
        print(
            f"  SSH alone bounds this machine at ≈{ceiling:.0f} services/min "
            f"(SSH floor * 2 cores * 60 / commands per service; nothing else running)"
        )
        print("  a step's time in the burst, ms (p50 / p99 / mean, steps):")
        for label, values in sorted(run.step_ms.items()):
            print(
                f"    {_pct(values, 50):7.0f} / {_pct(values, 99):7.0f} / "
                f"{statistics.mean(values):7.0f}, {len(values):>5}  {label}"
            )
        for line in run.profile:
            print("  " + line)
    print()
    for run in runs:
        planning = run.paced.planning_ms
        if planning:
            print(
                f"[{run.latency_ms} ms/command] paced first step: order → pipeline planning "
                f"p50 {_pct(planning, 50):.0f} / p99 {_pct(planning, 99):.0f} ms (relay, broker, "
                f"the pipeline's queue); the rest is planning and recording the run"
            )
    for run in runs:
        p99 = _pct(run.paced.first_step_ms, 99)
        rate = run.burst.per_minute
        print(
            f"{run.latency_ms} ms/command: first step p99 {p99:.0f} ms paced (target ≤ 100: "
            f"{'met' if p99 <= 100 else 'MISSED'}); {rate:.0f} Split services active/min "
            f"in the burst (target ≥ 1000 at 0 ms: "
            f"{'met' if rate >= 1000 else 'MISSED' if run.latency_ms == 0 else 'n/a'})"
        )
