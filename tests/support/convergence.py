"""What the convergence and Vanity-invariant tests share: node snapshots, command-log windows,
and waiting for one lifecycle run of a service to finish.

Everything here reads what the simulated nodes keep on disk (``DIR/state/``, ``DIR/fs/``,
``DIR/commands.jsonl``) or asks the gateway; nothing reaches into hostwright's processes.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ops.devtools.simnode import read_command_log, read_state_json
from ops.store.event_store import EventStore
from tests.support.budget import budget
from tests.support.deployment import Deployment, dumps, wait_until

# a request event's version is the number of the run the pipeline starts for it
REQUEST_TOPICS = {
    "redeploy": "Service.RedeployRequested",
    "verify-repair": "Service.VerifyRepairRequested",
    "factory-reset": "Service.FactoryResetRequested",
    "suspend": "Service.SuspendRequested",
    "unsuspend": "Service.UnsuspendRequested",
    "change-plan": "Service.PlanChangeRequested",
    "terminate": "Service.TerminateRequested",
}
# what the service records when a run ends with a task in error (domain/run_outcome.py)
FAILURE_TOPICS = ("Service.DeployFailed", "Service.OperationFailed")


@dataclass(frozen=True)
class NodeSnapshot:
    """One node as it is on disk: its whole state (``read_state_json``) byte for byte, and every
    file under ``fs/``
    with a hash of its content (directories listed too, so an empty docroot counts)."""

    state: bytes
    files: dict[str, str]


def snapshot(system: Deployment, server_id: str) -> NodeSnapshot:
    data_dir = system.nodes[server_id].data_dir
    state = read_state_json(data_dir).encode()
    return NodeSnapshot(state, _files(data_dir / "fs"))


def snapshot_all(system: Deployment) -> dict[str, NodeSnapshot]:
    return {server_id: snapshot(system, server_id) for server_id in system.nodes}


def _files(root: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        name = str(path.relative_to(root))
        if path.is_dir():
            found[name + "/"] = "dir"
        else:
            found[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def log_marks(system: Deployment) -> dict[str, int]:
    """How many commands each node has recorded so far: the start of a window."""
    return {sid: len(read_command_log(node.data_dir)) for sid, node in system.nodes.items()}


def commands_since(system: Deployment, marks: dict[str, int]) -> dict[str, list[dict[str, Any]]]:
    """Every command each node ran after ``marks``."""
    return {
        sid: read_command_log(node.data_dir)[marks.get(sid, 0) :]
        for sid, node in system.nodes.items()
    }


def state_changing(entry: dict[str, Any]) -> bool:
    """A command that changed the node, or tried to: the node says it changed state, or it is
    anything but a read-only ``v-list-*`` probe."""
    return bool(entry["changed"]) or not str(entry["argv"][0]).startswith("v-list-")


def changes_since(system: Deployment, marks: dict[str, int]) -> dict[str, list[list[str]]]:
    """The argv of each state-changing command per node since ``marks`` (nodes with none too)."""
    return {
        sid: [entry["argv"] for entry in entries if state_changing(entry)]
        for sid, entries in commands_since(system, marks).items()
    }


def event_count(database_url: str) -> int:
    """The event store's highest notification id: every event hostwright ever recorded."""
    store = EventStore(database_url)
    try:
        return store.max_notification_id()
    finally:
        store.close()


async def events(system: Deployment, service_id: int) -> list[dict[str, Any]]:
    reply = await system.client.get(f"/v1/services/{service_id}/events")
    assert reply.status_code == 200, reply.text
    found: list[dict[str, Any]] = reply.json()["events"]
    return found


async def request(system: Deployment, service_id: int, action: str) -> int:
    """POSTs a lifecycle action; returns the version of the event it recorded (= its run)."""
    reply = await system.client.post(f"/v1/services/{service_id}/{action}", json={})
    assert reply.status_code == 202, reply.text
    topic = REQUEST_TOPICS[action]
    versions = [e["version"] for e in await events(system, service_id) if e["topic"] == topic]
    assert versions, f"service {service_id}: no {topic} event after POST {action}"
    return int(max(versions))


async def run_finished(
    system: Deployment,
    service_id: int,
    run: int,
    outcome: str = "Service.Activated",
    status: str = "active",
) -> bool:
    """The run numbered ``run`` finished for the service: every one of its tasks succeeded,
    the timeline shows exactly those tasks, ``outcome`` (the event domain/run_outcome.py
    records for the run's kind: Activated, Suspended, Unsuspended, PlanApplied, Terminated)
    came after the request, and the service reads ``status``. A DeployFailed or an
    OperationFailed after the request fails the test."""
    later = [e["topic"] for e in await events(system, service_id) if e["version"] > run]
    failed = [topic for topic in later if topic in FAILURE_TOPICS]
    if failed:
        raise AssertionError(f"service {service_id}: run {run} failed: {later}")
    if outcome not in later:
        return False
    reply = await system.staff.get("/v1/tasks", params={"service_id": str(service_id)})
    tasks = [t for t in reply.json()["tasks"] if t["run"] == run]
    if not tasks or any(t["state"] != "succeeded" for t in tasks):
        return False
    steps = (await system.client.get(f"/v1/services/{service_id}/timeline")).json()["steps"]
    if {s["task_id"] for s in steps} != {t["task_id"] for t in tasks}:
        return False
    if any(s["state"] != "succeeded" or not s["finished_at"] for s in steps):
        return False
    now: object = (await system.status(service_id))["status"]
    return now == status


async def wait_run(system: Deployment, service_id: int, run: int, timeout: float) -> None:
    async def context() -> str:
        tasks = (
            await system.staff.get("/v1/tasks", params={"service_id": str(service_id)})
        ).json()["tasks"]
        return f"tasks: {dumps(tasks)}\nevents: {dumps(await events(system, service_id))}"

    try:
        await wait_until(
            lambda: run_finished(system, service_id, run),
            timeout,
            f"service {service_id}: run {run} finished and active",
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{await context()}\n{system.logs()}") from None


async def settle(system: Deployment, quiet_s: float = 0.5, timeout: float = 30) -> None:
    """Waits until no node has run a command for ``quiet_s``: nothing is left in flight."""
    timeout = budget(timeout)
    deadline = asyncio.get_running_loop().time() + timeout
    marks = log_marks(system)
    quiet_since = asyncio.get_running_loop().time()
    while asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
        now_marks = log_marks(system)
        if now_marks != marks:
            marks, quiet_since = now_marks, asyncio.get_running_loop().time()
        elif asyncio.get_running_loop().time() - quiet_since >= quiet_s:
            return
    raise AssertionError(f"the nodes never went quiet within {timeout}s")
