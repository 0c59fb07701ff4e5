"""Calling the gateway's routes in-process: the test credentials (WHMCS's, staff's and a
read-only dashboard's tokens and the ``TokenTable`` that knows them), an order body, a
synchronous client over ASGI and the check that a refusal is a readable JSON error.

Consumes a Starlette app (``gateway.app.create_app``); emits httpx responses to assert on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
from starlette.types import ASGIApp

from gateway import credentials as scopes
from gateway.credentials import TokenTable, known_token

TOKEN = "whmcs-t0ken-for-tests-0123456789-abcdef"
STAFF_TOKEN = "staff-t0ken-for-tests-0123456789-abcdef"
READ_TOKEN = "read-t0ken-for-tests-0123456789-abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}  # WHMCS's: actor "whmcs"
STAFF = {"Authorization": f"Bearer {STAFF_TOKEN}"}  # actor "staff"
READER = {"Authorization": f"Bearer {READ_TOKEN}"}  # actor "dashboard"
PASSWORD = "Cl3ar-Pa55word!"
START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def credentials_for_tests() -> TokenTable:
    """WHMCS's, staff's and a dashboard's credentials, as the environment would give them."""
    return TokenTable.of(
        [
            known_token("whmcs", {scopes.SERVICES}, TOKEN),
            known_token("staff", {scopes.STAFF}, STAFF_TOKEN),
            known_token("dashboard", {scopes.READ}, READ_TOKEN),
        ]
    )


class Client:
    """A synchronous face on ``httpx.AsyncClient`` over ASGI, with one event loop per test.

    (starlette's Client warns about httpx, and this suite treats warnings as errors.)
    """

    def __init__(self, app: ASGIApp) -> None:
        self._loop = asyncio.new_event_loop()
        self._client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gateway.test"
        )

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self._loop.run_until_complete(self._client.request(method, path, **kwargs))

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)

    def close(self) -> None:
        self._loop.run_until_complete(self._client.aclose())
        self._loop.run_until_complete(self._loop.shutdown_default_executor())
        self._loop.close()


@contextmanager
def serving(app: ASGIApp) -> Iterator[Client]:
    client = Client(app)
    try:
        yield client
    finally:
        client.close()


def order(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "service_id": 1001,
        "client_id": 7,
        "mode": "split",
        "domain": "shop.example.com",
        "plan": {"package": "basic", "disk_mb": 1000},
        "username": "shop1",
        "password": PASSWORD,
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def assert_readable_error(reply: httpx.Response, *statuses: int) -> None:
    assert reply.status_code in statuses, (reply.status_code, reply.text)
    body = reply.json()
    assert body["result"] == "error"
    assert isinstance(body["error"], str) and len(body["error"]) >= 8
