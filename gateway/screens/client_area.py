"""The customer's client area: ``/client/{service_id}?token=…``, its live state and its
actions.

``client_routes`` consumes the ``ScreenPorts`` and emits the routes (every one opened by a
client token for that very service, ``gateway.screens.client_tokens``; anything else is a
403 — a readable page for the page and its forms, the contract's JSON error for ``/state``,
``/live`` and a form sent by the page's script):

- ``GET /client/{id}?token=`` → the page: the splash while the service is built, the error
  screen on ``deploy_failed``, the dashboard otherwise (``gateway.screens.client_state``);
- ``GET /client/{id}/state?token=`` → the state as JSON (the script's polling fallback);
- ``GET /client/{id}/live?token=`` → server-sent events: ``event: state`` with the same JSON
  at once and after every change of the service in the views (``ports.live``: one read per
  change for every page of the service), ``event: refused`` when the token expires;
- ``POST /client/{id}/retry`` (Try again: ``Task.Retried`` of each step of the failed run
  that failed — not one staff cancelled —, ``CommandLedger.retry_failed_deploy``, which
  decides by ``domain.customer_changes``), ``/sync-usage`` (the lifecycle command of
  ``POST /v1/services/{id}/sync-usage``), ``/ssl/{role}/issue``, ``/ssl/{role}/custom``
  (``certificate``, ``private_key``, ``chain``) and ``/ssl/{role}/custom/remove`` (the
  CertificateLedger calls of ``gateway.ssl_api``). The form field ``token`` is the proof a
  form comes from the page (another site cannot know it). While the service is suspended,
  terminating or terminated, or once a suspend or terminate is asked for (the store's word,
  ``domain.customer_changes.customer_may_change``), every one is refused (403) and records
  nothing. A form answers
  303 back to the page, or JSON when the script asks for it (``Accept: application/json``):
  202 on success, the API's status and message on a refusal.

What the customer's actions record is recorded under the actor ``CLIENT_ACTOR``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from domain.commands import parse_lifecycle
from domain.correlation import set_command_id
from domain.customer_changes import READ_ONLY_STATUSES, customer_may_change
from domain.errors import NotFound
from domain.ssl_requests import check_role, parse_custom
from gateway.ports import CertificateLedger
from gateway.request_parsing import read_form
from gateway.responses import REFUSALS, error, refusal_message, refusal_status, success
from gateway.screens.client_state import read_client_state
from gateway.screens.client_tokens import TokenRefused, check
from gateway.screens.event_stream import event_stream
from gateway.screens.live_reads import live_reads
from gateway.screens.rendering import PAGE_HEADERS, page

if TYPE_CHECKING:
    from gateway.screens.screen_ports import ScreenPorts

CLIENT_ACTOR = "client"
RECHECK_S = 30.0  # how often a quiet live page's token is looked at again
TOKEN_REFUSALS = {
    "invalid": "This link is not valid. Open your service from your client area again.",
    "expired": "This link has expired. Open your service from your client area again "
    "to get a new one.",
}
Action = Callable[[str, dict[str, str], str], Awaitable[None]]


class Refused(Exception):
    """A client request refused with ``status_code`` and a message a customer reads."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def client_routes(ports: ScreenPorts) -> list[BaseRoute]:
    def opened(service_id: str, token: str | None) -> None:
        try:
            check(ports.signing_key, service_id, token, ports.clock())
        except TokenRefused as refused:
            raise Refused(403, TOKEN_REFUSALS[refused.reason]) from None

    async def state_of(service_id: str) -> dict[str, Any]:
        found = await asyncio.to_thread(read_client_state, ports, service_id, ports.clock())
        if found is None:
            raise Refused(404, "There is no such service.")
        return found

    async def show(request: Request) -> Response:
        service_id: str = request.path_params["service_id"]
        token = request.query_params.get("token")
        try:
            opened(service_id, token)
            state = await state_of(service_id)
        except Refused as refused:
            return _refused_page(refused)
        return page(
            "client/page.html",
            state=state,
            token=token,
            base=f"/client/{quote(service_id)}",
            roles=[cert["role"] for cert in state["ssl"]],
        )

    async def state(request: Request) -> Response:
        service_id: str = request.path_params["service_id"]
        try:
            opened(service_id, request.query_params.get("token"))
            found = await state_of(service_id)
        except Refused as refused:
            return error(refused.status_code, refused.message, PAGE_HEADERS)
        return Response(json.dumps(found), media_type="application/json", headers=PAGE_HEADERS)

    async def live(request: Request) -> Response:
        service_id: str = request.path_params["service_id"]
        token = request.query_params.get("token")
        try:
            opened(service_id, token)
        except Refused as refused:
            return error(refused.status_code, refused.message, PAGE_HEADERS)
        return event_stream(request, changes(service_id, token))

    async def changes(service_id: str, token: str | None) -> AsyncIterator[tuple[str, str]]:
        def read() -> Awaitable[dict[str, Any] | None]:
            return asyncio.to_thread(read_client_state, ports, service_id, ports.clock())

        sent = None
        # keyed apart from other pages' reads of the same service (the console's)
        reads = live_reads(ports.live, service_id, f"client:{service_id}", read, quiet_s=RECHECK_S)
        async for found in reads:
            try:
                opened(service_id, token)
            except Refused as refused:
                yield "refused", json.dumps({"error": refused.message})
                return
            text = json.dumps(found)
            if found is not None and text != sent:
                yield "state", text
                sent = text

    async def retry(service_id: str, form: dict[str, str], role: str) -> None:
        steps = await asyncio.to_thread(ports.views.timeline, service_id) or []
        candidates = [str(step["task_id"]) for step in steps if step.get("task_id")]
        await asyncio.to_thread(
            ports.ledger.retry_failed_deploy, service_id, candidates, ports.clock(), CLIENT_ACTOR
        )

    async def sync_usage(service_id: str, form: dict[str, str], role: str) -> None:
        command = parse_lifecycle(
            "sync-usage",
            service_id,
            {"command_id": uuid.uuid4().hex},
            now=ports.clock(),
            actor=CLIENT_ACTOR,
        )
        set_command_id(command.command_id)
        await asyncio.to_thread(ports.ledger.request, command)

    async def issue(service_id: str, form: dict[str, str], role: str) -> None:
        certificates = _certificates(ports)
        await asyncio.to_thread(
            certificates.request_issue, service_id, role, ports.clock(), CLIENT_ACTOR
        )

    async def upload(service_id: str, form: dict[str, str], role: str) -> None:
        certificates = _certificates(ports)
        fields = {k: v for k, v in form.items() if k != "token" and (v or k != "chain")}
        custom = parse_custom(fields)
        await asyncio.to_thread(
            certificates.upload_custom, service_id, role, custom, ports.clock(), CLIENT_ACTOR
        )

    async def remove(service_id: str, form: dict[str, str], role: str) -> None:
        certificates = _certificates(ports)
        await asyncio.to_thread(
            certificates.remove_custom, service_id, role, ports.clock(), CLIENT_ACTOR
        )

    def action(act: Action) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            service_id: str = request.path_params["service_id"]
            wants_json = "application/json" in request.headers.get("accept", "")
            back: str | None = None  # the page, once the token is known to open it
            try:
                form = await read_form(request)
                token = form.get("token")
                opened(service_id, token)
                page_url = f"/client/{quote(service_id)}?token={quote(token or '')}"
                back = page_url
                # the store's word, not the views': a suspend recorded but not yet shown, or
                # asked for and not yet done, stops the customer's changes already
                found = await asyncio.to_thread(ports.ledger.recorded_service, service_id)
                if found is None:
                    raise Refused(404, "There is no such service.")
                if not customer_may_change(found["status"], found.get("requested")):
                    raise Refused(403, _locked(found["status"], found.get("requested")))
                role = request.path_params.get("role")
                await act(service_id, form, check_role(role) if role is not None else "")
            except REFUSALS as exc:  # the API's refusal, with the API's status
                refused = Refused(refusal_status(exc), refusal_message(exc))
            except Refused as exc:
                refused = exc
            else:
                if wants_json:
                    return success()
                return RedirectResponse(page_url, status_code=303, headers=PAGE_HEADERS)
            if wants_json:
                return error(refused.status_code, refused.message, PAGE_HEADERS)
            return _refused_page(refused, back)

        return endpoint

    base = "/client/{service_id}"
    return [
        Route(base, show, methods=["GET"]),
        Route(base + "/state", state, methods=["GET"]),
        Route(base + "/live", live, methods=["GET"]),
        Route(base + "/retry", action(retry), methods=["POST"]),
        Route(base + "/sync-usage", action(sync_usage), methods=["POST"]),
        Route(base + "/ssl/{role}/issue", action(issue), methods=["POST"]),
        Route(base + "/ssl/{role}/custom", action(upload), methods=["POST"]),
        Route(base + "/ssl/{role}/custom/remove", action(remove), methods=["POST"]),
    ]


def _locked(status: str, requested: str | None) -> str:
    if status in READ_ONLY_STATUSES:
        return f"This service is {status}: nothing can be changed now."
    return f"A {requested} of this service is under way: nothing can be changed now."


def _certificates(ports: ScreenPorts) -> CertificateLedger:
    if ports.certificates is None:
        raise NotFound("certificates are not managed here")
    return ports.certificates


def _refused_page(refused: Refused, back: str | None = None) -> Response:
    return page(
        "client/refused.html",
        status_code=refused.status_code,
        message=refused.message,
        back=back,
    )
