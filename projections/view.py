"""What a view is: tables it owns, and a pure function per event that changes its rows.

A view never touches a database. It receives ``Rows`` (a port the projection runner
implements over SQL, batching many events into one transaction with the tracking position)
and reads or writes plain dict rows through it. Because views are pure functions of the
event sequence, dropping the tables and replaying from event 0 gives the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

Row = dict[str, Any]


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # "text" | "int" | "json" (stored as text) | "bool"


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    indexes: tuple[tuple[str, ...], ...] = ()


class Rows(Protocol):
    """Row access inside one projection batch. Keys are tuples in the table's key order."""

    def get(self, table: str, key: tuple[Any, ...]) -> Row | None: ...

    def put(self, table: str, row: Row) -> None: ...

    def delete(self, table: str, key: tuple[Any, ...]) -> None: ...


@dataclass(frozen=True)
class Recorded:
    """A domain event with its position in the store's notification log."""

    position: int
    event: Any


class View(Protocol):
    name: str
    tables: tuple[Table, ...]

    def apply(self, recorded: Recorded, rows: Rows) -> None:
        """Changes rows for one event; ignores events it does not care about."""
