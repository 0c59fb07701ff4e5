"""Every queue hostwright consumes, with its bindings: declared up front by each component.

Declaring the whole topology before anything is published means a topic that still routes
nowhere is one no part of hostwright consumes (Task.Dispatched, say: the views follow the
store, not the broker). ``routed`` answers that from these bindings alone, and the relay does
not even publish such a Task event (``skipped_by_relay``). Declaring is idempotent.

For Task events these are the only bindings the relay honours: a queue bound to the exchange
from outside this table (by hand, or by another program) gets only the Task topics some queue
here also matches — add its binding here if it must see more. Every other event is published.
"""

from __future__ import annotations

import functools

from domain.run_outcome import RUN_STARTERS, STAFF_TASK_TOPICS
from ops.messaging.inprocess_transport import topic_matches
from ops.messaging.transport import Transport

ROLES = ("web", "mail", "dns")
PIPELINE_QUEUE = "pipeline"
PIPELINE_BINDINGS = (
    # the Service events that start a run: the pipeline ignores the others, so the relay
    # need not publish them (a broker still holding the old "Service.*" binding gets none)
    *RUN_STARTERS,
    *STAFF_TASK_TOPICS,  # staff retried, cancelled or force-failed a task; a re-sealed password
    "RuntimeSettings.*",
    "Server.Registered",  # a build waiting for a node with a role may start (the sweep)
    "result.*",
    "heartbeat.*",
    "cron.*",  # the scheduler's ticks (ops/services/cron_jobs.py)
)
TICKETS_QUEUE = "tickets"
# terminal failures and custom certificates' expiry warnings become WHMCS tickets; the
# scheduler's tick retries undelivered ones
TICKETS_BINDINGS = ("Task.Errored", "Certificate.ExpiryWarned", "cron.tickets")


def handler_queue(role: str) -> str:
    return f"handler.{role}"


def handler_bindings(role: str) -> tuple[str, ...]:
    return (f"task.{role}.*",)


# the usage desk (ops/services/usage.py, ``handler usage``): the syncs queued, a customer's
# "Sync now", and the scheduler's tick
USAGE_ROLE = "usage"
USAGE_QUEUE = "usage"
USAGE_BINDINGS = ("ServerUsage.SyncQueued", "Service.UsageSyncRequested", "cron.usage")

QUEUES: dict[str, tuple[str, ...]] = {
    PIPELINE_QUEUE: PIPELINE_BINDINGS,
    TICKETS_QUEUE: TICKETS_BINDINGS,
    USAGE_QUEUE: USAGE_BINDINGS,
    **{handler_queue(role): handler_bindings(role) for role in ROLES},
}

# automatic SSL (HOSTWRIGHT_SSL=auto) adds the ssl role's task queue and the SSL desk's queue
# (ops/services/ssl.py): the certificates asked for, the service changes that stop or resume
# them, and the scheduler's tick. With SSL off neither is declared.
SSL_ROLE = "ssl"
SSL_QUEUE = "ssl"
SSL_BINDINGS = (
    "Certificate.Seeded",
    "Certificate.IssueRequested",
    "Certificate.CustomUploaded",
    "Certificate.CustomRemoved",
    "Service.Terminated",
    "Service.Unsuspended",
    "cron.ssl",
    "cron.ssl_expiry",
)
SSL_QUEUES: dict[str, tuple[str, ...]] = {
    handler_queue(SSL_ROLE): handler_bindings(SSL_ROLE),
    SSL_QUEUE: SSL_BINDINGS,
}


@functools.cache
def skipped_by_relay(routing_key: str) -> bool:
    """Whether the relay may leave an event unpublished: a Task event no binding here takes
    (Task.Planned, .Dispatched, .Succeeded …: most of the events). Events of other aggregates
    are always published, even when the broker returns them: a consumer deployed ahead of the
    relay in an upgrade, or bound from outside, then loses nothing but Task progress events."""
    return routing_key.startswith("Task.") and not routed(routing_key)


@functools.cache
def routed(routing_key: str) -> bool:
    """Whether some binding in ``QUEUES`` matches ``routing_key`` (AMQP topic matching, as
    the broker does it): a message with any other key would be returned unroutable."""
    return any(
        topic_matches(pattern, routing_key) for bindings in QUEUES.values() for pattern in bindings
    )


def consumed_queues(*, ssl: bool = False) -> dict[str, tuple[str, ...]]:
    """Every queue hostwright consumes, with its bindings: the SSL ones too when ``ssl``
    (automatic SSL is on). What is declared, counted for dead letters and re-driven."""
    return {**QUEUES, **(SSL_QUEUES if ssl else {})}


async def declare_topology(transport: Transport, *, ssl: bool = False) -> None:
    """Every queue (the SSL ones too when ``ssl``: automatic SSL is on)."""
    for queue, bindings in consumed_queues(ssl=ssl).items():
        await transport.declare_queue(queue, bindings)
