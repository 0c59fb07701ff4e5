"""PostgreSQL and RabbitMQ going away under a running deployment, end to end: every hostwright
part its own process, the database and the broker each reached only through a TCP proxy the
test cuts (every connection closed, new ones refused; tests/support/tcp_proxy.py).

200 split services are ordered. Once the deploy is under way the database is cut for 5 s, then
the broker for 5 s; later the database for 60 s (the default lease), and 30 s into that cut the
broker for 60 s too: the database comes back while the broker is still away, and the broker
30 s after that. (Staggered, so the two long cuts cost the suite 90 s, not 120, while each
part still sees each outage alone for half a minute.) Afterwards every service is ``active``,
no state-changing command hit the same thing twice (each node's command record), no process
exited, nothing sits in any ``.dead`` queue, no attempt failed on a lease running out, and every
attempt out when the broker came back ended within a quarter lease: nobody waited a lease out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

from domain.task import LEASE_EXPIRED
from ops.devtools.simnode import Faults
from ops.messaging.amqp_transport import AmqpTransport
from ops.messaging.topology import QUEUES
from tests.support.budget import budget
from tests.support.convergence import settle
from tests.support.deployment import Deployment, dumps, wait_until
from tests.support.resilience import (
    SPLIT_NODES,
    assert_no_double_apply,
    deployment,
    order_split,
    task_history,
)
from tests.support.tcp_proxy import TcpProxy

LEASE_S = 60.0  # the default: what an outage must not make anyone wait out
SERVICES = list(range(1001, 1201))
RESUMED_S = LEASE_S / 4  # reconnecting, the queued messages, the steps and the view's update
SETTINGS = {"HOSTWRIGHT_LEASE_S": str(int(LEASE_S)), "HOSTWRIGHT_HEARTBEAT_S": "2"}


async def test_a_200_service_deploy_rides_out_5s_and_60s_cuts_of_the_database_and_the_broker(
    tmp_path: Path, amqp_url: str, exchange_name: str, fresh_postgres_url: str
) -> None:
    broker = urlsplit(amqp_url)
    async with proxy_to(fresh_postgres_url) as database, proxy_to(amqp_url) as mq:
        proxied_db = _through(fresh_postgres_url, database)
        proxied_mq = amqp_url.replace(f"{broker.hostname}:{broker.port}", mq.url_host)
        async with deployment(
            tmp_path,
            proxied_mq,
            exchange_name,
            proxied_db,
            SPLIT_NODES,
            settings=SETTINGS,
            max_concurrency=8,
        ) as system:
            try:
                await order_all(system)
                direct = fresh_postgres_url

                async def reached(count: int) -> None:
                    await wait_until(
                        lambda: some_active(direct, count), 240, f"{count} active", system.logs
                    )

                await reached(20)
                await cut(database, 5)
                await reached(40)
                await cut(mq, 5)
                await reached(130)
                long_cuts = asyncio.gather(cut(database, LEASE_S), _later(LEASE_S / 2, mq))
                _, back = await long_cuts
                await the_rest_finishes_after(system, direct, back, "the broker")
                await system.wait_status(SERVICES, "active", 60)  # as the API shows them
                await settle(system)
            finally:
                for proxy in (database, mq):
                    if not proxy.running:
                        await proxy.start()  # the harness cleans up through the proxies
            await nothing_lost_or_doubled(system, amqp_url)
            history = await task_history(system)
            expired = {
                f"{r.service_id}/{r.step}": [f.error for f in r.of("Failed")]
                for r in history.values()
                if any(str(f.error).endswith(LEASE_EXPIRED) for f in r.of("Failed"))
            }
            assert not expired, f"attempts lost to an outage's lease expiry: {dumps(expired)}"


async def _later(delay: float, proxy: TcpProxy) -> float:
    await asyncio.sleep(delay)
    return await cut(proxy, LEASE_S)


async def order_all(system: Deployment) -> None:
    for node in system.nodes.values():
        # steps take a moment, so some are always out on a node when a cut comes
        node.set_faults(Faults(latency_ms=20))
    for start in range(0, len(SERVICES), 25):
        await asyncio.gather(*(order_split(system, i) for i in SERVICES[start : start + 25]))


async def the_rest_finishes_after(
    system: Deployment, direct_url: str, back: float, what: str
) -> None:
    left = len(SERVICES) - await active(direct_url)
    assert left > 0, f"the deploy ended before {what} came back: the long cut proved nothing"
    # Work resumes within seconds, not after a lease: every attempt that was out when it came
    # back (it could end only through the broker) has ended well before a lease could run
    # out (the time is printed)
    out = await asyncio.to_thread(_dispatched, direct_url, None)
    assert out, f"no attempt was out when {what} came back: the long cut proved nothing"
    await wait_until(
        lambda: nothing_still_out(direct_url, out),
        budget(RESUMED_S),
        f"the {len(out)} attempts out when {what} came back",
        system.logs,
    )
    resumed = time.monotonic() - back
    await wait_until(
        lambda: some_active(direct_url, len(SERVICES)),
        # Not a speed test: what must not happen is an attempt lost to a lease waited out,
        # asserted apart (LEASE_EXPIRED), and a service lost or a step applied twice. The
        # rest's time is printed; on this 2-core machine it ranged from 10 s to over a minute
        # (the code of the stop before this one took over 60 s as well), so it is bounded
        # only against a deploy that never finishes.
        budget(3 * LEASE_S),
        f"the {left} services left when {what} came back",
        system.logs,
    )
    print(
        f"{what}: {left} services left; the {len(out)} attempts out then ended "
        f"{resumed:.1f}s after it was back, "
        f"all done {time.monotonic() - back:.1f}s after"
    )


async def nothing_lost_or_doubled(system: Deployment, amqp_url: str) -> None:
    exited = {
        part: p.proc.returncode
        for part, p in system.processes.items()
        if p.proc is not None and p.proc.poll() is not None
    }
    assert not exited, f"processes exited: {exited}\n{system.logs()}"
    assert_no_double_apply(system)
    dead = {q: n for q, n in (await dead_letters(amqp_url, system.exchange)).items() if n}
    assert not dead, f"dead letters: {dead}\n{system.logs()}"


def _count_active(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM hw_services WHERE status = 'active'").fetchone()
    return int(row[0]) if row else 0


def _dispatched(database_url: str, among: list[str] | None) -> list[str]:
    """The tasks the task view shows dispatched (``among`` these, when given)."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT task_id FROM hw_task_queue WHERE state = 'dispatched' "
            "AND (%s::text[] IS NULL OR task_id = ANY(%s::text[]))",
            (among, among),
        ).fetchall()
    return [str(row[0]) for row in rows]


async def nothing_still_out(direct_url: str, out: list[str]) -> bool:
    return not await asyncio.to_thread(_dispatched, direct_url, out)


async def active(direct_url: str) -> int:
    """Active services as the view has them, read past any proxy."""
    return await asyncio.to_thread(_count_active, direct_url)


async def some_active(direct_url: str, count: int) -> bool:
    return await active(direct_url) >= count


async def cut(proxy: TcpProxy, seconds: float) -> float:
    """The proxied service away for ``seconds``; the monotonic time it came back."""
    await proxy.stop()
    await asyncio.sleep(seconds)
    await proxy.start()
    return time.monotonic()


async def dead_letters(amqp_url: str, exchange: str) -> dict[str, int]:
    transport = AmqpTransport(amqp_url, exchange)
    await transport.connect()
    try:
        return {f"{q}.dead": await transport.queue_depth(f"{q}.dead") for q in QUEUES}
    finally:
        await transport.close()


@asynccontextmanager
async def proxy_to(url: str) -> AsyncIterator[TcpProxy]:
    parts = urlsplit(url)
    default_port = 5432 if parts.scheme.startswith("postgres") else 5672
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or default_port)
    await proxy.start()
    try:
        yield proxy
    finally:
        proxy.release()
        await proxy.stop()


def _through(url: str, proxy: TcpProxy) -> str:
    parts = urlsplit(url)
    user = f"{parts.username}@" if parts.username else ""
    return parts._replace(netloc=f"{user}{proxy.url_host}").geturl()
