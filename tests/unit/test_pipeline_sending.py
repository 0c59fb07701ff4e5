"""The pipeline's task messages on their way out (handlers/pipeline_sending.py): one the broker
did not confirm is kept and re-sent with the same id once it takes messages again; one whose
attempt is over by then is dropped, not sent."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

from handlers.messages import TaskMessage
from handlers.pipeline_sending import TaskSender
from tests.fakes.publisher import RecordingPublisher

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


class Broker(RecordingPublisher):
    def __init__(self) -> None:
        super().__init__()
        self.away = True

    async def publish(
        self, routing_key: str, body: bytes, message_id: str, *, again: bool = False
    ) -> None:
        if self.away:
            raise ConnectionError("the broker is away")
        await super().publish(routing_key, body, message_id, again=again)


def task_message(step: str) -> TaskMessage:
    return TaskMessage(str(uuid.uuid4()), 1, "7", step, "web", "ensure_" + step, "web1", {})


async def test_kept_messages_go_out_once_back_but_not_an_attempt_that_is_over() -> None:
    broker = Broker()
    still, over = task_message("user"), task_message("domain")
    current = {still.message_id, over.message_id}
    sender = TaskSender(
        broker, current=lambda m: m.message_id in current, clock=lambda: T0, first_backoff=0.01
    )
    await sender.send([still, over])
    assert set(sender.unconfirmed) == {still.message_id, over.message_id}
    stop = asyncio.Event()
    resending = asyncio.ensure_future(sender.run(stop))
    try:
        await asyncio.sleep(0.1)  # tried again meanwhile, still refused
        assert broker.messages == []
        current.discard(over.message_id)  # that attempt ended (a staff cancel, say)
        broker.away = False
        sender.wake()
        for _ in range(200):
            if not sender.unconfirmed:
                break
            await asyncio.sleep(0.01)
        assert [m.message_id for m in broker.messages] == [still.message_id]
        # a publish that was not confirmed may have gone out: the re-send is marked a copy
        assert broker.sent_again == [still.message_id]
        assert sender.unconfirmed == {}
    finally:
        stop.set()
        await resending
