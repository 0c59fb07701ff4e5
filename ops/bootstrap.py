"""The composition root: the one place that builds every real object from Settings.

Every dependency is an argument with a builder here; nothing is built at import time.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from starlette.applications import Starlette

from domain.server_usage import UsageCadence
from gateway.app import create_app
from gateway.credentials import TokenTable
from handlers.live_lines import BufferedLiveLines
from handlers.pipeline import Pipeline, PipelineSettings
from handlers.role_handler import RoleHandler
from handlers.ssl_desk import SslDesk
from handlers.ssl_install import CertificateInstaller
from handlers.ssl_issue import IssueParts
from handlers.ssl_steps import ssl_actions
from handlers.usage_desk import SharedMail, UsageDesk
from ops.adapters.certificate_book import StoreCertificateBook
from ops.adapters.certificate_inspector import CertificateInspector
from ops.adapters.certificate_ledger import StoreCertificateLedger
from ops.adapters.command_ledger import StoreLedger
from ops.adapters.deploy_planner import DeployPlanner, provider_settings
from ops.adapters.node_directory import RegistryDirectory, driver_factory
from ops.adapters.pipeline_store import StorePipelineAdapter
from ops.adapters.public_suffix import public_suffix_rules
from ops.adapters.rate_ledger import StoreRateLedger
from ops.adapters.runtime_settings_reader import RuntimeSettingsReader
from ops.adapters.sealing import PasswordSealer, signing_key
from ops.adapters.server_registry import ServerRegistry
from ops.adapters.settings_book import StoreSettingsBook, runtime_defaults
from ops.adapters.ssl_wiring import (
    NodeChallenges,
    RegistryDrivers,
    RegistryPreflight,
    acme_account,
    service_id_of,
)
from ops.adapters.step_fence import step_fences
from ops.adapters.step_gate import step_gate
from ops.adapters.ticket_store import StoreTicketAdapter
from ops.adapters.usage_book import StoreUsageBook, StoreUsageRefresh, usage_servers_of
from ops.credentials import credentials_from
from ops.messaging.broker_publisher import BrokerPublisher, transient_publish_error
from ops.messaging.dead_letters import DeadLetterGauge
from ops.messaging.inbox import Inbox
from ops.messaging.live_log import LineBroadcast, TransportTaskLog
from ops.messaging.outbox_relay import OutboxRelay
from ops.messaging.topology import SSL_ROLE
from ops.messaging.transport import Transport
from ops.runtime.gateway_listener import bind_listeners
from ops.services.cron_jobs import cron_jobs, prune_inbox
from ops.services.schedule_claims import ClaimStore
from ops.services.scheduler import Scheduler
from ops.services.ssl import SslFeed
from ops.services.usage import UsageFeed
from ops.settings import Settings, SettingsError
from ops.store.database import Database
from ops.store.event_store import EventStore
from ops.store.positions import PositionStore
from ops.views.live_changes import SqlLiveChanges
from ops.views.projection_runner import ProjectionRunner
from ops.views.ssl_queries import SqlSslQueries
from ops.views.unsettled_services import ViewUnsettledServices
from ops.views.usage_queries import SqlUsageQueries
from ops.views.view_queries import SqlViewQueries
from ops.views.view_store import ViewStore
from projections.catalogue import all_views


def utc_now() -> datetime:
    return datetime.now(UTC)


log = logging.getLogger(__name__)
PUBLIC_URL_UNSET = (
    "HOSTWRIGHT_PUBLIC_URL is not set: client links and the console's cookie follow each "
    "request's scheme and Host (behind a TLS proxy: http:// links, no Secure cookie)"
)


@dataclass
class System:
    """Everything one process needs, built lazily so each component opens only what it uses."""

    settings: Settings
    clock: Callable[[], datetime] = utc_now
    _store: EventStore | None = None
    _db: Database | None = None
    _transport: Transport | None = None
    _registry: ServerRegistry | None = None
    _runtime_settings: RuntimeSettingsReader | None = None
    _listeners: list[socket.socket] | None = None
    transport_connected: bool = False
    connect_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def listeners(self) -> list[socket.socket]:
        """The gateway's sockets, listening from first use (``ListenError`` if it cannot)."""
        if self._listeners is None:
            host, port = self.settings.listen_host, self.settings.listen_port
            self._listeners = bind_listeners(host, port)
        return self._listeners

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

    async def connect_transport(self) -> None:
        """Connects the transport once for every part of this process (raises TransportError
        while the broker is down)."""
        async with self.connect_lock:
            if not self.transport_connected:
                await self.transport.connect()
                self.transport_connected = True

    def credentials(self) -> TokenTable:
        """The gateway's credentials (SettingsError for a bad tokens file, or none at all)."""
        credentials = credentials_from(self.settings)
        if not len(credentials):
            raise SettingsError(
                "the gateway needs a credential: set HOSTWRIGHT_API_TOKEN (WHMCS), "
                "HOSTWRIGHT_STAFF_TOKEN or HOSTWRIGHT_TOKENS_FILE"
            )
        return credentials

    def gateway(self) -> Starlette:
        settings_book = self.settings_book()
        if not self.settings.public_url:
            log.warning(PUBLIC_URL_UNSET)
        return create_app(
            ledger=StoreLedger(self.store, self.sealer()),
            views=SqlViewQueries(self.db, self.settings.view_prefix),
            credentials=self.credentials(),
            clock=self.clock,
            servers=self.server_registry(),
            settings=settings_book,
            provider=provider_settings(self.settings),
            dead_letters=DeadLetterGauge(
                self.transport, connect=self.connect_transport, ssl=self.settings.ssl_auto
            ),
            whmcs_api=all(
                (
                    self.settings.whmcs_url,
                    self.settings.whmcs_identifier,
                    self.settings.whmcs_secret,
                )
            ),
            certificates=StoreCertificateLedger(
                self.certificate_book(),
                self.key_sealer(),
                CertificateInspector.with_system_roots(self.settings.trusted_roots),
                lambda: settings_book.current().ssl,
            ),
            ssl_views=SqlSslQueries(self.db, self.settings.view_prefix),
            usage=SqlUsageQueries(self.db, self.settings.view_prefix),
            usage_refresh=StoreUsageRefresh(
                StoreUsageBook(self.store),
                self.usage_cadence,
                provider_settings(self.settings),
            ),
            live=SqlLiveChanges(self.db, self.settings.view_prefix),
            signing_key=self.screen_signing_key(),
            task_logs=self.task_logs(),
            public_url=self.settings.public_url,
        )

    def task_logs(self) -> TransportTaskLog:
        """A running step's log lines as its role handler sends them on the broker's live
        channel (``role_handler``'s ``live``), for the staff console."""
        return TransportTaskLog(self.transport, connect=self.connect_transport)

    def settings_book(self) -> StoreSettingsBook:
        """The runtime settings (``GET|PUT /v1/settings``), defaults from the process settings."""
        return StoreSettingsBook(self.store, runtime_defaults(self.settings))

    def runtime_settings(self) -> RuntimeSettingsReader:
        """This process's one cached reader of the runtime settings (call ``refresh()`` on it
        when a ``RuntimeSettings.Changed`` event arrives)."""
        if self._runtime_settings is None:
            self._runtime_settings = RuntimeSettingsReader(self.settings_book())
        return self._runtime_settings

    def sealer(self) -> PasswordSealer:
        if not self.settings.secret_key:
            raise SettingsError("HOSTWRIGHT_SECRET_KEY must be set (it seals passwords)")
        return PasswordSealer(self.settings.secret_key, self.settings.retired_secret_keys)

    def screen_signing_key(self) -> bytes:
        """Signs client links and staff console sessions (``gateway.screens``)."""
        if not self.settings.secret_key:
            raise SettingsError("HOSTWRIGHT_SECRET_KEY must be set (it signs client links)")
        return signing_key(self.settings.secret_key, "screens")

    def key_sealer(self) -> PasswordSealer:
        """Seals private keys (ACME account, orders, custom certificates): the same secret
        keys as passwords, another purpose, so neither opens as the other."""
        return self.sealer().for_purpose("private-key")

    def certificate_book(self) -> StoreCertificateBook:
        return StoreCertificateBook(self.store)

    def rate_ledger(self) -> StoreRateLedger:
        return StoreRateLedger(self.store)

    def relay(self) -> OutboxRelay:
        return OutboxRelay(
            self.store,
            PositionStore(self.db, self.settings.view_prefix),
            self.transport,
            batch_size=self.settings.relay_batch,
            ssl=self.settings.ssl_auto,
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

    def ticket_store(self) -> StoreTicketAdapter:
        return StoreTicketAdapter(self.store, PositionStore(self.db, self.settings.view_prefix))

    def pipeline(self) -> Pipeline:
        registry = self.server_registry()
        runtime = self.runtime_settings()

        def settings_now() -> PipelineSettings:
            values = runtime.current()
            return PipelineSettings(
                policy=values.policy(),
                lease_s=self.settings.lease_s,
                batch_size=values.batch_size,
            )

        return Pipeline(
            StorePipelineAdapter(self.store, self.db, self.settings.view_prefix),
            DeployPlanner(registry, provider_settings(self.settings), ssl=self.settings.ssl_auto),
            RuntimeLimits(runtime, registry),
            BrokerPublisher(self.transport),
            settings=settings_now,
            clock=self.clock,
            unsettled=ViewUnsettledServices(self.db, self.settings.view_prefix),
            transient_publish_error=transient_publish_error,
        )

    def role_handler(self, role: str) -> RoleHandler:
        actions = None
        if role == SSL_ROLE:  # records that a certificate is wanted; the desk gets it
            runtime = self.runtime_settings()
            actions = ssl_actions(
                self.certificate_book(), lambda: runtime.current().ssl, self.clock
            )
        return RoleHandler(
            role,
            actions=actions,
            directory=RegistryDirectory(self.server_registry(), self.settings.ssh_key),
            # a step that ran gets its result out once the broker is back
            publisher=BrokerPublisher(self.transport, wait_out_outages=True),
            heartbeat_interval=self.settings.heartbeat_s,
            drivers=driver_factory(self.settings.command_timeout_s),
            unseal=self.sealer().unseal,
            gate=step_gate(self.settings.database_url, self.store),
            live=BufferedLiveLines(LineBroadcast(self.transport)),
        )

    def ssl_feed(self) -> tuple[SslFeed, Callable[[], Awaitable[None]]]:
        """The SSL desk and what feeds it (ops/services/ssl.py), with what closes its parts."""
        runtime = self.runtime_settings()
        book, sealer = self.certificate_book(), self.key_sealer()
        fences = step_fences(self.settings.database_url)
        registry = self.server_registry()
        drivers = RegistryDrivers(
            RegistryDirectory(registry, self.settings.ssh_key),
            driver_factory(self.settings.command_timeout_s),
        )
        account = acme_account(self.settings, book, sealer, self.clock)
        parts = IssueParts(
            guard=self.rate_ledger(),
            preflight=RegistryPreflight(self.settings, registry, account),
            challenges=NodeChallenges(),
            drivers=drivers,
            sealer=sealer,
            suffixes=public_suffix_rules(),
            profile=self.settings.acme_profile,
        )
        queries = SqlSslQueries(self.db, self.settings.view_prefix)
        desk = SslDesk(
            book,
            parts,
            account,
            CertificateInstaller(fences),
            fences,
            lambda: runtime.current().ssl,
            self.clock,
            listing=queries,
        )
        feed = SslFeed(
            desk,
            queries,
            service_id_of(self.store),
            self.clock,
            concurrency=self.settings.ssl_concurrency,
            limit=self.settings.ssl_concurrency * 4,
        )

        async def close() -> None:
            account.close()
            await drivers.close()
            fences.close()

        return feed, close

    def usage_cadence(self) -> UsageCadence:
        """The usage syncs' cadence now: period and freshness are runtime settings, the
        retry's first delay and the lease process settings. Reads the store (cached for a
        few seconds): call it in a thread."""
        usage = self.runtime_settings().current().usage
        return UsageCadence(
            period_s=usage.period_s,
            fresh_s=usage.fresh_s,
            retry_s=self.settings.usage_retry_s,
            lease_s=self.settings.usage_lease_s,
        )

    def usage_desk(self, drivers: RegistryDrivers | None = None) -> UsageDesk:
        """The usage desk (handlers/usage_desk.py); ``drivers`` reach the nodes (a desk
        that only takes refreshes, the gateway's, needs none)."""
        provider = provider_settings(self.settings)
        shared = None
        if provider is not None:
            shared = SharedMail(provider.shared_mail_user, provider.provider_domain)
        return UsageDesk(
            StoreUsageBook(self.store),
            drivers,
            self.usage_cadence,
            self.clock,
            shared_mail=shared,
        )

    def usage_feed(self) -> tuple[UsageFeed, Callable[[], Awaitable[None]]]:
        """The usage desk and what feeds it (ops/services/usage.py), with what closes it."""
        registry = self.server_registry()
        drivers = RegistryDrivers(
            RegistryDirectory(registry, self.settings.ssh_key),
            driver_factory(self.settings.command_timeout_s),
        )
        feed = UsageFeed(
            self.usage_desk(drivers),
            usage_servers_of(StoreUsageBook(self.store), provider_settings(self.settings)),
            lambda: [server.server_id for server in registry.servers()],
            concurrency=self.settings.handler_concurrency,
        )
        return feed, drivers.close

    def scheduler(self) -> Scheduler:
        return Scheduler(
            cron_jobs(
                self.settings,
                self.transport,
                {"inbox": prune_inbox(self.inbox(), self.settings.inbox_retention_hours * 3600)},
            ),
            ClaimStore(self.db, self.settings.view_prefix),
            clock=lambda: self.clock().timestamp(),
        )

    def inbox(self) -> Inbox:
        return Inbox(self.db, self.settings.view_prefix)

    async def close(self) -> None:
        for listener in self._listeners or ():
            listener.close()
        if self._transport is not None:
            await self._transport.close()
        if self._store is not None:
            self._store.close()
        if self._db is not None:
            self._db.close()


def build_transport(settings: Settings) -> Transport:
    if settings.amqp_url:
        from ops.messaging.amqp_transport import AmqpTransport

        return AmqpTransport(settings.amqp_url, settings.exchange)
    from ops.messaging.inprocess_transport import InProcessTransport

    return InProcessTransport(settings.exchange)


class RuntimeLimits:
    """Each server's limit: the runtime settings' override, else what it was registered with."""

    def __init__(self, runtime: RuntimeSettingsReader, registry: ServerRegistry) -> None:
        self._runtime = runtime
        self._registry = registry

    def max_concurrency(self, server_id: str) -> int:
        registered = self._registry.max_concurrency(server_id)
        return self._runtime.current().max_concurrency(server_id, registered=registered)
