"""The node registry over HTTP: ``POST /v1/servers`` registers (or re-describes) a node,
``GET /v1/servers`` lists them. Consumes a ServerBook port and a clock; emits routes.

A registration carries the node's public host key (pinned by the handlers) and never a
private key: the handlers log in with the key their own settings point at.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from domain.server import parse_server
from gateway.ports import ServerBook
from gateway.request_parsing import read_json_object
from gateway.responses import ApiJSONResponse, success


def server_routes(*, servers: ServerBook, clock: Callable[[], datetime], actor: str) -> list[Route]:
    async def register(request: Request) -> Response:
        command = parse_server(await read_json_object(request), now=clock(), actor=actor)
        await asyncio.to_thread(servers.register, command)
        return success(server_id=command.server_id)

    async def listing(request: Request) -> Response:
        return ApiJSONResponse({"servers": await asyncio.to_thread(servers.listing)})

    return [
        Route("/v1/servers", register, methods=["POST"]),
        Route("/v1/servers", listing, methods=["GET"]),
    ]
