"""Reading a server-sent-events response of an ASGI app as it streams (httpx's ASGI
transport waits for the whole body, which a live page never ends).

``EventStreamReader`` consumes an app and a path and emits the stream's events, parsed, one
``next_event`` at a time; ``close`` disconnects like a browser leaving the page and waits
for the app to let go. Call it from inside a running event loop.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import ASGIApp, Message


class EventStreamReader:
    def __init__(self, app: ASGIApp, path: str) -> None:
        route, _, query = path.partition("?")
        self.status: int | None = None
        self._chunks: asyncio.Queue[bytes] = asyncio.Queue()
        self._received: asyncio.Queue[Message] = asyncio.Queue()
        self._buffer = ""
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": route,
            "raw_path": route.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": [(b"host", b"gateway.test"), (b"accept", b"text/event-stream")],
            "client": ("127.0.0.1", 50000),
            "server": ("gateway.test", 80),
        }
        self._task = asyncio.ensure_future(app(scope, self._receive, self._send))

    async def _receive(self) -> Message:
        return await self._received.get()

    async def _send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        elif message["type"] == "http.response.body":
            self._chunks.put_nowait(message.get("body", b""))

    async def next_event(self, timeout: float) -> tuple[str, str]:
        """The next ``(event, data)``; comments and ``retry:`` lines are skipped."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            while "\n\n" in self._buffer:
                block, self._buffer = self._buffer.split("\n\n", 1)
                event, data = "message", []
                for line in block.split("\n"):
                    if line.startswith("event: "):
                        event = line[len("event: ") :]
                    elif line.startswith("data: "):
                        data.append(line[len("data: ") :])
                if data:
                    return event, "\n".join(data)
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError("no event came in time")
            chunk = await asyncio.wait_for(self._chunks.get(), remaining)
            self._buffer += chunk.decode()

    async def close(self) -> None:
        for _ in range(4):  # the response and its disconnect listener each ask
            self._received.put_nowait({"type": "http.disconnect"})
        await asyncio.wait_for(self._task, 10)
