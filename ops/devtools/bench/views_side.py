"""The gateway and the projections in one process: what ``bench screens`` measures against.

``hostwright serve gateway`` alone needs a broker; on the embedded default the gateway runs
beside the other parts in one ``hostwright up``. The bench records step results with a
pipeline of its own, so it runs just these two, from the ``HOSTWRIGHT_*`` settings of its
environment, until SIGTERM: ``python -m ops.devtools.bench.views_side``.
"""

from __future__ import annotations

import asyncio

from ops.bootstrap import System
from ops.runtime import event_loop
from ops.runtime.components import serve_gateway, serve_projections
from ops.runtime.stopping import install_stop_signals
from ops.settings import Settings


async def serve(system: System) -> None:
    stop = asyncio.Event()
    install_stop_signals(stop, system.settings.stop_grace_s)
    try:
        await asyncio.gather(serve_gateway(system, stop), serve_projections(system, stop))
    finally:
        stop.set()
        await system.close()


def main() -> int:
    event_loop.run(serve(System(Settings.load())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
