"""``hostwright bench ssl``: automatic SSL for N domains against pebble, and the renewal spread.

On simulated nodes (``driver``), with hostwright on the embedded default (``--layout
embedded``: one ``hostwright up`` process, SQLite, the in-process transport) or every part a
process on RabbitMQ and PostgreSQL (``--layout processes``, as ``bench deploy`` runs), ``domains``
Split services are deployed with no DNS pointing at us, then pointed here; it prints:

- certificates issued per minute: issued / (the last ``Certificate.Issued``, as this run saw
  it, - the first domain pointed), and from the first ordering check on;
- ACME requests per certificate, counted from pebble's log by kind, beside the protocol's
  minimum of 2k + 4 for k names (``acme_requests``: 8 for the two-name certificates here);
- DNS points here → certificate served, p50/p99, in fast mode: from the moment the registry
  delegates the domain to our DNS nodes to the ``Certificate.Installed`` of its certificate
  (per certificate) and of its last one (per domain: green), every served certificate then
  verified over HTTPS by SNI against pebble's root;
- from the renewal planner alone (``renewal_spread``, no processes): the busiest hour's share
  of 10,000 certificates issued in one hour, for 90-, 64- and 45-day lifetimes.

Every domain has two certificates (web, mail), and Let's Encrypt allows one account 300 new
orders in 3 hours, which the rate guard models (domain/rate_limits.py): more than 150 domains
in one run (149 and the warm-up domain) would have orders held by the guard, one every 36 s,
so ``--domains`` stops at 149.

Consumes the command line's settings; emits the report on stdout, and the figures (for tests).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ops.cli_arguments import SSL_BENCH_MAX_DOMAINS
from ops.devtools.bench.scratch import (
    DEFAULT_POSTGRES,
    scratch_postgres,
    scratch_root,
    scratch_vhost,
)
from ops.devtools.bench.ssl.driver import SslRun, measure
from ops.devtools.bench.ssl.renewal_spread import renewal_spread
from ops.devtools.bench.ssl.report import Figures, figures, report
from ops.devtools.pebble import PEBBLE

DEFAULT_AMQP = "amqp://guest:guest@127.0.0.1:5672/"
# 300 new orders per account in 3 hours: two certificates a domain, the warm-up's among them
MAX_DOMAINS = SSL_BENCH_MAX_DOMAINS
LAYOUTS = ("embedded", "processes")
SPREAD_CERTIFICATES = 10_000
SPREAD_LIFETIMES_DAYS = (90, 64, 45)


def run_ssl_bench(
    *,
    domains: int,
    point_rate: float,
    ssl_concurrency: int | None,
    layout: str,
    amqp_url: str | None,
    postgres_url: str | None,
    timeout_s: float = 900.0,
    fast_interval_s: int | None = None,
) -> int:
    measured = measure_ssl(
        domains=domains,
        point_rate=point_rate,
        ssl_concurrency=ssl_concurrency,
        fast_interval_s=fast_interval_s,
        layout=layout,
        amqp_url=amqp_url,
        postgres_url=postgres_url,
        timeout_s=timeout_s,
    )
    if measured is None:
        return 2
    run, found = measured
    report(run, found)
    return 0 if found.served == found.certificates else 1


def measure_ssl(
    *,
    domains: int,
    point_rate: float,
    ssl_concurrency: int | None = None,
    layout: str = "embedded",
    amqp_url: str | None = None,
    postgres_url: str | None = None,
    timeout_s: float = 900.0,
    fast_interval_s: int | None = None,
) -> tuple[SslRun, Figures] | None:
    """The run and its figures; None (the reason printed) when it cannot run. ``layout``:
    ``embedded`` (one ``hostwright up`` on SQLite and the in-process transport) or
    ``processes`` (every part a process, on RabbitMQ and a scratch PostgreSQL database)."""
    if layout not in LAYOUTS:
        print(f"bench ssl: --layout is one of {', '.join(LAYOUTS)}, not {layout!r}")
        return None
    if not 1 <= domains <= MAX_DOMAINS:
        print(
            f"bench ssl: --domains must be 1 to {MAX_DOMAINS}: each domain has two "
            "certificates and one ACME account may place 300 new orders in 3 hours"
        )
        return None
    if not Path(PEBBLE).is_file():
        print(f"bench ssl: {PEBBLE} not found: apt-get install pebble (Debian)")
        return None
    with tempfile.TemporaryDirectory(prefix="hw-bench-ssl-", dir=scratch_root()) as tmp:
        if layout == "embedded":
            database_url = f"sqlite:///{Path(tmp) / 'hostwright.sqlite'}"
            run = measure(
                Path(tmp),
                domains=domains,
                point_rate=point_rate,
                ssl_concurrency=ssl_concurrency,
                fast_interval_s=fast_interval_s,
                amqp_url=None,
                database_url=database_url,
                timeout_s=timeout_s,
            )
        else:
            amqp = amqp_url or os.environ.get("HOSTWRIGHT_AMQP_URL") or DEFAULT_AMQP
            with (
                scratch_postgres(postgres_url or DEFAULT_POSTGRES) as db_url,
                scratch_vhost(amqp) as vhost_url,
            ):
                run = measure(
                    Path(tmp),
                    domains=domains,
                    point_rate=point_rate,
                    ssl_concurrency=ssl_concurrency,
                    fast_interval_s=fast_interval_s,
                    amqp_url=vhost_url,
                    database_url=db_url,
                    timeout_s=timeout_s,
                )
    spreads = [renewal_spread(SPREAD_CERTIFICATES, days) for days in SPREAD_LIFETIMES_DAYS]
    return run, figures(run, spreads)
