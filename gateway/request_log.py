"""One log line per HTTP request, for an operator and a log shipper.

``RequestLogMiddleware`` wraps the whole app (outside the error boundary and the bearer-token
check, so a 401 and a 500 are logged too) and, once the response has started — or the app
failed before it could — logs on ``hostwright.gateway.requests``: the method, the path (never
the query string), the status, the duration in milliseconds, the name of the caller's
credential (``None`` when the token was missing or refused; the token itself never) and the
command id the call recorded (domain/correlation.py: set by the endpoint that records it).
Each request starts with no command id, whatever the connection's earlier requests had.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from domain.correlation import command_context, current_command_id
from gateway.auth import credential_name

_log = logging.getLogger("hostwright.gateway.requests")


class RequestLogMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500  # what the server answers when the app fails before starting a response

        async def noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with command_context(None):
            try:
                await self._app(scope, receive, noting_status)
            finally:
                duration_ms = round((time.perf_counter() - began) * 1000, 1)
                credential = credential_name(scope)
                _log.info(
                    "%s %s %d %.1f ms %s",
                    scope["method"],
                    scope["path"],
                    status,
                    duration_ms,
                    credential or "(no credential)",
                    extra={
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "duration_ms": duration_ms,
                        "credential": credential,
                        "command_id": current_command_id(),
                    },
                )
