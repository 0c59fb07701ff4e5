"""Reading a request as the contract says: its JSON body, its ``Idempotency-Key`` and its
query parameters; and a screen's form.

Consumes a Starlette ``Request``; emits the parsed values, or raises ``BadRequest`` — HTTP
400 for a body that is not JSON, not a JSON object or sent with a non-JSON Content-Type, and
for a malformed query parameter; 413 for a body larger than 64 KiB — which ``create_app``
answers with the contract's error body. Every route reads its request through here.
``read_form`` reads an HTML form (``application/x-www-form-urlencoded``) the same way: 413
past 64 KiB, 415 for a body of another type, 400 for one that is not UTF-8.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from urllib.parse import parse_qsl

from starlette.requests import Request

MAX_BODY_BYTES = 64 * 1024
FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"


class BadRequest(Exception):
    """The request cannot be read as the contract says (HTTP 400, or ``status_code``)."""

    def __init__(self, message: str, status_code: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


async def read_json(request: Request, *, required: bool) -> object:
    """The body as parsed JSON; None when it is empty and not ``required``."""
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type and media_type != "application/json" and not media_type.endswith("+json"):
        raise BadRequest("the request body must be JSON (Content-Type: application/json)")
    raw = await _read_body(request)
    if not raw.strip():
        if required:
            raise BadRequest("the request body must be a JSON object")
        return None
    try:
        parsed: object = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise BadRequest("the request body is not valid JSON") from None
    if parsed is not None and not isinstance(parsed, dict):
        raise BadRequest("the request body must be a JSON object")
    if parsed is None and required:
        raise BadRequest("the request body must be a JSON object")
    return parsed


async def read_form(request: Request) -> dict[str, str]:
    """The urlencoded form's fields, the last value of each name ({} for an empty body)."""
    raw = await _read_body(request)
    if not raw:
        return {}
    content_type = request.headers.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() != FORM_MEDIA_TYPE:
        raise BadRequest(f"the form must be sent as {FORM_MEDIA_TYPE}", 415)
    try:
        text = raw.decode("utf-8")
        # strict: a %-escape that is not UTF-8 is refused too, not read as U+FFFD
        fields = parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise BadRequest("the form is not UTF-8") from None
    return dict(fields)


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise BadRequest(f"the request body is larger than {MAX_BODY_BYTES} bytes", 413)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BadRequest(f"the request body is larger than {MAX_BODY_BYTES} bytes", 413)
        chunks.append(chunk)
    return b"".join(chunks)


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def with_idempotency_key(request: Request, body: object) -> object:
    """Uses the ``Idempotency-Key`` header as the command id when the body names none, and a
    fresh one when neither does: every command has an id, the correlation id of every log
    line it causes (domain/correlation.py). A body that is not an object is left to fail."""
    key = request.headers.get("idempotency-key")
    if key is None:
        key = uuid.uuid4().hex
    if body is None:
        return {"command_id": key}
    if isinstance(body, dict) and body.get("command_id") is None:
        return {**body, "command_id": key}
    return body


def query_time(request: Request, name: str) -> datetime | None:
    """An ISO 8601 time in UTC (a time without an offset is taken as UTC); 400 for one that
    is not a time, or is one only in its own offset (``0001-01-01T00:00:00+01:00``)."""
    raw = request.query_params.get(name)
    if not raw:
        return None
    try:
        parsed = datetime.fromisoformat(raw)
        return parsed.astimezone(UTC) if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise BadRequest(
            f"{name} must be an ISO 8601 time from year 1 to 9999 in UTC, like 2025-01-31T12:00:00Z"
        ) from None


def query_limit(request: Request, *, default: int, most: int) -> int:
    """The ``limit`` query parameter: ``default`` when absent, at most ``most``. Only ASCII
    digits count (``int()`` also reads ``٣`` and refuses ``²``), and few of them."""
    return parsed_limit(request.query_params.get("limit"), default=default, most=most)


def parsed_limit(raw: str | None, *, default: int, most: int) -> int:
    """A ``limit`` given as text (``query_limit``'s check, for a form's field too)."""
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9) or int(raw) < 1:
        raise BadRequest(f"limit must be a whole number from 1 to {most}")
    return min(int(raw), most)


async def read_json_object(request: Request) -> object:
    """The body, which must be a JSON object (validated further by the domain's parsers)."""
    return await read_json(request, required=True)
