"""The claims on names (domain/claim.py) as the event store keeps them.

Consumes a service's claimed names and the id of the service asking; emits Claim aggregates
with their new events pending, for the caller to save in the same transaction as the
Service event they go with: ``fresh`` (every name new: no read at all, the common case of an
order), ``take`` (every name read and decided: made, retaken, or refused with a Conflict that
names each name another live service holds) and ``release`` (a terminated service's names).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from domain.claim import Claim, ClaimedName
from domain.errors import Conflict
from ops.store.unit_of_work import Repository


class NameClaims:
    def __init__(self, repository: Repository[Claim]) -> None:
        self._claims = repository

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
            try:
                if claim.take(service_id, now):
                    changed.append(claim)
            except Conflict as exc:
                refused.append(str(exc))
        if refused:
            raise Conflict("; ".join(refused))
        return changed

    def release(self, names: Iterable[ClaimedName], service_id: str, now: datetime) -> list[Claim]:
        """The claims ``service_id`` still holds, released (a name it never held, or holds no
        longer, is left as it is)."""
        released: list[Claim] = []
        for name in names:
            claim = self._claims.find(name.claim_id)
            if claim is not None and claim.release(service_id, now):
                released.append(claim)
        return released
