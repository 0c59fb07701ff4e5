"""The last line of defence: an unexpected exception becomes a generic 500 JSON error.

``ErrorBoundaryMiddleware`` logs only the exception's type, the method and the path — never the
message, the traceback's locals or the request body, any of which may hold a password — and
answers ``{"result": "error", "error": "internal error"}`` when the response has not started.
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.responses import error

_log = logging.getLogger("hostwright.gateway")


class ErrorBoundaryMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self._app(scope, receive, tracking_send)
        except Exception as exc:
            _log.error("unhandled %s on %s %s", type(exc).__name__, scope["method"], scope["path"])
            if started:
                raise RuntimeError("response failed after it started") from None
            await error(500, "internal error")(scope, receive, send)
