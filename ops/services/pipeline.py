"""``hostwright serve pipeline``: the pipeline fed from its queue and a clock tick.

The queue carries relayed Service events and staff's Task commands (JSON envelopes made by
the relay), the handlers' results and their heartbeats, and the scheduler's ``cron.<job>``
nudges; each is decoded here and handed to the pipeline, which is the only place decisions
are made. Whatever waits on the queue at once is handed over as one batch. Beside it run the
clock tick and the re-sending of task messages the broker did not confirm; the transport tells
the pipeline when the broker connection is lost and back (its leases are held meanwhile).

While the database is unavailable a batch is not failed (the consumer would count that
against its messages): it is held and tried again with back-off until the database is back,
after the pipeline has rebuilt its working state from the store (the failed try may have
changed memory the store never heard of). So is the rebuild at start. A pipeline that loses
its lead meanwhile is cancelled with what it holds (ops/runtime/components.py), and ends only
once its writes still in threads have ended (handlers/pipeline_writes.py), so the next
leader in this process rebuilds from a store that has them.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable

from handlers.messages import HeartbeatMessage, ResultMessage
from handlers.pipeline import CronTick, Pipeline, PipelineInput, RelayedEvent
from handlers.pipeline_sweep import SWEEP_S
from ops.messaging.consumer import ConsumerLoop
from ops.messaging.event_envelope import event_envelope
from ops.messaging.inbox import Inbox
from ops.messaging.topology import PIPELINE_BINDINGS, PIPELINE_QUEUE
from ops.messaging.transport import Message, Transport
from ops.store.database import database_unavailable
from ops.store.outage import Outage, riding_out

log = logging.getLogger(__name__)

# how long a halted pipeline waits for its writes still in threads: well beyond the store's
# retries of a save while the database is away (about 22 s); only a socket that hangs is longer
WRITES_WAIT_S = 60.0


class PipelineFeed:
    """Decodes what arrives on the pipeline's queue; raises ValueError on anything malformed
    (the consumer loop dead-letters it once it has failed ``max_failures`` times)."""

    def __init__(
        self, pipeline: Pipeline, settings_changed: Callable[[], None] = lambda: None
    ) -> None:
        self._pipeline = pipeline
        self._settings_changed = settings_changed
        self._outage = Outage("pipeline")
        self._rebuild_first = False

    async def handle(self, message: Message) -> None:
        await self.handle_batch([message])

    async def handle_batch(self, messages: list[Message]) -> None:
        inputs = [decode(message) for message in messages]
        if any(_is_settings_change(item) for item in inputs):
            self._settings_changed()  # staff changed the runtime settings: read them again
        await riding_out(lambda: self._take(inputs), self._outage)

    async def _take(self, inputs: list[PipelineInput]) -> None:
        if self._rebuild_first:
            await self._pipeline.rebuild()
            self._rebuild_first = False
        try:
            await self._pipeline.on_batch(inputs)
        except Exception as exc:
            if database_unavailable(exc):
                self._rebuild_first = True
            raise


def _is_settings_change(item: PipelineInput) -> bool:
    return isinstance(item, RelayedEvent) and item.topic.startswith("RuntimeSettings.")


def decode(message: Message) -> PipelineInput:
    key = message.routing_key
    if key.startswith("result."):
        return ResultMessage.from_json(message.body)
    if key.startswith("heartbeat."):
        return HeartbeatMessage.from_json(message.body)
    if key.startswith("cron."):
        return CronTick(key.removeprefix("cron."))
    envelope = event_envelope(message.body)
    data = envelope.get("data")
    command_id = data.get("command_id") if isinstance(data, dict) else None
    return RelayedEvent(
        envelope["topic"],
        uuid.UUID(envelope["aggregate_id"]),
        int(envelope["version"]),
        command_id if isinstance(command_id, str) else None,
    )


async def run_pipeline(
    pipeline: Pipeline,
    transport: Transport,
    inbox: Inbox,
    stop: asyncio.Event,
    *,
    prefetch: int,
    tick_interval: float = 1.0,
    sweep_interval: float = SWEEP_S,
    settings_changed: Callable[[], None] = lambda: None,
    max_failures: int = 5,
) -> None:
    try:
        rebuilt = await _rebuilt(pipeline, stop)
    except BaseException:
        await _halted(pipeline)  # the lead lost while rebuilding: it records nothing more
        raise
    if not rebuilt:
        return  # stopped while the database was away
    feed = PipelineFeed(pipeline, settings_changed)
    loop = ConsumerLoop(
        transport,
        PIPELINE_QUEUE,
        PIPELINE_BINDINGS,
        feed.handle,
        consumer_name="pipeline",
        inbox=inbox,
        prefetch=prefetch,
        max_failures=max_failures,
        batch_handler=feed.handle_batch,
    )
    # While the broker is away no heartbeat can come: the pipeline holds its leases.
    stop_listening = transport.on_connection_change(pipeline.broker_connection)
    ticking = asyncio.ensure_future(_tick(pipeline, stop, tick_interval, sweep_interval))
    resending = asyncio.ensure_future(pipeline.resend(stop))
    try:
        await loop.run(stop)
    except BaseException:
        # Cancelled (the lead is lost: another pipeline may lead already) or failed: a tick
        # or a re-send under way is cancelled, not finished, and whatever of this pipeline
        # still runs (in a thread) may save, publish or checkpoint nothing more.
        ticking.cancel()
        resending.cancel()
        await _halted(pipeline)
        raise
    finally:
        stop.set()  # a graceful stop: the tick under way finishes first
        await asyncio.gather(ticking, resending, return_exceptions=True)
        pipeline.halt()
        stop_listening()  # one listener per pipeline that led, not one per re-lead forever


async def _halted(pipeline: Pipeline) -> None:
    """Halts the pipeline and returns once its writes still in threads have ended: one may
    commit after the halt (a save retried until the database is back), and whoever leads
    next in this process must rebuild from a store that has it."""
    pipeline.halt()
    try:
        await asyncio.wait_for(pipeline.writes_ended(), WRITES_WAIT_S)
    except TimeoutError:
        log.warning(
            "pipeline: a write of the pipeline that lost its lead is still under way after"
            " %.0f s; leading again without waiting for it",
            WRITES_WAIT_S,
        )


async def _rebuilt(pipeline: Pipeline, stop: asyncio.Event) -> bool:
    """Rebuilds the pipeline, waiting out a database outage; False when ``stop`` came first."""
    rebuilding = asyncio.ensure_future(riding_out(pipeline.rebuild, Outage("pipeline (rebuild)")))
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({rebuilding, stopping}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        rebuilding.cancel()  # cancelled (the lead lost): the rebuild must not go on alone
        raise
    finally:
        stopping.cancel()
    if not rebuilding.done():
        rebuilding.cancel()
        await asyncio.gather(rebuilding, return_exceptions=True)
        return False
    rebuilding.result()
    return True


RECHECK_S = 0.05


async def _tick(pipeline: Pipeline, stop: asyncio.Event, longest: float, sweep_s: float) -> None:
    """Ticks the pipeline when a retry falls due or a lease runs out — at that moment, not on
    a polling beat — and at least every ``longest`` seconds. After each batch the pipeline
    sets ``changed`` and the next moment is looked for again, at most every ``RECHECK_S``
    (so a moment can be missed by that much). (What was due at the last tick
    and is still waiting — a retry behind a full server — starts when a result frees a slot,
    which the batch itself takes care of.) The scheduler's ``cron.retries`` is the safety net.
    Every ``sweep_s`` it sweeps too: services waiting for a run they do not have get it."""
    outage = Outage("pipeline (ticking)")
    swept_at = asyncio.get_running_loop().time()
    while not stop.is_set():
        try:
            await pipeline.tick()
            if stop.is_set():
                return
            if asyncio.get_running_loop().time() - swept_at >= sweep_s:
                swept_at = asyncio.get_running_loop().time()
                await pipeline.sweep()
        except Exception as exc:
            if stop.is_set():
                return
            if database_unavailable(exc):
                outage.failed(exc)
            else:
                log.exception("pipeline: tick failed; trying again")
        else:
            outage.recovered()
        ticked_at = pipeline.now()
        while not stop.is_set():
            pipeline.changed.clear()
            due, now = pipeline.next_due(), pipeline.now()
            if due is not None and ticked_at < due <= now:
                break  # came due since the last tick
            wait = longest - (now - ticked_at).total_seconds()
            if wait <= 0:
                break
            if due is not None and due > now:
                wait = min(wait, (due - now).total_seconds())
            await _first_of(stop, pipeline.changed, wait)
            if pipeline.changed.is_set():
                # Batches come back to back in a burst; looking for the next due moment (a
                # scan of every open task) once per RECHECK_S is enough.
                await asyncio.sleep(RECHECK_S)


async def _first_of(stop: asyncio.Event, changed: asyncio.Event, timeout: float) -> None:
    waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(changed.wait())}
    await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    for waiter in waiters:
        waiter.cancel()
