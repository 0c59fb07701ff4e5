"""The consumer loop: takes messages from one queue and hands each to a handler, once.

Per delivery: a message without ``message_id`` cannot be de-duplicated, so it is dead-lettered
at once; one the inbox has already seen is acked and skipped; otherwise the handler runs, and
on success the id is remembered (with those of the handlers finishing meanwhile, in one
transaction), then the delivery acked (a crash between the two means one redelivery, which the
inbox absorbs).

A handler that raises does not get its message back at once: ``ops.messaging.redelivery``
holds the delivery unacked for a pause that grows with the message's failures (``first_pause``
doubling up to ``max_pause``), in a task of its own, then hands it back to the broker. A
failure of the infrastructure (database or broker unreachable, also as the cause of another
exception) is never held against the message, so an outage of any length dead-letters
nothing; a message that fails ``max_failures`` times for any other reason goes to
``<queue>.dead``, where ``hostwright dead-letters`` counts it and ``hostwright redrive``
moves it back. A re-driven message (header ``REDRIVEN_FROM``) and one its publisher sent
again (``SENT_AGAIN``) are checked against the inbox like a redelivery. When our own inbox
fails the delivery is handed back the same way.

``first_deliveries_are_new``: the queue's only publisher sends each message id once but marks
a copy it sends again (the pipeline: one task message per attempt, sent again when its publish
was not confirmed or a new leader cannot tell whether it went out), so only a delivery the
broker flags as redelivered, a re-driven one or a marked copy can repeat one: the inbox is
asked only about those (it is still written for every message).

Deliveries are handled in arrival order by ``concurrency`` workers (1 by default, which keeps
the order the broker delivers in); ``prefetch`` is how many the broker lends ahead of them.

With a ``batch_handler`` one worker takes every delivery waiting at that moment (up to
``max_batch``) and hands them over together: one handler call and one inbox write for the lot —
what lets the pipeline record a batch of results in one transaction. The inbox is asked only
about redelivered, re-driven and marked (``SENT_AGAIN``) deliveries, and the write and the
acks run while the next batch is taken, so a batch handler must absorb a duplicate nobody
flags itself (the pipeline does: a result or a run start it has seen changes nothing). If
the batch handler raises because of the infrastructure, every message is handed back with the
back-off; for any other reason,
each message of the batch goes through ``handler`` on its own, counting one failure for the
one that fails, so one bad message cannot hold the others back. A message that failed before
for a reason of its own skips the batch and goes through ``handler`` alone.
On stop the loop stops taking, hands back what it took but did not start and what it holds
back, lets in-flight handlers finish within ``stop_grace`` and returns. Cancelled (the pipeline
losing its lead cancels its consumer at once), it hands back — rejects with requeue — every
delivery it still holds unsettled, so none stays unacked in a process that goes on living.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from ops.messaging.inbox import Inbox
from ops.messaging.redelivery import Redelivery, is_infrastructure, settle
from ops.messaging.transport import (
    REDRIVEN_FROM,
    SENT_AGAIN,
    Delivery,
    Message,
    Subscription,
    Transport,
    TransportError,
)
from ops.runtime.pause import pause
from ops.store.database import database_unavailable
from ops.store.outage import Outage

log = logging.getLogger(__name__)

Handler = Callable[[Message], Awaitable[None]]
BatchHandler = Callable[[list[Message]], Awaitable[None]]


class ConsumerLoop:
    def __init__(
        self,
        transport: Transport,
        queue: str,
        bindings: Sequence[str],
        handler: Handler,
        *,
        consumer_name: str,
        inbox: Inbox,
        prefetch: int = 64,
        stop_grace: float = 10.0,
        concurrency: int = 1,
        max_backoff: float = 5.0,
        batch_handler: BatchHandler | None = None,
        max_batch: int = 256,
        first_deliveries_are_new: bool = False,
        max_failures: int = 5,
        first_pause: float = 0.5,
        max_pause: float = 5.0,
    ) -> None:
        self._transport = transport
        self._queue = queue
        self._bindings = list(bindings)
        self._handler = handler
        self._name = consumer_name
        self._inbox = inbox
        # the inbox's database away: one warning per outage, not a traceback per message
        self._inbox_outage = Outage(consumer_name, "the inbox's database")
        self._prefetch = prefetch
        self._stop_grace = stop_grace
        self._concurrency = 1 if batch_handler else max(1, concurrency)
        self._batch_handler = batch_handler
        self._max_batch = max(1, max_batch)
        self._first_deliveries_are_new = first_deliveries_are_new
        self._max_backoff = max_backoff
        self._pending: asyncio.Queue[Delivery] = asyncio.Queue()
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._in_progress: dict[str, asyncio.Event] = {}
        self._tails: set[asyncio.Future[None]] = set()  # batches' remember-and-ack, running
        self._remembering = _GroupRemember(inbox, consumer_name)
        self._redelivery = Redelivery(
            consumer_name, max_failures=max_failures, first_pause=first_pause, max_pause=max_pause
        )
        self._stopping = False
        self._held: set[_Held] = set()  # taken from the broker, not yet acked or rejected

    async def run(self, stop: asyncio.Event) -> None:
        """Consumes until ``stop`` is set; waits out a broker outage with capped back-off."""
        workers = [asyncio.ensure_future(self._work()) for _ in range(self._concurrency)]
        subscription: Subscription | None = None
        try:
            subscription = await self._subscribe(stop)
            if subscription is None:
                return
            await stop.wait()
            await self._stop_taking(subscription)
            try:
                await asyncio.wait_for(self._idle.wait(), self._stop_grace)
            except TimeoutError:
                log.warning(
                    "%s: in-flight handlers outlived the %.1fs grace", self._name, self._stop_grace
                )
        finally:
            if subscription is not None and not self._stopping:
                await self._stop_taking(subscription)  # cancelled before stop was set
            self._stopping = True
            for worker in [*workers, *self._tails]:
                worker.cancel()
            await asyncio.gather(*workers, *self._tails, return_exceptions=True)
            for held in list(self._held):
                await settle(held.reject(requeue=True))

    async def _subscribe(self, stop: asyncio.Event) -> Subscription | None:
        backoff = 0.1
        while not stop.is_set():
            try:
                await self._transport.declare_queue(self._queue, self._bindings)
                return await self._transport.consume(
                    self._queue, self._on_delivery, prefetch=self._prefetch
                )
            except TransportError as exc:
                log.warning(
                    "%s: broker unavailable (%s); retrying in %.1fs", self._name, exc, backoff
                )
                await pause(stop, backoff)
                backoff = min(backoff * 2, self._max_backoff)
        return None

    async def _stop_taking(self, subscription: Subscription) -> None:
        self._stopping = True
        try:
            await subscription.cancel()
        except TransportError as exc:
            log.warning("%s: cancelling the subscription: %s", self._name, exc)
        while not self._pending.empty():
            await settle(self._pending.get_nowait().reject(requeue=True))
        await self._redelivery.release_all()

    async def _on_delivery(self, incoming: Delivery) -> None:
        delivery = _Held(incoming, self._held)
        if self._stopping:
            await settle(delivery.reject(requeue=True))
            return
        self._pending.put_nowait(delivery)

    async def _work(self) -> None:
        while True:
            delivery = await self._pending.get()
            self._busy += 1
            self._idle.clear()
            try:
                if self._batch_handler is None:
                    await self._process(delivery)
                else:
                    batch = [delivery]
                    while len(batch) < self._max_batch and not self._pending.empty():
                        batch.append(self._pending.get_nowait())
                    await self._process_batch(batch, self._batch_handler)
            finally:
                self._busy -= 1
                if self._busy == 0:
                    self._idle.set()

    async def _process(self, delivery: Delivery) -> None:
        message_id = delivery.message.message_id
        if not message_id:
            log.error(
                "%s: a message on %s has no message_id; dead-lettered",
                self._name,
                delivery.message.routing_key,
            )
            await settle(delivery.reject(requeue=False))
            return
        # A duplicate arriving while its twin is still being handled waits for the twin, so
        # the inbox check below sees its outcome (only possible with concurrency > 1).
        while (twin := self._in_progress.get(message_id)) is not None:
            await twin.wait()
        done = self._in_progress[message_id] = asyncio.Event()
        try:
            await self._handle_once(delivery, message_id)
        finally:
            del self._in_progress[message_id]
            done.set()

    async def _process_batch(self, batch: list[Delivery], handle: BatchHandler) -> None:
        fresh: dict[str, Delivery] = {}
        repeats: list[Delivery] = []
        alone: list[Delivery] = []
        for delivery in batch:
            message_id = delivery.message.message_id
            if not message_id:
                await self._process(delivery)  # dead-letters it, with the reason logged
            elif message_id in fresh:
                repeats.append(delivery)  # the same message twice in one batch
            elif self._redelivery.poisoned(message_id):
                alone.append(delivery)  # failed before on its own: not again with others
            else:
                fresh[message_id] = delivery
        for delivery in alone:
            await self._process(delivery)
        # Only a redelivered, re-driven or marked copy can have been handled already by this
        # consumer; a batch handler absorbs an unmarked duplicate (a publisher's retry) itself.
        again = [message_id for message_id, d in fresh.items() if _maybe_seen(d)]
        try:
            seen = (
                await asyncio.to_thread(self._inbox.seen_among, self._name, again) if again else []
            )
        except Exception as exc:
            self._inbox_failed(exc, f"inbox unavailable; handing {len(batch)} back")
            for message_id, delivery in fresh.items():
                self._redelivery.hand_back(delivery, message_id)
            for delivery in repeats:
                self._redelivery.hand_back(delivery, delivery.message.message_id)
            return
        if again:
            self._inbox_outage.recovered()  # only when it was asked: the database answered
        for message_id in seen:
            await settle(fresh.pop(message_id).ack())
        for delivery in repeats:
            await settle(delivery.ack())
        if not fresh:
            return
        try:
            await handle([delivery.message for delivery in fresh.values()])
        except Exception as exc:
            if is_infrastructure(exc):
                log.warning(
                    "%s: a batch of %d failed (%s); handing it back",
                    self._name,
                    len(fresh),
                    type(exc).__name__,
                )
                for message_id, delivery in fresh.items():
                    self._redelivery.hand_back(delivery, message_id)
                return
            log.warning(
                "%s: a batch of %d failed; handling its messages one by one",
                self._name,
                len(fresh),
                exc_info=True,
            )
            for message_id, delivery in fresh.items():
                await self._handle_once(delivery, message_id)
            return
        # Remembering and acking need not hold up the next batch.
        self._busy += 1
        tail = asyncio.ensure_future(self._remember_and_ack(fresh))
        self._tails.add(tail)
        tail.add_done_callback(self._tail_done)

    async def _remember_and_ack(self, handled: dict[str, Delivery]) -> None:
        for message_id in handled:
            self._redelivery.succeeded(message_id)
        try:
            await asyncio.to_thread(self._inbox.remember_all, self._name, list(handled))
        except Exception as exc:
            self._inbox_failed(exc, "could not remember a batch; redelivery follows")
            for message_id, delivery in handled.items():
                self._redelivery.hand_back(delivery, message_id)
            return
        self._inbox_outage.recovered()
        for delivery in handled.values():
            await settle(delivery.ack())

    def _inbox_failed(self, exc: Exception, what: str) -> None:
        """The database away: one warning per outage (the messages go back with back-off);
        any other failure with its traceback."""
        if database_unavailable(exc):
            self._inbox_outage.failed(exc)
        else:
            log.error("%s: %s", self._name, what, exc_info=exc)

    def _tail_done(self, tail: asyncio.Future[None]) -> None:
        self._tails.discard(tail)
        self._busy -= 1
        if self._busy == 0:
            self._idle.set()

    async def _handle_once(self, delivery: Delivery, message_id: str) -> None:
        try:
            seen = (
                False
                if self._first_deliveries_are_new and not _maybe_seen(delivery)
                else await asyncio.to_thread(self._inbox.seen, self._name, message_id)
            )
        except Exception as exc:
            self._inbox_failed(exc, f"inbox unavailable; handing {message_id} back")
            self._redelivery.hand_back(delivery, message_id)
            return
        if seen:
            await settle(delivery.ack())
            return
        try:
            await self._handler(delivery.message)
        except Exception as exc:
            await self._redelivery.failed(delivery, message_id, exc)
            return
        self._redelivery.succeeded(message_id)
        try:
            await self._remembering.remember(message_id)
        except Exception as exc:
            # Acking now could let a redelivery run the handler twice unnoticed; not acking
            # means one redelivery that the handler (idempotent by design) absorbs.
            self._inbox_failed(exc, f"could not remember {message_id}; it will be redelivered")
            self._redelivery.hand_back(delivery, message_id)
            return
        self._inbox_outage.recovered()
        await settle(delivery.ack())


def _maybe_seen(delivery: Delivery) -> bool:
    """Whether the delivery may repeat a message handled before: the broker redelivers it,
    staff re-drove it from the dead-letter queue, or its publisher sent it again."""
    headers = delivery.message.headers
    return delivery.redelivered or REDRIVEN_FROM in headers or SENT_AGAIN in headers


class _Held:
    """A delivery as this loop holds it: in ``held`` until it is acked or rejected."""

    def __init__(self, delivery: Delivery, held: set[_Held]) -> None:
        self._delivery = delivery
        self._held = held
        self.message = delivery.message
        self.redelivered = delivery.redelivered
        held.add(self)

    async def ack(self) -> None:
        if self in self._held:  # settled once: a cancelled loop may have handed it back
            self._held.discard(self)
            await self._delivery.ack()

    async def reject(self, *, requeue: bool) -> None:
        if self in self._held:
            self._held.discard(self)
            await self._delivery.reject(requeue=requeue)


class _GroupRemember:
    """Remembers handled message ids, the ids of handlers finishing while a write is under
    way together in the next one: one transaction for several concurrent handlers."""

    def __init__(self, inbox: Inbox, consumer: str) -> None:
        self._inbox = inbox
        self._consumer = consumer
        self._waiting: list[tuple[str, asyncio.Future[None]]] = []
        self._writing = False
        self._writer: asyncio.Future[None] | None = None

    async def remember(self, message_id: str) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((message_id, done))
        if not self._writing:
            self._writing = True
            self._writer = asyncio.ensure_future(self._write_rounds())
        await done

    async def _write_rounds(self) -> None:
        try:
            while self._waiting:
                round_, self._waiting = self._waiting, []
                ids = [message_id for message_id, _ in round_]
                try:
                    await asyncio.to_thread(self._inbox.remember_all, self._consumer, ids)
                except Exception as exc:
                    for _, done in round_:
                        if not done.done():
                            done.set_exception(exc)
                else:
                    for _, done in round_:
                        if not done.done():
                            done.set_result(None)
        finally:
            self._writing = False
