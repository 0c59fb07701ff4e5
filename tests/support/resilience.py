"""What the resilience and lifecycle end-to-end tests share: a deployment built to order on
split nodes, split orders with a package of their own, a service's tasks as the API lists them,
the pipeline's recorded Task history, and the "no apply ran twice" check over the simulated
nodes' command records.

Everything here reads what hostwright recorded (the event store) or what the nodes recorded
(``DIR/commands.jsonl``, ``DIR/stats.json``); nothing reaches into hostwright's processes.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from domain.placement import placement_for
from domain.server import ServerFacts
from ops.adapters.pipeline_store import StorePipelineAdapter
from ops.devtools.simnode import read_command_log
from ops.store.event_store import EventStore
from tests.support.deployment import DNS1_IP, DNS2_IP, MAIL_IP, WEB_IP, Deployment, dumps
from tests.support.processes import HostwrightProcess

NodeSpec = tuple[str, tuple[str, ...], str]  # server_id, roles, ip
SPLIT_NODES: list[NodeSpec] = [
    ("web1", ("web",), WEB_IP),
    ("mail1", ("mail",), MAIL_IP),
    ("dns1", ("dns",), DNS1_IP),
    ("dns2", ("dns",), DNS2_IP),
]


class ResilienceDeployment(Deployment):
    """The harness, plus extra processes of one part (``Deployment.start`` keeps only the
    latest process per part; the extra ones are tracked here and killed on close)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.extra: list[HostwrightProcess] = []

    def start_extra(self, part: str) -> HostwrightProcess:
        name = part.replace(" ", "-") + f"-extra-{len(self.extra)}"
        process = HostwrightProcess(["serve", *part.split()], self.settings, self.tmp, name)
        self.extra.append(process.start())
        return process

    def logs(self) -> str:
        extra = "\n".join(f"--- extra {i} ---\n{p.log()[-3000:]}" for i, p in enumerate(self.extra))
        return super().logs() + ("\n" + extra if extra else "")

    async def close(self) -> None:
        for process in self.extra:
            process.__exit__()
        await super().close()


@asynccontextmanager
async def deployment(
    tmp_path: Path,
    amqp_url: str,
    exchange: str,
    database_url: str,
    nodes: list[NodeSpec],
    *,
    settings: Mapping[str, str] | None = None,
    max_concurrency: int = 4,
    provider: tuple[str, list[str]] | None = None,
) -> AsyncIterator[ResilienceDeployment]:
    system = ResilienceDeployment(tmp_path, amqp_url, exchange, database_url)
    try:
        for server_id, roles, ip in nodes:
            await system.add_node(server_id, roles, ip)
        if provider is not None:
            await system.provision_provider(*provider)
        system.settings.update(settings or {})
        await system.start_all()
        await system.register_nodes(max_concurrency=max_concurrency)
        yield system
    finally:
        await system.close()


def service_ids_placing(
    nodes: list[NodeSpec], mode: str, role: str, server_id: str, start: int, count: int
) -> list[int]:
    """``count`` service ids from ``start`` whose placement (domain/placement.py, no load)
    puts ``role`` (``web_server``/``mail_server``) on ``server_id``."""
    servers = [ServerFacts(sid, roles, ip) for sid, roles, ip in nodes]
    found = []
    for candidate in range(start, start + 10_000):
        placement = placement_for(str(candidate), mode, servers)
        if getattr(placement, role) == server_id:
            found.append(candidate)
            if len(found) == count:
                return found
    raise AssertionError(f"too few service ids place {role} on {server_id}")


# --- the recorded Task history -----------------------------------------------------------


@dataclass
class TaskRecord:
    """One task as its events tell it: what it is, and its events in order (kind, event)."""

    task_id: uuid.UUID
    service_id: str
    step: str
    action: str
    server_id: str
    events: list[tuple[str, Any]] = field(default_factory=list)

    def of(self, kind: str) -> list[Any]:
        return [event for name, event in self.events if name == kind]

    @property
    def kinds(self) -> list[str]:
        return [name for name, _ in self.events]


def _task_history(database_url: str) -> dict[uuid.UUID, TaskRecord]:
    store = EventStore(database_url)
    try:
        tasks: dict[uuid.UUID, TaskRecord] = {}
        for event in StorePipelineAdapter(store).task_history():
            kind = type(event).__name__
            if kind == "Planned":
                tasks[event.originator_id] = TaskRecord(
                    event.originator_id,
                    event.service_id,
                    event.step,
                    event.action,
                    event.server_id,
                )
            record = tasks[event.originator_id]
            record.events.append((kind, event))
        return tasks
    finally:
        store.close()


async def task_history(system: Deployment) -> dict[uuid.UUID, TaskRecord]:
    """Every task and every Task event, read from the store (not from a view)."""
    return await asyncio.to_thread(_task_history, system.database_url)


def seconds(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds()


# --- no apply ran twice -------------------------------------------------------------------


def resource_of(argv: list[str]) -> tuple[str, ...]:
    """What a state-changing command acts on: the same key twice = the same thing applied twice.

    ``v-add-user-package FILE NAME [yes]`` has a random upload path: keyed by the package;
    ``v-add-dns-record USER ZONE RECORD TYPE VALUE …``: by (user, zone, record, type, value);
    anything else by its whole argv (users and domains differ per service in these tests).
    """
    name = argv[0]
    if name == "v-add-user-package":
        return (name, argv[2])
    if name == "v-add-dns-record":
        return (name, *argv[1:6])
    return tuple(argv)


def double_applies(system: Deployment) -> dict[str, dict[str, int]]:
    """Per node, each resource a state-changing command (``changed``) hit more than once."""
    found: dict[str, dict[str, int]] = {}
    for server_id, node in system.nodes.items():
        counts = Counter(
            resource_of(entry["argv"])
            for entry in read_command_log(node.data_dir)
            if entry["changed"]
        )
        twice = {" ".join(key): n for key, n in counts.items() if n > 1}
        if twice:
            found[server_id] = twice
    return found


def changed_commands(system: Deployment) -> dict[str, list[list[str]]]:
    changed: dict[str, list[list[str]]] = defaultdict(list)
    for server_id, node in system.nodes.items():
        for entry in read_command_log(node.data_dir):
            if entry["changed"]:
                changed[server_id].append(entry["argv"])
    return dict(changed)


def assert_no_double_apply(system: Deployment) -> None:
    twice = double_applies(system)
    assert not twice, f"applied more than once: {dumps(twice)}\n{dumps(changed_commands(system))}"


async def order_split(system: Deployment, service_id: int, **extra: Any) -> None:
    """A split order with a package of its own, so each service's package step is the only
    one that ever writes its package (no two services race on a shared one)."""
    await system.order(
        service_id,
        "split",
        f"site{service_id}.example.com",
        username=f"user{service_id}",
        plan={"package": f"pkg{service_id}", "disk_mb": 1000},
        **extra,
    )


async def tasks_of(system: Deployment, service_id: int) -> list[dict[str, Any]]:
    reply = await system.staff.get("/v1/tasks", params={"service_id": str(service_id)})
    assert reply.status_code == 200, reply.text
    tasks: list[dict[str, Any]] = reply.json()["tasks"]
    return tasks
