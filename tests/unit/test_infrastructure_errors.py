"""Which failures the consumer holds against a message: an unreachable database or broker,
also as the cause or context of another exception, never is."""

from __future__ import annotations

import socket
import sqlite3

import eventsourcing.persistence
import psycopg
import psycopg_pool
import pytest

from ops.messaging.redelivery import is_infrastructure
from ops.messaging.transport import TransportError, Unroutable
from ops.store.database import database_unavailable


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


def wrapped(cause: BaseException) -> Exception:
    """As the event store raises it: eventsourcing's error raised from the driver's."""
    try:
        try:
            raise cause
        except BaseException as inner:
            raise eventsourcing.persistence.OperationalError(str(inner)) from inner
    except eventsourcing.persistence.OperationalError as outer:
        return outer


# the database is away: waited out, never held against the message
DATABASE_OUTAGES: list[BaseException] = [
    psycopg.OperationalError("connection refused"),  # no SQLSTATE: the client's own
    psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
    psycopg.errors.CrashShutdown("crash"),
    psycopg.errors.CannotConnectNow("the database system is starting up"),
    psycopg.errors.TooManyConnections("too many clients"),
    psycopg.errors.ConnectionFailure("08006"),
    psycopg.errors.ConnectionException("08000"),
    psycopg_pool.PoolTimeout("couldn't get a connection after 2.00 sec"),
    psycopg.InterfaceError("the connection is closed"),
    sqlite3.OperationalError("database is locked"),
    sqlite3.OperationalError("unable to open database file"),
    wrapped(psycopg.errors.AdminShutdown("terminating")),
]

# the same work fails the same way again: counted, and dead-lettered in the end
DATABASE_FAILURES_OF_THE_WORK: list[BaseException] = [
    psycopg.errors.ProgramLimitExceeded("index row size exceeds maximum"),
    psycopg.errors.QueryCanceled("canceling statement due to statement timeout"),
    psycopg.errors.DiskFull("could not extend file"),
    psycopg.errors.OutOfMemory("out of memory"),
    psycopg.errors.DeadlockDetected("deadlock detected"),
    psycopg.errors.LockNotAvailable("could not obtain lock"),
    sqlite3.OperationalError("no such table: hw_inbox"),
    wrapped(psycopg.errors.DiskFull("could not extend file")),
    wrapped(sqlite3.OperationalError("no such column: x")),
]


@pytest.mark.parametrize("failure", DATABASE_OUTAGES)
def test_a_database_outage_is_unavailable(failure: BaseException) -> None:
    assert database_unavailable(failure)
    assert database_unavailable(caused_by(failure))


@pytest.mark.parametrize("failure", DATABASE_FAILURES_OF_THE_WORK)
def test_a_database_error_of_the_work_is_not_an_outage(failure: BaseException) -> None:
    assert not database_unavailable(failure)
    assert not database_unavailable(caused_by(failure))


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
        socket.gaierror("Name or service not known"),
        *(DATABASE_OUTAGES),
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
        Unroutable("no queue is bound for task.web.w9"),
        FileNotFoundError("/etc/hostwright/missing"),
        PermissionError("denied"),
        *(DATABASE_FAILURES_OF_THE_WORK),
    ],
)
def test_a_failure_of_the_message_or_the_code_is_not(failure: BaseException) -> None:
    assert not is_infrastructure(failure)
