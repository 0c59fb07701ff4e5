"""What the gateway needs from the rest of the system, as ports. ops/ provides the real ones.

Both are synchronous (the store and views sit behind a database); the app calls them
through ``asyncio.to_thread``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from domain.commands import Command, OrderService


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


class ViewQueries(Protocol):
    """Reads of the projections' views."""

    def service(self, service_id: str) -> dict[str, Any] | None: ...

    def oplog(
        self, *, service_id: str | None, since: datetime | None, limit: int
    ) -> list[dict[str, Any]]: ...
