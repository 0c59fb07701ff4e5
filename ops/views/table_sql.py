"""A view table in SQL: its DDL, its statements, and rows to column values and back.

``TableSql`` consumes a view's ``Table`` (from ``projections.view``), the name it has in the
database and the dialect; it emits the table's ``CREATE`` statements, the statements the
store runs on it (select, upsert, delete, many keys at once), and encodes a dict row into
column values (JSON as text, booleans as integers on SQLite) and decodes them back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import orjson

from ops.store.database import Cursor
from projections.view import Row, Table

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
_SQL_TYPES = {
    "sqlite": {"text": "TEXT", "int": "BIGINT", "json": "TEXT", "bool": "INTEGER"},
    "postgresql": {"text": "TEXT", "int": "BIGINT", "json": "TEXT", "bool": "BOOLEAN"},
}


def existing_columns(cur: Cursor, dialect: str, sql_name: str) -> frozenset[str]:
    """The columns the table has in the database now; empty when there is no such table."""
    if dialect == "sqlite":
        cur.execute("SELECT name FROM pragma_table_info(?)", (sql_name,))
    else:
        cur.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = ?",
            (sql_name,),
        )
    return frozenset(str(name) for (name,) in cur.fetchall())


def check_identifier(name: str) -> str:
    """``name`` when it is a plain SQL identifier; table and column names are written into
    statements, never bound, so anything else is refused."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"{name!r} is not a plain SQL identifier")
    return name


class TableSql:
    """One view table's SQL and row encoding, worked out once rather than per row."""

    def __init__(self, table: Table, sql_name: str, dialect: str) -> None:
        for name in (sql_name, *(c.name for c in table.columns)):
            check_identifier(name)
        self.table = table
        self.sql_name = sql_name
        self._types = _SQL_TYPES[dialect]
        self.names = tuple(c.name for c in table.columns)
        self.name_set = frozenset(self.names)
        self._json = [i for i, c in enumerate(table.columns) if c.type == "json"]
        self._bool = [i for i, c in enumerate(table.columns) if c.type == "bool"]
        self._int = [i for i, c in enumerate(table.columns) if c.type == "int"]
        self._bool_as_int = dialect == "sqlite"
        columns = ", ".join(self.names)
        by_key = " AND ".join(f"{k} = ?" for k in table.key)
        self.select_all = f"SELECT {columns} FROM {sql_name} ORDER BY {', '.join(table.key)}"  # noqa: S608
        # every row in no order, for whoever keys them itself (replay): sorting costs PostgreSQL
        self.select_unordered = f"SELECT {columns} FROM {sql_name}"  # noqa: S608
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

    def create(self) -> list[str]:
        """The statements that make the table and its indexes when they are missing."""
        name, key = self.sql_name, ", ".join(self.table.key)
        columns = ", ".join(f"{c.name} {self._types[c.type]}" for c in self.table.columns)
        made = [f"CREATE TABLE IF NOT EXISTS {name} ({columns}, PRIMARY KEY ({key}))"]
        for index in self.table.indexes:
            made.append(
                f"CREATE INDEX IF NOT EXISTS {name}_{'_'.join(index)}_idx "
                f"ON {name} ({', '.join(index)})"
            )
        return made

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
        values = list(map(row.get, self.names))
        for i in self._json:
            if values[i] is not None:
                values[i] = json.dumps(values[i], sort_keys=True, separators=(",", ":"))
        if self._bool_as_int:
            for i in self._bool:
                if values[i] is not None:
                    values[i] = int(bool(values[i]))
        return values

    def encode_many(self, rows: Iterable[Row]) -> Iterator[tuple[Any, ...]]:
        """``encode`` for many rows at once (what replay compares), writing JSON with orjson:
        the same text as ``encode`` for the ASCII-only values views hold, and text that
        decodes to the same value otherwise, which is what ``table_difference`` falls back
        on when texts differ. A value orjson refuses (an integer beyond 64 bits) is written
        as ``encode`` writes it."""
        names, json_at = self.names, self._json
        bool_at = self._bool if self._bool_as_int else []
        for row in rows:
            values = list(map(row.get, names))
            for i in json_at:
                value = values[i]
                if value is not None:
                    try:
                        values[i] = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
                    except TypeError:
                        values[i] = json.dumps(value, sort_keys=True, separators=(",", ":"))
            for i in bool_at:
                if values[i] is not None:
                    values[i] = int(bool(values[i]))
            yield tuple(values)

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
