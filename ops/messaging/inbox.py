"""A consumer's inbox: the message ids it has already handled, so redeliveries are absorbed.

The broker delivers at least once (the relay may republish a batch, a consumer may die before
its ack); the inbox turns that into effectively once per consumer. One table,
``{prefix}inbox(consumer, message_id, received_at)``, on SQLite or PostgreSQL, created on first
use (a table from before ``received_at`` existed gets the column, its rows dated the moment
the column was added).

It does not grow without bound: ``prune`` deletes the ids handled longer ago than the retention
(``HOSTWRIGHT_INBOX_RETENTION_HOURS``, 7 days by default), a small batch per transaction; the
scheduler's ``inbox`` job runs it (ops/services/cron_jobs.py). A redelivery older than the
retention is no longer recognised — the retention must exceed how long a message can wait in a
queue or be republished by the relay (seconds to minutes; days of margin).
Synchronous: async callers go through ``asyncio.to_thread``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg

from ops.store.database import Database

PRUNE_BATCH = 1000


class Inbox:
    def __init__(
        self, db: Database, prefix: str = "hw_", *, clock: Callable[[], float] = time.time
    ) -> None:
        self._db = db
        self._table = f"{prefix}inbox"
        self._clock = clock
        self._migrated = False

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
        now = self._clock()
        with self._db.transaction() as cur:
            cur.executemany(
                f"INSERT INTO {self._table} (consumer, message_id, received_at) "  # noqa: S608
                "VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                [(consumer, message_id, now) for message_id in message_ids],
            )

    def remember(self, consumer: str, message_id: str) -> None:
        """Records that ``consumer`` handled ``message_id``; remembering twice is harmless."""
        self.remember_all(consumer, [message_id])

    def prune(self, retention_s: float, *, batch: int = PRUNE_BATCH) -> int:
        """Deletes the ids handled more than ``retention_s`` ago, ``batch`` rows per
        transaction (short locks beside the consumers' writes); how many it deleted."""
        self._ensure_table()
        cutoff = self._clock() - retention_s
        deleted = 0
        while True:
            with self._db.transaction() as cur:
                cur.execute(
                    f"SELECT consumer, message_id FROM {self._table} "  # noqa: S608
                    "WHERE received_at < ? LIMIT ?",
                    (cutoff, batch),
                )
                rows = [tuple(row) for row in cur.fetchall()]
                if rows:
                    cur.executemany(
                        f"DELETE FROM {self._table} "  # noqa: S608
                        "WHERE consumer = ? AND message_id = ?",
                        rows,
                    )
            deleted += len(rows)
            if len(rows) < batch:
                return deleted

    def count(self) -> int:
        """How many ids the inbox holds (for the benchmarks and the tests)."""
        self._ensure_table()
        with self._db.transaction() as cur:
            cur.execute(f"SELECT COUNT(*) FROM {self._table}")  # noqa: S608
            return int(cur.fetchone()[0])

    def _ensure_table(self) -> None:
        self._db.create_table(
            self._table,
            "consumer TEXT NOT NULL, message_id TEXT NOT NULL, "
            "received_at DOUBLE PRECISION NOT NULL DEFAULT 0, PRIMARY KEY (consumer, message_id)",
        )
        if not self._migrated:
            self._add_received_at()
            self._migrated = True

    def _add_received_at(self) -> None:
        """A table made before ``received_at`` existed gets it, and an index on it; its rows
        count as received now (kept a whole retention from the upgrade)."""
        with self._db.transaction() as cur:
            if self._db.dialect == "sqlite":
                cur.execute(f"PRAGMA table_info({self._table})")
                missing = "received_at" not in {row[1] for row in cur.fetchall()}
            else:
                cur.execute(
                    "SELECT 1 FROM information_schema.columns WHERE table_name = ? "
                    "AND column_name = 'received_at' AND table_schema = current_schema()",
                    (self._table,),
                )
                missing = cur.fetchone() is None
        if missing:
            try:
                with self._db.transaction() as cur:
                    cur.execute(
                        f"ALTER TABLE {self._table} ADD COLUMN received_at "
                        f"DOUBLE PRECISION NOT NULL DEFAULT {float(self._clock())!r}"
                    )
            except psycopg.errors.DuplicateColumn:
                pass  # another process added it a moment ago
        try:
            with self._db.transaction() as cur:
                cur.execute(
                    f"CREATE INDEX IF NOT EXISTS {self._table}_received_at "
                    f"ON {self._table} (received_at)"
                )
        except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateTable):
            pass  # another process made it a moment ago
