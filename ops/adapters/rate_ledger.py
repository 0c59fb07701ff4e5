"""``StoreRateLedger``: the SSL desk's RateGuard (handlers/ssl_ports.py) over the event store.

Consumes order intents, failed authorizations and the CA's 429s; emits admissions, and
records ``RateBucket`` events (domain/rate_bucket.py) for today's shard of each bucket an
order spends from. An admission loads its buckets, lets the model decide
(``decide_admission``: all or nothing) and saves every spent bucket in one transaction; a
process that spent from one of them first makes the save fail, and the decision is taken
again on what it left, so two processes racing for the last token never both get it. A
day's first spend opens that day's shard with the TAT the live shard (the bucket's head says
which) ended with, and saves, with it, that shard carried forward and the head moved: a
process still spending on the day before (just before 00:00 UTC, or with a clock behind)
writes that same shard, so one of the two saves fails and decides again — on the new day's
shard, once the old one is carried forward.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain.rate_bucket import (
    RateBucket,
    RateBucketHead,
    bucket_uuid,
    earlier_days,
    head_uuid,
    shard_day,
)
from domain.rate_limits import (
    AUTHZ_FAILURES,
    BucketKey,
    authz_keys_for,
    decide_admission,
    exhausted_until,
    keys_emptied_by_rate_limit,
    keys_for,
    looks_for,
)
from domain.ssl_types import Admission, OrderIntent
from ops.store.event_store import EventStore
from ops.store.unit_of_work import Decision, Repository

# every admission of the account's orders meets on one bucket: allow for a crowd
_CONFLICT_ATTEMPTS = 30


@dataclass(frozen=True)
class Shard:
    """The shard a spend is recorded in, and what must be saved with it when it is new: the
    shard it carries from (carried forward) and the bucket's head (moved or started)."""

    bucket: RateBucket
    opening: tuple[Any, ...] = ()

    def to_save(self) -> tuple[Any, ...]:
        return (self.bucket, *self.opening)


class StoreRateLedger:
    """Implements ``handlers.ssl_ports.RateGuard``. Synchronous, like the store behind it."""

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self._buckets: Repository[RateBucket] = store.repository(RateBucket, "rate bucket")
        self._heads: Repository[RateBucketHead] = store.repository(
            RateBucketHead, "rate bucket head"
        )

    def admit(self, intent: OrderIntent, account: str, now: datetime) -> Admission:
        spends = keys_for(intent, account)
        looks = looks_for(intent, account)

        def decide() -> Decision[Admission]:
            shards = {b.key: self._shard(b, now) for b in (*spends, *looks)}
            tats = {key: shard.bucket.tat for key, shard in shards.items()}
            decision = decide_admission(spends, looks, tats, now)
            for key, tat in decision.spent.items():
                shards[key].bucket.record_spend(now, tat)
            spent = tuple(a for key in decision.spent for a in shards[key].to_save())
            return Decision(decision.admission, spent)

        return self._store.work.run(
            decide,
            busy="the rate-limit buckets kept changing; try again",
            attempts=_CONFLICT_ATTEMPTS,
        )

    def authorization_failed(self, name: str, account: str, now: datetime) -> None:
        (key,) = authz_keys_for([name], account)

        def decide() -> Decision[None]:
            shard = self._shard(key, now)
            bucket = shard.bucket
            base = now if bucket.tat is None or bucket.tat < now else bucket.tat
            # counted whatever the model says: the CA has seen the failure
            bucket.record_spend(now, base + AUTHZ_FAILURES.interval)
            return Decision(None, shard.to_save())

        self._store.work.run(decide, busy="a rate-limit bucket kept changing; try again")

    def rate_limited(
        self, intent: OrderIntent, account: str, until: datetime, now: datetime
    ) -> None:
        keys = keys_emptied_by_rate_limit(intent, account)

        def decide() -> Decision[None]:
            changed: list[Any] = []
            for key in keys:
                shard = self._shard(key, now)
                if shard.bucket.exhaust(now, until, exhausted_until(until, key.limit)):
                    changed += shard.to_save()
            return Decision(None, tuple(changed))

        self._store.work.run(decide, busy="a rate-limit bucket kept changing; try again")

    def _shard(self, key: BucketKey, now: datetime) -> Shard:
        """The live shard of the bucket: today's, opened (not yet saved) on today's first use;
        a later day's when one has taken over already (this clock is behind another's)."""
        today = shard_day(now)
        bucket = self._buckets.find(bucket_uuid(key.key, today))
        if bucket is not None and bucket.live:
            return Shard(bucket)  # whoever opens a later day's shard writes this one too
        head = self._heads.find(head_uuid(key.key))
        latest = self._live(key.key, head, now)
        if latest is not None and latest.shard_day >= today:
            return Shard(latest)
        opened = RateBucket.open(key.key, key.limit, now, None if latest is None else latest.tat)
        opening: list[Any] = []
        if latest is not None:
            latest.carry_forward(now, today)
            opening.append(latest)
        if head is None:
            head = RateBucketHead.start(key.key, today, now)
        else:
            head.move(now, today)
        opening.append(head)
        return Shard(opened, tuple(opening))

    def _live(self, key: str, head: RateBucketHead | None, now: datetime) -> RateBucket | None:
        """The shard the head names; without a head (shards recorded before heads), the
        latest shard of the days before ``now``'s that are looked back at."""
        if head is not None:
            return self._buckets.get(bucket_uuid(key, head.shard_day), f"{key} {head.day}")
        for day in earlier_days(now):
            earlier = self._buckets.find(bucket_uuid(key, day))
            if earlier is not None and earlier.live:
                return earlier
        return None
