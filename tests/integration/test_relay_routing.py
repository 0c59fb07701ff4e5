"""The relay publishes only what some queue of the topology is bound for.

A topic nothing consumes (most ``Task.*`` events) is skipped before it is decoded, counted as
unrouted, and never reaches the broker; routed events still arrive in order, and the stored
position still moves past the skipped ones, only more lazily.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from eventsourcing.domain import Aggregate

from domain.runtime_settings import RuntimeSettings
from domain.server import Server
from domain.service import Service
from domain.task import Task
from domain.ticket import Ticket
from ops.messaging.inprocess_transport import InProcessTransport, topic_matches
from ops.messaging.outbox_relay import OutboxRelay
from ops.messaging.topology import PIPELINE_QUEUE, declare_topology, routed, skipped_by_relay
from ops.messaging.transport import Delivery, Message, Transport
from ops.store.database import Database
from ops.store.event_store import EventStore
from ops.store.positions import PositionStore
from tests.support.outbox import (
    NOW,
    record_orders,
    transport,  # noqa: F401 - the shared fixture
)


@pytest.mark.parametrize(
    ("pattern", "key", "matches"),
    [
        ("task.#", "task", True),  # '#' matches zero words…
        ("task.#", "task.web.web1", True),  # …or several
        ("a.#.b", "a.b", True),
        ("#", "Service.Ordered", True),
        ("task.*", "task", False),  # '*' is exactly one word: not zero…
        ("task.*", "task.web.web1", False),  # …and not two
        ("task.*.*", "task.web.web1", True),
        ("Service.*", "Services.Ordered", False),
    ],
)
def test_topic_matching_follows_amqp(pattern: str, key: str, matches: bool) -> None:
    assert topic_matches(pattern, key) is matches


@pytest.mark.parametrize(
    ("key", "is_routed"),
    [
        ("Service.Ordered", True),
        ("Task.Errored", True),
        ("Task.Retried", True),
        ("RuntimeSettings.Changed", True),
        ("task.web.web1", True),
        ("result.web", True),
        ("cron.tickets", True),
        ("Task.Planned", False),
        ("Task.Dispatched", False),
        ("Task.Succeeded", False),
        ("Server.Registered", True),  # a build waiting for a node starts (the sweep)
        ("Server.Updated", False),
        ("task.web", False),  # handler bindings are task.<role>.* : one word after the role
        ("task.web.web1.x", False),
        ("task.ftp.ftp1", False),
    ],
)
def test_routed_says_whether_a_topology_binding_matches(key: str, is_routed: bool) -> None:
    assert routed(key) is is_routed


def _event_topics() -> list[str]:
    """Every event class's routing key (its qualname), as the relay computes it."""
    return [
        member.__qualname__
        for aggregate in (Service, Task, Server, Ticket, RuntimeSettings)
        for member in vars(aggregate).values()
        if isinstance(member, type) and issubclass(member, Aggregate.Event)
    ]


async def test_the_relay_skips_exactly_what_the_broker_would_return(
    transport: Transport,
) -> None:
    keys = [*_event_topics(), "task.web.web1", "task.web", "result.mail", "cron.x.y"]
    assert "Task.Dispatched" in keys and "Service.Ordered" in keys
    await declare_topology(transport)
    messages = [Message(key, b"{}", f"m{i}") for i, key in enumerate(keys)]
    returned = await transport.publish_many(messages)
    assert [m.routing_key for m in returned] == [k for k in keys if not routed(k)]
    # of those the relay leaves out only Task events; any other event is published anyway
    skipped = [k for k in keys if skipped_by_relay(k)]
    assert skipped and all(k.startswith("Task.") and not routed(k) for k in skipped)
    assert "Service.Placed" in [m.routing_key for m in returned]
    assert not skipped_by_relay("Service.Placed") and not skipped_by_relay("Service.NewKind")


class CountingTransport(InProcessTransport):
    """The in-process broker, recording every message offered to it."""

    def __init__(self) -> None:
        super().__init__()
        self.offered: list[Message] = []

    async def publish_many(self, messages: Sequence[Message]) -> list[Message]:
        self.offered += messages
        return await super().publish_many(messages)


def record_tasks(store: EventStore, count: int, step: str) -> int:
    """Saves ``count`` planned-then-dispatched tasks: events no queue is bound for."""
    for i in range(count):
        task = Task.plan(
            service_id="1",
            run=1,
            step=f"{step}.{i}",
            role="web",
            action="ensure_user",
            server_id="web1",
            params={},
            depends_on=[],
            now=NOW,
        )
        task.dispatch(NOW, 30)
        store.save(task)
    return 2 * count


@pytest.fixture
async def counting() -> AsyncIterator[CountingTransport]:
    transport = CountingTransport()
    await transport.connect()
    await declare_topology(transport)
    yield transport
    await transport.close()


async def test_unrouted_events_are_not_published_and_routed_ones_arrive_in_order(
    counting: CountingTransport, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    store, db = EventStore(url), Database(url)
    record_orders(store, 3)  # ids 1-3
    skipped = record_tasks(store, 2, "a")  # ids 4-7
    record_orders(store, 2, first=4)  # ids 8-9
    skipped += record_tasks(store, 1, "b")  # ids 10-11: the batch ends on skipped events
    arrived: list[str] = []

    async def receive(delivery: Delivery) -> None:
        arrived.append(delivery.message.message_id)
        await delivery.ack()

    await counting.consume(PIPELINE_QUEUE, receive, prefetch=0)
    relay = OutboxRelay(store, PositionStore(db), counting)
    assert await relay.relay_once() == 11
    assert [m.message_id for m in counting.offered] == ["1", "2", "3", "8", "9"]
    assert arrived == ["1", "2", "3", "8", "9"]
    assert (relay.published, relay.unrouted) == (11, skipped)
    # the batch published something, so its whole span is stored, skipped tail included
    assert PositionStore(db).get("relay") == 11
    restarted = OutboxRelay(store, PositionStore(db), counting)
    assert await restarted.relay_once() == 0
    assert len(counting.offered) == 5
    store.close()
    db.close()


async def test_a_batch_that_publishes_nothing_stores_its_position_only_when_due(
    counting: CountingTransport, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    store, db = EventStore(url), Database(url)
    positions = PositionStore(db)
    record_orders(store, 2)  # ids 1-2
    record_tasks(store, 2, "a")  # ids 3-6
    lazy = OutboxRelay(store, positions, counting, batch_size=2, position_interval=60)
    assert [await lazy.relay_once() for _ in range(4)] == [2, 2, 2, 0]
    assert positions.get("relay") == 2  # skipped rows since: not worth a commit yet
    assert lazy.unrouted == 4
    # A restart merely re-reads (and again skips) those rows: nothing is published twice.
    restarted = OutboxRelay(store, positions, counting, batch_size=2, position_interval=0)
    assert [await restarted.relay_once() for _ in range(3)] == [2, 2, 0]
    assert [m.message_id for m in counting.offered] == ["1", "2"]
    assert positions.get("relay") == 6  # due at once: stored past the skipped rows
    store.close()
    db.close()
