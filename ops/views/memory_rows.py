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
        self._rows: dict[str, dict[tuple[Any, ...], Row]] = {name: {} for name in tables}
        self._keys = {name: spec.table.key for name, spec in tables.items()}

    def get(self, table: str, key: tuple[Any, ...]) -> Row | None:
        row = self._table(table).get(key)
        # a copy, so a view changing what it read does not change the rebuild behind its back
        return None if row is None else dict(row)

    def load(self, table: str, keys: Iterable[tuple[Any, ...]]) -> list[Row]:
        rows = self._table(table)
        return [dict(row) for key in keys if (row := rows.get(key)) is not None]

    def put(self, table: str, row: Row) -> None:
        rows = self._table(table)
        spec = self._specs[table]
        if not spec.name_set.issuperset(row):
            unknown = ", ".join(sorted(set(row) - spec.name_set))
            raise ValueError(f"{table} has no column(s) {unknown}")
        rows[tuple([row[k] for k in self._keys[table]])] = dict(row)

    def delete(self, table: str, key: tuple[Any, ...]) -> None:
        self._table(table).pop(key, None)

    def encoded(self, table: str) -> dict[tuple[Any, ...], tuple[Any, ...]]:
        """The table's rows by key, each as the column values SQL would hold."""
        spec = self._specs[table]
        return {key: tuple(spec.encode(row)) for key, row in self._table(table).items()}

    def _table(self, name: str) -> dict[tuple[Any, ...], Row]:
        if name not in self._rows:
            raise KeyError(f"the view owns no table {name!r}")
        return self._rows[name]
