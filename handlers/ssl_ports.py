"""What automatic SSL takes from the outside: its ports.

``CertificateBook`` (the event store's Certificate and AcmeAccount aggregates, and the
Service a certificate belongs to), ``RateGuard`` (the Let's Encrypt rate-limit model, kept
exact across processes) and ``KeySealer`` (private keys sealed under the secret key; the
domain only ever holds the sealed text). All synchronous, like the store behind them: the SSL
desk calls them through ``asyncio.to_thread``. Real implementations live in ops/adapters
(``StoreCertificateBook``, ``StoreRateLedger``, ``private_key_sealer``); fakes satisfy the
same Protocols.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from domain.acme_account import AcmeAccount
from domain.certificate import Certificate
from domain.service import Service
from domain.ssl_types import Admission, OrderIntent

CertificateDecision = Callable[[Certificate | None], Certificate | None]
AccountDecision = Callable[[AcmeAccount | None], AcmeAccount | None]


class CertificateBook(Protocol):
    def certificate(self, cert_id: uuid.UUID) -> Certificate | None: ...

    def update(
        self, cert_id: uuid.UUID, decide: CertificateDecision, busy: str
    ) -> Certificate | None:
        """Loads the certificate (None: not seeded yet), lets ``decide`` record events on it
        (or create it) and saves what it returns; ``decide`` returning None records nothing.
        Decides again on fresh state when another writer was first; Conflict(``busy``) when
        it kept changing. Returns what ``decide`` returned, as saved."""

    def service(self, service_id: str) -> Service | None:
        """The service a certificate belongs to (suspended, terminated?)."""

    def account(self, directory_url: str) -> AcmeAccount | None: ...

    def update_account(self, directory_url: str, decide: AccountDecision) -> AcmeAccount:
        """As ``update``, for the ACME account of a directory: two processes creating it at
        once end with one account (the loser decides again, on the winner's)."""


class RateGuard(Protocol):
    def admit(self, intent: OrderIntent, account: str, now: datetime) -> Admission:
        """Spends the order's tokens from every bucket it counts against, all or nothing;
        refused (nothing spent) with the reason and the time it would be allowed."""

    def authorization_failed(self, name: str, account: str, now: datetime) -> None:
        """Counts a failed authorization of ``name``."""

    def rate_limited(
        self, intent: OrderIntent, account: str, until: datetime, now: datetime
    ) -> None:
        """The CA refused the order (429) until ``until``: its per-domain and same-names
        buckets hold no token before then."""


class KeySealer(Protocol):
    def seal(self, secret: str) -> str: ...

    def unseal(self, sealed: str) -> str: ...
