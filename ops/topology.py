"""Every queue hostwright consumes, with its bindings: declared up front by each component.

Declaring the whole topology before anything is published means a topic that still routes
nowhere is one no part of hostwright consumes (Task.Dispatched, say: the views follow the
store, not the broker), so the relay may safely let it go. Declaring is idempotent.
"""

from __future__ import annotations

from ops.transport import Transport

ROLES = ("web", "mail", "dns")
PIPELINE_QUEUE = "pipeline"
PIPELINE_BINDINGS = (
    "Service.*",
    "Task.Retried",
    "Task.Cancelled",
    "Task.Errored",  # staff force-failed a stuck attempt (the pipeline's own errors too)
    "RuntimeSettings.*",
    "result.*",
    "heartbeat.*",
    "cron.*",  # the scheduler's ticks (ops/cron_jobs.py)
)
TICKETS_QUEUE = "tickets"
# terminal failures become WHMCS tickets; the scheduler's tick retries undelivered ones
TICKETS_BINDINGS = ("Task.Errored", "cron.tickets")


def handler_queue(role: str) -> str:
    return f"handler.{role}"


def handler_bindings(role: str) -> tuple[str, ...]:
    return (f"task.{role}.*",)


QUEUES: dict[str, tuple[str, ...]] = {
    PIPELINE_QUEUE: PIPELINE_BINDINGS,
    TICKETS_QUEUE: TICKETS_BINDINGS,
    **{handler_queue(role): handler_bindings(role) for role in ROLES},
}


async def declare_topology(transport: Transport) -> None:
    for queue, bindings in QUEUES.items():
        await transport.declare_queue(queue, bindings)
