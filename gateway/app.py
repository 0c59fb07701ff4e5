"""The HTTP gateway for WHMCS: validates a call, records it as a command, answers at once.

``create_app`` consumes the ports (a CommandLedger to record commands, ViewQueries to read the
projections), the Credentials that resolve bearer tokens and a clock, and emits a Starlette
app. Nothing happens inside a request besides validation and one ledger call; validation
always comes first, so no error path records anything.

Status codes, one per kind of failure (every error body is ``{"result": "error", "error": …}``):

- 400: the request cannot be read — the body is not JSON, not a JSON object, sent with a
  non-JSON Content-Type; or a query parameter (``as_of``, ``since``, ``limit``, ``state``)
  is malformed.
- 401: the ``Authorization: Bearer`` token is missing or wrong (every ``/v1`` path).
- 403: the token's credential lacks the scope the route needs (``gateway.credentials``).
- 404: unknown route, unknown lifecycle or task action, unknown service, unknown task.
- 409: the command conflicts with the service's (or task's) state or an earlier order, or
  an order names a domain, vanity label or username another live service holds
  (``Conflict``), or a server registration would change a node's host, port or host key.
- 413: the body is larger than 64 KiB.
- 422: well-formed JSON whose values fail validation (``InvalidInput`` from the domain),
  or an order a deploy would refuse (``provider_settings.check_order``).
- 500: anything unexpected; the body says only "internal error".
- 503: ``/healthz`` when the event store cannot be reached.

``GET /healthz`` answers ``{"status": "ok"}``, with ``"dead_letters": {"<queue>.dead": n, …}``
when the app has a ``DeadLetters`` port and the broker answered.

The services list and one service's read live in ``gateway.services_api``; the timeline
and task routes in ``gateway.tasks_api``; a service's SSL in ``gateway.ssl_api``; the client
link (``POST /v1/services/{id}/client-link``) and the screens in ``gateway.screens``; reading
a request's body and query parameters, in ``gateway.request_parsing``.

A lifecycle call (and an order) may carry an ``Idempotency-Key`` header; it is the command id
when the body has none, so a retried call records one event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from domain.commands import LIFECYCLE_ACTIONS, parse_lifecycle, parse_order
from domain.correlation import set_command_id
from domain.provider_settings import ProviderSettings, check_order
from gateway.auth import BearerTokenMiddleware, Endpoint, actor_of, guarded_route
from gateway.boundary import ErrorBoundaryMiddleware
from gateway.credentials import SERVICES, Credentials
from gateway.ports import (
    CertificateLedger,
    CommandLedger,
    DeadLetters,
    ServerBook,
    SettingsBook,
    SslViews,
    UsageRefresh,
    UsageViews,
    ViewQueries,
)
from gateway.request_log import RequestLogMiddleware
from gateway.request_parsing import (
    query_limit,
    query_time,
    read_json,
    with_idempotency_key,
)
from gateway.responses import (
    REFUSALS,
    ApiJSONResponse,
    error,
    refusal_message,
    refusal_status,
    success,
)
from gateway.screens.client_links import client_link_routes
from gateway.screens.live_feed import ChangeSource, LiveFeed
from gateway.screens.screen_ports import LiveTaskLog, ScreenPorts, screen_routes
from gateway.servers_api import server_routes
from gateway.services_api import service_routes
from gateway.settings_api import settings_routes
from gateway.ssl_api import ssl_routes
from gateway.tasks_api import task_routes
from gateway.usage_api import usage_routes

DEFAULT_OPLOG_LIMIT = 200
MAX_OPLOG_LIMIT = 1000
_log = logging.getLogger("hostwright.gateway")


def create_app(
    *,
    ledger: CommandLedger,
    views: ViewQueries,
    credentials: Credentials,
    clock: Callable[[], datetime],
    servers: ServerBook | None = None,
    settings: SettingsBook | None = None,
    provider: ProviderSettings | None = None,
    dead_letters: DeadLetters | None = None,
    whmcs_api: bool = False,
    certificates: CertificateLedger | None = None,
    ssl_views: SslViews | None = None,
    usage: UsageViews | None = None,
    usage_refresh: UsageRefresh | None = None,
    live: ChangeSource | None = None,
    signing_key: bytes | None = None,
    task_logs: LiveTaskLog | None = None,
    public_url: str | None = None,
) -> Starlette:
    """The API over ``ledger`` (writes) and ``views`` (reads), its callers known by
    ``credentials``; what each records is recorded under the caller's credential's name.
    ``provider``: the vanity settings orders are checked against (None: no vanity services).
    ``dead_letters``: the counts ``/healthz`` shows (None: it shows none). ``whmcs_api``: the
    WHMCS API is configured (``PUT /v1/settings`` may enable tickets). ``certificates`` and
    ``ssl_views``: a service's SSL (``gateway.ssl_api``; without both, no SSL routes).
    ``usage`` and ``usage_refresh``: usage and metric billing (``gateway.usage_api``; without
    both, no usage routes). ``live`` and ``signing_key``: the screens (``gateway.screens``:
    the client area and the staff console; without both, none). ``task_logs``: a running
    step's log lines as the handler sends them, for the console (None: a task's log shows
    once its step has ended). ``public_url``: the base of the client links (None: the
    address each link is asked at)."""

    async def order_service(request: Request) -> Response:
        body = with_idempotency_key(request, await read_json(request, required=True))
        command = parse_order(body, now=clock(), actor=actor_of(request))
        set_command_id(command.command_id)  # the correlation id of every line it causes
        check_order(command, provider)
        await asyncio.to_thread(ledger.order_service, command)
        return success(service_id=command.service_id, status="provisioning")

    async def lifecycle(request: Request) -> Response:
        action: str = request.path_params["action"]
        service_id: str = request.path_params["service_id"]
        if action not in LIFECYCLE_ACTIONS:
            return error(404, f"unknown action {action!r}")
        body = with_idempotency_key(request, await read_json(request, required=False))
        command = parse_lifecycle(action, service_id, body, now=clock(), actor=actor_of(request))
        set_command_id(command.command_id)
        await asyncio.to_thread(ledger.request, command)
        return success()

    async def events(request: Request) -> Response:
        service_id: str = request.path_params["service_id"]
        as_of = query_time(request, "as_of")
        found = await asyncio.to_thread(ledger.events_of, service_id, as_of)
        return ApiJSONResponse({"service_id": service_id, "events": found})

    async def oplog(request: Request) -> Response:
        service_id = request.query_params.get("service_id") or None
        since = query_time(request, "since")
        limit = query_limit(request, default=DEFAULT_OPLOG_LIMIT, most=MAX_OPLOG_LIMIT)
        entries = await asyncio.to_thread(
            lambda: views.oplog(service_id=service_id, since=since, limit=limit)
        )
        return ApiJSONResponse({"entries": entries})

    async def healthz(request: Request) -> Response:
        try:
            await asyncio.to_thread(ledger.ping)
        except Exception as exc:
            _log.warning("healthz: the event store did not answer (%s)", type(exc).__name__)
            return ApiJSONResponse(
                {"status": "error", "error": "the event store is not reachable"},
                status_code=503,
            )
        body: dict[str, Any] = {"status": "ok"}
        if dead_letters is not None and (counts := await dead_letters.counts()) is not None:
            body["dead_letters"] = counts
        return ApiJSONResponse(body)

    def services_route(path: str, endpoint: Endpoint, method: str) -> Route:
        return guarded_route(path, endpoint, method=method, area=SERVICES)

    screens = (
        None
        if live is None or signing_key is None
        else ScreenPorts(
            ledger=ledger,
            views=views,
            credentials=credentials,
            clock=clock,
            live=LiveFeed(live),
            signing_key=signing_key,
            servers=servers,
            settings=settings,
            certificates=certificates,
            ssl_views=ssl_views,
            usage=usage,
            usage_refresh=usage_refresh,
            whmcs_api=whmcs_api,
            public_url=public_url,
            task_logs=task_logs,
        )
    )
    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        services_route("/v1/services", order_service, "POST"),
        *service_routes(ledger=ledger, views=views),
        services_route("/v1/services/{service_id}/events", events, "GET"),
        *(
            []
            if certificates is None or ssl_views is None
            else ssl_routes(
                certificates=certificates,
                ssl_views=ssl_views,
                ledger=ledger,
                views=views,
                clock=clock,
            )
        ),
        *task_routes(
            ledger=ledger,
            views=views,
            clock=clock,
            # the bulk actions' default ages are runtime settings when the app has them
            queue_ages=None if settings is None else lambda: settings.current().queue,
        ),
        *(
            []
            if usage is None or usage_refresh is None
            else usage_routes(usage=usage, refresher=usage_refresh, servers=servers, clock=clock)
        ),
        # before the lifecycle route, whose {action} would take it
        *([] if screens is None else client_link_routes(screens)),
        services_route("/v1/services/{service_id}/{action}", lifecycle, "POST"),
        services_route("/v1/oplog", oplog, "GET"),
    ]
    if servers is not None:
        routes += server_routes(servers=servers, clock=clock)
    if settings is not None:
        routes += settings_routes(
            settings=settings, clock=clock, servers=servers, whmcs_api=whmcs_api
        )
    if screens is not None:
        routes += screen_routes(screens)
    return Starlette(
        routes=routes,
        middleware=[
            Middleware(RequestLogMiddleware),  # outermost: a 401 and a 500 get their line too
            Middleware(ErrorBoundaryMiddleware),
            Middleware(BearerTokenMiddleware, credentials=credentials),
        ],
        exception_handlers={
            **{refusal: _refused for refusal in REFUSALS},
            HTTPException: _http_exception,
        },
    )


async def _refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, REFUSALS)
    return error(refusal_status(exc), refusal_message(exc))


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    messages = {404: "not found", 405: "method not allowed"}
    return error(
        exc.status_code,
        messages.get(exc.status_code, exc.detail),
        dict(exc.headers) if exc.headers else None,
    )
