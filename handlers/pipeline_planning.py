"""Planning a run: the service's nodes (chosen once, on its first run) and its steps as tasks.

Consumes: the Planner port, the service as the store has it, the run's number and kind, the
time. Emits: the run's planned Task aggregates (with ``Service.Placed`` pending on the service
when its nodes were chosen now), or why there are none yet: ``PlacementWaits`` when no
registered node has a role the service needs (its build waits for one), a DomainError when
the run cannot be planned at all (a reserved vanity label…: the run fails, saying why).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from domain.deploy_plan import StepSpec
from domain.errors import Conflict
from domain.service import Service
from domain.task import Task


class Planner(Protocol):
    def place(self, service: Service) -> dict[str, Any]:
        """Chooses the nodes for a service that has none yet (recorded as Service.Placed)."""

    def steps(self, service: Service, placement: dict[str, Any], kind: str) -> list[StepSpec]:
        """The steps of a run of ``kind`` ("deploy" or "reset") for the service as it is now."""


class PlacementWaits(Exception):
    """No registered node has a role the service needs yet."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def plan_run(
    planner: Planner,
    service: Service,
    run_no: int,
    kind: str,
    now: datetime,
    command_id: str | None = None,
) -> list[Task]:
    placement = service.placement
    if placement is None and kind == "terminate":
        return []  # never placed: nothing of it was ever built on a node
    if placement is None:
        try:
            placement = planner.place(service)
        except Conflict as exc:
            raise PlacementWaits(str(exc)) from exc
        service.place(now, placement)
    return [
        Task.plan(
            service_id=service.service_id,
            run=run_no,
            step=s.step,
            role=s.role,
            action=s.action,
            server_id=s.server_id,
            params=s.params,
            depends_on=list(s.depends_on),
            now=now,
            operation=kind,
            command_id=command_id,
        )
        for s in planner.steps(service, placement, kind)
    ]
