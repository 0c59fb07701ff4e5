"""Replay for audits: rebuild every view from event 0 and compare it with the live one.

Consumes the event store and the live views; emits ``None`` when every live view equals its
rebuild, or one line naming the first difference and how many rows of each table differ.
Each view is rebuilt up to exactly the position its live copy has reached (read together
with its rows), so a projection runner working at the same time does not make a sound view
look wrong.

It reads the log once, in large pages of plain rows (``log_rows``), and folds each event
into the views that fold its type (``View.folds``), in memory (``MemoryRows``): no SQL per
event and no scratch table; an event no view folds is not even decoded. The rebuilt tables
are then encoded as the live ones are stored and compared whole (``table_diff``). The cycle
collector is paused meanwhile. Its cost per event is the read and decode plus the views'
own folds; ``hostwright bench replay`` measures it.

The folds were more than half of that, and single-threaded: on a machine of several cores
the views are split into groups of about equal cost (``replay_groups``), each replayed by
``replay_group`` in a forked worker (``worker_processes``) over its own read of the log,
decoding only what its views fold; only the verdicts come back, and ``summary`` words them
exactly as one process would.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from ops.store.database import Database
from ops.store.event_decoding import EventDecoder
from ops.store.event_store import EventStore
from ops.store.log_rows import log_rows
from ops.views.memory_rows import MemoryRows
from ops.views.replay_groups import view_groups
from ops.views.table_diff import table_difference
from ops.views.view_store import ViewStore
from ops.views.worker_processes import results_of_workers
from projections.view import Recorded, Rows, View

PAGE_SIZE = 10_000

# a view's position, and per table: its name, how many rows differ, the first described
ViewVerdict = tuple[int, list[tuple[str, int, str | None]]]


def replay_and_compare(
    store: EventStore,
    db: Database,
    views: Sequence[View],
    live_prefix: str = "hw_",
    page_size: int = PAGE_SIZE,
    workers: int | None = None,
) -> str | None:
    """Rebuilds ``views`` in memory up to their live positions and compares them.

    With ``workers`` above one (by default one per core) the views are split into that many
    groups of about equal cost, each replayed in a process of its own (``replay_groups``);
    with one, or one group, all are replayed here. A worker that fails raises
    ``WorkerFailed``: never a verdict."""
    if page_size < 1:
        raise ValueError("page_size must be at least 1")
    stale = ViewStore(db, views, live_prefix).stale_views()
    if stale:
        # an audit never drops the live views: the projections of this release rebuild them
        return "; ".join(
            f"view {name} was built by another release ({why}); this release's projections "
            "rebuild it when they start: run replay once they have caught up"
            for name, why in stale.items()
        )
    groups = view_groups(views, (os.cpu_count() or 1) if workers is None else workers)
    if len(groups) > 1:
        jobs = [
            GroupJob(store.database_url, db.url, group, live_prefix, page_size) for group in groups
        ]
        names = [f"replay of {', '.join(view.name for view in group)}" for group in groups]
        verdicts: dict[str, ViewVerdict] = {}
        for found in results_of_workers(replay_group, jobs, names):
            verdicts.update(found)
    else:
        with cycle_collector_paused():
            verdicts = replay_views(store, db, views, live_prefix, page_size)
    return summary(views, verdicts)


@dataclass(frozen=True)
class GroupJob:
    """What a worker needs to replay its views: it opens the store and views itself."""

    store_url: str
    db_url: str
    views: Sequence[View]
    live_prefix: str
    page_size: int


def replay_group(job: GroupJob) -> dict[str, ViewVerdict]:
    """A worker's part: its views replayed over its own read of the log; only the verdicts,
    a few lines of text, go back."""
    store, db = EventStore(job.store_url), Database(job.db_url)
    try:
        with cycle_collector_paused():
            return replay_views(store, db, job.views, job.live_prefix, job.page_size)
    finally:
        db.close()
        store.close()


def summary(views: Sequence[View], verdicts: dict[str, ViewVerdict]) -> str | None:
    """The first difference in view and table order, and how many rows of each table differ
    (None when every view equals its rebuild)."""
    first: str | None = None
    counts: list[str] = []
    for view in views:
        position, tables = verdicts[view.name]
        for table, count, difference in tables:
            if count:
                first = first or f"view {view.name} (up to event {position}): {difference}"
                counts.append(f"{table} {count}")
    if first is None:
        return None
    return f"{first}; rows that differ: {', '.join(counts)}"


@contextmanager
def cycle_collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while replay runs, as it was before after it.

    A replay makes a container for every row it reads or rebuilds and keeps them all until
    it has compared: each of the collector's hundreds of passes walked every one of them and
    found nothing to free, a fifth of the replay. Its other objects are still freed as their
    last reference goes; the few cycles it may leave are collected once it is over."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def replay_views(
    store: EventStore, db: Database, views: Sequence[View], live_prefix: str, page_size: int
) -> dict[str, ViewVerdict]:
    """Each view's position and, per table, how many rows differ and the first of them."""
    live = ViewStore(db, views, live_prefix)
    snapshots = {view.name: live.snapshot_values(view.name) for view in views}
    rebuilt = {
        view.name: MemoryRows({t.name: live.table_sql(t.name) for t in view.tables})
        for view in views
    }
    fold_all(
        store,
        views,
        {name: position for name, (position, _) in snapshots.items()},
        rebuilt,
        page_size,
    )
    verdicts: dict[str, ViewVerdict] = {}
    for view in views:
        position, live_tables = snapshots[view.name]
        tables = []
        for table in view.tables:
            count, difference = table_difference(
                live.table_sql(table.name),
                live_tables[table.name],
                rebuilt[view.name].encoded(table.name),
            )
            tables.append((table.name, count, difference))
        verdicts[view.name] = (position, tables)
    return verdicts


def fold_all(
    store: EventStore,
    views: Sequence[View],
    positions: dict[str, int],
    rebuilt: dict[str, MemoryRows],
    page_size: int,
) -> None:
    """Folds every event, read once in order, into each view that folds its type and whose
    position it is within. An event no such view folds is skipped before it is decoded: its
    stored topic names its type."""
    # (position, view, rows), furthest view last: a view leaves when the log passes it
    active = sorted(
        ((positions[view.name], view, rebuilt[view.name]) for view in views),
        key=lambda entry: entry[0],
    )
    while active and active[0][0] <= 0:
        active.pop(0)
    decoder = EventDecoder(store.app.mapper)
    decode = decoder.decode_row
    # per stored topic, the active views that fold its type: worked out once per topic, and
    # again whenever a view leaves
    folders: dict[str, list[tuple[Callable[[Recorded, Rows], None], MemoryRows]]] = {}
    after = 0
    while active:
        until = active[-1][0]
        page = log_rows(store, after, min(page_size, until - after))
        if not page:
            return
        for row in page:
            position = row[0]
            if active[0][0] < position:
                while active and active[0][0] < position:
                    active.pop(0)
                if not active:
                    return
                folders = {}
            topic = row[3]
            targets = folders.get(topic)
            if targets is None:
                kind = decoder.event_class(topic)
                targets = [(view.apply, rows) for _, view, rows in active if kind in view.folds]
                folders[topic] = targets
            if not targets:
                continue
            recorded = Recorded(position, decode(row))
            for apply, rows in targets:
                apply(recorded, rows)
        after = page[-1][0]
