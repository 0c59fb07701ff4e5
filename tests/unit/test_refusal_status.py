"""One mapping of a refusal to its status: the API's handlers, the client area and the
console answer the same refusal alike."""

from __future__ import annotations

import json

import pytest

from domain.errors import Conflict, InvalidInput, NotFound
from gateway.request_parsing import BadRequest
from gateway.responses import Refusal, refusal_message, refusal_status


@pytest.mark.parametrize(
    ("refusal", "status"),
    [
        (InvalidInput("bad"), 422),
        (NotFound("none"), 404),
        (Conflict("not now"), 409),
        (BadRequest("unreadable"), 400),
        (BadRequest("too large", 413), 413),
    ],
)
def test_each_refusal_has_the_apis_status(refusal: Refusal, status: int) -> None:
    assert refusal_status(refusal) == status
    assert refusal_message(refusal) == str(refusal)


def test_a_refusal_without_words_still_says_it_was_refused() -> None:
    assert refusal_message(Conflict()) == "refused"


def test_anything_else_is_no_refusal() -> None:
    with pytest.raises(TypeError):
        refusal_status(RuntimeError("boom"))  # type: ignore[arg-type]


async def test_the_apis_handler_answers_with_refusal_status() -> None:
    from starlette.requests import Request

    from gateway.app import _refused

    request = Request({"type": "http", "method": "GET", "path": "/", "headers": []})
    for refusal, status in ((InvalidInput("bad value"), 422), (NotFound("no such service"), 404)):
        reply = await _refused(request, refusal)
        assert reply.status_code == status
        assert json.loads(bytes(reply.body)) == {"result": "error", "error": str(refusal)}
