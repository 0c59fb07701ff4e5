"""Usage and metric billing over HTTP (the services area: WHMCS and staff; a credential of
one service reaches only that service's routes, never the lists):

- ``GET /v1/usage?sort=&order=asc|desc&limit=&offset=&client_id=`` → ``{"summary": {services,
  stale, disk_mb, …}, "nodes": [{server_id, state, collected_at, last_error, retry_at}],
  "services": [{service_id, client_id, mode, domain, username, metrics, collected_at, stale,
  stale_since}], "next_offset"}``: the Statistics page's data, sorted by any figure;
- ``GET /v1/services/{id}/usage[?as_of=T]`` → ``{service_id, collected_at, stale,
  stale_since, age_s, gauges: {metric: {used, unit, limit, percent}}, billing_month}``; with
  ``as_of`` the figures in force at T (``usage_history``) against the limits of the plan
  then, ``gauges`` null before any listing; 404 for an unknown service;
- ``GET /v1/billing/metrics`` → ``{"metrics": [{name, display_name, unit, type}]}``;
- ``GET /v1/billing/usage?key=domain|username`` → ``{"key", "tenants": {<domain>: {service_id,
  username, metrics: {name: value}, collected_at, stale, billing_month}}}``: every service
  not terminated;
- ``GET /v1/services/{id}/billing`` → ``{service_id, domain, username, metrics, collected_at,
  stale, billing_month}``;
- ``POST /v1/usage/refresh`` with ``{}`` (every node), ``{"server_id"}`` or ``{"service_ids":
  [...]}`` → 202 ``{"result": "success", "servers": {<id>: queued|joined|fresh}}``; 422 for a
  malformed id, 404 for a node or service no one registered or ordered (nothing recorded).

The gauges and the bill both read ``domain.usage_metrics.metric_values`` of the same row, at
the clock's time: ``billing_month`` is the UTC month now (as_of: at T), and a month metric
(bandwidth) reads 0 until the service's first listing of that month.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from domain.commands import parse_external_id
from domain.errors import InvalidInput, NotFound
from domain.server import parse_server_id
from domain.usage_metrics import TENANT_KEYS, billing_month, definitions, gauges, metric_values
from gateway.auth import actor_of, guarded_route
from gateway.credentials import SERVICES
from gateway.ports import ServerBook, UsageRefresh, UsageViews
from gateway.request_parsing import BadRequest, parsed_limit, query_time, read_json
from gateway.responses import ApiJSONResponse, success

DEFAULT_USAGE_LIMIT = 100
MAX_USAGE_LIMIT = 1000
MAX_REFRESH_SERVICES = 1000
SORTS = {
    "service_id": "service_id",
    "domain": "domain",
    "collected_at": "collected_at",
    "disk_mb": "disk_mb",
    "bandwidth_mb": "bandwidth_billed_mb",
    "mail_accounts": "mail_accounts",
    "databases": "databases",
    "web_domains": "web_domains",
}


def usage_routes(
    *,
    usage: UsageViews,
    refresher: UsageRefresh,
    servers: ServerBook | None,
    clock: Callable[[], datetime],
) -> list[Route]:
    async def overview(request: Request) -> Response:
        params = request.query_params
        return ApiJSONResponse(await asyncio.to_thread(usage_overview, usage, params, clock()))

    async def service_usage(request: Request) -> Response:
        service_id = _service_id(request)
        as_of = query_time(request, "as_of")
        row = await asyncio.to_thread(usage.service_usage, service_id)
        if row is None:
            raise NotFound(f"service {service_id} not found")
        if as_of is not None:
            past = await asyncio.to_thread(usage.usage_as_of, service_id, as_of)
            totals = None if past is None else past["totals"]
            return ApiJSONResponse(
                {
                    "service_id": service_id,
                    "as_of": as_of.isoformat(),
                    "collected_at": None if totals is None else totals["collected_at"],
                    # the limits of the plan in force then (kept beside the figures)
                    "gauges": None
                    if totals is None
                    else gauges(totals, totals.get("plan", row["plan"]), as_of),
                    "billing_month": None if totals is None else billing_month(as_of),
                }
            )
        collected = row["collected_at"]
        now = clock()
        age = None
        if collected is not None:
            age = round((now - datetime.fromisoformat(collected)).total_seconds(), 1)
        return ApiJSONResponse(
            {
                "service_id": service_id,
                "collected_at": collected,
                "age_s": age,
                "stale": row["stale"],
                "stale_since": row["stale_since"],
                "gauges": gauges(row, row["plan"], now),
                "billing_month": billing_month(now),
            }
        )

    async def metrics(request: Request) -> Response:
        return ApiJSONResponse({"metrics": definitions()})

    # every tenant's bill, encoded, per key and month, with the view position it was read at:
    # WHMCS asks for all of them at once, and the rows change only when the view moves on
    encoded: dict[tuple[str, str], tuple[int, bytes]] = {}

    async def billing_usage(request: Request) -> Response:
        key = request.query_params.get("key") or "domain"
        if key not in TENANT_KEYS:
            raise BadRequest(f"key must be one of {', '.join(TENANT_KEYS)}")
        now = clock()
        month = billing_month(now)
        position = await asyncio.to_thread(usage.position)
        kept = encoded.get((key, month))
        if kept is None or kept[0] != position:
            kept = (position, await asyncio.to_thread(_every_bill, key, now))
            encoded.clear()  # one month's bills kept at a time
            encoded[(key, month)] = kept
        return Response(kept[1], media_type="application/json")

    def _every_bill(key: str, now: datetime) -> bytes:
        """Read after the position: a page applied in between is in these rows, and read
        again at the next call (its position is newer)."""
        rows = usage.billing_rows()
        tenants = {row[key]: _billed(row, now) for row in rows if row["status"] != "terminated"}
        body = {"key": key, "tenants": tenants}
        return json.dumps(body, separators=(",", ":")).encode()

    async def service_billing(request: Request) -> Response:
        service_id = _service_id(request)
        row = await asyncio.to_thread(usage.service_usage, service_id)
        if row is None:
            raise NotFound(f"service {service_id} not found")
        return ApiJSONResponse(
            {"service_id": service_id, "domain": row["domain"], **_billed(row, clock())}
        )

    async def refresh(request: Request) -> Response:
        body = await read_json(request, required=False)
        server_ids = await asyncio.to_thread(refresh_targets, body, servers, refresher)
        outcomes = await asyncio.to_thread(
            refresher.refresh, server_ids, f"refresh:{actor_of(request)}", clock()
        )
        return success(servers=outcomes)

    def route(path: str, endpoint: Any, method: str = "GET") -> Route:
        return guarded_route(path, endpoint, method=method, area=SERVICES)

    return [
        route("/v1/usage", overview),
        route("/v1/usage/refresh", refresh, "POST"),
        route("/v1/services/{service_id}/usage", service_usage),
        route("/v1/billing/metrics", metrics),
        route("/v1/billing/usage", billing_usage),
        route("/v1/services/{service_id}/billing", service_billing),
    ]


def usage_overview(usage: UsageViews, params: Mapping[str, str], now: datetime) -> dict[str, Any]:
    """``GET /v1/usage``'s body (the Statistics page's data) for its query ``params``;
    BadRequest for a bad one. Synchronous (call it in a thread)."""
    sort = params.get("sort") or "service_id"
    if sort not in SORTS:
        raise BadRequest(f"sort must be one of {', '.join(sorted(SORTS))}")
    order = params.get("order") or "asc"
    if order not in ("asc", "desc"):
        raise BadRequest("order must be asc or desc")
    limit = parsed_limit(params.get("limit"), default=DEFAULT_USAGE_LIMIT, most=MAX_USAGE_LIMIT)
    offset = _offset(params.get("offset"))
    client_id = params.get("client_id") or None
    if client_id is not None:
        _parsed(parse_external_id, client_id, "client_id")
    page = usage.usage_page(
        sort=SORTS[sort],
        descending=order == "desc",
        limit=limit + 1,
        offset=offset,
        client_id=client_id,
    )
    summary = usage.usage_summary(client_id, billing_month(now))
    return {
        "summary": summary,
        "nodes": [_node(n) for n in usage.nodes()],
        "services": [_listed(row, now) for row in page[:limit]],
        "next_offset": offset + limit if len(page) > limit else None,
    }


def refresh_targets(body: object, servers: ServerBook | None, refresher: UsageRefresh) -> list[str]:
    """The nodes a refresh (``POST /v1/usage/refresh``'s body) names, all checked before
    anything is recorded: ``{}`` every registered node, ``{"server_id"}`` or
    ``{"service_ids": [...]}``. Synchronous (call it in a thread)."""
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    unknown = set(body) - {"server_id", "service_ids"}
    if unknown or len(body) > 1:
        raise InvalidInput("give at most one of server_id or service_ids")
    registered = [] if servers is None else [s["server_id"] for s in servers.listing()]
    if "server_id" in body:
        server_id = parse_server_id(body["server_id"])
        if server_id not in registered:
            raise NotFound(f"no server {server_id!r} is registered")
        return [server_id]
    if "service_ids" in body:
        return _service_servers(body["service_ids"], refresher)
    return registered


def _service_servers(raw: object, refresher: UsageRefresh) -> list[str]:
    if not isinstance(raw, list) or not raw or len(raw) > MAX_REFRESH_SERVICES:
        raise InvalidInput(f"service_ids must be a list of 1 to {MAX_REFRESH_SERVICES} ids")
    ids = [parse_external_id(item, "service_ids[]") for item in raw]
    found: list[str] = []
    for service_id in dict.fromkeys(ids):
        nodes = refresher.servers_of(service_id)
        if nodes is None:
            raise NotFound(f"service {service_id} not found")
        found += nodes
    return list(dict.fromkeys(found))


def _service_id(request: Request) -> str:
    service_id: str = request.path_params["service_id"]
    return _parsed(parse_external_id, service_id, "service id")


def _parsed(parse: Callable[[object, str], str], raw: str, what: str) -> str:
    try:
        return parse(raw, what)
    except InvalidInput as exc:
        raise BadRequest(str(exc)) from None


def _offset(raw: str | None) -> int:
    if not raw:
        return 0
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9):
        raise BadRequest("offset must be a whole number")
    return int(raw)


def _billed(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {
        "service_id": row["service_id"],
        "username": row["username"],
        "metrics": metric_values(row, now),
        "collected_at": row["collected_at"],
        "stale": row["stale"],
        "billing_month": billing_month(now),
    }


def _listed(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    shown = ("service_id", "client_id", "mode", "domain", "username", "status")
    return {
        **{name: row[name] for name in shown},
        "metrics": metric_values(row, now),
        "collected_at": row["collected_at"],
        "stale": row["stale"],
        "stale_since": row["stale_since"],
    }


def _node(row: dict[str, Any]) -> dict[str, Any]:
    shown = ("server_id", "state", "collected_at", "last_error", "failed_at", "retry_at")
    return {name: row.get(name) for name in shown}
