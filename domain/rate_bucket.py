"""The RateBucket aggregate: one Let's Encrypt bucket (domain/rate_limits.py) for one day.

Consumes spends decided by the rate-limit model (``decide_admission``) and the CA's own word
(a 429 with Retry-After); emits ``Opened`` (the day's first event, carrying the TAT the
latest earlier shard ended with), ``Spent`` and ``Exhausted``. One aggregate per bucket key
and UTC day keeps each small (a day holds at most a day's orders) while admission stays
exact across processes: two that spend from the same bucket at once both write the next
version of the same aggregate, and the store lets only one of them save — the other decides
again on what the winner left.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from eventsourcing.domain import Aggregate

from domain.errors import InvalidInput
from domain.rate_limits import LIMITS_BY_NAME, Limit

RATE_BUCKET_NAMESPACE = uuid.UUID("c2b7e5d1-0f3a-4e69-8d42-6a1b9c7e3f05")
# how far back a new day's shard looks for the TAT to carry: a TAT is never more than the
# longest period (7 days) ahead, so an older shard's TAT has run out
LOOK_BACK_DAYS = 8


def bucket_uuid(key: str, day: date) -> uuid.UUID:
    return uuid.uuid5(RATE_BUCKET_NAMESPACE, f"rate-bucket/{key}/{day.isoformat()}")


def shard_day(now: datetime) -> date:
    """The UTC day a spend at ``now`` is recorded in."""
    if now.tzinfo is None:
        raise InvalidInput("a rate-limit time must carry its time zone")
    return now.astimezone(UTC).date()


class RateBucket(Aggregate):
    class Opened(Aggregate.Created):
        key: str
        day: str  # ISO date
        limit: str  # the Limit's name
        tat: datetime | None  # carried from the latest earlier shard

    def __init__(self, key: str, day: str, limit: str, tat: datetime | None) -> None:
        self.key = key
        self.day = day
        self.limit_name = limit
        self.tat = tat

    class Spent(Aggregate.Event):
        tat: datetime

        def apply(self, aggregate: Any) -> None:
            aggregate.tat = self.tat

    class Exhausted(Aggregate.Event):
        """The CA refused (429): no token until ``until``, whatever the model thought."""

        until: datetime
        tat: datetime

        def apply(self, aggregate: Any) -> None:
            aggregate.tat = self.tat

    @classmethod
    def open(cls, key: str, limit: Limit, now: datetime, carried: datetime | None) -> RateBucket:
        if limit.name not in LIMITS_BY_NAME:
            raise InvalidInput(f"no rate limit named {limit.name!r}")
        day = shard_day(now)
        return cls._create(
            cls.Opened,
            id=bucket_uuid(key, day),
            timestamp=now,
            key=key,
            day=day.isoformat(),
            limit=limit.name,
            tat=carried,
        )

    @property
    def limit(self) -> Limit:
        return LIMITS_BY_NAME[self.limit_name]

    def record_spend(self, now: datetime, tat: datetime) -> None:
        self.trigger_event(RateBucket.Spent, timestamp=now, tat=tat)

    def exhaust(self, now: datetime, until: datetime, tat: datetime) -> bool:
        """Records that the CA has no token before ``until``; False when the model's TAT
        says so already."""
        if self.tat is not None and self.tat >= tat:
            return False
        self.trigger_event(RateBucket.Exhausted, timestamp=now, until=until, tat=tat)
        return True


def earlier_days(now: datetime) -> list[date]:
    """The days before ``now``'s shard whose TAT a new shard may carry, latest first."""
    today = shard_day(now)
    return [today - timedelta(days=n) for n in range(1, LOOK_BACK_DAYS + 1)]
