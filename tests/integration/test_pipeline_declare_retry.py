"""A pipeline that leads (again) while the broker still refuses to declare its queues waits
for the broker with back-off instead of exiting (ops/runtime/components.py): ``serve
pipeline`` and ``hostwright up`` ride out a broker that is still reconnecting."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from ops.bootstrap import System
from ops.messaging.inprocess_transport import InProcessTransport
from ops.messaging.transport import TransportError
from ops.runtime.components import serve_pipeline
from ops.settings import Settings
from tests.support.budget import budget


class ReconnectingBroker(InProcessTransport):
    """Refuses the first ``refusals`` queue declarations, as a broker still reconnecting."""

    def __init__(self, exchange: str, refusals: int) -> None:
        super().__init__(exchange)
        self.refusals = refusals
        self.refused = 0

    async def declare_queue(self, name: str, bindings: Sequence[str]) -> None:
        if self.refused < self.refusals:
            self.refused += 1
            raise TransportError("declare: the channel is still closed")
        await super().declare_queue(name, bindings)


async def test_a_pipeline_waits_for_the_broker_to_declare_its_queues(
    tmp_path: Path, exchange_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    system = System(Settings(database_url=f"sqlite:///{tmp_path / 'store.sqlite'}"))
    broker = ReconnectingBroker(exchange_name, refusals=3)
    system._transport = broker
    stop = asyncio.Event()
    serving = asyncio.ensure_future(serve_pipeline(system, stop))
    try:
        for _ in range(600):
            if "pipeline: rebuilt" in caplog.text or serving.done():
                break
            await asyncio.sleep(0.05)
        assert not serving.done(), f"serve_pipeline ended: {serving.exception()!r}"
        assert "pipeline: rebuilt" in caplog.text
        assert broker.refused == 3
        stop.set()
        await asyncio.wait_for(serving, budget(30))
    finally:
        stop.set()
        await asyncio.gather(serving, return_exceptions=True)
        await system.close()
