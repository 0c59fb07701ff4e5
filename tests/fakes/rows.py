"""The views' ``Rows`` port over dicts, for unit tests of views: {table: {key: row}}."""

from __future__ import annotations

from typing import Any

from projections.view import Row, Rows, View


class MemoryRows:
    """Rows kept per table by their key, copied in and out as the SQL store would."""

    def __init__(self, views: list[View]) -> None:
        self.tables: dict[str, dict[tuple[Any, ...], Row]] = {}
        self.keys: dict[str, tuple[str, ...]] = {}
        for view in views:
            for table in view.tables:
                self.tables[table.name] = {}
                self.keys[table.name] = table.key

    def get(self, table: str, key: tuple[Any, ...]) -> Row | None:
        row = self.tables[table].get(key)
        return None if row is None else dict(row)

    def put(self, table: str, row: Row) -> None:
        self.tables[table][tuple(row[k] for k in self.keys[table])] = dict(row)

    def delete(self, table: str, key: tuple[Any, ...]) -> None:
        self.tables[table].pop(key, None)


_: Rows = MemoryRows([])
