"""A small ACME server double on https://127.0.0.1, for what Debian's pebble (2.4) cannot show:
ARI (``renewalInfo`` with ``explanationURL``), orders with ``replaces`` and their refusals
(``alreadyReplaced`` 409, ``malformed``), rate limits (429 ``rateLimited`` with
``Retry-After``), ``caaIdentities`` and profiles.

It answers the directory, nonces, accounts (``onlyReturnExisting`` included), orders,
authorizations whose HTTP-01 challenge turns valid as soon as it is answered (nothing is
fetched), finalize (issuing under its own CA: a certificate without Common Name for the
``tlsserver`` profile), the certificate, and ``renewalInfo/<id>``. JWS signatures are not
checked: the double tests the client's requests, not its cryptography.

Knobs (set from the test, read per request): ``window = (start, end, explanation_url)``,
``replaces_answer = "ok" | "alreadyReplaced" | "malformed"``, ``rate_limit_next =
retry_after_s`` (the next new order only; ``retry_after_as_date`` sends it as an HTTP date),
``rate_limit_finalize_next = retry_after_s`` (the next finalize only), ``ari_answer = "ok" |
"missing" | "no-retry-after"`` (``renewalInfo`` answers 404, or without ``Retry-After``),
``processing_s`` (a finalized order stays ``processing`` that long, answering polls with
``Retry-After``), ``offers_ari`` (False: a directory without ``renewalInfo``, as pebble's),
``refuse_challenges`` (an answered challenge turns ``invalid``, its authorization and order
too, as when the CA could not fetch the file). Counters: ``orders``,
``orders_with_replaces``, ``replaced`` (the ids), ``profiles_seen``, ``order_polls``
(POST-as-GETs of orders).
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import uvicorn
from cryptography import x509
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ops.devtools.background_server import BackgroundServer
from ops.devtools.mini_ca import MiniCa

PROBLEM = "urn:ietf:params:acme:error:"
PROFILES = {"classic": "90 days, with a Common Name", "tlsserver": "no Common Name"}
ARI_RETRY_AFTER_S = 21600


@dataclass
class _Order:
    names: list[str]
    profile: str | None
    replaces: str | None
    answered: set[int] = field(default_factory=set)
    refused: set[int] = field(default_factory=set)
    fullchain: str | None = None
    valid_at: float = 0.0  # time.monotonic() from which a finalized order is valid


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class AcmeDouble(BackgroundServer):
    def __init__(self) -> None:
        self.window: tuple[datetime, datetime, str | None] | None = None
        self.replaces_answer = "ok"
        self.rate_limit_next: int | None = None
        self.rate_limit_finalize_next: int | None = None
        self.retry_after_as_date = False
        self.processing_s = 0
        self.offers_ari = True
        self.ari_answer = "ok"
        self.refuse_challenges = False
        self.order_polls = 0
        self.orders = 0
        self.orders_with_replaces = 0
        self.replaced: list[str] = []
        self.profiles_seen: list[str | None] = []
        self._orders: dict[int, _Order] = {}
        self._accounts: dict[str, str] = {}  # JWK (as sent) -> account URL
        self._nonce = 0
        self._root = MiniCa("hostwright ACME double root")
        self._issuer = self._root.intermediate("hostwright ACME double issuer")
        self._dir = tempfile.TemporaryDirectory(prefix="hw-acme-double-")
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # --- control (from the test's thread) ----------------------------------------------

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self._sock.getsockname()[1]}"

    @property
    def directory_url(self) -> str:
        return self.url + "/dir"

    @property
    def ca_bundle_path(self) -> str:
        return str(Path(self._dir.name) / "api-ca.pem")

    @property
    def issuer_root_pem(self) -> str:
        return self._root.certificate_pem

    def start(self, timeout_s: float = 10.0) -> AcmeDouble:
        directory = Path(self._dir.name)
        Path(self.ca_bundle_path).write_text(self._root.certificate_pem)
        cert, key = self._root.leaf(["127.0.0.1", "localhost"]).write(directory, "api")
        self._sock.listen(64)
        config = uvicorn.Config(
            self._app(),
            log_level="warning",
            access_log=False,
            lifespan="off",
            ssl_certfile=str(cert),
            ssl_keyfile=str(key),
        )
        server = self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=lambda: asyncio.run(server.serve(sockets=[self._sock])),
            name="acme-double",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                self.stop()
                raise RuntimeError("the ACME double did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._server.force_exit = True  # a failed test may still hold a connection
            self._thread.join(10)
        self._server = self._thread = None
        self._sock.close()
        self._dir.cleanup()

    # --- the server (in its own thread) ------------------------------------------------

    def _app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/dir", self._directory),
                Route("/nonce", self._new_nonce, methods=["GET", "HEAD"]),
                Route("/account", self._account, methods=["POST"]),
                Route("/account/{n:int}", self._account_get, methods=["POST"]),
                Route("/order", self._new_order, methods=["POST"]),
                Route("/order/{n:int}", self._order, methods=["POST"]),
                Route("/authz/{n:int}/{i:int}", self._authz, methods=["POST"]),
                Route("/chall/{n:int}/{i:int}", self._challenge, methods=["POST"]),
                Route("/finalize/{n:int}", self._finalize, methods=["POST"]),
                Route("/cert/{n:int}", self._certificate, methods=["POST"]),
                Route("/renewal-info/{ari_id}", self._renewal_info),
            ]
        )

    def _headers(self, **more: str) -> dict[str, str]:
        self._nonce += 1
        return {"Replay-Nonce": f"nonce-{self._nonce:08d}", "Cache-Control": "no-store", **more}

    def _json(self, body: Any, status: int = 200, **headers: str) -> Response:
        return JSONResponse(body, status, headers=self._headers(**headers))

    def _problem(self, code: str, detail: str, status: int, **headers: str) -> Response:
        body = json.dumps({"type": PROBLEM + code, "detail": detail, "status": status})
        return Response(
            body, status, headers=self._headers(**headers), media_type="application/problem+json"
        )

    async def _payload(self, request: Request) -> tuple[dict[str, Any], dict[str, Any] | None]:
        jws = await request.json()
        protected = json.loads(_b64decode(jws["protected"]))
        payload = json.loads(_b64decode(jws["payload"])) if jws["payload"] else None
        return protected, payload

    async def _directory(self, request: Request) -> Response:
        base = self.url
        directory = {
            "newNonce": base + "/nonce",
            "newAccount": base + "/account",
            "newOrder": base + "/order",
            "revokeCert": base + "/revoke",
            "keyChange": base + "/key-change",
            "renewalInfo": base + "/renewal-info",
            "meta": {"caaIdentities": ["hostwright-double.test"], "profiles": PROFILES},
        }
        if not self.offers_ari:
            del directory["renewalInfo"]
        return JSONResponse(directory)

    async def _new_nonce(self, request: Request) -> Response:
        return Response(status_code=200, headers=self._headers())

    async def _account(self, request: Request) -> Response:
        protected, payload = await self._payload(request)
        key = json.dumps(protected["jwk"], sort_keys=True)
        existing = self._accounts.get(key)
        if existing is None and (payload or {}).get("onlyReturnExisting"):
            return self._problem("accountDoesNotExist", "no account for this key", 400)
        if existing is None:
            existing = self._accounts[key] = f"{self.url}/account/{len(self._accounts) + 1}"
            return self._json({"status": "valid"}, 201, Location=existing)
        return self._json({"status": "valid"}, 200, Location=existing)

    async def _account_get(self, request: Request) -> Response:
        return self._json({"status": "valid"})

    async def _new_order(self, request: Request) -> Response:
        _, payload = await self._payload(request)
        assert payload is not None
        if self.rate_limit_next is not None:
            wait, self.rate_limit_next = self.rate_limit_next, None
            until = datetime.now(UTC) + timedelta(seconds=wait)
            header = format_datetime(until, usegmt=True) if self.retry_after_as_date else str(wait)
            detail = f"too many new orders recently: retry after {until:%Y-%m-%d %H:%M:%S} UTC"
            return self._problem("rateLimited", detail, 429, **{"Retry-After": header})
        replaces = payload.get("replaces")
        if replaces is not None and self.replaces_answer == "alreadyReplaced":
            return self._problem("alreadyReplaced", f"{replaces} was already replaced", 409)
        if replaces is not None and self.replaces_answer == "malformed":
            return self._problem("malformed", "the replaced certificate has no such name", 400)
        names = [i["value"] for i in payload["identifiers"]]
        self.orders += 1
        self.orders_with_replaces += replaces is not None
        if replaces is not None:
            self.replaced.append(replaces)
        self.profiles_seen.append(payload.get("profile"))
        n = len(self._orders) + 1
        self._orders[n] = _Order(names, payload.get("profile"), replaces)
        return self._json(self._order_body(n), 201, Location=f"{self.url}/order/{n}")

    def _order_body(self, n: int) -> dict[str, Any]:
        order = self._orders[n]
        status = "pending"
        if order.refused:
            status = "invalid"
        elif len(order.answered) == len(order.names):
            status = "ready"
        if order.fullchain is not None:
            status = "valid" if time.monotonic() >= order.valid_at else "processing"
        body: dict[str, Any] = {
            "status": status,
            "identifiers": [{"type": "dns", "value": name} for name in order.names],
            "authorizations": [f"{self.url}/authz/{n}/{i}" for i in range(len(order.names))],
            "finalize": f"{self.url}/finalize/{n}",
        }
        if order.profile:
            body["profile"] = order.profile
        if order.replaces:
            body["replaces"] = order.replaces
        if status == "valid":
            body["certificate"] = f"{self.url}/cert/{n}"
        return body

    async def _order(self, request: Request) -> Response:
        self.order_polls += 1
        body = self._order_body(request.path_params["n"])
        if body["status"] == "processing":
            return self._json(body, 200, **{"Retry-After": str(self.processing_s)})
        return self._json(body)

    def _challenge_body(self, n: int, i: int) -> dict[str, Any]:
        order = self._orders[n]
        status = "valid" if i in order.answered else "pending"
        body: dict[str, Any] = {
            "type": "http-01",
            "url": f"{self.url}/chall/{n}/{i}",
            "token": _token(n, i),
            "status": status,
        }
        if i in order.refused:
            body["status"] = "invalid"
            body["error"] = {
                "type": PROBLEM + "unauthorized",
                "detail": "the key authorization file was not found",
                "status": 403,
            }
        return body

    async def _authz(self, request: Request) -> Response:
        n, i = request.path_params["n"], request.path_params["i"]
        name = self._orders[n].names[i]
        challenge = self._challenge_body(n, i)
        body = {
            "identifier": {"type": "dns", "value": name.removeprefix("*.")},
            "status": challenge["status"],
            "challenges": [challenge],
        }
        if name.startswith("*."):
            body["wildcard"] = True
        return self._json(body)

    async def _challenge(self, request: Request) -> Response:
        n, i = request.path_params["n"], request.path_params["i"]
        if self.refuse_challenges:
            self._orders[n].refused.add(i)
        else:
            self._orders[n].answered.add(i)
        link = f'<{self.url}/authz/{n}/{i}>;rel="up"'
        return self._json(self._challenge_body(n, i), Link=link)

    async def _finalize(self, request: Request) -> Response:
        n = request.path_params["n"]
        _, payload = await self._payload(request)
        assert payload is not None
        order = self._orders[n]
        if len(order.answered) != len(order.names):
            return self._problem("orderNotReady", "the order is not ready", 403)
        if self.rate_limit_finalize_next is not None:
            wait, self.rate_limit_finalize_next = self.rate_limit_finalize_next, None
            detail = "too many certificates for this exact set of names"
            return self._problem("rateLimited", detail, 429, **{"Retry-After": str(wait)})
        csr = x509.load_der_x509_csr(_b64decode(payload["csr"]))
        names = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        leaf = self._issuer.leaf(
            names.get_values_for_type(x509.DNSName),
            common_name=None if order.profile == "tlsserver" else "",
            public_key=csr.public_key(),
        )
        order.fullchain = leaf.certificate_pem + self._issuer.certificate_pem
        order.valid_at = time.monotonic() + self.processing_s
        return self._json(self._order_body(n), Location=f"{self.url}/order/{n}")

    async def _certificate(self, request: Request) -> Response:
        order = self._orders[request.path_params["n"]]
        assert order.fullchain is not None
        return PlainTextResponse(
            order.fullchain,
            headers=self._headers(),
            media_type="application/pem-certificate-chain",
        )

    async def _renewal_info(self, request: Request) -> Response:
        if self.ari_answer == "missing":
            return self._problem("malformed", "no renewal information now", 404)
        if self.window is None:
            start = datetime.now(UTC) + timedelta(days=30)
            window: tuple[datetime, datetime, str | None] = (start, start + timedelta(days=2), None)
        else:
            window = self.window
        body: dict[str, Any] = {
            "suggestedWindow": {"start": _rfc3339(window[0]), "end": _rfc3339(window[1])}
        }
        if window[2] is not None:
            body["explanationURL"] = window[2]
        if self.ari_answer == "no-retry-after":
            return JSONResponse(body)
        return JSONResponse(body, headers={"Retry-After": str(ARI_RETRY_AFTER_S)})


def _token(n: int, i: int) -> str:
    """A challenge token: at least 128 bits of base64url, as RFC 8555 asks (acme checks)."""
    return base64.urlsafe_b64encode(f"token-{n}-{i}".ljust(16, "-").encode()).decode().rstrip("=")


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
