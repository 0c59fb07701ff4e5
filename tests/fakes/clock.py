"""A wall clock the test moves by hand, for the parts that take ``clock: Callable[[], datetime]``
(the gateway, the pipeline, the ticket desk).

Consumes nothing; emits the datetime the test set.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, minutes: int) -> datetime:
        self.now += timedelta(minutes=minutes)
        return self.now


_: Callable[[], datetime] = Clock(datetime(2026, 1, 1))
