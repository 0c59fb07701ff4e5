"""PostgreSQL going away under a running deployment, every part its own process, reached only
through a TCP proxy the test cuts (every connection closed, new ones refused) or holds
(connections open, nothing forwarded: a database that hangs).

(The 200-service deploy through a 5 s and a 60 s database cut is in test_outages.py, beside the
broker's.)

- A pipeline whose database hangs right after it took the lead still stops on SIGTERM within
  its grace period.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from ops.messaging.amqp_transport import AmqpTransport
from ops.messaging.topology import QUEUES
from ops.runtime.stopping import EXIT_MARGIN_S
from tests.support.processes import HostwrightProcess
from tests.support.tcp_proxy import TcpProxy

GRACE_S = 2.0  # HOSTWRIGHT_STOP_GRACE_S: the test waits no longer than it must


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
        "HOSTWRIGHT_STOP_GRACE_S": str(GRACE_S),
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
            deadline = time.monotonic() + 3 * (GRACE_S + EXIT_MARGIN_S)
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
