"""One pipeline leads, others stand by: on PostgreSQL (advisory lock) and SQLite (flock)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from ops.bootstrap import System
from ops.runtime.components import serve_pipeline
from ops.services.pipeline_lead import CHECK_S, STANDBY_S, LeadLost, PipelineLead
from ops.settings import Settings


async def _standing_by(lead: PipelineLead, stop: asyncio.Event) -> asyncio.Future[bool]:
    """``lead.acquire`` running, checked to be still waiting after a few tries."""
    waiting = asyncio.ensure_future(lead.acquire(stop))
    await asyncio.sleep(STANDBY_S * 2.5)
    assert not waiting.done(), "a second pipeline took the lead while the first held it"
    return waiting


async def test_one_lead_on_either_database_the_next_takes_over_on_release(
    database_url: str,
) -> None:
    stop = asyncio.Event()
    first, second = PipelineLead(database_url), PipelineLead(database_url)
    assert await first.acquire(stop)
    assert not first.took_over  # nobody led before it: no need to wait for anyone to halt
    waiting = await _standing_by(second, stop)
    await first.release()
    assert await asyncio.wait_for(waiting, STANDBY_S * 3)
    assert second.took_over
    third = PipelineLead(database_url)
    stopped = await _standing_by(third, stop)
    stop.set()
    assert await asyncio.wait_for(stopped, STANDBY_S * 3) is False  # stopped while standing by
    await second.release()
    await third.release()


async def test_a_lead_whose_session_ends_is_lost_and_taken_over(fresh_postgres_url: str) -> None:
    stop = asyncio.Event()
    leader, standby = (
        PipelineLead(fresh_postgres_url),
        PipelineLead(fresh_postgres_url),
    )
    assert await leader.acquire(stop)
    waiting = await _standing_by(standby, stop)
    with psycopg.connect(fresh_postgres_url, autocommit=True) as admin:
        ended = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks "
            "WHERE locktype = 'advisory' AND granted AND database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())"
        ).fetchall()
    assert ended == [(True,)]
    await asyncio.wait_for(leader.lost.wait(), CHECK_S * 3)
    assert await asyncio.wait_for(waiting, STANDBY_S * 3)
    assert not standby.lost.is_set()
    await leader.release()
    await standby.release()


async def test_a_pipeline_that_loses_its_lead_stops_and_says_so(fresh_postgres_url: str) -> None:
    """serve_pipeline halts the pipeline and raises LeadLost (the CLI exits 1 on it)."""
    system = System(Settings(database_url=fresh_postgres_url))
    stop = asyncio.Event()
    piloting = asyncio.ensure_future(serve_pipeline(system, stop))
    try:
        with psycopg.connect(fresh_postgres_url, autocommit=True) as admin:
            for _ in range(100):
                held = admin.execute(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND database = (SELECT oid FROM pg_database WHERE datname = %s)",
                    (urlsplit(fresh_postgres_url).path.lstrip("/"),),
                ).fetchall()
                if held:
                    break
                await asyncio.sleep(0.1)
            assert held, "the pipeline never took the lead"
            admin.execute("SELECT pg_terminate_backend(%s)", (held[0][0],))
        with pytest.raises(LeadLost, match="lost its lead"):
            await asyncio.wait_for(piloting, CHECK_S * 4)
        assert not stop.is_set()  # it stopped of itself, not because it was told to
    finally:
        stop.set()
        await asyncio.gather(piloting, return_exceptions=True)
        await system.close()


async def test_a_pipeline_on_a_new_sqlite_folder_leads(tmp_path: Path) -> None:
    lead = PipelineLead(f"sqlite:///{tmp_path / 'new' / 'folder' / 'store.sqlite'}")
    assert await asyncio.wait_for(lead.acquire(asyncio.Event()), 5)
    await lead.release()
