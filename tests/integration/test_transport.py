"""The broker transports keep one set of semantics: every test runs on RabbitMQ and in-process."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from ops.messaging.inprocess_transport import topic_matches
from ops.messaging.transport import Delivery, Message, Unroutable
from tests.support.transports import (  # noqa: F401 - shared fixtures
    AnyTransport,
    QueueNames,
    queue_names,
    transport,
    wait_for_depth,
    wait_until,
)


class Received:
    """A consumer callback that keeps every delivery, acking it or not."""

    def __init__(self, *, ack: bool) -> None:
        self.deliveries: list[Delivery] = []
        self._ack = ack

    async def __call__(self, delivery: Delivery) -> None:
        self.deliveries.append(delivery)
        if self._ack:
            await delivery.ack()

    @property
    def messages(self) -> list[Message]:
        return [d.message for d in self.deliveries]


def message(key: str, message_id: str, body: bytes = b"{}") -> Message:
    return Message(routing_key=key, body=body, message_id=message_id)


async def test_a_message_arrives_whole(transport: AnyTransport, queue_names: QueueNames) -> None:
    queue = queue_names("events")
    await transport.declare_queue(queue, ["Service.#"])
    received = Received(ack=True)
    await transport.consume(queue, received, prefetch=10)
    sent = Message(
        routing_key="Service.Ordered",
        body=b'{"service_id": "7"}',
        message_id="42",
        headers={"aggregate_id": "a-1", "kind": "event"},
    )
    await transport.publish(sent)
    await wait_until(lambda: len(received.deliveries) == 1, "the delivery")
    assert received.messages == [sent]
    assert received.deliveries[0].redelivered is False


async def test_star_matches_one_word_and_hash_any_number(
    transport: AnyTransport, queue_names: QueueNames
) -> None:
    star, hash_ = queue_names("star"), queue_names("hash")
    await transport.declare_queue(star, ["task.*"])
    await transport.declare_queue(hash_, ["task.#"])
    to_star, to_hash = Received(ack=True), Received(ack=True)
    await transport.consume(star, to_star, prefetch=10)
    await transport.consume(hash_, to_hash, prefetch=10)
    for i, key in enumerate(["task", "task.web", "task.web.web1", "tasks.web"]):
        try:
            await transport.publish(message(key, str(i)))
        except Unroutable:
            assert key == "tasks.web"
    await wait_until(lambda: len(to_hash.deliveries) == 3, "three deliveries to task.#")
    await wait_until(lambda: len(to_star.deliveries) == 1, "one delivery to task.*")
    assert [m.routing_key for m in to_star.messages] == ["task.web"]
    assert sorted(m.routing_key for m in to_hash.messages) == ["task", "task.web", "task.web.web1"]


@pytest.mark.parametrize(
    ("pattern", "key", "matches"),
    [
        ("a.*", "a.b", True),
        ("a.*", "a", False),
        ("a.*", "a.b.c", False),
        ("a.#", "a", True),
        ("a.#", "a.b.c", True),
        ("#", "anything.at.all", True),
        ("#.c", "a.b.c", True),
        ("a.#.c", "a.c", True),
        ("a.#.c", "a.b.b.c", True),
        ("a.#.c", "a.b.d", False),
        ("*.b.#", "a.b", True),
        ("*", "a.b", False),
        ("a.b", "a.b", True),
        ("a.b", "a.bb", False),
    ],
)
def test_topic_patterns_follow_amqp(pattern: str, key: str, matches: bool) -> None:
    assert topic_matches(pattern, key) is matches


async def test_a_message_no_queue_is_bound_for_raises_unroutable(
    transport: AnyTransport, queue_names: QueueNames
) -> None:
    await transport.declare_queue(queue_names("tasks"), ["task.#"])
    with pytest.raises(Unroutable):
        await transport.publish(message("Service.Ordered", "1"))
    unwanted = message("Nobody.Wants", "3")
    assert await transport.publish_many([message("task.web.w1", "2"), unwanted]) == [unwanted]
    await transport.publish(message("task.web.w1", "4"))  # the transport is still usable
    assert await transport.queue_depth(queue_names("tasks")) == 2


async def test_a_rejected_message_lands_in_the_dead_letter_queue(
    transport: AnyTransport, queue_names: QueueNames
) -> None:
    queue = queue_names("work")
    await transport.declare_queue(queue, ["task.#"])
    sent = Message("task.web.w1", b"payload", "m-1", {"attempt": "1"})
    await transport.publish(sent)

    async def reject(delivery: Delivery) -> None:
        await delivery.reject(requeue=False)

    subscription = await transport.consume(queue, reject, prefetch=1)
    await wait_for_depth(transport, f"{queue}.dead", 1)
    await subscription.cancel()
    assert await transport.queue_depth(queue) == 0
    dead = Received(ack=True)
    await transport.consume(f"{queue}.dead", dead, prefetch=1)
    await wait_until(lambda: len(dead.deliveries) == 1, "the dead letter")
    assert dead.messages == [sent]


async def test_a_rejected_and_requeued_message_comes_back_redelivered(
    transport: AnyTransport, queue_names: QueueNames
) -> None:
    queue = queue_names("work")
    await transport.declare_queue(queue, ["task.#"])
    await transport.publish(message("task.web.w1", "m-1"))
    seen: list[bool] = []

    async def fail_once(delivery: Delivery) -> None:
        seen.append(delivery.redelivered)
        if delivery.redelivered:
            await delivery.ack()
        else:
            await delivery.reject(requeue=True)

    await transport.consume(queue, fail_once, prefetch=1)
    await wait_until(lambda: len(seen) == 2, "the redelivery")
    assert seen == [False, True]


async def test_an_unacked_delivery_comes_back_after_the_connection_goes(
    transport: AnyTransport, queue_names: QueueNames
) -> None:
    queue = queue_names("work")
    await transport.declare_queue(queue, ["task.#"])
    await transport.publish(message("task.web.w1", "m-1"))
    first = Received(ack=False)
    await transport.consume(queue, first, prefetch=1)
    await wait_until(lambda: len(first.deliveries) == 1, "the first delivery")
    assert first.deliveries[0].redelivered is False

    await transport.close()  # the consumer dies without acking
    await transport.connect()
    second = Received(ack=True)
    await transport.consume(queue, second, prefetch=1)
    await wait_until(lambda: len(second.deliveries) == 1, "the redelivery")
    assert second.deliveries[0].redelivered is True
    assert second.messages[0].message_id == "m-1"


async def test_a_cancelled_subscription_takes_no_more_but_may_settle_what_it_has(
    transport: AnyTransport, queue_names: QueueNames
) -> None:
    queue = queue_names("work")
    await transport.declare_queue(queue, ["task.#"])
    await transport.publish_many([message("task.web.w1", "m-1"), message("task.web.w1", "m-2")])
    held = Received(ack=False)
    subscription = await transport.consume(queue, held, prefetch=1)
    await wait_until(lambda: len(held.deliveries) == 1, "the first delivery")
    await subscription.cancel()
    await held.deliveries[0].ack()
    await wait_for_depth(transport, queue, 1)
    await asyncio.sleep(0.05)
    assert len(held.deliveries) == 1


async def test_prefetch_bounds_the_unacked_deliveries(
    transport: AnyTransport, queue_names: QueueNames
) -> None:
    queue = queue_names("work")
    await transport.declare_queue(queue, ["task.#"])
    await transport.publish_many([message("task.web.w1", str(i)) for i in range(20)])
    held = Received(ack=False)
    await transport.consume(queue, held, prefetch=5)
    acked = 0
    most_unacked = 0

    def more_than(count: int) -> Callable[[], bool]:
        return lambda: len(held.deliveries) > count

    while acked < 20:
        await wait_until(more_than(acked), "more deliveries")
        await asyncio.sleep(0.05)  # room for the broker to overshoot, if it would
        most_unacked = max(most_unacked, len(held.deliveries) - acked)
        for delivery in held.deliveries[acked:]:
            await delivery.ack()
            acked += 1
    assert most_unacked == 5
    assert sorted(int(m.message_id) for m in held.messages) == list(range(20))


async def test_queue_depth_counts_what_is_published_but_not_consumed(
    transport: AnyTransport, queue_names: QueueNames
) -> None:
    queue = queue_names("work")
    await transport.declare_queue(queue, ["task.#"])
    assert await transport.queue_depth(queue) == 0
    await transport.publish_many([message("task.web.w1", str(i)) for i in range(7)])
    await wait_for_depth(transport, queue, 7)
    received = Received(ack=True)
    await transport.consume(queue, received, prefetch=100)
    await wait_until(lambda: len(received.deliveries) == 7, "seven deliveries")
    await wait_for_depth(transport, queue, 0)


async def test_publish_many_delivers_every_message(
    transport: AnyTransport, queue_names: QueueNames
) -> None:
    queue = queue_names("events")
    await transport.declare_queue(queue, ["Service.*"])
    received = Received(ack=True)
    await transport.consume(queue, received, prefetch=200)
    await transport.publish_many([message("Service.Ordered", str(i)) for i in range(500)])
    await wait_until(lambda: len(received.deliveries) == 500, "500 deliveries")
    assert {m.message_id for m in received.messages} == {str(i) for i in range(500)}


async def test_consumers_of_one_queue_share_its_messages(
    transport: AnyTransport, queue_names: QueueNames
) -> None:
    queue = queue_names("work")
    await transport.declare_queue(queue, ["task.#"])
    one, two = Received(ack=True), Received(ack=True)
    await transport.consume(queue, one, prefetch=1)
    await transport.consume(queue, two, prefetch=1)
    await transport.publish_many([message("task.web.w1", str(i)) for i in range(10)])
    await wait_until(lambda: len(one.deliveries) + len(two.deliveries) == 10, "ten deliveries")
    assert one.deliveries and two.deliveries
