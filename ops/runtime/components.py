"""The long-running parts of hostwright, each an ``async (system, stop)`` function.

``hostwright serve <name>`` runs one of them per process (scale out by running more);
``hostwright up`` runs them all in one process. Each returns once ``stop`` is set and its
in-flight work is finished.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import uvicorn

from ops.bootstrap import System
from ops.messaging.topology import ROLES, SSL_ROLE, USAGE_ROLE, declare_topology
from ops.runtime.pause import pause
from ops.services.handler import run_handler
from ops.services.pipeline import run_pipeline
from ops.services.pipeline_lead import TAKEOVER_WAIT_S, PipelineLead
from ops.services.ssl import run_ssl
from ops.services.tickets import build_ticket_desk, run_tickets
from ops.services.usage import run_usage
from ops.store.database import database_unavailable
from ops.store.outage import Backoff

log = logging.getLogger(__name__)

Component = Callable[[System, asyncio.Event], Awaitable[None]]


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling: our stop event decides when to shut down."""

    @contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def serve_gateway(system: System, stop: asyncio.Event) -> None:
    # Requests wait on the store in threads; the default pool (cores + 4) would cap how many
    # orders one group-commit round can gather.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=64, thread_name_prefix="gateway")
    )
    # A request crosses threads (event loop -> store thread -> group-commit writer) and each
    # crossing may wait a whole GIL switch interval (5 ms by default) behind a busy thread;
    # 1 ms keeps those waits out of the latency tail.
    sys.setswitchinterval(0.001)
    settings = system.settings
    listeners = system.listeners()
    config = uvicorn.Config(
        system.gateway(),
        host=settings.listen_host,
        port=settings.listen_port,
        log_level="warning",
        log_config=None,  # its lines go through ours (ops/runtime/log_setup.py): one format
        access_log=False,  # the gateway logs each request itself (gateway/request_log.py)
        lifespan="on",
    )
    server = _EmbeddedServer(config)
    serving = asyncio.ensure_future(server.serve(sockets=listeners))
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    await serving
    stopping.cancel()


async def serve_relay(system: System, stop: asyncio.Event) -> None:
    await _connect(system, stop)
    await system.relay().run(stop)


async def serve_projections(system: System, stop: asyncio.Event) -> None:
    await system.projection_runner().run(stop)


async def serve_pipeline(system: System, stop: asyncio.Event) -> None:
    """Stands by until this process leads (ops/services/pipeline_lead.py), then pilots until
    ``stop``. When the lead goes first (its database connection failed) it stops piloting at
    once, drops the pipeline's working state and stands by again, in this process: when it
    leads again it rebuilds from the store and drives. So does a pipeline whose piloting
    failed because the database was unavailable."""
    lead = PipelineLead(system.settings.database_url)
    backoff = Backoff()
    try:
        while not stop.is_set():
            if not await lead.acquire(stop):
                return
            if lead.took_over:
                log.info("pipeline: giving the last leader %.0f s to halt", TAKEOVER_WAIT_S)
                await pause(stop, TAKEOVER_WAIT_S)
            try:
                await _pilot(system, stop, lead)
            except Exception as exc:
                if not database_unavailable(exc):
                    raise
                log.warning("pipeline: the database failed under it (%s); standing by", exc)
            else:
                if stop.is_set() or not lead.lost.is_set():
                    return
                log.warning("pipeline: stopped piloting; standing by to lead again")
                backoff.reset()
            await lead.release()
            await pause(stop, backoff.next())
    finally:
        await lead.release()


async def _pilot(system: System, stop: asyncio.Event, lead: PipelineLead) -> None:
    """The pipeline until ``stop`` (a graceful halt: in-flight batches finish) or until the
    lead is lost (cancelled at once: another pipeline may already lead). Each call pilots a
    new Pipeline, rebuilt from the store."""
    halt = asyncio.Event()
    piloting = asyncio.ensure_future(_run_pipeline(system, halt))
    ends = [asyncio.ensure_future(event.wait()) for event in (stop, lead.lost)]
    try:
        await asyncio.wait({piloting, *ends}, return_when=asyncio.FIRST_COMPLETED)
        halt.set()
        if lead.lost.is_set():
            piloting.cancel()
        await asyncio.wait({piloting})
    finally:
        for end in ends:
            end.cancel()
        piloting.cancel()  # nothing to cancel once it is done
    failure = None if piloting.cancelled() else piloting.exception()
    if failure is not None:
        raise failure


async def _run_pipeline(system: System, halt: asyncio.Event) -> None:
    await _connect(system, halt)
    if not await _declared(system, halt):
        return
    await run_pipeline(
        system.pipeline(),
        system.transport,
        system.inbox(),
        halt,
        prefetch=system.settings.prefetch,
        settings_changed=system.runtime_settings().refresh,
        max_failures=system.settings.dead_letter_after,
    )


async def serve_ssl(system: System, stop: asyncio.Event) -> None:
    """``handler ssl``: the ssl role's deploy steps and the SSL desk, side by side."""
    await _connect(system, stop)
    if not await _declared(system, stop):
        return
    feed, close = system.ssl_feed()
    settings = system.settings
    await asyncio.gather(
        run_handler(
            system.role_handler(SSL_ROLE),
            system.transport,
            system.inbox(),
            stop,
            prefetch=settings.prefetch,
            concurrency=settings.handler_concurrency,
            max_failures=settings.dead_letter_after,
        ),
        run_ssl(
            feed,
            system.transport,
            system.inbox(),
            stop,
            prefetch=settings.prefetch,
            max_failures=settings.dead_letter_after,
            closing=close,
        ),
    )


async def serve_usage(system: System, stop: asyncio.Event) -> None:
    """``handler usage``: the usage desk, fed syncs queued, "Sync now" and the tick."""
    await _connect(system, stop)
    if not await _declared(system, stop):
        return
    feed, close = system.usage_feed()
    await run_usage(
        feed,
        system.transport,
        system.inbox(),
        stop,
        prefetch=system.settings.prefetch,
        max_failures=system.settings.dead_letter_after,
        closing=close,
    )


def handler_component(role: str) -> Component:
    async def serve_handler(system: System, stop: asyncio.Event) -> None:
        await _connect(system, stop)
        if not await _declared(system, stop):
            return
        await run_handler(
            system.role_handler(role),
            system.transport,
            system.inbox(),
            stop,
            prefetch=system.settings.prefetch,
            concurrency=system.settings.handler_concurrency,
            max_failures=system.settings.dead_letter_after,
        )

    return serve_handler


async def serve_scheduler(system: System, stop: asyncio.Event) -> None:
    await _connect(system, stop)
    if not await _declared(system, stop):
        return
    await system.scheduler().run(stop)


async def serve_tickets(system: System, stop: asyncio.Event) -> None:
    await _connect(system, stop)
    if not await _declared(system, stop):
        return
    runtime = system.runtime_settings()
    await run_tickets(
        build_ticket_desk(system, config=lambda: runtime.current().tickets),
        system.ticket_store(),
        system.transport,
        system.inbox(),
        stop,
        prefetch=system.settings.prefetch,
        max_failures=system.settings.dead_letter_after,
    )


COMPONENTS: dict[str, Component] = {
    "gateway": serve_gateway,
    "relay": serve_relay,
    "projections": serve_projections,
    "pipeline": serve_pipeline,
    "scheduler": serve_scheduler,
    "tickets": serve_tickets,
    **{f"handler.{role}": handler_component(role) for role in ROLES},
    f"handler.{SSL_ROLE}": serve_ssl,  # run by ``up`` only with automatic SSL on
    f"handler.{USAGE_ROLE}": serve_usage,
}


def components_of(system: System) -> list[Component]:
    """What ``hostwright up`` runs: every component, ``handler ssl`` only with SSL on."""
    ssl = f"handler.{SSL_ROLE}"
    return [c for name, c in COMPONENTS.items() if name != ssl or system.settings.ssl_auto]


async def serve_all(system: System, stop: asyncio.Event) -> None:
    """Every component in this process: what ``hostwright up`` runs."""
    tasks = [asyncio.ensure_future(component(system, stop)) for component in components_of(system)]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                stop.set()
                raise task.exception()  # type: ignore[misc]
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _connect(system: System, stop: asyncio.Event) -> None:
    """Connects the transport, waiting (with back-off) while the broker is down."""
    from ops.messaging.transport import TransportError

    delay = 0.2
    async with system.connect_lock:
        while not stop.is_set() and not system.transport_connected:
            try:
                await system.transport.connect()
                system.transport_connected = True
                return
            except TransportError as exc:
                log.warning("broker unavailable (%s); retrying in %.1fs", exc, delay)
                await pause(stop, delay)
                delay = min(delay * 2, 5.0)


async def _declared(system: System, stop: asyncio.Event) -> bool:
    """Declares the queues, trying again with capped back-off while the broker refuses (it
    may still be reconnecting: a pipeline leading again then must not exit); False when
    ``stop`` came first."""
    from ops.messaging.transport import TransportError

    backoff = Backoff()
    while not stop.is_set():
        try:
            await declare_topology(system.transport, ssl=system.settings.ssl_auto)
            return True
        except TransportError as exc:
            delay = backoff.next()
            log.warning("broker unavailable (%s); declaring the queues again in %.1fs", exc, delay)
            await pause(stop, delay)
    return False
