"""The ``RateGuard`` port (handlers/ssl_ports.py) in memory: the same model as
StoreRateLedger (domain/rate_limits.py), its buckets' TATs in a dict.

Consumes intents, failed authorizations and 429s; emits admissions, and keeps ``admitted``
and ``refused`` (the intents, in order) for tests to count.
"""

from __future__ import annotations

from datetime import datetime

from domain.rate_limits import (
    AUTHZ_FAILURES,
    authz_keys_for,
    decide_admission,
    exhausted_until,
    keys_emptied_by_rate_limit,
    keys_for,
    looks_for,
)
from domain.ssl_types import Admission, OrderIntent
from handlers.ssl_ports import RateGuard


class MemoryRateGuard:
    def __init__(self) -> None:
        self.tats: dict[str, datetime | None] = {}
        self.admitted: list[OrderIntent] = []
        self.refused: list[OrderIntent] = []

    def admit(self, intent: OrderIntent, account: str, now: datetime) -> Admission:
        decision = decide_admission(
            keys_for(intent, account), looks_for(intent, account), self.tats, now
        )
        self.tats.update(decision.spent)
        (self.admitted if decision.admission.allowed else self.refused).append(intent)
        return decision.admission

    def authorization_failed(self, name: str, account: str, now: datetime) -> None:
        (key,) = authz_keys_for([name], account)
        tat = self.tats.get(key.key)
        self.tats[key.key] = max(tat or now, now) + AUTHZ_FAILURES.interval

    def rate_limited(
        self, intent: OrderIntent, account: str, until: datetime, now: datetime
    ) -> None:
        for key in keys_emptied_by_rate_limit(intent, account):
            tat = self.tats.get(key.key)
            self.tats[key.key] = max(tat or now, exhausted_until(until, key.limit))


_port: RateGuard = MemoryRateGuard()
