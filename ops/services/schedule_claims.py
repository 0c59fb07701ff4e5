"""The schedulers' shared lock: who runs which job for which period, claimed once.

One table, ``{prefix}schedule_claims(job, period, claimed_by, claimed_at)`` with primary key
``(job, period)``, on SQLite or PostgreSQL, created on first use. ``claim`` inserts the row
or does nothing when it exists, so of any number of schedulers (threads, processes,
machines) exactly one gets True for a given ``(job, period)``. Each successful claim also
deletes the job's claims older than ``retention_s``: a scheduler whose clock lags by less
than that can never claim a period again. Synchronous: async callers go through
``asyncio.to_thread``.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from ops.store.database import Database


class ClaimStore:
    def __init__(self, db: Database, prefix: str = "hw_", *, retention_s: float = 3600.0) -> None:
        if not retention_s > 0:
            raise ValueError("retention_s must be above 0")
        self._db = db
        self._table = f"{prefix}schedule_claims"
        self._retention_s = retention_s

    def claim(self, job: str, period: int, period_s: float, claimed_by: str, now: float) -> bool:
        """Claims period ``period`` (of ``period_s`` seconds) of ``job``; True only for the
        first claimant. ``now`` is the claimant's clock (Unix seconds), kept for inspection."""
        self._ensure_table()
        claimed_at = datetime.fromtimestamp(now, UTC).isoformat()
        with self._db.transaction() as cur:
            cur.execute(
                f"INSERT INTO {self._table} (job, period, claimed_by, claimed_at) "  # noqa: S608
                "VALUES (?, ?, ?, ?) ON CONFLICT (job, period) DO NOTHING RETURNING period",
                (job, period, claimed_by, claimed_at),
            )
            if cur.fetchone() is None:
                return False
            kept = max(2, math.ceil(self._retention_s / period_s))
            cur.execute(
                f"DELETE FROM {self._table} WHERE job = ? AND period < ?",  # noqa: S608
                (job, period - kept),
            )
        return True

    def claims(self, job: str) -> list[tuple[int, str]]:
        """The job's remaining claims as ``(period, claimed_by)``, oldest first."""
        self._ensure_table()
        with self._db.transaction() as cur:
            cur.execute(
                f"SELECT period, claimed_by FROM {self._table} "  # noqa: S608
                "WHERE job = ? ORDER BY period",
                (job,),
            )
            return [(int(period), str(by)) for period, by in cur.fetchall()]

    def _ensure_table(self) -> None:
        self._db.create_table(
            self._table,
            "job TEXT NOT NULL, period BIGINT NOT NULL, "
            "claimed_by TEXT NOT NULL, claimed_at TEXT NOT NULL, PRIMARY KEY (job, period)",
        )
