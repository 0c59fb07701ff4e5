"""The node's SSH side (asyncssh): public-key logins, exec requests, SFTP.

``SshListener`` consumes the node's directory and a ``CommandExecutor``; it accepts any user
name whose public key is listed in ``DIR/authorized_keys`` (re-read on every login, no
passwords), runs each exec request's command line through ``execute`` and answers with its
stdout, stderr and exit status. The one shell it runs is ``bash --noprofile --norc``, emulated
by ``shell.Shell`` (which knows bash, not the client: what a client's command session writes is
run as bash would run it, so the client's mistakes show here as they would on a real node).
SFTP is served chrooted to ``DIR/fs`` (the simulated host's file system). The host key is
generated once into ``DIR/ssh_host_key`` (mode 600) and ``DIR/ssh_host_key.pub``.
``open``/``close`` start and stop listening without touching connections already open, which is
how the ``refuse`` fault is made.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Protocol

import asyncssh

from ops.devtools.simnode.commands import CommandResult
from ops.devtools.simnode.shell import Shell, ShellExit

# The only shell a Hestia node gives hostwright's login (a real node has more; none is used).
BASH = "bash --noprofile --norc"


class Executor(Protocol):
    async def execute(self, user: str, line: str) -> CommandResult: ...

    async def execute_words(self, user: str, words: list[str]) -> CommandResult: ...


def ensure_host_key(data_dir: Path) -> asyncssh.SSHKey:
    """The node's host key, created on first start and reused afterwards."""
    path = data_dir / "ssh_host_key"
    if path.exists():
        return asyncssh.read_private_key(str(path))
    key = asyncssh.generate_private_key("ssh-ed25519")
    key.write_private_key(str(path))
    os.chmod(path, 0o600)
    key.write_public_key(str(data_dir / "ssh_host_key.pub"))
    return key


def _authorized(path: Path) -> set[bytes]:
    if not path.exists():
        return set()
    keys: set[bytes] = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            try:
                keys.add(asyncssh.import_public_key(line.strip()).public_data)
            except (asyncssh.KeyImportError, ValueError):
                continue
    return keys


class _Server(asyncssh.SSHServer):
    def __init__(self, listener: SshListener) -> None:
        self._listener = listener
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._listener.connections.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._listener.connections.discard(self._conn)

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return key.public_data in _authorized(self._listener.authorized_keys)


class SshListener:
    """One SSH listening socket for the node; ``port`` is fixed after the first ``open``."""

    def __init__(self, data_dir: Path, host: str, port: int, executor: Executor) -> None:
        self.host, self.port = host, port
        self.authorized_keys = data_dir / "authorized_keys"
        self.fs_root = data_dir / "fs"
        self.host_key = ensure_host_key(data_dir)
        self.executor = executor
        self.connections: set[asyncssh.SSHServerConnection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self._acceptor: asyncssh.SSHAcceptor | None = None

    @property
    def listening(self) -> bool:
        return self._acceptor is not None

    async def open(self) -> None:
        if self._acceptor is not None:
            return
        self._acceptor = await asyncssh.listen(
            self.host,
            self.port,
            server_factory=lambda: _Server(self),
            server_host_keys=[self.host_key],
            process_factory=self._process,
            sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=bytes(self.fs_root)),
            encoding=None,
            allow_scp=False,
            agent_forwarding=False,
            x11_forwarding=False,
        )
        self.port = self._acceptor.get_port()

    async def close(self) -> None:
        """Stop listening; connections already open keep working."""
        acceptor, self._acceptor = self._acceptor, None
        if acceptor is not None:
            # Not wait_closed(): from Python 3.12 on it also waits for every open connection.
            acceptor.close()
            await asyncio.sleep(0)

    async def shutdown(self) -> None:
        """Stop listening, drop every connection and every command still running."""
        await self.close()
        for task in list(self.tasks):
            task.cancel()
        for conn in list(self.connections):
            conn.abort()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _process(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
        try:
            if process.command is None:
                process.stderr.write(b"This node only runs Hestia commands.\n")
                process.exit(1)
                return
            user = process.get_extra_info("username") or ""
            if process.command == BASH:
                await self._session(process, user)
                return
            result = await self.executor.execute(user, process.command)
            process.stdout.write(result.stdout.encode())
            process.stderr.write(result.stderr.encode())
            process.exit(result.exit_code)
        except (asyncssh.Error, ConnectionError, BrokenPipeError):
            process.close()
        finally:
            if task is not None:
                self.tasks.discard(task)

    async def _session(self, process: asyncssh.SSHServerProcess[bytes], user: str) -> None:
        """A shell: each line of input run as bash would, until the input ends."""

        async def run(words: list[str]) -> CommandResult:
            return await self.executor.execute_words(user, words)

        shell = Shell(
            run,
            out=lambda text: process.stdout.write(text.encode()),
            err=lambda text: process.stderr.write(text.encode()),
        )
        try:
            while line := (await process.stdin.readline()).decode("utf-8", "replace"):
                await shell.run_line(line)
        except ShellExit as stop:
            process.exit(stop.status)
            return
        process.exit(shell.status)
