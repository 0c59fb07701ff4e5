"""``StoreRateLedger``: the SSL desk's RateGuard (handlers/ssl_ports.py) over the event store.

Consumes order intents, failed authorizations and the CA's 429s; emits admissions, and
records ``RateBucket`` events (domain/rate_bucket.py) for today's shard of each bucket an
order spends from. An admission loads its buckets, lets the model decide
(``decide_admission``: all or nothing) and saves every spent bucket in one transaction; a
process that spent from one of them first makes the save fail, and the decision is taken
again on what it left, so two processes racing for the last token never both get it. A
day's first spend opens that day's shard with the TAT the latest earlier shard ended with.
"""

from __future__ import annotations

from datetime import datetime

from domain.rate_bucket import RateBucket, bucket_uuid, earlier_days, shard_day
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


class StoreRateLedger:
    """Implements ``handlers.ssl_ports.RateGuard``. Synchronous, like the store behind it."""

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self._buckets: Repository[RateBucket] = store.repository(RateBucket, "rate bucket")

    def admit(self, intent: OrderIntent, account: str, now: datetime) -> Admission:
        spends = keys_for(intent, account)
        looks = looks_for(intent, account)

        def decide() -> Decision[Admission]:
            buckets = {b.key: self._bucket(b, now) for b in (*spends, *looks)}
            tats = {key: bucket.tat for key, bucket in buckets.items()}
            decision = decide_admission(spends, looks, tats, now)
            for key, tat in decision.spent.items():
                buckets[key].record_spend(now, tat)
            spent = tuple(buckets[key] for key in decision.spent)
            return Decision(decision.admission, spent)

        return self._store.work.run(
            decide,
            busy="the rate-limit buckets kept changing; try again",
            attempts=_CONFLICT_ATTEMPTS,
        )

    def authorization_failed(self, name: str, account: str, now: datetime) -> None:
        (key,) = authz_keys_for([name], account)

        def decide() -> Decision[None]:
            bucket = self._bucket(key, now)
            base = now if bucket.tat is None or bucket.tat < now else bucket.tat
            # counted whatever the model says: the CA has seen the failure
            bucket.record_spend(now, base + AUTHZ_FAILURES.interval)
            return Decision(None, (bucket,))

        self._store.work.run(decide, busy="a rate-limit bucket kept changing; try again")

    def rate_limited(
        self, intent: OrderIntent, account: str, until: datetime, now: datetime
    ) -> None:
        keys = keys_emptied_by_rate_limit(intent, account)

        def decide() -> Decision[None]:
            changed = []
            for key in keys:
                bucket = self._bucket(key, now)
                if bucket.exhaust(now, until, exhausted_until(until, key.limit)):
                    changed.append(bucket)
            return Decision(None, tuple(changed))

        self._store.work.run(decide, busy="a rate-limit bucket kept changing; try again")

    def _bucket(self, key: BucketKey, now: datetime) -> RateBucket:
        """Today's shard of the bucket, opened (not yet saved) when it is today's first use."""
        today = self._buckets.find(bucket_uuid(key.key, shard_day(now)))
        if today is not None:
            return today
        carried = None
        for day in earlier_days(now):
            earlier = self._buckets.find(bucket_uuid(key.key, day))
            if earlier is not None:
                carried = earlier.tat
                break
        return RateBucket.open(key.key, key.limit, now, carried)
