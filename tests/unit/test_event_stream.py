"""Server-sent events: whatever a streamed text holds, it arrives as that one event's data
(a lone ``\\r`` ends an SSE line too, so it must not let a log line start a field)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest
from starlette.requests import Request
from starlette.types import Message

from gateway.screens.event_stream import event_stream, sse_event

HOSTILE = [
    "progress 10%\revent: ended\rdata: forged\r",
    "a\r\nretry: 1\r\n\r\nevent: ended",
    "one\ntwo\n\nevent: ended\ndata: x",
    "id: 7\rretry: 99999",
]


def parsed(stream: str) -> list[tuple[str, str]]:
    """The events a browser reads (the SSE spec: a line ends at CRLF, CR or LF)."""
    events: list[tuple[str, str]] = []
    name, data = "message", []
    for line in re.split(r"\r\n|\r|\n", stream):
        if not line:
            if data:
                events.append((name, "\n".join(data)))
            name, data = "message", []
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
        elif field:
            events.append(("field", field))  # retry: / id: — a field no text may set
    return events


@pytest.mark.parametrize("text", HOSTILE)
def test_a_line_break_of_any_kind_stays_inside_the_events_data(text: str) -> None:
    expected = re.sub(r"\r\n|\r", "\n", text)
    assert parsed(sse_event("line", text)) == [("line", expected)]


async def test_the_stream_sends_each_text_as_one_event() -> None:
    async def receive() -> Message:
        await asyncio.Event().wait()  # the page stays
        raise AssertionError

    async def lines() -> AsyncIterator[tuple[str, str]]:
        for text in HOSTILE:
            yield "line", text

    request = Request({"type": "http", "method": "GET", "path": "/", "headers": []}, receive)
    response = event_stream(request, lines())
    sent = []
    async for chunk in response.body_iterator:
        sent.append(chunk if isinstance(chunk, str) else bytes(chunk).decode())
    stream = "".join(sent)
    assert stream.startswith("retry: 2000\n\n")  # the stream's own field, and only that
    events = parsed(stream.removeprefix("retry: 2000\n\n"))
    assert events == [("line", re.sub(r"\r\n|\r", "\n", text)) for text in HOSTILE]
