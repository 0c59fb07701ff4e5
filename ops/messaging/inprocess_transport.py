"""The in-process broker: the embedded default for a single-process install.

It keeps the semantics of ``ops.messaging.transport`` (and of the AMQP transport) in memory: one
topic exchange with ``*``/``#`` bindings, ``mandatory`` publishing (``Unroutable`` when no queue
is bound), a dead-letter queue ``<name>.dead`` per queue, redelivery with ``redelivered=True``
of what a consumer rejected with ``requeue`` or left unacked when the transport closed, a
``prefetch`` limit per consumer and round-robin over several consumers of one queue.

Its live channel hands each broadcast straight to the listeners whose pattern matches.

Nothing survives the process: it is durable only for as long as this object lives, which is
enough because the event store, not the broker, is the truth (the relay republishes).
State lives in the object, so ``close()`` followed by ``connect()`` behaves like a broker
reconnect: unacked deliveries come back as redelivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

from ops.messaging.transport import (
    LISTEN_BUFFER,
    REDRIVEN_FROM,
    Broadcast,
    DeliveryCallback,
    Message,
    TransportError,
    Unroutable,
    heard,
)

log = logging.getLogger(__name__)


def topic_matches(pattern: str, routing_key: str) -> bool:
    """AMQP topic matching: words split on ``.``; ``*`` is one word, ``#`` zero or more."""
    words = routing_key.split(".")
    # The word positions the pattern read so far can have consumed up to (an NFA run).
    positions = {0}
    for part in pattern.split("."):
        following: set[int] = set()
        for i in positions:
            if part == "#":
                following.update(range(i, len(words) + 1))
            elif i < len(words) and part in ("*", words[i]):
                following.add(i + 1)
        if not following:
            return False
        positions = following
    return len(words) in positions


@dataclass
class _Entry:
    message: Message
    redelivered: bool = False


class _Queue:
    """Ready messages and the consumers they are handed to, round-robin."""

    def __init__(self, name: str, dead_letter: _Queue | None) -> None:
        self.name = name
        self.dead_letter = dead_letter
        self.ready: deque[_Entry] = deque()
        self.consumers: list[_Consumer] = []
        self._next = 0

    def put(self, entry: _Entry) -> None:
        self.ready.append(entry)
        self.dispatch()

    def dispatch(self) -> None:
        while self.ready:
            consumer = self._consumer_with_room()
            if consumer is None:
                return
            consumer.deliver(self.ready.popleft())

    def _consumer_with_room(self) -> _Consumer | None:
        for _ in range(len(self.consumers)):
            consumer = self.consumers[self._next % len(self.consumers)]
            self._next = (self._next + 1) % len(self.consumers)
            if consumer.has_room():
                return consumer
        return None


class _Consumer:
    """One subscription: at most ``prefetch`` unacked deliveries, each in its own task."""

    def __init__(self, queue: _Queue, callback: DeliveryCallback, prefetch: int) -> None:
        self.queue = queue
        self._callback = callback
        self._prefetch = prefetch
        self.unacked: list[_InProcessDelivery] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def has_room(self) -> bool:
        return self._prefetch <= 0 or len(self.unacked) < self._prefetch

    def deliver(self, entry: _Entry) -> None:
        delivery = _InProcessDelivery(entry, self)
        self.unacked.append(delivery)
        task = asyncio.get_running_loop().create_task(self._call(delivery))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    async def _call(self, delivery: _InProcessDelivery) -> None:
        await self._callback(delivery)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("consumer callback failed", exc_info=task.exception())

    async def cancel(self) -> None:
        if self in self.queue.consumers:
            self.queue.consumers.remove(self)

    async def detach(self) -> None:
        """The consumer's connection went away: its callbacks stop, its unacked come back."""
        await self.cancel()
        for delivery in reversed(self.unacked):
            delivery.stale = True
            self.queue.ready.appendleft(_Entry(delivery.message, redelivered=True))
        self.unacked.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.queue.dispatch()


class _InProcessDelivery:
    def __init__(self, entry: _Entry, consumer: _Consumer) -> None:
        self.message = entry.message
        self.redelivered = entry.redelivered
        self.stale = False
        self._consumer = consumer
        self._settled = False

    async def ack(self) -> None:
        self._settle()
        self._consumer.queue.dispatch()

    async def reject(self, *, requeue: bool) -> None:
        self._settle()
        queue = self._consumer.queue
        if requeue:
            # RabbitMQ puts a requeued message back near its original position: the head.
            queue.ready.appendleft(_Entry(self.message, redelivered=True))
        elif queue.dead_letter is not None:
            queue.dead_letter.put(_Entry(self.message))
        queue.dispatch()

    def _settle(self) -> None:
        if self.stale:
            raise TransportError("delivery belongs to a closed connection")
        if self._settled:
            raise TransportError("delivery already acked or rejected")
        self._settled = True
        self._consumer.unacked.remove(self)


class _InProcessSubscription:
    def __init__(self, consumer: _Consumer) -> None:
        self._consumer = consumer

    async def cancel(self) -> None:
        await self._consumer.cancel()


class InProcessTransport:
    """``ops.messaging.transport.Transport`` in memory, for one asyncio event loop."""

    def __init__(self, exchange: str = "hostwright") -> None:
        self.exchange = exchange
        self._queues: dict[str, _Queue] = {}
        self._bindings: list[tuple[str, _Queue]] = []
        self._consumers: list[_Consumer] = []
        self._connected = False
        self._listeners: list[tuple[str, asyncio.Queue[Broadcast]]] = []

    async def connect(self) -> None:
        self._connected = True

    def on_connection_change(self, listener: Callable[[bool], None]) -> Callable[[], None]:
        """Nothing to hear: an in-process broker is never lost."""
        return lambda: None

    async def close(self) -> None:
        self._connected = False
        consumers, self._consumers = self._consumers, []
        for consumer in consumers:
            await consumer.detach()

    async def publish(self, message: Message) -> None:
        self._require_connection()
        targets = {
            id(q): q for pattern, q in self._bindings if topic_matches(pattern, message.routing_key)
        }
        if not targets:
            raise Unroutable(f"no queue is bound for {message.routing_key!r} on {self.exchange}")
        for queue in targets.values():
            queue.put(_Entry(message))
        # A real broker's confirm is a suspension point; keep callers from starving consumers.
        await asyncio.sleep(0)

    async def publish_many(self, messages: Sequence[Message]) -> list[Message]:
        """Publishes every routable message; returns the unroutable ones."""
        unroutable = []
        for message in messages:
            try:
                await self.publish(message)
            except Unroutable:
                unroutable.append(message)
        return unroutable

    async def broadcast(self, key: str, body: bytes) -> None:
        """To each listener whose pattern matches, at once (one that is full loses it)."""
        for pattern, buffer in list(self._listeners):
            if topic_matches(pattern, key):
                with contextlib.suppress(asyncio.QueueFull):
                    buffer.put_nowait(Broadcast(key, body))
        await asyncio.sleep(0)  # as a send to a real broker, a suspension point

    @asynccontextmanager
    async def listen(self, pattern: str) -> AsyncIterator[AsyncIterator[Broadcast]]:
        listener = (pattern, asyncio.Queue[Broadcast](maxsize=LISTEN_BUFFER))
        self._listeners.append(listener)
        try:
            yield heard(listener[1])
        finally:
            self._listeners.remove(listener)

    def listening(self) -> int:
        """How many listeners are bound now."""
        return len(self._listeners)

    async def declare_queue(self, name: str, bindings: Sequence[str]) -> None:
        self._require_connection()
        queue = self._queues.get(name)
        if queue is None:
            dead = self._queues.setdefault(f"{name}.dead", _Queue(f"{name}.dead", None))
            queue = self._queues[name] = _Queue(name, dead)
        for pattern in bindings:
            if (pattern, queue) not in self._bindings:
                self._bindings.append((pattern, queue))

    async def consume(
        self, queue: str, callback: DeliveryCallback, *, prefetch: int
    ) -> _InProcessSubscription:
        self._require_connection()
        target = self._queue(queue)
        consumer = _Consumer(target, callback, prefetch)
        self._consumers.append(consumer)
        target.consumers.append(consumer)
        target.dispatch()
        return _InProcessSubscription(consumer)

    async def queue_depth(self, name: str) -> int:
        self._require_connection()
        return len(self._queue(name).ready)

    async def redrive(self, queue: str) -> int:
        self._require_connection()
        target, dead = self._queue(queue), self._queue(f"{queue}.dead")
        moved = 0
        while dead.ready:
            message = dead.ready.popleft().message
            headers = {**message.headers, REDRIVEN_FROM: message.routing_key}
            target.put(_Entry(replace(message, headers=headers)))
            moved += 1
        return moved

    async def delete_queue(self, name: str) -> None:
        """Forgets a queue, its bindings and consumers (test clean-up)."""
        queue = self._queues.pop(name, None)
        if queue is not None:
            self._bindings = [(p, q) for p, q in self._bindings if q is not queue]
            queue.consumers.clear()

    async def delete_exchange(self) -> None:
        """Nothing to do: the exchange lives and dies with this object."""

    def _queue(self, name: str) -> _Queue:
        queue = self._queues.get(name)
        if queue is None:
            raise TransportError(f"no queue {name!r}")
        return queue

    def _require_connection(self) -> None:
        if not self._connected:
            raise TransportError("in-process transport is not connected")
