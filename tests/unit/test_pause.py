"""pause: the wait every long-running part uses between rounds, cut short by stop."""

from __future__ import annotations

import asyncio
import time

from ops.runtime.pause import pause
from tests.support.budget import budget


async def test_pause_waits_its_time_or_until_stop() -> None:
    stop = asyncio.Event()
    started = time.monotonic()
    await pause(stop, 0.2)
    assert time.monotonic() - started >= 0.2
    asyncio.get_running_loop().call_later(0.05, stop.set)
    started = time.monotonic()
    await pause(stop, 30)
    assert time.monotonic() - started < min(budget(5), 25)  # the 30 s pause was cut short
    started = time.monotonic()
    await pause(asyncio.Event(), -1)  # a wait already overdue is no wait
    assert time.monotonic() - started < budget(0.1)
