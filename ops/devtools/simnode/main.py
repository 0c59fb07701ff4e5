"""``SimNode`` (a simulated HestiaCP node, in-process) and ``hostwright simnode`` (its CLI).

``SimNode(data_dir, roles, host, port, …)`` starts an SSH server answering Hestia's ``v-*``
commands, plus DNS over UDP (role ``dns``) and HTTP/HTTPS (roles ``web`` and ``mail``: sites
and webmail); ``ssl_check_ms`` is the window of Hestia's key-pair test in SSL installs.
Everything it keeps is in ``data_dir``: ``state/``, ``fs/`` (the simulated host's files),
``ssh_host_key[.pub]``, ``authorized_keys``, ``faults.json``, ``commands.jsonl``,
``stats.json`` and ``ports.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
from collections.abc import Iterable
from pathlib import Path

from ops.devtools.simnode.dkim_keys import make_dkim_keys_ahead
from ops.devtools.simnode.dns_server import DnsServer
from ops.devtools.simnode.executor import CommandExecutor
from ops.devtools.simnode.faults import Faults
from ops.devtools.simnode.ssh_server import SshListener
from ops.devtools.simnode.state import NodeState, write_atomically
from ops.devtools.simnode.web_server import WebServer
from ops.runtime import event_loop

ROLES = ("web", "mail", "dns")
_FAULT_POLL_S = 0.05


class SimNode:
    """One simulated node: ``start()`` listens, ``stop()`` closes it all; state stays on disk."""

    def __init__(
        self,
        data_dir: Path | str,
        roles: Iterable[str] = ROLES,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        ip: str | None = None,
        dns_port: int = 0,
        http_port: int = 0,
        https_port: int = 0,
        faults: Faults | None = None,
        ssl_check_ms: int = 50,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.roles = frozenset(roles)
        unknown = self.roles - set(ROLES)
        if unknown:
            raise ValueError(f"unknown roles: {sorted(unknown)}")
        self.host = host
        self.ip = ip or (host if host not in ("0.0.0.0", "::", "") else "127.0.0.1")  # noqa: S104
        self.executor = CommandExecutor(
            self.data_dir, self.roles, self.ip, ssl_check_ms=ssl_check_ms
        )
        self.ssh = SshListener(self.data_dir, host, port, self.executor)
        self.dns = DnsServer(host, dns_port, self._state) if "dns" in self.roles else None
        self.web = (
            WebServer(self.data_dir, host, http_port, https_port, self._state)
            if self.roles & {"web", "mail"}
            else None
        )
        self._start_faults = faults or Faults()
        self._watcher: asyncio.Task[None] | None = None
        # The watcher and callers of apply_faults must not open the listener twice.
        self._faults_lock = asyncio.Lock()

    @property
    def port(self) -> int:
        return self.ssh.port

    @property
    def host_key_path(self) -> Path:
        return self.data_dir / "ssh_host_key.pub"

    @property
    def host_public_key(self) -> str:
        """The host key line (``ssh-ed25519 AAAA…``) to pin in a client's known_hosts."""
        return self.host_key_path.read_text(encoding="utf-8").strip()

    def ports(self) -> dict[str, int | None]:
        return {
            "ssh": self.ssh.port,
            "dns": self.dns.port if self.dns else None,
            "http": self.web.http_port if self.web else None,
            "https": self.web.https_port if self.web else None,
        }

    def authorize(self, public_key_line: str) -> None:
        """Add an OpenSSH public key line to ``DIR/authorized_keys``."""
        with (self.data_dir / "authorized_keys").open("a", encoding="utf-8") as keys:
            keys.write(public_key_line.strip() + "\n")

    def set_faults(self, faults: Faults) -> None:
        """Replace ``DIR/faults.json``; picked up within ~50 ms (at once by commands)."""
        self.executor.faults.write(faults)

    async def apply_faults(self) -> None:
        """Open or close the SSH listener to match ``faults.json`` now. Refusing is a node
        that went away: its open connections and running commands are dropped as well."""
        async with self._faults_lock:
            refuse = self.executor.faults.read().refuse
            if refuse and self.ssh.listening:
                await self.ssh.shutdown()
            elif not refuse and not self.ssh.listening:
                await self.ssh.open()
            self._write_ports()

    async def start(self) -> None:
        self.executor.faults.write(self._start_faults)
        if self.dns:
            await self.dns.start()
        if self.web:
            await self.web.start()
        if self._start_faults.refuse and self.ssh.port == 0:
            # Bind once to learn the port, so the node has a fixed address while it refuses.
            await self.ssh.open()
        await self.apply_faults()
        self._watcher = asyncio.create_task(self._watch_faults())

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        await self.ssh.shutdown()
        self.executor.journal.flush()
        if self.dns:
            await self.dns.stop()
        if self.web:
            await self.web.stop()

    async def __aenter__(self) -> SimNode:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    def _state(self) -> NodeState:
        return self.executor.state

    def _write_ports(self) -> None:
        data = {**self.ports(), "host": self.host, "host_key": str(self.host_key_path)}
        write_atomically(self.data_dir / "ports.json", json.dumps(data) + "\n")

    async def _watch_faults(self) -> None:
        # Polls the file's mtime: editors and tests change it without telling the node.
        seen = -1.0
        while True:
            mtime = self.executor.faults.mtime()
            if mtime != seen:
                seen = mtime
                await self.apply_faults()
            await asyncio.sleep(_FAULT_POLL_S)


def _parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hostwright simnode", description=__doc__)
    parser.add_argument("--roles", default="web,mail,dns", help="comma-separated: web,mail,dns")
    parser.add_argument("--listen", default="127.0.0.1:2222", help="SSH HOST:PORT (port 0 = any)")
    parser.add_argument("--data", required=True, help="the node's directory")
    parser.add_argument("--ip", default=None, help="the node's public IP (default: listen host)")
    parser.add_argument("--dns-port", type=int, default=0)
    parser.add_argument("--http-port", type=int, default=0)
    parser.add_argument("--https-port", type=int, default=0)
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument(
        "--ssl-check-ms",
        type=int,
        default=50,
        help="how long Hestia's openssl key-pair test of an SSL install takes (its window)",
    )
    parser.add_argument("--fail-next", type=int, default=0)
    parser.add_argument("--refuse", action="store_true")
    parser.add_argument("--hang", action="store_true")
    parser.add_argument(
        "--dkim-keys-ahead",
        type=int,
        default=0,
        help="generate this many 2048-bit DKIM keys before listening (benchmarks)",
    )
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> int:
    host, _, port = args.listen.rpartition(":")
    faults = Faults(
        refuse=args.refuse, hang=args.hang, fail_next=args.fail_next, latency_ms=args.latency_ms
    )
    node = SimNode(
        args.data,
        [r for r in args.roles.split(",") if r],
        host.strip("[]") or "127.0.0.1",
        int(port or 0),
        ip=args.ip,
        dns_port=args.dns_port,
        http_port=args.http_port,
        https_port=args.https_port,
        faults=faults,
        ssl_check_ms=args.ssl_check_ms,
    )
    if args.dkim_keys_ahead > 0 and "mail" in node.roles:
        make_dkim_keys_ahead(2048, args.dkim_keys_ahead)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await node.start()
    ports = " ".join(f"{k}={v}" for k, v in node.ports().items() if v is not None)
    print(f"simnode {ports} host_key={node.host_key_path} data={node.data_dir}", flush=True)
    try:
        await stop.wait()
    finally:
        await node.stop()
    return 0


def run_simnode(argv: list[str]) -> int:
    """``hostwright simnode …``: run one simulated node until SIGTERM/SIGINT; exit status."""
    return event_loop.run(_serve(_parse_args(argv)))


__all__ = ["Faults", "SimNode", "run_simnode"]
