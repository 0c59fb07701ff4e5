"""Drives ``hostwright bench ssl``: pebble, a DelegationDns, four simulated nodes and every
part of hostwright with ``HOSTWRIGHT_SSL=auto``; orders the services, points their DNS here,
and waits for their certificates to be served.

Shape: the embedded default (one ``hostwright up`` process, a SQLite file and the in-process
transport), or as ``bench deploy`` (every part its own ``hostwright serve …`` process on
RabbitMQ and a scratch PostgreSQL database) plus ``scheduler`` (the ``cron.ssl`` tick) and
``handler ssl`` (the SSL desk); each node a ``hostwright simnode`` process, its folder on
tmpfs when there is one. The desk looks for due certificates every second. As in
tests/support/ssl_deployment.py, the nodes listen on addresses of their own (127.0.0.9x)
sharing one DNS, HTTP and HTTPS port, and the DelegationDns, run in this process, is
hostwright's and pebble's only resolver: nothing leaves 127.0.0.0/8.

The run: a warm-up domain (the ACME account is made, connections opened) goes all the way to
served; then ``domains`` Split services are ordered with no DNS pointing at us — each
certificate's first check fails its pre-flight (the name does not exist) and fast mode
schedules the next — and once every certificate has failed one, every domain is pointed
here (all at once, or ``point_rate`` a second), and the run waits until every certificate is
installed, or held (frozen: the rate guard or failures). Then each installed certificate is
fetched over HTTPS by SNI for every one of its names and verified against pebble's root.

Consumes a scratch database, virtual host and folder; emits an SslRun.
"""

from __future__ import annotations

import asyncio
import secrets
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509

from ops.devtools.bench.deploy.driver import (
    PARTS,
    environment,
    log_path,
    register,
    start_parts,
    stop_parts,
)
from ops.devtools.bench.scratch import free_port
from ops.devtools.bench.ssl.acme_requests import request_counts
from ops.devtools.bench.ssl.certificate_timing import CertificateMoments, CertificateReader
from ops.devtools.delegation_dns import DelegationDns
from ops.devtools.demo_nodes import SPLIT_NODES, SharedPorts, SimnodeProcesses, ensure_client_key
from ops.devtools.pebble import Pebble
from ops.devtools.sni_handshake import presented_der
from ops.settings import Settings
from ops.store.event_store import EventStore

SSL_PARTS = (*PARTS, "scheduler", "handler ssl")
EMBEDDED_PARTS = ("up",)
NODE_IPS = {"web1": "127.0.0.91", "mail1": "127.0.0.92", "dns1": "127.0.0.93", "dns2": "127.0.0.94"}
DNS_NODES = ("dns1", "dns2")
WARM_UP_ID = 1
FIRST_ID = 1000
ROLES = ("web", "mail")
POLL_S = 0.25  # how often the store is read for what the certificates did


@dataclass
class Domain:
    service_id: str
    domain: str
    pointed: datetime | None = None


@dataclass
class SslRun:
    domains: list[Domain]
    certificates: dict[tuple[str, str], CertificateMoments]
    acme: dict[str, int]  # requests by kind during the measured phase
    cadence: dict[str, Any]  # the ssl section of the runtime settings
    ordered_to_checked_s: float  # orders placed → every certificate had failed a pre-flight
    ssl_concurrency: int  # certificates the desk checks at once
    pointing: str  # "at once" or "N a second"
    verified: dict[tuple[str, str], bool] = field(default_factory=dict)
    roots_pem: str = ""
    intermediates_pem: str = ""
    served_pem: dict[tuple[str, str], list[bytes]] = field(default_factory=dict)


def domain_name(service_id: int) -> str:
    """A registered domain of its own per service (the Public Suffix List's default rule):
    the rate guard's 50 certificates per registered domain a week are never the limit."""
    return f"ssl-bench-{service_id}.test"


def measure(
    tmp: Path,
    *,
    domains: int,
    point_rate: float,
    ssl_concurrency: int | None,
    amqp_url: str | None,
    database_url: str,
    timeout_s: float,
    fast_interval_s: int | None = None,
) -> SslRun:
    """``amqp_url`` None: the embedded default, one ``hostwright up`` process (SQLite and
    the in-process transport); else every part its own process on RabbitMQ."""
    tmp.mkdir(parents=True, exist_ok=True)
    key_path = tmp / "client_key"
    ports = SharedPorts(dns=free_port(), http=free_port(), https=free_port())
    nodes = SimnodeProcesses(
        tmp / "nodes",
        ensure_client_key(key_path),
        SPLIT_NODES,
        dkim_keys_ahead=domains + 5,
        ips=NODE_IPS,
        shared_ports=ports,
    )
    procs: dict[str, subprocess.Popen[bytes]] = {}
    pebble: Pebble | None = None

    async def run() -> SslRun:
        nonlocal pebble
        resolver = DelegationDns("127.0.0.1", 0, auth_port=ports.dns)
        await resolver.start()
        try:
            pebble = Pebble(
                tmp / "pebble",
                http_port=ports.http,
                tls_port=free_port(),
                dns_server=resolver.address,
            )
            await asyncio.to_thread(pebble.start)
            port = free_port()
            tokens = (secrets.token_urlsafe(32), secrets.token_urlsafe(32))
            env = {
                **environment(database_url, amqp_url or "", port, tokens, key_path),
                **ssl_environment(pebble, resolver, ports),
            }
            if ssl_concurrency is not None:
                env["HOSTWRIGHT_SSL_CONCURRENCY"] = str(ssl_concurrency)
            parts: tuple[str, ...] = SSL_PARTS
            if amqp_url is None:
                parts = EMBEDDED_PARTS
                del env["HOSTWRIGHT_AMQP_URL"], env["HOSTWRIGHT_EXCHANGE"]
            print(f"starting pebble, 4 nodes and hostwright: {', '.join(parts)} …", flush=True)
            addresses = await asyncio.to_thread(nodes.start)
            start_parts(tmp, env, procs, parts)
            url = f"http://127.0.0.1:{port}"
            await register(
                url,
                {"Authorization": f"Bearer {tokens[1]}"},
                [a.registration(16) for a in addresses],
            )
            session = _Session(url, tokens, database_url, resolver, pebble, point_rate, ports)
            session.ssl_concurrency = ssl_concurrency or Settings().ssl_concurrency
            if fast_interval_s is not None:
                await session.set_fast_interval(fast_interval_s)
            try:
                return await session.drive(domains, timeout_s)
            finally:
                session.close()
        finally:
            await resolver.stop()

    try:
        return asyncio.run(run())
    except BaseException:
        for part in procs:
            print(f"--- {part} ---\n{log_path(tmp, part).read_text(errors='replace')[-2000:]}")
        if pebble is not None:
            print(f"--- pebble ---\n{pebble.log()[-2000:]}")
        raise
    finally:
        stop_parts(procs)
        nodes.stop()
        if pebble is not None:
            pebble.stop()


def ssl_environment(pebble: Pebble, resolver: DelegationDns, ports: SharedPorts) -> dict[str, str]:
    """Automatic SSL against pebble, the DelegationDns the only resolver, the nodes' ports."""
    return {
        "HOSTWRIGHT_SSL": "auto",
        "HOSTWRIGHT_CRON_SSL_S": "1",
        "HOSTWRIGHT_ACME_DIRECTORY": pebble.directory_url,
        "HOSTWRIGHT_ACME_CA_BUNDLE": str(pebble.ca_bundle_path),
        "HOSTWRIGHT_TRUSTED_ROOTS": str(pebble.roots_path),
        "HOSTWRIGHT_DNS_RESOLVERS": resolver.address,
        "HOSTWRIGHT_DNS_AUTHORITATIVE_PORT": str(ports.dns),
        "HOSTWRIGHT_HTTP01_PORT": str(ports.http),
        "HOSTWRIGHT_TLS_PROBE_PORT": str(ports.https),
    }


class _Session:
    def __init__(
        self,
        url: str,
        tokens: tuple[str, str],
        database_url: str,
        resolver: DelegationDns,
        pebble: Pebble,
        point_rate: float,
        ports: SharedPorts,
    ) -> None:
        self.client = httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {tokens[0]}"}, timeout=30
        )
        self.staff = {"Authorization": f"Bearer {tokens[1]}"}
        self.store = EventStore(database_url)
        self.reader = CertificateReader(self.store)
        self.resolver = resolver
        self.pebble = pebble
        self.point_rate = point_rate
        self.https_port = ports.https
        self.ssl_concurrency = Settings().ssl_concurrency

    def close(self) -> None:
        self.store.close()

    async def set_fast_interval(self, seconds: int) -> None:
        """Fast mode's checks ``seconds`` apart (the runtime setting), before any order."""
        body = {"ssl": {"fast_interval_s": seconds}}
        reply = await self.client.put("/v1/settings", json=body, headers=self.staff)
        if reply.status_code != 200:
            raise RuntimeError(f"bench ssl: the fast interval was refused: {reply.text}")

    async def drive(self, count: int, timeout_s: float) -> SslRun:
        print("warm-up: one domain to served (the ACME account, connections) …", flush=True)
        warm = Domain(str(WARM_UP_ID), domain_name(WARM_UP_ID))
        await self._order([warm])
        await self._until_checked([warm], timeout_s)
        await self._point([warm], 0)
        await self._until_settled([warm], timeout_s)

        domains = [Domain(str(i), domain_name(i)) for i in range(FIRST_ID, FIRST_ID + count)]
        print(f"ordering {count} Split services, their DNS not pointing here yet …", flush=True)
        before = request_counts(self.pebble.log())
        began = time.monotonic()
        await self._order(domains)
        await self._until_checked(domains, timeout_s)
        checked_s = time.monotonic() - began
        rate = "at once" if self.point_rate <= 0 else f"{self.point_rate:g} a second"
        print(f"every certificate failed its pre-flight; pointing {count} domains {rate} …")
        await self._point(domains, self.point_rate)
        await self._until_settled(domains, timeout_s)
        await asyncio.sleep(1)  # the last requests' log lines
        acme = request_counts(self.pebble.log())
        acme.subtract(before)
        cadence = (await self.client.get("/v1/settings", headers=self.staff)).json()
        run = SslRun(
            domains,
            {k: v for k, v in self.reader.poll().items() if k[0] != warm.service_id},
            dict(acme),
            dict(cadence.get("settings", cadence).get("ssl", {})),
            checked_s,
            self.ssl_concurrency,
            rate,
            roots_pem=self.pebble.roots_path.read_text(),
            intermediates_pem=self.pebble.intermediates_path.read_text(),
        )
        await self._verify(run)
        return run

    async def _order(self, domains: list[Domain]) -> None:
        for d in domains:
            body = {
                "service_id": int(d.service_id),
                "client_id": int(d.service_id) % 997,
                "mode": "split",
                "domain": d.domain,
                "username": f"sslb{d.service_id}",
                "plan": {"package": "bench", "disk_mb": 1024},
            }
            reply = await self.client.post("/v1/services", json=body)
            if reply.status_code != 202:
                raise RuntimeError(f"ordering {d.domain}: {reply.status_code} {reply.text}")

    async def _until_checked(self, domains: list[Domain], timeout_s: float) -> None:
        """Until each of the domains' certificates has failed a pre-flight (DNS: the name
        does not exist yet) — they are seeded once the services' deploys are done."""
        wanted = {(d.service_id, role) for d in domains for role in ROLES}

        def done(moments: dict[tuple[str, str], CertificateMoments]) -> bool:
            return all(k in moments and moments[k].preflight_failed for k in wanted)

        await self._poll_until(done, timeout_s, "every certificate's first check")

    async def _point(self, domains: list[Domain], rate: float) -> None:
        """ "DNS points here": the registry delegates the domain to our DNS nodes, whose zone
        (made by the deploy) holds the A records of our web and mail nodes."""
        began = time.monotonic()
        for i, d in enumerate(domains):
            if rate > 0:
                await asyncio.sleep(max(0.0, began + i / rate - time.monotonic()))
            servers = [(f"ns{n}.{d.domain}", NODE_IPS[s]) for n, s in enumerate(DNS_NODES, 1)]
            self.resolver.delegate(d.domain, servers)
            d.pointed = datetime.now(UTC)

    async def _until_settled(self, domains: list[Domain], timeout_s: float) -> None:
        """Until every certificate of the domains is installed, or held (frozen)."""
        wanted = {(d.service_id, role) for d in domains for role in ROLES}

        def done(moments: dict[tuple[str, str], CertificateMoments]) -> bool:
            return all(moments[k].installed or moments[k].frozen for k in wanted)

        await self._poll_until(done, timeout_s, "every certificate installed or held")

    async def _poll_until(self, done: Any, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            moments = await asyncio.to_thread(self.reader.poll)
            if done(moments):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not after {timeout_s:.0f} s")
            await asyncio.sleep(POLL_S)

    async def _verify(self, run: SslRun) -> None:
        """Every installed certificate, fetched by SNI for each of its names from the node
        it was installed on, must verify against pebble's root alone."""
        context = ssl.create_default_context(cafile=str(self.pebble.roots_path))
        for key, moments in run.certificates.items():
            if moments.installed is None or moments.server_id is None:
                continue
            ip = NODE_IPS[moments.server_id]
            ders: list[bytes] = []
            try:
                for name in moments.names:
                    ders.append(await presented_der(context, ip, self.https_port, name))
            except (ssl.SSLError, OSError) as exc:
                print(f"  {key}: not served as it should be: {exc}")
                run.verified[key] = False
                continue
            serials = {f"{x509.load_der_x509_certificate(d).serial_number:x}" for d in ders}
            run.verified[key] = len(serials) == 1
            run.served_pem[key] = ders
