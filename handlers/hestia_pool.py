"""The Hestia driver's SSH connections to one node: opened lazily, shared, and counted per channel.

``ConnectionPool(access, ...)`` consumes a ``NodeAccess`` (address, login, the pinned host key,
the client key files) and emits ``PooledConnection``s: ``pick`` hands out the least busy open
connection (for a command session, one with room for one more shell) or opens a new one while
the pool has room, and ``release``/``discard`` take them back. Each connection counts its busy
users, its command sessions and its other channels (SFTP, exec), so that together they stay
below OpenSSH's MaxSessions. A host key that does not match the pinned one, or a login the node
refuses, raise ``PermanentNodeError``; any other failure to connect ``TransientNodeError``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncssh

from domain.correlation import command_context
from handlers.hestia_command import PermanentNodeError, TransientNodeError

# OpenSSH refuses an 11th channel on a connection (MaxSessions 10): kept sessions and the
# SFTP / exec channels opened beside them stay below that together.
CHANNELS_PER_CONNECTION = 9
SESSIONS_PER_CONNECTION = 8
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
class PooledConnection:
    """One SSH connection of the pool and what runs on it now."""

    conn: asyncssh.SSHClientConnection
    busy: int = 0
    sessions: int = 0  # open command sessions, busy or idle
    others: int = 0  # open SFTP and exec channels

    def has_room(self, for_session: bool) -> bool:
        if for_session and self.sessions >= SESSIONS_PER_CONNECTION:
            return False
        return self.sessions + self.others < CHANNELS_PER_CONNECTION


class ConnectionPool:
    """Up to ``size`` connections to one node. ``make_room`` closes one idle command session
    and says whether there was one: its channel is given to an SFTP or exec channel when every
    connection is full."""

    def __init__(
        self,
        access: NodeAccess,
        *,
        size: int,
        connect_timeout: float,
        make_room: Callable[[], bool],
    ) -> None:
        self.access = access
        self.size = max(1, size)
        self.connect_timeout = connect_timeout
        self.slots: list[PooledConnection] = []
        self.closed = False
        self.connections_opened = 0  # for tests and metrics: how often we had to connect
        self._make_room = make_room
        self._opening = 0
        self._changed = asyncio.Condition()

    async def acquire(self) -> PooledConnection:
        """The least busy open connection, or a new one while the pool has room; for an SFTP
        or exec channel, given back with ``release``."""
        slot = await self.pick(for_session=False)
        assert slot is not None
        return slot

    async def pick(self, *, for_session: bool) -> PooledConnection | None:
        """The least busy open connection (for a session: with room for one more), or a new
        one while the pool has room; for a session, ``None`` rather than waiting when no
        connection is on its way either."""
        async with self._changed:
            while True:
                if self.closed:
                    raise TransientNodeError(f"{self.access.server_id}: the driver is closed")
                self.slots = [s for s in self.slots if not s.conn.is_closed()]
                usable = [s for s in self.slots if s.has_room(for_session)]
                best = min(usable, key=lambda s: s.busy, default=None)
                full = len(self.slots) + self._opening >= self.size
                if best is None and full and not for_session and self._make_room():
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
        slot = PooledConnection(
            conn, busy=1, sessions=int(for_session), others=int(not for_session)
        )
        if self.closed:
            conn.close()
            raise TransientNodeError(f"{self.access.server_id}: the driver is closed")
        self.slots.append(slot)
        return slot

    def release(self, slot: PooledConnection) -> None:
        """An SFTP or exec channel of ``slot`` is done."""
        slot.busy -= 1
        slot.others -= 1

    def discard_unless_refused(self, slot: PooledConnection, exc: BaseException) -> None:
        # A channel the node refused (too many on this connection, say) says nothing
        # about the connection, which other commands may be using right now.
        if not isinstance(exc, asyncssh.ChannelOpenError):
            self.discard(slot)

    def discard(self, slot: PooledConnection) -> None:
        if slot in self.slots:
            self.slots.remove(slot)
        slot.conn.close()

    async def close(self) -> None:
        """Closes every connection; later picks fail with TransientNodeError."""
        self.closed = True
        slots, self.slots = self.slots, []
        for slot in slots:
            slot.conn.close()
        for slot in slots:
            await slot.conn.wait_closed()

    async def _connect(self) -> asyncssh.SSHClientConnection:
        access = self.access
        where = f"{access.server_id} ({access.username}@{access.host}:{access.port})"
        try:
            # a pooled connection outlives the step that opened it: the callbacks and tasks it
            # starts must not carry that step's command id into later steps' log lines
            with command_context(None):
                async with asyncio.timeout(self.connect_timeout):
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
                f"{where}: no SSH connection within {self.connect_timeout:g}s"
            ) from exc
        except (asyncssh.Error, OSError) as exc:
            raise TransientNodeError(f"{where}: cannot connect: {exc}") from exc
        self.connections_opened += 1
        return conn
