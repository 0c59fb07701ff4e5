"""Every view hostwright keeps: what the projection runner follows and replay rebuilds."""

from __future__ import annotations

from typing import Any

from domain.certificate import Certificate
from domain.service import Service
from domain.task import Task
from projections.oplog_view import OperationLogView
from projections.services_view import ServicesView
from projections.ssl_view import SslView
from projections.task_queue_view import TaskQueueView
from projections.timeline_view import DeployTimelineView
from projections.usage_view import UsageView
from projections.view import View


def all_views() -> list[View]:
    """Fresh instances of every view; add a new view here and it is projected and replayed."""
    return [
        ServicesView(),
        OperationLogView(),
        TaskQueueView(),
        DeployTimelineView(),
        SslView(),
        UsageView(),
    ]


# The events that name, in their ``service_id``, the service their aggregate is about: the
# first event of a service, of each task and of each certificate (the shared wildcard's
# names none: its rows are the first shard's). Every view keeps to a rule replay's workers rest
# on (``ops.views.replay_shards``): each table has a ``service_id`` column, and a service's
# rows change only by events of its own aggregates or of no service.
SERVICE_NAMING: frozenset[type[Any]] = frozenset(
    {Service.Ordered, Task.Planned, Certificate.Seeded}
)
