"""``hostwright serve handler <role>``: one role's handler fed from its queue.

Deliveries are de-duplicated by ``<task_id>:<attempt>`` (the inbox), so a redelivered task
message of a step already handled never runs it again; one still running elsewhere (or another
attempt of it) waits at the step fence (handlers/step_fence.py) until that one ends. Several
steps run at once (the pipeline enforces each server's limit before it dispatches).
"""

from __future__ import annotations

import asyncio

from handlers.role_handler import RoleHandler
from ops.messaging.consumer import ConsumerLoop
from ops.messaging.inbox import Inbox
from ops.messaging.topology import handler_bindings, handler_queue
from ops.messaging.transport import Transport


async def run_handler(
    handler: RoleHandler,
    transport: Transport,
    inbox: Inbox,
    stop: asyncio.Event,
    *,
    prefetch: int,
    concurrency: int = 16,
    max_failures: int = 5,
) -> None:
    loop = ConsumerLoop(
        transport,
        handler_queue(handler.role),
        handler_bindings(handler.role),
        handler.handle,
        consumer_name=handler_queue(handler.role),
        inbox=inbox,
        prefetch=prefetch,
        max_failures=max_failures,
        concurrency=concurrency,
        # the pipeline publishes a task message once per attempt, after recording it; a copy
        # it sends again (an unconfirmed publish, a new leader's) is marked and checked
        first_deliveries_are_new=True,
    )
    try:
        await loop.run(stop)
    finally:
        await handler.close()
