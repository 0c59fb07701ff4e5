"""The Service aggregate: one hosting service sold through WHMCS, and everything asked of it.

Lifecycle requests (``*Requested``) are recorded by the gateway; status changes (``Activated``,
``Suspended`` …) are recorded by the pipeline once the nodes have done the work. ``handle``
is the decision function: it either records one event, does nothing (already satisfied or a
repeated command id), or raises Conflict.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from eventsourcing.domain import Aggregate

from domain.commands import Command, OrderService
from domain.errors import Conflict
from domain.service_requests import decide_request

SERVICE_NAMESPACE = uuid.UUID("5b0e2f1c-6a53-4c8e-9a57-6f1d2c0b7e11")
STATUSES = ("provisioning", "active", "deploy_failed", "suspended", "terminating", "terminated")
_REMEMBERED_COMMAND_IDS = 100
# The events that start a pipeline run (domain/run_outcome.py RUN_STARTERS names their kinds).
RUN_STARTING_EVENTS = frozenset(
    {
        "Ordered",
        "RedeployRequested",
        "VerifyRepairRequested",
        "FactoryResetRequested",
        "SuspendRequested",
        "UnsuspendRequested",
        "PlanChangeRequested",
        "PasswordChangeRequested",
        "TerminateRequested",
    }
)


def service_uuid(service_id: str) -> uuid.UUID:
    """The aggregate id of a WHMCS service id: stable, so the same order maps to one aggregate."""
    return uuid.uuid5(SERVICE_NAMESPACE, f"service/{service_id}")


class Service(Aggregate):
    class Ordered(Aggregate.Created):
        service_id: str
        client_id: str
        mode: str
        domain: str
        plan: dict[str, Any]
        username: str | None
        label: str | None
        password_sealed: str | None
        actor: str
        command_id: str | None

    def __init__(
        self,
        service_id: str,
        client_id: str,
        mode: str,
        domain: str,
        plan: dict[str, Any],
        username: str | None,
        label: str | None,
        password_sealed: str | None,
        actor: str,
        command_id: str | None,
    ) -> None:
        self.service_id = service_id
        self.client_id = client_id
        self.mode = mode
        self.domain = domain
        self.plan = plan
        self.username = username
        self.label = label
        self.password_sealed = password_sealed
        self.status = "provisioning"
        self.pending: str | None = "deploy"
        self.forced = False
        # "pending": a plan change not on the nodes yet; "failed": it did not get there
        self.plan_state = "applied"
        # the customer's login (password): "pending" while a new one is not on the nodes
        # yet, "failed" when it did not get there
        self.login_state = "applied"
        self.terminate_failed = False  # the last terminate attempt could not finish (reported once)
        self.placement: dict[str, Any] | None = None  # the nodes it lives on, once chosen
        self.waiting_for_placement: str | None = None  # why no node could be chosen yet
        # the latest event that starts a run (its class name and version): what the pipeline's
        # sweep checks it has a run for
        self.last_request: tuple[str, int] = ("Ordered", 1)
        # the id of the command that recorded it: the correlation id of its run's log lines
        self.last_request_command: str | None = command_id
        self.command_ids: list[str] = [command_id] if command_id else []

    class Event(Aggregate.Event):
        def apply(self, aggregate: Aggregate) -> None:
            assert isinstance(aggregate, Service)
            command_id = getattr(self, "command_id", None)
            if command_id:
                aggregate.command_ids = [*aggregate.command_ids, command_id][
                    -_REMEMBERED_COMMAND_IDS:
                ]
            if type(self).__name__ in RUN_STARTING_EVENTS:
                aggregate.last_request = (type(self).__name__, self.originator_version)
                aggregate.last_request_command = command_id
            self.apply_to(aggregate)

        def apply_to(self, service: Service) -> None:
            pass

    class Requested(Event):
        actor: str
        command_id: str | None

    class SuspendRequested(Requested):
        reason: str

        def apply_to(self, service: Service) -> None:
            service.pending = "suspend"

    class UnsuspendRequested(Requested):
        def apply_to(self, service: Service) -> None:
            service.pending = "unsuspend"

    class TerminateRequested(Requested):
        force: bool

        def apply_to(self, service: Service) -> None:
            service.status = "terminating"
            service.pending = "terminate"
            service.terminate_failed = False
            service.forced = service.forced or self.force

    class RedeployRequested(Requested):
        def apply_to(self, service: Service) -> None:
            service.status = "provisioning"
            service.pending = "deploy"

    class FactoryResetRequested(Requested):
        def apply_to(self, service: Service) -> None:
            service.status = "provisioning"
            service.pending = "deploy"

    class VerifyRepairRequested(Requested):
        def apply_to(self, service: Service) -> None:
            service.pending = "verify"

    class PlanChangeRequested(Requested):
        plan: dict[str, Any]

        def apply_to(self, service: Service) -> None:
            service.plan = self.plan
            service.plan_state = "pending"

    class UsageSyncRequested(Requested):
        pass

    class PasswordChangeRequested(Requested):
        """The customer's new password, sealed (never in clear); it becomes the service's
        password, so a later redeploy makes a missing user with it too."""

        password_sealed: str

        def apply_to(self, service: Service) -> None:
            service.password_sealed = self.password_sealed
            service.login_state = "pending"

    class Placed(Event):
        """The nodes chosen for the service; every later run reuses them, so adding a node
        never moves an existing service."""

        placement: dict[str, Any]

        def apply_to(self, service: Service) -> None:
            service.placement = self.placement
            service.waiting_for_placement = None

    class PlacementWaiting(Event):
        """No registered node has a role the service needs yet: its build waits, and starts
        once such a node is registered."""

        reason: str

        def apply_to(self, service: Service) -> None:
            service.waiting_for_placement = self.reason

    class Activated(Event):
        def apply_to(self, service: Service) -> None:
            service.status = "active"
            # a suspend or unsuspend asked for during the build still waits for its own run
            if service.pending not in ("suspend", "unsuspend"):
                service.pending = None

    class DeployFailed(Event):
        reason: str

        def apply_to(self, service: Service) -> None:
            service.status = "deploy_failed"
            # a suspend or unsuspend asked for during the build still runs (and says if it
            # cannot): it is never dropped silently
            if service.pending not in ("suspend", "unsuspend"):
                service.pending = None

    class Suspended(Event):
        def apply_to(self, service: Service) -> None:
            service.status = "suspended"
            service.pending = None

    class Unsuspended(Event):
        def apply_to(self, service: Service) -> None:
            service.status = "active"
            service.pending = None

    class PlanApplied(Event):
        """The nodes hold the plan's package and quotas now."""

        def apply_to(self, service: Service) -> None:
            service.plan_state = "applied"

    class PasswordChanged(Event):
        """Every node of the service holds the new password now."""

        def apply_to(self, service: Service) -> None:
            service.login_state = "applied"

    class OperationFailed(Event):
        """A suspend, unsuspend, plan change or terminate that could not be finished (a task
        of it is in error); the status stays what it was and staff are told."""

        operation: str
        reason: str

        def apply_to(self, service: Service) -> None:
            if self.operation == "change_plan":
                service.plan_state = "failed"
            elif self.operation == "change_password":
                service.login_state = "failed"
            elif self.operation == "terminate":
                service.terminate_failed = True
            else:
                service.pending = None

    class Terminated(Event):
        leftovers: list[dict[str, str]]

        def apply_to(self, service: Service) -> None:
            service.status = "terminated"
            service.pending = None

    class PasswordResealed(Event):
        """The password sealed afresh under the current secret key (``hostwright
        rotate-key``), so a retired key can be dropped; the clear password is never here."""

        password_sealed: str
        key_id: str

        def apply_to(self, service: Service) -> None:
            service.password_sealed = self.password_sealed

    @classmethod
    def order(cls, command: OrderService, password_sealed: str | None) -> Service:
        """Creates the aggregate from a validated order; the password arrives already sealed."""
        return cls._create(
            cls.Ordered,
            id=service_uuid(command.service_id),
            timestamp=command.now,
            service_id=command.service_id,
            client_id=command.client_id,
            mode=command.mode,
            domain=command.domain,
            plan=command.plan.to_json(),
            username=command.username,
            label=command.label,
            password_sealed=password_sealed,
            actor=command.actor,
            command_id=command.command_id,
        )

    def refuse_reorder(self) -> None:
        """An order for an id that exists already: a terminated (or terminating) service's id
        is closed for good — WHMCS gives a re-created service a new id, and the old one's
        history stays as it is for audit — so any order for it is a Conflict."""
        if self.status in ("terminating", "terminated"):
            raise Conflict(
                f"service {self.service_id} is {self.status}: a terminated service id is "
                "closed for good (its history stays for audit); a new order needs a new "
                "service id"
            )

    def handle(self, command: Command) -> bool:
        """Records the event the command asks for; False when it is already satisfied."""
        if command.command_id and command.command_id in self.command_ids:
            return False
        decision = decide_request(self, command)
        if decision is None:
            return False
        event_name, fields = decision
        self.trigger_event(
            getattr(Service, event_name),
            timestamp=command.now,
            actor=command.actor,
            command_id=command.command_id,
            **fields,
        )
        return True

    # Status changes, recorded by the pipeline once the nodes have done the work.

    def place(self, now: datetime, placement: dict[str, Any]) -> None:
        if self.placement is not None:
            raise Conflict(f"service {self.service_id} is placed already")
        self.trigger_event(Service.Placed, timestamp=now, placement=placement)

    def wait_for_placement(self, now: datetime, reason: str) -> bool:
        """Records why no node could be chosen yet; False when placed or said already."""
        if self.placement is not None or self.waiting_for_placement == reason:
            return False
        self.trigger_event(Service.PlacementWaiting, timestamp=now, reason=reason)
        return True

    def mark_active(self, now: datetime) -> None:
        self._refuse_after_termination("activate")
        self.trigger_event(Service.Activated, timestamp=now)

    def mark_deploy_failed(self, now: datetime, reason: str) -> None:
        self._refuse_after_termination("fail the deploy of")
        self.trigger_event(Service.DeployFailed, timestamp=now, reason=reason)

    def mark_suspended(self, now: datetime) -> None:
        self._refuse_after_termination("suspend")
        self.trigger_event(Service.Suspended, timestamp=now)

    def mark_unsuspended(self, now: datetime) -> None:
        self._refuse_after_termination("unsuspend")
        self.trigger_event(Service.Unsuspended, timestamp=now)

    @property
    def plan_pending(self) -> bool:
        """A plan change was asked for and is not on the nodes yet."""
        return self.plan_state == "pending"

    def mark_plan_applied(self, now: datetime) -> None:
        self._refuse_after_termination("change the plan of")
        self.trigger_event(Service.PlanApplied, timestamp=now)

    @property
    def password_pending(self) -> bool:
        """A password change was asked for and is not on the nodes yet."""
        return self.login_state == "pending"

    def mark_password_changed(self, now: datetime) -> None:
        self._refuse_after_termination("change the password of")
        self.trigger_event(Service.PasswordChanged, timestamp=now)

    def mark_operation_failed(self, now: datetime, operation: str, reason: str) -> None:
        self._refuse_after_termination(f"fail the {operation} of")
        self.trigger_event(
            Service.OperationFailed, timestamp=now, operation=operation, reason=reason
        )

    def mark_terminated(self, now: datetime, leftovers: list[dict[str, str]]) -> None:
        if self.status == "terminated":
            return
        self.trigger_event(Service.Terminated, timestamp=now, leftovers=leftovers)

    def reseal_password(self, now: datetime, password_sealed: str, key_id: str) -> bool:
        """Takes the password sealed afresh under key ``key_id``; False (nothing recorded)
        for a terminated service, one ordered without a password, or the same text."""
        if self.status == "terminated" or self.password_sealed in (None, password_sealed):
            return False
        self.trigger_event(
            Service.PasswordResealed,
            timestamp=now,
            password_sealed=password_sealed,
            key_id=key_id,
        )
        return True

    def _refuse_after_termination(self, verb: str) -> None:
        if self.status == "terminated":
            raise Conflict(f"cannot {verb} service {self.service_id}: it is terminated")
