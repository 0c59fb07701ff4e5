"""The ServerUsage aggregate: the usage syncs of one node, each one listing of every user.

idle → queued (``SyncQueued``) → running (``SyncStarted``) → idle with figures
(``SyncListed``, saved with its listings: domain/usage_listing.py ``NodeUsers.Listed``, and
``NodeMailboxes.Listed`` for each vanity mail domain the node holds) or idle and failing
(``SyncFailed``: the figures collected before are kept, marked stale).

A refresh of any kind (the scheduler's tick, "Refresh all", a bulk refresh, a customer's
"Sync now") asks ``request_sync``; it joins a sync queued or running (unless its lease ran
out: the process running it died, and the refresh, or the next tick, queues another), and
one that collected within ``fresh_s``; otherwise it queues a new one. So five "Sync now" in
a row and a tick cause one listing. A failed sync is retried at ``retry_at`` (the tick asks
``due``); a tick or a "Sync now" asked before then joins the retry, a staff refresh
(``refresh:…``) does not wait for it: it queues a sync at once.

A staff refresh asked while the sync is running may come after the node's answer was taken:
it records ``RelistAsked`` with its time, and when the sync ends listed with an answer taken
before the latest such ask, ``SyncQueued`` for one more sync is recorded with it (any number
of such asks: one more listing). An ask before the answer was taken is answered by it and
lists nothing more, so a refresh, five "Sync now" and a tick still cause one listing. Ticks
and "Sync now" only join. Only the sync running records its end: a sync whose lease ran out
and was queued again records nothing when it ends late.

Consumes decisions taken with the time passed in (``now``); emits past-tense events. The
listings carry every user's figures as the node reported them (``UNITS``), with the
collection time, so the usage view is a pure fold of them; they are aggregates of their own,
so this one stays small to load.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from eventsourcing.domain import Aggregate

from domain.usage_listing import NodeMailboxes, NodeUsers

SERVER_USAGE_NAMESPACE = uuid.UUID("9d3e61b2-4c7a-4f0e-8a15-2b6c9e0d7f43")
# what the figures of a listing are counted in: Hestia's U_DISK and U_BANDWIDTH are MiB
# (``du -m`` and the web logs' bytes / 1048576), the rest whole numbers
UNITS: dict[str, str] = {
    "disk_mb": "MiB",
    "bandwidth_mb": "MiB",
    "web_domains": "count",
    "dns_domains": "count",
    "mail_domains": "count",
    "mail_accounts": "count",
    "databases": "count",
}
JOINED, QUEUED, FRESH = "joined", "queued", "fresh"
STAFF_REFRESH = "refresh"  # ``refresh:ACTOR``: "Refresh all", "force sync", a bulk refresh


def staff_refresh(by: str) -> bool:
    """Whether ``by`` (who asked) is staff's refresh, which never waits for a back-off."""
    return by == STAFF_REFRESH or by.startswith(STAFF_REFRESH + ":")


@dataclass(frozen=True)
class UsageCadence:
    """When syncs happen (seconds): see ops/settings.py's ``usage_*``."""

    period_s: float = 3600.0
    fresh_s: float = 60.0
    retry_s: float = 30.0
    lease_s: float = 300.0


def server_usage_uuid(server_id: str) -> uuid.UUID:
    """Stable per server: every refresh of one node finds the same aggregate."""
    return uuid.uuid5(SERVER_USAGE_NAMESPACE, f"server-usage/{server_id}")


def retry_delay(failures: int, initial_s: float, most_s: float) -> float:
    """Seconds before the retry after ``failures`` failed syncs in a row: doubling, capped."""
    return float(min(most_s, initial_s * 2 ** max(0, failures - 1)))


class ServerUsage(Aggregate):
    class Opened(Aggregate.Created):
        server_id: str

    def __init__(self, server_id: str) -> None:
        self.server_id = server_id
        self.syncs = 0  # syncs queued so far: the next one's number
        self.sync: dict[str, Any] | None = None  # the one queued or running: id, state, since
        self.collected_at: datetime | None = None  # the last listing's time
        self.failures = 0  # failed syncs in a row
        self.retry_at: datetime | None = None
        self.last_error: str | None = None
        self.relist_at: datetime | None = None  # the latest staff ask while the sync ran
        self.relist_by: str | None = None

    class Event(Aggregate.Event):
        def apply(self, aggregate: Aggregate) -> None:
            assert isinstance(aggregate, ServerUsage)
            self.apply_to(aggregate)

        def apply_to(self, usage: ServerUsage) -> None:
            pass

    class SyncQueued(Event):
        server_id: str  # for the desk, which gets the event and not the aggregate
        sync_id: int
        by: str  # tick, refresh, sync-now: who asked first

        def apply_to(self, usage: ServerUsage) -> None:
            usage.syncs = self.sync_id
            usage.sync = {"id": self.sync_id, "state": "queued", "since": self.timestamp}
            usage.relist_at = usage.relist_by = None

    class SyncStarted(Event):
        sync_id: int

        def apply_to(self, usage: ServerUsage) -> None:
            usage.sync = {"id": self.sync_id, "state": "running", "since": self.timestamp}

    class RelistAsked(Event):
        """Staff asked for a refresh while sync ``sync_id`` ran: when that sync's answer was
        taken before ``timestamp``, it ends with one more sync queued."""

        sync_id: int
        by: str

        def apply_to(self, usage: ServerUsage) -> None:
            usage.relist_at = self.timestamp
            usage.relist_by = self.by

    class SyncListed(Event):
        """The sync listed the node: ``users`` users, and the mailboxes of ``mail_domains``
        (the listings themselves are NodeUsers and NodeMailboxes, saved with this)."""

        server_id: str
        sync_id: int
        collected_at: datetime
        users: int
        mail_domains: list[str]

        def apply_to(self, usage: ServerUsage) -> None:
            usage.sync = None
            usage.collected_at = self.collected_at
            usage.failures = 0
            usage.retry_at = None
            usage.last_error = None
            usage.relist_at = usage.relist_by = None

    class SyncFailed(Event):
        server_id: str
        sync_id: int
        reason: str
        failures: int
        retry_at: datetime

        def apply_to(self, usage: ServerUsage) -> None:
            usage.sync = None
            usage.failures = self.failures
            usage.retry_at = self.retry_at
            usage.last_error = self.reason
            usage.relist_at = usage.relist_by = None  # the asks joined the attempt that failed

    # --- creating ---------------------------------------------------------------------------

    @classmethod
    def open(cls, server_id: str, now: datetime) -> ServerUsage:
        return cls._create(
            cls.Opened, id=server_usage_uuid(server_id), timestamp=now, server_id=server_id
        )

    # --- deciding ---------------------------------------------------------------------------

    def pending(self, now: datetime, lease_s: float) -> bool:
        """A sync is queued or running, and its lease has not run out."""
        if self.sync is None:
            return False
        return bool(now - self.sync["since"] < timedelta(seconds=lease_s))

    def lapsed(self, now: datetime, lease_s: float) -> bool:
        """A sync is queued or running but its lease ran out: lost with its process."""
        return self.sync is not None and not self.pending(now, lease_s)

    def running(self, sync_id: int) -> bool:
        """Whether ``sync_id`` is the sync running now (the one whose end may be recorded)."""
        sync = self.sync
        return sync is not None and sync["id"] == sync_id and sync["state"] == "running"

    def due(self, now: datetime, period_s: float, lease_s: float) -> bool:
        """Whether the scheduler's tick should queue a sync: the one pending was lost (its
        lease ran out), or none is pending and the last one collected a period ago (or
        never), or its retry has come."""
        if self.sync is not None:
            return self.lapsed(now, lease_s)
        if self.retry_at is not None:
            return now >= self.retry_at
        if self.collected_at is None:
            return True
        return now - self.collected_at >= timedelta(seconds=period_s)

    def request_sync(self, now: datetime, by: str, *, fresh_s: float, lease_s: float) -> str:
        """Joins the pending sync, or a fresh one, or a retry still to come (unless staff
        asked); else queues a sync. What it came to: ``joined``, ``fresh`` or ``queued``."""
        if self.pending(now, lease_s):
            assert self.sync is not None
            if staff_refresh(by) and self.sync["state"] == "running":
                # the node's answer may be taken already: one more sync if it was
                self.trigger_event(
                    ServerUsage.RelistAsked, timestamp=now, sync_id=self.sync["id"], by=by
                )
            return JOINED
        if self.sync is None:  # (else a sync lapsed: queued again at once)
            if self.retry_at is not None and now < self.retry_at and not staff_refresh(by):
                return JOINED  # the node failed: its retry is the next listing
            collected = self.collected_at
            if (
                self.retry_at is None
                and collected is not None
                and now - collected < timedelta(seconds=fresh_s)
            ):
                return FRESH
        self._queue(now, by)
        return QUEUED

    def _queue(self, now: datetime, by: str) -> None:
        self.trigger_event(
            ServerUsage.SyncQueued,
            timestamp=now,
            server_id=self.server_id,
            sync_id=self.syncs + 1,
            by=by,
        )

    def start(self, now: datetime, sync_id: int) -> bool:
        """Takes the queued sync ``sync_id`` (False: it is not the one queued)."""
        if self.sync is None or self.sync["id"] != sync_id or self.sync["state"] != "queued":
            return False
        self.trigger_event(ServerUsage.SyncStarted, timestamp=now, sync_id=sync_id)
        return True

    def listed(
        self,
        now: datetime,
        sync_id: int,
        users: dict[str, dict[str, int]],
        mailboxes: dict[tuple[str, str], dict[str, dict[str, int]]] | None = None,
        *,
        taken_at: datetime | None = None,
    ) -> list[NodeUsers | NodeMailboxes]:
        """Ends the sync with its listings: the users, then each mail domain's mailboxes
        (keyed by (mail user, mail domain)). Emits the listings, to save with this; none
        (nothing recorded) when ``sync_id`` is not the sync running. ``taken_at``: when the
        node answered the users' listing (``now`` when not given); a staff refresh asked
        after it queues one more sync."""
        if not self.running(sync_id):
            return []
        taken_at = now if taken_at is None else taken_at
        asked_after = self.relist_at is not None and self.relist_at > taken_at
        again_by = self.relist_by if asked_after else None
        found = sorted((mailboxes or {}).items())
        self.trigger_event(
            ServerUsage.SyncListed,
            timestamp=now,
            server_id=self.server_id,
            sync_id=sync_id,
            collected_at=now,
            users=len(users),
            mail_domains=[domain for (_, domain), _ in found],
        )
        listings: list[NodeUsers | NodeMailboxes] = [
            NodeUsers.record(self.server_id, sync_id, now, dict(UNITS), users)
        ]
        for (mail_user, mail_domain), listed in found:
            listings.append(
                NodeMailboxes.record(self.server_id, sync_id, now, mail_user, mail_domain, listed)
            )
        if again_by is not None:
            self._queue(now, again_by)
        return listings

    def fail(
        self, now: datetime, sync_id: int, reason: str, *, retry_s: tuple[float, float]
    ) -> bool:
        """The node could not be listed: its figures stay, stale; retried with back-off
        (``retry_s``: the first delay and the longest). False, recording nothing, when
        ``sync_id`` is not the sync running."""
        if not self.running(sync_id):
            return False
        failures = self.failures + 1
        delay = retry_delay(failures, *retry_s)
        self.trigger_event(
            ServerUsage.SyncFailed,
            timestamp=now,
            server_id=self.server_id,
            sync_id=sync_id,
            reason=reason,
            failures=failures,
            retry_at=now + timedelta(seconds=delay),
        )
        return True


def asked(
    usage: ServerUsage | None,
    server_id: str,
    now: datetime,
    by: str,
    cadence: UsageCadence,
    *,
    tick: bool = False,
) -> tuple[ServerUsage, str]:
    """A refresh of the node asked by ``by``: the aggregate (made on the first ask) and what
    the ask came to (``queued``, ``joined``, ``fresh``; for a ``tick``, ``not_due`` when the
    node is not due a sync)."""
    usage = usage or ServerUsage.open(server_id, now)
    if tick and not usage.due(now, cadence.period_s, cadence.lease_s):
        return usage, "not_due"
    outcome = usage.request_sync(now, by, fresh_s=cadence.fresh_s, lease_s=cadence.lease_s)
    return usage, outcome
