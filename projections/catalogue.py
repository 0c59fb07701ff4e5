"""Every view hostwright keeps: what the projection runner follows and replay rebuilds."""

from __future__ import annotations

from projections.oplog_view import OperationLogView
from projections.services_view import ServicesView
from projections.task_queue_view import TaskQueueView
from projections.timeline_view import DeployTimelineView
from projections.view import View


def all_views() -> list[View]:
    """Fresh instances of every view; add a new view here and it is projected and replayed."""
    return [ServicesView(), OperationLogView(), TaskQueueView(), DeployTimelineView()]
