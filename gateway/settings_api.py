"""The runtime settings over HTTP: ``GET /v1/settings`` shows them, ``PUT /v1/settings``
changes them. Consumes a SettingsBook port and a clock; emits routes.

``GET`` answers ``{"settings": {retry, concurrency, batch_size, tickets, queue}}``. ``PUT``
takes that document, whole or in part (the fields named replace the current ones; see
``domain.runtime_settings``), and answers 200 ``{"result": "success", "changed": [dotted
names], "settings": {…}}``; ``changed`` is empty, and nothing is recorded, when the values
were already so. A body that fails validation is a 422 and records nothing; so is one that
sets a limit for a node not registered, or enables tickets where the WHMCS API is not
configured. Both are staff's
(``GET`` a read credential's too); the change is recorded under the caller's name.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from domain.runtime_settings import SettingsApplied, parse_settings_update
from domain.settings_document import check_outside_references
from gateway.auth import actor_of, guarded_route
from gateway.credentials import STAFF
from gateway.ports import ServerBook, SettingsBook
from gateway.request_parsing import read_json_object
from gateway.responses import ApiJSONResponse, success


def settings_routes(
    *,
    settings: SettingsBook,
    clock: Callable[[], datetime],
    servers: ServerBook | None,
    whmcs_api: bool,
) -> list[Route]:
    """``servers``: where a per-server limit's node must be registered (None: no node is);
    ``whmcs_api``: whether the WHMCS API is configured, which enabling tickets needs."""

    async def show(request: Request) -> Response:
        values = await asyncio.to_thread(settings.current)
        return ApiJSONResponse({"settings": values.as_json()})

    async def change(request: Request) -> Response:
        body = await read_json_object(request)
        applied = await asyncio.to_thread(
            change_settings,
            settings,
            body,
            servers=servers,
            whmcs_api=whmcs_api,
            now=clock(),
            actor=actor_of(request),
        )
        return success(200, changed=applied.changed, settings=applied.values.as_json())

    return [
        guarded_route("/v1/settings", show, method="GET", area=STAFF),
        guarded_route("/v1/settings", change, method="PUT", area=STAFF),
    ]


def change_settings(
    settings: SettingsBook,
    body: object,
    *,
    servers: ServerBook | None,
    whmcs_api: bool,
    now: datetime,
    actor: str,
) -> SettingsApplied:
    """A settings change (``PUT /v1/settings``'s body, the console's settings form): checked
    as the module says, then recorded. InvalidInput, recording nothing, when it is not valid.
    Synchronous (call it in a thread)."""
    update = parse_settings_update(body)
    limited = list(update.fields.get("concurrency.per_server", {}))
    unregistered = limited
    if servers is not None and limited:
        unregistered = servers.unregistered(limited)
    check_outside_references(update.fields, unregistered=unregistered, whmcs_api=whmcs_api)
    return settings.change(update, now, actor)
