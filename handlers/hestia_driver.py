"""The HestiaCP driver: ``v-*`` commands on one node over a small pool of SSH connections.

``HestiaDriver(access)`` consumes a ``NodeAccess`` (address, login, the pinned host key, the client
key files) and emits ``CommandResult``s for argv lists, parsed ``v-list-* json`` output, and files
put over SFTP (also a private folder of them, for certificate keys). Connections (``hestia_pool``)
are opened lazily, kept for the driver's lifetime and shared (one SSH connection carries several
commands at once, and a fresh connection per command is ~7x slower); a broken one is dropped and
replaced on the next call. Commands run in command sessions (``hestia_session``): shells kept open,
one command at a time each, which costs a fraction of an exec channel per command; a command that
cannot be one line of a session, or finds no room for one, gets an exec channel of its own. SSH
failures and timeouts raise ``TransientNodeError``; a host key that does not match the pinned one,
or a login the node refuses, raise ``PermanentNodeError`` (retrying cannot fix either; an operator
must).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import posixpath
import re
import secrets
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import asyncssh

from handlers.hestia_command import (
    CommandResult,
    PermanentNodeError,
    TransientNodeError,
    check_argv,
    command_line,
    error_for,
    shown,
    transient_error,
)
from handlers.hestia_pool import ConnectionPool, NodeAccess, PooledConnection
from handlers.hestia_session import CommandSessions, fits_a_session

__all__ = ["HestiaDriver", "NodeAccess"]


class HestiaDriver:
    def __init__(
        self,
        access: NodeAccess,
        *,
        pool_size: int = 4,
        command_timeout: float = 30.0,
        connect_timeout: float = 10.0,
        use_sessions: bool = True,
    ) -> None:
        self.access = access
        self._command_timeout = command_timeout
        self._pool = ConnectionPool(
            access,
            size=pool_size,
            connect_timeout=connect_timeout,
            make_room=self._close_an_idle_session,
        )
        self._sessions = CommandSessions(
            self._pool, command_timeout=command_timeout, open_timeout=connect_timeout
        )
        self._use_sessions = use_sessions  # False: an exec channel per command (no shell)

    @property
    def server_id(self) -> str:
        return self.access.server_id

    @property
    def connections_opened(self) -> int:
        """For tests and metrics: how often we had to connect."""
        return self._pool.connections_opened

    @property
    def sessions_opened(self) -> int:
        return self._sessions.opened

    async def run(self, argv: Sequence[str]) -> CommandResult:
        """Runs one command; any exit status is returned, SSH trouble raises TransientNodeError."""
        started = time.monotonic()
        check_argv(argv)  # a bad argv is refused before any channel is taken
        answer = None
        if self._use_sessions and fits_a_session(argv):
            answer = await self._sessions.run(argv)
        if answer is None:
            answer = await self._run_exec(argv)
        status, stdout, stderr = answer
        return CommandResult(
            exit_status=status,
            stdout=stdout,
            stderr=stderr,
            duration_ms=(time.monotonic() - started) * 1000,
        )

    async def _run_exec(self, argv: Sequence[str]) -> tuple[int, str, str]:
        line = command_line(argv)
        slot, process = await self._start(line, argv)
        try:
            completed = await self._wait(process, argv, slot)
        finally:
            self._pool.release(slot)
        if completed.exit_status is None:
            raise self._transient(argv, "the connection ended without an exit status")
        return completed.exit_status, _text(completed.stdout), _text(completed.stderr)

    async def check(self, argv: Sequence[str]) -> CommandResult:
        """Runs ``argv`` and raises the classified NodeError unless it exits 0."""
        result = await self.run(argv)
        if result.exit_status != 0:
            raise error_for(self.server_id, argv, result)
        return result

    async def list_json(self, argv: Sequence[str]) -> Any:
        """``argv`` + ``json`` (give it without the format), parsed; any non-zero exit raises."""
        full = [*argv, "json"]
        return self._parse(full, (await self.check(full)).stdout)

    async def probe_json(self, argv: Sequence[str]) -> Any | None:
        """Like ``list_json``, but "does not exist" (exit 3) is an answer: ``None``."""
        full = [*argv, "json"]
        result = await self.run(full)
        if result.exit_status == 3:
            return None
        if result.exit_status != 0:
            raise error_for(self.server_id, full, result)
        return self._parse(full, result.stdout)

    async def put_file(self, path: str, data: bytes, *, mode: int = 0o600) -> None:
        """Writes ``data`` to ``path`` on the node over SFTP with ``mode`` (0600: readable by
        our login only; a file a Hestia command reads as the user, such as
        ``v-copy-fs-file``'s source, needs 0644)."""
        async with self._sftp(f"uploading {path}") as sftp:
            await sftp.makedirs(posixpath.dirname(path) or "/", exist_ok=True)
            await self._write(sftp, path, data, mode, exclusive=False)

    async def remove_file(self, path: str) -> None:
        """Deletes ``path`` on the node over SFTP; a missing file is fine."""
        async with self._sftp(f"removing {path}") as sftp:
            with contextlib.suppress(asyncssh.SFTPNoSuchFile):
                await sftp.remove(path)

    async def put_private_files(self, directory: str, files: Mapping[str, bytes]) -> str:
        """``directory``, a path under our login's home (relative to it), made afresh with
        mode 0700 (whatever was there, a killed attempt's leftovers, removed first), holding
        ``files`` by name, each 0600 and created exclusively; emits its absolute path. Every
        folder between the home and it must be ours, 0700 and no symbolic link (made so when
        missing): a folder another user could write in or swap would let them take the key."""
        _check_private(directory, files)
        if posixpath.isabs(directory):
            raise ValueError(f"a private folder lives under our home: {directory!r}")
        async with self._sftp(f"uploading into {directory}") as sftp:
            home, uid = await _home(sftp)
            parts = posixpath.normpath(directory).split("/")
            parent = home
            for part in parts[:-1]:
                parent = posixpath.join(parent, part)
                await _own_folder(sftp, parent, uid, 0o700, private=True)
            folder = posixpath.join(parent, parts[-1])
            await _remove_any(sftp, folder)
            await _fresh_folder(sftp, folder, uid, 0o700)
            for name, data in files.items():
                await self._write(sftp, posixpath.join(folder, name), data, 0o600)
            return folder

    async def put_fresh_file(self, root: str, name: str, data: bytes, *, mode: int) -> str:
        """``data`` as ``<root>/<random>/<name>`` in a folder made for it alone (mode 0755,
        ``mode`` for the file, both created exclusively); emits the file's path. ``root``
        (made when missing) must be ours, no symbolic link, and writable by no one else."""
        _check_private(root, {name: data})
        if not posixpath.isabs(root):
            raise ValueError(f"not an absolute folder: {root!r}")
        async with self._sftp(f"uploading into {root}") as sftp:
            _, uid = await _home(sftp)
            await _own_folder(sftp, root, uid, 0o755, private=False)
            folder = posixpath.join(root, secrets.token_hex(16))
            await _fresh_folder(sftp, folder, uid, 0o755)
            path = posixpath.join(folder, name)
            await self._write(sftp, path, data, mode)
            return path

    async def remove_tree(self, directory: str) -> None:
        """``directory`` (absolute, or relative to our login's home) and everything in it gone
        over SFTP; a missing one is fine."""
        normal = posixpath.normpath(directory)
        if normal in ("/", ".") or normal.startswith("..") or "/../" in f"/{normal}/":
            raise ValueError(f"{self.server_id}: will not remove the tree {directory!r}")
        async with self._sftp(f"removing {directory}") as sftp:
            if not posixpath.isabs(normal):
                normal = posixpath.join((await _home(sftp))[0], normal)
            await _remove_any(sftp, normal)

    @contextlib.asynccontextmanager
    async def _sftp(self, doing: str) -> AsyncIterator[asyncssh.SFTPClient]:
        """An SFTP session on a pooled connection; SSH trouble is a TransientNodeError that
        says what was being done (never the data)."""
        slot = await self._pool.acquire()
        try:
            async with asyncio.timeout(self._command_timeout):
                async with slot.conn.start_sftp_client() as sftp:
                    yield sftp
        except (asyncssh.Error, OSError, TimeoutError) as exc:
            self._pool.discard_unless_refused(slot, exc)
            raise TransientNodeError(f"{self.server_id}: {doing} failed: {exc}") from exc
        finally:
            self._pool.release(slot)

    @staticmethod
    async def _write(
        sftp: asyncssh.SFTPClient, path: str, data: bytes, mode: int, *, exclusive: bool = True
    ) -> None:
        attrs = asyncssh.SFTPAttrs(permissions=mode)
        # "x": O_CREAT|O_EXCL, never through a symbolic link or into a file already there
        async with sftp.open(path, "xb" if exclusive else "wb", attrs) as remote:
            await remote.write(data)
        await sftp.chmod(path, mode)

    async def close(self) -> None:
        """Closes every pooled connection; later calls fail with TransientNodeError."""
        self._sessions.idle.clear()
        await self._pool.close()

    @property
    def open_connections(self) -> int:
        return len(self._pool.slots)

    def _close_an_idle_session(self) -> bool:
        return self._sessions.close_one_idle()

    async def _start(
        self, line: str, argv: Sequence[str]
    ) -> tuple[PooledConnection, asyncssh.SSHClientProcess[str]]:
        # A command whose channel could not even be opened never ran, so it is safe to try
        # once more on a fresh connection (the pooled one may have died while idle).
        for attempt in (1, 2):
            slot = await self._pool.acquire()
            try:
                process = await slot.conn.create_process(line, encoding="utf-8", errors="replace")
            except (asyncssh.Error, OSError) as exc:
                self._pool.release(slot)
                self._pool.discard_unless_refused(slot, exc)
                if attempt == 2:
                    raise self._transient(argv, f"could not start it: {exc}") from exc
                continue
            return slot, process
        raise AssertionError("unreachable")

    async def _wait(
        self, process: asyncssh.SSHClientProcess[str], argv: Sequence[str], slot: PooledConnection
    ) -> asyncssh.SSHCompletedProcess:
        try:
            async with asyncio.timeout(self._command_timeout):
                return await process.wait(check=False)
        except TimeoutError:
            # Only this channel is abandoned; the connection itself may be fine.
            process.close()
            raise self._transient(argv, f"no answer within {self._command_timeout:g}s") from None
        except (asyncssh.Error, OSError) as exc:
            self._pool.discard(slot)
            raise self._transient(argv, f"the connection failed: {exc}") from exc

    def _transient(self, argv: Sequence[str], why: str) -> TransientNodeError:
        return transient_error(self.server_id, argv, why)

    def _parse(self, argv: Sequence[str], stdout: str) -> Any:
        text = stdout.strip()
        if not text:
            return {}
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            pass
        try:
            # Some Hestia versions leave a comma before a closing brace in hand-built JSON.
            return json.loads(re.sub(r",\s*([}\]])", r"\1", text))
        except json.JSONDecodeError as exc:
            raise TransientNodeError(
                f"{self.server_id}: {shown(argv)} printed no valid JSON ({exc})"
            ) from exc


def _check_private(directory: str, files: Mapping[str, bytes]) -> None:
    normal = posixpath.normpath(directory)
    if normal in ("/", ".", "/tmp") or ".." in normal.split("/"):  # noqa: S108
        raise ValueError(f"not a private folder of its own: {directory!r}")
    for name in files:
        if not name or "/" in name or name in (".", "..") or "\x00" in name:
            raise ValueError(f"not a plain file name: {name!r}")


async def _home(sftp: asyncssh.SFTPClient) -> tuple[str, int]:
    """Our login's home (where SFTP starts) and its owner: the uid our folders must have."""
    home = await sftp.realpath(".")
    return home, int((await sftp.stat(home)).uid or 0)


async def _own_folder(
    sftp: asyncssh.SFTPClient, path: str, uid: int, mode: int, *, private: bool
) -> None:
    """``path`` a folder of ours (made with ``mode`` when missing) that no one else may
    write in or swap: not a symbolic link, owned by ``uid``, and mode 0700 when ``private``,
    else without group or other write bits. Anything else raises ``PermanentNodeError``."""
    try:
        found = await sftp.lstat(path)
    except asyncssh.SFTPNoSuchFile:
        with contextlib.suppress(asyncssh.SFTPFailure):  # made meanwhile: checked below
            await sftp.mkdir(path, asyncssh.SFTPAttrs(permissions=mode))
            await sftp.chmod(path, mode)  # the node's umask may have taken bits away
        found = await sftp.lstat(path)
    bits = (found.permissions or 0) & 0o7777
    safe = bits == 0o700 if private else not bits & 0o022
    if found.type != asyncssh.FILEXFER_TYPE_DIRECTORY or found.uid != uid or not safe:
        raise PermanentNodeError(
            f"{path} is not a folder of ours that no one else may write in "
            f"(type {found.type}, owner {found.uid}, mode {bits:o}); remove it on the node"
        )


async def _fresh_folder(sftp: asyncssh.SFTPClient, path: str, uid: int, mode: int) -> None:
    """``path`` made now by us (mkdir fails on anything already there) with ``mode``."""
    await sftp.mkdir(path, asyncssh.SFTPAttrs(permissions=mode))
    await sftp.chmod(path, mode)
    found = await sftp.lstat(path)
    if found.type != asyncssh.FILEXFER_TYPE_DIRECTORY or found.uid != uid:
        raise PermanentNodeError(f"{path} is not the folder we just made")


async def _remove_any(sftp: asyncssh.SFTPClient, path: str) -> None:
    """``path`` gone, whatever it is: a folder with its contents, a file, or a symbolic link
    (the link itself, never what it points to)."""
    try:
        found = await sftp.lstat(path)
    except asyncssh.SFTPNoSuchFile:
        return
    if found.type == asyncssh.FILEXFER_TYPE_DIRECTORY:
        await sftp.rmtree(path)
    else:
        await sftp.remove(path)


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
