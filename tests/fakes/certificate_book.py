"""The ``CertificateBook`` port (handlers/ssl_ports.py) in memory: aggregates kept by id,
saved by collecting their events, as the store would.

Consumes the decisions the code under test takes; emits the aggregates and ``recorded``, the
topics of every event saved, in order (``events``: the events themselves). ``conflicts``
makes the next N saves lose (the decision is then taken again on the state before it, as
StoreCertificateBook does).
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

from domain.acme_account import AcmeAccount, account_uuid
from domain.certificate import Certificate
from domain.errors import Conflict
from domain.service import Service
from handlers.ssl_ports import AccountDecision, CertificateBook, CertificateDecision


class MemoryCertificateBook:
    def __init__(self, services: dict[str, Service] | None = None, *, attempts: int = 10) -> None:
        self.certificates: dict[uuid.UUID, Certificate] = {}
        self.accounts: dict[uuid.UUID, AcmeAccount] = {}
        self.services = dict(services or {})
        self.recorded: list[str] = []
        self.events: list[Any] = []
        self.conflicts = 0
        self._attempts = attempts

    def certificate(self, cert_id: uuid.UUID) -> Certificate | None:
        found = self.certificates.get(cert_id)
        return copy.deepcopy(found)

    def update(
        self, cert_id: uuid.UUID, decide: CertificateDecision, busy: str
    ) -> Certificate | None:
        for _ in range(self._attempts):
            cert = decide(self.certificate(cert_id))
            if cert is None:
                return None
            if cert.pending_events and self.conflicts:
                self.conflicts -= 1
                continue  # another writer was first: decide again on the state before
            self._record(cert)
            self.certificates[cert_id] = cert
            return cert
        raise Conflict(busy)

    def service(self, service_id: str) -> Service | None:
        return self.services.get(service_id)

    def account(self, directory_url: str) -> AcmeAccount | None:
        return copy.deepcopy(self.accounts.get(account_uuid(directory_url)))

    def update_account(self, directory_url: str, decide: AccountDecision) -> AcmeAccount:
        loaded = self.account(directory_url)
        account = decide(loaded)
        if account is None:
            if loaded is None:
                raise Conflict(f"no ACME account for {directory_url} was created")
            return loaded
        self._record(account)
        self.accounts[account.id] = account
        return account

    def _record(self, aggregate: Any) -> None:
        events = aggregate.collect_events()
        self.events += events
        self.recorded += [type(e).__qualname__ for e in events]


_port: CertificateBook = MemoryCertificateBook()
