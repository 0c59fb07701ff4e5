"""The staff console, ``/admin/…``: its routes, the Home, Services and Servers pages.

``console_routes`` consumes the ``ScreenPorts`` and emits every console route: the sign-in
(``console_session``), these pages, one service's page (``console_service``), the task queue
(``console_queue``), the operation log, statistics and settings (``console_fleet``) and the
live ticks (``console_live``). Every page but the sign-in needs a session; pages read views
(but a service not yet projected and the Events tab: the store, see ``gateway.screens``); what
a button does goes through the API's own parsing and ledger calls.

- Home: how many services are in each status, the nodes with their open tasks and last
  usage sync, the latest terminal failures, the latest services.
- Services: search by service id, domain (a substring) or client id, filter by status and
  mode, paged newest first (``ViewQueries.services_page``, cursor as the API's); live: its
  table (``?fragment=1``, the page's cursor kept) read once per change for all pages
  (``console_live.shared_fragment``).
- Servers: the registered nodes, their roles and limits (``ServerBook.listing``).
"""

from __future__ import annotations

import asyncio
from html import escape
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from domain.commands import MODES
from domain.errors import InvalidInput
from domain.service import STATUSES
from gateway.request_parsing import BadRequest
from gateway.screens.console_session import console_page, session_routes, signed_in
from gateway.screens.rendering import PAGE_HEADERS, render
from gateway.services_api import cursor_after, read_cursor, service_body, service_filters

if TYPE_CHECKING:
    from gateway.screens.screen_ports import ScreenPorts

PAGE_SIZE = 50
COUNT_CAP = 1000  # Home counts up to this many services per status, then shows "1000+"
RECENT = 10


def console_routes(ports: ScreenPorts) -> list[BaseRoute]:
    from gateway.screens.console_fleet import fleet_routes
    from gateway.screens.console_live import live_routes, shared_fragment
    from gateway.screens.console_queue import queue_routes
    from gateway.screens.console_service import service_routes

    async def home(request: Request) -> Response:
        return console_page(request, "console/home.html", here="home", **await _home(ports))

    async def services(request: Request) -> Response:
        params = request.query_params
        context: dict[str, Any] = {
            "q": params.get("q", ""),
            "status": params.get("status", ""),
            "mode": params.get("mode", ""),
            "cursor": params.get("cursor", ""),
            "statuses": STATUSES,
            "modes": MODES,
            "rows": [],
            "next_cursor": None,
            "live_position": ports.live.position,  # before the read: see console_live
        }
        if params.get("fragment"):

            async def read() -> str:
                rows, _ = await _services_page(ports, request)
                return render("console/services_rows.html", rows=rows)

            try:
                html = await shared_fragment(ports, request, read)
            except (BadRequest, InvalidInput) as exc:
                return HTMLResponse(escape(str(exc)), status_code=400, headers=PAGE_HEADERS)
            return HTMLResponse(html, headers=PAGE_HEADERS)
        try:
            rows, next_cursor = await _services_page(ports, request)
        except (BadRequest, InvalidInput) as exc:
            return console_page(
                request,
                "console/services.html",
                here="services",
                status_code=400,
                failure=str(exc),
                **context,
            )
        context.update(rows=rows, next_cursor=next_cursor)
        return console_page(request, "console/services.html", here="services", **context)

    async def servers(request: Request) -> Response:
        listing = [] if ports.servers is None else await asyncio.to_thread(ports.servers.listing)
        return console_page(request, "console/servers.html", here="servers", servers=listing)

    def admin(path: str, endpoint: Any) -> Route:
        return Route(path, signed_in(ports, endpoint), methods=["GET"])

    return [
        *session_routes(ports),
        admin("/admin", home),
        admin("/admin/services", services),
        admin("/admin/servers", servers),
        *service_routes(ports),
        *queue_routes(ports),
        *fleet_routes(ports),
        *live_routes(ports),
    ]


async def _home(ports: ScreenPorts) -> dict[str, Any]:
    def read() -> dict[str, Any]:
        views = ports.views
        counts = {
            status: len(views.services_page(status=status, limit=COUNT_CAP + 1))
            for status in STATUSES
        }
        usage_nodes = (
            {} if ports.usage is None else {n["server_id"]: n for n in ports.usage.nodes()}
        )
        nodes = [] if ports.servers is None else ports.servers.listing()
        servers = [
            {
                **node,
                "running": len(views.tasks(server_id=node["server_id"], state="dispatched")),
                "usage": usage_nodes.get(node["server_id"]),
            }
            for node in nodes
        ]
        return {
            "counts": counts,
            "count_cap": COUNT_CAP,
            "servers": servers,
            "failures": views.tasks(state="error", limit=RECENT)[::-1],
            "recent": [service_body(row) for row in views.services_page(limit=RECENT)],
        }

    return await asyncio.to_thread(read)


async def _services_page(
    ports: ScreenPorts, request: Request
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of the services search: ``q`` is a service id, a client id or a part of a
    domain (an exact service id first, then clients, then domains)."""
    filters = service_filters(request)  # status and mode, checked as the API checks them
    q = request.query_params.get("q", "").strip()
    after = read_cursor(request.query_params.get("cursor") or None)

    def read() -> list[dict[str, Any]]:
        views = ports.views
        base = {"status": filters["status"], "mode": filters["mode"]}
        if not q:
            return views.services_page(**base, after=after, limit=PAGE_SIZE + 1)
        one = views.service(q) if after is None else None
        if one is not None and all(one.get(k) == v for k, v in base.items() if v):
            return [one]
        by_client = views.services_page(**base, client_id=q, after=after, limit=PAGE_SIZE + 1)
        return by_client or views.services_page(**base, domain=q, after=after, limit=PAGE_SIZE + 1)

    rows = await asyncio.to_thread(read)
    page = rows[:PAGE_SIZE]
    more = len(rows) > PAGE_SIZE
    return [service_body(row) for row in page], cursor_after(page[-1]) if more else None
