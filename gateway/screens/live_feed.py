"""Live updates for every open page from one poll of the views per process.

``LiveFeed`` consumes a ``ChangeSource`` — the views' furthest position and which services'
rows changed after a given one — and emits, to every page that ``watch``es a service (or
every change: ``watch(None)``), the position at which something it shows changed. One
poller asks the source every ``every_s`` while anyone watches, whatever the number of open
pages: 200 pages cost one query a tick, not 200. A page that must read its new state asks
``shared``: the first of the pages on the same service and position reads it, the others
get the same answer (one read per changed service, not per page).

Changes coalesce: a page that is busy sending its last update wakes once for the latest
position, never once per event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Protocol

DEFAULT_EVERY_S = 0.25
_log = logging.getLogger("hostwright.gateway")


class ChangeSource(Protocol):
    """The views' progress (synchronous: the feed calls it through ``asyncio.to_thread``)."""

    def changes_after(self, position: int | None) -> tuple[int, set[str]]:
        """The views' furthest position now, and the ids of the services whose rows changed
        after ``position`` (none asked for when it is None)."""

    async def moved(self, most_s: float) -> None:
        """Returns when the views may have moved: at once on word from the database where it
        sends one (then it may wait longer than ``most_s``), else after ``most_s``."""

    async def quiet(self) -> None:
        """Nobody watches any more: let go of what ``moved`` holds."""


class Watch:
    """One page's wait for changes to what it shows."""

    def __init__(self, key: str | None, position: int) -> None:
        self.key = key
        self.position = position
        self._changed = asyncio.Event()

    def changed(self, position: int) -> None:
        self.position = max(self.position, position)
        self._changed.set()

    async def next(self, timeout: float | None = None) -> int | None:
        """The position of the next change (at once when one came since the last call);
        None when ``timeout`` passes first."""
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except TimeoutError:
            return None
        self._changed.clear()
        return self.position


class LiveFeed:
    def __init__(self, source: ChangeSource, *, every_s: float = DEFAULT_EVERY_S) -> None:
        self._source = source
        self._every_s = every_s
        self._watches: set[Watch] = set()
        self._position = 0
        self._poller: asyncio.Task[None] | None = None
        self._idle = False  # the poller was cancelled because the last page closed
        self._reads: dict[tuple[str, int], asyncio.Future[Any]] = {}

    @property
    def position(self) -> int:
        """The furthest position the feed has seen."""
        return self._position

    @contextlib.contextmanager
    def watch(self, key: str | None) -> Iterator[Watch]:
        """Wakes on every change to the service ``key`` (every change when None) while open."""
        watch = Watch(key, self._position)
        self._watches.add(watch)
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll())
        try:
            yield watch
        finally:
            self._watches.discard(watch)
            if not self._watches and self._poller is not None and not self._idle:
                # the last page closed: stop waiting for the views (a NOTIFY wait is long)
                self._idle = True
                self._poller.cancel()

    async def shared(self, key: str, position: int, read: Callable[[], Awaitable[Any]]) -> Any:
        """``read()``'s answer for ``key`` at ``position``, read once for every page asking."""
        found = self._reads.get((key, position))
        if found is None:
            found = asyncio.ensure_future(read())
            self._reads[(key, position)] = found
        return await asyncio.shield(found)

    async def _poll(self) -> None:
        try:
            while True:
                try:
                    await self._follow()
                except asyncio.CancelledError:
                    if not self._idle:  # not the last page closing: the loop is stopping
                        raise
                    asyncio.current_task().uncancel()  # type: ignore[union-attr]
                self._idle = False
                await self._source.quiet()
                if not self._watches:  # nobody came while it let go: done (no await to here)
                    return
        finally:
            self._poller = None

    async def _follow(self) -> None:
        """Tells the watches of every change while any is open."""
        started = False
        while self._watches:
            try:
                position, services = await asyncio.to_thread(
                    self._source.changes_after, self._position if started else None
                )
            except Exception as exc:  # the views' database is away: try again next tick
                _log.warning("live feed: the views did not answer (%s)", type(exc).__name__)
                await self._source.moved(self._every_s)
                continue
            if not started:  # the first answer is where the feed starts from
                started = True
                # a page that opened before it read at a position no one knows (a change may
                # have landed between its read and this answer): it reads again, once, like
                # on a change
                stale = [w for w in self._watches if w.position != position]
                if position != self._position:
                    self._position = position
                    self._reads = {k: r for k, r in self._reads.items() if not r.done()}
                for watch in stale:
                    watch.changed(position)
            elif position != self._position:
                self._position = position
                self._reads = {k: read for k, read in self._reads.items() if not read.done()}
                for watch in list(self._watches):
                    if watch.key is None or watch.key in services:
                        watch.changed(position)
            await self._source.moved(self._every_s)
