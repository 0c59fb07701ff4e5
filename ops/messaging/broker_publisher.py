"""The handlers' ``Publisher`` port over a Transport: one confirmed, mandatory message."""

from __future__ import annotations

from ops.messaging.transport import Message, Transport


class BrokerPublisher:
    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    async def publish(self, routing_key: str, body: bytes, message_id: str) -> None:
        await self._transport.publish(
            Message(routing_key=routing_key, body=body, message_id=message_id)
        )
