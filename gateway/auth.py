"""Bearer-token authentication and per-route scopes for the API.

``BearerTokenMiddleware`` consumes the request's ``Authorization: Bearer <token>`` header on
every ``/v1`` path and a ``Credentials`` resolver: an unknown or missing token is answered 401
with the contract's JSON error; a known one puts its ``Principal`` on the request. Every ``/v1``
route is a ``guarded_route`` declaring the area it belongs to: a principal whose scopes do not
grant it is answered 403 before the endpoint runs, so nothing is recorded. ``actor_of`` is the
name the endpoint records its events under. Tokens are compared in constant time (see
``gateway.credentials``) and never logged or echoed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.credentials import Credentials, Need, Principal
from gateway.responses import error

_SCHEME = b"bearer "
_PROTECTED_PREFIX = "/v1"
_PRINCIPAL = "hostwright.principal"  # the key of the caller's Principal in the ASGI scope

Endpoint = Callable[[Request], Awaitable[Response]]


class BearerTokenMiddleware:
    def __init__(self, app: ASGIApp, *, credentials: Credentials) -> None:
        self._app = app
        self._credentials = credentials

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _is_protected(scope["path"]):
            await self._app(scope, receive, send)
            return
        given = _bearer_token(scope)
        principal = None if given is None else self._credentials.resolve(given)
        if principal is not None:
            scope[_PRINCIPAL] = principal
            await self._app(scope, receive, send)
            return
        message = "missing bearer token" if given is None else "invalid bearer token"
        await error(401, message, {"WWW-Authenticate": "Bearer"})(scope, receive, send)


def guarded_route(path: str, endpoint: Endpoint, *, method: str, area: str) -> Route:
    """A route whose caller's credential must grant ``area`` (``services`` or ``staff``) for
    ``method``; anyone else is answered 403 before ``endpoint`` runs."""
    need = Need(area, writes=method != "GET")
    refusal = (
        f"this credential may not call {method} {path}: "
        f"it needs the {' or '.join(need.granted_by())} scope"
    )

    async def guard(request: Request) -> Response:
        if not principal_of(request).may(need, request.path_params):
            return error(403, refusal)
        return await endpoint(request)

    guard.need = need  # type: ignore[attr-defined]  # read by the test that every route has one
    return Route(path, guard, methods=[method])


def principal_of(request: Request) -> Principal:
    principal = request.scope.get(_PRINCIPAL)
    if not isinstance(principal, Principal):  # a guarded route outside /v1: a wiring mistake
        raise RuntimeError(f"no authenticated caller on {request.url.path}")
    return principal


def actor_of(request: Request) -> str:
    """The name of the caller's credential: the actor of every event the call records."""
    return principal_of(request).name


def credential_name(scope: Scope) -> str | None:
    """The name of the credential the request was let in with; None when it was not (no
    token, a refused one, a path outside ``/v1``). For the request's log line."""
    principal = scope.get(_PRINCIPAL)
    return principal.name if isinstance(principal, Principal) else None


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
