"""Riding out an outage: capped back-off, and one warning per outage rather than per retry.

``Outage(part, what)`` consumes the failures and successes of a part's retried work and emits
log lines: one warning when the first failure of an outage arrives, one line when work
succeeds again (how long it lasted), nothing in between. ``Backoff`` is the wait between tries:
0.1 s, doubling, capped at 5 s, back to 0.1 s after a success.

``riding_out(call, outage)`` awaits ``call()`` again and again while it fails because the
database is unavailable (``ops.store.database.database_unavailable``), and returns what it
returns once it succeeds; any other error is raised at once. It gives up only when cancelled:
a consumer whose handler waits here holds the message, unsettled, and the broker delivers it
again when that consumer goes away.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ops.store.database import database_unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_S = 0.1
CAP_S = 5.0


class Backoff:
    def __init__(self, first: float = FIRST_S, cap: float = CAP_S) -> None:
        self._first = first
        self._cap = cap
        self._next = first

    def next(self) -> float:
        """The wait before the next try (doubling up to the cap)."""
        wait, self._next = self._next, min(self._next * 2, self._cap)
        return wait

    def reset(self) -> None:
        self._next = self._first


class Outage:
    """One warning when ``part``'s ``what`` (the database, the broker) first fails, one line
    when it works again; the retries between are logged at debug level only."""

    def __init__(self, part: str, what: str = "the database") -> None:
        self.part = part
        self.what = what
        self._since: float | None = None
        self.failures = 0

    @property
    def ongoing(self) -> bool:
        return self._since is not None

    def failed(self, exc: BaseException) -> None:
        self.failures += 1
        if self._since is None:
            self._since = time.monotonic()
            log.warning(
                "%s: %s is unavailable (%s: %s); retrying with back-off until it is back",
                self.part,
                self.what,
                type(exc).__name__,
                _one_line(exc),
            )
        else:
            log.debug("%s: %s still unavailable (%s)", self.part, self.what, _one_line(exc))

    def recovered(self) -> None:
        if self._since is not None:
            log.warning(
                "%s: %s is back after %.1f s; resuming",
                self.part,
                self.what,
                time.monotonic() - self._since,
            )
            self._since = None


async def riding_out(call: Callable[[], Awaitable[T]], outage: Outage) -> T:
    backoff = Backoff()
    while True:
        try:
            result = await call()
        except Exception as exc:
            if not database_unavailable(exc):
                raise
            outage.failed(exc)
            await asyncio.sleep(backoff.next())
            continue
        outage.recovered()
        return result


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else ""
