"""Reads of the SSL view: ``SqlSslQueries`` over ``ssl_certificates`` (projections/ssl_view.py).

Consumes a Database (the view's table in a ViewStore of its own); emits a service's
certificates as ``GET /v1/services/{id}/ssl`` shows them (``ssl``), the certificates the SSL
desk's tick should look at now (``due``: not retired, next check passed or never set, the
longest waiting first), and the custom certificates near their end (``custom_expiring``, for
the expiry warnings). Synchronous: call it through ``asyncio.to_thread``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from ops.store.database import Database
from ops.views.view_store import ViewStore
from projections.ssl_view import SSL_CERTIFICATES, SslView
from projections.view import Row, iso_time

ROLE_ORDER = {"web": 0, "mail": 1}
SHOWN = [
    "role",
    "mode",
    "state",
    "frozen_until",
    "names",
    "issuer",
    "not_before",
    "not_after",
    "next_check_at",
    "last_error",
]


class SqlSslQueries:
    def __init__(self, db: Database, prefix: str = "hw_") -> None:
        self._store = ViewStore(db, [SslView()], prefix)

    def ssl(self, service_id: str) -> list[dict[str, Any]]:
        """The service's certificates, web first, as the API shows them; [] when none."""
        found = self._store.select(
            SSL_CERTIFICATES.name, "service_id = ?", (service_id,), "role", None
        )
        return [_shown(row) for row in sorted(found, key=lambda r: ROLE_ORDER.get(r["role"], 9))]

    def due(self, now: datetime, limit: int) -> list[uuid.UUID]:
        """Certificates to look at now, the longest waiting first (never checked: first)."""
        found = self._store.select(
            SSL_CERTIFICATES.name,
            "state != 'retired' AND (next_check_at IS NULL OR next_check_at <= ?)",
            (iso_time(now),),
            "next_check_at IS NOT NULL, next_check_at, certificate_id",
            limit,
        )
        return [uuid.UUID(row["certificate_id"]) for row in found]

    def custom_expiring(self, before: datetime) -> list[uuid.UUID]:
        """Custom certificates, not retired, that end before ``before``."""
        found = self._store.select(
            SSL_CERTIFICATES.name,
            "mode = 'custom' AND state != 'retired' AND not_after < ?",
            (iso_time(before),),
            "not_after, certificate_id",
            None,
        )
        return [uuid.UUID(row["certificate_id"]) for row in found]

    def shared_sites(self) -> list[uuid.UUID]:
        """The vanity sites' certificates (served the wildcard), not retired."""
        found = self._store.select(
            SSL_CERTIFICATES.name,
            "mode = 'shared' AND state != 'retired'",
            (),
            "certificate_id",
            None,
        )
        return [uuid.UUID(row["certificate_id"]) for row in found]


def _shown(row: Row) -> dict[str, Any]:
    shown = {name: row[name] for name in SHOWN}
    shown["ari"] = row["ari"]  # {start, end, explanation_url} or None
    shown["renew_at"] = row["renew_at"]
    if row["state"] != "frozen":
        shown["frozen_until"] = None
    if row["last_error"] is None and row["frozen_reason"] is not None and row["state"] == "frozen":
        shown["last_error"] = row["frozen_reason"]
    return shown
