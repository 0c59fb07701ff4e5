"""``hostwright bench deploy``: Split orders to active services, beside the broker's own floor.

For each ``--latency-ms`` value (added by the simulated nodes to every command), all in one run:
  0. the floors: RabbitMQ's own publish→consume round trip (one message at a time: p50/p99;
     pipelined confirms: msgs/s) and PostgreSQL's single-event save rate (eventsourcing);
  1. a burst: ``--services`` Split orders offered at ``--burst-rate``/s; Split services active
     per minute = services / (last Service.Activated - first Service.Ordered);
  2. paced: ``--paced`` orders at ``--paced-rate``/s, so latency is measured without a queue
     of hundreds of services in front of it;
  for both, order → first step started (the service's first Task.Dispatched timestamp minus
  its Service.Ordered timestamp) and order → active (Service.Activated), p50/p99, read from
  the store. During the burst: CPU seconds per process, PostgreSQL commits and events per
  service; then, unmeasured, a burst of half as many orders with the pipeline process
  profiled by py-spy (when installed: sampling slows the process it samples).

Consumes the command line's settings; emits the report on stdout. The parts: ``floors``,
``driver`` (the processes and the orders), ``timing`` (latencies read from the store),
``costs`` (CPU, commits, node commands), ``profile`` (py-spy) and ``report``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ops.devtools.bench.deploy.driver import Run, measure
from ops.devtools.bench.deploy.floors import measure_floors
from ops.devtools.bench.deploy.report import report
from ops.devtools.bench.scratch import (
    DEFAULT_POSTGRES,
    scratch_postgres,
    scratch_root,
    scratch_vhost,
)

DEFAULT_AMQP = "amqp://guest:guest@127.0.0.1:5672/"


def run_deploy_bench(
    *,
    services: int,
    latencies: tuple[int, ...],
    amqp_url: str | None,
    postgres_url: str | None,
    burst_rate: float,
    paced: int,
    paced_rate: float,
    node_concurrency: int,
    profile: bool,
) -> int:
    amqp = amqp_url or os.environ.get("HOSTWRIGHT_AMQP_URL") or DEFAULT_AMQP
    server = postgres_url or DEFAULT_POSTGRES
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="hw-bench-deploy-", dir=scratch_root()) as tmp:
        floor = measure_floors(Path(tmp), amqp, server)
        for latency in latencies:
            # a fresh database and virtual host each: queue names are global in a vhost
            with scratch_postgres(server) as db_url, scratch_vhost(amqp) as vhost_url:
                run = measure(
                    Path(tmp) / f"lat{latency}",
                    latency_ms=latency,
                    services=services,
                    amqp_url=vhost_url,
                    database_url=db_url,
                    burst_rate=burst_rate,
                    paced=paced,
                    paced_rate=paced_rate,
                    node_concurrency=node_concurrency,
                    profile=profile,
                )
            runs.append(run)
    report(floor, runs, node_concurrency)
    return 0
