"""Who is calling: bearer tokens resolved to a named ``Principal`` with scopes, and what each
route needs.

Consumes the presented bearer token (bytes) and emits a ``Principal`` — the credential's name
(the actor recorded on every event the call records), its scopes, and, for a credential bound
to one service, that service's id — or ``None`` when the token is unknown.

Scopes:

- ``services``: WHMCS. Orders, lifecycle calls, and the reads of a service (status, events,
  timeline, oplog).
- ``staff``: everything, the task queue, runtime settings and servers included.
- ``read``: every ``GET`` and nothing else (dashboards).

A route declares what it needs with a ``Need``: the area it belongs to (``services`` or
``staff``) and whether it writes. ``Principal.may`` decides. A principal with a ``service_id``
(a per-service credential; none is issued yet) may only call a services route whose path
names that very service, whatever its scopes say.

``Credentials`` is the port; ``TokenTable`` is the one resolver today: credentials known by
the SHA-256 of their token. A signed, expiring per-service token is one more resolver (it checks
its signature and expiry and answers a principal with ``service_id`` set), asked after it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

SERVICES = "services"
STAFF = "staff"
READ = "read"
SCOPES = (SERVICES, STAFF, READ)
MIN_TOKEN_LENGTH = 32
DIGEST_PREFIX = "sha256:"


@dataclass(frozen=True)
class Need:
    """What a route asks of a caller: its area (``services`` or ``staff``) and whether it
    writes (any method but GET)."""

    area: str
    writes: bool

    def granted_by(self) -> tuple[str, ...]:
        """The scopes that grant this route, for the 403's message."""
        scopes = [STAFF] if self.area == STAFF else [SERVICES, STAFF]
        return (*scopes, READ) if not self.writes else tuple(scopes)


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: ``name`` is recorded as the actor of what it does."""

    name: str
    scopes: frozenset[str]
    service_id: str | None = None  # set: this credential may touch this one service only

    def may(self, need: Need, path_params: Mapping[str, object]) -> bool:
        if not any(scope in self.scopes for scope in need.granted_by()):
            return False
        if self.service_id is None:
            return True
        # a route without a service id (the list, an order) is never one service's
        return need.area == SERVICES and path_params.get("service_id") == self.service_id


class Credentials(Protocol):
    """Resolves a presented bearer token to a principal; None when it names no credential.

    ``principal_named`` finds a credential again by its name and a ``fingerprint`` of its
    token's digest (``fingerprint``), never by the token: the staff console's session holds
    them, so a credential removed, demoted or given a new token ends its sessions."""

    def resolve(self, token: bytes) -> Principal | None: ...

    def principal_named(self, name: str, fingerprint: str, key: bytes) -> Principal | None: ...


def token_digest(token: str | bytes) -> str:
    """``sha256:<hex>`` of a token: how a tokens file names it.

    A fast hash is enough here: a token is 32+ random characters, not a password someone
    chose, so no dictionary or brute force reaches it, and a slow KDF would only add its cost
    to every request."""
    raw = token.encode("utf-8") if isinstance(token, str) else token
    return DIGEST_PREFIX + hashlib.sha256(raw).hexdigest()


def fingerprint(key: bytes, digest: str) -> str:
    """An HMAC-SHA256 under ``key`` of a token's digest (``token_digest``): it names the token
    without giving it (or its digest) away, and means nothing without the key."""
    return hmac.new(key, b"credential:" + digest.encode("ascii"), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class KnownToken:
    """One credential of a ``TokenTable``: its principal and the digest of its token."""

    principal: Principal
    digest: str


@dataclass(frozen=True)
class TokenTable:
    """Credentials known by the SHA-256 of their token (no token is kept in memory).

    Every entry is compared, in constant time, on every call: which entry matched, or
    whether one did, shows in no timing."""

    entries: tuple[KnownToken, ...] = field(default=())

    def __post_init__(self) -> None:
        names = [entry.principal.name for entry in self.entries]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"credential name(s) given twice: {', '.join(twice)}")
        digests = [entry.digest for entry in self.entries]
        if len(set(digests)) != len(digests):
            raise ValueError("two credentials have the same token")

    @classmethod
    def of(cls, entries: Iterable[KnownToken]) -> TokenTable:
        return cls(tuple(entries))

    def resolve(self, token: bytes) -> Principal | None:
        presented = token_digest(token).encode("ascii")
        found = None
        for entry in self.entries:
            if hmac.compare_digest(presented, entry.digest.encode("ascii")):
                found = entry.principal
        return found

    def principal_named(self, name: str, fingerprint_: str, key: bytes) -> Principal | None:
        """The principal named ``name`` whose token's ``fingerprint`` under ``key`` is
        ``fingerprint_``; None when no credential has both (removed, or a new token). Every
        entry is compared, in constant time, as ``resolve`` does."""
        given_name, given = name.encode(), fingerprint_.encode()
        found = None
        for entry in self.entries:
            same_name = hmac.compare_digest(given_name, entry.principal.name.encode())
            same_token = hmac.compare_digest(given, fingerprint(key, entry.digest).encode())
            if same_name & same_token:
                found = entry.principal
        return found

    def __len__(self) -> int:
        return len(self.entries)


def known_token(name: str, scopes: Iterable[str], token: str) -> KnownToken:
    """An entry for a token given in the clear (the environment's tokens); it keeps only the
    token's digest."""
    return KnownToken(Principal(name, frozenset(scopes)), token_digest(token))
