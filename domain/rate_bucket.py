"""The RateBucket aggregate: one Let's Encrypt bucket (domain/rate_limits.py) for one day,
and RateBucketHead: which day's shard of a bucket is the live one.

Consumes spends decided by the rate-limit model (``decide_admission``) and the CA's own word
(a 429 with Retry-After); emits ``Opened`` (the day's first event, carrying the TAT the
latest earlier shard ended with), ``Spent``, ``Exhausted`` and ``CarriedForward`` (the shard
a later day's shard was opened from: from then on it takes no spend). One aggregate per
bucket key and UTC day keeps each small (a day holds at most a day's orders) while admission
stays exact across processes: two that spend from the same bucket at once both write the
next version of the same aggregate, and the store lets only one of them save — the other
decides again on what the winner left. Opening a day's shard writes the shard it carries
from (``CarriedForward``) and the head (``Moved``) in the same transaction, so an opener and
a spender on the day before also meet on one aggregate (across 00:00 UTC), and the state is
carried however many days lie between two uses.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from eventsourcing.domain import Aggregate

from domain.errors import InvalidInput
from domain.rate_limits import LIMITS_BY_NAME, Limit

RATE_BUCKET_NAMESPACE = uuid.UUID("c2b7e5d1-0f3a-4e69-8d42-6a1b9c7e3f05")
# how far back a new day's shard looks for the TAT to carry when its bucket has no head
# (shards recorded before heads were): only that once; the head finds the live one after
LOOK_BACK_DAYS = 8


def bucket_uuid(key: str, day: date) -> uuid.UUID:
    return uuid.uuid5(RATE_BUCKET_NAMESPACE, f"rate-bucket/{key}/{day.isoformat()}")


def head_uuid(key: str) -> uuid.UUID:
    return uuid.uuid5(RATE_BUCKET_NAMESPACE, f"rate-bucket-head/{key}")


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
        self.carried_to: str | None = None  # the later day's shard that took over (ISO date)

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

    class CarriedForward(Aggregate.Event):
        """A later day's shard was opened from this one: spends go there from now on."""

        to_day: str  # ISO date

        def apply(self, aggregate: Any) -> None:
            aggregate.carried_to = self.to_day

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

    @property
    def shard_day(self) -> date:
        return date.fromisoformat(self.day)

    @property
    def live(self) -> bool:
        """Whether spends are recorded here (no later day's shard has taken over)."""
        return self.carried_to is None

    def carry_forward(self, now: datetime, to: date) -> None:
        """Recorded when ``to``'s shard is opened from this one (in the same transaction)."""
        if not self.live or to <= self.shard_day:
            raise InvalidInput(f"the shard of {self.day} cannot be carried to {to.isoformat()}")
        self.trigger_event(RateBucket.CarriedForward, timestamp=now, to_day=to.isoformat())

    def record_spend(self, now: datetime, tat: datetime) -> None:
        self.trigger_event(RateBucket.Spent, timestamp=now, tat=tat)

    def exhaust(self, now: datetime, until: datetime, tat: datetime) -> bool:
        """Records that the CA has no token before ``until``; False when the model's TAT
        says so already."""
        if self.tat is not None and self.tat >= tat:
            return False
        self.trigger_event(RateBucket.Exhausted, timestamp=now, until=until, tat=tat)
        return True


class RateBucketHead(Aggregate):
    """Which day's shard of one bucket is live: moved (a new version) each time a day's shard
    is opened, so two processes opening shards of one bucket meet here too."""

    class Started(Aggregate.Created):
        key: str
        day: str  # ISO date of the live shard

    def __init__(self, key: str, day: str) -> None:
        self.key = key
        self.day = day

    class Moved(Aggregate.Event):
        day: str

        def apply(self, aggregate: Any) -> None:
            aggregate.day = self.day

    @classmethod
    def start(cls, key: str, day: date, now: datetime) -> RateBucketHead:
        return cls._create(
            cls.Started, id=head_uuid(key), timestamp=now, key=key, day=day.isoformat()
        )

    @property
    def shard_day(self) -> date:
        return date.fromisoformat(self.day)

    def move(self, now: datetime, day: date) -> None:
        if day <= self.shard_day:
            raise InvalidInput(f"the live shard of {self.key} is {self.day} already")
        self.trigger_event(RateBucketHead.Moved, timestamp=now, day=day.isoformat())


def earlier_days(now: datetime) -> list[date]:
    """The days before ``now``'s shard whose TAT a new shard may carry, latest first."""
    today = shard_day(now)
    return [today - timedelta(days=n) for n in range(1, LOOK_BACK_DAYS + 1)]
