"""PostgreSQL restarting under a running process: the pools of hostwright's database layer and
of its event store check a connection before handing it out, so the first request after the
database is back does not fail on a connection the restart killed. "Restart" is a TCP proxy in
front of PostgreSQL that the test closes (every connection cut) and reopens.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from ops.store.database import Database, database_unavailable
from ops.store.event_store import EventStore
from tests.support.tcp_proxy import TcpProxy


@pytest.fixture
async def proxied(fresh_postgres_url: str) -> AsyncIterator[tuple[TcpProxy, str]]:
    parts = urlsplit(fresh_postgres_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    url = parts._replace(netloc=f"{parts.username}@{proxy.url_host}").geturl()
    try:
        yield proxy, url
    finally:
        proxy.release()
        await proxy.stop()


def _one(db: Database) -> int:
    with db.transaction() as cur:
        cur.execute("SELECT 1")
        return int(cur.fetchone()[0])


async def _restart(proxy: TcpProxy) -> None:
    await proxy.stop()  # every pooled connection is cut, as in a restart of PostgreSQL
    await asyncio.sleep(0.2)
    await proxy.start()


async def test_the_first_transaction_after_a_database_restart_succeeds(
    proxied: tuple[TcpProxy, str],
) -> None:
    proxy, url = proxied
    db = Database(url)
    try:
        assert await asyncio.to_thread(_one, db) == 1  # a connection now sits in the pool
        await _restart(proxy)
        assert await asyncio.to_thread(_one, db) == 1
    finally:
        db.close()


async def test_the_event_stores_first_read_after_a_database_restart_succeeds(
    proxied: tuple[TcpProxy, str],
) -> None:
    """(eventsourcing also tries a failed read again, up to 10 times.)"""
    proxy, url = proxied
    store = await asyncio.to_thread(EventStore, url)
    try:
        assert await asyncio.to_thread(store.max_notification_id) == 0
        await _restart(proxy)
        assert await asyncio.to_thread(store.max_notification_id) == 0
    finally:
        store.close()


async def test_while_the_database_is_down_errors_say_it_is_unavailable_and_it_resumes_promptly(
    proxied: tuple[TcpProxy, str],
) -> None:
    proxy, url = proxied
    db = Database(url)
    store = await asyncio.to_thread(EventStore, url)
    try:
        await asyncio.to_thread(_one, db)
        await asyncio.to_thread(store.max_notification_id)
        await proxy.stop()
        with pytest.raises(Exception) as failure:
            await asyncio.to_thread(_one, db)
        assert database_unavailable(failure.value), repr(failure.value)
        await asyncio.sleep(2)
        await proxy.start()
        loop = asyncio.get_running_loop()
        back = loop.time()
        # each read tries until it works; it must work well within a pool wait after the return
        for call in (lambda: _one(db), store.max_notification_id):
            while True:
                try:
                    await asyncio.to_thread(call)
                    break
                except Exception as exc:
                    assert database_unavailable(exc), repr(exc)
                    assert loop.time() - back < 5, "the pool did not reconnect promptly"
                    await asyncio.sleep(0.1)
    finally:
        store.close()
        db.close()
