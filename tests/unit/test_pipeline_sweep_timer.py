"""``hostwright serve pipeline``'s timer sweeps every ``sweep_s`` besides ticking, so a service
whose run-starting event was lost is started without any message arriving."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from ops.services.pipeline import _tick
from tests.support.budget import budget


class CountingPipeline:
    def __init__(self) -> None:
        self.ticks = 0
        self.sweeps = 0
        self.changed = asyncio.Event()

    async def tick(self) -> None:
        self.ticks += 1

    async def sweep(self) -> None:
        self.sweeps += 1

    def now(self) -> datetime:
        return datetime.now(UTC)

    def next_due(self) -> datetime | None:
        return None


async def test_the_timer_sweeps_every_sweep_interval() -> None:
    pipeline, stop = CountingPipeline(), asyncio.Event()
    pipeline_any: Any = pipeline
    timer = asyncio.ensure_future(_tick(pipeline_any, stop, 0.01, 0.05))
    try:
        async with asyncio.timeout(30):
            while pipeline.sweeps < 2:
                await asyncio.sleep(0.01)
    finally:
        stop.set()
        await timer
    assert pipeline.ticks > pipeline.sweeps >= 2


async def test_a_tick_that_ends_after_stop_does_not_sweep() -> None:
    """Stopped (or its lead lost) during a tick: the timer sweeps no more."""
    pipeline, stop = CountingPipeline(), asyncio.Event()

    async def tick_then_stopped() -> None:
        pipeline.ticks += 1
        stop.set()

    pipeline.tick = tick_then_stopped  # type: ignore[method-assign]
    pipeline_any: Any = pipeline
    await asyncio.wait_for(_tick(pipeline_any, stop, 0.01, 0.0), budget(30))
    assert (pipeline.ticks, pipeline.sweeps) == (1, 0)
