"""The broker interface both transports implement: AMQP (aio-pika) and in-process.

Semantics every implementation keeps:
- one topic exchange; routing keys like ``Service.Ordered`` or ``task.web.web1``;
  binding patterns use ``*`` (one word) and ``#`` (zero or more words);
- ``publish`` returns only once the broker has confirmed the message, is ``mandatory``
  (a message no queue is bound for raises ``Unroutable``) and persistent;
- every queue is durable and has a dead-letter queue ``<name>.dead``; ``reject(requeue=False)``
  moves a delivery there;
- a delivery not acked before its consumer goes away is delivered again with ``redelivered``;
- ``consume`` gives at most ``prefetch`` unacked deliveries to the callback at once;
- ``redrive`` moves what a dead-letter queue holds back to its queue, each message with its
  body, routing key, id and headers, and the header ``REDRIVEN_FROM`` (its routing key).

Beside it, the live channel (``LiveChannel``): best-effort broadcasts, such as a running step's
log lines, that nobody must receive. ``broadcast`` is transient and never ``mandatory`` (a
broadcast no one listens for is dropped, never an error), nothing of it is stored or
dead-lettered; ``listen(pattern)`` hears, from the moment it is entered until it is left, the
broadcasts whose key matches, and leaves nothing behind (no queue, no binding) once left. A
listener that falls behind loses broadcasts rather than holding the broker or the sender up.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol

# Set on a message moved back from a dead-letter queue: its value is the message's routing key
# (the message goes straight to its queue, not through the exchange); a consumer checks such a
# message against its inbox as it does a redelivery.
REDRIVEN_FROM = "hostwright-redriven-from"
# Set by a publisher on a message it sends again under the same id (its first publish may have
# gone out after all): a consumer checks it against its inbox as it does a redelivery.
SENT_AGAIN = "hostwright-sent-again"


class TransportError(Exception):
    """The broker could not be reached or refused the operation; the caller retries."""


class Unroutable(TransportError):
    """A mandatory message matched no queue."""


@dataclass(frozen=True)
class Message:
    routing_key: str
    body: bytes
    message_id: str
    headers: dict[str, str] = field(default_factory=dict)


class Delivery(Protocol):
    message: Message
    redelivered: bool

    async def ack(self) -> None: ...

    async def reject(self, *, requeue: bool) -> None: ...


DeliveryCallback = Callable[[Delivery], Awaitable[None]]


class Subscription(Protocol):
    async def cancel(self) -> None:
        """Stops new deliveries; in-flight ones may still be acked or rejected."""


@dataclass(frozen=True)
class Broadcast:
    key: str
    body: bytes


# what one listener holds for its reader before it drops what comes next
LISTEN_BUFFER = 1000


async def heard(buffer: asyncio.Queue[Broadcast]) -> AsyncIterator[Broadcast]:
    """A listener's broadcasts as its transport puts them into ``buffer``, for ever."""
    while True:
        yield await buffer.get()


class LiveChannel(Protocol):
    async def broadcast(self, key: str, body: bytes) -> None:
        """Sends ``body`` to whoever listens for ``key`` now, if anyone; raises
        TransportError only when the broker cannot be reached."""

    def listen(self, pattern: str) -> AbstractAsyncContextManager[AsyncIterator[Broadcast]]:
        """Entered: bound to ``pattern`` (``*``/``#`` as for queues), the broadcasts from now
        on, in the order each sender sent them; left: unbound, nothing left on the broker."""


class Transport(LiveChannel, Protocol):
    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    def on_connection_change(self, listener: Callable[[bool], None]) -> Callable[[], None]:
        """``listener(False)`` when the connection to the broker is lost, ``listener(True)``
        once it is back with its channels and consumers (never for a transport that cannot
        lose its broker). Returns what takes the listener off again (whoever listens for a
        while, such as one leader's pipeline, must call it when done)."""

    async def publish(self, message: Message) -> None:
        """Publishes and waits for the broker's confirm; raises TransportError/Unroutable."""

    async def publish_many(self, messages: Sequence[Message]) -> list[Message]:
        """Publishes all with confirms pipelined; returns, once every one is settled, the
        messages no queue was bound for (each routable one published exactly once).
        Raises TransportError when any other publish failed."""

    async def declare_queue(self, name: str, bindings: Sequence[str]) -> None:
        """Declares a durable queue (and its dead-letter queue) bound to the patterns."""

    async def consume(
        self, queue: str, callback: DeliveryCallback, *, prefetch: int
    ) -> Subscription: ...

    async def queue_depth(self, name: str) -> int:
        """Messages ready in the queue (not counting unacked ones)."""

    async def redrive(self, queue: str) -> int:
        """Moves every message ready in ``<queue>.dead`` (as many as it held when called) back
        to ``queue`` alone, not through the exchange; returns how many it moved."""
