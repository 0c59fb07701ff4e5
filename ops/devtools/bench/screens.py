"""``hostwright bench screens``: live pages and console pages over 10,000 services.

Fills a scratch store (a SQLite file in a temporary folder, or ``--database-url``: an empty
database) with ``--services`` services: all but the live ones seeded as events, active
(``bench usage``'s seeding); the live ones ordered and planned by the real pipeline, run here
as ``hostwright serve pipeline`` would with an instant fake handler (``bench growth``'s), so
their deploys sit at their first steps. The gateway and the projections run in a process of
their own (``views_side``: as in ``hostwright up``, without its pipeline and handlers). The
bench mints each live service's client link (``POST /v1/services/{id}/client-link``) and
opens ``--pages`` live pages on them (SSE on ``/client/{id}/live`` over httpx): one page per
service, and ``--crowd`` of them all on one service (the pages a customer's colleagues keep
open). Then it records ``--events`` step
results as the pipeline does (each a ``Task.Succeeded`` and the next step's dispatch), one
after another, alternating the crowded service with the others, and measures:

  event → page    from just before the pipeline records a step's result to each page on that
                  service receiving a state that differs (p50 / p99 over every page; goal p99
                  under 1 s)
  console         ``GET /admin/services`` and ``GET /admin/tasks`` (signed in once, the cookie
                  reused) while the pages stay open: p50 / p99 (goal p99 under 150 ms)
  floor           ``GET /healthz`` of the same gateway in the same run

The times are the client's (localhost round trips); the pages stay open during all of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

from domain.commands import parse_order
from domain.service import service_uuid
from handlers.messages import TaskMessage
from handlers.pipeline import Pipeline, RelayedEvent
from ops.devtools.bench.growth import Clock, Collector, build, register_nodes, succeeded
from ops.devtools.bench.live_pages import LivePage
from ops.devtools.bench.usage import seed_services
from ops.devtools.http_load import percentile
from ops.devtools.listen_ports import free_port
from ops.store.database import Database
from ops.store.event_store import EventStore
from ops.views.live_changes import SqlLiveChanges

LIVE_ID_BASE = 1  # the live services are 1…N; the seeded ones 100000… (bench usage's)
SEEDED_SERVERS = 10
GOAL_PAGE_P99_S = 1.0
GOAL_CONSOLE_P99_MS = 150.0


@dataclass
class ScreensFigures:
    services: int
    pages: int
    page_latencies_s: list[float] = field(default_factory=list)
    missed: int = 0  # pages that saw no change within the wait
    timings_ms: dict[str, list[float]] = field(default_factory=dict)
    seeding_s: float = 0.0


class _ViewsSide:
    """The gateway and the projections (``views_side``): a process on the scratch store."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = {**os.environ, **env}
        self.log = logs / "views-side.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ops.devtools.bench.views_side"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def tail(self) -> str:
        shown = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
        return f"--- {self.log.name} ---\n{shown}"

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


async def sign_in(client: httpx.AsyncClient, staff_token: str) -> None:
    """Signs ``client`` in to the console with the staff token (its cookie jar keeps the
    session; the sign-in form carries no CSRF token: docs/console.md)."""
    reply = await client.post("/admin/sign-in", data={"token": staff_token})
    if reply.status_code >= 400:
        raise RuntimeError(f"signing in to the console: {reply.status_code}")
    if (await client.get("/admin/services", follow_redirects=False)).status_code != 200:
        raise RuntimeError("signed in, the console still does not show /admin/services")


async def _wait_for(condition: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"bench screens: waited {timeout:.0f} s for {what}")


class _LiveDeploys:
    """The live services' deploys, driven by the real pipeline with an instant fake handler."""

    def __init__(self, store: EventStore, count: int) -> None:
        self.store = store
        self.clock = Clock()
        self.collector = Collector()
        self.pipeline: Pipeline = build(store, self.clock, self.collector)
        self.ids = [str(LIVE_ID_BASE + n) for n in range(count)]
        self.pending: dict[str, list[TaskMessage]] = {}

    async def order_all(self) -> None:
        register_nodes(self.store)
        await self.pipeline.rebuild()
        self.clock.now = datetime.now(UTC)
        for service_id in self.ids:
            body = {
                "service_id": service_id,
                "client_id": 1,
                "mode": "split",
                "domain": f"live{service_id}.bench.example.com",
                "plan": {"package": "bench", "disk_mb": 1024},
            }
            command = parse_order(body, now=self.clock(), actor="bench")
            await asyncio.to_thread(self.store.order_service, command, None)
        events = [RelayedEvent("Service.Ordered", service_uuid(s), 1) for s in self.ids]
        await self.pipeline.on_batch(list(events))
        self._collect()

    def _collect(self) -> None:
        for message in self.collector.take():
            self.pending.setdefault(message.service_id, []).append(message)

    def has_step(self, service_id: str) -> bool:
        return bool(self.pending.get(service_id))

    async def finish_step(self, service_id: str) -> None:
        """One running step of the service succeeds, as its handler would report it."""
        message = self.pending[service_id].pop(0)
        self.clock.now = datetime.now(UTC)
        await self.pipeline.on_batch([succeeded(message)])
        self._collect()


async def _views_caught_up(database_url: str, store: EventStore) -> bool:
    def caught_up() -> bool:
        db = Database(database_url)
        try:
            position = SqlLiveChanges(db).changes_after(None)[0]
        finally:
            db.close()
        return position >= store.max_notification_id()

    return await asyncio.to_thread(caught_up)


async def _timed(client: httpx.AsyncClient, path: str, requests: int) -> list[float]:
    timings = []
    for _ in range(requests):
        began = time.perf_counter()
        reply = await client.get(path, follow_redirects=False)
        timings.append((time.perf_counter() - began) * 1000)
        if reply.status_code != 200:
            raise RuntimeError(f"GET {path} answered {reply.status_code}")
    return timings


@contextlib.asynccontextmanager
async def _open_pages(
    base: str, links: list[tuple[str, str]], timeout: float
) -> AsyncIterator[list[LivePage]]:
    limits = httpx.Limits(max_connections=len(links) + 8, max_keepalive_connections=8)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        pages = [LivePage(service_id, link) for service_id, link in links]
        try:
            for page in pages:
                page.open(client)
            for page in pages:
                if not await page.first_state(timeout):
                    raise RuntimeError(f"a live page never showed a state: {page.failure}")
            yield pages
        finally:
            for page in pages:
                await page.close()


async def _measure_events(
    deploys: _LiveDeploys, pages: list[LivePage], events: int, crowded: str, wait_s: float
) -> tuple[list[float], int]:
    by_service: dict[str, list[LivePage]] = {}
    for page in pages:
        by_service.setdefault(page.service_id, []).append(page)
    others = [s for s in deploys.ids if s != crowded and s in by_service]
    latencies: list[float] = []
    missed = 0
    for number in range(events):
        service_id = crowded if number % 2 == 0 else others[(number // 2) % max(1, len(others))]
        if not deploys.has_step(service_id):
            service_id = next((s for s in by_service if deploys.has_step(s)), "")
            if not service_id:
                break  # every deploy finished: no step left to record
        watching = by_service[service_id]
        before = [page.shown for page in watching]
        began = time.perf_counter()
        await deploys.finish_step(service_id)
        seen = await asyncio.gather(
            *(
                page.change_after(began, shown, wait_s)
                for page, shown in zip(watching, before, strict=True)
            )
        )
        latencies += [s for s in seen if s is not None]
        missed += sum(1 for s in seen if s is None)
    return latencies, missed


async def measure(
    *,
    services: int,
    pages: int,
    crowd: int,
    events: int,
    requests: int,
    database_url: str,
    scratch: Path,
) -> ScreensFigures:
    live_count = max(1, pages - crowd + 1)
    if services < live_count:
        raise ValueError(f"--services must be at least {live_count} (one per distinct page)")
    figures = ScreensFigures(services, pages)
    began = time.perf_counter()
    seed_services(database_url, services - live_count, SEEDED_SERVERS)
    store = EventStore(database_url)
    try:
        deploys = _LiveDeploys(store, live_count)
        await deploys.order_all()
        figures.seeding_s = time.perf_counter() - began
        port, whmcs, staff = free_port(), secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        base = f"http://127.0.0.1:{port}"
        views_side = _ViewsSide(
            {
                "HOSTWRIGHT_DATABASE_URL": database_url,
                "HOSTWRIGHT_LISTEN": f"127.0.0.1:{port}",
                "HOSTWRIGHT_API_TOKEN": whmcs,
                "HOSTWRIGHT_STAFF_TOKEN": staff,
                "HOSTWRIGHT_SECRET_KEY": secrets.token_urlsafe(32),
                "HOSTWRIGHT_PUBLIC_URL": base,
            },
            scratch,
        )
        try:
            views_side.start()
            figures = await _measure_running(
                figures, deploys, store, database_url, base, (whmcs, staff), crowd, events, requests
            )
        except Exception as exc:
            raise RuntimeError(f"{exc}\n{views_side.tail()}") from exc
        finally:
            views_side.stop()
    finally:
        store.close()
    return figures


async def _measure_running(
    figures: ScreensFigures,
    deploys: _LiveDeploys,
    store: EventStore,
    database_url: str,
    base: str,
    tokens: tuple[str, str],
    crowd: int,
    events: int,
    requests: int,
) -> ScreensFigures:
    whmcs, staff = tokens
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:

        async def healthy() -> bool:
            with contextlib.suppress(httpx.TransportError):
                return (await client.get("/healthz")).status_code == 200
            return False

        await _wait_for(healthy, 60, "the gateway")
        await _wait_for(lambda: _views_caught_up(database_url, store), 600, "the views")
        crowded = deploys.ids[0]
        targets = [crowded] * crowd + deploys.ids[1:]
        links = []
        for service_id in targets[: figures.pages]:
            reply = await client.post(
                f"/v1/services/{service_id}/client-link",
                json={},
                headers={"Authorization": f"Bearer {whmcs}"},
            )
            reply.raise_for_status()
            links.append((service_id, str(reply.json()["url"])))
        async with _open_pages(base, links, 60) as pages:
            print(f"  {len(pages)} live pages open; recording {events} step results", flush=True)
            latencies, missed = await _measure_events(deploys, pages, events, crowded, 10.0)
            figures.page_latencies_s, figures.missed = latencies, missed
            shown = sorted(s * 1000 for s in latencies)
            print(
                f"  {len(latencies)} page updates, {missed} missed: "
                f"p50 {percentile(shown, 50):.0f} ms, p99 {percentile(shown, 99):.0f} ms",
                file=sys.stderr,
            )
            await sign_in(client, staff)
            for path in ("/healthz", "/admin/services", "/admin/tasks"):
                figures.timings_ms[path] = await _timed(client, path, requests)
    return figures


@contextlib.contextmanager
def _quiet_pipeline_log() -> Iterator[None]:
    """The pipeline's line per planned run left out while the bench runs, and only then: the
    bench also runs inside other processes (the tests'), whose later pipelines log them."""
    logger = logging.getLogger("handlers.pipeline")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _database(database_url: str | None) -> Iterator[tuple[str, Path]]:
    with tempfile.TemporaryDirectory(prefix="hw-bench-screens-") as tmp:
        yield database_url or f"sqlite:///{Path(tmp) / 'screens.sqlite'}", Path(tmp)


def report(figures: ScreensFigures) -> list[str]:
    page_ms = [s * 1000 for s in figures.page_latencies_s]
    p99_page = percentile(page_ms, 99)
    lines = [
        f"screens: {figures.services:,} services, {figures.pages} live pages "
        f"(seeded in {figures.seeding_s:.1f} s)",
        f"  event → page   {len(page_ms)} page updates, {figures.missed} missed   "
        f"p50 {percentile(page_ms, 50):.0f} ms   p99 {p99_page:.0f} ms   "
        f"(goal p99 < {GOAL_PAGE_P99_S * 1000:.0f} ms: "
        f"{'met' if p99_page < GOAL_PAGE_P99_S * 1000 and not figures.missed else 'MISSED'})",
    ]
    for path, timings in figures.timings_ms.items():
        p99 = percentile(timings, 99)
        goal = (
            ""
            if path == "/healthz"
            else f"   (goal p99 < {GOAL_CONSOLE_P99_MS:.0f} ms: "
            f"{'met' if p99 < GOAL_CONSOLE_P99_MS else 'MISSED'})"
        )
        lines.append(
            f"  GET {path:<16} {len(timings)} requests   p50 {percentile(timings, 50):.1f} ms   "
            f"p99 {p99:.1f} ms{goal}"
        )
    return lines


def run_screens_bench(
    *,
    services: int,
    pages: int,
    crowd: int,
    events: int,
    requests: int,
    database_url: str | None,
) -> int:
    if not 0 < crowd <= pages or events < 1 or requests < 1:
        print("bench screens: needs 0 < --crowd <= --pages, --events >= 1, --requests >= 1")
        return 2
    with _quiet_pipeline_log(), _database(database_url) as (url, scratch):
        print(f"screens: seeding {services:,} services on {url.split(':')[0]} …", flush=True)
        figures = asyncio.run(
            measure(
                services=services,
                pages=pages,
                crowd=crowd,
                events=events,
                requests=requests,
                database_url=url,
                scratch=scratch,
            )
        )
    for line in report(figures):
        print(line)
    return 1 if figures.missed or not figures.page_latencies_s else 0
