"""The node registry over HTTP, staff's only: ``POST /v1/servers`` registers (or re-describes)
a node, ``POST /v1/servers/{id}/rekey`` points it at a new host, port or host key,
``GET /v1/servers`` lists them. Consumes a ServerBook port and a clock; emits routes.

A registration carries the node's public host key (pinned by the handlers) and never a
private key: the handlers log in with the key their own settings point at. Registering a known
node again with another host, port or host key is a 409 naming the re-key call, so moving a
node (and every password later sent to it) is never a side effect of a repeated registration;
the re-key answers ``{"result": "success", "server_id", "changed", "previous_fingerprint",
"fingerprint"}`` and records ``Server.Rekeyed`` (nothing when nothing changes), 404 for a node
not registered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from domain.server import parse_rekey, parse_server
from gateway.auth import actor_of, guarded_route
from gateway.credentials import STAFF
from gateway.ports import ServerBook
from gateway.request_parsing import read_json_object
from gateway.responses import ApiJSONResponse, success


def server_routes(*, servers: ServerBook, clock: Callable[[], datetime]) -> list[Route]:
    async def register(request: Request) -> Response:
        body = await read_json_object(request)
        command = parse_server(body, now=clock(), actor=actor_of(request))
        await asyncio.to_thread(servers.register, command)
        return success(server_id=command.server_id)

    async def rekey(request: Request) -> Response:
        server_id: str = request.path_params["server_id"]
        body = await read_json_object(request)
        command = parse_rekey(server_id, body, now=clock(), actor=actor_of(request))
        outcome = await asyncio.to_thread(servers.rekey, command)
        return success(200, server_id=command.server_id, **outcome)

    async def listing(request: Request) -> Response:
        return ApiJSONResponse({"servers": await asyncio.to_thread(servers.listing)})

    return [
        guarded_route("/v1/servers", register, method="POST", area=STAFF),
        guarded_route("/v1/servers/{server_id}/rekey", rekey, method="POST", area=STAFF),
        guarded_route("/v1/servers", listing, method="GET", area=STAFF),
    ]
