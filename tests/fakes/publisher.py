"""The ``Publisher`` port of the pipeline and of the role handlers (the same shape), keeping
every message instead of sending it to a broker.

Consumes what the pipeline (task messages) or a role handler (results, heartbeats) publishes;
emits it back to the test: as sent, or decoded.
"""

from __future__ import annotations

from handlers import pipeline, role_handler
from handlers.messages import HeartbeatMessage, ResultMessage, TaskMessage


class RecordingPublisher:
    """Every message as sent, in order; task messages also decoded, checked to travel under
    their own routing key and id, in ``messages`` until the test takes them."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, str]] = []
        self.messages: list[TaskMessage] = []
        self.sent_again: list[str] = []  # ids of the messages published as copies

    async def publish(
        self, routing_key: str, body: bytes, message_id: str, *, again: bool = False
    ) -> None:
        self.sent.append((routing_key, body, message_id))
        if again:
            self.sent_again.append(message_id)
        if routing_key.startswith(("result.", "heartbeat.")):
            return
        message = TaskMessage.from_json(body)
        assert (routing_key, message_id) == (message.routing_key, message.message_id)
        self.messages.append(message)

    def steps(self) -> list[str]:
        return [m.step for m in self.messages]

    def take(self) -> list[TaskMessage]:
        taken, self.messages = self.messages, []
        return taken

    def results(self) -> list[ResultMessage]:
        return [ResultMessage.from_json(b) for k, b, _ in self.sent if k.startswith("result.")]

    def heartbeats(self) -> list[HeartbeatMessage]:
        return [
            HeartbeatMessage.from_json(b) for k, b, _ in self.sent if k.startswith("heartbeat.")
        ]


_pipeline_port: pipeline.Publisher = RecordingPublisher()
_handler_port: role_handler.Publisher = RecordingPublisher()
