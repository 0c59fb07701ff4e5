"""A consumer's inbox: the message ids it has already handled, so redeliveries are absorbed.

The broker delivers at least once (the relay may republish a batch, a consumer may die before
its ack); the inbox turns that into effectively once per consumer. One table,
``{prefix}inbox(consumer, message_id)``, on SQLite or PostgreSQL, created on first use.
Synchronous: async callers go through ``asyncio.to_thread``.
"""

from __future__ import annotations

from ops.store.database import Database


class Inbox:
    def __init__(self, db: Database, prefix: str = "hw_") -> None:
        self._db = db
        self._table = f"{prefix}inbox"

    def seen(self, consumer: str, message_id: str) -> bool:
        """Whether ``consumer`` has already handled ``message_id``."""
        self._ensure_table()
        with self._db.transaction() as cur:
            cur.execute(
                f"SELECT 1 FROM {self._table} WHERE consumer = ? AND message_id = ?",  # noqa: S608
                (consumer, message_id),
            )
            return cur.fetchone() is not None

    def seen_among(self, consumer: str, message_ids: list[str]) -> set[str]:
        """Which of ``message_ids`` ``consumer`` has already handled (one query)."""
        if not message_ids:
            return set()
        self._ensure_table()
        marks = ", ".join("?" for _ in message_ids)
        with self._db.transaction() as cur:
            cur.execute(
                f"SELECT message_id FROM {self._table} "  # noqa: S608
                f"WHERE consumer = ? AND message_id IN ({marks})",
                (consumer, *message_ids),
            )
            return {row[0] for row in cur.fetchall()}

    def remember_all(self, consumer: str, message_ids: list[str]) -> None:
        """Records several handled ids in one transaction."""
        if not message_ids:
            return
        self._ensure_table()
        with self._db.transaction() as cur:
            cur.executemany(
                f"INSERT INTO {self._table} (consumer, message_id) VALUES (?, ?) "  # noqa: S608
                "ON CONFLICT DO NOTHING",
                [(consumer, message_id) for message_id in message_ids],
            )

    def remember(self, consumer: str, message_id: str) -> None:
        """Records that ``consumer`` handled ``message_id``; remembering twice is harmless."""
        self._ensure_table()
        with self._db.transaction() as cur:
            cur.execute(
                f"INSERT INTO {self._table} (consumer, message_id) VALUES (?, ?) "  # noqa: S608
                "ON CONFLICT DO NOTHING",
                (consumer, message_id),
            )

    def _ensure_table(self) -> None:
        self._db.create_table(
            self._table,
            "consumer TEXT NOT NULL, message_id TEXT NOT NULL, PRIMARY KEY (consumer, message_id)",
        )
