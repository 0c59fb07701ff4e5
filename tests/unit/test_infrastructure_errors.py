"""Which failures the consumer holds against a message: an unreachable database or broker,
also as the cause or context of another exception, never is."""

from __future__ import annotations

import sqlite3

import eventsourcing.persistence
import psycopg
import pytest

from ops.messaging.redelivery import is_infrastructure
from ops.messaging.transport import TransportError


def caused_by(cause: BaseException, *, explicit: bool = True) -> Exception:
    try:
        try:
            raise cause
        except BaseException as inner:
            if explicit:
                raise RuntimeError("could not load the service") from inner
            raise RuntimeError("while handling another failure")  # noqa: B904
    except RuntimeError as outer:
        return outer


@pytest.mark.parametrize(
    "failure",
    [
        psycopg.OperationalError("server closed the connection unexpectedly"),
        psycopg.InterfaceError("the connection is closed"),
        sqlite3.OperationalError("database is locked"),
        eventsourcing.persistence.OperationalError("wrapped by the recorder"),
        ConnectionResetError("reset by peer"),
        TimeoutError(),
        TransportError("publish: channel closed"),
        caused_by(psycopg.OperationalError("gone")),
        caused_by(ConnectionRefusedError("refused"), explicit=False),
    ],
)
def test_an_outage_is_infrastructure(failure: BaseException) -> None:
    assert is_infrastructure(failure)


@pytest.mark.parametrize(
    "failure",
    [
        ValueError("not a JSON event envelope"),
        KeyError("topic"),
        RuntimeError("a bug"),
        psycopg.errors.UniqueViolation("duplicate key"),
        caused_by(ValueError("bad input")),
    ],
)
def test_a_failure_of_the_message_or_the_code_is_not(failure: BaseException) -> None:
    assert not is_infrastructure(failure)
