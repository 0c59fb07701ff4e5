"""Riding out an outage (ops/store/outage.py): capped back-off, one warning per outage, waiting
only on the database being unavailable; and what counts as unavailable."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from typing import Any, cast

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, OperationalError

from domain.errors import Conflict
from ops.services.pipeline import run_pipeline
from ops.store import outage as outage_module
from ops.store.database import database_unavailable
from ops.store.outage import Backoff, Outage, riding_out
from tests.support.budget import budget


def test_backoff_doubles_from_a_tenth_of_a_second_to_five_and_resets() -> None:
    backoff = Backoff()
    waits = [backoff.next() for _ in range(8)]
    assert waits == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    backoff.reset()
    assert backoff.next() == 0.1


def test_one_warning_when_an_outage_begins_and_one_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=outage_module.__name__)
    outage = Outage("relay")
    for _ in range(20):
        outage.failed(psycopg.OperationalError("connection refused"))
    outage.recovered()
    outage.recovered()  # nothing was down: nothing to say
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2, warnings
    assert "relay: the database is unavailable" in warnings[0]
    assert "relay: the database is back after" in warnings[1]
    assert outage.failures == 20 and not outage.ongoing


@pytest.mark.parametrize(
    "error",
    [
        psycopg.OperationalError("server closed the connection unexpectedly"),
        psycopg.InterfaceError("the connection is closed"),
        OperationalError("couldn't get a connection after 2.00 sec"),
        sqlite3.OperationalError("database is locked"),
    ],
)
def test_what_says_the_database_is_unavailable(error: Exception) -> None:
    assert database_unavailable(error)
    try:
        try:
            raise error
        except Exception as exc:
            raise RuntimeError("while saving") from exc
    except RuntimeError as wrapped:
        assert database_unavailable(wrapped)  # raised from one: the cause counts


@pytest.mark.parametrize(
    "error",
    [
        psycopg.errors.UndefinedTable("no such table"),
        IntegrityError("duplicate key"),
        Conflict("another writer recorded an event first"),
        sqlite3.OperationalError("no such table: x"),
        ValueError("bad input"),
    ],
)
def test_what_does_not(error: Exception) -> None:
    assert not database_unavailable(error)


def test_a_conflict_raised_from_none_does_not_count_its_context() -> None:
    try:
        try:
            raise psycopg.OperationalError("lost")
        except psycopg.OperationalError:
            raise Conflict("busy") from None
    except Conflict as conflict:
        assert not database_unavailable(conflict)


async def test_riding_out_retries_while_the_database_is_unavailable_then_returns() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise OperationalError("couldn't get a connection")
        return "done"

    assert await riding_out(flaky, Outage("test")) == "done"
    assert calls == 3


async def test_riding_out_raises_any_other_error_at_once() -> None:
    calls = 0

    async def wrong() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        await riding_out(wrong, Outage("test"))
    assert calls == 1


async def test_riding_out_ends_only_when_cancelled() -> None:
    async def down() -> None:
        raise OperationalError("down")

    waiting = asyncio.ensure_future(riding_out(down, Outage("test")))
    await asyncio.sleep(0.5)
    assert not waiting.done()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting


async def test_a_pipeline_rebuilding_while_the_database_is_away_stops_when_told() -> None:
    class Unreachable:
        async def rebuild(self) -> None:
            raise OperationalError("couldn't get a connection")

    stop = asyncio.Event()
    running = asyncio.ensure_future(
        run_pipeline(cast(Any, Unreachable()), cast(Any, None), cast(Any, None), stop, prefetch=1)
    )
    await asyncio.sleep(0.5)
    assert not running.done()  # waiting the outage out, not failing
    stop.set()
    await asyncio.wait_for(running, budget(5))
