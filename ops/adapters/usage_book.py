"""``StoreUsageBook``: the usage desk's UsageBook (handlers/usage_desk.py) over the event store,
and what the desk's feed needs to know of services.

Consumes decisions on ServerUsage aggregates; emits the aggregates as saved. Every change is
load → decide → save in one transaction through the store's unit of work, decided again on
fresh state when another writer recorded first: two refreshes of one node at once queue one
sync, two desks taking one sync start it once.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from domain.provider_settings import ProviderSettings
from domain.server_usage import ServerUsage, UsageCadence, asked, server_usage_uuid
from domain.service import Service, service_uuid
from domain.step_chain import derive_username
from domain.usage_accounts import service_accounts
from handlers.usage_desk import ListingDecision, UsageDecision
from ops.store.event_store import EventStore
from ops.store.unit_of_work import Decision, Repository

_CONFLICT_ATTEMPTS = 10
# a node's ServerUsage gains 3-4 events per sync, forever: every tick and refresh loads it
# from its latest snapshot and at most this many events more
SNAPSHOT_EVERY = 50


class StoreUsageBook:
    """Implements ``handlers.usage_desk.UsageBook``. Synchronous, like the store."""

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self._usages: Repository[ServerUsage] = store.repository(
            ServerUsage, "server usage", snapshot_every=SNAPSHOT_EVERY
        )
        self._services: Repository[Service] = store.repository(Service, "service")

    def usage(self, server_id: str) -> ServerUsage | None:
        return self._usages.find(server_usage_uuid(server_id))

    def update(self, server_id: str, decide: UsageDecision, busy: str) -> ServerUsage | None:
        def decided() -> Decision[ServerUsage | None]:
            usage = decide(self.usage(server_id))
            return Decision(usage, _changed(usage))

        return self._store.work.run(decided, busy=busy, attempts=_CONFLICT_ATTEMPTS)

    def record_listings(self, server_id: str, decide: ListingDecision, busy: str) -> None:
        """Loads the node's ServerUsage afresh, lets ``decide`` end its sync and emit the
        listings, saves them all in one transaction (decided again on a conflict)."""

        def decided() -> Decision[None]:
            usage = self.usage(server_id)
            if usage is None:
                return Decision(None)
            listings = decide(usage)
            return Decision(None, (*_changed(usage), *listings))

        self._store.work.run(decided, busy=busy, attempts=_CONFLICT_ATTEMPTS)

    def service(self, service_id: str) -> Service | None:
        return self._services.find(service_uuid(service_id))

    def store_services(self) -> Repository[Service]:
        return self._services


def _changed(aggregate: Any) -> tuple[Any, ...]:
    return (aggregate,) if aggregate is not None and aggregate.pending_events else ()


def usage_servers(service: Service, provider: ProviderSettings | None) -> list[str]:
    """The nodes a service's figures come from: its accounts' nodes, and for a vanity service
    the node holding the provider's shared mail user (its mailbox is listed there)."""
    user = service.username or derive_username(service.domain, service.service_id)
    servers = [a.server_id for a in service_accounts(service.mode, user, service.placement)]
    if service.mode == "vanity" and service.placement:
        mail = (provider.mail_server if provider else None) or service.placement.get("mail_server")
        if mail:
            servers.append(str(mail))
    return list(dict.fromkeys(servers))


def usage_servers_of(
    book: StoreUsageBook, provider: ProviderSettings | None
) -> Callable[[uuid.UUID], list[str]]:
    """A Service aggregate's id → the nodes its figures come from ([]: no such service)."""
    services = book.store_services()

    def find(aggregate_id: uuid.UUID) -> list[str]:
        service = services.find(aggregate_id)
        return [] if service is None else usage_servers(service, provider)

    return find


class StoreUsageRefresh:
    """Implements ``gateway.ports.UsageRefresh``: a refresh of each node asked, in one
    decision per node (joined when one is pending or fresh)."""

    def __init__(
        self,
        book: StoreUsageBook,
        cadence: Callable[[], UsageCadence],
        provider: ProviderSettings | None,
    ) -> None:
        self._book = book
        self._cadence = cadence
        self._provider = provider

    def refresh(self, server_ids: list[str], by: str, now: datetime) -> dict[str, str]:
        outcomes: dict[str, str] = {}
        for server_id in server_ids:

            def decide(usage: ServerUsage | None, server_id: str = server_id) -> ServerUsage:
                usage, outcomes[server_id] = asked(usage, server_id, now, by, self._cadence())
                return usage

            self._book.update(server_id, decide, f"the usage of server {server_id} kept changing")
        return outcomes

    def servers_of(self, service_id: str) -> list[str] | None:
        """The nodes a service's figures come from; None when there is no such service."""
        service = self._book.service(service_id)
        return None if service is None else usage_servers(service, self._provider)
