"""Replay for audits: rebuild every view from event 0 and compare it with the live one.

Consumes the event store and the live views; emits ``None`` when every live view equals its
rebuild, or one line naming the first difference. Each view is rebuilt up to exactly the
position its live copy has reached (read together with its rows), so a projection runner
working at the same time does not make a sound view look wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ops.store.database import Database
from ops.store.event_store import EventStore
from ops.views.projection_runner import ProjectionRunner
from ops.views.view_store import ViewStore
from projections.view import Row, Table, View


def replay_and_compare(
    store: EventStore,
    db: Database,
    views: Sequence[View],
    live_prefix: str = "hw_",
    scratch_prefix: str = "hw_replay_",
    batch_size: int = 1000,
) -> str | None:
    """Rebuilds ``views`` into ``{scratch_prefix}*`` tables, compares, and drops them."""
    if live_prefix == scratch_prefix:
        raise ValueError("the scratch prefix must differ from the live one")
    live = ViewStore(db, views, live_prefix)
    scratch = ViewStore(db, views, scratch_prefix)
    scratch.drop_all()
    try:
        for view in views:
            position, live_tables = live.snapshot(view.name)
            ProjectionRunner(store, scratch, [view], batch_size=batch_size).catch_up(until=position)
            _, replayed_tables = scratch.snapshot(view.name)
            for table in view.tables:
                difference = first_difference(
                    table, live_tables[table.name], replayed_tables[table.name]
                )
                if difference is not None:
                    return f"view {view.name} (up to event {position}): {difference}"
        return None
    finally:
        scratch.drop_all()


def first_difference(table: Table, live: list[Row], replayed: list[Row]) -> str | None:
    """The first row, in key order, where the two copies of a table differ; None if equal."""
    live_by_key = {_key(table, row): row for row in live}
    replayed_by_key = {_key(table, row): row for row in replayed}
    for key in sorted(live_by_key.keys() | replayed_by_key.keys()):
        shown = key[0] if len(key) == 1 else key
        mine, theirs = live_by_key.get(key), replayed_by_key.get(key)
        if theirs is None:
            return f"table {table.name}: row {shown!r} is live but not in the replay"
        if mine is None:
            return f"table {table.name}: row {shown!r} is missing from the live view"
        for column in table.columns:
            if mine.get(column.name) != theirs.get(column.name):
                return (
                    f"table {table.name}: row {shown!r} column {column.name}: "
                    f"live {mine.get(column.name)!r} != replayed {theirs.get(column.name)!r}"
                )
    return None


def _key(table: Table, row: Row) -> tuple[Any, ...]:
    return tuple(row[k] for k in table.key)
