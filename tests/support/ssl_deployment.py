"""A ``Deployment`` with automatic SSL on: pebble as the CA, a DelegationDns as the registry
and the only resolver, and simulated nodes on distinct 127.0.0.x addresses sharing one HTTP,
one HTTPS and one DNS port (pebble dials a name's address on its one HTTP-01 port, and the
pre-flight asks every authoritative server on one port). Nothing leaves 127.0.0.0/8: the
system resolver is never asked (``HOSTWRIGHT_DNS_RESOLVERS`` is the DelegationDns).

``start_ssl()`` starts the resolver and pebble and sets the SSL environment of every part
started after it; ``delegate(domain, dns_ids)`` makes those nodes authoritative for a
domain (the customer pointing it at us); ``presented(ip, name)`` is the certificate a node
serves for SNI ``name``, verified against pebble's root. ``close()`` stops pebble and the
resolver too, and removes the SSL queues, whatever failed before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
from cryptography import x509

from domain.certificate import certificate_uuid
from handlers.hestia_driver import HestiaDriver
from ops.devtools.delegation_dns import DelegationDns
from ops.devtools.pebble import Pebble
from ops.devtools.simnode import SimNode
from ops.devtools.simnode.journal import read_command_log
from ops.devtools.simnode.state import NodeState
from ops.devtools.simnode.web_server import WebServer
from ops.devtools.sni_handshake import presented_der
from ops.messaging.amqp_transport import AmqpTransport
from ops.messaging.topology import SSL_QUEUES
from ops.store.database import postgres_conninfo
from ops.store.event_store import EventStore, event_as_json
from tests.support.deployment import PARTS, Deployment, free_port, wait_until
from tests.support.run_leftovers import RUN_MARK, this_run

SSL_PARTS = (*PARTS, "handler ssl")
# Hestia's certificate installs, web and mail: what "installed once" counts on a node
INSTALL_COMMANDS = frozenset(
    {
        "v-add-web-domain-ssl",
        "v-change-web-domain-sslcert",
        "v-add-mail-domain-ssl",
        "v-change-mail-domain-sslcert",
    }
)


class SslDeployment(Deployment):
    def __init__(self, tmp_path: Path, amqp_url: str, exchange: str, database_url: str) -> None:
        super().__init__(tmp_path, amqp_url, exchange, database_url)
        self.http_port, self.https_port, self.dns_port = free_port(), free_port(), free_port()
        self.resolver = DelegationDns("127.0.0.1", 0, auth_port=self.dns_port)
        self.pebble: Pebble | None = None

    async def add_node(self, server_id: str, roles: tuple[str, ...], ip: str) -> SimNode:
        """A node listening on its own ``ip`` (SSH on a port of its own, the shared rest)."""
        node = SimNode(
            self.tmp / f"node-{server_id}",
            roles,
            ip,
            ip=ip,
            dns_port=self.dns_port,
            http_port=self.http_port,
            https_port=self.https_port,
        )
        await node.start()
        node.authorize(self.public_key)
        self.nodes[server_id] = node
        self.node_ips[server_id] = ip
        return node

    async def start_ssl(self) -> Pebble:
        await self.resolver.start()
        pebble = Pebble(
            self.tmp / "pebble",
            http_port=self.http_port,
            tls_port=free_port(),
            dns_server=self.resolver.address,
            env={RUN_MARK: str(this_run())},
        )
        self.pebble = pebble
        await asyncio.to_thread(pebble.start)
        self.settings.update(
            {
                "HOSTWRIGHT_SSL": "auto",
                "HOSTWRIGHT_CRON_SSL_S": "1",
                "HOSTWRIGHT_ACME_DIRECTORY": pebble.directory_url,
                "HOSTWRIGHT_ACME_CA_BUNDLE": str(pebble.ca_bundle_path),
                "HOSTWRIGHT_TRUSTED_ROOTS": str(pebble.roots_path),
                "HOSTWRIGHT_DNS_RESOLVERS": self.resolver.address,
                "HOSTWRIGHT_DNS_AUTHORITATIVE_PORT": str(self.dns_port),
                "HOSTWRIGHT_HTTP01_PORT": str(self.http_port),
                "HOSTWRIGHT_TLS_PROBE_PORT": str(self.https_port),
            }
        )
        return pebble

    async def start_all(self) -> None:
        for part in SSL_PARTS:
            self.start(part)
        await self.wait_for_gateway()

    def delegate(self, domain: str, dns_ids: list[str]) -> None:
        servers = [(f"ns{i}.{domain}", self.node_ips[s]) for i, s in enumerate(dns_ids, 1)]
        self.resolver.delegate(domain, servers)

    async def presented(self, ip: str, name: str) -> x509.Certificate:
        """The certificate served at ``ip`` for SNI ``name``; raises unless it verifies
        against pebble's root for ``name``."""
        assert self.pebble is not None
        context = ssl.create_default_context(cafile=str(self.pebble.roots_path))
        der = await presented_der(context, ip, self.https_port, name)
        return x509.load_der_x509_certificate(der)

    async def wait_served(self, ip: str, names: list[str], timeout: float) -> None:
        """Until ``ip`` serves, for every name, a certificate pebble's root verifies (the
        view says ``issued`` at ``Issued``; the install follows it)."""

        async def served() -> bool:
            try:
                for name in names:
                    await self.presented(ip, name)
            except (ssl.SSLError, OSError):
                return False
            return True

        await wait_until(served, timeout, f"{ip} serving {names}", self.logs)

    async def ssl_state(self, service_id: int) -> dict[str, dict[str, object]]:
        """``GET /v1/services/{id}/ssl`` by role."""
        reply = await self.client.get(f"/v1/services/{service_id}/ssl")
        assert reply.status_code == 200, reply.text
        return {c["role"]: c for c in reply.json()["certificates"]}

    def logs(self) -> str:
        pebble = self.pebble.log()[-3000:] if self.pebble is not None else ""
        return f"{super().logs()}\n--- pebble ---\n{pebble}"

    async def close(self) -> None:
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(self._delete_ssl_queues)
            stack.push_async_callback(self.resolver.stop)
            if self.pebble is not None:
                stack.callback(self.pebble.stop)
            stack.push_async_callback(super().close)

    async def _delete_ssl_queues(self) -> None:
        transport = AmqpTransport(self.amqp_url, self.exchange)
        await transport.connect()
        try:
            for queue in SSL_QUEUES:
                await transport.delete_queue(queue)
                await transport.delete_queue(f"{queue}.dead")
        finally:
            await transport.close()

    # --- the pre-flight, adoption and custom-certificate checks (test_ssl_checks.py) ----

    def trust_roots(self, *roots_pem: str) -> None:
        """``HOSTWRIGHT_TRUSTED_ROOTS`` of the parts started after this: pebble's root and
        ``roots_pem`` (a customer's CA, say), in one file."""
        assert self.pebble is not None
        bundle = self.tmp / "trusted-roots.pem"
        bundle.write_text("\n".join([self.pebble.roots_path.read_text(), *roots_pem]))
        self.settings["HOSTWRIGHT_TRUSTED_ROOTS"] = str(bundle)

    async def start_all_but(self, *held: str) -> None:
        """Every SSL part but ``held`` (started later with ``start``)."""
        for part in SSL_PARTS:
            if part not in held:
                self.start(part)
        await self.wait_for_gateway()

    async def serve_certificate(
        self, server_id: str, kind: str, user: str, domain: str, pems: tuple[str, str, str]
    ) -> None:
        """Puts ``pems`` (certificate, key, chain) on a user's web or mail domain as staff
        would in Hestia's panel (``v-add-{kind}-domain-ssl``), not through hostwright."""
        certificate, key, chain = pems
        driver = HestiaDriver(self.access(server_id))
        try:
            files = {f"{domain}.crt": certificate, f"{domain}.key": key, f"{domain}.ca": chain}
            placed = await driver.put_private_files(
                ".staff-ssl", {name: text.encode() for name, text in files.items()}
            )
            try:
                await driver.check([f"v-add-{kind}-domain-ssl", user, domain, placed])
            finally:
                await driver.remove_tree(placed)
        finally:
            await driver.close()

    async def presented_under(self, ip: str, name: str, roots_pem: str) -> x509.Certificate:
        """The certificate ``ip`` serves for SNI ``name``; raises unless it verifies against
        ``roots_pem`` for ``name``."""
        context = ssl.create_default_context(cadata=roots_pem)
        der = await presented_der(context, ip, self.https_port, name)
        return x509.load_der_x509_certificate(der)

    async def http_answered_by_stranger(self, server_id: str) -> None:
        """The node's HTTP(S) address answered from now on by a web server that holds no
        site (another server took the ports: every challenge fetch is a 404)."""
        node = self.nodes[server_id]
        assert node.web is not None
        await node.web.stop()
        data_dir = self.tmp / f"stranger-{server_id}"
        data_dir.mkdir()
        stranger = WebServer(data_dir, node.host, self.http_port, self.https_port, NodeState)
        await stranger.start()
        node.web = stranger  # stopped with the node

    async def certificate_events(self, service_id: int, role: str) -> list[dict[str, Any]]:
        """The Certificate events of a service's role, as the store holds them (JSON)."""

        def read() -> list[dict[str, Any]]:
            store = EventStore(self.database_url)
            try:
                stored = store.recorder.select_events(certificate_uuid(str(service_id), role))
                return [event_as_json(store.app.mapper.to_domain_event(s)) for s in stored]
            finally:
                store.close()

        return await asyncio.to_thread(read)

    def full_logs(self) -> str:
        """Everything every process of the run wrote (each start's log file), pebble's log
        and the nodes' command journals: what a secret must never show up in."""
        texts = [path.read_text(errors="replace") for path in sorted(self.tmp.glob("*.log"))]
        if self.pebble is not None:
            texts.append(self.pebble.log())
        for node in self.nodes.values():
            journal = node.data_dir / "commands.jsonl"
            node.executor.journal.flush()
            if journal.exists():
                texts.append(journal.read_text(errors="replace"))
        return "\n".join(texts)

    # --- crashes and lifecycle (tests/e2e/test_ssl_sigkill.py, test_ssl_lifecycle.py) ---------

    def stored_certificate_events(self, service_id: int, role: str) -> list[dict[str, Any]]:
        """The certificate's events as PostgreSQL holds them, oldest first: ``topic`` (the
        event's name, ``OrderPlaced``) and ``data`` (its fields as stored JSON), read from
        the store's table (eventsourcing names it after the application) on one connection
        a call, so a test may poll it while every part runs."""
        cert_id = certificate_uuid(str(service_id), role)
        conninfo = postgres_conninfo(self.database_url)
        with psycopg.connect(conninfo, connect_timeout=10, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT topic, state FROM hostwright_events WHERE originator_id = %s"
                " ORDER BY originator_version",
                (cert_id,),
            ).fetchall()
        return [
            {"topic": topic.rpartition(".")[2], "data": json.loads(bytes(state))}
            for topic, state in rows
        ]

    async def certificate_topics(self, service_id: int, role: str) -> list[str]:
        events = await asyncio.to_thread(self.stored_certificate_events, service_id, role)
        return [event["topic"] for event in events]

    def install_runs(self, server_id: str, domain: str) -> list[dict[str, Any]]:
        """The certificate installs the node finished for ``domain`` (its web domain or its
        mail domain), oldest first, failed ones included (their ``exit_code`` says so)."""
        log = read_command_log(self.nodes[server_id].data_dir)
        return [  # argv: the command, the user, the domain, the folder of the files
            entry
            for entry in log
            if entry["argv"][:1] and entry["argv"][0] in INSTALL_COMMANDS
            if entry["argv"][2:3] == [domain]
        ]

    async def wait_node_idle(self, server_id: str, timeout: float) -> None:
        """Until the node runs no command (one a killed client left running has ended)."""

        async def idle() -> bool:
            return self.nodes[server_id].executor.journal.running == 0

        await wait_until(idle, timeout, f"{server_id} running no command", self.logs)

    def crash(self, part: str) -> None:
        """SIGKILL to ``part`` (its whole process group), reaped: no graceful stop."""
        process = self.processes[part]
        process.kill()
        process.__exit__()


@contextlib.asynccontextmanager
async def split_nodes(
    tmp: Path, amqp_url: str, exchange: str, database_url: str, ips: tuple[str, str, str]
) -> AsyncIterator[SslDeployment]:
    """A deployment with a web, a mail and a DNS node (``web1``, ``mail1``, ``dns1`` on
    ``ips``), pebble, every part running and the nodes registered; closed afterwards."""
    system = SslDeployment(tmp, amqp_url, exchange, database_url)
    try:
        for (server_id, role), ip in zip(
            (("web1", "web"), ("mail1", "mail"), ("dns1", "dns")), ips, strict=True
        ):
            await system.add_node(server_id, (role,), ip)
        await system.start_ssl()
        await system.start_all()
        await system.register_nodes()
        yield system
    finally:
        await system.close()
