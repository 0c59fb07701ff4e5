"""The console's live updates: ``GET /admin/live`` (server-sent events, signed-in only).

Consumes the ``ScreenPorts``' one ``LiveFeed`` and emits, per open page:

- without parameters (the lists: Home, Services, the task queue): ``event: change`` with the
  views' new position whenever anything changed (``watch(None)``); the page then fetches
  its own fragment (``?fragment=1``), rendered and escaped by the server;
- with ``service_id`` (a service's Deploy tab): ``event: timeline`` with the timeline's
  HTML each time that service changes, read once per change for every page watching it
  (``LiveFeed.shared``), not once per page.

``static/console.js`` listens, and polls the fragment every 2 s when the stream fails.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.screens.console_service import timeline_fragment
from gateway.screens.console_session import signed_in
from gateway.screens.event_stream import event_stream

if TYPE_CHECKING:
    from gateway.screens.screen_ports import ScreenPorts


def live_routes(ports: ScreenPorts) -> list[Route]:
    async def ticks() -> AsyncIterator[tuple[str, str]]:
        with ports.live.watch(None) as watch:
            while True:
                position = await watch.next()
                yield "change", str(position)

    async def timeline(service_id: str) -> AsyncIterator[tuple[str, str]]:
        with ports.live.watch(service_id) as watch:
            while True:
                position = await watch.next()
                if position is None:
                    continue

                async def read(service_id: str = service_id) -> str:
                    return await timeline_fragment(ports, service_id)

                html: str = await ports.live.shared(service_id, position, read)
                yield "timeline", html

    async def live(request: Request) -> Response:
        service_id = request.query_params.get("service_id")
        return event_stream(request, timeline(service_id) if service_id else ticks())

    return [Route("/admin/live", signed_in(ports, live), methods=["GET"])]
