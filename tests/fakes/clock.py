"""Clocks the test moves by hand: a datetime one for the parts that take
``clock: Callable[[], datetime]`` (the gateway, the pipeline, the ticket desk), and one of float
seconds for those that take ``time.time`` or ``time.monotonic`` (the scheduler, the settings
reader).

Consumes nothing; emits the time the test set.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta


class Clock:
    """Wall-clock time where the test puts it, moved on by ``advance``."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, minutes: float = 0, *, seconds: float = 0) -> datetime:
        self.now += timedelta(minutes=minutes, seconds=seconds)
        return self.now


class SecondsClock:
    """Seconds as ``time.time`` or ``time.monotonic`` gives them, where the test puts them."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


_wall: Callable[[], datetime] = Clock(datetime(2026, 1, 1))
_seconds: Callable[[], float] = SecondsClock(0.0)
