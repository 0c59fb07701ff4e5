"""``POST /v1/services/{service_id}/client-link``: WHMCS (or staff) mints the link that opens
a service's client area.

``client_link_routes`` consumes the ``ScreenPorts`` (the signing key, the clock, the views
and the ledger that say whether the service was ordered, and the public base URL) and emits
the one route, guarded like every services route (``services`` or ``staff``; a credential of
one service only for its own). The optional body ``{"ttl_s": n}`` gives the link's life in
whole seconds, ``MIN_TTL_S`` to ``MAX_TTL_S`` (default ``DEFAULT_TTL_S``); the answer is 200
``{"url": "<base>/client/<id>?token=<t>", "expires_at"}``, 404 for a service never ordered,
422 for a bad ``ttl_s``. Minting records nothing: the link is a signature, and it is not
logged (the request log writes the path only).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from domain.commands import parse_external_id
from domain.errors import InvalidInput, NotFound
from gateway.auth import guarded_route
from gateway.credentials import SERVICES
from gateway.request_parsing import read_json
from gateway.responses import ApiJSONResponse
from gateway.screens.client_tokens import mint

if TYPE_CHECKING:
    from gateway.screens.screen_ports import ScreenPorts

DEFAULT_TTL_S = 3600
MIN_TTL_S = 60
MAX_TTL_S = 7 * 24 * 3600


def client_link_routes(ports: ScreenPorts) -> list[Route]:
    async def client_link(request: Request) -> Response:
        service_id = parse_external_id(request.path_params["service_id"], "service id")
        ttl_s = _ttl(await read_json(request, required=False))
        known = await asyncio.to_thread(
            lambda: (
                ports.views.service(service_id) is not None
                or ports.ledger.recorded_service(service_id) is not None
            )
        )
        if not known:
            raise NotFound(f"service {service_id} not found")
        expires_at = ports.clock().replace(microsecond=0) + timedelta(seconds=ttl_s)
        token = mint(ports.signing_key, service_id, expires_at)
        base = ports.public_url or str(request.base_url)
        url = f"{base.rstrip('/')}/client/{quote(service_id)}?token={token}"
        return ApiJSONResponse({"url": url, "expires_at": expires_at.isoformat()})

    return [
        guarded_route(
            "/v1/services/{service_id}/client-link", client_link, method="POST", area=SERVICES
        )
    ]


def _ttl(body: object) -> int:
    if body is None:
        return DEFAULT_TTL_S
    assert isinstance(body, dict)  # read_json answers 400 for anything else
    unknown = sorted(set(body) - {"ttl_s"})
    if unknown:
        raise InvalidInput(f"unknown field(s): {', '.join(map(str, unknown))}")
    ttl = body.get("ttl_s", DEFAULT_TTL_S)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not MIN_TTL_S <= ttl <= MAX_TTL_S:
        raise InvalidInput(
            f"ttl_s must be a whole number of seconds from {MIN_TTL_S} to {MAX_TTL_S}"
        )
    return ttl
