"""What the gateway needs from the rest of the system, as ports. ops/ provides the real ones.

Both are synchronous (the store and views sit behind a database); the app calls them
through ``asyncio.to_thread``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, Protocol

from domain.commands import Command, OrderService
from domain.runtime_settings import RuntimeSettingsValues, SettingsApplied, SettingsUpdate
from domain.server import RegisterServer, RekeyServer
from domain.ssl_requests import CustomUpload
from domain.task_bulk import ChangeTasksInBulk


class CommandLedger(Protocol):
    """Records commands as events; the only way the gateway changes anything."""

    def order_service(self, command: OrderService) -> bool:
        """True when recorded; False when the same order was recorded before.
        Raises Conflict when the service id exists with other details."""

    def request(self, command: Command) -> bool:
        """True when recorded; False when already satisfied. Raises NotFound / Conflict."""

    def events_of(self, service_id: str, as_of: datetime | None) -> list[dict[str, Any]]:
        """The service's raw events (secrets removed). Raises NotFound."""

    def ping(self) -> None:
        """Raises when the store cannot be reached."""

    def recorded_service(self, service_id: str) -> dict[str, Any] | None:
        """The service as the store holds it, in the fields of a services-view row
        (``service_id, client_id, mode, domain, label, status, plan, hestia_user, placement,
        ordered_at, updated_at, requested``; no progress), for a read the views have not
        caught up with yet; None when no such service was ordered."""

    def retry_task(self, task_id: str, now: datetime, actor: str) -> bool:
        """Records Task.Retried (True). Raises NotFound for an unknown task id, Conflict when
        the task is not in error or cancelled."""

    def retry_failed_deploy(
        self, service_id: str, task_ids: Sequence[str], now: datetime, actor: str
    ) -> list[str]:
        """A customer's Try again: records Task.Retried on each of ``task_ids`` (candidates
        the views' timeline found) that the domain's rules let a customer run again
        (``domain.customer_changes``: the service's own steps in ``error``), deciding on the
        service and each task as the store holds them. Returns the ids retried. Raises
        NotFound for an unknown service, Conflict when the service may not be tried again
        (not ``deploy_failed``, or a suspend or terminate asked for) or nothing was."""

    def cancel_task(self, task_id: str, now: datetime, actor: str) -> bool:
        """Records Task.Cancelled (True). Raises NotFound for an unknown task id, Conflict
        when the task has already finished (succeeded, error or cancelled)."""

    def change_tasks(self, command: ChangeTasksInBulk, task_ids: Sequence[str]) -> list[str]:
        """Lets ``command`` decide on each task named (candidates the task-queue view found)
        and records what it decides — Task.Hidden or Task.Errored — many tasks per save.
        Returns the ids of the tasks it changed, in the order given; skips unknown ids."""


class DeadLetters(Protocol):
    """How many messages each dead-letter queue holds (asynchronous: the broker's client
    lives on the event loop)."""

    async def counts(self) -> dict[str, int] | None:
        """``{"<queue>.dead": messages}``; None when the broker cannot tell now."""


class ViewQueries(Protocol):
    """Reads of the projections' views."""

    def service(self, service_id: str) -> dict[str, Any] | None: ...

    def services_page(
        self,
        *,
        status: str | None = None,
        mode: str | None = None,
        client_id: str | None = None,
        server_id: str | None = None,
        domain: str | None = None,
        after: tuple[str, str] | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Services rows matching every filter given (``server_id``: placed there in any
        role; ``domain``: a case-insensitive substring), newest order first by
        ``(ordered_at, service_id)``, the first ``limit`` after ``after``, that pair of the
        last row of the page before."""

    def oplog(
        self, *, service_id: str | None, since: datetime | None, limit: int
    ) -> list[dict[str, Any]]: ...

    def timeline(self, service_id: str) -> list[dict[str, Any]] | None:
        """The steps of the service's latest run in order; None for an unknown service."""

    def tasks(
        self,
        *,
        state: str | None = None,
        service_id: str | None = None,
        server_id: str | None = None,
        stuck: bool | None = None,
        limit: int = 200,
        now: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """Visible (not hidden) task-queue rows matching every filter given, without logs.
        ``stuck`` and ``stuck_since`` count a dispatched task past its lease at ``now``."""

    def task(self, task_id: str, now: datetime | None = None) -> dict[str, Any] | None:
        """One visible task-queue row with its ``log``; None when unknown."""

    def task_ids(
        self,
        *,
        states: Sequence[str] = (),
        finished_before: datetime | None = None,
        stuck_before: datetime | None = None,
        service_id: str | None = None,
        server_id: str | None = None,
    ) -> list[str]:
        """Ids of visible tasks, oldest first, in one of ``states`` (any when empty),
        finished at or before ``finished_before``, stuck since at or before
        ``stuck_before`` (open, with a lease that ran out by then and no sign of life since),
        and of the service and node given."""


class ServerBook(Protocol):
    """The registered nodes."""

    def register(self, command: RegisterServer) -> bool:
        """Records the registration; False when the node is registered unchanged already.
        Raises Conflict when it would change the node's host, port or host key."""

    def rekey(self, command: RekeyServer) -> dict[str, Any]:
        """Records a new host, port or host key; ``{"changed", "previous_fingerprint",
        "fingerprint"}``. Raises NotFound for a node not registered."""

    def listing(self) -> list[dict[str, Any]]:
        """Every registered node as JSON-ready dicts (public data only)."""

    def unregistered(self, server_ids: Collection[str]) -> list[str]:
        """The ids among ``server_ids`` that name no registered node (a node registered a
        moment ago, through another gateway, is registered)."""


class SettingsBook(Protocol):
    """The runtime settings (retry policy, concurrency, batch size, tickets, queue)."""

    def current(self) -> RuntimeSettingsValues:
        """The values in force (the defaults while no change is recorded)."""

    def change(self, update: SettingsUpdate, now: datetime, actor: str) -> SettingsApplied:
        """Records the update when it changes something (``changed`` empty when not).
        Raises InvalidInput, recording nothing, when the merged values are not valid."""


class CertificateLedger(Protocol):
    """Records what callers ask of a service's certificates (Certificate events)."""

    def request_issue(self, service_id: str, role: str, now: datetime, actor: str) -> None:
        """Records ``IssueRequested``. NotFound for an unknown service or a certificate not
        seeded yet; Conflict for a custom certificate, a retired one, or a rate-limit freeze
        (with the time it ends)."""

    def upload_custom(
        self, service_id: str, role: str, upload: CustomUpload, now: datetime, actor: str
    ) -> None:
        """Checks the certificate (InvalidInput with the reason, nothing recorded), seals the
        key, records ``CustomUploaded``. NotFound / Conflict as ``request_issue``."""

    def remove_custom(self, service_id: str, role: str, now: datetime, actor: str) -> bool:
        """Records ``CustomRemoved`` (True); False when the role has no custom certificate."""


class SslViews(Protocol):
    def ssl(self, service_id: str) -> list[dict[str, Any]]:
        """The service's certificates as the SSL view has them ([] when none)."""


class UsageViews(Protocol):
    """The usage view (projections/usage_view.py): the gauges' and the bills' one source."""

    def service_usage(self, service_id: str) -> dict[str, Any] | None: ...

    def usage_as_of(self, service_id: str, at: datetime) -> dict[str, Any] | None:
        """The service's sums in force at ``at``; None before its first listing."""

    def usage_page(
        self, *, sort: str, descending: bool, limit: int, offset: int, client_id: str | None
    ) -> list[dict[str, Any]]: ...

    def usage_summary(
        self, client_id: str | None = None, month: str | None = None
    ) -> dict[str, Any]: ...

    def nodes(self) -> list[dict[str, Any]]: ...

    def billing_rows(self) -> list[dict[str, Any]]: ...

    def position(self) -> int:
        """The view's position in the store: the same position, the same rows."""


class UsageRefresh(Protocol):
    """Asks nodes for a usage sync (joined when one is pending or fresh)."""

    def refresh(self, server_ids: list[str], by: str, now: datetime) -> dict[str, str]:
        """Each node's outcome: ``queued``, ``joined`` or ``fresh``."""

    def servers_of(self, service_id: str) -> list[str] | None:
        """The nodes a service's figures come from; None when no such service was ordered."""
