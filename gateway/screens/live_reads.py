"""One open page's live reads: what it shows, read at once and again on every change.

``live_reads`` consumes the app's ``LiveFeed``, the key a page watches (a service id, or
None for every change), the key its reads are shared under and the read itself, and emits
the read's answers: the first at once — the page's own read, made once the watch is open,
so a change that lands between the page's render and its stream is not missed — then one
per change, read once for every page that shares ``shared_key`` at that position
(``LiveFeed.shared``). With ``quiet_s`` it also emits the last answer again (not read again)
after ``quiet_s`` without a change, so the page can look at what else may end it (a client
link that expires). The pages' streams (``event_stream``) iterate it; closing the iterator
closes the watch.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from gateway.screens.live_feed import LiveFeed

T = TypeVar("T")


async def live_reads(
    live: LiveFeed,
    key: str | None,
    shared_key: str,
    read: Callable[[], Awaitable[T]],
    *,
    quiet_s: float | None = None,
) -> AsyncIterator[T]:
    with live.watch(key) as watch:
        found = await read()  # the page's own first read: the watch is open already
        while True:
            yield found
            position = await watch.next(quiet_s)
            if position is not None:
                found = await live.shared(shared_key, position, read)
