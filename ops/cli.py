"""``hostwright``: the command line. Each subcommand builds a System from Settings and runs.

hostwright up                       every part in one process
hostwright serve gateway|relay|projections|pipeline|scheduler
hostwright serve handler web|mail|dns|ssl
hostwright replay                   exit 0 when every view equals a rebuild from event 0
hostwright rotate-key               re-seal live passwords and keys under HOSTWRIGHT_SECRET_KEY
hostwright backfill-claims          live services ordered before names were claimed claim them
hostwright dead-letters             each dead-letter queue and how many messages it holds
hostwright redrive [QUEUE]          move dead letters back to their queue (every queue's by default)
hostwright demo [--listen H:P] [--data DIR]
hostwright simnode --roles web,mail,dns --listen H:P --data DIR
hostwright token new --name NAME --scope read|services|staff [--scope …]
hostwright bench intake [...]
hostwright bench deploy [--services N] [--latency-ms 0,50] [...]
hostwright bench growth [--services 10000] [--heartbeats 3] [--database-url URL]
hostwright bench replay [--services 1000] [--stores sqlite,postgresql] [--postgres-url URL]
hostwright bench usage [--services 10000] [--servers 10] [--requests 200] [--database-url URL]
hostwright bench screens [--services 10000] [--pages 200] [--crowd 50] [--events 60] […]
hostwright bench ssl [--domains 149] [--point-rate 0] [--ssl-concurrency 8] [--layout …] […]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence

from ops.bootstrap import System
from ops.cli_arguments import (
    bench_stores,
    listen_address,
    milliseconds_list,
    non_negative_rate,
    ssl_domain_count,
    worker_count,
)
from ops.messaging.topology import ROLES, SSL_ROLE, USAGE_ROLE
from ops.messaging.transport import Transport
from ops.runtime import event_loop
from ops.runtime.components import COMPONENTS, serve_all
from ops.runtime.log_setup import configure_from_settings
from ops.runtime.readiness import checked_system
from ops.runtime.stopping import install_stop_signals, within_grace
from ops.settings import Settings, SettingsError

log = logging.getLogger("hostwright")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["simnode"]:
        from ops.devtools.simnode.main import run_simnode

        return run_simnode(argv[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    if argv[:1] == ["bench"]:
        _stop_on_sigterm()
    configure_from_settings()  # HOSTWRIGHT_LOG_FORMAT: text or json (ops/runtime/log_setup.py)
    try:
        code: int = args.run(args)
    except SettingsError as exc:
        for problem in str(exc).splitlines():
            print(f"hostwright: {problem}", file=sys.stderr)
        return 2
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hostwright", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="run every part in one process")
    up.set_defaults(run=_run_up)

    serve = sub.add_parser("serve", help="run one part (scale out by running more)")
    serve.add_argument("component", choices=sorted({name.split(".")[0] for name in COMPONENTS}))
    serve.add_argument(
        "role",
        nargs="?",
        choices=(*ROLES, SSL_ROLE, USAGE_ROLE),
        help="for `serve handler`: the role",
    )
    serve.set_defaults(run=_run_serve)

    replay = sub.add_parser("replay", help="compare every view with a rebuild from event 0")
    replay.add_argument(
        "--workers",
        type=worker_count,
        default=None,
        help="processes that fold the views (default: one per core; 1 on a busy machine, "
        "where workers only compete for the cores)",
    )
    replay.set_defaults(run=_run_replay)

    rotate = sub.add_parser(
        "rotate-key",
        help="re-seal every live password and private key under HOSTWRIGHT_SECRET_KEY "
        "(exit 0 when HOSTWRIGHT_OLD_SECRET_KEYS can be emptied)",
    )
    rotate.set_defaults(run=_run_rotate_key)

    backfill = sub.add_parser(
        "backfill-claims",
        help="make services ordered before this release claim their names (run once on upgrade)",
    )
    backfill.set_defaults(run=_run_backfill_claims)

    dead = sub.add_parser("dead-letters", help="count the messages in each dead-letter queue")
    dead.set_defaults(run=_run_dead_letters)

    redrive = sub.add_parser(
        "redrive", help="move dead-lettered messages back to their queue (RabbitMQ)"
    )
    redrive.add_argument(
        "queue", nargs="?", help="e.g. pipeline or pipeline.dead; every queue when left out"
    )
    redrive.set_defaults(run=_run_redrive)

    demo = sub.add_parser("demo", help="run everything on the embedded default with sample data")
    demo.add_argument("--listen", default="127.0.0.1:8080", type=listen_address)
    demo.add_argument("--data", default="demo-data")
    demo.set_defaults(run=_run_demo)

    # `simnode` takes its own options; main() hands them over before this parser runs.
    sub.add_parser("simnode", help="run one simulated HestiaCP node (simnode --help)")

    token = sub.add_parser("token", help="credentials for HOSTWRIGHT_TOKENS_FILE")
    token_sub = token.add_subparsers(required=True, metavar="ACTION")
    new_token = token_sub.add_parser("new", help="make a token; print it once and its file line")
    new_token.add_argument("--name", required=True, help="recorded as the actor of its calls")
    new_token.add_argument(
        "--scope", action="append", required=True, help="services, staff or read (repeatable)"
    )
    new_token.set_defaults(run=_run_token_new)

    bench = sub.add_parser("bench", help="benchmarks")
    bench_sub = bench.add_subparsers(required=True, metavar="BENCHMARK")
    intake = bench_sub.add_parser("intake", help="POST /v1/services rate and latency")
    intake.add_argument("--postgres-url", default=None, help="PostgreSQL server to measure on")
    intake.add_argument("--seconds", type=float, default=10.0)
    intake.add_argument("--rate", type=float, default=200.0, help="open-loop offered rate")
    intake.add_argument(
        "--stores", default="sqlite,postgresql", type=bench_stores, help="which stores to measure"
    )
    intake.set_defaults(run=_run_bench_intake)
    deploy = bench_sub.add_parser(
        "deploy", help="Split orders to active on simulated nodes: rate and latency"
    )
    deploy.add_argument("--services", type=int, default=200, help="orders in the burst")
    deploy.add_argument(
        "--latency-ms", default="0,50", type=milliseconds_list, help="added per node command"
    )
    deploy.add_argument("--amqp-url", default=None, help="default: HOSTWRIGHT_AMQP_URL or local")
    deploy.add_argument("--postgres-url", default=None, help="PostgreSQL server to measure on")
    deploy.add_argument("--burst-rate", type=float, default=200.0, help="burst orders per second")
    deploy.add_argument("--paced", type=int, default=40, help="orders in the paced phase")
    deploy.add_argument("--paced-rate", type=float, default=2.0, help="paced orders per second")
    deploy.add_argument("--node-concurrency", type=int, default=16, help="max_concurrency per node")
    deploy.add_argument("--no-profile", action="store_true", help="skip the py-spy profile")
    deploy.set_defaults(run=_run_bench_deploy)
    growth = bench_sub.add_parser(
        "growth", help="store rows, pipeline memory and rebuild time after many deploys"
    )
    growth.add_argument("--services", type=int, default=10_000, help="deploys to complete")
    growth.add_argument("--heartbeats", type=int, default=3, help="heartbeats per step (10 s)")
    growth.add_argument("--database-url", default=None, help="default: a scratch SQLite file")
    growth.set_defaults(run=_run_bench_growth)
    bench_replay = bench_sub.add_parser(
        "replay", help="replay's events per second beside the store's read-and-decode floor"
    )
    bench_replay.add_argument("--services", type=int, default=1000, help="deploys to replay")
    bench_replay.add_argument("--stores", default="sqlite,postgresql", help="which stores")
    bench_replay.add_argument("--postgres-url", default=None, help="PostgreSQL server to use")
    bench_replay.set_defaults(run=_run_bench_replay)
    bench_ssl = bench_sub.add_parser(
        "ssl", help="certificates from pebble: rate, ACME requests, DNS-to-served; renewal spread"
    )
    bench_ssl.add_argument(
        "--domains", type=ssl_domain_count, default=149, help="Split domains, 1 to 149"
    )
    bench_ssl.add_argument(
        "--point-rate",
        type=non_negative_rate,
        default=0.0,
        help="domains pointed here per second (0: all at once)",
    )
    bench_ssl.add_argument(
        "--ssl-concurrency",
        type=worker_count,
        default=None,
        help="certificates the SSL desk checks at once (HOSTWRIGHT_SSL_CONCURRENCY; default 8)",
    )
    bench_ssl.add_argument(
        "--fast-interval",
        type=int,
        default=None,
        help="seconds between fast mode's checks for this run (runtime setting "
        "ssl.fast_interval_s, 5 to 3600; default: the setting's own, 30)",
    )
    bench_ssl.add_argument(
        "--layout",
        choices=("embedded", "processes"),
        default="embedded",
        help="embedded: one `hostwright up` on SQLite; processes: every part a process on "
        "RabbitMQ and PostgreSQL",
    )
    bench_ssl.add_argument("--amqp-url", default=None, help="default: HOSTWRIGHT_AMQP_URL or local")
    bench_ssl.add_argument("--postgres-url", default=None, help="PostgreSQL server to measure on")
    bench_ssl.set_defaults(run=_run_bench_ssl)
    bench_usage = bench_sub.add_parser(
        "usage", help="one usage sync of many services: SSH calls, sync and view time, billing p99"
    )
    bench_usage.add_argument("--services", type=int, default=10_000, help="services seeded")
    bench_usage.add_argument("--servers", type=int, default=10, help="simulated nodes")
    bench_usage.add_argument(
        "--requests", type=int, default=200, help="GET /v1/billing/usage calls timed"
    )
    bench_usage.add_argument(
        "--database-url", default=None, help="an empty database to run on (default: SQLite)"
    )
    bench_usage.set_defaults(run=_run_bench_usage)
    bench_screens = bench_sub.add_parser(
        "screens", help="live pages: event to every open page p50/p99; console pages' p99"
    )
    bench_screens.add_argument("--services", type=int, default=10_000, help="services in views")
    bench_screens.add_argument("--pages", type=int, default=200, help="open live pages")
    bench_screens.add_argument(
        "--crowd", type=int, default=50, help="how many of the pages show one same service"
    )
    bench_screens.add_argument("--events", type=int, default=60, help="step results recorded")
    bench_screens.add_argument(
        "--requests", type=int, default=200, help="GETs timed per console page and /healthz"
    )
    bench_screens.add_argument(
        "--database-url", default=None, help="an empty database to run on (default: SQLite)"
    )
    bench_screens.set_defaults(run=_run_bench_screens)
    return parser


def _run_up(args: argparse.Namespace) -> int:
    return _run_until_signal(checked_system("all"), "all")


def _run_serve(args: argparse.Namespace) -> int:
    component = args.component
    if component == "handler":
        if args.role is None:
            raise SettingsError("serve handler needs a role: web, mail, dns, ssl or usage")
        component = f"handler.{args.role}"
    elif args.role is not None:
        raise SettingsError(f"serve {component} takes no role")
    return _run_until_signal(checked_system(component), component)


def _run_until_signal(system: System, component: str) -> int:

    async def run() -> None:
        stop = asyncio.Event()
        grace_s = system.settings.stop_grace_s
        install_stop_signals(stop, grace_s)
        runner = serve_all if component == "all" else COMPONENTS[component]
        log.info("serving %s", component)
        try:
            await within_grace(asyncio.ensure_future(runner(system, stop)), stop, grace_s)
        finally:
            await system.close()

    event_loop.run(run())
    return 0


def _run_replay(args: argparse.Namespace) -> int:
    from ops.views.replay import replay_and_compare
    from ops.views.worker_processes import WorkerFailed
    from projections.catalogue import all_views

    system = _system_of_an_existing_store()
    if system is None:
        return 1
    try:
        difference = replay_and_compare(
            system.store,
            system.db,
            all_views(),
            live_prefix=system.settings.view_prefix,
            workers=args.workers,
        )
    except WorkerFailed as exc:  # no verdict: neither "equal" nor a difference
        print(f"hostwright: replay did not finish: {exc}", file=sys.stderr)
        return 1
    finally:
        system.store.close()
        system.db.close()
    if difference is None:
        print("replay: every view equals its rebuild from event 0")
        return 0
    print(f"replay: views differ from a rebuild from event 0: {difference}")
    return 1


def _system_of_an_existing_store() -> System | None:
    """A System for a command that reads what is recorded; None (the reason printed) when
    the database does not exist or does not answer: never an empty one made up on the spot,
    which would read as all in order."""
    from ops.runtime.database_probe import existing_database_problem

    settings = Settings.load()
    problem = existing_database_problem(settings.database_url)
    if problem is not None:
        print(f"hostwright: {problem}", file=sys.stderr)
        return None
    return System(settings)


def _run_rotate_key(args: argparse.Namespace) -> int:
    from ops.adapters.password_rotation import rotate_sealed_passwords

    system = _system_of_an_existing_store()
    if system is None:
        return 1
    sealer = system.sealer()
    try:
        report = rotate_sealed_passwords(system.store, sealer, system.clock())
    finally:
        system.store.close()
    for line in report.lines():
        print(f"rotate-key: {line}")
    return 1 if report.old_keys_needed else 0


def _run_backfill_claims(args: argparse.Namespace) -> int:
    """Exit 0 when every live service holds its names; 1, listing them, when names are
    shared by two live services (the earlier order keeps each)."""
    from ops.store.claims_backfill import backfill_claims

    system = _system_of_an_existing_store()
    if system is None:
        return 1
    try:
        conflicts = backfill_claims(system.store, system.clock())
    finally:
        system.store.close()
    for conflict in conflicts:
        print(f"backfill-claims: {conflict}")
    if conflicts:
        print(f"backfill-claims: {len(conflicts)} name(s) shared by two live services")
        return 1
    print("backfill-claims: every live service holds its names")
    return 0


def _run_dead_letters(args: argparse.Namespace) -> int:
    from ops.messaging.dead_letters import dead_letter_counts

    settings = Settings.load()
    if not settings.amqp_url:
        print(
            "dead-letters: the in-process transport (no HOSTWRIGHT_AMQP_URL) keeps its queues "
            "inside the `hostwright up` process: its GET /healthz shows their counts"
        )
        return 0
    counts = _on_the_broker(
        settings, lambda transport: dead_letter_counts(transport, ssl=settings.ssl_auto)
    )
    if counts is None:
        return 1
    for queue, count in counts.items():
        print(f"{queue} {count}")
    return 0


def _run_redrive(args: argparse.Namespace) -> int:
    from ops.messaging.dead_letters import queue_of, redrive

    settings = Settings.load()
    try:
        queues = None if args.queue is None else [queue_of(args.queue, ssl=settings.ssl_auto)]
    except ValueError as exc:
        print(f"hostwright: {exc}", file=sys.stderr)
        return 2
    if not settings.amqp_url:
        print(
            "redrive: the in-process transport (no HOSTWRIGHT_AMQP_URL) keeps no message "
            "across restarts: there is nothing to re-drive"
        )
        return 0
    moved = _on_the_broker(
        settings, lambda transport: redrive(transport, queues, ssl=settings.ssl_auto)
    )
    if moved is None:
        return 1
    for queue, count in moved.items():
        print(f"redrive: {count} message(s) moved from {queue} to {queue.removesuffix('.dead')}")
    print(f"redrive: {sum(moved.values())} message(s) re-driven")
    return 0


def _on_the_broker(
    settings: Settings, work: Callable[[Transport], Awaitable[dict[str, int]]]
) -> dict[str, int] | None:
    """Runs ``work`` on a connected transport with the topology declared; None (the reason
    printed) when the broker cannot be reached."""
    from ops.bootstrap import build_transport
    from ops.messaging.topology import declare_topology
    from ops.messaging.transport import TransportError

    async def run() -> dict[str, int]:
        transport = build_transport(settings)
        try:
            await transport.connect()
            await declare_topology(transport, ssl=settings.ssl_auto)
            return await work(transport)
        finally:
            await transport.close()

    try:
        return asyncio.run(run())
    except TransportError as exc:
        print(f"hostwright: the broker did not answer: {exc}", file=sys.stderr)
        return None


def _run_demo(args: argparse.Namespace) -> int:
    from ops.devtools.demo import run_demo

    return run_demo(listen=args.listen, data_dir=args.data)


def _run_token_new(args: argparse.Namespace) -> int:
    from ops.credentials import new_token_lines

    try:
        token, line = new_token_lines(args.name, args.scope)
    except ValueError as exc:
        print(f"hostwright: {exc}", file=sys.stderr)
        return 2
    print(f"token: {token}")
    print(f"add to HOSTWRIGHT_TOKENS_FILE: {line}")
    print("the token is shown only now; the file keeps its SHA-256", file=sys.stderr)
    return 0


def _stop_on_sigterm() -> None:
    """SIGTERM ends a benchmark as Ctrl-C does: by an exception, so its ``finally`` blocks
    stop the processes, nodes and scratch databases it started (the default action would
    end it at once and leave them running)."""

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def _run_bench_intake(args: argparse.Namespace) -> int:
    from ops.devtools.bench.intake import run_intake_bench

    return run_intake_bench(
        postgres_url=args.postgres_url,
        seconds=args.seconds,
        rate=args.rate,
        stores=args.stores,
    )


def _run_bench_deploy(args: argparse.Namespace) -> int:
    from ops.devtools.bench.deploy import run_deploy_bench

    return run_deploy_bench(
        services=args.services,
        latencies=args.latency_ms,
        amqp_url=args.amqp_url,
        postgres_url=args.postgres_url,
        burst_rate=args.burst_rate,
        paced=args.paced,
        paced_rate=args.paced_rate,
        node_concurrency=args.node_concurrency,
        profile=not args.no_profile,
    )


def _run_bench_growth(args: argparse.Namespace) -> int:
    from ops.devtools.bench.growth import run_growth_bench

    return run_growth_bench(
        services=args.services, heartbeats=args.heartbeats, database_url=args.database_url
    )


def _run_bench_replay(args: argparse.Namespace) -> int:
    from ops.devtools.bench.replay import run_replay_bench

    return run_replay_bench(
        services=args.services,
        stores=[kind.strip() for kind in args.stores.split(",") if kind.strip()],
        postgres_url=args.postgres_url,
    )


def _run_bench_usage(args: argparse.Namespace) -> int:
    from ops.devtools.bench.usage import run_usage_bench

    return run_usage_bench(
        services=args.services,
        servers=args.servers,
        requests=args.requests,
        database_url=args.database_url,
    )


def _run_bench_screens(args: argparse.Namespace) -> int:
    from ops.devtools.bench.screens import run_screens_bench

    return run_screens_bench(
        services=args.services,
        pages=args.pages,
        crowd=args.crowd,
        events=args.events,
        requests=args.requests,
        database_url=args.database_url,
    )


def _run_bench_ssl(args: argparse.Namespace) -> int:
    from ops.devtools.bench.ssl import run_ssl_bench

    return run_ssl_bench(
        domains=args.domains,
        point_rate=args.point_rate,
        ssl_concurrency=args.ssl_concurrency,
        fast_interval_s=args.fast_interval,
        layout=args.layout,
        amqp_url=args.amqp_url,
        postgres_url=args.postgres_url,
    )


if __name__ == "__main__":
    raise SystemExit(main())
