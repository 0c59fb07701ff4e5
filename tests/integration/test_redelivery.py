"""The consumer's redelivery on both transports: a failing message is handed back after a
growing pause without holding up the others; an infrastructure failure never dead-letters;
a message failing for a reason of its own is dead-lettered after ``max_failures`` (in a batch,
counting its own failures only); dead letters re-driven are handled, or absorbed by the inbox
when they were handled already."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import time
from collections.abc import Iterator, Sequence

import psycopg
import pytest

from ops.messaging.consumer import BatchHandler, ConsumerLoop, Handler
from ops.messaging.inbox import Inbox
from ops.messaging.transport import REDRIVEN_FROM, Message, TransportError
from ops.store.database import Database
from tests.support.transports import (  # noqa: F401 - shared fixtures
    AnyTransport,
    QueueNames,
    queue_names,
    transport,
    wait_for_depth,
    wait_until,
)


@pytest.fixture
def inbox(sqlite_url: str) -> Iterator[Inbox]:
    db = Database(sqlite_url)
    yield Inbox(db)
    db.close()


class Running:
    def __init__(self, loop: ConsumerLoop) -> None:
        self.stop = asyncio.Event()
        self.task = asyncio.ensure_future(loop.run(self.stop))

    async def finish(self, timeout: float = 10.0) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, timeout)


def start(
    transport: AnyTransport,
    queue: str,
    handler: Handler,
    inbox: Inbox,
    *,
    batch_handler: BatchHandler | None = None,
    **options: float,
) -> Running:
    loop = ConsumerLoop(
        transport,
        queue,
        ["task.#"],
        handler,
        consumer_name="tester",
        inbox=inbox,
        batch_handler=batch_handler,
        **options,  # type: ignore[arg-type]
    )
    return Running(loop)


def task(message_id: str) -> Message:
    return Message(routing_key="task.web.w1", body=b"{}", message_id=message_id, headers={"k": "v"})


async def publish_when_bound(transport: AnyTransport, messages: Sequence[Message]) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            await transport.publish(messages[0])
            break
        except TransportError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.01)
    await transport.publish_many(messages[1:])


def outage(attempt: int) -> Exception:
    """The ways an unreachable database or broker shows, directly or as a cause."""
    if attempt == 0:
        return psycopg.OperationalError("server closed the connection unexpectedly")
    if attempt == 1:
        try:
            raise ConnectionResetError("reset by peer")
        except ConnectionResetError as cause:
            wrapped = RuntimeError("could not load the service")
            wrapped.__cause__ = cause
            return wrapped
    if attempt == 2:
        return TransportError("publish: channel closed")
    return sqlite3.OperationalError("database is locked")


async def test_an_outage_backs_off_with_growing_pauses_and_never_dead_letters(
    transport: AnyTransport, queue_names: QueueNames, inbox: Inbox
) -> None:
    """Four infrastructure failures against max_failures=2: handed back each time after a
    longer pause, then handled once; nothing dead-lettered."""
    queue = queue_names("work")
    moments: list[float] = []
    handled: list[str] = []

    async def handle(message: Message) -> None:
        if message.message_id == "order":
            moments.append(time.monotonic())
            if len(moments) <= 4:
                raise outage(len(moments) - 1)
        handled.append(message.message_id)

    running = start(transport, queue, handle, inbox, max_failures=2, first_pause=0.2)
    await publish_when_bound(transport, [task("order")])
    await wait_until(lambda: "order" in handled, "the order after the outage", timeout=30)
    await transport.publish(task("after"))
    await wait_until(lambda: "after" in handled, "the next message")
    await running.finish()
    assert handled == ["order", "after"]
    assert len(moments) == 5
    gaps = [later - earlier for earlier, later in itertools.pairwise(moments)]
    assert gaps == sorted(gaps), gaps  # each pause at least as long as the one before
    assert await transport.queue_depth(f"{queue}.dead") == 0


async def test_a_poisoned_message_is_dead_lettered_after_max_failures_alone(
    transport: AnyTransport, queue_names: QueueNames, inbox: Inbox
) -> None:
    queue = queue_names("work")
    doomed: list[float] = []
    handled: dict[str, int] = {}

    async def handle(message: Message) -> None:
        if message.message_id == "doomed":
            doomed.append(time.monotonic())
            raise ValueError("not a valid envelope")
        handled[message.message_id] = len(doomed)

    running = start(transport, queue, handle, inbox, max_failures=3, first_pause=1.0)
    await publish_when_bound(transport, [task("doomed"), task("a"), task("b")])
    await wait_for_depth(transport, f"{queue}.dead", 1, timeout=30)
    await running.finish()
    assert len(doomed) == 3
    assert set(handled) == {"a", "b"}
    # the others were handled while the doomed one waited out its pauses, not after
    assert max(handled.values()) < 3, handled
    assert await transport.queue_depth(queue) == 0


async def test_in_a_batch_only_the_poisoned_message_counts_failures_and_it_leaves_the_batches(
    transport: AnyTransport, queue_names: QueueNames, inbox: Inbox
) -> None:
    queue = queue_names("work")
    batches: list[list[str]] = []
    singles: list[str] = []
    release = asyncio.Event()

    async def handle_batch(messages: list[Message]) -> None:
        ids = [m.message_id for m in messages]
        batches.append(ids)
        await release.wait()
        if "poison" in ids:
            raise ValueError("one bad message in the batch")

    async def handle(message: Message) -> None:
        singles.append(message.message_id)
        if message.message_id == "poison":
            raise ValueError("still bad")

    running = start(
        transport,
        queue,
        handle,
        inbox,
        batch_handler=handle_batch,
        max_failures=4,
        first_pause=0.01,
    )
    await publish_when_bound(transport, [task("first")])
    await wait_until(lambda: batches == [["first"]], "the first batch")
    await transport.publish_many([task(i) for i in ["a", "poison", "b"]])
    await asyncio.sleep(0.2)  # let every delivery reach the loop while the first batch waits
    release.set()
    await wait_for_depth(transport, f"{queue}.dead", 1, timeout=30)
    await transport.publish_many([task("c"), task("d")])
    await wait_until(lambda: any("d" in batch for batch in batches), "the next batch")
    await running.finish()
    assert singles.count("poison") == 4  # one failure per delivery, none for the batch
    assert sum(batch.count("poison") for batch in batches) == 1  # then handled alone
    for good in ["a", "b", "c", "d"]:
        handled = singles.count(good) + sum(batch.count(good) for batch in batches)
        assert handled == (2 if good in "ab" else 1), (good, batches, singles)
    assert all("poison" not in batch for batch in batches[2:])


async def test_a_batch_failing_for_an_outage_is_handed_back_whole_not_one_by_one(
    transport: AnyTransport, queue_names: QueueNames, inbox: Inbox
) -> None:
    queue = queue_names("work")
    batches: list[list[str]] = []
    singles: list[str] = []

    async def handle_batch(messages: list[Message]) -> None:
        batches.append([m.message_id for m in messages])
        if len(batches) <= 3:
            raise psycopg.OperationalError("the database is restarting")

    async def handle(message: Message) -> None:
        singles.append(message.message_id)

    running = start(
        transport,
        queue,
        handle,
        inbox,
        batch_handler=handle_batch,
        max_failures=1,
        first_pause=0.01,
    )
    await publish_when_bound(transport, [task("only")])
    await wait_until(lambda: len(batches) == 4, "the batch after the outage", timeout=30)
    await running.finish()
    assert batches == [["only"]] * 4
    assert singles == []
    assert await transport.queue_depth(f"{queue}.dead") == 0


async def test_re_driven_dead_letters_are_handled_or_absorbed_by_the_inbox(
    transport: AnyTransport, queue_names: QueueNames, inbox: Inbox
) -> None:
    """Two messages dead-lettered; one had been handled and remembered before it failed (its
    ack lost, say). Re-driven, the other is handled with its key, id and headers, and the one
    the inbox holds is absorbed even though the consumer checks only redeliveries."""
    queue = queue_names("work")
    broken = True
    received: list[Message] = []

    async def handle(message: Message) -> None:
        if broken:
            if message.message_id == "handled":
                inbox.remember("tester", "handled")
            raise ValueError("a bug, fixed since")
        received.append(message)

    running = start(transport, queue, handle, inbox, max_failures=1, first_deliveries_are_new=True)
    await publish_when_bound(transport, [task("handled"), task("stranded")])
    await wait_for_depth(transport, f"{queue}.dead", 2)
    broken = False
    assert await transport.redrive(queue) == 2
    await wait_until(lambda: len(received) == 1, "the re-driven message")
    await wait_for_depth(transport, f"{queue}.dead", 0)
    await transport.publish(task("after"))
    await wait_until(lambda: len(received) == 2, "the next message")
    await running.finish()
    redriven = received[0]
    assert (redriven.routing_key, redriven.message_id, redriven.body) == (
        "task.web.w1",
        "stranded",
        b"{}",
    )
    assert redriven.headers == {"k": "v", REDRIVEN_FROM: "task.web.w1"}
    assert [m.message_id for m in received] == ["stranded", "after"]
    assert await transport.queue_depth(queue) == 0
