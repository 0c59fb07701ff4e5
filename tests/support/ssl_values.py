"""The values the SSL unit tests build on: a fixed moment ``T0``, a fast ``CADENCE`` (three
fast checks 30 s apart, a freeze of 6 h after three failures) and ``facts(serial, at=,
lifetime=)``, the ``CertificateFacts`` of a certificate for shop.example issued at ``at``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain.ssl_types import CertificateFacts, SslCadence

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
CADENCE = SslCadence(
    fast_attempts=3,
    fast_interval_s=30,
    recheck_interval_s=3600,
    active_interval_s=86400,
    freeze_after=3,
    freeze_s=6 * 3600,
)


def facts(
    serial: str = "1f", *, at: datetime = T0, lifetime: timedelta = timedelta(days=90)
) -> CertificateFacts:
    return CertificateFacts(
        serial=serial,
        not_before=at,
        not_after=at + lifetime,
        names=("shop.example", "www.shop.example"),
        common_name=None,
        issuer="CN=Test Intermediate",
        ari_id="a.b",
        fingerprint="ab" * 32,
    )
