"""Named positions in the notification log, kept in the database (the relay's tracking).

A position only moves forward: ``advance`` never writes a smaller number, so a slow,
superseded relay cannot move another's progress back.
"""

from __future__ import annotations

from ops.store.database import Database


class PositionStore:
    def __init__(self, db: Database, prefix: str = "hw_") -> None:
        self._db = db
        self._table = f"{prefix}positions"

    def get(self, name: str) -> int:
        self._ensure_table()
        with self._db.transaction() as cur:
            cur.execute(f"SELECT position FROM {self._table} WHERE name = ?", (name,))  # noqa: S608
            row = cur.fetchone()
        return int(row[0]) if row else 0

    def advance(self, name: str, position: int) -> None:
        self._ensure_table()
        with self._db.transaction() as cur:
            cur.execute(
                f"INSERT INTO {self._table} (name, position) VALUES (?, ?) "  # noqa: S608
                f"ON CONFLICT (name) DO UPDATE SET position = excluded.position "
                f"WHERE {self._table}.position < excluded.position",
                (name, position),
            )

    def _ensure_table(self) -> None:
        self._db.create_table(
            self._table,
            "name TEXT PRIMARY KEY, position BIGINT NOT NULL",
        )
