"""A service's SSL over HTTP, in the services area (WHMCS, staff, and a customer's link for
their own service):

- ``GET /v1/services/{id}/ssl`` → ``{"service_id", "certificates": [{role, mode, state,
  frozen_until, names, issuer, not_before, not_after, next_check_at, renew_at, last_error,
  ari: {start, end, explanation_url} | null}]}``, web first (404 for an unknown service);
- ``POST /v1/services/{id}/ssl/{role}/issue`` → 202: fast mode again, a freeze after failures
  lifted; 409 with the time while a rate limit froze it, or while it is custom;
- ``PUT /v1/services/{id}/ssl/{role}/custom {certificate, private_key, chain}`` → 202: the
  customer's certificate, checked first (422 with the reason, nothing recorded), its key
  sealed before it is recorded;
- ``DELETE /v1/services/{id}/ssl/{role}/custom`` → 202: back to automatic SSL.

Consumes a CertificateLedger (writes), SslViews and ViewQueries (reads) and a clock; emits
routes. Like every route, these only record: the SSL desk does the work. No answer ever
holds a certificate's PEM or a key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from domain.errors import InvalidInput, NotFound
from domain.ssl_requests import check_role, parse_custom
from gateway.auth import actor_of, guarded_route
from gateway.credentials import SERVICES
from gateway.ports import CertificateLedger, CommandLedger, SslViews, ViewQueries
from gateway.request_parsing import read_json_object
from gateway.responses import ApiJSONResponse, success


def ssl_routes(
    *,
    certificates: CertificateLedger,
    ssl_views: SslViews,
    ledger: CommandLedger,
    views: ViewQueries,
    clock: Callable[[], datetime],
) -> list[Route]:
    async def show(request: Request) -> Response:
        service_id: str = request.path_params["service_id"]
        found = await asyncio.to_thread(ssl_views.ssl, service_id)
        if not found and not await asyncio.to_thread(_known, service_id):
            raise NotFound(f"no service {service_id!r}")
        return ApiJSONResponse({"service_id": service_id, "certificates": found})

    def _known(service_id: str) -> bool:
        return (
            views.service(service_id) is not None or ledger.recorded_service(service_id) is not None
        )

    async def issue(request: Request) -> Response:
        service_id, role = _target(request)
        await asyncio.to_thread(
            certificates.request_issue, service_id, role, clock(), actor_of(request)
        )
        return success()

    async def upload(request: Request) -> Response:
        service_id, role = _target(request)
        body = await read_json_object(request)
        assert isinstance(body, dict)  # read_json_object answers 400 for anything else
        custom = parse_custom(body)
        await asyncio.to_thread(
            certificates.upload_custom, service_id, role, custom, clock(), actor_of(request)
        )
        return success()

    async def remove(request: Request) -> Response:
        service_id, role = _target(request)
        await asyncio.to_thread(
            certificates.remove_custom, service_id, role, clock(), actor_of(request)
        )
        return success()

    path = "/v1/services/{service_id}/ssl"
    return [
        guarded_route(path, show, method="GET", area=SERVICES),
        guarded_route(path + "/{role}/issue", issue, method="POST", area=SERVICES),
        guarded_route(path + "/{role}/custom", upload, method="PUT", area=SERVICES),
        guarded_route(path + "/{role}/custom", remove, method="DELETE", area=SERVICES),
    ]


def _target(request: Request) -> tuple[str, str]:
    role = check_role(request.path_params["role"])
    service_id: str = request.path_params["service_id"]
    if not service_id:
        raise InvalidInput("a service id is needed")
    return service_id, role
