"""Views in SQL: their tables, their tracking positions, and batched, exactly-once updates.

``ViewStore`` owns ``{prefix}{table}`` for every table of its views and
``{prefix}tracking(view, position)``. ``apply_page`` consumes a page of recorded events for
all the runner's views and, in one transaction, emits the changed rows and the new tracking
positions, so a crash leaves either all or none. A ``Prefetching`` view's reads for the page
are made first, a few keys-in-a-list queries per table, instead of one query per row.
Each table's SQL and row encoding is ``ops.views.table_sql``; the gateway's read port over
these tables is ``ops.views.view_queries``.

A release may change a view's columns. When the store starts (``ensure_tables``) and finds a
view's table in the database with other columns than the view declares, it drops that view's
tables and sets its position to 0, in the one transaction that creates the tables: the runner
then rebuilds the view from event 0, and no row of the old shape is ever written or read. The
views whose tables did not change keep their rows and position. So does a view whose
``version`` (kept in ``{prefix}view_versions``; 1 for a view built before versions were kept)
differs from the one it declares: a release changed what it makes of the same events.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from ops.store.database import Cursor, Database
from ops.views.table_sql import TableSql, check_identifier, existing_columns
from ops.views.views_moved import notify_moved
from projections.view import Prefetching, Recorded, Row, View

log = logging.getLogger(__name__)

_CREATE_ATTEMPTS = 3
_KEYS_PER_LOAD = 500  # keys per prefetch query: well under both databases' parameter limits
# PostgreSQL advisory lock (two-key form) held while the view tables are checked and made, so
# two processes starting at once do not both drop a changed view's tables
_SCHEMA_LOCK = (0x6877, 0x5649)


class ViewStore:
    """The SQL home of some views. Synchronous: call it through ``asyncio.to_thread``."""

    def __init__(self, db: Database, views: Iterable[View], prefix: str = "hw_") -> None:
        self._db = db
        self._views = {view.name: view for view in views}
        self._prefix = prefix
        self._tracking = check_identifier(prefix + "tracking")
        self._versions = check_identifier(prefix + "view_versions")
        self._sql: dict[str, TableSql] = {}
        for view in self._views.values():
            for table in view.tables:
                if table.name in self._sql:
                    raise ValueError(f"two views declare the table {table.name}")
                self._sql[table.name] = TableSql(table, self.sql_name(table.name), db.dialect)
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
                if self._db.dialect == "postgresql":  # the gateways' live pages hear at once
                    notify_moved(cur, self._prefix, max(position for position, _ in moved))
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

    def snapshot_values(self, view_name: str) -> tuple[int, dict[str, list[tuple[Any, ...]]]]:
        """``snapshot`` without decoding or ordering: each row as the column values SQL holds,
        which replay keys and compares with its rebuild encoded the same way."""
        view = self._views[view_name]
        self.ensure_tables()
        with self._db.transaction() as cur:
            position = self._locked_positions(cur, [view_name])[view_name]
            tables = {}
            for table in view.tables:
                cur.execute(self._sql[table.name].select_unordered)
                tables[table.name] = [tuple(values) for values in cur.fetchall()]
        return position, tables

    def table_sql(self, table: str) -> TableSql:
        """One table's statements and row encoding."""
        return self._sql[table]

    def rows(self, table: str) -> list[Row]:
        """Every row of one table, decoded, ordered by its key."""
        self.ensure_tables()
        with self._db.transaction() as cur:
            return self._select_all(cur, table)

    def select(
        self,
        table: str,
        where: str,
        params: Sequence[Any],
        order_by: str,
        limit: int | None,
        *,
        without: Collection[str] = (),
    ) -> list[Row]:
        """Decoded rows of one table; ``where`` and ``order_by`` are SQL written by callers.
        The columns named in ``without`` are not read (None in the rows): a list of tasks
        leaves their logs, the largest values, on the disk."""
        spec = self._sql[table]
        columns = (f"NULL AS {name}" if name in without else name for name in spec.names)
        sql = f"SELECT {', '.join(columns)} FROM {spec.sql_name}"  # noqa: S608
        if where:
            sql += f" WHERE {where}"
        sql += f" ORDER BY {order_by}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        self.ensure_tables()
        with self._db.transaction() as cur:
            cur.execute(sql, tuple(params))
            return [spec.decode(values) for values in cur.fetchall()]

    def table_sql_name(self, table: str) -> str:
        """The SQL name of one of the views' tables (prefixed), for a read written by hand."""
        return self._sql[table].sql_name

    def fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Rows of a read written by hand (``?`` placeholders), undecoded: for a read of a
        few plain columns of many rows, where decoding every JSON column would cost most."""
        self.ensure_tables()
        with self._db.transaction() as cur:
            cur.execute(sql, tuple(params))
            return [tuple(values) for values in cur.fetchall()]

    def drop_all(self) -> None:
        """Drops the views' tables and their tracking: the next use starts from event 0."""
        with self._db.transaction() as cur:
            for spec in self._sql.values():
                cur.execute(f"DROP TABLE IF EXISTS {spec.sql_name}")
            cur.execute(f"DROP TABLE IF EXISTS {self._tracking}")
            cur.execute(f"DROP TABLE IF EXISTS {self._versions}")
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
        with self._db.transaction() as cur:
            if self._db.dialect == "postgresql":
                cur.execute("SELECT pg_advisory_xact_lock(?, ?)", _SCHEMA_LOCK)
            cur.execute(
                f"CREATE TABLE IF NOT EXISTS {self._tracking} "
                "(view TEXT PRIMARY KEY, position BIGINT NOT NULL)"
            )
            cur.execute(
                f"CREATE TABLE IF NOT EXISTS {self._versions} "
                "(view TEXT PRIMARY KEY, version BIGINT NOT NULL)"
            )
            built = self._built_versions(cur)
            for view in self._views.values():
                self._rebuild_if_changed(cur, view, built.get(view.name, 1))
            for spec in self._sql.values():
                for statement in spec.create():
                    cur.execute(statement)
            # a tracking row per view exists from the start, so apply_page can lock it
            cur.executemany(
                f"INSERT INTO {self._tracking} (view, position) VALUES (?, 0) "  # noqa: S608
                "ON CONFLICT (view) DO NOTHING",
                [(name,) for name in self._views],
            )
            cur.executemany(
                f"INSERT INTO {self._versions} (view, version) VALUES (?, ?) "  # noqa: S608
                "ON CONFLICT (view) DO UPDATE SET version = excluded.version",
                [(view.name, view.version) for view in self._views.values()],
            )

    def stale_views(self) -> dict[str, str]:
        """The views whose tables another release built (other columns, another version),
        each with why; reads only, so an audit can say so without dropping anything."""
        with self._db.transaction() as cur:
            built = self._built_versions(cur)
            stale = {
                view.name: self._why_stale(cur, view, built.get(view.name, 1))
                for view in self._views.values()
            }
        return {name: why for name, why in stale.items() if why}

    def _built_versions(self, cur: Cursor) -> dict[str, int]:
        """The version each view was built by; none for a store from before versions."""
        if not existing_columns(cur, self._db.dialect, self._versions):
            return {}
        cur.execute(f"SELECT view, version FROM {self._versions}")  # noqa: S608
        return {str(name): int(version) for name, version in cur.fetchall()}

    def _why_stale(self, cur: Cursor, view: View, built_version: int) -> str | None:
        specs = [self._sql[table.name] for table in view.tables]
        found = {
            spec.sql_name: existing_columns(cur, self._db.dialect, spec.sql_name) for spec in specs
        }
        changed = [
            spec.sql_name
            for spec in specs
            if found[spec.sql_name] and found[spec.sql_name] != spec.name_set
        ]
        if changed:
            return f"the columns of {', '.join(changed)} changed"
        if any(found.values()) and built_version != view.version:
            return f"it was built by version {built_version}, this release's is {view.version}"
        return None

    def _rebuild_if_changed(self, cur: Cursor, view: View, built_version: int) -> None:
        """Drops the view's tables and sets its position to 0 when one of its tables exists
        with columns other than those it declares now, or was built by another version of the
        view (a release changed them)."""
        why = self._why_stale(cur, view, built_version)
        if why is None:
            return
        log.warning("view %s: %s; rebuilding it from event 0", view.name, why)
        specs = [self._sql[table.name] for table in view.tables]
        for spec in specs:
            cur.execute(f"DROP TABLE IF EXISTS {spec.sql_name}")
        cur.execute(f"UPDATE {self._tracking} SET position = 0 WHERE view = ?", (view.name,))  # noqa: S608

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


class _BatchRows:
    """``Rows`` for one batch: reads go to the database once per key (or ``load`` many keys
    at once beforehand), writes stay in memory until ``flush`` sends them as one executemany
    per table and kind."""

    def __init__(self, cur: Cursor, tables: dict[str, TableSql]) -> None:
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

    def _table(self, name: str) -> TableSql:
        if name not in self._tables:
            raise KeyError(f"the view owns no table {name!r}")
        return self._tables[name]
