"""A view whose tables changed columns, or whose version changed, since a deployment built
them is rebuilt from event 0 when its store starts, on SQLite and PostgreSQL: no failed
writes, no rows of the old shape served, and the views whose tables did not change keep their
rows and position."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from domain.commands import parse_order
from ops.store.database import Database
from ops.store.event_store import EventStore
from ops.views.projection_runner import ProjectionRunner
from ops.views.replay import replay_and_compare
from ops.views.view_store import ViewStore
from projections.catalogue import all_views
from projections.view import Recorded, Rows, Table, View, columns

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


class CountingView:
    """Counts the events it saw, per aggregate, in the columns it is given."""

    def __init__(self, name: str, spec: str, version: int = 1) -> None:
        self.name = name
        self.version = version
        self.tables: tuple[Table, ...] = (
            Table(name=f"{name}_counts", columns=columns(spec), key=("id",)),
        )

    def apply(self, recorded: Recorded, rows: Rows) -> None:
        table = self.tables[0]
        key = (str(recorded.event.originator_id),)
        before = rows.get(table.name, key) or {"id": key[0], "seen": 0}
        row = {"id": key[0], "seen": before["seen"] + 1}
        if any(column.name == "last_position" for column in table.columns):
            row["last_position"] = recorded.position
        rows.put(table.name, row)


@pytest.fixture
def setup(database_url: str) -> Iterator[tuple[EventStore, Database]]:
    store, db = EventStore(database_url), Database(database_url)
    yield store, db
    store.close()
    db.close()


def record_orders(store: EventStore, count: int) -> None:
    for i in range(1, count + 1):
        body = {
            "service_id": i,
            "client_id": 1,
            "mode": "split",
            "domain": f"s{i}.example",
            "plan": {"package": "default"},
        }
        store.order_service(parse_order(body, now=NOW, actor="whmcs"), None)


def test_a_view_whose_columns_changed_is_rebuilt_from_event_0(
    setup: tuple[EventStore, Database],
) -> None:
    store, db = setup
    record_orders(store, 3)
    old: list[View] = [
        CountingView("changing", "id seen:int"),
        CountingView("steady", "id seen:int"),
    ]
    ProjectionRunner(store, ViewStore(db, old), old).catch_up()
    last = store.max_notification_id()
    assert ViewStore(db, old).positions() == {"changing": last, "steady": last}
    steady_before = ViewStore(db, old).rows("steady_counts")

    # the next release adds a column to one view's table
    new: list[View] = [
        CountingView("changing", "id seen:int last_position:int"),
        CountingView("steady", "id seen:int"),
    ]
    upgraded = ViewStore(db, new)
    assert upgraded.positions() == {"changing": 0, "steady": last}
    assert upgraded.rows("changing_counts") == []  # no row of the old shape is served
    assert upgraded.rows("steady_counts") == steady_before

    record_orders(store, 4)  # one more service: its events too
    assert ProjectionRunner(store, upgraded, new).catch_up() > 0
    rebuilt = upgraded.rows("changing_counts")
    assert len(rebuilt) == len(upgraded.rows("steady_counts")) > len(steady_before)
    assert all(row["last_position"] is not None and row["seen"] >= 1 for row in rebuilt)
    assert sum(row["seen"] for row in rebuilt) == sum(
        row["seen"] for row in upgraded.rows("steady_counts")
    )

    # a second start with the same columns rebuilds nothing
    again = ViewStore(db, new)
    assert again.positions() == upgraded.positions()
    assert again.rows("changing_counts") == rebuilt


def test_a_view_whose_version_changed_is_rebuilt_and_one_built_before_versions_counts_as_1(
    setup: tuple[EventStore, Database],
) -> None:
    store, db = setup
    record_orders(store, 2)
    old: list[View] = [CountingView("told", "id seen:int"), CountingView("steady", "id seen:int")]
    ProjectionRunner(store, ViewStore(db, old), old).catch_up()
    last = store.max_notification_id()
    # a deployment from before versions were kept has no version table: its views count as 1
    with db.transaction() as cur:
        cur.execute("DROP TABLE hw_view_versions")
    assert ViewStore(db, old).positions() == {"told": last, "steady": last}

    # the next release tells the same events otherwise, same columns: version 2
    new: list[View] = [
        CountingView("told", "id seen:int", version=2),
        CountingView("steady", "id seen:int"),
    ]
    upgraded = ViewStore(db, new)
    assert upgraded.positions() == {"told": 0, "steady": last}
    assert upgraded.rows("told_counts") == []
    ProjectionRunner(store, upgraded, new).catch_up()
    assert upgraded.rows("told_counts") == upgraded.rows("steady_counts") != []

    # the version is kept: starting again rebuilds nothing, nor does a fresh store of version 2
    assert ViewStore(db, new).positions() == {"told": last, "steady": last}


def test_replay_over_views_another_release_built_says_so_and_drops_nothing(
    setup: tuple[EventStore, Database],
) -> None:
    store, db = setup
    record_orders(store, 2)
    views = all_views()
    live = ViewStore(db, views)
    ProjectionRunner(store, live, views).catch_up()
    positions, oplog = live.positions(), live.rows("oplog")
    with db.transaction() as cur:  # as an older release's projections left it
        cur.execute("UPDATE hw_view_versions SET version = 1 WHERE view = 'oplog'")

    difference = replay_and_compare(store, db, all_views())

    assert difference is not None
    assert "view oplog was built by another release" in difference
    assert "version 1, this release's is 2" in difference
    with db.transaction() as cur:  # read around the view store, which would rebuild it
        cur.execute("SELECT version FROM hw_view_versions WHERE view = 'oplog'")
        assert cur.fetchall() == [(1,)]
        cur.execute("SELECT position FROM hw_tracking WHERE view = 'oplog'")
        assert cur.fetchall() == [(positions["oplog"],)]
        cur.execute("SELECT COUNT(*) FROM hw_oplog")
        assert cur.fetchall() == [(len(oplog),)]
