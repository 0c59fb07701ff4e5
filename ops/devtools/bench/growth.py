"""``hostwright bench growth``: what the system keeps after many completed deploys.

Runs ``--services`` split orders (10,000 by default) to ``active`` through the in-process
pipeline as ``hostwright serve pipeline`` wires it (real store, real planner over registered
nodes), with an instant fake handler in place of SSH: every task message is answered at once
with ``--heartbeats`` heartbeats 10 s apart (the handlers' default beat; a fake clock moves)
and then a success. Every message the pipeline takes is remembered in its inbox, as its
consumer would. Then it prints:

  store rows      events in the store (Task events, of which LeaseRenewed), inbox rows
  pipeline        open runs, tasks and finished-run entries it still holds after the deploys
  rebuild         a fresh pipeline's rebuild from the store: seconds, events read, the memory
                  its working state takes (tracemalloc) and the runs it holds

It uses only what the pipeline offered before issue 12 too, so the same file runs on an older
tree for a before/after figure (``python -m ops.devtools.bench.growth`` there).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from domain.commands import parse_order
from domain.server import RegisterServer
from domain.service import service_uuid
from handlers.messages import HeartbeatMessage, ResultMessage, TaskMessage
from handlers.pipeline import Pipeline, PipelineSettings, RelayedEvent
from ops.adapters.deploy_planner import DeployPlanner
from ops.adapters.pipeline_store import StorePipelineAdapter
from ops.adapters.server_registry import ServerRegistry
from ops.messaging.inbox import Inbox
from ops.store.database import Database
from ops.store.event_store import EventStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH3hJ2VbFWcH2Z7Ci4sHwuIP6cEYTQ9ZzJ1ZyKz0Mz5q"
ORDER_BATCH = 200
BEAT_S = 10.0
LEASE_S = 60.0


class Collector:
    """The pipeline's publisher: keeps the task messages for the fake handler."""

    def __init__(self) -> None:
        self.messages: list[TaskMessage] = []

    async def publish(
        self, routing_key: str, body: bytes, message_id: str, *, again: bool = False
    ) -> None:
        self.messages.append(TaskMessage.from_json(body))

    def take(self) -> list[TaskMessage]:
        taken, self.messages = self.messages, []
        return taken


class Unlimited:
    def max_concurrency(self, server_id: str) -> int:
        return 100_000


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class ReadCounter:
    """Counts the stored events the store hands out."""

    def __init__(self, store: EventStore) -> None:
        self.rows = 0
        recorder: Any = store.recorder
        recorder.select_events = self._counted(recorder.select_events)
        recorder.select_notifications = self._counted(recorder.select_notifications)

    def _counted(self, read: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            rows = read(*args, **kwargs)
            self.rows += len(rows)
            return rows

        return counted


def build(store: EventStore, clock: Clock, publisher: Collector) -> Pipeline:
    return Pipeline(
        StorePipelineAdapter(store),
        DeployPlanner(ServerRegistry(store), None),
        Unlimited(),
        publisher,
        settings=PipelineSettings(lease_s=LEASE_S, batch_size=100_000),
        clock=clock,
    )


def register_nodes(store: EventStore) -> None:
    registry = ServerRegistry(store)
    for server_id, role in (("web1", "web"), ("mail1", "mail"), ("dns1", "dns"), ("dns2", "dns")):
        registry.register(
            RegisterServer(
                server_id=server_id,
                roles=(role,),
                host=f"{server_id}.bench.invalid",
                port=22,
                username="root",
                host_key=HOST_KEY,
                ip="192.0.2.10",
                max_concurrency=100,
                now=T0,
                actor="bench",
            )
        )


async def deploy_all(
    store: EventStore,
    inbox: Inbox,
    pipeline: Pipeline,
    collector: Collector,
    clock: Clock,
    services: int,
    heartbeats: int,
) -> None:
    for start in range(0, services, ORDER_BATCH):
        ids = [f"g{n}" for n in range(start, min(start + ORDER_BATCH, services))]
        for service_id in ids:
            body = {
                "service_id": service_id,
                "client_id": 1,
                "mode": "split",
                "domain": f"{service_id}.bench.example.com",
                "plan": {"package": "bench", "disk_mb": 1024},
            }
            store.order_service(parse_order(body, now=clock(), actor="bench"), None)
        await pipeline.on_batch([RelayedEvent("Service.Ordered", service_uuid(s), 1) for s in ids])
        inbox.remember_all("pipeline", [f"ordered:{s}" for s in ids])
        while collector.messages:
            sent = collector.take()
            inbox.remember_all("handler", [m.message_id for m in sent])
            for sequence in range(1, heartbeats + 1):
                clock.now += timedelta(seconds=BEAT_S)
                beats = [HeartbeatMessage(m.task_id, m.attempt, m.role, sequence) for m in sent]
                await pipeline.on_batch(list(beats))
                inbox.remember_all("pipeline", [b.message_id for b in beats])
            clock.now += timedelta(seconds=1)
            results = [succeeded(m) for m in sent]
            await pipeline.on_batch(list(results))
            inbox.remember_all("pipeline", [r.message_id for r in results])
        print(f"  {min(start + ORDER_BATCH, services)} deployed", end="\r", file=sys.stderr)
    print(file=sys.stderr)


def succeeded(message: TaskMessage) -> ResultMessage:
    return ResultMessage(
        task_id=message.task_id,
        attempt=message.attempt,
        role=message.role,
        outcome="succeeded",
        changed=True,
    )


def count(db: Database, sql: str) -> int:
    with db.transaction() as cur:
        cur.execute(sql)
        return int(cur.fetchone()[0])


def store_rows(store: EventStore) -> dict[str, int]:
    totals: dict[str, int] = {"events": 0, "task events": 0, "LeaseRenewed": 0}
    after = 0
    while True:
        page = store.recorder.select_notifications(
            start=after, limit=10_000, inclusive_of_start=False
        )
        for notification in page:
            totals["events"] += 1
            if notification.topic.startswith("domain.task:Task."):
                totals["task events"] += 1
                totals["LeaseRenewed"] += notification.topic.endswith(".LeaseRenewed")
        if len(page) < 10_000:
            return totals
        after = page[-1].id


async def measure(database_url: str, services: int, heartbeats: int) -> dict[str, Any]:
    store = EventStore(database_url)
    db = Database(database_url)
    try:
        register_nodes(store)
        clock, collector = Clock(), Collector()
        inbox = Inbox(db)
        pipeline = build(store, clock, collector)
        await pipeline.rebuild()
        began = time.perf_counter()
        await deploy_all(store, inbox, pipeline, collector, clock, services, heartbeats)
        deploy_s = time.perf_counter() - began
        clock.now += timedelta(seconds=31)
        await pipeline.tick()  # what the timer does: expiries, and (now) the checkpoint
        state: Any = pipeline._open  # the working state is what is measured
        figures: dict[str, Any] = {
            "deploy_s": deploy_s,
            **store_rows(store),
            "inbox rows": count(db, "SELECT COUNT(*) FROM hw_inbox"),
            "held runs": len(state.runs),
            "held tasks": len(state.by_id),
            "finished entries": len(state.finished),
        }
        reader = EventStore(database_url)
        try:
            counter = ReadCounter(reader)
            fresh = build(reader, clock, Collector())
            tracemalloc.start()
            began = time.perf_counter()
            await fresh.rebuild()
            figures["rebuild_s"] = time.perf_counter() - began
            figures["rebuild memory KiB"] = tracemalloc.get_traced_memory()[0] / 1024
            figures["rebuild peak KiB"] = tracemalloc.get_traced_memory()[1] / 1024
            tracemalloc.stop()
            figures["rebuild events read"] = counter.rows
            figures["rebuilt runs"] = len(fresh._open.runs)
        finally:
            reader.close()
        if hasattr(inbox, "prune"):  # what the scheduler's inbox job does once they are old
            inbox.prune(0.0)
            figures["inbox rows, pruned"] = count(db, "SELECT COUNT(*) FROM hw_inbox")
        figures["max RSS MiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return figures
    finally:
        db.close()
        store.close()


def run_growth_bench(*, services: int, heartbeats: int, database_url: str | None) -> int:
    with tempfile.TemporaryDirectory(prefix="hw-bench-") as tmp:
        url = database_url or f"sqlite:///{Path(tmp) / 'growth.sqlite'}"
        kind = url.split(":")[0]
        print(f"growth: {services} split deploys, {heartbeats} heartbeats per step, {kind}")
        figures = asyncio.run(measure(url, services, heartbeats))
    report(figures)
    return 0


def report(figures: dict[str, Any]) -> None:
    for name, value in figures.items():
        shown = f"{value:,.2f}" if isinstance(value, float) else f"{value:,}"
        print(f"  {name:<22} {shown}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.devtools.bench.growth")
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--heartbeats", type=int, default=3)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    return run_growth_bench(
        services=args.services, heartbeats=args.heartbeats, database_url=args.database_url
    )


if __name__ == "__main__":
    raise SystemExit(main())
