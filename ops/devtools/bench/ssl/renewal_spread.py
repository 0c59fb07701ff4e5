"""From the renewal planner alone: where 10,000 certificates issued in one hour renew.

Each certificate is issued at its own moment spread evenly over one hour, with a random
serial (as Let's Encrypt's are: 128 bits, drawn here from a fixed seed so a run repeats) and
its Certificate aggregate's id as the key; ``domain.ssl_policy.renewal_at`` (no ARI: the
fallback between ½ and ⅓ of the lifetime left) says when it renews. The figure: the busiest
hour's share of all renewals, and that hour against the average of the hours renewals span
(goal: at most 2x).

Consumes a count and lifetimes; emits a Spread per lifetime. No I/O.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from domain.certificate import certificate_uuid
from domain.ssl_policy import renewal_at
from domain.ssl_types import CertificateFacts

ISSUED_FROM = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
SEED = 14


@dataclass(frozen=True)
class Spread:
    certificates: int
    lifetime_days: int
    hours: int  # from the first renewal's hour to the last's
    busiest: int  # renewals in the busiest hour

    @property
    def average(self) -> float:
        return self.certificates / self.hours

    @property
    def busiest_share(self) -> float:
        return self.busiest / self.certificates

    @property
    def ratio(self) -> float:
        """The busiest hour against the average hour (goal: at most 2)."""
        return self.busiest / self.average


def renewal_spread(certificates: int, lifetime_days: int) -> Spread:
    rng = random.Random(SEED)  # noqa: S311 — serials for a simulation, not for security
    lifetime = timedelta(days=lifetime_days)
    per_hour: Counter[datetime] = Counter()
    for i in range(certificates):
        issued = ISSUED_FROM + timedelta(hours=1) * i / certificates
        serial = f"{rng.getrandbits(127) | 1 << 126:x}"
        facts = CertificateFacts(
            serial=serial,
            not_before=issued,
            not_after=issued + lifetime,
            names=(f"site{i}.example", f"www.site{i}.example"),
            common_name=None,
            issuer="CN=bench",
            ari_id=None,
            fingerprint="00" * 32,
        )
        key = str(certificate_uuid(str(100_000 + i), "web"))
        at = renewal_at(facts, key, None, issued)
        per_hour[at.replace(minute=0, second=0, microsecond=0)] += 1
    hours = int((max(per_hour) - min(per_hour)) / timedelta(hours=1)) + 1
    return Spread(certificates, lifetime_days, hours, max(per_hour.values()))
