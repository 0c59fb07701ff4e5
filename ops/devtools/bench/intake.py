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
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from ops.devtools.bench.orders import split_orders
from ops.devtools.bench.scratch import DEFAULT_POSTGRES, free_port, scratch_postgres
from ops.devtools.bench.store_floor import store_open_loop, store_save_rate
from ops.devtools.http_load import LoadResult, closed_loop, open_loop


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
            with scratch_postgres(postgres_url or DEFAULT_POSTGRES) as pg_url:
                figures.append(_measure("postgresql", pg_url, seconds, rate))
    _report(figures)
    return 0


def _measure(name: str, url: str, seconds: float, rate: float) -> IntakeFigures:
    print(f"[{name}] store floor: single-event saves for {seconds:.0f}s …", flush=True)
    floor = store_save_rate(url, seconds)
    print(f"[{name}] store floor: single-event saves offered at {rate:.0f}/s …", flush=True)
    store_offered = store_open_loop(url, rate, seconds)
    token = secrets.token_urlsafe(32)  # the gateway refuses tokens under 32 characters
    port = free_port()
    with _gateway_process(url, port, token):
        headers = {"Authorization": f"Bearer {token}"}
        closed = partial(closed_loop, "127.0.0.1", port, seconds=seconds)
        print(f"[{name}] /healthz closed loop …", flush=True)
        healthz = asyncio.run(closed({}, _healthz, concurrency=16, expect=200))
        print(f"[{name}] POST /v1/services closed loop …", flush=True)
        orders = split_orders(10_000_000, with_username=False)
        sustained = asyncio.run(closed(headers, orders, concurrency=32, expect=202))
        print(f"[{name}] POST /v1/services open loop at {rate:.0f}/s …", flush=True)
        offered = asyncio.run(
            open_loop(
                "127.0.0.1",
                port,
                headers,
                split_orders(20_000_000, with_username=False),
                rate=rate,
                seconds=seconds,
                expect=202,
            )
        )
    return IntakeFigures(name, floor, store_offered, healthz, sustained, offered, rate)


def _healthz(i: int) -> tuple[str, str, bytes | None]:
    return "GET", "/healthz", None


class _gateway_process:
    def __init__(self, url: str, port: int, token: str) -> None:
        self.env = {
            **os.environ,
            "HOSTWRIGHT_DATABASE_URL": url,
            "HOSTWRIGHT_LISTEN": f"127.0.0.1:{port}",
            "HOSTWRIGHT_API_TOKEN": token,
            "HOSTWRIGHT_SECRET_KEY": secrets.token_urlsafe(32),
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
