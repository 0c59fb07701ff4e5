"""``pause(stop, seconds)``: wait that long, or less when ``stop`` is set meanwhile.

Every long-running part waits this way between rounds, retries and back-offs, so a stop
request is answered at once instead of after the wait.
"""

from __future__ import annotations

import asyncio
import contextlib


async def pause(stop: asyncio.Event, seconds: float) -> None:
    if seconds <= 0:
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
