"""PostgreSQL restarting under a running process: the pools of hostwright's database layer and
of its event store check a connection before handing it out, so the first request after the
database is back does not fail on a connection the restart killed; the relay waits an outage
out and relays what was recorded meanwhile. "Restart" is a TCP proxy in front of PostgreSQL
that the test closes (every connection cut) and reopens.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
from psycopg_pool import ConnectionPool

from ops.messaging.inprocess_transport import InProcessTransport
from ops.messaging.outbox_relay import OutboxRelay
from ops.store.database import Database, database_unavailable
from ops.store.event_store import EventStore
from ops.store.positions import PositionStore
from tests.support.budget import budget
from tests.support.outbox import record_orders
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


async def test_connections_a_restart_cut_are_replaced_at_once_and_sound_ones_cost_no_round_trip(
    proxied: tuple[TcpProxy, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Asked of the pools themselves (the event store's and the database layer's): the work
    above them tries failed statements again, which would hide a dead connection handed out.
    After the cut, a sound connection comes within the pool's wait of 2 s: finding the dead
    idle ones one by one took 3 s of psycopg_pool's back-off."""
    proxy, url = proxied
    pinged: list[object] = []
    ping = ConnectionPool.check_connection
    monkeypatch.setattr(
        ConnectionPool, "check_connection", lambda conn: (pinged.append(conn), ping(conn))
    )
    store, db = await asyncio.to_thread(EventStore, url), Database(url)
    pools = [store.recorder.datastore.pool, db._postgres_pool()]  # type: ignore[attr-defined]

    def use_each(times: int) -> None:
        for pool in pools:
            for _ in range(times):
                with pool.connection() as conn:
                    assert conn.execute("SELECT 1 AS one").fetchone() in ((1,), {"one": 1})

    try:
        await asyncio.to_thread(use_each, 5)
        assert pinged == []  # idle and sound: handed out without asking the server
        await _restart(proxy)
        await asyncio.to_thread(use_each, 1)  # the first use after the cut already works
        assert pinged  # the cut connections were looked at, and replaced
    finally:
        db.close()
        store.close()


def test_the_check_works_for_a_connection_past_selects_1024_descriptors(
    fresh_postgres_url: str,
) -> None:
    """A busy gateway holds more than 1024 descriptors; select() refuses those (and a
    refused check would throw every pooled connection away)."""
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    db = Database(fresh_postgres_url)
    try:
        assert _one(db) == 1
        with db._postgres_pool().connection() as conn:  # type: ignore[attr-defined]
            assert conn.fileno() > 1024
        assert _one(db) == 1
    finally:
        db.close()
        for fd in held:
            os.close(fd)


async def test_after_a_long_outage_the_pool_reconnects_as_soon_as_the_database_is_back(
    proxied: tuple[TcpProxy, str],
) -> None:
    """While PostgreSQL is away a part keeps asking (as the relay does, with back-off); each
    failure says the database is unavailable. psycopg_pool's own reconnect attempts back off
    to 16 s and more apart; the pool must not make the part wait for them once it is back."""
    proxy, url = proxied
    db = Database(url)
    loop = asyncio.get_running_loop()
    try:
        await asyncio.to_thread(_one, db)
        await proxy.stop()
        down = loop.time()
        while loop.time() - down < 20:
            with pytest.raises(Exception) as failure:
                await asyncio.to_thread(_one, db)
            assert database_unavailable(failure.value), repr(failure.value)
            await asyncio.sleep(0.5)
        await proxy.start()
        back = loop.time()
        while True:
            try:
                await asyncio.to_thread(_one, db)
                break
            except Exception as exc:
                assert database_unavailable(exc), repr(exc)
                # psycopg_pool's own attempts are 16 s and more apart by now
                assert loop.time() - back < min(budget(5), 12), (
                    "the pool did not reconnect promptly"
                )
                await asyncio.sleep(0.5)
    finally:
        db.close()


async def _depth(transport: InProcessTransport, queue: str, depth: int, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while await transport.queue_depth(queue) != depth:
        assert loop.time() < deadline, f"{what}: {queue} never reached {depth}"
        await asyncio.sleep(0.05)


async def test_the_relay_rides_out_a_database_cut_and_relays_what_was_recorded_meanwhile(
    proxied: tuple[TcpProxy, str], fresh_postgres_url: str, exchange_name: str
) -> None:
    proxy, url = proxied
    direct = await asyncio.to_thread(EventStore, fresh_postgres_url)  # the gateway's, say
    store, db = await asyncio.to_thread(EventStore, url), Database(url)
    transport = InProcessTransport(exchange_name)
    await transport.connect()
    await transport.declare_queue("collector", ["Service.Ordered"])
    stop = asyncio.Event()
    relaying = asyncio.ensure_future(OutboxRelay(store, PositionStore(db), transport).run(stop))
    try:
        await asyncio.to_thread(record_orders, direct, 3)
        await _depth(transport, "collector", 3, "before the cut")
        await _restart(proxy)  # a restart: every pooled connection is dead
        await asyncio.to_thread(record_orders, direct, 3, 4)
        await _depth(transport, "collector", 6, "after a restart")
        await proxy.stop()
        await asyncio.to_thread(record_orders, direct, 3, 7)
        await asyncio.sleep(3)
        await proxy.start()
        await _depth(transport, "collector", 9, "after a 3 s cut")
        await asyncio.to_thread(record_orders, direct, 1, 10)
        await _depth(transport, "collector", 10, "after that")
        assert not relaying.done(), relaying
    finally:
        stop.set()
        await asyncio.gather(relaying, return_exceptions=True)
        await transport.close()
        store.close()
        direct.close()
        db.close()
