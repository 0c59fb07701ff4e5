"""``hostwright bench replay``: how fast ``hostwright replay`` audits a realistic history.

Fills a scratch store — a SQLite file in a temporary folder, and a scratch PostgreSQL
database dropped afterwards, also when the run fails — with ``--services`` split deploys
completed the way ``bench growth`` completes them (the real pipeline, store and planner, an
instant fake handler beating three times per step), projects the live views with the
projection runner, and then prints per store:

  events      the notifications in the store, and the views replay rebuilds
  floor       reading every stored event in large pages and decoding it into its domain
              event as replay does (``log_rows``, ``EventDecoder.decode_row``): what
              replay costs before it folds
  replay      ``replay_and_compare`` from event 0, which must find every view equal, as
              ``hostwright replay`` runs it (one worker process per core), and beside
              it the same in one process (``workers=1``), as on a one-core machine

Both are events per second of the same store in the same run, so the gap between them is
what replay's folding and comparing cost.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ops.devtools.bench.growth import Clock, Collector, build, deploy_all, register_nodes
from ops.devtools.bench.scratch import DEFAULT_POSTGRES, scratch_postgres
from ops.messaging.inbox import Inbox
from ops.store.database import Database
from ops.store.event_decoding import EventDecoder
from ops.store.event_store import EventStore
from ops.store.log_rows import log_rows
from ops.views.projection_runner import ProjectionRunner
from ops.views.replay import default_workers, replay_and_compare
from ops.views.view_store import ViewStore
from projections.catalogue import all_views

STORES = ("sqlite", "postgresql")
FLOOR_PAGE = 10_000
LIVE_PAGE = 5_000


@dataclass(frozen=True)
class ReplayFigures:
    store: str
    events: int
    views: int
    floor_s: float
    replay_s: float
    one_process_s: float
    workers: int
    difference: str | None

    def rate(self, seconds: float) -> float:
        return self.events / seconds if seconds > 0 else float("inf")


def fill(database_url: str, services: int) -> None:
    """``services`` split deploys to active, and the live views projected up to the end."""
    store, db = EventStore(database_url), Database(database_url)
    try:
        register_nodes(store)
        clock, collector = Clock(), Collector()
        pipeline = build(store, clock, collector)

        async def deploy() -> None:
            await pipeline.rebuild()
            await deploy_all(store, Inbox(db), pipeline, collector, clock, services, 3)

        asyncio.run(deploy())
        views = all_views()
        ProjectionRunner(store, ViewStore(db, views), views, batch_size=LIVE_PAGE).catch_up()
    finally:
        db.close()
        store.close()


def floor_seconds(store: EventStore) -> float:
    """Seconds to read every notification in large pages and decode each one."""
    decode = EventDecoder(store.app.mapper).decode_row
    began = time.perf_counter()
    after = 0
    while True:
        page = log_rows(store, after, FLOOR_PAGE)
        for row in page:
            decode(row)
        if len(page) < FLOOR_PAGE:
            return time.perf_counter() - began
        after = page[-1][0]


def measure(kind: str, database_url: str, services: int) -> ReplayFigures:
    fill(database_url, services)
    store, db = EventStore(database_url), Database(database_url)
    try:
        events = store.max_notification_id()
        floor_s = floor_seconds(store)
        views = all_views()
        workers = default_workers()
        began = time.perf_counter()
        difference = replay_and_compare(store, db, views)
        replay_s = time.perf_counter() - began
        began = time.perf_counter()
        difference = difference or replay_and_compare(store, db, views, workers=1)
        one_process_s = time.perf_counter() - began
    finally:
        db.close()
        store.close()
    return ReplayFigures(
        kind, events, len(views), floor_s, replay_s, one_process_s, workers, difference
    )


def measure_store(kind: str, services: int, postgres_url: str | None) -> ReplayFigures:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="hw-bench-replay-") as tmp:
            return measure(kind, f"sqlite:///{Path(tmp) / 'replay.sqlite'}", services)
    with scratch_postgres(postgres_url or DEFAULT_POSTGRES) as url:
        return measure(kind, url, services)


def run_replay_bench(*, services: int, stores: Sequence[str], postgres_url: str | None) -> int:
    unknown = sorted(set(stores) - set(STORES))
    if unknown or not stores:
        print(f"bench replay: --stores takes {', '.join(STORES)}; not {', '.join(unknown)}")
        return 2
    if services < 1:
        print("bench replay: --services must be at least 1")
        return 2
    print(f"replay: {services} split deploys per store, then replay from event 0")
    failed = False
    for kind in stores:
        figures = measure_store(kind, services, postgres_url)
        print(
            f"  {kind:<10} {figures.events:>9,} events {figures.views} views   "
            f"replay {figures.rate(figures.replay_s):>9,.0f} ev/s ({figures.replay_s:.2f} s, "
            f"{figures.workers} worker(s))   in one process "
            f"{figures.rate(figures.one_process_s):>9,.0f} ev/s   "
            f"floor {figures.rate(figures.floor_s):>9,.0f} ev/s ({figures.floor_s:.2f} s)"
        )
        if figures.difference is not None:
            print(f"  {kind}: replay found a difference: {figures.difference}")
            failed = True
    return 1 if failed else 0
