"""The SSL desk's real parts, built from the process settings (ops/bootstrap.py ``ssl_desk``).

- ``RegistryDrivers``: the desk's ``NodeDrivers`` — one driver (and its SSH pool) per
  registered node, made from the registry as the role handlers make theirs, remade when the
  node is registered again;
- ``NodeChallenges``: ``ChallengeSpots`` behind the desk's ``Challenges`` port (HTTP-01 files
  get a log of their own: the desk has no step to show it in);
- ``RegistryPreflight``: ``Preflight`` over ``HOSTWRIGHT_DNS_RESOLVERS`` (else the system's),
  ``HOSTWRIGHT_DNS_AUTHORITATIVE_PORT``, ``_HTTP01_PORT``, ``_TLS_PROBE_PORT`` and
  ``_TRUSTED_ROOTS``, where "our DNS" is the registered DNS nodes' addresses as they are now
  and the CA's CAA identities come from its directory;
- ``acme_account``: the fleet's account at ``HOSTWRIGHT_ACME_DIRECTORY``, reached with
  ``HOSTWRIGHT_ACME_CA_BUNDLE`` trusted, ``HOSTWRIGHT_ACME_EMAIL`` its contact;
- ``service_id_of``: a Service aggregate's id back to its service id (the desk's feed).

Consumes Settings, the server registry and the store; emits nothing of its own.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path

from domain.service import Service
from domain.ssl_types import CertificateFacts, DnsTarget, Http01Spot, PreflightVerdict
from handlers.acme_client import AcmeClient
from handlers.dns_authority import Authorities, system_resolvers
from handlers.hestia_driver import NodeAccess
from handlers.role_handler import ClosableDriver, DriverFactory, ServerDirectory
from handlers.ssl_account import SslAccount
from handlers.ssl_challenges import ChallengeSpots
from handlers.ssl_ports import AcmeSource, CertificateBook, KeySealer, PlaceToken, RemoveToken
from handlers.ssl_preflight import Preflight
from handlers.step import NodeDriver, StepLog
from ops.adapters.server_registry import ServerRegistry
from ops.settings import Settings
from ops.store.event_store import EventStore


class RegistryDrivers:
    """Implements ``handlers.ssl_ports.NodeDrivers``; ``close`` ends every SSH pool."""

    def __init__(self, directory: ServerDirectory, make: DriverFactory) -> None:
        self._directory = directory
        self._make = make
        self._drivers: dict[str, tuple[NodeAccess, ClosableDriver]] = {}

    async def driver(self, server_id: str) -> NodeDriver:
        access = await self._directory.node_access(server_id)
        if access is None:
            raise LookupError(f"no server {server_id!r} is registered")
        known = self._drivers.get(server_id)
        if known is not None and known[0] == access:
            return known[1]
        if known is not None:
            await known[1].close()
        driver = self._make(access)
        self._drivers[server_id] = (access, driver)
        return driver

    async def close(self) -> None:
        drivers, self._drivers = self._drivers, {}
        for _, driver in drivers.values():
            await driver.close()


class NodeChallenges:
    """Implements ``handlers.ssl_ports.Challenges`` over ``ChallengeSpots``."""

    def __init__(self, spots: ChallengeSpots | None = None) -> None:
        self._spots = spots or ChallengeSpots()

    async def put_http01(self, driver: NodeDriver, spot: Http01Spot, token: str, body: str) -> None:
        await self._spots.put_http01(driver, spot, token, body, StepLog())

    async def remove_http01(self, driver: NodeDriver, spot: Http01Spot, token: str) -> None:
        await self._spots.remove_http01(driver, spot, token, StepLog())

    async def add_txt(
        self, driver: NodeDriver, target: DnsTarget, fqdn: str, value: str, log: StepLog
    ) -> None:
        await self._spots.add_txt(driver, target, fqdn, value, log)

    async def remove_txt(
        self, driver: NodeDriver, target: DnsTarget, fqdn: str, value: str, log: StepLog
    ) -> None:
        await self._spots.remove_txt(driver, target, fqdn, value, log)


class RegistryPreflight:
    """Implements ``handlers.ssl_ports.PreflightChecks``: a ``Preflight`` whose "our DNS" is
    the registered DNS nodes now (made again when they change; what the last DNS check
    confirmed is kept until then)."""

    def __init__(self, settings: Settings, registry: ServerRegistry, acme: AcmeSource) -> None:
        resolvers = settings.dns_resolver_addresses or system_resolvers()
        self._authorities = Authorities(resolvers, port=settings.dns_authoritative_port)
        self._settings = settings
        self._registry = registry
        self._acme = acme
        roots = settings.trusted_roots
        self._roots_pem = Path(roots).read_text() if roots else ""
        self._made: tuple[frozenset[str], Preflight] | None = None

    async def dns(
        self,
        names: Sequence[str],
        addresses: Iterable[str],
        *,
        wildcard: bool = False,
        dns01_possible: bool = True,
    ) -> PreflightVerdict:
        preflight = await self._preflight()
        return await preflight.dns(
            names, addresses, wildcard=wildcard, dns01_possible=dns01_possible
        )

    async def tls(
        self,
        names: Sequence[str],
        address: str,
        now: datetime,
        renew_from: Callable[[CertificateFacts], datetime],
    ) -> CertificateFacts | None:
        return await (await self._preflight()).tls(names, address, now, renew_from)

    async def http01(
        self, name: str, address: str, place: PlaceToken, remove: RemoveToken
    ) -> str | None:
        return await (await self._preflight()).http01(name, address, place, remove)

    async def txt_visible(self, fqdn: str, value: str, servers: Iterable[str]) -> bool:
        return await (await self._preflight()).txt_visible(fqdn, value, servers)

    async def _preflight(self) -> Preflight:
        servers = await asyncio.to_thread(self._registry.servers)
        ours = frozenset(s.ip for s in servers if "dns" in s.roles)
        if self._made is None or self._made[0] != ours:
            preflight = Preflight(
                self._authorities,
                issuer_ids=self._issuer_ids,
                account_uri=self._account_uri,
                our_dns=ours,
                http_port=self._settings.http01_port,
                tls_port=self._settings.tls_probe_port,
                trusted_roots_pem=self._roots_pem,
            )
            self._made = (ours, preflight)
        return self._made[1]

    async def _issuer_ids(self) -> frozenset[str]:
        client = await self._acme.client()
        return frozenset((await client.directory()).caa_identities)

    async def _account_uri(self) -> str | None:
        return (await self._acme.client()).account_url


def acme_account(
    settings: Settings, book: CertificateBook, sealer: KeySealer, clock: Callable[[], datetime]
) -> SslAccount:
    """The fleet's ACME account at the configured directory (registered on first use)."""

    def connect(directory: str, key_pem: str, account_url: str | None) -> AcmeClient:
        return AcmeClient(
            directory, key_pem, account_url=account_url, ca_bundle=settings.acme_ca_bundle
        )

    contact = [settings.acme_email] if settings.acme_email else []
    return SslAccount(book, sealer, connect, settings.acme_directory, clock=clock, contact=contact)


def service_id_of(store: EventStore) -> Callable[[uuid.UUID], str | None]:
    """A Service aggregate's id → its service id (None: no such service)."""
    services = store.repository(Service, "service")

    def find(aggregate_id: uuid.UUID) -> str | None:
        service = services.find(aggregate_id)
        return None if service is None else service.service_id

    return find
