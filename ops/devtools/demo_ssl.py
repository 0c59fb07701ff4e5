"""Automatic SSL in ``hostwright demo``, when Debian's ``pebble`` (Let's Encrypt's test CA) is
installed: a local pebble issues the demo's certificates, so SSL goes green in the demo.

``DemoSsl`` runs pebble (its folder ``DIR/pebble``) and, in the demo's event loop, a
DelegationDns (the registry and the only resolver hostwright and pebble ask, on loopback),
and lays the demo's nodes out as automatic SSL needs them: each on an address of its own
(``NODE_IPS``) sharing one DNS, HTTP and HTTPS port (``SharedPorts``), since pebble dials a
name's A record on one HTTP-01 port. ``settings(base)`` turns ``HOSTWRIGHT_SSL=auto`` on with
the ACME settings for pebble; ``point_dns(store, ips)`` plays every customer pointing
their domain at us: each service's domain is delegated to the DNS nodes it was placed on as
soon as it is placed (the provider's own zone at once), so its certificates are issued at
their first check. ``lines()`` says where pebble's root is and how to see a certificate.

Pebble makes a new root on every start: certificates issued by an earlier run of the demo do
not verify against the root a later run prints.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from eventsourcing.utils import get_topic

from domain.service import Service
from ops.adapters.public_suffix import DEBIAN_LIST
from ops.devtools.delegation_dns import DelegationDns
from ops.devtools.demo_nodes import PROVIDER_DOMAIN, SharedPorts
from ops.devtools.pebble import PEBBLE, Pebble
from ops.settings import Settings
from ops.store.event_store import EventStore

log = logging.getLogger(__name__)

# the demo's nodes with pebble: an address each (pebble and the pre-flight reach a name's
# node by its A record), the ports shared
NODE_IPS = {
    "web1": "127.0.0.81",
    "mail1": "127.0.0.82",
    "dns1": "127.0.0.83",
    "dns2": "127.0.0.84",
    "uni1": "127.0.0.85",
}
PROVIDER_DNS_NODES = ("dns1", "dns2")  # where the provider's zone is delegated
POINT_EVERY_S = 0.5
_TOPICS = [get_topic(Service.Ordered), get_topic(Service.Placed)]


def missing_packages() -> list[str]:
    """The Debian packages the demo's automatic SSL needs and this machine lacks: pebble, and
    the Public Suffix List the rate guard reads."""
    wanted = {"pebble": Path(PEBBLE), "publicsuffix": DEBIAN_LIST}
    return [package for package, path in wanted.items() if not path.is_file()]


def pebble_installed() -> bool:
    return not missing_packages()


class DemoSsl:
    """Pebble and the registry for the demo (module docstring)."""

    def __init__(self, data: Path) -> None:
        self.folder = data / "pebble"
        self.ports = SharedPorts(dns=_free_port(), http=_free_port(), https=_free_port())
        # its port is chosen now: pebble, started before the event loop, is told it
        self.resolver = DelegationDns("127.0.0.1", _free_port(), auth_port=self.ports.dns)
        self.pebble: Pebble | None = None
        self._pointed: set[str] = set()

    def start_pebble(self) -> None:
        """Starts pebble (before the demo's settings are made: they name its directory).
        It asks the resolver, started in the event loop by ``start_resolver``, only when it
        validates a challenge."""
        pebble = Pebble(
            self.folder,
            http_port=self.ports.http,
            tls_port=_free_port(),
            dns_server=self.resolver.address,
        )
        pebble.start()
        self.pebble = pebble

    async def start_resolver(self) -> None:
        await self.resolver.start()
        servers = [
            (f"ns{i}.{PROVIDER_DOMAIN}", NODE_IPS[s]) for i, s in enumerate(PROVIDER_DNS_NODES, 1)
        ]
        self.resolver.delegate(PROVIDER_DOMAIN, servers)

    def stop_pebble(self) -> None:
        if self.pebble is not None:
            self.pebble.stop()

    async def stop_resolver(self) -> None:
        await self.resolver.stop()

    def settings(self, base: Settings) -> Settings:
        pebble = self._running()
        return replace(
            base,
            ssl="auto",
            cron_ssl_s=1.0,
            acme_directory=pebble.directory_url,
            acme_ca_bundle=str(pebble.ca_bundle_path),
            trusted_roots=str(pebble.roots_path),
            dns_resolvers=self.resolver.address,
            dns_authoritative_port=self.ports.dns,
            http01_port=self.ports.http,
            tls_probe_port=self.ports.https,
        )

    def lines(self, sample_domain: str) -> list[str]:
        """Where pebble's root is and how to look at a certificate the demo issued."""
        roots = self._running().roots_path
        port, ip = self.ports.https, NODE_IPS["web1"]
        return [
            f"ssl: auto, certificates from a local pebble (Let's Encrypt's test CA); "
            f"pebble's root: {roots}",
            f"see a certificate: curl -v --cacert {roots} --resolve {sample_domain}:{port}:{ip} "
            f"https://{sample_domain}:{port}/ (the handshake verifies; the site answers 404)",
        ]

    async def point_dns(self, store: EventStore, ips: dict[str, str]) -> None:
        """Until cancelled: delegates each placed service's domain to its DNS nodes, read
        from the store (``Service.Ordered`` for the domain, ``Service.Placed`` for the
        nodes), so pointing costs the gateway nothing and the log no lines."""
        follower = _PlacementFollower(store)
        while True:
            for domain, dns_servers in await asyncio.to_thread(follower.placed):
                servers = [(f"ns{i}.{domain}", ips[s]) for i, s in enumerate(dns_servers, 1)]
                self.resolver.delegate(domain, servers)
                log.info("demo: %s now points at %s", domain, ", ".join(dns_servers))
            await asyncio.sleep(POINT_EVERY_S)

    def _running(self) -> Pebble:
        if self.pebble is None:
            raise RuntimeError("pebble is not started")
        return self.pebble


class _PlacementFollower:
    """Follows the store for services placed since the last look (vanity ones aside: their
    names live in the provider's zone, pointed at the start)."""

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self._after = 0
        self._ordered: dict[uuid.UUID, tuple[str, str]] = {}  # aggregate → (domain, mode)

    def placed(self) -> list[tuple[str, list[str]]]:
        found: list[tuple[str, list[str]]] = []
        for notification in self._store.notifications_of(_TOPICS, after=self._after):
            self._after = notification.id
            event: Any = self._store.decode(notification)
            if notification.topic == _TOPICS[0]:
                self._ordered[event.originator_id] = (event.domain, event.mode)
                continue
            domain, mode = self._ordered.get(event.originator_id, ("", "vanity"))
            dns_servers = [str(s) for s in event.placement.get("dns_servers", [])]
            if mode != "vanity" and dns_servers:
                found.append((domain, dns_servers))
        return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
