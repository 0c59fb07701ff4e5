"""Stopping within a grace period (ops/runtime/stopping.py): a part that finishes on ``stop``
ends as it likes; one still busy after the grace is cancelled."""

from __future__ import annotations

import asyncio

import pytest

from ops.runtime.stopping import within_grace
from tests.support.budget import budget


async def test_a_part_that_stops_when_told_ends_normally() -> None:
    stop = asyncio.Event()
    finished = []

    async def part() -> None:
        await stop.wait()
        finished.append(True)

    work = asyncio.ensure_future(part())
    asyncio.get_running_loop().call_later(0.05, stop.set)
    await within_grace(work, stop, grace_s=5)
    assert finished == [True]


async def test_a_part_still_busy_after_the_grace_is_cancelled() -> None:
    stop = asyncio.Event()

    async def stuck() -> None:
        await asyncio.Event().wait()  # a database call that never answers

    work = asyncio.ensure_future(stuck())
    stop.set()
    await asyncio.wait_for(within_grace(work, stop, grace_s=0.1), budget(10))
    assert work.cancelled()


async def test_a_part_that_fails_before_any_stop_raises_its_error() -> None:
    async def broken() -> None:
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError, match="bug"):
        await within_grace(asyncio.ensure_future(broken()), asyncio.Event(), grace_s=1)
