"""What the SSL and usage desks' feeds share: work started in tasks of its own under one
limit, and the queue that feeds them.

``DeskWork`` consumes units of work, each under a key (a certificate, a node's sync), and
runs each in a task of its own, at most ``concurrency`` at once, so a slow CA or node never
holds the queue; a key already running is not started twice (the running one records when
to look next). A unit that raises is logged, never re-raised: the desk records its own
failures, and the delivery that started it was acked when it started.

``run_desk_queue`` feeds a handler from a queue until told to stop, then lets what runs end.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any

from ops.messaging.consumer import ConsumerLoop
from ops.messaging.inbox import Inbox
from ops.messaging.transport import Message, Transport

log = logging.getLogger(__name__)


class DeskWork:
    def __init__(self, concurrency: int) -> None:
        self._slots = asyncio.Semaphore(concurrency)
        self._running: dict[Hashable, asyncio.Task[None]] = {}

    def __len__(self) -> int:
        """How many units are running or waiting for a slot."""
        return len(self._running)

    def start(self, key: Hashable, work: Callable[[], Awaitable[Any]], failed: str) -> None:
        """Runs ``work()`` in a task of its own unless ``key``'s is running; ``failed`` is the
        line logged (with the traceback) when it raises."""
        if key in self._running:
            return
        task = asyncio.ensure_future(self._limited(work, failed))
        self._running[key] = task
        task.add_done_callback(lambda _: self._running.pop(key, None))

    async def _limited(self, work: Callable[[], Awaitable[Any]], failed: str) -> None:
        async with self._slots:
            try:
                await work()
            except Exception:  # the desk records the work's own failures; this is ours
                log.exception("%s", failed)

    async def drain(self) -> None:
        """Waits for the units still running (at a stop)."""
        running = list(self._running.values())
        if running:
            await asyncio.gather(*running, return_exceptions=True)


async def run_desk_queue(
    handle: Callable[[Message], Awaitable[None]],
    work: DeskWork,
    transport: Transport,
    inbox: Inbox,
    stop: asyncio.Event,
    *,
    queue: str,
    bindings: Sequence[str],
    prefetch: int,
    max_failures: int,
    closing: Callable[[], Awaitable[None]] | None,
) -> None:
    """Feeds ``handle`` from ``queue`` until ``stop``; then lets ``work`` end."""
    loop = ConsumerLoop(
        transport,
        queue,
        bindings,
        handle,
        consumer_name=queue,
        inbox=inbox,
        prefetch=prefetch,
        max_failures=max_failures,
    )
    try:
        await loop.run(stop)
    finally:
        await work.drain()
        if closing is not None:
            await closing()
