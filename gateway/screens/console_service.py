"""One service in the staff console: ``/admin/services/{id}?tab=…`` and its buttons.

Consumes the ``ScreenPorts`` (the services, timeline, task-queue, usage and SSL views; the
store's raw events) and emits the page's tabs:

- ``overview``: the service, its usage gauges (``domain.usage_metrics.gauges``, as the usage
  API shows them), **Force sync** (the ``sync-usage`` lifecycle call) and **Verify & Repair**;
- ``deploy``: the latest run's timeline with durations (live: ``console_live``), **Redeploy**
  and **Factory reset**, which needs the service's domain typed again;
- ``tasks``: the service's tasks (attempts, node, times), each opening ``/admin/tasks/{id}``;
- ``ssl``: each role's certificate, **Issue/Renew now**, a custom certificate's upload and
  removal (``CertificateLedger``, checked by ``domain.ssl_requests.parse_custom``);
- ``events``: the raw history (``CommandLedger.events_of``), as of a chosen time.

Every button is a staff-only POST with the session's CSRF token; it is parsed by the API's
own parser (``parse_lifecycle``, ``check_role``, ``parse_custom``) and recorded by the same
ledger call as its API route, under the signed-in credential's name. A lifecycle button's form
carries a ``command_id`` made when the page was rendered: the API's idempotency, so the same
form sent twice records once. Done, it answers a 303 to the tab with its message
(``console_session.done``); a refusal (InvalidInput, Conflict, NotFound) shows its message on
the page and records nothing.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from domain.commands import parse_lifecycle
from domain.correlation import set_command_id
from domain.errors import InvalidInput, NotFound
from domain.ssl_requests import check_role, parse_custom
from domain.usage_metrics import gauges
from gateway.request_parsing import BadRequest, query_time
from gateway.responses import REFUSALS, refusal_message, refusal_status
from gateway.screens.console_session import console_page, done, form_of, session_of, signed_in
from gateway.screens.rendering import PAGE_HEADERS, render
from gateway.services_api import service_body

if TYPE_CHECKING:
    from gateway.screens.screen_ports import ScreenPorts

TABS = ("overview", "deploy", "tasks", "ssl", "events")
BUTTONS = {  # the lifecycle calls the service page's buttons make, and what they say done
    "sync-usage": "A usage sync is asked for.",
    "verify-repair": "Verify & Repair is queued.",
    "redeploy": "A redeploy is queued.",
    "factory-reset": "A factory reset is queued.",
}


async def timeline_fragment(ports: ScreenPorts, service_id: str) -> str:
    """The Deploy tab's timeline as HTML (what a live update swaps in)."""
    steps = await asyncio.to_thread(ports.views.timeline, service_id)
    return render("console/timeline.html", steps=steps or [])


def service_routes(ports: ScreenPorts) -> list[Route]:
    async def show(request: Request) -> Response:
        return await _page(ports, request)

    async def lifecycle(request: Request) -> Response:
        service_id: str = request.path_params["service_id"]
        action: str = request.path_params["action"]
        form = form_of(request)
        tab = "overview" if action in ("sync-usage", "verify-repair") else "deploy"
        if action not in BUTTONS:
            return await _page(ports, request, tab=tab, failure=f"unknown action {action!r}")
        try:
            if action == "factory-reset":
                await _check_typed_domain(ports, service_id, form.get("confirm_domain", ""))
            command = parse_lifecycle(
                action,
                service_id,
                {"command_id": form.get("command_id") or uuid.uuid4().hex},
                now=ports.clock(),
                actor=session_of(request).name,
            )
            set_command_id(command.command_id)  # the correlation id of every line it causes
            await asyncio.to_thread(ports.ledger.request, command)
        except REFUSALS as exc:
            return await _page(
                ports,
                request,
                tab=tab,
                failure=refusal_message(exc),
                status_code=refusal_status(exc),
            )
        return done(request, f"/admin/services/{service_id}?tab={tab}", BUTTONS[action])

    async def ssl(request: Request) -> Response:
        service_id: str = request.path_params["service_id"]
        change: str = request.path_params["change"]
        form = form_of(request)
        actor, now = session_of(request).name, ports.clock()
        certificates = ports.certificates
        try:
            role = check_role(request.path_params["role"])
            if certificates is None:
                raise NotFound("this gateway has no SSL")
            if change == "issue":
                await asyncio.to_thread(certificates.request_issue, service_id, role, now, actor)
                said = f"A certificate for {role} is asked for."
            elif change == "custom":
                fields: dict[str, Any] = {
                    k: form[k] for k in ("certificate", "private_key", "chain") if k in form
                }
                upload = parse_custom(fields)
                await asyncio.to_thread(
                    certificates.upload_custom, service_id, role, upload, now, actor
                )
                said = f"The custom certificate for {role} is recorded."
            elif change == "remove-custom":
                await asyncio.to_thread(certificates.remove_custom, service_id, role, now, actor)
                said = f"{role} is back to automatic SSL."
            else:
                raise NotFound(f"unknown SSL change {change!r}")
        except REFUSALS as exc:
            return await _page(
                ports,
                request,
                tab="ssl",
                failure=refusal_message(exc),
                status_code=refusal_status(exc),
            )
        return done(request, f"/admin/services/{service_id}?tab=ssl", said)

    base = "/admin/services/{service_id}"
    return [
        Route(base, signed_in(ports, show), methods=["GET"]),
        Route(base + "/ssl/{role}/{change}", signed_in(ports, ssl, writes=True), methods=["POST"]),
        Route(base + "/{action}", signed_in(ports, lifecycle, writes=True), methods=["POST"]),
    ]


async def _check_typed_domain(ports: ScreenPorts, service_id: str, typed: str) -> None:
    row = await asyncio.to_thread(ports.views.service, service_id)
    if row is None:
        raise NotFound(f"service {service_id} not found")
    if typed.strip().lower() != str(row.get("domain") or "").lower():
        raise InvalidInput("type the service's domain to confirm the factory reset")


async def _page(
    ports: ScreenPorts,
    request: Request,
    *,
    tab: str | None = None,
    flash: str | None = None,
    failure: str | None = None,
    status_code: int = 200,
) -> Response:
    service_id: str = request.path_params["service_id"]
    tab = tab or request.query_params.get("tab") or "overview"
    if tab not in TABS:
        tab = "overview"
    if request.method == "GET" and request.query_params.get("fragment") and tab == "deploy":
        html = await timeline_fragment(ports, service_id)
        return HTMLResponse(html, headers=PAGE_HEADERS)
    row = await asyncio.to_thread(ports.views.service, service_id)
    if row is None:
        row = await asyncio.to_thread(ports.ledger.recorded_service, service_id)
    if row is None:
        return console_page(
            request,
            "console/message.html",
            here="services",
            status_code=404,
            failure=f"service {service_id} not found",
        )
    try:
        shown = await _tab(ports, request, tab, service_id, row)
    except BadRequest as exc:  # a malformed as_of
        failure, shown, status_code = str(exc), {"events": [], "as_of": ""}, 400
    return console_page(
        request,
        "console/service.html",
        here="services",
        status_code=status_code,
        flash=flash,
        failure=failure,
        tab=tab,
        tabs=TABS,
        service=service_body(row),
        # one per button and rendering: the same form sent twice records once
        command_ids={action: uuid.uuid4().hex for action in BUTTONS},
        **shown,
    )


async def _tab(
    ports: ScreenPorts, request: Request, tab: str, service_id: str, row: dict[str, Any]
) -> dict[str, Any]:
    """What the chosen tab shows, read from its views."""
    if tab == "overview":
        usage = (
            None
            if ports.usage is None
            else await asyncio.to_thread(ports.usage.service_usage, service_id)
        )
        now = ports.clock()
        return {
            "usage": usage,
            "gauges": None if usage is None else gauges(usage, usage["plan"], now),
        }
    if tab == "deploy":
        steps = await asyncio.to_thread(ports.views.timeline, service_id)
        return {"steps": steps or [], "live_key": service_id}
    if tab == "tasks":
        tasks = await asyncio.to_thread(
            lambda: ports.views.tasks(service_id=service_id, now=ports.clock())
        )
        return {"tasks": tasks}
    if tab == "ssl":
        found = (
            []
            if ports.ssl_views is None
            else await asyncio.to_thread(ports.ssl_views.ssl, service_id)
        )
        return {"certificates": found, "ssl_enabled": ports.certificates is not None}
    as_of = query_time(request, "as_of")
    events = await asyncio.to_thread(ports.ledger.events_of, service_id, as_of)
    shown = [
        {**event, "body": json.dumps(event["data"], indent=2, default=str)} for event in events
    ]
    return {"events": shown, "as_of": request.query_params.get("as_of", "")}
