"""The consumer loop on both transports: once per message id, bounded retries, graceful stop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence
from types import SimpleNamespace

import aio_pika
import aiormq.channel
import psycopg
import pytest

from ops.messaging.amqp_transport import AmqpTransport
from ops.messaging.consumer import ConsumerLoop, Handler
from ops.messaging.inbox import Inbox
from ops.messaging.inprocess_transport import InProcessTransport
from ops.messaging.transport import SENT_AGAIN, Message, TransportError
from ops.store.database import Database
from tests.support.budget import budget
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
    """A consumer loop running in the background until ``stop``."""

    def __init__(self, loop: ConsumerLoop) -> None:
        self.stop = asyncio.Event()
        self.task = asyncio.ensure_future(loop.run(self.stop))

    async def finish(self, timeout: float = 5.0) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, timeout)


def start(
    transport: AnyTransport,
    queue: str,
    handler: Handler,
    inbox: Inbox,
    *,
    bindings: Sequence[str] = ("task.#",),
    **options: float,
) -> Running:
    loop = ConsumerLoop(
        transport,
        queue,
        bindings,
        handler,
        consumer_name="tester",
        inbox=inbox,
        **options,  # type: ignore[arg-type]
    )
    return Running(loop)


def task(message_id: str) -> Message:
    return Message(routing_key="task.web.w1", body=b"{}", message_id=message_id)


async def test_a_duplicate_message_id_reaches_the_handler_once(
    transport: AnyTransport, queue_names: QueueNames, database_url: str
) -> None:
    queue = queue_names("work")
    db = Database(database_url)
    handled: list[str] = []

    async def handle(message: Message) -> None:
        handled.append(message.message_id)

    running = start(transport, queue, handle, Inbox(db))
    await _published_when_bound(transport, [task(i) for i in ["a", "a", "b", "a", "end"]])
    await wait_until(lambda: "end" in handled, "the last message")
    await running.finish()
    assert handled == ["a", "b", "end"]

    # A later consumer process (same name, same inbox) still knows what was handled.
    restarted = start(transport, queue, handle, Inbox(db))
    await transport.publish_many([task("b"), task("end-2")])
    await wait_until(lambda: "end-2" in handled, "the message after the repeat")
    await restarted.finish()
    assert handled == ["a", "b", "end", "end-2"]
    db.close()


async def test_with_first_deliveries_new_only_a_redelivery_is_checked_against_the_inbox(
    transport: AnyTransport, queue_names: QueueNames, database_url: str
) -> None:
    """The handlers' setting: their one publisher sends a message id once, so a first
    delivery skips the inbox read; a redelivery of a handled message still reaches nothing."""
    queue = queue_names("work")
    db = Database(database_url)
    handled: list[str] = []

    async def handle(message: Message) -> None:
        if message.message_id == "crashed" and "crashed" not in handled:
            handled.append("crashed")
            Inbox(db).remember("tester", "crashed")  # handled, then the ack got lost
            raise ConnectionError("gone before the ack")
        handled.append(message.message_id)

    running = start(transport, queue, handle, Inbox(db), first_deliveries_are_new=True)
    await _published_when_bound(transport, [task("a"), task("crashed"), task("b")])
    await wait_until(lambda: "b" in handled, "the last message")
    await transport.publish_many([task("end")])
    await wait_until(lambda: "end" in handled, "the message after the redelivery")
    assert handled.count("crashed") == 1  # its redelivery was absorbed by the inbox
    every = {"a", "b", "end"}
    await wait_until(lambda: Inbox(db).seen_among("tester", [*every]) == every, "remembered")
    # a copy its publisher marks as sent again is checked, and absorbed
    await transport.publish_many([again(task("b")), task("after")])
    await wait_until(lambda: "after" in handled, "the message after the marked copy")
    assert handled.count("b") == 1
    await transport.publish_many([task("a")])  # a first delivery: not checked, by design
    await wait_until(lambda: handled.count("a") == 2, "the resent message")
    await running.finish()
    db.close()


def again(message: Message) -> Message:
    """The message as a publisher sends it again under the same id."""
    return Message(message.routing_key, message.body, message.message_id, {SENT_AGAIN: "1"})


class CountingInbox(Inbox):
    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.writes: list[list[str]] = []

    def remember_all(self, consumer: str, message_ids: list[str]) -> None:
        self.writes.append(list(message_ids))
        super().remember_all(consumer, message_ids)


async def test_handlers_finishing_together_are_remembered_in_one_write(
    transport: AnyTransport, queue_names: QueueNames, database_url: str
) -> None:
    queue = queue_names("work")
    db = Database(database_url)
    inbox = CountingInbox(db)
    started: list[str] = []
    release = asyncio.Event()

    async def handle(message: Message) -> None:
        started.append(message.message_id)
        await release.wait()

    running = start(transport, queue, handle, inbox, concurrency=8)
    ids = [f"m{i}" for i in range(8)]
    await _published_when_bound(transport, [task(i) for i in ids])
    await wait_until(lambda: len(started) == 8, "all eight running at once")
    release.set()
    await wait_until(lambda: inbox.seen_among("tester", ids) == set(ids), "all remembered")
    await running.finish()
    assert sorted(i for write in inbox.writes for i in write) == ids
    assert len(inbox.writes) <= 2, inbox.writes  # the first alone, the rest together
    db.close()


async def test_a_handler_that_keeps_failing_dead_letters_after_max_failures(
    transport: AnyTransport, queue_names: QueueNames, inbox: Inbox
) -> None:
    queue = queue_names("work")
    attempts: list[bool] = []

    async def fail(message: Message) -> None:
        attempts.append(True)
        raise RuntimeError("node on fire")

    running = start(transport, queue, fail, inbox, max_failures=3, first_pause=0.01)
    await _published_when_bound(transport, [task("doomed")])
    await wait_for_depth(transport, f"{queue}.dead", 1)
    await running.finish()
    assert len(attempts) == 3
    assert await transport.queue_depth(queue) == 0


async def test_a_message_without_an_id_is_dead_lettered(
    transport: AnyTransport,
    queue_names: QueueNames,
    inbox: Inbox,
    amqp_url: str,
    exchange_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queue = queue_names("work")
    handled: list[str] = []

    async def handle(message: Message) -> None:
        handled.append(message.message_id)

    running = start(transport, queue, handle, inbox)
    await _published_when_bound(transport, [task("first")])
    if isinstance(transport, AmqpTransport):
        await _publish_as_a_foreign_client(amqp_url, exchange_name, monkeypatch)
    else:
        await transport.publish(task(""))
    await transport.publish(task("after"))
    await wait_for_depth(transport, f"{queue}.dead", 1)
    await wait_until(lambda: "after" in handled, "the message after it")
    await running.finish()
    assert handled == ["first", "after"]


async def test_stopping_lets_the_handler_in_flight_finish(
    transport: AnyTransport, queue_names: QueueNames, inbox: Inbox
) -> None:
    queue = queue_names("work")
    started = asyncio.Event()
    finished: list[str] = []

    async def slow(message: Message) -> None:
        started.set()
        await asyncio.sleep(0.3)
        finished.append(message.message_id)

    running = start(transport, queue, slow, inbox, prefetch=10)
    await _published_when_bound(transport, [task("in-flight"), task("waiting")])
    await asyncio.wait_for(started.wait(), budget(5))
    running.stop.set()
    await asyncio.sleep(0.05)
    assert not running.task.done(), "run returned before its handler finished"
    await asyncio.wait_for(running.task, budget(5))
    assert finished == ["in-flight"]
    # The one taken but not started went back; the finished one was acked, so a reconnect
    # (which returns anything unacked) brings back only the waiting one.
    await transport.close()
    await transport.connect()
    await wait_for_depth(transport, queue, 1)


async def test_stop_grace_bounds_the_wait_for_a_stuck_handler(
    transport: AnyTransport, queue_names: QueueNames, inbox: Inbox
) -> None:
    queue = queue_names("work")
    started = asyncio.Event()

    async def stuck(message: Message) -> None:
        started.set()
        await asyncio.sleep(60)

    running = start(transport, queue, stuck, inbox, stop_grace=0.2)
    await _published_when_bound(transport, [task("stuck")])
    await asyncio.wait_for(started.wait(), budget(5))
    began = time.monotonic()
    await running.finish()
    assert time.monotonic() - began < min(budget(2), 30)  # the handler would take 60 s
    await transport.close()  # the process goes away: the unacked message returns
    await transport.connect()
    await wait_for_depth(transport, queue, 1)


class FlakyBroker(InProcessTransport):
    """Refuses the first declarations, as a broker that is not up yet would."""

    def __init__(self, failures: int) -> None:
        super().__init__("flaky")
        self.failures = failures

    async def declare_queue(self, name: str, bindings: Sequence[str]) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise TransportError("connection refused")
        await super().declare_queue(name, bindings)


async def test_the_loop_waits_for_the_broker_with_back_off(inbox: Inbox) -> None:
    broker = FlakyBroker(failures=3)
    await broker.connect()
    handled: list[str] = []

    async def handle(message: Message) -> None:
        handled.append(message.message_id)

    running = start(broker, "work", handle, inbox, max_backoff=0.05)
    await wait_until(lambda: broker.failures == 0, "the retries")
    await _published_when_bound(broker, [task("late")])
    await wait_until(lambda: handled == ["late"], "the delivery")
    await running.finish()


async def test_the_loop_returns_when_stopped_while_the_broker_is_down(inbox: Inbox) -> None:
    broker = FlakyBroker(failures=1_000_000)
    await broker.connect()

    async def handle(message: Message) -> None:
        raise AssertionError("nothing can arrive")

    running = start(broker, "work", handle, inbox, max_backoff=0.05)
    await asyncio.sleep(0.1)
    await running.finish(timeout=1)


async def _published_when_bound(transport: AnyTransport, messages: list[Message]) -> None:
    """Publishes once the loop has declared and bound its queue (until then: Unroutable)."""
    deadline = time.monotonic() + 5
    while True:
        try:
            await transport.publish(messages[0])
            break
        except TransportError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.01)
    await transport.publish_many(messages[1:])


async def _publish_as_a_foreign_client(
    amqp_url: str, exchange: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Publishes a message with no message_id. aiormq stamps a random id on everything it
    sends; other producers need not, so stop it from doing so for this one message."""
    with monkeypatch.context() as patch:
        patch.setattr(aiormq.channel, "UUID", lambda **_: SimpleNamespace(hex=None))
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel()
            target = await channel.get_exchange(exchange)
            await target.publish(aio_pika.Message(b"{}"), "task.web.w1")


async def test_batches_take_what_waits_together_and_fall_back_to_one_by_one(
    transport: AnyTransport, queue_names: QueueNames, database_url: str
) -> None:
    """Batch mode: the messages waiting at once arrive in one call, a repeat within it is
    dropped, a batch that fails is retried message by message — so a poison message is
    dead-lettered alone and the others are handled — and a redelivery the inbox holds is
    absorbed without reaching a handler."""
    queue = queue_names("work")
    db = Database(database_url)
    batches: list[list[str]] = []
    singles: list[str] = []
    release = asyncio.Event()

    async def handle_batch(messages: list[Message]) -> None:
        ids = [m.message_id for m in messages]
        batches.append(ids)
        await release.wait()
        if "poison" in ids or "handled-then-crashed" in ids:
            raise ValueError("one bad message in the batch")

    async def handle(message: Message) -> None:
        if message.message_id == "poison":
            raise ValueError("still bad")
        if message.message_id == "handled-then-crashed":
            # as if it had been handled and remembered, and the ack lost with the connection
            Inbox(db).remember("tester", message.message_id)
            raise ConnectionError("gone before the ack")
        singles.append(message.message_id)

    loop = ConsumerLoop(
        transport,
        queue,
        ["task.#"],
        handle,
        consumer_name="tester",
        inbox=Inbox(db),
        batch_handler=handle_batch,
        first_pause=0.01,
    )
    running = Running(loop)
    await _published_when_bound(transport, [task("first")])
    await wait_until(lambda: batches == [["first"]], "the first batch")
    await transport.publish_many([task(i) for i in ["a", "b", "a", "poison", "c"]])
    await asyncio.sleep(0.2)  # let every delivery reach the loop while the first batch waits
    release.set()
    await wait_for_depth(transport, f"{queue}.dead", 1)
    await wait_until(lambda: "c" in singles, "the good messages of the failed batch")
    assert batches[1] == ["a", "b", "poison", "c"]  # waiting together: one call, repeat gone
    assert singles == ["a", "b", "c"]

    # A redelivery of a message the inbox holds reaches no handler again.
    await transport.publish_many([task("handled-then-crashed")])
    await wait_until(lambda: ["handled-then-crashed"] in batches, "the crashed one's batch")
    await transport.publish_many([task("end")])
    await wait_until(lambda: batches[-1] == ["end"], "the next batch")
    assert batches.count(["handled-then-crashed"]) == 1
    assert "handled-then-crashed" not in singles
    # Sent again without the broker flagging it (a publisher's retry): the batch handler
    # gets it and must absorb it; the inbox is only asked about redeliveries.
    await transport.publish_many([task("a")])
    await wait_until(lambda: batches[-1] == ["a"], "a message sent again")
    await running.finish()
    db.close()


class AwayInbox(Inbox):
    """An inbox whose database is away (a connection error) until ``back`` is set."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.back = False
        self.refused = 0

    def _away(self) -> None:
        if not self.back:
            self.refused += 1
            raise psycopg.OperationalError("connection refused (the test's outage)")

    def seen(self, consumer: str, message_id: str) -> bool:
        self._away()
        return super().seen(consumer, message_id)

    def remember_all(self, consumer: str, message_ids: list[str]) -> None:
        self._away()
        super().remember_all(consumer, message_ids)


async def test_an_inbox_whose_database_is_away_logs_one_warning_not_a_traceback_per_message(
    transport: AnyTransport,
    queue_names: QueueNames,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The messages go back and are handled once the database is back; meanwhile the log says
    once that it is away and once that it is back (it wrote a traceback per message)."""
    queue = queue_names("work")
    db = Database(database_url)
    inbox = AwayInbox(db)
    handled: list[str] = []

    async def handle(message: Message) -> None:
        handled.append(message.message_id)

    running = start(transport, queue, handle, inbox, first_pause=0.05, max_pause=0.2)
    ids = [f"m{i}" for i in range(5)]
    await _published_when_bound(transport, [task(i) for i in ids])
    await wait_until(lambda: inbox.refused >= 10, "the inbox refused a few times")
    inbox.back = True
    await wait_until(lambda: inbox.seen_among("tester", ids) == set(ids), "all remembered")
    await running.finish()
    db.close()
    lines = [r for r in caplog.records if r.name.startswith("ops.")]
    assert not [r for r in lines if r.exc_info], [r.getMessage() for r in lines if r.exc_info]
    said = [r.getMessage() for r in lines]
    away = [line for line in said if "the inbox's database is unavailable" in line]
    assert len(away) == 1, away
    assert any("the inbox's database is back" in line for line in said)
