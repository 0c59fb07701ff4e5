"""The fleet-wide pages of the staff console: the operation log, statistics and settings.

Consumes the ``ScreenPorts`` (the oplog view, the usage view and refresher, the runtime
settings) and emits:

- ``GET /admin/oplog?service_id=&since=&text=`` — the operation log, latest first, filtered
  by service, time (as ``GET /v1/oplog`` reads them) and a word in its actor, action or kind;
  the word is looked for in the latest ``OPLOG_LIMIT`` entries of that service and time only
  (the page says so); each entry opens its detail in place;
- ``GET /admin/statistics?sort=&order=&offset=`` — the usage summary, the nodes' syncs and
  the per-service table, sortable and paged (``usage_api.usage_overview``: the API's body);
  ``POST /admin/statistics/refresh`` — **Refresh all** (``usage_api.refresh_targets`` and
  ``UsageRefresh.refresh``, as ``POST /v1/usage/refresh {}``);
- ``GET /admin/settings`` — the runtime settings as a form; ``POST`` sends the fields that
  differ from the values in force to ``settings_api.change_settings``, the API's own
  validation: a bad value shows the API's message and changes nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from domain.errors import InvalidInput
from gateway.request_parsing import BadRequest, query_time
from gateway.responses import REFUSALS, refusal_message, refusal_status
from gateway.screens.console_session import console_page, done, form_of, session_of, signed_in
from gateway.settings_api import change_settings
from gateway.usage_api import SORTS, refresh_targets, usage_overview

if TYPE_CHECKING:
    from gateway.screens.screen_ports import ScreenPorts

OPLOG_LIMIT = 200
STATISTICS_PAGE = 50


def fleet_routes(ports: ScreenPorts) -> list[Route]:
    async def oplog(request: Request) -> Response:
        params = request.query_params
        service_id = params.get("service_id") or None
        text = (params.get("text") or "").strip().lower()
        context: dict[str, Any] = {
            "service_id": service_id or "",
            "since": params.get("since", ""),
            "text": text,
            "oplog_limit": OPLOG_LIMIT,
        }
        try:
            since = query_time(request, "since")
        except BadRequest as exc:
            return console_page(
                request, "console/oplog.html", here="oplog", failure=str(exc), entries=[], **context
            )
        entries = await asyncio.to_thread(
            lambda: ports.views.oplog(service_id=service_id, since=since, limit=OPLOG_LIMIT)
        )
        shown = [
            {**entry, "body": json.dumps(entry.get("detail"), indent=2, default=str)}
            for entry in reversed(entries)
            if not text or any(text in str(entry.get(k) or "").lower() for k in _SEARCHED)
        ]
        return console_page(request, "console/oplog.html", here="oplog", entries=shown, **context)

    async def statistics(request: Request) -> Response:
        return await _statistics_page(ports, request)

    async def refresh_all(request: Request) -> Response:
        refresher = ports.usage_refresh
        if refresher is None:
            return await _statistics_page(ports, request, failure="this gateway has no usage")
        try:
            targets = await asyncio.to_thread(refresh_targets, {}, ports.servers, refresher)
            outcomes = await asyncio.to_thread(
                refresher.refresh, targets, f"refresh:{session_of(request).name}", ports.clock()
            )
        except REFUSALS as exc:
            return await _statistics_page(
                ports, request, failure=refusal_message(exc), status_code=refusal_status(exc)
            )
        said = ", ".join(f"{node}: {outcome}" for node, outcome in sorted(outcomes.items()))
        return done(request, "/admin/statistics", f"Refresh asked: {said or 'no node'}")

    async def settings_form(request: Request) -> Response:
        return await _settings_page(ports, request)

    async def change(request: Request) -> Response:
        book = ports.settings
        if book is None:
            return await _settings_page(ports, request, failure="this gateway has no settings")
        current = (await asyncio.to_thread(book.current)).as_json()
        body = _changed_fields(current, form_of(request))
        if not body:
            return await _settings_page(ports, request, flash="Nothing changed.")
        try:
            applied = await asyncio.to_thread(
                change_settings,
                book,
                body,
                servers=ports.servers,
                whmcs_api=ports.whmcs_api,
                now=ports.clock(),
                actor=session_of(request).name,
            )
        except InvalidInput as exc:
            return await _settings_page(
                ports,
                request,
                failure=refusal_message(exc),
                status_code=refusal_status(exc),
                typed=form_of(request),
            )
        said = ", ".join(applied.changed) or "nothing"
        return done(request, "/admin/settings", f"Changed: {said}.")

    return [
        Route("/admin/oplog", signed_in(ports, oplog), methods=["GET"]),
        Route("/admin/statistics", signed_in(ports, statistics), methods=["GET"]),
        Route(
            "/admin/statistics/refresh",
            signed_in(ports, refresh_all, writes=True),
            methods=["POST"],
        ),
        Route("/admin/settings", signed_in(ports, settings_form), methods=["GET"]),
        Route("/admin/settings", signed_in(ports, change, writes=True), methods=["POST"]),
    ]


_SEARCHED = ("actor", "action", "kind", "service_id")


async def _statistics_page(
    ports: ScreenPorts,
    request: Request,
    *,
    flash: str | None = None,
    failure: str | None = None,
    status_code: int = 200,
) -> Response:
    usage = ports.usage
    params = dict(request.query_params)
    params.setdefault("limit", str(STATISTICS_PAGE))
    overview: dict[str, Any] | None = None
    if usage is not None:
        try:
            overview = await asyncio.to_thread(usage_overview, usage, params, ports.clock())
        except (BadRequest, InvalidInput) as exc:
            failure, status_code = str(exc), 400
    return console_page(
        request,
        "console/statistics.html",
        here="statistics",
        flash=flash,
        failure=failure,
        status_code=status_code,
        overview=overview,
        sorts=sorted(SORTS),
        sort=params.get("sort") or "service_id",
        order=params.get("order") or "asc",
    )


async def _settings_page(
    ports: ScreenPorts,
    request: Request,
    *,
    flash: str | None = None,
    failure: str | None = None,
    status_code: int = 200,
    typed: Mapping[str, str] | None = None,
) -> Response:
    """The form over the values in force; after a refusal, with what was ``typed`` in it."""
    fields: list[tuple[str, str, str]] = []
    if ports.settings is not None:
        values = (await asyncio.to_thread(ports.settings.current)).as_json()
        fields = [
            (name, _kind(value), (typed or {}).get(name, _text(value)))
            for name, value in _leaves(values)
        ]
    return console_page(
        request,
        "console/settings.html",
        here="settings",
        flash=flash,
        failure=failure,
        status_code=status_code,
        fields=fields,
    )


def _leaves(document: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Each setting by its dotted name; a map of names (``per_server``) is one setting."""
    for name, value in document.items():
        if isinstance(value, Mapping) and name != "per_server":
            yield from _leaves(value, f"{prefix}{name}.")
        else:
            yield prefix + name, value


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    return "json" if isinstance(value, Mapping) else "text"


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value) if isinstance(value, Mapping) else str(value)


def _changed_fields(current: Mapping[str, Any], form: Mapping[str, str]) -> dict[str, Any]:
    """The settings document of the form's fields that differ from the values in force.
    A field's text is read as its setting's type when it can be; else it goes as it was
    typed, so the API's validation names what is wrong with it."""
    body: dict[str, Any] = {}
    for name, value in _leaves(current):
        if name not in form:
            continue
        given = _typed(form[name].strip(), value)
        if given == value and type(given) is type(value):
            continue
        *parents, leaf = name.split(".")
        section = body
        for parent in parents:
            section = section.setdefault(parent, {})
        section[leaf] = given
    return body


def _typed(text: str, current: Any) -> Any:
    if isinstance(current, bool):
        return {"true": True, "false": False}.get(text, text)
    if isinstance(current, int | float | Mapping):
        try:
            parsed = json.loads(text)
        except (ValueError, RecursionError):  # nested past the parser's depth: sent as typed
            return text
        if isinstance(current, float) and type(parsed) is int:
            return float(parsed)
        return parsed
    return text
