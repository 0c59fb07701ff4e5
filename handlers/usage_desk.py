"""The usage desk: runs one node's queued usage sync, recording what the node holds.

``UsageDesk.sync(server_id, sync_id)`` consumes the node's ServerUsage (through the
``UsageBook``) and a driver of the node; it takes the sync (``SyncStarted``: a sync someone
else took, or one no longer queued, is left alone), lists every user of the node in one
command (``v-list-users json``) and, when the provider's shared mail user is among them,
that user's mailboxes of the provider's domain (``v-list-mail-accounts USER DOMAIN json``:
the vanity services' mailboxes), then records both listings in one save. A node that cannot
be reached, or answers what cannot be read, records ``SyncFailed`` with the reason: its
services keep the figures of the last listing, stale, and the tick retries it with back-off.
A sync that is no longer the one running when it ends (its lease ran out and another was
queued) records nothing: ``superseded``; the newer sync lists the node.

``UsageDesk.request(server_id, by)`` is the one way a refresh is asked (the tick, a bulk
refresh, a customer's "Sync now"): the aggregate joins a sync pending or fresh, else queues
one. Emits ServerUsage events, and each sync's outcome as a word for the caller's log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from domain.errors import InvalidInput
from domain.server_usage import ServerUsage, UsageCadence, asked
from domain.usage_figures import mailbox_figures, user_figures
from domain.usage_listing import NodeMailboxes, NodeUsers
from handlers.step import NodeDriver

log = logging.getLogger(__name__)

UsageDecision = Callable[[ServerUsage | None], ServerUsage | None]
# ends a sync on the node's ServerUsage; emits the listings to save with it
ListingDecision = Callable[[ServerUsage], Sequence[NodeUsers | NodeMailboxes]]


@dataclass(frozen=True)
class SharedMail:
    """The provider's shared mail user and domain, whose mailboxes are the vanity services'."""

    mail_user: str
    mail_domain: str


class UsageBook(Protocol):
    def usage(self, server_id: str) -> ServerUsage | None: ...

    def update(self, server_id: str, decide: UsageDecision, busy: str) -> ServerUsage | None:
        """Loads the node's ServerUsage afresh, lets ``decide`` record on it (or make it),
        saves; decided again on a conflict."""

    def record_listings(self, server_id: str, decide: ListingDecision, busy: str) -> None:
        """Like ``update``, saving the listings ``decide`` emits in the same transaction."""


class UsageDrivers(Protocol):
    async def driver(self, server_id: str) -> NodeDriver: ...


class UsageDesk:
    """Runs syncs and takes refreshes (see the module docstring)."""

    def __init__(
        self,
        book: UsageBook,
        drivers: UsageDrivers | None,
        cadence: Callable[[], UsageCadence],
        clock: Callable[[], datetime],
        *,
        shared_mail: SharedMail | None = None,
    ) -> None:
        self._book = book
        self._drivers = drivers
        self._cadence = cadence
        self._clock = clock
        self._shared = shared_mail

    async def request(self, server_id: str, by: str, *, tick: bool = False) -> str:
        """Asks for a sync of the node: ``queued``, ``joined`` or ``fresh`` (``tick``: only
        when the node is due one: else ``not_due``)."""
        outcome = "not_due"
        now = self._clock()

        def decide(usage: ServerUsage | None) -> ServerUsage:  # in a thread: reads settings
            nonlocal outcome
            usage, outcome = asked(usage, server_id, now, by, self._cadence(), tick=tick)
            return usage

        await asyncio.to_thread(self._book.update, server_id, decide, _busy(server_id))
        return outcome

    async def sync(self, server_id: str, sync_id: int) -> str:
        """Runs the queued sync ``sync_id`` of the node; what came of it."""
        now = self._clock()
        started = False

        def start(usage: ServerUsage | None) -> ServerUsage | None:
            nonlocal started
            started = usage is not None and usage.start(now, sync_id)
            return usage

        await asyncio.to_thread(self._book.update, server_id, start, _busy(server_id))
        if not started:
            return "not_queued"
        taken: list[datetime] = []  # when the node answered the users' listing
        try:
            users, mailboxes = await self._listings(server_id, taken)
        except Exception as exc:  # the node away or garbled: stale figures, a retry later
            reason = _reason(server_id, exc)
            log.warning("usage %s: sync %d failed: %s", server_id, sync_id, reason)
            failed = await self._record(server_id, lambda u: self._failed(u, sync_id, reason))
            return "failed" if failed else self._superseded(server_id, sync_id)
        listed_at = self._clock()
        recorded = False

        def listed(usage: ServerUsage) -> Sequence[NodeUsers | NodeMailboxes]:
            nonlocal recorded
            found = usage.listed(listed_at, sync_id, users, mailboxes, taken_at=taken[0])
            recorded = bool(found)
            return found

        await asyncio.to_thread(self._book.record_listings, server_id, listed, _busy(server_id))
        if not recorded:
            return self._superseded(server_id, sync_id)
        log.info("usage %s: sync %d listed %d users", server_id, sync_id, len(users))
        return "listed"

    def _superseded(self, server_id: str, sync_id: int) -> str:
        log.warning(
            "usage %s: sync %d ended after its lease ran out and another sync was queued: "
            "nothing recorded (the newer sync lists the node)",
            server_id,
            sync_id,
        )
        return "superseded"

    async def _listings(
        self, server_id: str, taken: list[datetime]
    ) -> tuple[dict[str, dict[str, int]], dict[tuple[str, str], dict[str, dict[str, int]]]]:
        if self._drivers is None:
            raise RuntimeError("this usage desk takes refreshes only: it reaches no node")
        driver = await self._drivers.driver(server_id)
        answer = await driver.list_json(["v-list-users"])
        taken.append(self._clock())
        users = user_figures(answer)
        mailboxes: dict[tuple[str, str], dict[str, dict[str, int]]] = {}
        shared = self._shared
        if shared is not None and shared.mail_user in users:
            listing = await driver.probe_json(
                ["v-list-mail-accounts", shared.mail_user, shared.mail_domain]
            )
            if listing is not None:  # None: the user holds no such mail domain here
                mailboxes[(shared.mail_user, shared.mail_domain)] = mailbox_figures(listing)
        return users, mailboxes

    def _failed(self, usage: ServerUsage, sync_id: int, reason: str) -> bool:
        cadence = self._cadence()
        return usage.fail(
            self._clock(), sync_id, reason, retry_s=(cadence.retry_s, cadence.period_s)
        )

    async def _record(self, server_id: str, decide: Callable[[ServerUsage], bool]) -> bool:
        """Lets ``decide`` record on the node's ServerUsage as it is now: what it answered."""
        decided = False

        def on_fresh(usage: ServerUsage | None) -> ServerUsage | None:
            nonlocal decided
            decided = usage is not None and decide(usage)
            return usage

        await asyncio.to_thread(self._book.update, server_id, on_fresh, _busy(server_id))
        return decided


def _busy(server_id: str) -> str:
    return f"the usage of server {server_id} kept changing"


def _reason(server_id: str, exc: Exception) -> str:
    """Why a sync failed, in words naming the node (never a secret: errors name commands)."""
    if isinstance(exc, InvalidInput):
        return f"{server_id} answered what is not a listing: {exc}"
    text = str(exc) or type(exc).__name__
    return f"{server_id}: {text}"[:500]
