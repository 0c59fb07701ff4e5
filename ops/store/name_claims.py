"""The claims on names (domain/claim.py) as the event store keeps them.

Consumes a service's claimed names, the id of the service asking and the services the
claims name as holders; emits Claim aggregates with their new events pending, for the
caller to save in the same transaction as the Service event they go with: ``fresh`` (every
name new: no read at all, the common case of an order), ``take`` (every name read and
decided: made, retaken, taken over from a holder that is terminated or does not exist, or
refused with a Conflict that names each name another live service holds) and ``release`` (a
terminated service's names). ``check_parents`` refuses a domain under a domain another
client's live service holds (its zone would shadow that domain's records on the shared DNS
nodes); it only reads.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from domain.claim import Claim, ClaimedName, claim_uuid
from domain.errors import Conflict
from domain.service import Service, service_uuid
from ops.store.unit_of_work import Repository


class NameClaims:
    def __init__(self, repository: Repository[Claim], services: Repository[Service]) -> None:
        self._claims = repository
        self._services = services

    def fresh(self, names: Iterable[ClaimedName], service_id: str, now: datetime) -> list[Claim]:
        """Each name claimed for the first time: saving fails (IntegrityError) when one was
        claimed before, and ``take`` then decides on what the store holds."""
        return [Claim.make(name, service_id, now) for name in names]

    def take(self, names: Iterable[ClaimedName], service_id: str, now: datetime) -> list[Claim]:
        """The claims that change for ``service_id`` to hold every name; Conflict, listing
        every name another live service holds, when one does (nothing to save then)."""
        changed: list[Claim] = []
        refused: list[str] = []
        for name in names:
            claim = self._claims.find(name.claim_id)
            if claim is None:
                changed.append(Claim.make(name, service_id, now))
                continue
            gone = claim.holder not in (None, service_id) and self._live(claim.holder) is None
            try:
                if claim.take(service_id, now, holder_gone=gone):
                    changed.append(claim)
            except Conflict as exc:
                refused.append(str(exc))
        if refused:
            raise Conflict("; ".join(refused))
        return changed

    def check_parents(self, domain: str, service_id: str, client_id: str) -> None:
        """Conflict when a domain ``domain`` is under (www.shop.example under shop.example,
        stopping before the top-level domain) is held by a live service of another client."""
        labels = domain.lower().split(".")
        for start in range(1, len(labels) - 1):
            parent = ".".join(labels[start:])
            claim = self._claims.find(claim_uuid("domain", parent))
            if claim is None or claim.holder in (None, service_id):
                continue
            holder = self._live(claim.holder)
            if holder is not None and holder.client_id != client_id:
                raise Conflict(
                    f"the domain {parent} is already in use by service {claim.holder}; "
                    f"{domain} is under it"
                )

    def release(self, names: Iterable[ClaimedName], service_id: str, now: datetime) -> list[Claim]:
        """The claims ``service_id`` still holds, released (a name it never held, or holds no
        longer, is left as it is)."""
        released: list[Claim] = []
        for name in names:
            claim = self._claims.find(name.claim_id)
            if claim is not None and claim.release(service_id, now):
                released.append(claim)
        return released

    def _live(self, service_id: str | None) -> Service | None:
        """The service, unless it does not exist or was terminated."""
        if service_id is None:
            return None
        service = self._services.find(service_uuid(service_id))
        return None if service is None or service.status == "terminated" else service
