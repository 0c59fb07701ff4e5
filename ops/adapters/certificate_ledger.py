"""``StoreCertificateLedger``: the gateway's CertificateLedger port over the event store.

Consumes what callers ask of a service's certificates (issue now, a custom certificate, its
removal); emits Certificate events through the ``CertificateBook`` (load → decide → save,
again on a conflict). A custom certificate is checked (``CertificateInspector``) and its
private key sealed *before* anything is recorded, so a refused one records nothing and a
clear key never reaches the store, the outbox or the broker. The cadence (fast mode's
attempts) is the runtime settings' in force.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from domain.certificate import Certificate, certificate_uuid
from domain.errors import NotFound
from domain.ssl_requests import CustomUpload, refuse_issue_while_rate_limited
from domain.ssl_types import SslCadence
from handlers.ssl_ports import CertificateBook, KeySealer
from ops.adapters.certificate_inspector import CertificateInspector


class StoreCertificateLedger:
    """Implements ``gateway.ports.CertificateLedger``. Synchronous, like the store."""

    def __init__(
        self,
        book: CertificateBook,
        sealer: KeySealer,
        inspector: CertificateInspector,
        cadence: Callable[[], SslCadence],
    ) -> None:
        self._book = book
        self._sealer = sealer
        self._inspector = inspector
        self._cadence = cadence

    def request_issue(self, service_id: str, role: str, now: datetime, actor: str) -> None:
        cadence = self._cadence()

        def decide(cert: Certificate) -> None:
            refuse_issue_while_rate_limited(cert, now)
            cert.request_issue(now, actor, cadence)

        self._update(service_id, role, decide)

    def upload_custom(
        self, service_id: str, role: str, upload: CustomUpload, now: datetime, actor: str
    ) -> None:
        cert = self._seeded(service_id, role)
        checked = self._inspector.check(upload, cert.names, now)
        key_sealed = self._sealer.seal(upload.private_key)
        self._update(
            service_id,
            role,
            lambda held: held.upload_custom(
                now,
                # the normalised files: what the customer sent may hold the chain in the
                # certificate or in any order, which Hestia refuses for good
                certificate=checked.bundle.certificate,
                chain=checked.bundle.chain,
                key_sealed=key_sealed,
                facts=checked.facts,
                actor=actor,
            ),
        )

    def remove_custom(self, service_id: str, role: str, now: datetime, actor: str) -> bool:
        cadence = self._cadence()
        removed: list[bool] = []

        def decide(cert: Certificate) -> None:
            removed[:] = [cert.remove_custom(now, actor, cadence)]

        self._update(service_id, role, decide)
        return bool(removed and removed[0])

    def _seeded(self, service_id: str, role: str) -> Certificate:
        if self._book.service(service_id) is None:
            raise NotFound(f"no service {service_id!r}")
        cert = self._book.certificate(certificate_uuid(service_id, role))
        if cert is None:
            raise NotFound(
                f"service {service_id} has no {role} certificate yet (its deploy seeds it)"
            )
        return cert

    def _update(self, service_id: str, role: str, decide: Callable[[Certificate], object]) -> None:
        self._seeded(service_id, role)

        def on_fresh(cert: Certificate | None) -> Certificate | None:
            if cert is None:
                raise NotFound(f"service {service_id} has no {role} certificate")
            decide(cert)
            return cert

        busy = f"the {role} certificate of service {service_id} kept changing; try again"
        self._book.update(certificate_uuid(service_id, role), on_fresh, busy)
