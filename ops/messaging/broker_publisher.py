"""The handlers' ``Publisher`` port over a Transport: one confirmed, mandatory message.

``wait_out_outages``: a publish the broker did not confirm (it is away, or the publishing
channel is still being restored after it came back) is tried again with capped back-off until
it is confirmed, instead of failing whatever is being handled — what a role handler wants for
the result of a step that ran: the result gets out once the broker is back. Only an
``Unroutable`` message (no queue bound for it) fails at once; cancelling the caller (the part
stopping) ends the wait. Without it, one try: the pipeline keeps and re-sends its own.
"""

from __future__ import annotations

import asyncio
import logging

from ops.messaging.transport import SENT_AGAIN, Message, Transport, TransportError, Unroutable

log = logging.getLogger(__name__)


class BrokerPublisher:
    def __init__(
        self,
        transport: Transport,
        *,
        wait_out_outages: bool = False,
        first_backoff: float = 0.1,
        max_backoff: float = 2.0,
    ) -> None:
        self._transport = transport
        self._patient = wait_out_outages
        self._first_backoff = first_backoff
        self._max_backoff = max_backoff

    async def publish(
        self, routing_key: str, body: bytes, message_id: str, *, again: bool = False
    ) -> None:
        """``again``: a copy of a message sent before under this id (marked ``SENT_AGAIN``, so
        a consumer checks it against its inbox)."""
        headers = {SENT_AGAIN: "1"} if again else {}
        message = Message(routing_key, body, message_id, headers)
        if not self._patient:
            await self._transport.publish(message)
            return
        backoff = self._first_backoff
        tries = 0
        while True:
            try:
                await self._transport.publish(message)
            except Unroutable:
                raise
            except TransportError as exc:
                tries += 1
                if tries == 1:
                    log.warning(
                        "publishing %s: broker unavailable (%s); trying again until confirmed",
                        routing_key,
                        exc,
                    )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            if tries:
                log.info("published %s after %d failed tries", routing_key, tries)
            return


def transient_publish_error(exc: Exception) -> bool:
    """Whether a failed publish may pass by itself: the broker away or refusing for now, not a
    message that matches no queue (``Unroutable``) nor one that cannot be sent at all."""
    return isinstance(exc, TransportError) and not isinstance(exc, Unroutable)
