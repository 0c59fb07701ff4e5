"""A consumer loop cancelled in the middle of its work (the pipeline losing its lead) hands
every delivery it holds back to the queue at once, on both transports: in a process that goes
on living, nothing may stay unacked until the process ends."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from ops.messaging.consumer import ConsumerLoop
from ops.messaging.inbox import Inbox
from ops.messaging.transport import Message
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


@pytest.mark.parametrize("batched", [False, True])
async def test_a_cancelled_consumer_hands_back_what_it_holds(
    transport: AnyTransport, queue_names: QueueNames, inbox: Inbox, batched: bool
) -> None:
    queue = queue_names("held")
    await transport.declare_queue(queue, ["task.#"])
    started: list[str] = []

    async def hangs(message: Message) -> None:
        started.append(message.message_id)
        await asyncio.Event().wait()  # a handler waiting on a database that hangs

    async def hangs_batch(messages: list[Message]) -> None:
        started.extend(m.message_id for m in messages)
        await asyncio.Event().wait()

    for n in range(5):
        await transport.publish(Message(f"task.web.n{n}", b"{}", f"m{n}"))
    loop = ConsumerLoop(
        transport,
        queue,
        ["task.#"],
        hangs,
        consumer_name=queue,
        inbox=inbox,
        prefetch=10,
        batch_handler=hangs_batch if batched else None,
    )
    running = asyncio.ensure_future(loop.run(asyncio.Event()))
    await wait_until(lambda: bool(started), "a handler running")
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    await wait_for_depth(transport, queue, 5)  # every one of them ready again
