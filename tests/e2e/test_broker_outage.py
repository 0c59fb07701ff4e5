"""A broker outage in the middle of a deploy, end to end: every hostwright part its own
process, RabbitMQ reached only through a TCP proxy the test cuts (tests/support/tcp_proxy.py).

200 split services are ordered; the broker goes away for 5 s once some are active, and for
60 s (the default lease) once most are. Afterwards every service is ``active``, no
state-changing command hit the same thing twice (each node's command record), no process
exited, nothing sits in any ``.dead`` queue, no attempt failed because its lease ran out, and
the work left when the broker came back the second time finished well within one lease: no
lease was waited out.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

from domain.task import LEASE_EXPIRED
from ops.devtools.simnode import Faults
from ops.messaging.amqp_transport import AmqpTransport
from ops.messaging.topology import QUEUES
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


def _count_active(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM hw_services WHERE status = 'active'").fetchone()
    return int(row[0]) if row else 0


async def active(system: Deployment) -> int:
    return await asyncio.to_thread(_count_active, system.database_url)


async def cut(proxy: TcpProxy, seconds: float) -> float:
    """The broker away for ``seconds``; the monotonic time it came back."""
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


async def test_broker_cut_for_5_s_and_for_60_s_mid_deploy_loses_nothing_and_waits_out_no_lease(
    tmp_path: Path, amqp_url: str, exchange_name: str, fresh_postgres_url: str
) -> None:
    broker = urlsplit(amqp_url)
    proxy = TcpProxy(broker.hostname or "127.0.0.1", broker.port or 5672)
    proxied = amqp_url.replace(f"{broker.hostname}:{broker.port}", f"127.0.0.1:{proxy.port}")
    await proxy.start()
    settings = {"HOSTWRIGHT_LEASE_S": str(int(LEASE_S)), "HOSTWRIGHT_HEARTBEAT_S": "2"}
    try:
        async with deployment(
            tmp_path,
            proxied,
            exchange_name,
            fresh_postgres_url,
            SPLIT_NODES,
            settings=settings,
            max_concurrency=8,
        ) as system:
            try:
                for node in system.nodes.values():
                    # steps take a moment, so some are always out on a node when the cut comes
                    node.set_faults(Faults(latency_ms=20))
                for service_id in SERVICES:
                    await order_split(system, service_id)

                async def some_active(count: int) -> bool:
                    return await active(system) >= count

                await wait_until(lambda: some_active(30), 120, "30 services active", system.logs)
                await cut(proxy, 5)
                # late enough that what is left takes a fraction of a lease without an outage
                await wait_until(lambda: some_active(140), 180, "140 services active", system.logs)
                back = await cut(proxy, LEASE_S)
                left = len(SERVICES) - await active(system)
                assert left > 0, "the deploy ended before the broker came back: nothing shown"
                print(f"{left} services left when the broker came back")

                # Work left when the broker came back finishes well within one lease.
                everything = len(SERVICES)
                await wait_until(
                    lambda: some_active(everything),
                    LEASE_S * 0.75,
                    f"the {left} services left when the broker came back",
                    system.logs,
                )
                took = time.monotonic() - back
                await system.wait_status(SERVICES, "active", 30)  # as the API shows them
                await settle(system)
            finally:
                if not proxy.running:
                    await proxy.start()  # the harness cleans its queues up through the proxy
            assert_no_double_apply(system)
            exited = {
                part: p.proc.returncode
                for part, p in system.processes.items()
                if p.proc is not None and p.proc.poll() is not None
            }
            assert not exited, f"processes exited: {exited}\n{system.logs()}"
            dead = {q: n for q, n in (await dead_letters(amqp_url, exchange_name)).items() if n}
            assert not dead, f"dead letters: {dead}\n{system.logs()}"
            history = await task_history(system)
            expired = {
                f"{r.service_id}/{r.step}": [f.error for f in r.of("Failed")]
                for r in history.values()
                if any(str(f.error).endswith(LEASE_EXPIRED) for f in r.of("Failed"))
            }
            assert not expired, f"attempts lost to an outage's lease expiry: {dumps(expired)}"
            print(f"the last {left} services took {took:.1f}s after the broker came back")
    finally:
        await proxy.stop()
