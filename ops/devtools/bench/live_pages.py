"""Open client-area pages for ``bench screens``: SSE clients on ``/client/{id}/live``.

``LivePage`` consumes one client link and keeps an ``EventSource``'s worth of it open over
httpx: every ``event: state`` it receives is kept with the ``perf_counter`` it arrived at.
``change_after`` emits when the page first showed something other than what it showed at a
moment (the latency the bench reports); ``first_state`` waits for the state a page sends on
connecting.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from urllib.parse import urlsplit

import httpx


class LivePage:
    def __init__(self, service_id: str, link: str) -> None:
        parts = urlsplit(link)
        self.service_id = service_id
        self.path = f"{parts.path}/live?{parts.query}"  # the link's token, on the live route
        self.states: list[tuple[float, str]] = []
        self._arrived = asyncio.Event()
        self._reading: asyncio.Task[None] | None = None
        self.failure: str | None = None

    def open(self, client: httpx.AsyncClient) -> None:
        self._reading = asyncio.ensure_future(self._read(client))

    async def _read(self, client: httpx.AsyncClient) -> None:
        try:
            async with client.stream("GET", self.path, timeout=None) as reply:
                if reply.status_code != 200:
                    self.failure = f"{self.path.split('?')[0]} answered {reply.status_code}"
                    return
                event, data = "", []
                async for line in reply.aiter_lines():
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].removeprefix(" "))
                    elif not line:
                        if event == "state" and data:
                            self.states.append((time.perf_counter(), "\n".join(data)))
                            self._arrived.set()
                        event, data = "", []
        except httpx.HTTPError as exc:
            self.failure = f"{self.path.split('?')[0]}: {type(exc).__name__}"
        finally:
            self._arrived.set()  # a waiter sees the failure rather than waiting on

    @property
    def shown(self) -> str | None:
        """The last state the page received."""
        return self.states[-1][1] if self.states else None

    def _first_change(self, since: float, before: str | None) -> float | None:
        for arrived, state in self.states:
            if arrived >= since and state != before:
                return arrived
        return None

    async def change_after(self, since: float, before: str | None, timeout: float) -> float | None:
        """Seconds from ``since`` to the first state unlike ``before`` received after it;
        None when none came within ``timeout``."""
        deadline = time.perf_counter() + timeout
        while (arrived := self._first_change(since, before)) is None:
            if self.failure is not None or time.perf_counter() >= deadline:
                return None
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), deadline - time.perf_counter())
        return arrived - since

    async def first_state(self, timeout: float) -> bool:
        deadline = time.perf_counter() + timeout
        while not self.states and self.failure is None and time.perf_counter() < deadline:
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), deadline - time.perf_counter())
        return bool(self.states)

    async def close(self) -> None:
        if self._reading is not None:
            self._reading.cancel()
            with contextlib.suppress(BaseException):
                await self._reading
