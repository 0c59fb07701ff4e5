"""The AcmeAccount aggregate: the one ACME account the whole fleet orders under, per
directory URL, and its private key (held sealed only).

Consumes the key the SSL desk made and sealed, the account URL the CA gave, and the time
passed in; emits ``KeyCreated`` (the aggregate's first event, so processes that race to
create the account save one key: the loser's save conflicts, and it loads the winner's),
``Registered`` and ``KeyResealed`` (``hostwright rotate-key``). Registering is idempotent at
the CA per key (``onlyReturnExisting``), so a crash between the two events costs nothing.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from eventsourcing.domain import Aggregate

from domain.errors import Conflict, InvalidInput

ACCOUNT_NAMESPACE = uuid.UUID("9a4e7c21-5d3b-4b8f-a612-0c9e8d7f3b54")


def account_uuid(directory_url: str) -> uuid.UUID:
    """One account per ACME directory (production, staging, a test CA)."""
    return uuid.uuid5(ACCOUNT_NAMESPACE, f"acme-account/{directory_url}")


class AcmeAccount(Aggregate):
    class KeyCreated(Aggregate.Created):
        directory_url: str
        key_sealed: str

    def __init__(self, directory_url: str, key_sealed: str) -> None:
        self.directory_url = directory_url
        self.key_sealed = key_sealed
        self.account_url: str | None = None
        self.contact: list[str] = []

    class Registered(Aggregate.Event):
        account_url: str
        contact: list[str]

        def apply(self, aggregate: Any) -> None:
            aggregate.account_url = self.account_url
            aggregate.contact = list(self.contact)

    class KeyResealed(Aggregate.Event):
        """The key sealed afresh under the current secret key; never the clear key."""

        key_sealed: str
        key_id: str

        def apply(self, aggregate: Any) -> None:
            aggregate.key_sealed = self.key_sealed

    @classmethod
    def create(cls, directory_url: str, key_sealed: str, now: datetime) -> AcmeAccount:
        if not directory_url or not key_sealed:
            raise InvalidInput("an ACME account needs its directory URL and its sealed key")
        return cls._create(
            cls.KeyCreated,
            id=account_uuid(directory_url),
            timestamp=now,
            directory_url=directory_url,
            key_sealed=key_sealed,
        )

    @property
    def registered(self) -> bool:
        return self.account_url is not None

    def register(self, now: datetime, account_url: str, contact: list[str]) -> bool:
        """Records the account URL; False when it is recorded already with this contact.
        Conflict when the CA gave another URL for the same key."""
        if self.account_url is not None and self.account_url != account_url:
            raise Conflict(
                f"the ACME account of {self.directory_url} is {self.account_url}, not {account_url}"
            )
        if self.account_url == account_url and self.contact == list(contact):
            return False
        self.trigger_event(
            AcmeAccount.Registered, timestamp=now, account_url=account_url, contact=list(contact)
        )
        return True

    def reseal_key(self, now: datetime, key_sealed: str, key_id: str) -> bool:
        if key_sealed == self.key_sealed:
            return False
        self.trigger_event(
            AcmeAccount.KeyResealed, timestamp=now, key_sealed=key_sealed, key_id=key_id
        )
        return True
