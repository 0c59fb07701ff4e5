"""Claims for services ordered before names were claimed (a store from an earlier release).

Consumes the event store: every Service.Ordered in order, and each of those services as it
is now. Emits, per live (not terminated) service, the Claim events that make it hold its
names (domain/claim.py), saved in one transaction per service; and the names it could not
claim because an earlier order's live service holds them already (two services that were
given one name before claims existed: the earlier keeps it, staff sort out the other).
Idempotent: a name a service holds already records nothing. ``hostwright backfill-claims``
runs it.
"""

from __future__ import annotations

from datetime import datetime

from eventsourcing.utils import get_topic

from domain.claim import Claim, claimed_names
from domain.errors import Conflict
from domain.service import Service
from domain.step_chain import ServiceFacts
from ops.store.event_store import EventStore
from ops.store.unit_of_work import Decision


def backfill_claims(store: EventStore, now: datetime) -> list[str]:
    """Claims every live service's names; returns the conflicts found, one line each
    ("service 2: the domain shop.example.com is already in use by service 1")."""
    conflicts: list[str] = []
    for notification in store.notifications_of([get_topic(Service.Ordered)]):
        service_id = store.decode(notification).service_id  # type: ignore[attr-defined]
        conflicts += _claim_names_of(store, service_id, now)
    return conflicts


def _claim_names_of(store: EventStore, service_id: str, now: datetime) -> list[str]:
    def decide() -> Decision[list[str]]:
        service = store.get_service(service_id)
        if service.status == "terminated":
            return Decision([])
        taken: list[Claim] = []
        refused: list[str] = []
        for name in claimed_names(ServiceFacts.from_service(service)):
            try:
                taken += store.claims.take([name], service_id, now)
            except Conflict as exc:
                refused.append(f"service {service_id}: {exc}")
        return Decision(refused, tuple(taken))

    return store.work.run(decide, busy=f"the claims of service {service_id} kept changing")
