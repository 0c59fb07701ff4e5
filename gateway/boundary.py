"""The last line of defence: an unexpected exception becomes a generic 500 JSON error.

``ErrorBoundaryMiddleware`` logs, for every 500, the exception's type, the method, the path and
the stack trace (its frames: file, line and function, for each exception in the chain) —
never an exception's message, a frame's locals or the request body, any of which may
hold a password — and answers ``{"result": "error", "error": "internal error"}`` when the
response has not started. It is the one place a request's failure is logged with its trace.
"""

from __future__ import annotations

import logging
import traceback

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
            _log.error(
                "unhandled %s on %s %s\n%s",
                type(exc).__name__,
                scope["method"],
                scope["path"],
                stack_trace(exc),
            )
            if started:
                raise RuntimeError("response failed after it started") from None
            await error(500, "internal error")(scope, receive, send)


def stack_trace(exc: BaseException) -> str:
    """The traceback of ``exc`` and the exceptions it came from, as Python prints it but with
    no message and no source line (``logging``'s ``exc_info`` would print the messages)."""
    chain: list[tuple[BaseException, str]] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    link = ""
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append((current, link))
        if current.__cause__ is not None:
            current, link = current.__cause__, "The above exception was the direct cause of:"
        elif current.__context__ is not None and not current.__suppress_context__:
            current, link = current.__context__, "During handling of the above exception:"
        else:
            current = None
    parts: list[str] = []
    for raised, next_link in reversed(chain):
        frames = "".join(
            f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}\n'
            for frame in traceback.extract_tb(raised.__traceback__)
        )
        parts.append(
            f"Traceback (most recent call last):\n{frames}"
            f"{type(raised).__module__}.{type(raised).__qualname__} (message withheld)"
        )
        if next_link:
            parts.append(next_link)
    return "\n".join(parts)
