"""The services WHMCS sells, read over HTTP: the list and one service, in one body shape.

``service_routes`` consumes the ports (ViewQueries for the services view, the CommandLedger
for a read the view has not caught up with) and emits the routes ``create_app`` mounts
(the services scope; ``staff`` and ``read`` credentials get them too, a credential of one
service only gets its own service, never the list):

- ``GET /v1/services?status=&mode=&client_id=&server_id=&domain=&limit=&cursor=`` →
  ``{"services": [...], "next_cursor": "<opaque>" | null}``. Every filter given must hold:
  ``status`` and ``mode`` exactly (400 for a value no service can have), ``client_id``
  exactly, ``server_id`` a node the service was placed on in any role (both 400 when not of
  the form an order or a registration takes), ``domain`` a case-insensitive substring of
  the domain. Newest order first (the order's time, then the
  service id, both descending); ``limit`` per page (default 100, at most 1000). The next
  page is asked for with ``cursor=<next_cursor>``; services ordered meanwhile sort before
  it, so paging neither skips nor repeats one. 400 names a bad parameter.
- ``GET /v1/services/{id}`` → the service, 404 when no such service was ordered. Right
  after an order the view may not hold it yet: the store answers, in the same shape.

A service's body (``service_body``): ``service_id, client_id, mode, domain, label, status,
plan, username`` (the Hestia user it owns: as ordered, or the one generated from its domain
and id), ``roles`` (``{"web"|"mail"|"dns": {"servers": [...], "username": ...}}``; no servers
before it is placed; in vanity mode the mailbox and record live under the provider's shared
users, so mail and dns show ``username: null``), ``ordered_at, updated_at``, ``operation``
(the run under way: ``{action, state, done, total}``, or null), ``progress`` (the latest
run's tasks: ``{done, total, percent, current_step}``, ``percent`` always ``done / total``),
``last_error`` and ``leftovers``. No password, ever: the README says how the customer has it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from domain.commands import MODES, parse_external_id
from domain.errors import InvalidInput, NotFound
from domain.server import parse_server_id
from domain.service import STATUSES
from gateway.auth import guarded_route
from gateway.credentials import SERVICES
from gateway.ports import CommandLedger, ViewQueries
from gateway.request_parsing import BadRequest, query_limit
from gateway.responses import ApiJSONResponse
from projections.view import iso_time

DEFAULT_SERVICES_LIMIT = 100
MAX_SERVICES_LIMIT = 1000
MAX_FILTER_LENGTH = 255  # a domain is at most 253 characters; ids are short
ROLES = ("web", "mail", "dns")
# the operation's ``state``: its run's tasks are not planned yet (it waits for another run,
# or for the pipeline to take it up), no node has a role it needs yet, or its tasks run
OPERATION_STATES = ("queued", "waiting", "running")


def service_routes(*, ledger: CommandLedger, views: ViewQueries) -> list[Route]:
    """The list and the one-service read (module docstring)."""

    async def listing(request: Request) -> Response:
        filters = service_filters(request)
        limit = query_limit(request, default=DEFAULT_SERVICES_LIMIT, most=MAX_SERVICES_LIMIT)
        after = read_cursor(request.query_params.get("cursor") or None)
        rows = await asyncio.to_thread(
            lambda: views.services_page(**filters, after=after, limit=limit + 1)
        )
        page = rows[:limit]
        more = len(rows) > limit
        return ApiJSONResponse(
            {
                "services": [service_body(row) for row in page],
                "next_cursor": cursor_after(page[-1]) if more else None,
            }
        )

    async def service(request: Request) -> Response:
        service_id: str = request.path_params["service_id"]
        row = await asyncio.to_thread(views.service, service_id)
        if row is None:  # read your writes: an order answered 202 may not be in the view yet
            row = await asyncio.to_thread(ledger.recorded_service, service_id)
        if row is None:
            raise NotFound(f"service {service_id} not found")
        return ApiJSONResponse(service_body(row))

    return [
        guarded_route("/v1/services", listing, method="GET", area=SERVICES),
        guarded_route("/v1/services/{service_id}", service, method="GET", area=SERVICES),
    ]


def service_filters(request: Request) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in ("status", "mode", "client_id", "server_id", "domain"):
        value = request.query_params.get(name) or None
        if value is not None and len(value) > MAX_FILTER_LENGTH:
            raise BadRequest(f"{name} must be at most {MAX_FILTER_LENGTH} characters")
        found[name] = value
    for name, allowed in (("status", STATUSES), ("mode", MODES)):
        if found[name] is not None and found[name] not in allowed:
            raise BadRequest(f"{name} must be one of {', '.join(allowed)}")
    try:  # ids as the orders and registrations that made them are checked
        if (client_id := found["client_id"]) is not None:
            parse_external_id(client_id, "client_id")
        if (server_id := found["server_id"]) is not None:
            parse_server_id(server_id)
    except InvalidInput as exc:
        raise BadRequest(str(exc)) from None
    return found


def cursor_after(row: dict[str, Any]) -> str:
    """The cursor of the page after ``row``: opaque to callers, the row's sort key inside."""
    key = json.dumps([_text_time(row.get("ordered_at")), row["service_id"]])
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def read_cursor(raw: str | None) -> tuple[str, str] | None:
    if raw is None:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (ValueError, binascii.Error):
        key = None
    if not (isinstance(key, list) and len(key) == 2 and all(isinstance(k, str) for k in key)):
        raise BadRequest("cursor must be a next_cursor this API gave")
    return key[0], key[1]


def service_body(row: dict[str, Any]) -> dict[str, Any]:
    """The contract's service body from a services-view row, or from the store's record of
    the service (``CommandLedger.recorded_service``: no progress yet) in the same shape.

    The progress is ``done, total, current_step`` — flat (``progress_done`` …, or ``done``
    …), or nested under ``progress``.
    """
    nested = row.get("progress")
    source: dict[str, Any] = nested if isinstance(nested, dict) else row
    done = int(source.get("done") or source.get("progress_done") or 0)
    total = int(source.get("total") or source.get("progress_total") or 0)
    current_step = source.get("current_step")
    user = row.get("hestia_user")
    return {
        "service_id": row.get("service_id"),
        "client_id": row.get("client_id"),
        "mode": row.get("mode"),
        "domain": row.get("domain"),
        "label": row.get("label"),
        "status": row.get("status"),
        "plan": row.get("plan"),
        "username": user,
        "roles": _roles(row.get("mode"), user, row.get("placement")),
        "ordered_at": _text_time(row.get("ordered_at")),
        "updated_at": _text_time(row.get("updated_at")),
        "operation": _operation(row, done, total, current_step),
        "progress": {
            "done": done,
            "total": total,
            # the latest run's share of tasks done, never rounded up nor forced to 100
            "percent": max(0, min(100, done * 100 // total)) if total > 0 else 0,
            "current_step": current_step,
        },
        "last_error": row.get("last_error"),
        # what a forced terminate could not remove, per node, for staff to clear by hand
        "leftovers": row.get("leftovers") or [],
    }


def _operation(
    row: dict[str, Any], done: int, total: int, current_step: str | None
) -> dict[str, Any] | None:
    """The run under way (its tasks planned, its outcome not recorded), else the run asked
    for and not begun; None when neither."""
    if row.get("run_open") and row.get("run_operation"):
        return {"action": row["run_operation"], "state": "running", "done": done, "total": total}
    requested = row.get("requested")
    if not requested:
        return None
    state = "waiting" if current_step == "place" else "queued"
    return {"action": requested, "state": state, "done": 0, "total": 0}


def _roles(mode: object, user: object, placement: object) -> dict[str, Any]:
    placed: dict[str, Any] = placement if isinstance(placement, dict) else {}
    servers = {
        "web": [placed["web_server"]] if placed.get("web_server") else [],
        "mail": [placed["mail_server"]] if placed.get("mail_server") else [],
        "dns": list(placed.get("dns_servers") or []),
    }
    own_user = {"web": user, "mail": user, "dns": user}
    if mode == "vanity":  # mailbox and record are the provider's shared users'
        own_user = {"web": user, "mail": None, "dns": None}
    return {role: {"servers": servers[role], "username": own_user[role]} for role in ROLES}


def _text_time(value: object) -> object:
    """A view's time text as it is; the store's datetime in the views' text form."""
    return iso_time(value) if isinstance(value, datetime) else value
