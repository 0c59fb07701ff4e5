"""Server-sent events: how a page's live updates travel (``EventSource`` in the browser).

``event_stream`` consumes the request and an async iterator of ``(event, data)`` pairs and
emits a streaming response of ``text/event-stream``; a comment every ``keepalive_s`` keeps
proxies from closing a quiet stream, and the stream ends as soon as the page goes away (the
iterator is closed, so whatever it watches is let go). ``data`` is JSON or escaped HTML,
one line or several; ``sse_event`` cuts it at every line break SSE knows (``\r\n``, ``\r``
and ``\n``), each piece its own ``data:`` field, so no text in it — a node's log line with a
lone ``\r`` — can start a field of its own (``event:``, ``retry:``) or end the event.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import StreamingResponse

from gateway.screens.rendering import PAGE_HEADERS

KEEPALIVE_S = 15.0
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def event_stream(
    request: Request,
    events: AsyncIterator[tuple[str, str]],
    *,
    keepalive_s: float = KEEPALIVE_S,
) -> StreamingResponse:
    async def body() -> AsyncIterator[str]:
        pending: asyncio.Task[tuple[str, str]] | None = None
        try:
            yield "retry: 2000\n\n"
            while not await request.is_disconnected():
                if pending is None:
                    pending = asyncio.ensure_future(anext(events))
                done, _ = await asyncio.wait({pending}, timeout=keepalive_s)
                if not done:
                    yield ": keepalive\n\n"
                    continue
                try:
                    event, data = pending.result()
                except StopAsyncIteration:
                    return
                finally:
                    pending = None
                yield sse_event(event, data)
        finally:
            if pending is not None:
                pending.cancel()
                with contextlib.suppress(BaseException):
                    await pending
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()

    headers = {**PAGE_HEADERS, "X-Accel-Buffering": "no"}  # nginx: pass each event at once
    return StreamingResponse(body(), media_type="text/event-stream", headers=headers)


def sse_event(event: str, data: str) -> str:
    """One event as sent: its name, then each line of ``data`` as a ``data:`` field."""
    lines = "".join(f"data: {line}\n" for line in _LINE_BREAK.split(data))
    return f"event: {event}\n{lines}\n"
