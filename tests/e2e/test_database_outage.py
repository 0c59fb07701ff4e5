"""PostgreSQL going away under a running deployment, every part its own process, reached only
through a TCP proxy the test cuts (every connection closed, new ones refused) or holds
(connections open, nothing forwarded: a database that hangs).

- A 200-service deploy with the database cut for 5 s and, later, for 60 s: every service ends
  ``active``, no state-changing command hit the same thing twice (the nodes' command records),
  no process exited, and nothing was dead-lettered.
- A pipeline whose database hangs right after it took the lead still stops on SIGTERM within
  its grace period.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from ops.messaging.amqp_transport import AmqpTransport
from ops.messaging.topology import QUEUES
from ops.runtime.stopping import EXIT_MARGIN_S, STOP_GRACE_S
from tests.support.convergence import settle
from tests.support.deployment import Deployment, wait_until
from tests.support.processes import HostwrightProcess
from tests.support.resilience import SPLIT_NODES, assert_no_double_apply, deployment, order_split
from tests.support.tcp_proxy import TcpProxy

SERVICES = list(range(1001, 1201))


@pytest.fixture
async def database_proxy(fresh_postgres_url: str) -> AsyncIterator[tuple[TcpProxy, str]]:
    """A proxy in front of the test's database, and the database's URL through it."""
    parts = urlsplit(fresh_postgres_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    user = f"{parts.username}@" if parts.username else ""
    try:
        yield proxy, parts._replace(netloc=f"{user}{proxy.url_host}").geturl()
    finally:
        proxy.release()
        await proxy.stop()


def task_events(direct_url: str, kind: str) -> int:
    """Task.<kind> events recorded so far (read past the proxy)."""
    with psycopg.connect(direct_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM hostwright_events WHERE topic LIKE %s", (f"%:Task.{kind}",)
        ).fetchone()
        return int(row[0]) if row else 0


def succeeded_tasks(direct_url: str) -> int:
    return task_events(direct_url, "Succeeded")


async def _progressed(direct_url: str, beyond: int, what: str, system: Deployment) -> int:
    async def done() -> bool:
        return await asyncio.to_thread(succeeded_tasks, direct_url) > beyond

    await wait_until(done, 180, what, system.logs)
    return await asyncio.to_thread(succeeded_tasks, direct_url)


async def _cut(proxy: TcpProxy, seconds: float) -> None:
    await proxy.stop()
    await asyncio.sleep(seconds)
    await proxy.start()


async def _dead_letters(system: Deployment) -> dict[str, int]:
    transport = AmqpTransport(system.amqp_url, system.exchange)
    await transport.connect()
    try:
        depths = {f"{q}.dead": await transport.queue_depth(f"{q}.dead") for q in QUEUES}
    finally:
        await transport.close()
    return {queue: depth for queue, depth in depths.items() if depth}


async def test_a_200_service_deploy_rides_out_a_5s_and_a_60s_database_cut(
    tmp_path: Path,
    amqp_url: str,
    exchange_name: str,
    fresh_postgres_url: str,
    database_proxy: tuple[TcpProxy, str],
) -> None:
    proxy, proxied_url = database_proxy
    async with deployment(
        tmp_path, amqp_url, exchange_name, proxied_url, SPLIT_NODES, max_concurrency=8
    ) as system:
        for start in range(0, len(SERVICES), 25):
            await asyncio.gather(*(order_split(system, i) for i in SERVICES[start : start + 25]))
        seen = await _progressed(fresh_postgres_url, 50, "the deploy under way", system)
        await _cut(proxy, 5)
        seen = await _progressed(fresh_postgres_url, seen + 200, "progress after 5 s", system)
        planned = await asyncio.to_thread(task_events, fresh_postgres_url, "Planned")
        assert seen < planned, "the deploy was over before the long cut: it proves nothing"
        await _cut(proxy, 60)
        await system.wait_status(SERVICES, "active", 300)
        await settle(system)

        exited = {
            part: p.proc.returncode
            for part, p in system.processes.items()
            if p.proc and p.proc.poll() is not None
        }
        assert not exited, f"processes exited: {exited}\n{system.logs()}"
        assert_no_double_apply(system)
        assert await _dead_letters(system) == {}, system.logs()


async def test_a_pipeline_whose_database_hangs_stops_on_sigterm_within_its_grace(
    tmp_path: Path,
    amqp_url: str,
    exchange_name: str,
    database_proxy: tuple[TcpProxy, str],
) -> None:
    proxy, proxied_url = database_proxy
    env = {
        "HOSTWRIGHT_DATABASE_URL": proxied_url,
        "HOSTWRIGHT_AMQP_URL": amqp_url,
        "HOSTWRIGHT_EXCHANGE": exchange_name,
    }
    try:
        with HostwrightProcess(["serve", "pipeline"], env, tmp_path, "pipeline") as pipeline:
            leading = time.monotonic() + 60
            while "pipeline: leading" not in pipeline.log():
                assert time.monotonic() < leading, pipeline.log()
                assert pipeline.proc is not None and pipeline.proc.poll() is None, pipeline.log()
                await asyncio.sleep(0.01)
            proxy.hold()  # from here on every database call waits forever
            await asyncio.sleep(1)
            assert pipeline.proc is not None and pipeline.proc.poll() is None, pipeline.log()
            pipeline.proc.terminate()
            deadline = time.monotonic() + 3 * (STOP_GRACE_S + EXIT_MARGIN_S)
            while pipeline.proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert pipeline.proc.poll() is not None, (
                "the pipeline did not stop on SIGTERM\n" + pipeline.log()
            )
    finally:
        transport = AmqpTransport(amqp_url, exchange_name)
        await transport.connect()
        for queue in QUEUES:
            await transport.delete_queue(queue)
            await transport.delete_queue(f"{queue}.dead")
        await transport.delete_exchange()
        await transport.close()
