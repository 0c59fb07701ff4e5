"""What happened to each certificate, and when, read from the store: seeded (for which
service and role), its first failed pre-flight, its first order, issued, installed on its
node, frozen.

An event's timestamp is the ``now`` of the check that recorded it: every event of one check
carries the moment the check began. So ``ordered`` is when the check that ordered began, and
``issued`` and ``installed`` are when this reader first saw the event (read right after a
page came back, polled every fraction of a second: at most that much late, never early).

Consumes the store's notification log (only the Certificate topics the figures come from);
emits per certificate the moments, keyed by (service_id, role).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from eventsourcing.utils import get_topic

from domain.certificate import Certificate
from ops.store.event_store import EventStore

_TOPICS = {
    get_topic(Certificate.Seeded): "seeded",
    get_topic(Certificate.PreflightFailed): "preflight_failed",
    get_topic(Certificate.OrderPlaced): "ordered",
    get_topic(Certificate.Issued): "issued",
    get_topic(Certificate.Installed): "installed",
    get_topic(Certificate.IssueFailed): "issue_failed",
    get_topic(Certificate.Frozen): "frozen",
}
PAGE = 5000


@dataclass
class CertificateMoments:
    service_id: str
    role: str
    names: tuple[str, ...]
    server_id: str | None
    preflight_failed: datetime | None = None
    last_preflight_reason: str | None = None
    ordered: datetime | None = None  # the check that placed its first order began
    issued: datetime | None = None  # first seen issued (this reader's clock)
    installed: datetime | None = None  # first seen installed (this reader's clock)
    issue_failures: int = 0
    frozen: str | None = None  # the reason, when frozen


class CertificateReader:
    """Follows the store's log for Certificate events (``poll`` reads what is new)."""

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self._after = 0
        self._by_id: dict[uuid.UUID, CertificateMoments] = {}

    def poll(self) -> dict[tuple[str, str], CertificateMoments]:
        while True:
            page = self._store.recorder.select_notifications(
                start=self._after, limit=PAGE, topics=list(_TOPICS), inclusive_of_start=False
            )
            seen = datetime.now(UTC)
            for notification in page:
                self._take(_TOPICS[notification.topic], self._store.decode(notification), seen)
            if page:
                self._after = page[-1].id
            if len(page) < PAGE:
                return {(m.service_id, m.role): m for m in self._by_id.values()}

    def _take(self, kind: str, event: Any, seen: datetime) -> None:
        if kind == "seeded":
            if event.service_id is not None:  # the shared wildcard has none: not measured
                install = event.install or {}
                self._by_id[event.originator_id] = CertificateMoments(
                    event.service_id, event.role, tuple(event.names), install.get("server_id")
                )
            return
        moments = self._by_id.get(event.originator_id)
        if moments is None:
            return
        if kind == "preflight_failed":
            moments.preflight_failed = moments.preflight_failed or event.timestamp
            moments.last_preflight_reason = event.reason
        elif kind == "ordered":
            moments.ordered = moments.ordered or event.timestamp
        elif kind == "issued":
            moments.issued = moments.issued or seen
        elif kind == "installed":
            moments.installed = moments.installed or seen
        elif kind == "issue_failed":
            moments.issue_failures += 1
        elif kind == "frozen":
            moments.frozen = event.reason
