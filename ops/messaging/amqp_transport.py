"""The RabbitMQ transport (aio-pika): ``ops.messaging.transport.Transport`` on a real broker.

Topology for an exchange named ``E``:
- ``E``, a durable topic exchange every message is published to;
- ``E.dead``, a durable direct exchange; each queue ``Q`` dead-letters to it with routing key
  ``Q``, and the durable queue ``Q.dead`` is bound there with key ``Q``;
- ``E.live``, a transient topic exchange for the live channel: broadcasts go there
  non-persistent and non-mandatory on a channel of their own without confirms; each
  ``listen`` declares an exclusive, auto-deleted queue ``E.live.<random>`` of its own (on its
  own channel, consumed without acks, at most ``LISTEN_BUFFER`` messages, the oldest dropped
  past that), bound to its pattern, and deletes it when left; the broker removes it anyway
  when the listener's connection goes.

Channels: one for publishing (publisher confirms, returns raise, so an unroutable
``mandatory`` message fails its publish), one for declarations and depth queries (a broker
error there, e.g. a missing queue, closes that channel, never the publisher's), and one per
subscription (its own ``prefetch``; closing it is what hands unacked deliveries back).
Every aio-pika/aiormq/socket failure and every operation exceeding ``timeout`` surfaces as
``TransportError``; the robust connection reconnects and restores topology, channels and
consumers by itself, trying every ``reconnect_interval`` seconds (aio-pika's 5 s default would
keep a part idle up to 5 s after the broker is back). ``on_connection_change`` listeners hear
when the connection is lost and when it is whole again.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import aio_pika
import aiormq.exceptions
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
    ConsumerTag,
)

from ops.messaging.broker_probe import broker_answers
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

T = TypeVar("T")

_DEATH_HEADERS = ("x-death", "x-first-death-", "x-last-death-")

# OSError covers ConnectionError and TimeoutError
_BROKER_ERRORS = (aiormq.exceptions.AMQPError, aiormq.exceptions.ChannelInvalidStateError, OSError)


@asynccontextmanager
async def _as_transport_errors(what: str, timeout: float | None) -> AsyncIterator[None]:
    """Runs a broker operation, translating its failures (and a hang) into TransportError."""
    try:
        async with asyncio.timeout(timeout):
            yield
    except aiormq.exceptions.PublishError as exc:
        raise Unroutable(f"{what}: {exc}") from exc
    except _BROKER_ERRORS as exc:
        raise TransportError(f"{what}: {type(exc).__name__}: {exc}") from exc


def _text_headers(raw: dict[str, Any]) -> dict[str, str]:
    """The application's str headers; what the broker adds on dead-lettering is dropped, so a
    dead letter reads as the message that was published (as in the in-process transport)."""
    headers: dict[str, str] = {}
    for key, value in raw.items():
        if key.startswith(_DEATH_HEADERS):
            continue
        if isinstance(value, str):
            headers[key] = value
        elif isinstance(value, bytes):
            headers[key] = value.decode("utf-8", "replace")
    return headers


def _original_routing_key(incoming: AbstractIncomingMessage) -> str:
    """A dead-lettered message is re-routed by queue name; ``x-death`` keeps the original key.
    A re-driven one was sent to its queue by name; its ``REDRIVEN_FROM`` header keeps it."""
    redriven = incoming.headers.get(REDRIVEN_FROM)
    if isinstance(redriven, bytes | str) and redriven:
        return redriven.decode() if isinstance(redriven, bytes) else redriven
    deaths = incoming.headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        keys = deaths[0].get("routing-keys")
        if isinstance(keys, list) and keys:
            key = keys[0]
            return key.decode() if isinstance(key, bytes) else str(key)
    return incoming.routing_key or ""


class _AmqpDelivery:
    """One incoming message; settling it tells its subscription (which may then close)."""

    def __init__(self, incoming: AbstractIncomingMessage, subscription: _AmqpSubscription) -> None:
        self._incoming = incoming
        self._subscription = subscription
        self.redelivered = bool(incoming.redelivered)
        self.message = Message(
            routing_key=_original_routing_key(incoming),
            body=incoming.body,
            message_id=incoming.message_id or "",
            headers=_text_headers(dict(incoming.headers)),
        )

    async def ack(self) -> None:
        try:
            async with _as_transport_errors("ack", self._subscription.timeout):
                await self._incoming.ack()
        finally:
            await self._subscription.settled()

    async def reject(self, *, requeue: bool) -> None:
        try:
            async with _as_transport_errors("reject", self._subscription.timeout):
                await self._incoming.reject(requeue=requeue)
        finally:
            await self._subscription.settled()


class _AmqpSubscription:
    """A consumer on its own channel. ``cancel`` stops deliveries at once but closes the
    channel only when the in-flight ones are settled: closing it earlier would requeue them
    and cancel their callbacks."""

    def __init__(self, channel: AbstractChannel, queue: AbstractQueue, timeout: float) -> None:
        self.timeout = timeout
        self._channel = channel
        self._queue = queue
        self._tag: ConsumerTag | None = None
        self._in_flight = 0
        self._cancelled = False

    async def start(self, callback: DeliveryCallback) -> None:
        async def on_message(incoming: AbstractIncomingMessage) -> None:
            self._in_flight += 1
            await callback(_AmqpDelivery(incoming, self))

        async with _as_transport_errors("consume", self.timeout):
            self._tag = await self._queue.consume(on_message)

    async def settled(self) -> None:
        self._in_flight -= 1
        if self._cancelled and self._in_flight <= 0:
            await self.close()

    async def cancel(self) -> None:
        if self._cancelled:
            return
        self._cancelled = True
        if self._tag is not None and not self._channel.is_closed:
            async with _as_transport_errors("cancel", self.timeout):
                await self._queue.cancel(self._tag)
        if self._in_flight <= 0:
            await self.close()

    async def close(self) -> None:
        """Closes the channel; the broker requeues whatever is still unacked on it."""
        await _close_channel(self._channel)


async def _close_channel(channel: AbstractChannel) -> None:
    """Closes a consumer's channel, and with it the broker's consumer on it."""
    if not channel.is_closed:
        try:
            await channel.close()
        except _BROKER_ERRORS as exc:
            log.debug("closing a consumer channel: %s", exc)


class AmqpTransport:
    """``ops.messaging.transport.Transport`` on RabbitMQ; ``url`` is an ``amqp://`` URL."""

    def __init__(
        self, url: str, exchange: str, *, timeout: float = 10.0, reconnect_interval: float = 1.0
    ) -> None:
        self.url = url
        self.exchange = exchange
        self.dead_exchange = f"{exchange}.dead"
        self.live_exchange = f"{exchange}.live"
        self.timeout = timeout
        self.reconnect_interval = reconnect_interval
        self._listeners: list[Callable[[bool], None]] = []
        self._up = True  # as far as the listeners were told
        self._connection: AbstractRobustConnection | None = None
        self._publisher: AbstractRobustChannel | None = None
        self._admin: AbstractRobustChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._live: AbstractExchange | None = None
        self.live_queues: set[str] = set()  # the live channel's queues its listeners hold now
        self._subscriptions: list[_AmqpSubscription] = []

    async def connect(self) -> None:
        if self._connection is not None and not self._connection.is_closed:
            return
        async with _as_transport_errors(f"connect to {self.exchange}", self.timeout):
            await broker_answers(self.url)  # a broker that is down: one line, not three
            connection = await aio_pika.connect_robust(
                self.url, reconnect_interval=self.reconnect_interval
            )
            try:
                self._publisher = await connection.channel(
                    publisher_confirms=True, on_return_raises=True
                )
                self._admin = await connection.channel()
                self._exchange = await self._publisher.declare_exchange(
                    self.exchange, aio_pika.ExchangeType.TOPIC, durable=True
                )
                await self._admin.declare_exchange(
                    self.dead_exchange, aio_pika.ExchangeType.DIRECT, durable=True
                )
                broadcasting = await connection.channel(publisher_confirms=False)
                self._live = await broadcasting.declare_exchange(
                    self.live_exchange, aio_pika.ExchangeType.TOPIC, durable=False
                )
            except BaseException:
                await connection.close()
                raise
            self._connection = connection
            self._up = True
            connection.close_callbacks.add(self._lost)
            connection.reconnect_callbacks.add(self._restored)

    def on_connection_change(self, listener: Callable[[bool], None]) -> Callable[[], None]:
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    def _lost(self, connection: object, exc: BaseException | None = None) -> None:
        # called again on each failed reconnection: only the first one is news
        if connection is self._connection and self._up:  # not our own close
            self._up = False
            log.warning("broker connection for %s lost: %s", self.exchange, exc)
            self._tell(False)

    def _restored(self, connection: object) -> None:
        if connection is self._connection:
            self._up = True
            log.info("broker connection for %s restored", self.exchange)
            self._tell(True)

    def _tell(self, up: bool) -> None:
        for listener in list(self._listeners):
            try:
                listener(up)
            except Exception:
                log.exception("a broker connection listener failed")

    async def close(self) -> None:
        subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            await subscription.close()
        connection, self._connection = self._connection, None
        self._publisher = self._admin = self._exchange = self._live = None
        if connection is not None:
            try:
                await connection.close()
            except _BROKER_ERRORS as exc:
                log.debug("closing the broker connection: %s", exc)

    async def publish(self, message: Message) -> None:
        exchange = self._require(self._exchange)
        async with _as_transport_errors(f"publish {message.routing_key}", self.timeout):
            await exchange.publish(_outgoing(message), message.routing_key, mandatory=True)

    async def publish_many(self, messages: Sequence[Message]) -> list[Message]:
        """Publishes all, confirms pipelined; once all are settled, returns the unroutable
        ones or raises the first other failure."""
        results = await asyncio.gather(
            *(self.publish(message) for message in messages), return_exceptions=True
        )
        unroutable = []
        failures = []
        for message, result in zip(messages, results, strict=True):
            if isinstance(result, Unroutable):
                unroutable.append(message)
            elif isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result
                failures.append(result)
        if failures:
            raise failures[0]
        return unroutable

    async def broadcast(self, key: str, body: bytes) -> None:
        exchange = self._require(self._live)
        message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT)
        async with _as_transport_errors(f"broadcast {key}", self.timeout):
            await exchange.publish(message, key, mandatory=False)

    @asynccontextmanager
    async def listen(self, pattern: str) -> AsyncIterator[AsyncIterator[Broadcast]]:
        connection = self._require(self._connection)
        name = f"{self.live_exchange}.{uuid.uuid4().hex}"
        buffer = asyncio.Queue[Broadcast](maxsize=LISTEN_BUFFER)

        async def on_message(incoming: AbstractIncomingMessage) -> None:
            if not buffer.full():  # a reader that fell behind loses what comes next
                buffer.put_nowait(Broadcast(incoming.routing_key or "", incoming.body))

        async with _as_transport_errors(f"listen {pattern}", self.timeout):
            channel = await connection.channel()
        try:
            async with _as_transport_errors(f"listen {pattern}", self.timeout):
                # declared on this channel too: restored with it, before its binding, when
                # the broker comes back without the exchange (it is transient)
                live = await channel.declare_exchange(
                    self.live_exchange, aio_pika.ExchangeType.TOPIC, durable=False
                )
                queue = await channel.declare_queue(
                    name,
                    exclusive=True,
                    auto_delete=True,
                    arguments={"x-max-length": LISTEN_BUFFER, "x-overflow": "drop-head"},
                )
                await queue.bind(live, routing_key=pattern)
                await queue.consume(on_message, no_ack=True)
            self.live_queues.add(name)
            yield heard(buffer)
        finally:
            # also when cancelled (a follower gone): the queue must not outlive the listener
            await asyncio.shield(self._unlisten(channel, name))

    async def _unlisten(self, channel: AbstractChannel, queue: str) -> None:
        self.live_queues.discard(queue)
        try:
            if not channel.is_closed:
                async with _as_transport_errors(f"delete {queue}", self.timeout):
                    await channel.queue_delete(queue)
        except TransportError as exc:
            log.debug("deleting a live queue: %s", exc)  # exclusive: it goes with the connection
        await _close_channel(channel)

    def queue_name(self, name: str) -> str:
        """The broker's name for a queue: queues are global in a vhost, so they carry the
        exchange's name; two installs (or test runs) on one vhost never share a queue."""
        return f"{self.exchange}.{name}"

    async def declare_queue(self, name: str, bindings: Sequence[str]) -> None:
        channel = self._require(self._admin)
        name = self.queue_name(name)
        async with _as_transport_errors(f"declare {name}", self.timeout):
            dead = await channel.declare_queue(f"{name}.dead", durable=True)
            await dead.bind(self.dead_exchange, routing_key=name)
            queue = await channel.declare_queue(
                name,
                durable=True,
                arguments={
                    "x-dead-letter-exchange": self.dead_exchange,
                    "x-dead-letter-routing-key": name,
                },
            )
            for pattern in bindings:
                await queue.bind(self.exchange, routing_key=pattern)

    async def consume(
        self, queue: str, callback: DeliveryCallback, *, prefetch: int
    ) -> _AmqpSubscription:
        connection = self._require(self._connection)
        queue = self.queue_name(queue)
        async with _as_transport_errors(f"consume {queue}", self.timeout):
            channel = await connection.channel()
        try:
            async with _as_transport_errors(f"consume {queue}", self.timeout):
                await channel.set_qos(prefetch_count=prefetch)
                declared = await channel.declare_queue(queue, passive=True)
            subscription = _AmqpSubscription(channel, declared, self.timeout)
            await subscription.start(callback)
        except BaseException:
            # failed or cancelled half-way (a consumer stopped while subscribing): no channel
            # and no broker consumer may outlive it
            await asyncio.shield(_close_channel(channel))
            raise
        self._subscriptions.append(subscription)
        return subscription

    async def queue_depth(self, name: str) -> int:
        channel = self._require(self._admin)
        name = self.queue_name(name)
        async with _as_transport_errors(f"depth of {name}", self.timeout):
            # A fresh passive declare each time: the robust channel's cached queue object
            # keeps the message count of its first declaration.
            queue = await channel.declare_queue(name, passive=True, robust=False)
            result = await queue.declare()
        return int(result.message_count or 0)

    async def redrive(self, queue: str) -> int:
        """Takes each message of ``<queue>.dead`` (``basic.get``), publishes it to ``queue``
        through the default exchange (confirmed), then acks it: a failure in between leaves
        it in both, and the consumer's inbox absorbs the copy."""
        channel = self._require(self._admin)
        publisher = self._require(self._publisher)
        name = self.queue_name(queue)
        async with _as_transport_errors(f"redrive {name}.dead", self.timeout):
            dead = await channel.declare_queue(f"{name}.dead", passive=True, robust=False)
            held = int((await dead.declare()).message_count or 0)
        moved = 0
        for _ in range(held):  # not what dies meanwhile: that would never end
            async with _as_transport_errors(f"redrive {name}.dead", self.timeout):
                incoming = await dead.get(no_ack=False, fail=False)
                if incoming is None:
                    break
                key = _original_routing_key(incoming)
                message = Message(
                    routing_key=key,
                    body=incoming.body,
                    message_id=incoming.message_id or "",
                    headers={**_text_headers(dict(incoming.headers)), REDRIVEN_FROM: key},
                )
                await publisher.default_exchange.publish(_outgoing(message), name, mandatory=True)
                await incoming.ack()
            moved += 1
        return moved

    async def delete_queue(self, name: str) -> None:
        """Deletes a queue if it exists (test and tool clean-up)."""
        channel = self._require(self._admin)
        name = self.queue_name(name)
        async with _as_transport_errors(f"delete {name}", self.timeout):
            await channel.queue_delete(name)

    async def delete_exchange(self) -> None:
        """Deletes this transport's exchange, its dead-letter and its live exchange."""
        channel = self._require(self._admin)
        async with _as_transport_errors(f"delete {self.exchange}", self.timeout):
            await channel.exchange_delete(self.exchange)
            await channel.exchange_delete(self.dead_exchange)
            await channel.exchange_delete(self.live_exchange)

    def _require(self, part: T | None) -> T:
        if part is None:
            raise TransportError(f"not connected to the broker for {self.exchange}")
        return part


def _outgoing(message: Message) -> aio_pika.Message:
    return aio_pika.Message(
        message.body,
        message_id=message.message_id,
        headers=dict(message.headers),
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )
