"""The gateway's JSON replies: ``success`` bodies and the one error shape of the contract.

Every error the gateway gives is ``{"result": "error", "error": "<readable message>"}``.
``refusal_status`` is the one mapping of a refusal to its HTTP status (``InvalidInput`` 422,
``NotFound`` 404, ``Conflict`` 409, ``BadRequest`` its own): the API's handlers, the client
area and the console answer the same refusal with the same status.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from starlette.responses import JSONResponse

from domain.errors import Conflict, InvalidInput, NotFound
from gateway.request_parsing import BadRequest

# what a route may let through to be answered as a refusal (``except REFUSALS``)
REFUSALS = (BadRequest, InvalidInput, NotFound, Conflict)
Refusal = BadRequest | InvalidInput | NotFound | Conflict


class ApiJSONResponse(JSONResponse):
    """A JSONResponse that also writes datetimes (ISO 8601) and UUIDs, as views may hold them."""

    def render(self, content: Any) -> bytes:
        return json.dumps(
            content, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_encode
        ).encode("utf-8")


def success(status_code: int = 202, **fields: Any) -> ApiJSONResponse:
    return ApiJSONResponse({"result": "success", **fields}, status_code=status_code)


def error(status_code: int, message: str, headers: dict[str, str] | None = None) -> ApiJSONResponse:
    return ApiJSONResponse(
        {"result": "error", "error": message}, status_code=status_code, headers=headers
    )


def refusal_status(exc: Refusal) -> int:
    """The HTTP status the API answers ``exc`` with."""
    if isinstance(exc, BadRequest):
        return exc.status_code
    if isinstance(exc, InvalidInput):
        return 422
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Conflict):
        return 409
    raise TypeError(f"{type(exc).__name__} is not a refusal")


def refusal_message(exc: Refusal) -> str:
    """The refusal's readable message, as the API sends it."""
    if isinstance(exc, BadRequest):
        return exc.message
    return str(exc) or "refused"


def _encode(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
