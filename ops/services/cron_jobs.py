"""Every periodic job hostwright runs, in one table: its name, how often, and what it does.

  retries        every ``cron_retries_s`` (1 s)        dispatch retries that have come due
  stuck          every ``cron_stuck_s`` (10 s)         fail attempts whose lease ran out
  terminations   every ``cron_terminations_s`` (30 s)  carry out pending terminations
  tickets        every ``cron_tickets_s`` (30 s)       deliver WHMCS tickets still owed
  inbox          every ``cron_inbox_s`` (10 min)       prune the consumers' inboxes (in process)
  ssl            every ``cron_ssl_s`` (5 s)            the SSL desk's look for due certificates
                                                      (only with HOSTWRIGHT_SSL=auto)
  ssl_expiry     every ``cron_ssl_expiry_s`` (1 h)     custom certificates' expiry warnings
                                                      (only with HOSTWRIGHT_SSL=auto)
  usage          every ``cron_usage_s`` (30 s)         the usage desk's look for nodes due a
                                                      sync (``usage_period_s``) or a retry

By default a job publishes its tick for the pipeline, which does the work: routing key
``cron.<job>``, ``message_id`` ``cron:<job>:<period>`` (so a duplicate is absorbed by the
consumer's inbox), body ``{"job", "period", "period_s", "due_at"}`` (ops/services/scheduler.py's
``Tick.to_json``). Work that lives in ops replaces that with an in-process action.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from ops.messaging.inbox import Inbox
from ops.messaging.transport import Message, Transport, TransportError, Unroutable
from ops.services.scheduler import Action, Job, Tick
from ops.settings import Settings

log = logging.getLogger(__name__)


def cron_periods(settings: Settings) -> dict[str, float]:
    """Job name → period in seconds."""
    return {
        "retries": settings.cron_retries_s,
        "stuck": settings.cron_stuck_s,
        "terminations": settings.cron_terminations_s,
        "tickets": settings.cron_tickets_s,
        "inbox": settings.cron_inbox_s,
        "usage": settings.cron_usage_s,
        **(
            {"ssl": settings.cron_ssl_s, "ssl_expiry": settings.cron_ssl_expiry_s}
            if settings.ssl_auto
            else {}
        ),
    }


def tick_message(tick: Tick) -> Message:
    return Message(
        routing_key=f"cron.{tick.job}",
        body=tick.to_json(),
        message_id=f"cron:{tick.job}:{tick.period}",
    )


def publish_tick(transport: Transport) -> Action:
    """The default action: publish the tick (confirmed) for whoever binds ``cron.*``."""

    async def publish(tick: Tick) -> None:
        try:
            await transport.publish(tick_message(tick))
        except Unroutable:
            log.debug("cron: nothing consumes cron.%s", tick.job)
        except TransportError as exc:
            # the broker is away: this period's tick is lost, the next period's follows
            log.warning("cron: cron.%s of period %d not published: %s", tick.job, tick.period, exc)

    return publish


def prune_inbox(inbox: Inbox, retention_s: float) -> Action:
    """The ``inbox`` job: deletes the handled message ids older than the retention, in small
    batches, in a thread (every consumer's inbox is one table)."""

    async def prune(tick: Tick) -> None:
        deleted = await asyncio.to_thread(inbox.prune, retention_s)
        if deleted:
            log.info("cron: pruned %d inbox rows older than %.0f h", deleted, retention_s / 3600)

    return prune


def cron_jobs(
    settings: Settings, transport: Transport, in_process: Mapping[str, Action] | None = None
) -> list[Job]:
    """The job table; ``in_process`` replaces the published tick of the jobs it names."""
    periods = cron_periods(settings)
    actions = dict(in_process or {})
    unknown = sorted(set(actions) - set(periods))
    if unknown:
        raise ValueError(f"no such cron job: {', '.join(unknown)}")
    publish = publish_tick(transport)
    return [Job(name, period, actions.get(name, publish)) for name, period in periods.items()]
