"""Simulated nodes for ``hostwright demo`` and ``hostwright bench deploy``: the SSH client key
the handlers log in with, the nodes themselves, their registration bodies, and the provider's
own mail user, mail domain, DNS user and zone that vanity services hang off (made on the nodes
as staff would, before any order).

``DemoNodes`` runs SimNodes in this process (the demo); ``SimnodeProcesses`` runs each as its
own ``hostwright simnode`` process (the benchmark, so node CPU is not charged to the caller).
Both keep everything under one folder, and a second start with the same folder reuses the
nodes' state, host keys and (when still free) SSH ports.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any

import asyncssh

from handlers.hestia_driver import HestiaDriver, NodeAccess
from ops.devtools.simnode import Faults, SimNode

LOGIN = "hostwright"
PROVIDER_DOMAIN = "hosted-by-demo.example"
PROVIDER_MAIL_USER = "provmail"
PROVIDER_DNS_USER = "provdns"
_PROVIDER_PASSWORD = "Provider-pass-1"  # noqa: S105 - a simulated node's demo account

# server_id -> roles. The unified node holds all three roles, so unified orders can land;
# split and vanity may land on it too (placement spreads them).
DEMO_NODES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("web1", ("web",)),
    ("mail1", ("mail",)),
    ("dns1", ("dns",)),
    ("dns2", ("dns",)),
    ("uni1", ("web", "mail", "dns")),
)
SPLIT_NODES = DEMO_NODES[:4]
# the mail-only node, which holds the provider's mail user and domain (provision_provider):
# every vanity mailbox goes there (HOSTWRIGHT_VANITY_MAIL_SERVER), whichever mail node
# placement chose for the service
PROVIDER_MAIL_SERVER = "mail1"


def ensure_client_key(path: Path) -> str:
    """The handlers' SSH private key at ``path`` (made once, mode 600); its public key line."""
    if path.exists():
        key = asyncssh.read_private_key(str(path))
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = asyncssh.generate_private_key("ssh-ed25519")
        path.write_bytes(key.export_private_key())
    os.chmod(path, 0o600)  # asyncssh and OpenSSH refuse a key others can read
    return key.export_public_key().decode().strip()


def authorize(node_dir: Path, public_key: str) -> None:
    """Adds the key to the node's ``authorized_keys`` once (a restart does not repeat it)."""
    node_dir.mkdir(parents=True, exist_ok=True)
    keys = node_dir / "authorized_keys"
    lines = keys.read_text(encoding="utf-8").splitlines() if keys.exists() else []
    if public_key not in (line.strip() for line in lines):
        with keys.open("a", encoding="utf-8") as out:
            out.write(public_key + "\n")


def _saved_ssh_port(node_dir: Path) -> int:
    try:
        return int(json.loads((node_dir / "ports.json").read_text())["ssh"] or 0)
    except (OSError, ValueError, KeyError, TypeError):
        return 0


@dataclass
class NodeAddress:
    server_id: str
    roles: tuple[str, ...]
    host: str
    port: int
    host_key: str
    ip: str

    def registration(self, max_concurrency: int) -> dict[str, Any]:
        """The ``POST /v1/servers`` body for this node."""
        return {
            "server_id": self.server_id,
            "roles": list(self.roles),
            "host": self.host,
            "port": self.port,
            "username": LOGIN,
            "host_key": self.host_key,
            "ip": self.ip,
            "max_concurrency": max_concurrency,
        }

    def access(self, key_path: Path) -> NodeAccess:
        return NodeAccess(
            self.server_id, self.host, self.port, LOGIN, self.host_key, (str(key_path),)
        )


NodeSpecs = Sequence[tuple[str, tuple[str, ...]]]  # (server_id, roles) of each node


@dataclass(frozen=True)
class SharedPorts:
    """The DNS, HTTP and HTTPS ports every node listens on, each on its own address: a CA
    dials a name's A record on one HTTP-01 port, and the SSL pre-flight asks every
    authoritative server on one port (automatic SSL needs nodes laid out like this)."""

    dns: int
    http: int
    https: int


@dataclass
class _NodeFolder:
    """The nodes to run, each under ``data_dir/<server_id>`` with the handlers' key allowed
    in; how they run is the subclass's. ``ips`` (server_id → a loopback address) gives a
    node an address of its own, where it listens and which it is registered with (default
    127.0.0.1); ``shared_ports`` makes the nodes' DNS, HTTP and HTTPS ports the same."""

    data_dir: Path
    public_key: str
    specs: NodeSpecs
    _: KW_ONLY
    latency_ms: int = 0
    dkim_keys_ahead: int = 0
    ips: Mapping[str, str] = field(default_factory=dict)
    shared_ports: SharedPorts | None = None

    def ip_of(self, server_id: str) -> str:
        return self.ips.get(server_id, "127.0.0.1")

    def _port_options(self) -> dict[str, int]:
        ports = self.shared_ports
        return (
            {}
            if ports is None
            else {"dns_port": ports.dns, "http_port": ports.http, "https_port": ports.https}
        )

    def _authorized_dirs(self) -> Iterator[tuple[str, tuple[str, ...], Path]]:
        """(server_id, roles, node folder) of each node, its key authorized just before."""
        for server_id, roles in self.specs:
            node_dir = self.data_dir / server_id
            authorize(node_dir, self.public_key)
            yield server_id, roles, node_dir


@dataclass
class DemoNodes(_NodeFolder):
    """SimNodes in this process under ``data_dir/<server_id>``."""

    specs: NodeSpecs = DEMO_NODES
    nodes: dict[str, SimNode] = field(default_factory=dict, init=False)

    async def start(self) -> list[NodeAddress]:
        for server_id, roles, node_dir in self._authorized_dirs():
            self.nodes[server_id] = await self._start_node(server_id, node_dir, roles)
        return self.addresses()

    async def _start_node(self, server_id: str, node_dir: Path, roles: tuple[str, ...]) -> SimNode:
        faults = Faults(latency_ms=self.latency_ms)
        ip, ports = self.ip_of(server_id), self._port_options()
        port = _saved_ssh_port(node_dir)
        if port:
            node = SimNode(node_dir, roles, ip, port, ip=ip, faults=faults, **ports)
            try:
                await node.start()
                return node
            except OSError:  # the old port is taken now: any free one will do
                await node.stop()
        node = SimNode(node_dir, roles, ip, ip=ip, faults=faults, **ports)
        await node.start()
        return node

    def addresses(self) -> list[NodeAddress]:
        return [
            NodeAddress(sid, tuple(sorted(n.roles)), n.host, n.port, n.host_public_key, n.ip)
            for sid, n in self.nodes.items()
        ]

    async def stop(self) -> None:
        for node in self.nodes.values():
            await node.stop()
        self.nodes.clear()


@dataclass
class SimnodeProcesses(_NodeFolder):
    """Each node a ``hostwright simnode`` process under ``data_dir/<server_id>``."""

    specs: NodeSpecs = SPLIT_NODES
    procs: dict[str, subprocess.Popen[str]] = field(default_factory=dict, init=False)
    _addresses: list[NodeAddress] = field(default_factory=list, init=False)

    def start(self) -> list[NodeAddress]:
        for server_id, roles, node_dir in self._authorized_dirs():
            ip = self.ip_of(server_id)
            argv = [
                *(sys.executable, "-m", "ops.cli", "simnode"),
                *("--roles", ",".join(roles), "--listen", f"{ip}:0", "--ip", ip),
                *("--data", str(node_dir), "--latency-ms", str(self.latency_ms)),
                *("--dkim-keys-ahead", str(self.dkim_keys_ahead)),
                *(
                    f"--{name.replace('_', '-')}={port}"
                    for name, port in self._port_options().items()
                ),
            ]
            self.procs[server_id] = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
            )
        for server_id, roles in self.specs:
            proc = self.procs[server_id]
            assert proc.stdout is not None
            line = proc.stdout.readline()
            found = re.search(r"\bssh=(\d+)", line)
            if found is None:
                raise RuntimeError(f"simnode {server_id} did not start: {line!r}")
            host_key = (self.data_dir / server_id / "ssh_host_key.pub").read_text().strip()
            ip = self.ip_of(server_id)
            self._addresses.append(NodeAddress(server_id, roles, ip, int(found[1]), host_key, ip))
        return list(self._addresses)

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        deadline = time.monotonic() + 10
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()


async def provision_provider(addresses: Sequence[NodeAddress], key_path: Path) -> None:
    """The provider's shared mail user + mail domain on every mail-only node, and its DNS
    user + zone on every DNS node, as staff would make them by hand. A node with both roles
    gets the zone only: Hestia lets one user own a domain name, and every DNS node must serve
    the provider's zone (so vanity services must not be placed on such a node for mail).
    Idempotent: "exists" (exit 4) is fine, so a restarted demo can run it again."""
    for node in addresses:
        commands: list[list[str]] = []
        probes: list[list[str]] = []
        if "mail" in node.roles and "dns" not in node.roles:
            commands += [
                ["v-add-user", PROVIDER_MAIL_USER, _PROVIDER_PASSWORD, _email("postmaster")],
                ["v-add-mail-domain", PROVIDER_MAIL_USER, PROVIDER_DOMAIN],
            ]
            probes.append(["v-list-mail-domain", PROVIDER_MAIL_USER, PROVIDER_DOMAIN])
        if "dns" in node.roles:
            commands += [
                ["v-add-user", PROVIDER_DNS_USER, _PROVIDER_PASSWORD, _email("hostmaster")],
                ["v-add-dns-domain", PROVIDER_DNS_USER, PROVIDER_DOMAIN, node.ip],
            ]
            probes.append(["v-list-dns-domain", PROVIDER_DNS_USER, PROVIDER_DOMAIN])
        if not commands:
            continue
        driver = HestiaDriver(node.access(key_path))
        try:
            for argv in commands:
                result = await driver.run(argv)
                if result.exit_status not in (0, 4):  # 4: made by an earlier start
                    raise RuntimeError(
                        f"{node.server_id}: {' '.join(argv[:2])} exited {result.exit_status}: "
                        f"{result.stderr or result.stdout}"
                    )
            for argv in probes:  # exit 4 also means "owned by someone else": check it is ours
                await driver.list_json(argv)
        finally:
            await driver.close()


def _email(mailbox: str) -> str:
    return f"{mailbox}@{PROVIDER_DOMAIN}"


async def wait_until(condition: Any, timeout: float, what: str) -> None:
    """Polls an ``async () -> bool`` until true; TimeoutError naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
