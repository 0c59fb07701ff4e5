"""The HestiaCP driver: ``v-*`` commands on one node over a small pool of SSH connections.

``HestiaDriver(access)`` consumes a ``NodeAccess`` (address, login, the pinned host key, the
client key files) and emits ``CommandResult``s for argv lists, parsed ``v-list-* json`` output,
and files put over SFTP. Connections are opened lazily, kept for the driver's lifetime and
shared (one SSH connection carries several commands at once, and a fresh connection per command
is ~7x slower); a broken one is dropped and replaced on the next call. Commands run in command
sessions (``hestia_command.SHELL_PREAMBLE``): up to ``SESSIONS_PER_CONNECTION`` shells per
connection, each running one command at a time and kept for the next, which costs a fraction of
an exec channel per command. SSH failures and timeouts raise ``TransientNodeError``; a host key
that does not match the pinned one, or a login the node refuses, raise ``PermanentNodeError``
(retrying cannot fix either; an operator must).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import posixpath
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncssh

from handlers.hestia_command import (
    SHELL_COMMAND,
    SHELL_PREAMBLE,
    CommandResult,
    PermanentNodeError,
    TransientNodeError,
    check_argv,
    command_line,
    error_for,
    fits_a_session,
    session_line,
    shown,
)

# OpenSSH refuses an 11th channel on a connection (MaxSessions 10): kept sessions and the
# SFTP / exec channels opened beside them stay below that together.
CHANNELS_PER_CONNECTION = 9
SESSIONS_PER_CONNECTION = 8
# Idle shells kept for the next commands; more are closed (each is a process on the node).
IDLE_SESSIONS_KEPT = 16
# AES-GCM first: with AES-NI it costs asyncssh less per packet than ChaCha20-Poly1305 (the
# SSH floor measured ~40% higher); a server without it picks the next one it has.
# asyncssh's default list, reordered: nothing weaker is ever offered.
PREFERRED_CIPHERS = list(
    dict.fromkeys(
        [
            "aes128-gcm@openssh.com",
            "aes256-gcm@openssh.com",
            *(alg.decode() for alg in asyncssh.encryption.get_default_encryption_algs()),
        ]
    )
)


@dataclass(frozen=True)
class NodeAccess:
    """How to reach one node. ``host_key`` is its OpenSSH public key line, pinned."""

    server_id: str
    host: str
    port: int
    username: str
    host_key: str
    client_keys: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        key = self.host_key.strip()
        if not key or "\n" in key:
            raise ValueError(f"{self.server_id}: host_key must be one OpenSSH public key line")
        try:
            asyncssh.import_public_key(key)
        except (asyncssh.KeyImportError, ValueError) as exc:
            raise ValueError(f"{self.server_id}: host_key is not a public key: {exc}") from exc
        if isinstance(self.client_keys, str):
            object.__setattr__(self, "client_keys", (self.client_keys,))

    def known_hosts(self) -> asyncssh.SSHKnownHosts:
        """A known_hosts holding exactly the pinned key for this host and port."""
        pattern = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
        return asyncssh.import_known_hosts(f"{pattern} {self.host_key.strip()}\n")


@dataclass(eq=False)
class _Slot:
    conn: asyncssh.SSHClientConnection
    busy: int = 0
    sessions: int = 0  # open command sessions, busy or idle
    others: int = 0  # open SFTP and exec channels

    def has_room(self, for_session: bool) -> bool:
        if for_session and self.sessions >= SESSIONS_PER_CONNECTION:
            return False
        return self.sessions + self.others < CHANNELS_PER_CONNECTION


class _NotSent(Exception):
    """The command line could not be written: the command never ran."""


@dataclass(eq=False)
class _Session:
    """One shell on ``slot``'s connection that has run the preamble; one command at a time."""

    slot: _Slot
    process: asyncssh.SSHClientProcess[str]
    marker: str

    def __post_init__(self) -> None:
        marker = re.escape(self.marker)
        self._out_end = re.compile(f"\n{marker} (\\d+)\n\\Z")
        self._err_end = re.compile(f"\n{marker}\n\\Z")

    @property
    def usable(self) -> bool:
        return not self.slot.conn.is_closed() and not self.process.is_closing()

    async def run(self, line: str) -> tuple[int, str, str]:
        """(exit status, stdout, stderr) of one ``session_line``."""
        try:
            self.process.stdin.write(line)
        except (asyncssh.Error, OSError) as exc:
            raise _NotSent(exc) from exc
        out, status = await _read_to_end(self.process.stdout, self._out_end)
        err, _ = await _read_to_end(self.process.stderr, self._err_end)
        return int(status[1]), out, err

    def close(self) -> None:
        self.process.close()


async def _read_to_end(
    stream: asyncssh.SSHReader[str], end: re.Pattern[str]
) -> tuple[str, re.Match[str]]:
    """What ``stream`` sends up to ``end`` (the command's last line, matched at the end of
    what has arrived), and the match. Read in chunks into a buffer of our own: asyncssh's
    ``readuntil`` gives up once its buffer holds a whole window (2 MiB) without the end."""
    parts: list[str] = []
    tail = ""
    while True:
        chunk = await stream.read(65536)
        if not chunk:
            raise asyncio.IncompleteReadError("".join(parts).encode(), None)
        parts.append(chunk)
        tail = (tail + chunk)[-128:]
        found = end.search(tail)
        if found is not None:
            text = "".join(parts)
            return text[: len(text) - len(tail) + found.start()], found


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
        self._pool_size = max(1, pool_size)
        self._command_timeout = command_timeout
        self._connect_timeout = connect_timeout
        self._slots: list[_Slot] = []
        self._idle: list[_Session] = []
        self._opening = 0
        self._changed = asyncio.Condition()
        self._closed = False
        self._use_sessions = use_sessions  # False: an exec channel per command (no shell)
        self.connections_opened = 0  # for tests and metrics: how often we had to connect
        self.sessions_opened = 0

    @property
    def server_id(self) -> str:
        return self.access.server_id

    async def run(self, argv: Sequence[str]) -> CommandResult:
        """Runs one command; any exit status is returned, SSH trouble raises TransientNodeError."""
        started = time.monotonic()
        check_argv(argv)  # a bad argv is refused before any channel is taken
        if not self._use_sessions or not fits_a_session(argv):
            status, stdout, stderr = await self._run_exec(argv)
        else:
            status, stdout, stderr = await self._run_in_session(argv)
        return CommandResult(
            exit_status=status,
            stdout=stdout,
            stderr=stderr,
            duration_ms=(time.monotonic() - started) * 1000,
        )

    async def _run_in_session(self, argv: Sequence[str]) -> tuple[int, str, str]:
        # A line that could not even be written never ran, so it is safe to try once more on
        # a fresh session (a kept one may have died while idle).
        for attempt in (1, 2):
            session = await self._take_session(argv)
            if session is None:  # every connection holds its most sessions, all busy
                return await self._run_exec(argv)
            try:
                async with asyncio.timeout(self._command_timeout):
                    answer = await session.run(session_line(session.marker, argv))
            except _NotSent as exc:
                self._drop_session(session)
                if attempt == 2:
                    raise self._transient(argv, f"could not start it: {exc}") from exc
                continue
            except TimeoutError:
                # Only this session is abandoned; the connection itself may be fine.
                self._drop_session(session)
                raise self._transient(
                    argv, f"no answer within {self._command_timeout:g}s"
                ) from None
            except (asyncssh.Error, OSError, asyncio.IncompleteReadError) as exc:
                self._drop_session(session)
                if session.slot.conn.is_closed():
                    self._discard(session.slot)
                raise self._transient(argv, f"the connection failed: {exc}") from exc
            except BaseException:
                self._drop_session(session)  # cancelled mid-command: where it stands is unknown
                raise
            finally:
                session.slot.busy -= 1
            self._return_session(session)
            return answer
        raise AssertionError("unreachable")

    async def _run_exec(self, argv: Sequence[str]) -> tuple[int, str, str]:
        line = command_line(argv)
        slot, process = await self._start(line, argv)
        try:
            completed = await self._wait(process, argv, slot)
        finally:
            self._release(slot)
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

    async def put_file(self, path: str, data: bytes) -> None:
        """Writes ``data`` to ``path`` on the node over SFTP, readable by our login only."""
        slot = await self._acquire()
        try:
            async with asyncio.timeout(self._command_timeout):
                async with slot.conn.start_sftp_client() as sftp:
                    await sftp.makedirs(posixpath.dirname(path) or "/", exist_ok=True)
                    async with sftp.open(path, "wb") as remote:
                        await remote.write(data)
                    await sftp.chmod(path, 0o600)
        except (asyncssh.Error, OSError, TimeoutError) as exc:
            self._discard_unless_refused(slot, exc)
            raise TransientNodeError(f"{self.server_id}: uploading {path} failed: {exc}") from exc
        finally:
            self._release(slot)

    async def remove_file(self, path: str) -> None:
        """Deletes ``path`` on the node over SFTP; a missing file is fine."""
        slot = await self._acquire()
        try:
            async with asyncio.timeout(self._command_timeout):
                async with slot.conn.start_sftp_client() as sftp:
                    with contextlib.suppress(asyncssh.SFTPNoSuchFile):
                        await sftp.remove(path)
        except (asyncssh.Error, OSError, TimeoutError) as exc:
            self._discard_unless_refused(slot, exc)
            raise TransientNodeError(f"{self.server_id}: removing {path} failed: {exc}") from exc
        finally:
            self._release(slot)

    async def close(self) -> None:
        """Closes every pooled connection; later calls fail with TransientNodeError."""
        self._closed = True
        self._idle.clear()
        slots, self._slots = self._slots, []
        for slot in slots:
            slot.conn.close()
        for slot in slots:
            await slot.conn.wait_closed()

    @property
    def open_connections(self) -> int:
        return len(self._slots)

    async def _take_session(self, argv: Sequence[str]) -> _Session | None:
        """A kept idle session, or a new one on a connection with room for it; ``None`` when
        the pool is full and no connection has room."""
        while self._idle:
            session = self._idle.pop()
            if session.usable:
                session.slot.busy += 1
                return session
            self._drop_session(session)
        slot = await self._pick(for_session=True)
        if slot is None:
            return None
        try:
            # A connection that died silently would otherwise hold this open for hours.
            async with asyncio.timeout(self._connect_timeout):
                process = await slot.conn.create_process(
                    SHELL_COMMAND, encoding="utf-8", errors="replace"
                )
            process.stdin.write(SHELL_PREAMBLE + "\n")
        except BaseException as exc:
            slot.busy -= 1
            slot.sessions -= 1
            if not isinstance(exc, asyncssh.Error | OSError | TimeoutError):
                raise  # cancelled, say: the connection is not to blame
            self._discard(slot)
            raise self._transient(argv, f"could not start a command session: {exc}") from exc
        self.sessions_opened += 1
        return _Session(slot, process, "hw-end-" + secrets.token_hex(8))

    def _return_session(self, session: _Session) -> None:
        if self._closed or not session.usable or len(self._idle) >= IDLE_SESSIONS_KEPT:
            self._drop_session(session)
        else:
            self._idle.append(session)

    def _drop_session(self, session: _Session) -> None:
        session.slot.sessions -= 1
        session.close()

    async def _start(
        self, line: str, argv: Sequence[str]
    ) -> tuple[_Slot, asyncssh.SSHClientProcess[str]]:
        # A command whose channel could not even be opened never ran, so it is safe to try
        # once more on a fresh connection (the pooled one may have died while idle).
        for attempt in (1, 2):
            slot = await self._acquire()
            try:
                process = await slot.conn.create_process(line, encoding="utf-8", errors="replace")
            except (asyncssh.Error, OSError) as exc:
                self._release(slot)
                self._discard_unless_refused(slot, exc)
                if attempt == 2:
                    raise self._transient(argv, f"could not start it: {exc}") from exc
                continue
            return slot, process
        raise AssertionError("unreachable")

    async def _wait(
        self, process: asyncssh.SSHClientProcess[str], argv: Sequence[str], slot: _Slot
    ) -> asyncssh.SSHCompletedProcess:
        try:
            async with asyncio.timeout(self._command_timeout):
                return await process.wait(check=False)
        except TimeoutError:
            # Only this channel is abandoned; the connection itself may be fine.
            process.close()
            raise self._transient(argv, f"no answer within {self._command_timeout:g}s") from None
        except (asyncssh.Error, OSError) as exc:
            self._discard(slot)
            raise self._transient(argv, f"the connection failed: {exc}") from exc

    async def _acquire(self) -> _Slot:
        """The least busy open connection, or a new one while the pool has room."""
        slot = await self._pick(for_session=False)
        assert slot is not None
        return slot

    async def _pick(self, *, for_session: bool) -> _Slot | None:
        """The least busy open connection (for a session: with room for one more), or a new
        one while the pool has room; for a session, ``None`` rather than waiting when no
        connection is on its way either."""
        async with self._changed:
            while True:
                if self._closed:
                    raise TransientNodeError(f"{self.server_id}: the driver is closed")
                self._slots = [s for s in self._slots if not s.conn.is_closed()]
                usable = [s for s in self._slots if s.has_room(for_session)]
                best = min(usable, key=lambda s: s.busy, default=None)
                full = len(self._slots) + self._opening >= self._pool_size
                if best is None and full and not for_session and self._idle:
                    self._drop_session(self._idle.pop(0))  # its channel makes room for this one
                    continue
                if best is not None and (best.busy == 0 or full):
                    best.busy += 1
                    best.sessions += for_session
                    best.others += not for_session
                    return best
                if not full:
                    self._opening += 1
                    break
                if for_session and not self._opening:
                    return None  # no connection coming that could hold one more session
                # every channel of every connection is in use: look again shortly
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), 0.05)
        try:
            conn = await self._connect()
        finally:
            async with self._changed:
                self._opening -= 1
                self._changed.notify_all()
        slot = _Slot(conn, busy=1, sessions=int(for_session), others=int(not for_session))
        if self._closed:
            conn.close()
            raise TransientNodeError(f"{self.server_id}: the driver is closed")
        self._slots.append(slot)
        return slot

    async def _connect(self) -> asyncssh.SSHClientConnection:
        access = self.access
        where = f"{access.server_id} ({access.username}@{access.host}:{access.port})"
        try:
            async with asyncio.timeout(self._connect_timeout):
                conn = await asyncssh.connect(
                    access.host,
                    access.port,
                    username=access.username,
                    client_keys=list(access.client_keys) or (),
                    known_hosts=access.known_hosts(),
                    agent_path=None,
                    config=None,
                    encryption_algs=PREFERRED_CIPHERS,
                    # a node gone without a word is noticed within ~45 s, not hours
                    keepalive_interval=15,
                    keepalive_count_max=3,
                )
        except asyncssh.HostKeyNotVerifiable as exc:
            raise PermanentNodeError(
                f"{where}: the node's host key does not match the pinned key"
            ) from exc
        except asyncssh.PermissionDenied as exc:
            raise PermanentNodeError(f"{where}: the node refused our SSH key") from exc
        except TimeoutError as exc:
            raise TransientNodeError(
                f"{where}: no SSH connection within {self._connect_timeout:g}s"
            ) from exc
        except (asyncssh.Error, OSError) as exc:
            raise TransientNodeError(f"{where}: cannot connect: {exc}") from exc
        self.connections_opened += 1
        return conn

    def _release(self, slot: _Slot) -> None:
        """An SFTP or exec channel of ``slot`` is done."""
        slot.busy -= 1
        slot.others -= 1

    def _discard_unless_refused(self, slot: _Slot, exc: BaseException) -> None:
        # A channel the node refused (too many on this connection, say) says nothing
        # about the connection, which other commands may be using right now.
        if not isinstance(exc, asyncssh.ChannelOpenError):
            self._discard(slot)

    def _discard(self, slot: _Slot) -> None:
        if slot in self._slots:
            self._slots.remove(slot)
        slot.conn.close()

    def _transient(self, argv: Sequence[str], why: str) -> TransientNodeError:
        return TransientNodeError(f"{self.server_id}: {shown(argv)}: {why}")

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


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
