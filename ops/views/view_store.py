"""Views in SQL: their tables, their tracking positions, and batched, exactly-once updates.

``ViewStore`` owns ``{prefix}{table}`` for every table of its views and
``{prefix}tracking(view, position)``. ``apply_page`` consumes a page of recorded events for
all the runner's views and, in one transaction, emits the changed rows and the new tracking
positions, so a crash leaves either all or none. A ``Prefetching`` view's reads for the page
are made first, a few keys-in-a-list queries per table, instead of one query per row.
``SqlViewQueries`` is the gateway's read port.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from ops.store.database import Cursor, Database
from ops.views.task_queue_queries import TaskQueueQueries
from projections.oplog_view import OPLOG, OperationLogView
from projections.services_view import SERVICES, ServicesView
from projections.task_queue_view import TaskQueueView
from projections.timeline_view import TIMELINE, DeployTimelineView
from projections.view import Prefetching, Recorded, Row, Table, View, iso_time

log = logging.getLogger(__name__)

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
_SQL_TYPES = {
    "sqlite": {"text": "TEXT", "int": "BIGINT", "json": "TEXT", "bool": "INTEGER"},
    "postgresql": {"text": "TEXT", "int": "BIGINT", "json": "TEXT", "bool": "BOOLEAN"},
}
_CREATE_ATTEMPTS = 3
_KEYS_PER_LOAD = 500  # keys per prefetch query: well under both databases' parameter limits


class ViewStore:
    """The SQL home of some views. Synchronous: call it through ``asyncio.to_thread``."""

    def __init__(self, db: Database, views: Iterable[View], prefix: str = "hw_") -> None:
        self._db = db
        self._views = {view.name: view for view in views}
        self._prefix = prefix
        self._tracking = prefix + "tracking"
        self._sql: dict[str, _TableSql] = {}
        for view in self._views.values():
            for table in view.tables:
                if table.name in self._sql:
                    raise ValueError(f"two views declare the table {table.name}")
                names = [self.sql_name(table.name), *(c.name for c in table.columns)]
                for name in names:
                    if not _IDENTIFIER.match(name):
                        raise ValueError(f"{name!r} is not a plain SQL identifier")
                self._sql[table.name] = _TableSql(table, self.sql_name(table.name), db.dialect)
        if not _IDENTIFIER.match(self._tracking):
            raise ValueError(f"{self._tracking!r} is not a plain SQL identifier")
        self._ready = False

    def sql_name(self, table: str) -> str:
        return self._prefix + table

    def position(self, view_name: str) -> int:
        """The last notification id applied to the view; 0 before the first."""
        return self.positions().get(view_name, 0)

    def positions(self) -> dict[str, int]:
        """Every view's position, with 0 for views that have applied nothing yet."""
        self.ensure_tables()
        with self._db.transaction() as cur:
            cur.execute(f"SELECT view, position FROM {self._tracking}")  # noqa: S608
            stored = {str(name): int(position) for name, position in cur.fetchall()}
        return {name: stored.get(name, 0) for name in self._views} | stored

    def apply_page(
        self, views: Sequence[View], after: int, recorded_events: Sequence[Recorded]
    ) -> dict[str, int]:
        """Applies one page — every event after ``after``, in order — to ``views`` in one
        transaction with their new positions; returns each view's position after it.

        The views' tracking rows are locked first, always in name order, so two runners take
        turns without deadlocking; events at or below a view's stored position were applied
        before (a runner that crashed after committing, or a second runner) and are skipped.
        A view whose stored position is behind ``after`` is left alone: the page does not
        connect to it, and the position returned sends the caller back to read from there.
        """
        unknown = [view.name for view in views if view.name not in self._views]
        if unknown:
            raise ValueError(f"views {unknown} are not kept in this store")
        positions = [r.position for r in recorded_events]
        if positions != sorted(set(positions)) or (positions and positions[0] <= after):
            raise ValueError("recorded events must follow `after`, in increasing position order")
        self.ensure_tables()
        with self._db.transaction() as cur:
            stored = self._locked_positions(cur, [view.name for view in views])
            moved = []
            for view in views:
                position = stored[view.name]
                fresh = [r for r in recorded_events if r.position > position]
                if position < after or not fresh:
                    continue
                rows = _BatchRows(cur, {t.name: self._sql[t.name] for t in view.tables})
                if isinstance(view, Prefetching):
                    view.prefetch(fresh, rows)
                for recorded in fresh:
                    view.apply(recorded, rows)
                rows.flush()
                stored[view.name] = fresh[-1].position
                moved.append((fresh[-1].position, view.name))
            if moved:
                cur.executemany(
                    f"UPDATE {self._tracking} SET position = ? WHERE view = ?",  # noqa: S608
                    moved,
                )
        return stored

    def snapshot(self, view_name: str) -> tuple[int, dict[str, list[Row]]]:
        """The view's position and every row of its tables, read consistently.

        The tracking row is locked as ``apply_page`` locks it, so no page can commit
        between reading the position and reading the rows.
        """
        view = self._views[view_name]
        self.ensure_tables()
        with self._db.transaction() as cur:
            position = self._locked_positions(cur, [view_name])[view_name]
            tables = {t.name: self._select_all(cur, t.name) for t in view.tables}
        return position, tables

    def rows(self, table: str) -> list[Row]:
        """Every row of one table, decoded, ordered by its key."""
        self.ensure_tables()
        with self._db.transaction() as cur:
            return self._select_all(cur, table)

    def select(
        self, table: str, where: str, params: Sequence[Any], order_by: str, limit: int | None
    ) -> list[Row]:
        """Decoded rows of one table; ``where`` and ``order_by`` are SQL written by callers."""
        spec = self._sql[table]
        sql = f"SELECT {', '.join(spec.names)} FROM {spec.sql_name}"  # noqa: S608
        if where:
            sql += f" WHERE {where}"
        sql += f" ORDER BY {order_by}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        self.ensure_tables()
        with self._db.transaction() as cur:
            cur.execute(sql, tuple(params))
            return [spec.decode(values) for values in cur.fetchall()]

    def drop_all(self) -> None:
        """Drops the views' tables and their tracking: the next use starts from event 0."""
        with self._db.transaction() as cur:
            for spec in self._sql.values():
                cur.execute(f"DROP TABLE IF EXISTS {spec.sql_name}")
            cur.execute(f"DROP TABLE IF EXISTS {self._tracking}")
        self._ready = False

    def ensure_tables(self) -> None:
        """Creates missing tables; several processes may do it at once, hence the retries."""
        if self._ready:
            return
        for attempt in range(1, _CREATE_ATTEMPTS + 1):
            try:
                self._create_tables()
            except Exception:
                # PostgreSQL's CREATE TABLE IF NOT EXISTS can still collide with a concurrent
                # creator of the same table; the second try sees it exists.
                if attempt == _CREATE_ATTEMPTS:
                    raise
                log.debug("creating view tables collided; trying again", exc_info=True)
            else:
                break
        self._ready = True

    def _create_tables(self) -> None:
        types = _SQL_TYPES[self._db.dialect]
        with self._db.transaction() as cur:
            cur.execute(
                f"CREATE TABLE IF NOT EXISTS {self._tracking} "
                "(view TEXT PRIMARY KEY, position BIGINT NOT NULL)"
            )
            for spec in self._sql.values():
                table, name = spec.table, spec.sql_name
                columns = ", ".join(f"{c.name} {types[c.type]}" for c in table.columns)
                cur.execute(
                    f"CREATE TABLE IF NOT EXISTS {name} "
                    f"({columns}, PRIMARY KEY ({', '.join(table.key)}))"
                )
                for index in table.indexes:
                    cur.execute(
                        f"CREATE INDEX IF NOT EXISTS {name}_{'_'.join(index)}_idx "
                        f"ON {name} ({', '.join(index)})"
                    )
            # a tracking row per view exists from the start, so apply_page can lock it
            cur.executemany(
                f"INSERT INTO {self._tracking} (view, position) VALUES (?, 0) "  # noqa: S608
                "ON CONFLICT (view) DO NOTHING",
                [(name,) for name in self._views],
            )

    def _locked_positions(self, cur: Cursor, view_names: Sequence[str]) -> dict[str, int]:
        # SQLite's BEGIN IMMEDIATE already serialises writers; PostgreSQL needs the row locks
        # so two runners cannot interleave their pages, taken in one order so they cannot
        # deadlock (PostgreSQL locks the rows as the ORDER BY returns them).
        lock = " FOR UPDATE" if self._db.dialect == "postgresql" else ""
        names = sorted(set(view_names))
        cur.execute(
            f"SELECT view, position FROM {self._tracking} "  # noqa: S608
            f"WHERE view IN ({', '.join('?' for _ in names)}) ORDER BY view{lock}",
            names,
        )
        found = {str(name): int(position) for name, position in cur.fetchall()}
        return {name: found.get(name, 0) for name in names}

    def _select_all(self, cur: Cursor, table: str) -> list[Row]:
        spec = self._sql[table]
        cur.execute(spec.select_all)
        return [spec.decode(values) for values in cur.fetchall()]


class _TableSql:
    """One view table's SQL and row encoding, worked out once rather than per row."""

    def __init__(self, table: Table, sql_name: str, dialect: str) -> None:
        self.table = table
        self.sql_name = sql_name
        self.names = tuple(c.name for c in table.columns)
        self.name_set = frozenset(self.names)
        self._json = [i for i, c in enumerate(table.columns) if c.type == "json"]
        self._bool = [i for i, c in enumerate(table.columns) if c.type == "bool"]
        self._int = [i for i, c in enumerate(table.columns) if c.type == "int"]
        self._bool_as_int = dialect == "sqlite"
        columns = ", ".join(self.names)
        by_key = " AND ".join(f"{k} = ?" for k in table.key)
        self.select_all = f"SELECT {columns} FROM {sql_name} ORDER BY {', '.join(table.key)}"  # noqa: S608
        self._select = f"SELECT {columns} FROM {sql_name} WHERE "  # noqa: S608
        self.select_one = self._select + by_key
        self.delete_one = f"DELETE FROM {sql_name} WHERE {by_key}"  # noqa: S608
        others = [n for n in self.names if n not in table.key]
        action = (
            "DO UPDATE SET " + ", ".join(f"{n} = excluded.{n}" for n in others)
            if others
            else "DO NOTHING"
        )
        placeholders = ", ".join("?" for _ in self.names)
        self.upsert = (
            f"INSERT INTO {sql_name} ({columns}) VALUES ({placeholders}) "  # noqa: S608
            f"ON CONFLICT ({', '.join(table.key)}) {action}"
        )

    def select_many(self, count: int) -> str:
        """The rows of ``count`` keys, their values given key after key."""
        key = self.table.key
        if len(key) == 1:
            return f"{self._select}{key[0]} IN ({', '.join(['?'] * count)})"
        # SQLite takes a row value's IN only from a subquery, hence the VALUES list
        values = ", ".join([f"({', '.join(['?'] * len(key))})"] * count)
        return f"{self._select}({', '.join(key)}) IN (VALUES {values})"

    def key_of(self, row: Row) -> tuple[Any, ...]:
        return tuple(row[k] for k in self.table.key)

    def encode(self, row: Row) -> list[Any]:
        values = [row.get(name) for name in self.names]
        for i in self._json:
            if values[i] is not None:
                values[i] = json.dumps(values[i], sort_keys=True, separators=(",", ":"))
        if self._bool_as_int:
            for i in self._bool:
                if values[i] is not None:
                    values[i] = int(bool(values[i]))
        return values

    def decode(self, values: Sequence[Any]) -> Row:
        decoded = list(values)
        for i in self._json:
            if decoded[i] is not None:
                decoded[i] = json.loads(decoded[i])
        for i in self._bool:
            if decoded[i] is not None:
                decoded[i] = bool(decoded[i])
        for i in self._int:
            if decoded[i] is not None:
                decoded[i] = int(decoded[i])
        return dict(zip(self.names, decoded, strict=True))


class _BatchRows:
    """``Rows`` for one batch: reads go to the database once per key (or ``load`` many keys
    at once beforehand), writes stay in memory until ``flush`` sends them as one executemany
    per table and kind."""

    def __init__(self, cur: Cursor, tables: dict[str, _TableSql]) -> None:
        self._cur = cur
        self._tables = tables
        self._cache: dict[str, dict[tuple[Any, ...], Row | None]] = {t: {} for t in tables}
        self._dirty: dict[str, set[tuple[Any, ...]]] = {t: set() for t in tables}

    def get(self, table: str, key: tuple[Any, ...]) -> Row | None:
        cache = self._cache[self._table(table).table.name]
        if key not in cache:
            spec = self._tables[table]
            self._cur.execute(spec.select_one, key)
            found = self._cur.fetchone()
            cache[key] = None if found is None else spec.decode(found)
        row = cache[key]
        # a copy, so a view changing what it read does not change the batch behind its back
        return None if row is None else dict(row)

    def load(self, table: str, keys: Iterable[tuple[Any, ...]]) -> list[Row]:
        spec = self._table(table)
        cache = self._cache[table]
        asked = set(keys)
        missing = sorted(asked - cache.keys())
        for start in range(0, len(missing), _KEYS_PER_LOAD):
            chunk = missing[start : start + _KEYS_PER_LOAD]
            self._cur.execute(spec.select_many(len(chunk)), [v for key in chunk for v in key])
            found = {spec.key_of(row): row for row in map(spec.decode, self._cur.fetchall())}
            for key in chunk:
                cache[key] = found.get(key)
        return [dict(row) for key in asked if (row := cache[key]) is not None]

    def put(self, table: str, row: Row) -> None:
        spec = self._table(table)
        if not spec.name_set.issuperset(row):
            unknown = ", ".join(sorted(set(row) - spec.name_set))
            raise ValueError(f"{table} has no column(s) {unknown}")
        key = spec.key_of(row)
        self._cache[table][key] = dict(row)
        self._dirty[table].add(key)

    def delete(self, table: str, key: tuple[Any, ...]) -> None:
        self._table(table)
        self._cache[table][key] = None
        self._dirty[table].add(key)

    def flush(self) -> None:
        for name, dirty in self._dirty.items():
            spec = self._tables[name]
            cache = self._cache[name]
            keys = sorted(dirty)
            deleted = [k for k in keys if cache[k] is None]
            if deleted:
                self._cur.executemany(spec.delete_one, deleted)
            # executemany: psycopg pipelines it, sqlite3 reuses one prepared statement; it
            # measured faster here than multi-row VALUES on PostgreSQL
            written = [spec.encode(row) for k in keys if (row := cache[k]) is not None]
            if written:
                self._cur.executemany(spec.upsert, written)

    def _table(self, name: str) -> _TableSql:
        if name not in self._tables:
            raise KeyError(f"the view owns no table {name!r}")
        return self._tables[name]


class SqlViewQueries:
    """The gateway's ``ViewQueries`` over the services, oplog, task-queue and timeline tables."""

    def __init__(self, db: Database, prefix: str = "hw_") -> None:
        views: list[View] = [
            ServicesView(),
            OperationLogView(),
            TaskQueueView(),
            DeployTimelineView(),
        ]
        self._store = ViewStore(db, views, prefix)
        self._tasks = TaskQueueQueries(self._store)

    def service(self, service_id: str) -> dict[str, Any] | None:
        """The service's row, with its progress also nested as the status body shows it."""
        found = self._store.select(SERVICES.name, "service_id = ?", (service_id,), "service_id", 1)
        if not found:
            return None
        row = found[0]
        row["progress"] = {
            "done": row["progress_done"],
            "total": row["progress_total"],
            "current_step": row["current_step"],
        }
        return row

    def oplog(
        self, *, service_id: str | None, since: datetime | None, limit: int
    ) -> list[dict[str, Any]]:
        """Log entries oldest first. With ``since``: the first ``limit`` entries at or after it
        (page forward by asking again from the last ``at``); without: the latest ``limit``."""
        conditions, params = [], []
        if service_id is not None:
            conditions.append("service_id = ?")
            params.append(service_id)
        if since is not None:
            conditions.append("at >= ?")
            params.append(iso_time(since))
        where = " AND ".join(conditions)
        if since is not None:
            return self._store.select(OPLOG.name, where, params, "position", limit)
        latest = self._store.select(OPLOG.name, where, params, "position DESC", limit)
        return latest[::-1]

    def timeline(self, service_id: str) -> list[dict[str, Any]] | None:
        """The steps of the service's latest run in planning order; None for an unknown service."""
        known = self._store.select(SERVICES.name, "service_id = ?", (service_id,), "service_id", 1)
        if not known:
            return None
        return self._store.select(TIMELINE.name, "service_id = ?", (service_id,), "position", None)

    def tasks(
        self,
        *,
        state: str | None = None,
        service_id: str | None = None,
        server_id: str | None = None,
        stuck: bool | None = None,
        limit: int = 200,
        now: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """See ``TaskQueueQueries.tasks``."""
        return self._tasks.tasks(
            state=state,
            service_id=service_id,
            server_id=server_id,
            stuck=stuck,
            limit=limit,
            now=now,
        )

    def task(self, task_id: str, now: datetime | None = None) -> dict[str, Any] | None:
        """See ``TaskQueueQueries.task``."""
        return self._tasks.task(task_id, now)

    def task_ids(
        self,
        *,
        states: Sequence[str] = (),
        finished_before: datetime | None = None,
        stuck_before: datetime | None = None,
        service_id: str | None = None,
        server_id: str | None = None,
    ) -> list[str]:
        """See ``TaskQueueQueries.task_ids``."""
        return self._tasks.task_ids(
            states=states,
            finished_before=finished_before,
            stuck_before=stuck_before,
            service_id=service_id,
            server_id=server_id,
        )
