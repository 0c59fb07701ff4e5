"""Claims: a domain, a vanity label or a Hestia username belongs to at most one live service.

Consumes a service's facts (``claimed_names``: what it puts on the nodes under a name of its
own) and the id of the service asking; emits ``Claim.Made`` (a name claimed for the first
time), ``Claim.Released`` (its holder was terminated, or is found gone when another service
takes the name) and ``Claim.Retaken`` (a released name claimed again), or refuses with
Conflict naming the kind, the name and the live holder.

One Claim aggregate per name, its id derived from the kind and the name: two services claiming
one name write to the same aggregate, so the store's optimistic concurrency (one event per
aggregate version) lets exactly one of them win, and no table of names is needed besides the
events themselves.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from eventsourcing.domain import Aggregate

from domain.errors import Conflict
from domain.step_chain import ServiceFacts

CLAIM_NAMESPACE = uuid.UUID("0f4c8a52-3d1e-4b7a-9c26-8e5d1f7a2b90")
KINDS = ("domain", "label", "username")


@dataclass(frozen=True)
class ClaimedName:
    """One name a service holds: ``kind`` (domain, label, username) and the name, lower-case."""

    kind: str
    name: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown claim kind {self.kind!r}")
        if self.name != self.name.lower():
            raise ValueError(f"claimed name {self.name!r} must be lower-case")

    @property
    def claim_id(self) -> uuid.UUID:
        return claim_uuid(self.kind, self.name)

    def __str__(self) -> str:
        return f"the {self.kind} {self.name}"


def claim_uuid(kind: str, name: str) -> uuid.UUID:
    """The aggregate id of the claim on ``name``: the same for every service that asks."""
    return uuid.uuid5(CLAIM_NAMESPACE, f"{kind}/{name.lower()}")


def claimed_names(service: ServiceFacts) -> tuple[ClaimedName, ...]:
    """What the service holds while it is live: its domain (every mode), its label (vanity:
    the mailbox and the record in the provider's zone) and the Hestia user it owns (as ordered,
    or derived from its domain and id)."""
    names = [ClaimedName("domain", service.domain.lower())]
    if service.mode == "vanity" and service.label:
        names.append(ClaimedName("label", service.label.lower()))
    names.append(ClaimedName("username", service.user.lower()))
    return tuple(names)


class Claim(Aggregate):
    """Who holds one name: a live service, or nobody once its holder was terminated."""

    class Made(Aggregate.Created):
        kind: str
        name: str
        service_id: str

    def __init__(self, kind: str, name: str, service_id: str) -> None:
        self.kind = kind
        self.name = name
        self.holder: str | None = service_id

    class Released(Aggregate.Event):
        service_id: str

        def apply(self, aggregate: Aggregate) -> None:
            assert isinstance(aggregate, Claim)
            aggregate.holder = None

    class Retaken(Aggregate.Event):
        service_id: str

        def apply(self, aggregate: Aggregate) -> None:
            assert isinstance(aggregate, Claim)
            aggregate.holder = self.service_id

    @classmethod
    def make(cls, name: ClaimedName, service_id: str, now: datetime) -> Claim:
        """The first claim ever on ``name``; saving it fails (IntegrityError) when another
        service made it first."""
        return cls._create(
            cls.Made,
            id=name.claim_id,
            timestamp=now,
            kind=name.kind,
            name=name.name,
            service_id=service_id,
        )

    @property
    def released(self) -> bool:
        return self.holder is None

    def take(self, service_id: str, now: datetime, *, holder_gone: bool = False) -> bool:
        """Claims the name for ``service_id``; False when it holds it already, Conflict when
        another live service does. ``holder_gone``: the holder was terminated without
        releasing the name (claims saved by a backfill or an old pipeline while it ended) or
        does not exist; its claim is released first, then taken."""
        if self.holder == service_id:
            return False
        if self.holder is not None:
            if not holder_gone:
                raise Conflict(
                    f"the {self.kind} {self.name} is already in use by service {self.holder}"
                )
            self.trigger_event(Claim.Released, timestamp=now, service_id=self.holder)
        self.trigger_event(Claim.Retaken, timestamp=now, service_id=service_id)
        return True

    def release(self, service_id: str, now: datetime) -> bool:
        """Lets the name go when ``service_id`` holds it (its service was terminated); False
        when it does not (released already, or held by another service)."""
        if self.holder != service_id:
            return False
        self.trigger_event(Claim.Released, timestamp=now, service_id=service_id)
        return True
