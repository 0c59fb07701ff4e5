"""``StoreLedger``: the gateway's CommandLedger port over the event store.

It consumes validated commands and emits events through ``EventStore``; an order's password
is sealed here, so the clear text never reaches the store, the outbox or the broker.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from domain.commands import Command, OrderService
from ops.event_store import EventStore
from ops.sealing import PasswordSealer


class StoreLedger:
    """Implements ``gateway.ports.CommandLedger``. Synchronous, like the store behind it."""

    def __init__(self, store: EventStore, sealer: PasswordSealer) -> None:
        self._store = store
        self._sealer = sealer

    def order_service(self, command: OrderService) -> bool:
        sealed = None if command.password is None else self._sealer.seal(command.password)
        return self._store.order_service(command, sealed)

    def request(self, command: Command) -> bool:
        return self._store.request(command)

    def events_of(self, service_id: str, as_of: datetime | None) -> list[dict[str, Any]]:
        return self._store.events_of(service_id, as_of)

    def ping(self) -> None:
        self._store.max_notification_id()
