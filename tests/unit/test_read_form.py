"""A screen's form, read like the API's JSON: bounded, of its own type, UTF-8 or refused."""

from __future__ import annotations

import pytest
from starlette.requests import Request
from starlette.types import Message

from gateway.request_parsing import MAX_BODY_BYTES, BadRequest, read_form

FORM = "application/x-www-form-urlencoded"


def request(body: bytes, content_type: str | None = FORM) -> Request:
    headers = [] if content_type is None else [(b"content-type", content_type.encode())]
    chunks = [body[i : i + 1000] for i in range(0, len(body), 1000)] or [b""]

    async def receive() -> Message:
        chunk = chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}
    return Request(scope, receive)


async def test_the_fields_are_read_the_last_of_each_name_wins() -> None:
    form = await read_form(request(b"token=a%2Bb&chain=&token=t+2&name=%C3%A9t%C3%A9"))
    assert form == {"token": "t 2", "chain": "", "name": "été"}


async def test_a_charset_parameter_is_fine_and_an_empty_body_is_no_fields() -> None:
    assert await read_form(request(b"a=1", FORM + "; charset=UTF-8")) == {"a": "1"}
    assert await read_form(request(b"", None)) == {}


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b'{"token": "t"}', "application/json", 415),
        (b"token=t", None, 415),
        (b"token=t", "multipart/form-data; boundary=x", 415),
        (b"token=\xff\xfe", FORM, 400),  # raw bytes that are not UTF-8
        (b"token=%FF%FE", FORM, 400),  # escapes that are not UTF-8: refused, not U+FFFD
        (b"token=" + b"a" * MAX_BODY_BYTES, FORM, 413),
    ],
)
async def test_what_is_not_a_form_is_refused(
    body: bytes, content_type: str | None, status: int
) -> None:
    with pytest.raises(BadRequest) as refused:
        await read_form(request(body, content_type))
    assert refused.value.status_code == status
