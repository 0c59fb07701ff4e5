"""A WHMCS API test double: a real HTTP server answering ``POST /includes/api.php``.

It checks what WHMCS documents (developers.whmcs.com, API reference): a form-encoded POST;
``identifier`` and ``secret`` (Authentication); ``responsetype=json``; a known ``action``;
each action's required parameters, integer types and allowed values, and no parameter the
action does not document. It answers in WHMCS's JSON shapes — OpenTicket ``{id, tid, c}``,
GetTickets ``tickets.ticket[]``, GetTicket ``replies.reply[]`` and ``notes.note[]`` — or
``{"result": "error", "message": …}``. It records every call it carried out (secret
removed), and can be switched down (connection refused, or 503 without doing anything) and
back up, or told to carry out the next call of an action and then lose its answer.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

IDENTIFIER = "hw-test-identifier"
SECRET = "hw-test-secret-Zq81xK"
AUTH = {"action", "identifier", "secret", "responsetype"}

# action: (required, optional, integer parameters) as documented
ACTIONS: dict[str, tuple[set[str], set[str], set[str]]] = {
    "OpenTicket": (
        {"deptid", "subject", "message"},
        {
            "clientid",
            "userid",
            "contactid",
            "name",
            "email",
            "priority",
            "created",
            "serviceid",
            "domainid",
            "admin",
            "markdown",
            "noemail",
            "customfields",
            "attachments",
        },
        {"deptid", "clientid", "userid", "contactid", "serviceid", "domainid"},
    ),
    "AddTicketNote": (
        {"message"},
        {"ticketnum", "ticketid", "markdown", "attachments", "created"},
        {"ticketid"},
    ),
    "GetTickets": (
        set(),
        {
            "limitstart",
            "limitnum",
            "deptid",
            "clientid",
            "email",
            "status",
            "subject",
            "ignore_dept_assignments",
        },
        {"limitstart", "limitnum", "deptid", "clientid"},
    ),
    "GetTicket": (set(), {"ticketnum", "ticketid", "repliessort"}, {"ticketid"}),
}


@dataclass
class Call:
    action: str
    params: dict[str, str]


@dataclass
class _State:
    departments: set[int]
    clients: dict[int, set[int]]  # client id -> its service ids
    tickets: dict[int, dict[str, Any]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    requests: int = 0
    mode: str = "up"  # up | 503
    lose_answer: set[str] = field(default_factory=set)


class WhmcsDouble:
    def __init__(
        self,
        *,
        departments: tuple[int, ...] = (1, 2),
        clients: dict[int, set[int]] | None = None,
    ) -> None:
        self._state = _State(set(departments), clients or {7: {42, 43}})
        self._lock = threading.Lock()
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # --- control (from the test's thread) ----------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        app = Starlette(routes=[Route("/includes/api.php", self._endpoint, methods=["POST"])])
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        server = self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the WHMCS double did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)
        self._server = self._thread = None

    def down(self, how: str = "refuse") -> None:
        """``refuse``: nothing listens (connection refused); ``503``: answers 503 to all."""
        if how == "refuse":
            self.stop()
        else:
            with self._lock:
                self._state.mode = "503"

    def up(self) -> None:
        with self._lock:
            self._state.mode = "up"
        if self._server is None:
            self.start()

    def lose_next_answer(self, action: str) -> None:
        """The next ``action`` is carried out, then answered with a 503 (a lost answer)."""
        with self._lock:
            self._state.lose_answer.add(action)

    def calls(self, action: str | None = None) -> list[Call]:
        with self._lock:
            return [c for c in self._state.calls if action is None or c.action == action]

    def tickets(self) -> dict[int, dict[str, Any]]:
        with self._lock:
            return {k: {**v, "notes": list(v["notes"])} for k, v in self._state.tickets.items()}

    # --- the API ------------------------------------------------------------------------

    async def _endpoint(self, request: Request) -> Response:
        body = await request.body()
        with self._lock:
            self._state.requests += 1
            if self._state.mode == "503":
                return PlainTextResponse("Service Unavailable", status_code=503)
            return self._answer(request.headers.get("content-type", ""), body)

    def _answer(self, content_type: str, body: bytes) -> Response:
        if not content_type.startswith("application/x-www-form-urlencoded"):
            return PlainTextResponse("result=error;message=expected a form post", status_code=400)
        parsed = parse_qs(body.decode(), keep_blank_values=True)
        if any(len(values) != 1 for values in parsed.values()):
            return _error("a parameter was given twice")
        params = {name: values[0] for name, values in parsed.items()}
        if params.get("identifier") != IDENTIFIER or params.get("secret") != SECRET:
            return _error("Authentication Failed", status=403)
        if params.get("responsetype") != "json":
            return PlainTextResponse("result=error;message=responsetype must be json")
        action = params.get("action", "")
        if action not in ACTIONS:
            return _error("Command Not Found")
        own = {k: v for k, v in params.items() if k not in AUTH}
        problem = _check(action, own)
        if problem:
            return _error(problem)
        try:
            answer = getattr(self, f"_{action}")(own)
        except LookupError as exc:
            return _error(str(exc.args[0]))
        self._state.calls.append(Call(action, own))
        if action in self._state.lose_answer:
            self._state.lose_answer.discard(action)
            return PlainTextResponse("Bad Gateway", status_code=502)
        return JSONResponse({"result": "success", **answer})

    def _OpenTicket(self, p: dict[str, str]) -> dict[str, Any]:
        if int(p["deptid"]) not in self._state.departments:
            raise LookupError("Department ID not found")
        client = int(p["clientid"]) if "clientid" in p else None
        if client is None and not (p.get("name") and p.get("email")):
            raise LookupError("Name and email address are required if not a client")
        if client is not None and client not in self._state.clients:
            raise LookupError("Client ID Not Found")
        if "serviceid" in p and (
            client is None or int(p["serviceid"]) not in self._state.clients[client]
        ):
            raise LookupError("Service ID Not Found")
        if p.get("priority", "Medium") not in ("Low", "Medium", "High"):
            raise LookupError("Invalid Priority. Valid priorities are: Low, Medium, High")
        if not p["subject"].strip() or not p["message"].strip():
            raise LookupError("Subject and message are required")
        ticket_id = len(self._state.tickets) + 1
        tid = f"HW-{100000 + ticket_id}"
        self._state.tickets[ticket_id] = {
            "id": ticket_id,
            "tid": tid,
            "deptid": int(p["deptid"]),
            "userid": client or 0,
            "subject": p["subject"],
            "message": p["message"],
            "priority": p.get("priority", "Medium"),
            "service": f"S{p['serviceid']}" if "serviceid" in p else "",
            "status": "Open",
            "notes": [],
        }
        return {"id": ticket_id, "tid": tid, "c": f"c{ticket_id:08d}"}

    def _AddTicketNote(self, p: dict[str, str]) -> dict[str, Any]:
        ticket = self._find(p)
        if not p["message"].strip():
            raise LookupError("Message is required")
        ticket["notes"].append(p["message"])
        return {}

    def _GetTickets(self, p: dict[str, str]) -> dict[str, Any]:
        found = [
            t
            for t in self._state.tickets.values()
            if ("clientid" not in p or t["userid"] == int(p["clientid"]))
            and ("deptid" not in p or t["deptid"] == int(p["deptid"]))
            and p.get("subject", "").lower() in t["subject"].lower()
        ]
        start, limit = int(p.get("limitstart", 0)), int(p.get("limitnum", 25))
        page = found[start : start + limit]
        rows = [
            {k: t[k] for k in ("id", "tid", "deptid", "userid", "subject", "status", "priority")}
            for t in page
        ]
        return {
            "totalresults": len(found),
            "startnumber": start,
            "numreturned": len(rows),
            "tickets": {"ticket": rows} if rows else [],
        }

    def _GetTicket(self, p: dict[str, str]) -> dict[str, Any]:
        t = self._find(p)
        notes = [
            {"noteid": i + 1, "admin": "API", "date": "2026-11-23 12:00:00", "message": text}
            for i, text in enumerate(t["notes"])
        ]
        return {
            "ticketid": t["id"],
            "tid": t["tid"],
            "deptid": t["deptid"],
            "userid": t["userid"],
            "subject": t["subject"],
            "status": t["status"],
            "priority": t["priority"],
            "service": t["service"],
            "replies": {"reply": [{"replyid": "0", "message": t["message"]}]},
            "notes": {"note": notes} if notes else [],
        }

    def _find(self, p: dict[str, str]) -> dict[str, Any]:
        if "ticketid" in p:
            ticket = self._state.tickets.get(int(p["ticketid"]))
        elif "ticketnum" in p:
            ticket = next(
                (t for t in self._state.tickets.values() if t["tid"] == p["ticketnum"]), None
            )
        else:
            raise LookupError("Ticket ID or Ticket Number Required")
        if ticket is None:
            raise LookupError("Ticket ID Not Found")
        return ticket


def _check(action: str, params: dict[str, str]) -> str | None:
    required, optional, integers = ACTIONS[action]
    missing = sorted(required - set(params))
    if missing:
        return f"{action}: missing {', '.join(missing)}"
    unknown = sorted(set(params) - required - optional)
    if unknown:
        return f"{action}: not a documented parameter: {', '.join(unknown)}"
    bad = sorted(name for name in integers & set(params) if not params[name].isdigit())
    if bad:
        return f"{action}: must be an integer: {', '.join(bad)}"
    return None


def _error(message: str, status: int = 200) -> Response:
    return JSONResponse({"result": "error", "message": message}, status_code=status)
