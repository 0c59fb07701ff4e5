"""The projection runner: follows the event store's notification log into the views.

Consumes notifications (pages of ``batch_size`` after the slowest view's position), decodes
each once, and emits one ``ViewStore.apply_page`` per page — every view's rows and tracking
position in one transaction. Between pages it remembers the positions that transaction
returned; the stored, locked positions stay the truth, so a memory made stale by a second
runner only costs a page read again, a runner killed at any moment resumes where the last
committed page left off, and two runners of the same views do not double-apply.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from ops.runtime.pause import pause
from ops.store.database import database_unavailable
from ops.store.event_store import EventStore
from ops.store.outage import Backoff, Outage
from ops.views.view_store import ViewStore
from projections.view import Recorded, View

log = logging.getLogger(__name__)


class ProjectionRunner:
    def __init__(
        self,
        store: EventStore,
        view_store: ViewStore,
        views: Sequence[View],
        *,
        batch_size: int = 1000,
        idle_interval: float = 0.05,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._store = store
        self._view_store = view_store
        self._views = list(views)
        self._batch_size = batch_size
        self._idle_interval = idle_interval
        self._positions: dict[str, int] | None = None  # read once, then what apply_page returns

    def catch_up(self, *, until: int | None = None, max_batches: int | None = None) -> int:
        """Applies what is new, page by page; returns how many notifications were consumed.

        ``until`` stops at that notification id (replay rebuilds up to a live position);
        ``max_batches`` stops after that many pages (a bounded step for ``run``).
        """
        consumed = 0
        batches = 0
        while max_batches is None or batches < max_batches:
            page = self._step(until)
            if page == 0:
                break
            consumed += page
            batches += 1
        return consumed

    def _step(self, until: int | None) -> int:
        if self._positions is None:
            self._positions = self._view_store.positions()
        after = min(self._positions[view.name] for view in self._views)
        limit = self._batch_size if until is None else min(self._batch_size, until - after)
        if limit <= 0:
            return 0
        notifications = self._store.notifications(after, limit)
        recorded = [
            Recorded(position=n.id, event=self._store.decode(n))
            for n in notifications
            if until is None or n.id <= until
        ]
        if recorded:
            self._positions.update(self._view_store.apply_page(self._views, after, recorded))
        return len(recorded)

    async def run(self, stop: asyncio.Event) -> None:
        """Follows the log until ``stop`` is set; one page per step, so stopping is prompt.

        A failing step (the database gone, say) is retried with back-off (0.1 s doubling to
        5 s), one warning per outage: the position did not move, so nothing is lost or
        applied twice. Any other failure is logged with its traceback each time.
        """
        backoff = Backoff()
        outage = Outage("projections")
        clock = asyncio.get_running_loop()
        while not stop.is_set():
            started = clock.time()
            try:
                consumed = await asyncio.to_thread(self.catch_up, max_batches=1)
            except Exception as exc:
                if database_unavailable(exc):
                    outage.failed(exc)
                else:
                    log.exception("projection step failed; retrying")
                await pause(stop, backoff.next())
                continue
            backoff.reset()
            outage.recovered()
            if consumed < self._batch_size:
                # the log is read to its end: poll again one interval after this step began,
                # so an event recorded during the step waits no longer than one between polls
                await pause(stop, self._idle_interval - (clock.time() - started))
