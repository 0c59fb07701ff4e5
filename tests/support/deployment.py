"""A whole hostwright on RabbitMQ as real processes, with simulated Hestia nodes: the
end-to-end tests' harness.

Nodes run in the test's event loop (SimNode), so a test must only ever wait with ``await``.
Every hostwright part is its own ``hostwright serve …`` process, so a test can SIGKILL or
SIGSTOP any of them and start it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncssh
import httpx

from handlers.hestia_driver import HestiaDriver, NodeAccess
from ops.devtools.listen_ports import free_port as free_port
from ops.devtools.simnode import SimNode
from ops.messaging.amqp_transport import AmqpTransport
from ops.messaging.topology import QUEUES
from tests.support.budget import budget
from tests.support.processes import HostwrightProcess
from tests.support.run_leftovers import note_broker_name

PROVIDER_DOMAIN = "hosted.example"
PROVIDER_MAIL_USER = "provmail"
PROVIDER_DNS_USER = "provdns"
# The simulated nodes' addresses (TEST-NET-1), the same in every end-to-end test.
WEB_IP, MAIL_IP, MAIL2_IP, DNS1_IP, DNS2_IP, UNI_IP = (
    "192.0.2.10",
    "192.0.2.20",
    "192.0.2.21",
    "192.0.2.31",
    "192.0.2.32",
    "192.0.2.40",
)
PARTS = (
    "gateway",
    "relay",
    "projections",
    "pipeline",
    "scheduler",
    "handler web",
    "handler mail",
    "handler dns",
)


class Deployment:
    def __init__(self, tmp_path: Path, amqp_url: str, exchange: str, database_url: str) -> None:
        self.tmp = tmp_path
        self.amqp_url = amqp_url
        self.exchange = exchange
        self.database_url = database_url
        self.port = free_port()
        self.token = secrets.token_urlsafe(32)  # WHMCS's
        self.staff_token = secrets.token_urlsafe(32)
        self.nodes: dict[str, SimNode] = {}
        self.node_ips: dict[str, str] = {}
        self.processes: dict[str, HostwrightProcess] = {}
        key = asyncssh.generate_private_key("ssh-ed25519")
        self.key_path = tmp_path / "client_key"
        self.key_path.write_bytes(key.export_private_key())
        self.key_path.chmod(0o600)
        self.public_key = key.export_public_key().decode().strip()
        self.settings: dict[str, str] = {
            "HOSTWRIGHT_DATABASE_URL": database_url,
            "HOSTWRIGHT_AMQP_URL": amqp_url,
            "HOSTWRIGHT_EXCHANGE": exchange,
            "HOSTWRIGHT_LISTEN": f"127.0.0.1:{self.port}",
            "HOSTWRIGHT_API_TOKEN": self.token,
            "HOSTWRIGHT_STAFF_TOKEN": self.staff_token,
            "HOSTWRIGHT_SECRET_KEY": "e2e-secret-key-" + "0" * 32,
            "HOSTWRIGHT_SSH_KEY": str(self.key_path),
            "HOSTWRIGHT_RETRY_MAX_ATTEMPTS": "4",
            "HOSTWRIGHT_RETRY_INITIAL_BACKOFF_S": "0.5",
            "HOSTWRIGHT_RETRY_MAX_BACKOFF_S": "4",
            "HOSTWRIGHT_LEASE_S": "10",
            "HOSTWRIGHT_HEARTBEAT_S": "1",
            "HOSTWRIGHT_COMMAND_TIMEOUT_S": "8",
            "HOSTWRIGHT_VANITY_DOMAIN": PROVIDER_DOMAIN,
            "HOSTWRIGHT_VANITY_MAIL_USER": PROVIDER_MAIL_USER,
            "HOSTWRIGHT_VANITY_DNS_USER": PROVIDER_DNS_USER,
            "HOSTWRIGHT_CRON_TERMINATIONS_S": "2",
            "HOSTWRIGHT_CRON_STUCK_S": "1",
        }
        # WHMCS's calls (orders, lifecycle, a service's reads) and staff's (servers, the queue)
        self.client = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{self.port}",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=budget(10),
        )
        self.staff = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{self.port}",
            headers={"Authorization": f"Bearer {self.staff_token}"},
            timeout=budget(10),
        )

    # --- nodes -----------------------------------------------------------------------

    async def add_node(self, server_id: str, roles: tuple[str, ...], ip: str) -> SimNode:
        node = SimNode(self.tmp / f"node-{server_id}", roles, ip=ip)
        await node.start()
        node.authorize(self.public_key)
        self.nodes[server_id] = node
        self.node_ips[server_id] = ip
        return node

    def access(self, server_id: str) -> NodeAccess:
        node = self.nodes[server_id]
        return NodeAccess(
            server_id,
            node.host,
            node.port,
            "hostwright",
            node.host_public_key,
            (str(self.key_path),),
        )

    async def on_node(self, server_id: str, *argv: str) -> Any:
        """Runs one Hestia command on a node as staff would; returns parsed JSON when asked."""
        driver = HestiaDriver(self.access(server_id))
        try:
            if argv[0].startswith("v-list-"):
                return await driver.list_json(list(argv))
            return await driver.check(list(argv))
        finally:
            await driver.close()

    async def register_nodes(
        self, only: tuple[str, ...] | None = None, max_concurrency: int = 4
    ) -> None:
        for server_id, node in self.nodes.items():
            if only is not None and server_id not in only:
                continue
            body = {
                "server_id": server_id,
                "roles": sorted(node.roles),
                "host": node.host,
                "port": node.port,
                "username": "hostwright",
                "host_key": node.host_public_key,
                "ip": self.node_ips[server_id],
                "max_concurrency": max_concurrency,
            }
            reply = await self.staff.post("/v1/servers", json=body)
            assert reply.status_code == 202, reply.text

    async def provision_provider(self, mail_server: str, dns_servers: list[str]) -> None:
        """The provider's own things vanity services hang off, made by hand as staff would."""
        await self.on_node(
            mail_server,
            "v-add-user",
            PROVIDER_MAIL_USER,
            "Provider-pass-1",
            f"postmaster@{PROVIDER_DOMAIN}",
        )
        await self.on_node(mail_server, "v-add-mail-domain", PROVIDER_MAIL_USER, PROVIDER_DOMAIN)
        for dns in dns_servers:
            await self.on_node(
                dns,
                "v-add-user",
                PROVIDER_DNS_USER,
                "Provider-pass-1",
                f"hostmaster@{PROVIDER_DOMAIN}",
            )
            await self.on_node(
                dns, "v-add-dns-domain", PROVIDER_DNS_USER, PROVIDER_DOMAIN, self.node_ips[dns]
            )

    # --- hostwright ------------------------------------------------------------------

    def start(self, part: str, **extra_env: str) -> HostwrightProcess:
        name = part.replace(" ", "-") + f"-{len(self.processes)}"
        process = HostwrightProcess(
            ["serve", *part.split()], {**self.settings, **extra_env}, self.tmp, name
        ).start()
        self.processes[part] = process
        return process

    async def start_all(self) -> None:
        for part in PARTS:
            self.start(part)
        await self.wait_for_gateway()

    async def wait_for_gateway(self) -> None:
        deadline = time.monotonic() + budget(30)
        while time.monotonic() < deadline:
            try:
                if (await self.client.get("/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
        raise AssertionError("the gateway never answered:\n" + self.logs())

    async def order(self, service_id: int, mode: str, domain: str, **extra: Any) -> None:
        body = {
            "service_id": service_id,
            "client_id": 1,
            "mode": mode,
            "domain": domain,
            "plan": {"package": "e2e", "disk_mb": 1000},
            **extra,
        }
        reply = await self.client.post("/v1/services", json=body)
        assert reply.status_code == 202, reply.text

    async def status(self, service_id: int) -> dict[str, Any]:
        reply = await self.client.get(f"/v1/services/{service_id}")
        if reply.status_code == 404:
            return {"status": None}
        assert reply.status_code == 200, reply.text
        value: dict[str, Any] = reply.json()
        return value

    async def wait_status(self, service_ids: list[int], status: str, timeout: float) -> None:
        try:
            await wait_until(
                lambda: self._all_in(service_ids, status),
                timeout,
                f"services {service_ids} {status}",
            )
        except AssertionError as exc:
            tasks = (await self.staff.get("/v1/tasks")).json()["tasks"]
            unfinished = [t for t in tasks if t["state"] != "succeeded"]
            states = {i: (await self.status(i))["status"] for i in service_ids}
            raise AssertionError(
                f"{exc}\nstatuses: {states}\nunfinished tasks: {dumps(unfinished)}\n{self.logs()}"
            ) from None

    async def _all_in(self, service_ids: list[int], status: str) -> bool:
        statuses = [(await self.status(i))["status"] for i in service_ids]
        return all(s == status for s in statuses)

    def logs(self) -> str:
        return "\n".join(f"--- {part} ---\n{p.log()[-3000:]}" for part, p in self.processes.items())

    async def close(self) -> None:
        """Processes first (a live one would declare its queues again), then each other part
        even when one of them fails; the first failure is raised at the end."""
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(self._delete_broker_names)
            for node in self.nodes.values():
                stack.push_async_callback(node.stop)
            stack.push_async_callback(self.staff.aclose)
            stack.push_async_callback(self.client.aclose)
            for process in self.processes.values():
                stack.callback(process.__exit__)

    async def _delete_broker_names(self) -> None:
        transport = AmqpTransport(self.amqp_url, self.exchange)
        await transport.connect()
        try:
            for queue in QUEUES:
                await transport.delete_queue(queue)
                await transport.delete_queue(f"{queue}.dead")
            await transport.delete_exchange()
        finally:
            await transport.close()
        note_broker_name("removed", self.exchange)


async def wait_until(
    condition: Callable[[], Awaitable[bool]],
    timeout: float,
    what: str,
    context: Callable[[], str] = lambda: "",
) -> None:
    timeout = budget(timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{context()}")


def records_of(listing: dict[str, dict[str, str]]) -> list[tuple[str, str, str]]:
    """(name, type, value) of every record in a v-list-dns-records listing, duplicates kept."""
    return sorted((r["RECORD"], r["TYPE"], r["VALUE"].replace('"', "")) for r in listing.values())


def dumps(value: Any) -> str:
    return json.dumps(value, indent=1, sort_keys=True)
