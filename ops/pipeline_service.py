"""``hostwright serve pipeline``: the pipeline fed from its queue and a clock tick.

The queue carries relayed Service events and staff's Task commands (JSON envelopes made by
the relay), the handlers' results and their heartbeats; each is decoded here and handed to
the pipeline, which is the only place decisions are made.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from typing import Any

from handlers.messages import HeartbeatMessage, ResultMessage
from handlers.pipeline import Pipeline
from ops.consumer import ConsumerLoop
from ops.inbox import Inbox
from ops.topology import PIPELINE_BINDINGS, PIPELINE_QUEUE
from ops.transport import Message, Transport

log = logging.getLogger(__name__)


class PipelineFeed:
    """Decodes what arrives on the pipeline's queue; raises ValueError on anything malformed
    (the consumer loop dead-letters it)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline

    async def handle(self, message: Message) -> None:
        key = message.routing_key
        if key.startswith("result."):
            await self._pipeline.on_result(ResultMessage.from_json(message.body))
        elif key.startswith("heartbeat."):
            await self._pipeline.on_heartbeat(HeartbeatMessage.from_json(message.body))
        else:
            envelope = _envelope(message.body)
            await self._pipeline.on_event(
                envelope["topic"], uuid.UUID(envelope["aggregate_id"]), int(envelope["version"])
            )


async def run_pipeline(
    pipeline: Pipeline,
    transport: Transport,
    inbox: Inbox,
    stop: asyncio.Event,
    *,
    prefetch: int,
    tick_interval: float = 0.2,
) -> None:
    await pipeline.rebuild()
    loop = ConsumerLoop(
        transport,
        PIPELINE_QUEUE,
        PIPELINE_BINDINGS,
        PipelineFeed(pipeline).handle,
        consumer_name="pipeline",
        inbox=inbox,
        prefetch=prefetch,
    )
    ticking = asyncio.ensure_future(_tick(pipeline, stop, tick_interval))
    try:
        await loop.run(stop)
    finally:
        stop.set()
        await ticking


async def _tick(pipeline: Pipeline, stop: asyncio.Event, interval: float) -> None:
    while not stop.is_set():
        try:
            await pipeline.tick()
        except Exception:
            log.exception("pipeline: tick failed; trying again")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


def _envelope(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a JSON event envelope: {exc}") from exc
    if not isinstance(value, dict) or not {"topic", "aggregate_id", "version"} <= set(value):
        raise ValueError("an event envelope needs topic, aggregate_id and version")
    return value
