"""The console's live updates: ``GET /admin/live`` (server-sent events, signed-in only), and
the lists' fragments read once per change for every page showing them.

Consumes the ``ScreenPorts``' one ``LiveFeed`` and emits, per open page:

- without ``service_id`` (the live lists: Services and the task queue; Home is not live):
  ``event: change`` with the views' new position whenever anything changed (``watch(None)``);
  the page then fetches its own fragment (``?fragment=1&at=<position>``), rendered and
  escaped by the server. ``shared_fragment`` reads a fragment once per position and address,
  whatever the number of pages asking (``LiveFeed.shared``);
- with ``service_id`` (a service's Deploy tab): ``event: timeline`` with the timeline's
  HTML at once (``live_reads``: read once the watch is open), then each time that service
  changes, read once per change for every page watching it.

A list is rendered with the feed's position before it read (``since``, in its stream's
address): when the feed is further on as the stream opens (a change landed between the
page's read and the stream, or while ``EventSource`` reconnected), the stream sends a
change at once; the Deploy tab's first timeline covers the same gap. ``static/console.js``
listens, and polls the fragment every 2 s when the stream fails.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.screens.console_service import timeline_fragment
from gateway.screens.console_session import signed_in
from gateway.screens.event_stream import event_stream
from gateway.screens.live_reads import live_reads

if TYPE_CHECKING:
    from gateway.screens.screen_ports import ScreenPorts


async def shared_fragment(
    ports: ScreenPorts, request: Request, read: Callable[[], Awaitable[str]]
) -> str:
    """A list's fragment: asked ``at`` the feed's current position (after a ``change``), read
    once for every page asking the same address; otherwise (polling, a stale position) read."""
    at = request.query_params.get("at", "")
    if not at.isdigit() or int(at) != ports.live.position:
        return await read()
    asked = sorted((k, v) for k, v in request.query_params.multi_items() if k != "at")
    key = f"fragment:{request.url.path}?{asked}"
    html: str = await ports.live.shared(key, int(at), read)
    return html


def live_routes(ports: ScreenPorts) -> list[Route]:
    async def ticks(since: int | None) -> AsyncIterator[tuple[str, str]]:
        with ports.live.watch(None) as watch:
            if since is None or since < watch.position:
                yield "change", str(watch.position)
            while True:
                position = await watch.next()
                if position is not None:
                    yield "change", str(position)

    async def timeline(service_id: str) -> AsyncIterator[tuple[str, str]]:
        async def read() -> str:
            return await timeline_fragment(ports, service_id)

        reads = live_reads(ports.live, service_id, f"timeline:{service_id}", read)
        try:
            async for html in reads:
                yield "timeline", html
        finally:  # the page went away: let its watch go now, not when collected
            aclose = getattr(reads, "aclose", None)
            if aclose is not None:
                await aclose()

    async def live(request: Request) -> Response:
        service_id = request.query_params.get("service_id")
        raw_since = request.query_params.get("since", "")
        since = int(raw_since) if raw_since.isdigit() else None
        return event_stream(request, timeline(service_id) if service_id else ticks(since))

    return [Route("/admin/live", signed_in(ports, live), methods=["GET"])]
