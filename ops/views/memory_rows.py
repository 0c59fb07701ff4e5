"""``Rows`` held in memory for a whole replay: a view's rebuild folds every event into dicts
and nothing is written until the end.

``MemoryRows`` consumes a view's tables; it serves the view's ``get``/``put``/``delete`` from
one dict per table keyed by the row's key, and emits the rows of a table as they would be
after a round trip through SQL (``TableSql.encode``), which is what replay compares.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ops.views.table_sql import TableSql
from projections.view import Row


class MemoryRows:
    """Every row of some view tables, in memory. Implements ``Rows`` and ``RowLoader``."""

    def __init__(self, tables: dict[str, TableSql]) -> None:
        self._specs = tables
        # per table: its rows by key, and its key's column names
        self._tables: dict[str, tuple[dict[tuple[Any, ...], Row], tuple[str, ...]]] = {
            name: ({}, spec.table.key) for name, spec in tables.items()
        }

    def get(self, table: str, key: tuple[Any, ...]) -> Row | None:
        # the row itself, not a copy: a view reads a row and puts a new one (``Rows`` says
        # so); copying every row read was a tenth of replay's folding
        try:
            return self._tables[table][0].get(key)
        except KeyError:
            raise KeyError(f"the view owns no table {table!r}") from None

    def load(self, table: str, keys: Iterable[tuple[Any, ...]]) -> list[Row]:
        rows = self._table(table)[0]
        return [row for key in keys if (row := rows.get(key)) is not None]

    def put(self, table: str, row: Row) -> None:
        # kept as given, not copied: a view builds each row it puts (a view changing a row
        # after putting it would be a bug the SQL runner hides); its columns are checked
        # once per kept row, in ``encoded``
        try:
            rows, key = self._tables[table]
        except KeyError:
            raise KeyError(f"the view owns no table {table!r}") from None
        rows[(row[key[0]],) if len(key) == 1 else tuple([row[k] for k in key])] = row

    def delete(self, table: str, key: tuple[Any, ...]) -> None:
        self._table(table)[0].pop(key, None)

    def encoded(self, table: str) -> dict[tuple[Any, ...], tuple[Any, ...]]:
        """The table's rows by key, each as the column values SQL would hold."""
        spec = self._specs[table]
        rows = self._table(table)[0]
        for row in rows.values():
            if not spec.name_set.issuperset(row):
                unknown = ", ".join(sorted(set(row) - spec.name_set))
                raise ValueError(f"{table} has no column(s) {unknown}")
        return dict(zip(rows.keys(), spec.encode_many(rows.values()), strict=True))

    def _table(self, name: str) -> tuple[dict[tuple[Any, ...], Row], tuple[str, ...]]:
        try:
            return self._tables[name]
        except KeyError:
            raise KeyError(f"the view owns no table {name!r}") from None
