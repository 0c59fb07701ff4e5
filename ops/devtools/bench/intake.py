"""``hostwright bench intake``: how fast the gateway takes orders, beside its own floors.

For each store (SQLite file, PostgreSQL database), all in one run:
  1. the event store's own rate of single-event saves (eventsourcing, no HTTP) — the floor;
  2. the same gateway process answering ``GET /healthz`` (closed loop) — the HTTP ceiling;
  3. sustained ``POST /v1/services`` (closed loop, 32 clients) — orders stored per second;
  4. ``POST /v1/services`` offered open-loop at ``--rate``/s — p50/p99 from the scheduled time.
The gateway runs as its own process (``hostwright serve gateway``); the load generator runs
here. Targets (issue 2): (3) ≥ 80 % of (1), and p99 of (4) < 25 ms at 200/s.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

from domain.commands import parse_order
from domain.service import Service
from ops.devtools.http_load import LoadResult, closed_loop, json_body, open_loop
from ops.store.event_store import EventStore

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass
class IntakeFigures:
    store: str
    store_saves_per_s: float
    store_offered: LoadResult
    healthz: LoadResult
    sustained: LoadResult
    offered: LoadResult
    offered_rate: float


def run_intake_bench(
    *,
    postgres_url: str | None,
    seconds: float,
    rate: float,
    stores: tuple[str, ...] = ("sqlite", "postgresql"),
) -> int:
    figures = []
    with tempfile.TemporaryDirectory(prefix="hw-bench-") as tmp:
        if "sqlite" in stores:
            sqlite_url = f"sqlite:///{Path(tmp) / 'bench.sqlite'}"
            figures.append(_measure("sqlite", sqlite_url, seconds, rate))
        if "postgresql" in stores:
            with _scratch_postgres(postgres_url or DEFAULT_POSTGRES) as pg_url:
                figures.append(_measure("postgresql", pg_url, seconds, rate))
    _report(figures)
    return 0


def _measure(name: str, url: str, seconds: float, rate: float) -> IntakeFigures:
    print(f"[{name}] store floor: single-event saves for {seconds:.0f}s …", flush=True)
    floor = _store_save_rate(url, seconds)
    print(f"[{name}] store floor: single-event saves offered at {rate:.0f}/s …", flush=True)
    store_offered = _store_open_loop(url, rate, seconds)
    token = secrets.token_urlsafe(16)
    port = _free_port()
    with _gateway_process(url, port, token):
        headers = {"Authorization": f"Bearer {token}"}
        run = asyncio.run
        print(f"[{name}] /healthz closed loop …", flush=True)
        healthz = run(
            closed_loop(
                "127.0.0.1",
                port,
                {},
                lambda i: ("GET", "/healthz", None),
                concurrency=16,
                seconds=seconds,
                expect=200,
            )
        )
        print(f"[{name}] POST /v1/services closed loop …", flush=True)
        sustained = run(
            closed_loop(
                "127.0.0.1",
                port,
                headers,
                _order_request(10_000_000),
                concurrency=32,
                seconds=seconds,
                expect=202,
            )
        )
        print(f"[{name}] POST /v1/services open loop at {rate:.0f}/s …", flush=True)
        offered = run(
            open_loop(
                "127.0.0.1",
                port,
                headers,
                _order_request(20_000_000),
                rate=rate,
                seconds=seconds,
                expect=202,
            )
        )
    return IntakeFigures(name, floor, store_offered, healthz, sustained, offered, rate)


def _store_save_rate(url: str, seconds: float) -> float:
    store = EventStore(url)
    now = datetime.now(UTC)
    count = 0
    began = time.perf_counter()
    while time.perf_counter() - began < seconds:
        order = parse_order(
            {
                "service_id": count + 1,
                "client_id": 1,
                "mode": "split",
                "domain": f"floor{count}.example.com",
            },
            now=now,
            actor="bench",
        )
        store.save(Service.order(order, None))
        count += 1
    rate = count / (time.perf_counter() - began)
    store.close()
    return rate


def _store_open_loop(url: str, rate: float, seconds: float) -> LoadResult:
    """The store alone, saves offered on schedule: its own latency tail at the same rate."""
    store = EventStore(url)
    now = datetime.now(UTC)
    result = LoadResult()
    began = time.perf_counter()
    for i in range(int(rate * seconds)):
        scheduled = began + i / rate
        if (delay := scheduled - time.perf_counter()) > 0:
            time.sleep(delay)
        order = parse_order(
            {
                "service_id": 5_000_000 + i,
                "client_id": 1,
                "mode": "split",
                "domain": f"lat{i}.example.com",
            },
            now=now,
            actor="bench",
        )
        store.save(Service.order(order, None))
        result.ok += 1
        result.latencies_ms.append((time.perf_counter() - scheduled) * 1000)
    result.elapsed_s = time.perf_counter() - began
    store.close()
    return result


def _order_request(offset: int):  # type: ignore[no-untyped-def]
    def make(i: int) -> tuple[str, str, bytes]:
        sid = offset + i
        body = {
            "service_id": sid,
            "client_id": sid % 997,
            "mode": "split",
            "domain": f"bench{sid}.example.com",
            "plan": {"package": "bench", "disk_mb": 1024},
        }
        return "POST", "/v1/services", json_body(body)

    return make


class _gateway_process:
    def __init__(self, url: str, port: int, token: str) -> None:
        self.env = {
            **os.environ,
            "HOSTWRIGHT_DATABASE_URL": url,
            "HOSTWRIGHT_LISTEN": f"127.0.0.1:{port}",
            "HOSTWRIGHT_API_TOKEN": token,
            "HOSTWRIGHT_SECRET_KEY": secrets.token_urlsafe(16),
        }
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> _gateway_process:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ops.cli", "serve", "gateway"],
            env=self.env,
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the gateway did not start")

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class _scratch_postgres:
    """A fresh database on the server for the run, dropped afterwards."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.name = f"hw_bench_{uuid.uuid4().hex[:10]}"

    def __enter__(self) -> str:
        with psycopg.connect(self.server_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        return urlsplit(self.server_url)._replace(path=f"/{self.name}").geturl()

    def __exit__(self, *exc: object) -> None:
        with psycopg.connect(self.server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def _report(figures: list[IntakeFigures]) -> None:
    print()
    print(
        "store       store saves/s  healthz/s  orders/s (closed)  ratio  "
        "open-loop rate  p50 ms  p99 ms  errors  store alone p50/p99 ms"
    )
    for f in figures:
        ratio = f.sustained.rate / f.store_saves_per_s
        print(
            f"{f.store:<11} {f.store_saves_per_s:>13.0f}  {f.healthz.rate:>9.0f}  "
            f"{f.sustained.rate:>17.0f}  {ratio:>5.0%}  "
            f"{f.offered.rate:>10.0f}/{f.offered_rate:<3.0f}"
            f"  {f.offered.percentile(50):>6.1f}  {f.offered.percentile(99):>6.1f}  "
            f"{f.sustained.errors + f.offered.errors:>6}  "
            f"{f.store_offered.percentile(50):.1f}/{f.store_offered.percentile(99):.1f}"
        )
    print()
    for f in figures:
        ratio = f.sustained.rate / f.store_saves_per_s
        p99 = f.offered.percentile(99)
        print(
            f"{f.store}: sustained intake {ratio:.0%} of the store's save rate "
            f"(target ≥ 80%: {'met' if ratio >= 0.8 else 'MISSED'}); "
            f"p99 {p99:.1f} ms at {f.offered_rate:.0f}/s offered "
            f"(target < 25 ms: {'met' if p99 < 25 else 'MISSED'}; the store alone at that "
            f"rate: p99 {f.store_offered.percentile(99):.1f} ms)"
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
