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

That cost is single-threaded, so on a machine of several cores the services are split into
shards (``replay_shards``), one per core: each forked worker (``worker_processes``) reads
the whole log but decodes and folds only its services' events, and compares only their
rows; only the verdicts come back, and ``summary`` words them exactly as one process would.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ops.store.database import Database
from ops.store.event_decoding import EventDecoder
from ops.store.event_store import EventStore
from ops.store.log_rows import log_rows
from ops.views.memory_rows import MemoryRows
from ops.views.replay_shards import Shard, ShardOwners
from ops.views.table_diff import first_in_key_order, table_difference
from ops.views.view_store import ViewStore
from ops.views.worker_processes import results_of_workers
from projections.catalogue import SERVICE_NAMING
from projections.view import Recorded, Rows, View

PAGE_SIZE = 10_000

# Each worker reads the whole log: past this many, more workers cost the database more
# than they save.
MOST_WORKERS = 8

# per table of a view: how many rows differ, the key of the first and that row described
TableVerdict = tuple[int, Any, str | None]
# a live view's position and its tables' rows, as ``ViewStore.snapshot_values`` reads them
Snapshot = tuple[int, dict[str, list[tuple[Any, ...]]]]
# a view's position, and its tables' verdicts in table order
ViewVerdict = tuple[int, dict[str, TableVerdict]]


def default_workers() -> int:
    """How many workers ``hostwright replay`` uses: one per core, up to ``MOST_WORKERS``."""
    return max(1, min(os.cpu_count() or 1, MOST_WORKERS))


def replay_and_compare(
    store: EventStore,
    db: Database,
    views: Sequence[View],
    live_prefix: str = "hw_",
    page_size: int = PAGE_SIZE,
    workers: int | None = None,
) -> str | None:
    """Rebuilds ``views`` in memory up to their live positions and compares them.

    With ``workers`` above one (by default one per core) the services are split into that
    many shards, each replayed in a process of its own (``replay_shards``); with one, all
    are replayed here. A worker that fails raises ``WorkerFailed``: never a verdict."""
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
    # read here, once, before any worker starts: each inherits them from the fork
    live = ViewStore(db, views, live_prefix)
    snapshots = {view.name: live.snapshot_values(view.name) for view in views}
    count = default_workers() if workers is None else max(1, workers)
    if count > 1:
        jobs = [
            ShardJob(
                store.database_url,
                db.url,
                views,
                live_prefix,
                page_size,
                snapshots,
                Shard(i, count),
            )
            for i in range(count)
        ]
        names = [f"replay of shard {i + 1} of {count}" for i in range(count)]
        verdicts = merged(results_of_workers(replay_shard, jobs, names))
    else:
        with cycle_collector_paused():
            verdicts = replay_views(store, live, views, snapshots, page_size, None)
    return summary(views, verdicts)


@dataclass(frozen=True)
class ShardJob:
    """What a worker needs to replay its shard: it opens the store and views itself."""

    store_url: str
    db_url: str
    views: Sequence[View]
    live_prefix: str
    page_size: int
    snapshots: dict[str, Snapshot]
    shard: Shard


def replay_shard(job: ShardJob) -> dict[str, ViewVerdict]:
    """A worker's part: every view replayed for its shard's services over its own read of
    the log; only the verdicts, a few lines of text, go back."""
    store, db = EventStore(job.store_url), Database(job.db_url)
    try:
        live = ViewStore(db, job.views, job.live_prefix)
        with cycle_collector_paused():
            return replay_views(store, live, job.views, job.snapshots, job.page_size, job.shard)
    finally:
        db.close()
        store.close()


def merged(shards: Sequence[dict[str, ViewVerdict]]) -> dict[str, ViewVerdict]:
    """The shards' verdicts as one: per table the rows that differ added up, and the first
    difference of them all in key order (with the position its shard replayed up to)."""
    whole: dict[str, ViewVerdict] = {}
    for verdicts in shards:
        for name, (position, tables) in verdicts.items():
            if name not in whole:
                whole[name] = (position, dict(tables))
                continue
            seen_position, seen = whole[name]
            for table, (count, key, described) in tables.items():
                seen_count, seen_key, seen_described = seen[table]
                if described is not None and (
                    seen_described is None or first_in_key_order([key, seen_key]) == key
                ):
                    seen_key, seen_described, seen_position = key, described, position
                seen[table] = (seen_count + count, seen_key, seen_described)
            whole[name] = (seen_position, seen)
    return whole


def summary(views: Sequence[View], verdicts: dict[str, ViewVerdict]) -> str | None:
    """The first difference in view and table order, and how many rows of each table differ
    (None when every view equals its rebuild)."""
    first: str | None = None
    counts: list[str] = []
    for view in views:
        position, tables = verdicts[view.name]
        for table in view.tables:
            count, _, difference = tables[table.name]
            if count:
                first = first or f"view {view.name} (up to event {position}): {difference}"
                counts.append(f"{table.name} {count}")
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
    store: EventStore,
    live: ViewStore,
    views: Sequence[View],
    snapshots: dict[str, Snapshot],
    page_size: int,
    shard: Shard | None,
) -> dict[str, ViewVerdict]:
    """Each view's position and, per table, how many rows differ from its ``snapshots`` and
    the first of them; with a ``shard``, of that shard's services only."""
    rebuilt = {
        view.name: MemoryRows({t.name: live.table_sql(t.name) for t in view.tables})
        for view in views
    }
    owners = None if shard is None else ShardOwners(shard)
    fold_all(
        store,
        views,
        {name: position for name, (position, _) in snapshots.items()},
        rebuilt,
        page_size,
        owners,
    )
    verdicts: dict[str, ViewVerdict] = {}
    for view in views:
        position, live_tables = snapshots[view.name]
        tables: dict[str, TableVerdict] = {}
        for table in view.tables:
            spec = live.table_sql(table.name)
            live_values, rebuilt_values = (
                live_tables[table.name],
                rebuilt[view.name].encoded(table.name),
            )
            if owners is not None:
                at = spec.names.index("service_id")
                keeps = owners.keeps
                live_values = [values for values in live_values if keeps(values[at])]
                rebuilt_values = {
                    key: values for key, values in rebuilt_values.items() if keeps(values[at])
                }
            tables[table.name] = table_difference(spec, live_values, rebuilt_values)
        verdicts[view.name] = (position, tables)
    return verdicts


def fold_all(
    store: EventStore,
    views: Sequence[View],
    positions: dict[str, int],
    rebuilt: dict[str, MemoryRows],
    page_size: int,
    owners: ShardOwners | None = None,
) -> None:
    """Folds every event, read once in order, into each view that folds its type and whose
    position it is within. An event no such view folds is skipped before it is decoded: its
    stored topic names its type. With ``owners``, so is an event of another shard's service:
    its aggregate's first event, whoever's it is, says whose it is (read for that field alone)."""
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
    # per stored topic, whether its events name their service: worked out once per topic
    naming: dict[str, bool] = {}
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
            if owners is not None:
                names_service = naming.get(topic)
                if names_service is None:
                    names_service = naming[topic] = decoder.event_class(topic) in SERVICE_NAMING
                if names_service:
                    service_id = decoder.text_field(row, "service_id")
                    if not owners.learn(row[1], service_id):
                        continue
                elif not owners.takes(row[1]):
                    continue
            recorded = Recorded(position, decode(row))
            for apply, rows in targets:
                apply(recorded, rows)
        after = page[-1][0]
