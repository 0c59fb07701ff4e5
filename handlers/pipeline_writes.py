"""The pipeline's writes to the store, each run in a thread and followed to its end.

Consumes a write (a blocking store call); emits its result, and ``ended()``: the moment no
write of this pipeline runs any more.

A thread cannot be stopped. A write under way when the pipeline is cut off (its lead lost)
runs on after the pipeline was halted, and a save that finds the database away is retried
for some seconds by the store (eventsourcing retries a failed insert), so it may commit once
the database is back. The next leader in this process rebuilds only after ``ended()``: a
dispatch committed after the rebuild read the store had nobody to send its task message,
and its attempt waited its lease out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class ThreadedWrites:
    def __init__(self) -> None:
        self._under_way: set[asyncio.Future[Any]] = set()

    async def run(self, write: Callable[..., T], *args: Any) -> T:
        """``write(*args)`` in a thread; a caller cancelled meanwhile leaves it to end."""
        future: asyncio.Future[T] = asyncio.ensure_future(asyncio.to_thread(write, *args))
        self._under_way.add(future)
        future.add_done_callback(self._ended)
        return await asyncio.shield(future)

    def _ended(self, future: asyncio.Future[Any]) -> None:
        self._under_way.discard(future)
        if not future.cancelled():
            future.exception()  # told to the caller, or to nobody once it went away

    async def ended(self) -> None:
        """Returns once no write started here runs any more."""
        while self._under_way:
            await asyncio.wait(set(self._under_way))
