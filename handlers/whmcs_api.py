"""A client for the WHMCS API (``POST <url>/includes/api.php``), the calls tickets need.

Every call is a form-encoded POST carrying ``action``, ``identifier``, ``secret`` and
``responsetype=json``; WHMCS answers ``{"result": "success", …}`` or ``{"result": "error",
"message": …}``. Failures raise ``WhmcsError``: ``WhmcsUnavailable`` (network, timeout, 5xx:
try again later) or ``WhmcsRejected`` (WHMCS refused; the message says why). Each says
whether the call may have taken effect anyway (``maybe_done``). The secret never appears in
an error, a log line or a repr.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

API_PATH = "/includes/api.php"
_PAGE = 100


class WhmcsError(Exception):
    def __init__(self, message: str, *, maybe_done: bool) -> None:
        super().__init__(message)
        self.maybe_done = maybe_done


class WhmcsUnavailable(WhmcsError):
    """WHMCS could not be reached or failed (transient)."""


class WhmcsRejected(WhmcsError):
    """WHMCS answered ``result=error`` or refused the request (permanent until fixed)."""


@dataclass(frozen=True)
class WhmcsTicket:
    id: int  # the ticket's database id (``ticketid`` in later calls)
    tid: str  # the ticket number shown to people


class WhmcsApi:
    def __init__(
        self,
        url: str,
        identifier: str,
        secret: str,
        *,
        timeout_s: float = 20.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("the WHMCS URL must be http(s)://host[/path]")
        if not identifier or not secret:
            raise ValueError("the WHMCS API identifier and secret must both be set")
        base = url.rstrip("/")
        self.endpoint = base if base.endswith(API_PATH) else base + API_PATH
        self._identifier = identifier
        self._secret = secret
        self._timeout_s = timeout_s
        self._transport = transport

    def __repr__(self) -> str:
        return f"WhmcsApi({self.endpoint!r})"

    async def open_ticket(
        self,
        *,
        department_id: int,
        subject: str,
        message: str,
        priority: str,
        client_id: int,
        service_id: int | None,
    ) -> WhmcsTicket:
        params: dict[str, str] = {
            "deptid": str(department_id),
            "subject": subject,
            "message": message,
            "priority": priority,
            "clientid": str(client_id),
        }
        if service_id is not None:
            params["serviceid"] = str(service_id)
        answer = await self._call("OpenTicket", params)
        try:
            return WhmcsTicket(int(answer["id"]), str(answer["tid"]))
        except (KeyError, TypeError, ValueError):
            raise WhmcsUnavailable(
                "WHMCS OpenTicket answered success without a ticket id", maybe_done=True
            ) from None

    async def add_ticket_note(self, *, ticket_id: int, message: str) -> None:
        await self._call("AddTicketNote", {"ticketid": str(ticket_id), "message": message})

    async def find_ticket(self, *, client_id: int, marker: str) -> WhmcsTicket | None:
        """The client's ticket whose subject contains ``marker`` (GetTickets' subject filter
        is approximate, so each subject is checked here)."""
        start = 0
        while True:
            answer = await self._call(
                "GetTickets",
                {
                    "clientid": str(client_id),
                    "subject": marker,
                    "ignore_dept_assignments": "true",
                    "limitstart": str(start),
                    "limitnum": str(_PAGE),
                },
            )
            tickets = _items(answer.get("tickets"), "ticket")
            for ticket in tickets:
                if marker in str(ticket.get("subject", "")):
                    return WhmcsTicket(int(ticket["id"]), str(ticket.get("tid", "")))
            start += len(tickets)
            if not tickets or start >= int(answer.get("totalresults") or 0):
                return None

    async def ticket_has_note(self, *, ticket_id: int, marker: str) -> bool:
        """Whether the ticket carries a note containing ``marker`` (GetTicket's notes)."""
        answer = await self._call("GetTicket", {"ticketid": str(ticket_id)})
        notes = _items(answer.get("notes"), "note")
        return any(marker in str(note.get("message", "")) for note in notes)

    async def _call(self, action: str, params: dict[str, str]) -> dict[str, Any]:
        form = {
            "action": action,
            "identifier": self._identifier,
            "secret": self._secret,
            "responsetype": "json",
            **params,
        }
        try:
            async with (
                asyncio.timeout(self._timeout_s),
                httpx.AsyncClient(
                    transport=self._transport, timeout=self._timeout_s, follow_redirects=False
                ) as client,
            ):
                response = await client.post(self.endpoint, data=form)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise self._unavailable(action, f"cannot connect ({_kind(exc)})", False) from None
        except (httpx.TransportError, TimeoutError) as exc:
            raise self._unavailable(action, f"no answer ({_kind(exc)})", True) from None
        return self._answer(action, response)

    def _answer(self, action: str, response: httpx.Response) -> dict[str, Any]:
        status = response.status_code
        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if isinstance(body, dict) and body.get("result") == "error" and status < 500:
            reason = self._redact(str(body.get("message") or "no message"))
            raise WhmcsRejected(f"WHMCS refused {action}: {reason}", maybe_done=False)
        if status >= 500:
            raise self._unavailable(action, f"HTTP {status}", True)
        if status >= 400:
            raise WhmcsRejected(f"WHMCS refused {action}: HTTP {status}", maybe_done=False)
        if not isinstance(body, dict) or body.get("result") != "success":
            raise self._unavailable(
                action, f"an answer that is not WHMCS JSON (HTTP {status})", True
            )
        return body

    def _unavailable(self, action: str, what: str, maybe_done: bool) -> WhmcsUnavailable:
        host = urlsplit(self.endpoint).netloc
        return WhmcsUnavailable(
            f"WHMCS {action} at {host}: {self._redact(what)}", maybe_done=maybe_done
        )

    def _redact(self, text: str) -> str:
        return text.replace(self._secret, "*****")


def _kind(exc: BaseException) -> str:
    detail = str(exc)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def _items(container: object, key: str) -> list[dict[str, Any]]:
    """WHMCS lists come as ``{"ticket": [...]}``, or ``[]``/``""`` when empty."""
    if isinstance(container, dict):
        items = container.get(key, [])
        if isinstance(items, dict):  # a single item, as XML-to-JSON sometimes gives
            items = [items]
        return [item for item in items if isinstance(item, dict)]
    return []
