"""The correlation id of the work under way: the id of the command that caused it.

Every log line a command causes carries its command id — the gateway's line for the request,
the pipeline's lines for the run it starts, the handlers' lines for that run's steps — so an
operator (or a log shipper) can follow one order across processes with one search.

It lives here, not in ``ops/``, because the places that know the command id are the gateway
(the request's body) and the handlers (the run's tasks carry it), and ``domain`` is what both
may import. It is a ``ContextVar``: each request, each message handled in its own task, and
each thread started with ``asyncio.to_thread`` sees its own value. The logging filter that
puts it on every record is ``ops/runtime/log_setup.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_command_id: ContextVar[str | None] = ContextVar("hostwright_command_id", default=None)


def current_command_id() -> str | None:
    """The command id of the work this code runs for; None outside any command's work."""
    return _command_id.get()


def set_command_id(command_id: str | None) -> None:
    """Marks the rest of this task (or request) as caused by ``command_id``; for a handler of
    one message per task, where the context ends with the task anyway."""
    _command_id.set(command_id)


@contextmanager
def command_context(command_id: str | None) -> Iterator[None]:
    """Marks what runs inside as caused by ``command_id``, and only that."""
    token = _command_id.set(command_id)
    try:
        yield
    finally:
        _command_id.reset(token)
