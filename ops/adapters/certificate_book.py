"""``StoreCertificateBook``: the SSL desk's CertificateBook (handlers/ssl_ports.py) over the
event store.

Consumes decisions on Certificate and AcmeAccount aggregates; emits the aggregates as saved.
Every change is load → decide → save in one transaction through the store's unit of work,
decided again on fresh state when another writer recorded first: two processes placing an
order on one certificate leave one ``OrderPlaced``, two creating the ACME account one key.
"""

from __future__ import annotations

import uuid
from typing import Any

from domain.acme_account import AcmeAccount, account_uuid
from domain.certificate import Certificate
from domain.errors import Conflict
from domain.service import Service, service_uuid
from handlers.ssl_ports import AccountDecision, CertificateDecision
from ops.store.event_store import EventStore
from ops.store.unit_of_work import Decision, Repository

_CONFLICT_ATTEMPTS = 10


class StoreCertificateBook:
    """Implements ``handlers.ssl_ports.CertificateBook``. Synchronous, like the store."""

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self._certificates: Repository[Certificate] = store.repository(Certificate, "certificate")
        self._accounts: Repository[AcmeAccount] = store.repository(AcmeAccount, "ACME account")
        self._services: Repository[Service] = store.repository(Service, "service")

    def certificate(self, cert_id: uuid.UUID) -> Certificate | None:
        return self._certificates.find(cert_id)

    def update(
        self, cert_id: uuid.UUID, decide: CertificateDecision, busy: str
    ) -> Certificate | None:
        def decided() -> Decision[Certificate | None]:
            cert = decide(self.certificate(cert_id))
            if cert is not None and cert.id != cert_id:
                raise Conflict(f"a decision on certificate {cert_id} returned another one")
            return Decision(cert, _changed(cert))

        return self._store.work.run(decided, busy=busy, attempts=_CONFLICT_ATTEMPTS)

    def service(self, service_id: str) -> Service | None:
        return self._services.find(service_uuid(service_id))

    def account(self, directory_url: str) -> AcmeAccount | None:
        return self._accounts.find(account_uuid(directory_url))

    def update_account(self, directory_url: str, decide: AccountDecision) -> AcmeAccount:
        def decided() -> Decision[AcmeAccount | None]:
            loaded = self.account(directory_url)
            account = decide(loaded)
            return Decision(account or loaded, _changed(account))

        account = self._store.work.run(
            decided,
            busy=f"the ACME account of {directory_url} kept changing; try again",
            attempts=_CONFLICT_ATTEMPTS,
        )
        if account is None:
            raise Conflict(f"no ACME account for {directory_url} was created")
        return account


def _changed(aggregate: Any) -> tuple[Any, ...]:
    """The aggregate when it has events to save."""
    return (aggregate,) if aggregate is not None and aggregate.pending_events else ()
