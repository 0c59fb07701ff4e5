"""``broker_answers(url)``: does anything accept a TCP connection at the broker's address?

``AmqpTransport.connect`` asks this first. A broker that is down is then one OSError (a
TransportError to the caller, which logs its retry once, with the back-off) instead of
aiormq's error line and aio-pika's "reconnecting" line on every attempt, and no robust
connection is left behind trying on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit

AMQP_PORT = 5672
AMQPS_PORT = 5671


async def broker_answers(url: str) -> None:
    """Returns once a TCP connection to the broker was opened (and closed); raises OSError."""
    parts = urlsplit(url)
    port = parts.port or (AMQPS_PORT if parts.scheme == "amqps" else AMQP_PORT)
    _, writer = await asyncio.open_connection(parts.hostname or "localhost", port)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
