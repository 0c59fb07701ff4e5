"""The staff console's sign-in, its session cookie and the CSRF check of every form it posts.

Consumes a credential's token (``Credentials.resolve``, constant time; the token is never
kept, logged or echoed), the screens' signing key and the clock; emits the ``hw_console``
cookie and, for each request, the ``ConsoleSession`` it carries or a redirect to the sign-in.

The cookie holds ``{name, scopes, expires, csrf, fingerprint}`` — the credential's name (the
actor of what the console records), its scopes, an expiry 8 hours after sign-in, a random CSRF
secret and the fingerprint of the credential's token (``credentials.fingerprint``: an HMAC of
its digest under the signing key, never the token) — as base64 JSON with an HMAC-SHA256 of it
under the signing key, checked in constant time. Every request asks ``Credentials`` again for
the credential of that name and fingerprint (``principal_named``): a credential removed, given
a new token or other scopes ends its sessions at once.
HttpOnly, SameSite=Strict, Path=/admin, Secure over https or when the public address is https
(``ScreenPorts.secure_cookies``: behind a TLS proxy). A ``staff`` credential gets the
whole console, a ``read`` one every page and no write form; a WHMCS (``services``) or a
per-service credential is refused with a message.

Every POST under ``/admin`` (sign-in aside) carries a ``csrf`` form field equal to the
session's secret (constant-time compare): a cross-site post without it is a 403 page and
nothing is recorded. Forms are ``application/x-www-form-urlencoded``, read by
``request_parsing.read_form`` (the API's body reader): one it refuses (too large, another
type, not UTF-8) is a page with its status.

A POST that recorded something answers ``done``: a 303 to the page to show, its message in
the query (``flash``, with ``flash_mac``: an HMAC under the signing key bound to the session,
so no link made elsewhere puts words on a console page), so reloading the page shows it again
and records nothing again.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from gateway.credentials import READ, STAFF, Principal, fingerprint, token_digest
from gateway.request_parsing import BadRequest, read_form
from gateway.screens.rendering import page

if TYPE_CHECKING:
    from gateway.screens.screen_ports import ScreenPorts

COOKIE = "hw_console"
COOKIE_PATH = "/admin"
SESSION_S = 8 * 3600
SIGN_IN = "/admin/sign-in"
_SESSION = "hostwright.console_session"  # the request's session, in the ASGI scope
_FORM = "hostwright.console_form"  # the form a checked POST carried, in the ASGI scope
_KEY = "hostwright.console_key"  # the signing key, in the ASGI scope (for ``done``)

ConsolePage = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class ConsoleSession:
    """A signed-in member of staff: ``name`` is the actor of every command they record."""

    name: str
    scopes: frozenset[str]
    expires: int  # seconds since the epoch
    csrf: str
    fingerprint: str  # of the credential's token (``credentials.fingerprint``)

    @property
    def writes(self) -> bool:
        """Staff may press buttons; read-only staff see no write form at all."""
        return STAFF in self.scopes


def seal(session: ConsoleSession, key: bytes) -> str:
    payload = json.dumps(
        {
            "n": session.name,
            "s": sorted(session.scopes),
            "e": session.expires,
            "c": session.csrf,
            "f": session.fingerprint,
        },
        separators=(",", ":"),
    ).encode()
    body = base64.urlsafe_b64encode(payload).decode().rstrip("=")
    return f"{body}.{_mac(key, body)}"


def opened(cookie: str | None, key: bytes, now: datetime) -> ConsoleSession | None:
    """The session a cookie holds; None when it is missing, altered or expired."""
    if not cookie or "." not in cookie:
        return None
    body, mac = cookie.rsplit(".", 1)
    if not hmac.compare_digest(mac.encode(), _mac(key, body).encode()):
        return None
    try:
        fields = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        session = ConsoleSession(
            name=str(fields["n"]),
            scopes=frozenset(str(s) for s in fields["s"]),
            expires=int(fields["e"]),
            csrf=str(fields["c"]),
            fingerprint=str(fields["f"]),
        )
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None
    return session if session.expires > now.timestamp() else None


def _mac(key: bytes, body: str) -> str:
    return hmac.new(key, b"console-session:" + body.encode(), hashlib.sha256).hexdigest()


def session_of(request: Request) -> ConsoleSession:
    session = request.scope.get(_SESSION)
    if not isinstance(session, ConsoleSession):  # a console page outside ``signed_in``
        raise RuntimeError(f"no console session on {request.url.path}")
    return session


def form_of(request: Request) -> dict[str, str]:
    """The form a checked POST carried (read once, by ``signed_in``)."""
    form: dict[str, str] = request.scope.get(_FORM, {})
    return form


def signed_in(ports: ScreenPorts, endpoint: ConsolePage, *, writes: bool = False) -> ConsolePage:
    """``endpoint`` for a signed-in session only (the sign-in page for anyone else); a POST
    must carry the session's CSRF secret, and a write needs a ``staff`` session."""

    async def guarded(request: Request) -> Response:
        session = opened(request.cookies.get(COOKIE), ports.signing_key, ports.clock())
        if session is not None and not _still_granted(ports, session):
            session = None
        if session is None:
            if request.method != "GET":
                return refused("Your console session has ended: sign in again.", 403)
            return RedirectResponse(SIGN_IN, status_code=303)
        request.scope[_SESSION] = session
        request.scope[_KEY] = ports.signing_key
        if request.method == "POST":
            try:
                form = await read_form(request)
            except BadRequest as exc:
                return refused(str(exc), exc.status_code)
            given = form.get("csrf", "")
            if not hmac.compare_digest(given.encode(), session.csrf.encode()):
                return refused("This form was not sent from the console (no CSRF token).", 403)
            request.scope[_FORM] = form
        if writes and not session.writes:
            return refused("This credential may only read the console.", 403)
        return await endpoint(request)

    return guarded


def _still_granted(ports: ScreenPorts, session: ConsoleSession) -> bool:
    """Whether the session's credential still exists, with the same token and scopes."""
    principal = ports.credentials.principal_named(
        session.name, session.fingerprint, ports.signing_key
    )
    if principal is None or _refusal(principal) is not None:
        return False
    return principal.scopes & {STAFF, READ} == session.scopes


def refused(message: str, status_code: int) -> Response:
    return page("console/refused.html", status_code=status_code, message=message)


def session_routes(ports: ScreenPorts) -> list[Route]:
    async def sign_in_form(request: Request) -> Response:
        return page("console/sign_in.html", message=None)

    async def sign_in(request: Request) -> Response:
        try:
            form = await read_form(request)
        except BadRequest as exc:
            return page("console/sign_in.html", status_code=exc.status_code, message=str(exc))
        token = form.get("token", "").strip().encode()
        principal = ports.credentials.resolve(token)
        message = _refusal(principal)
        if principal is None or message is not None:
            return page("console/sign_in.html", status_code=403, message=message)
        expires = int(ports.clock().timestamp()) + SESSION_S
        session = ConsoleSession(
            principal.name,
            principal.scopes & {STAFF, READ},
            expires,
            secrets.token_urlsafe(24),
            fingerprint(ports.signing_key, token_digest(token)),
        )
        response = RedirectResponse("/admin", status_code=303)
        secure = ports.secure_cookies(request.url.scheme)
        _set_cookie(response, seal(session, ports.signing_key), SESSION_S, secure=secure)
        return response

    async def sign_out(request: Request) -> Response:
        response = RedirectResponse(SIGN_IN, status_code=303)
        _set_cookie(response, "", 0, secure=ports.secure_cookies(request.url.scheme))
        return response

    return [
        Route(SIGN_IN, sign_in_form, methods=["GET"]),
        Route(SIGN_IN, sign_in, methods=["POST"]),
        Route("/admin/sign-out", signed_in(ports, sign_out), methods=["POST"]),
    ]


def _refusal(principal: Principal | None) -> str | None:
    """Why this credential may not open the console; None when it may."""
    if principal is None:
        return "That token names no credential."
    if principal.service_id is not None:
        return "A credential of one service cannot open the console."
    if STAFF in principal.scopes or READ in principal.scopes:
        return None
    return "This credential is WHMCS's (services only): the console needs a staff or read one."


def _set_cookie(response: Response, value: str, max_age: int, *, secure: bool) -> None:
    response.set_cookie(
        COOKIE,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=secure,
    )


def done(request: Request, location: str, message: str) -> Response:
    """The answer to a POST that recorded something: a 303 to ``location`` (a console path,
    maybe with its query) which shows ``message``."""
    session = session_of(request)
    query = urlencode({"flash": message, "flash_mac": _flash_mac(request, session, message)})
    joiner = "&" if "?" in location else "?"
    return RedirectResponse(f"{location}{joiner}{query}", status_code=303)


def _flash_mac(request: Request, session: ConsoleSession, message: str) -> str:
    key: bytes = request.scope[_KEY]
    body = f"console-flash:{session.csrf}:{message}".encode()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def _shown_flash(request: Request) -> str | None:
    """The message a ``done`` redirect carries to this page; None when none, or forged."""
    message = request.query_params.get("flash")
    mac = request.query_params.get("flash_mac", "")
    if message is None or request.method != "GET":
        return None
    expected = _flash_mac(request, session_of(request), message)
    return message if hmac.compare_digest(mac.encode(), expected.encode()) else None


def console_page(
    request: Request,
    template: str,
    *,
    here: str,
    status_code: int = 200,
    flash: str | None = None,
    failure: str | None = None,
    **context: Any,
) -> Response:
    """A console page: ``template`` with the session (who, may they write, the CSRF token),
    the nav's current item, and a message (``flash``) or a refusal's (``failure``)."""
    return page(
        template,
        status_code=status_code,
        session=session_of(request),
        here=here,
        flash=flash if flash is not None else _shown_flash(request),
        failure=failure,
        **context,
    )
