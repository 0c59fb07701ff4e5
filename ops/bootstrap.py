"""The composition root: the one place that builds every real object from Settings.

Every dependency is an argument with a builder here; nothing is built at import time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from starlette.applications import Starlette

from domain.retry_policy import RetryPolicy
from gateway.app import create_app
from handlers.pipeline import Pipeline, PipelineSettings
from handlers.role_handler import RoleHandler
from ops.broker_publisher import BrokerPublisher
from ops.command_ledger import StoreLedger
from ops.database import Database
from ops.deploy_planner import DeployPlanner, provider_settings
from ops.event_store import EventStore
from ops.handler_service import RegistryDirectory, driver_factory
from ops.inbox import Inbox
from ops.outbox_relay import OutboxRelay
from ops.pipeline_store import StorePipelineAdapter
from ops.positions import PositionStore
from ops.projection_runner import ProjectionRunner
from ops.sealing import PasswordSealer
from ops.server_registry import ServerRegistry
from ops.settings import Settings, SettingsError
from ops.transport import Transport
from ops.view_store import SqlViewQueries, ViewStore
from projections.catalogue import all_views


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class System:
    """Everything one process needs, built lazily so each component opens only what it uses."""

    settings: Settings
    clock: Callable[[], datetime] = utc_now
    _store: EventStore | None = None
    _db: Database | None = None
    _transport: Transport | None = None
    _registry: ServerRegistry | None = None
    transport_connected: bool = False
    connect_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def store(self) -> EventStore:
        if self._store is None:
            self._store = EventStore(self.settings.database_url)
        return self._store

    @property
    def db(self) -> Database:
        if self._db is None:
            self._db = Database(self.settings.database_url)
        return self._db

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            self._transport = build_transport(self.settings)
        return self._transport

    def gateway(self) -> Starlette:
        if not self.settings.api_token:
            raise SettingsError("HOSTWRIGHT_API_TOKEN must be set to serve the gateway")
        return create_app(
            ledger=StoreLedger(self.store, self.sealer()),
            views=SqlViewQueries(self.db, self.settings.view_prefix),
            api_token=self.settings.api_token,
            clock=self.clock,
            servers=self.server_registry(),
        )

    def sealer(self) -> PasswordSealer:
        if not self.settings.secret_key:
            raise SettingsError("HOSTWRIGHT_SECRET_KEY must be set (it seals passwords)")
        return PasswordSealer(self.settings.secret_key)

    def relay(self) -> OutboxRelay:
        return OutboxRelay(
            self.store,
            PositionStore(self.db, self.settings.view_prefix),
            self.transport,
            batch_size=self.settings.relay_batch,
        )

    def projection_runner(self) -> ProjectionRunner:
        views = all_views()
        return ProjectionRunner(
            self.store,
            ViewStore(self.db, views, self.settings.view_prefix),
            views,
            batch_size=self.settings.projection_batch,
        )

    def server_registry(self) -> ServerRegistry:
        if self._registry is None:
            self._registry = ServerRegistry(self.store)
        return self._registry

    def retry_policy(self) -> RetryPolicy:
        settings = self.settings
        return RetryPolicy(
            max_attempts=settings.retry_max_attempts,
            initial_backoff_s=settings.retry_initial_backoff_s,
            max_backoff_s=settings.retry_max_backoff_s,
        )

    def pipeline(self) -> Pipeline:
        registry = self.server_registry()
        return Pipeline(
            StorePipelineAdapter(self.store),
            DeployPlanner(registry, provider_settings(self.settings)),
            registry,
            BrokerPublisher(self.transport),
            settings=PipelineSettings(
                policy=self.retry_policy(),
                lease_s=self.settings.lease_s,
                batch_size=self.settings.dispatch_batch,
            ),
            clock=self.clock,
        )

    def role_handler(self, role: str) -> RoleHandler:
        return RoleHandler(
            role,
            directory=RegistryDirectory(self.server_registry(), self.settings.ssh_key),
            publisher=BrokerPublisher(self.transport),
            heartbeat_interval=self.settings.heartbeat_s,
            drivers=driver_factory(self.settings.command_timeout_s),
            unseal=self.sealer().unseal,
        )

    def inbox(self) -> Inbox:
        return Inbox(self.db, self.settings.view_prefix)

    async def close(self) -> None:
        if self._transport is not None:
            await self._transport.close()
        if self._store is not None:
            self._store.close()
        if self._db is not None:
            self._db.close()


def build_transport(settings: Settings) -> Transport:
    if settings.amqp_url:
        from ops.amqp_transport import AmqpTransport

        return AmqpTransport(settings.amqp_url, settings.exchange)
    from ops.inprocess_transport import InProcessTransport

    return InProcessTransport(settings.exchange)
