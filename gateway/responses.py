"""The gateway's JSON replies: ``success`` bodies and the one error shape of the contract.

Every error the gateway gives is ``{"result": "error", "error": "<readable message>"}``.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from starlette.responses import JSONResponse


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


def _encode(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
