"""Stopping within a grace period, whatever the process is waiting on.

``install_stop_signals(stop, grace_s)``: SIGTERM and SIGINT set ``stop`` and arm the exit below.
The handler is a plain ``signal`` handler, not the event loop's: a loop blocked in a call to a
database that hangs never gets to run its own handlers, but the interpreter still runs this one
between two waits of that call.

``within_grace(work, stop, grace_s)`` consumes a running part (a task) and its stop event, and
emits the part's outcome. Once ``stop`` is set the part has ``grace_s`` to finish (in-flight
work ends, positions are stored); a part still waiting then — on a database that hangs, say,
in a thread no cancellation reaches — is cancelled, and should even that not end it (a thread
the interpreter would join at exit), the process exits ``EXIT_LATE`` after
``grace_s + EXIT_MARGIN_S`` no matter what: a supervisor's SIGTERM is always answered.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from typing import Any

log = logging.getLogger(__name__)

STOP_GRACE_S = 15.0
EXIT_MARGIN_S = 5.0
EXIT_LATE = 1


async def within_grace(work: asyncio.Future[Any], stop: asyncio.Event, grace_s: float) -> None:
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({work, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if not work.done():
        _, late = await asyncio.wait({work}, timeout=grace_s)
        if late:
            log.error("still busy %.0f s after the stop request; cancelling what is left", grace_s)
            work.cancel()
            await asyncio.wait({work}, timeout=EXIT_MARGIN_S)
    if work.done() and not work.cancelled():
        work.result()  # the part's own failure, if any


def install_stop_signals(stop: asyncio.Event, grace_s: float) -> None:
    """Call from inside the running event loop."""
    loop = asyncio.get_running_loop()
    armed: list[threading.Timer] = []

    def on_signal(signum: int, frame: object) -> None:
        loop.call_soon_threadsafe(stop.set)
        if not armed:
            armed.append(exit_after(grace_s + EXIT_MARGIN_S))

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)


def exit_after(seconds: float) -> threading.Timer:
    """Ends the process (``EXIT_LATE``) in ``seconds`` unless it has ended by then."""

    def late() -> None:
        log.error("did not stop within its grace period; exiting anyway")
        logging.shutdown()
        os._exit(EXIT_LATE)

    timer = threading.Timer(seconds, late)
    timer.daemon = True
    timer.start()
    return timer
