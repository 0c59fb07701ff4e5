"""The store floor of both benchmarks: the event store alone saving one Service.Ordered at a
time (eventsourcing, no HTTP, no broker) — as fast as it can, and offered on a schedule.

Consumes a store URL; emits saves per second, or a LoadResult with the latency tail.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from domain.commands import parse_order
from domain.service import Service
from ops.devtools.http_load import LoadResult
from ops.store.event_store import EventStore


def store_save_rate(url: str, seconds: float) -> float:
    store = EventStore(url)
    now = datetime.now(UTC)
    count = 0
    began = time.perf_counter()
    while time.perf_counter() - began < seconds:
        _save_order(store, count + 1, f"floor{count}.example.com", now)
        count += 1
    rate = count / (time.perf_counter() - began)
    store.close()
    return rate


def store_open_loop(url: str, rate: float, seconds: float) -> LoadResult:
    """The store alone, saves offered on schedule: its own latency tail at the same rate."""
    store = EventStore(url)
    now = datetime.now(UTC)
    result = LoadResult()
    began = time.perf_counter()
    for i in range(int(rate * seconds)):
        scheduled = began + i / rate
        if (delay := scheduled - time.perf_counter()) > 0:
            time.sleep(delay)
        _save_order(store, 5_000_000 + i, f"lat{i}.example.com", now)
        result.ok += 1
        result.latencies_ms.append((time.perf_counter() - scheduled) * 1000)
    result.elapsed_s = time.perf_counter() - began
    store.close()
    return result


def _save_order(store: EventStore, service_id: int, domain: str, now: datetime) -> None:
    body = {
        "service_id": service_id,
        "client_id": 1,
        "mode": "split",
        "domain": domain,
        "plan": {"package": "bench", "disk_mb": 1024},  # what intake's orders carry
    }
    store.save(Service.order(parse_order(body, now=now, actor="bench"), None))
