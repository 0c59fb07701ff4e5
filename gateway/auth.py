"""Bearer-token authentication for the API: ``Authorization: Bearer <token>`` on every ``/v1`` path.

``BearerTokenMiddleware`` consumes the request's headers and either passes the request on or
answers 401 with the contract's JSON error. The token is compared in constant time and is never
logged or echoed.
"""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.responses import error

_SCHEME = b"bearer "
_PROTECTED_PREFIX = "/v1"


class BearerTokenMiddleware:
    def __init__(self, app: ASGIApp, *, token: str) -> None:
        if not token:
            raise ValueError("the API token must not be empty")
        self._app = app
        self._token = token.encode("utf-8")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _is_protected(scope["path"]):
            await self._app(scope, receive, send)
            return
        given = _bearer_token(scope)
        if given is None:
            reply = error(401, "missing bearer token", {"WWW-Authenticate": "Bearer"})
        elif not hmac.compare_digest(given, self._token):
            reply = error(401, "invalid bearer token", {"WWW-Authenticate": "Bearer"})
        else:
            await self._app(scope, receive, send)
            return
        await reply(scope, receive, send)


def _is_protected(path: str) -> bool:
    return path == _PROTECTED_PREFIX or path.startswith(_PROTECTED_PREFIX + "/")


def _bearer_token(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            if value[: len(_SCHEME)].lower() != _SCHEME:
                return None
            token: bytes = value[len(_SCHEME) :].strip()
            return token or None
    return None
