"""The Server aggregate: one node hostwright drives (HestiaCP over SSH, or a PowerDNS node).

``POST /v1/servers`` bodies go through ``parse_server`` (strict: every field typed, bounded and
free of shell metacharacters, unknown fields refused; an IPv6 host or ip may carry a scope
id, ``fe80::1%eth0``, which must be an interface name or zone index; the host key through
domain/host_key.py) into a ``RegisterServer`` command.
``Server.register`` records ``Server.Registered``; registering the same server_id again records
``Server.Updated`` when a field changed and nothing when none did — but a registration that
would change where and to whom the handlers connect (host, port, host key) is a Conflict: that
is ``POST /v1/servers/{id}/rekey``, parsed by ``parse_rekey`` into a ``RekeyServer`` and
recorded as ``Server.Rekeyed`` with the old and new host-key fingerprints. Only a reference to
the private key lives elsewhere (settings); the pinned *public* host key is recorded here.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eventsourcing.domain import Aggregate

from domain.errors import Conflict, InvalidInput
from domain.host_key import host_key_fingerprint, parse_host_key

SERVER_NAMESPACE = uuid.UUID("7c1d4a52-93e0-4f7b-8d6a-2b5e0c9f1a34")
ROLES = ("web", "mail", "dns")  # also the canonical order roles are stored in
MAX_CONCURRENCY = 64
# a node's description, as a POST /v1/servers body gives it and as events record it
NODE_FIELDS = (
    "server_id",
    "roles",
    "host",
    "port",
    "username",
    "host_key",
    "ip",
    "max_concurrency",
)
# where and to whom the handlers connect: changed only by an explicit re-key
CONNECTION_FIELDS = ("host", "port", "host_key")
_SERVER_ID = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_HOST_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_UNIX_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
# an IPv6 scope id (the zone after '%'): a Linux interface name (at most 15 characters) or a
# zone index; ``ipaddress`` takes any text there, ';' and '$(…)' included
_SCOPE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")


def server_uuid(server_id: str) -> uuid.UUID:
    """The aggregate id of a server id: stable, so registering twice finds the same node."""
    return uuid.uuid5(SERVER_NAMESPACE, f"server/{server_id}")


@dataclass(frozen=True, kw_only=True)
class RegisterServer:
    """Register (or re-describe) a node. Fields are already validated and normalised."""

    server_id: str
    roles: tuple[str, ...]
    host: str
    port: int
    username: str
    host_key: str  # "<type> <base64>", the comment dropped: it plays no part in pinning
    ip: str
    max_concurrency: int
    now: datetime
    actor: str

    def fields(self) -> dict[str, Any]:
        """The node description as recorded in events (JSON-able)."""
        return node_description(self)


def node_description(node: Any) -> dict[str, Any]:
    """A node's description as recorded in events (JSON-able), from a RegisterServer command
    or a Server aggregate alike: both carry the same fields."""
    description = {name: getattr(node, name) for name in NODE_FIELDS}
    description["roles"] = list(description["roles"])
    return description


@dataclass(frozen=True)
class ServerFacts:
    """What planning needs to know about a node (see domain/placement.py)."""

    server_id: str
    roles: tuple[str, ...]
    ip: str
    max_concurrency: int = 1


def parse_server(body: object, *, now: datetime, actor: str) -> RegisterServer:
    """Validates a ``POST /v1/servers`` body into RegisterServer, or raises InvalidInput."""
    if not isinstance(body, dict):
        raise InvalidInput("the request body must be a JSON object")
    unknown = sorted(map(str, set(body) - set(NODE_FIELDS)))
    if unknown:
        raise InvalidInput(f"unknown field(s): {', '.join(unknown)}")
    missing = [name for name in NODE_FIELDS if name not in body]
    if missing:
        raise InvalidInput(f"missing field(s): {', '.join(missing)}")
    return RegisterServer(
        server_id=parse_server_id(body["server_id"]),
        roles=_parse_roles(body["roles"]),
        host=_parse_host(body["host"]),
        port=parse_bounded_int(body["port"], "port", 1, 65535),
        username=parse_unix_user(body["username"]),
        host_key=parse_host_key(body["host_key"]),
        ip=_parse_ip(body["ip"]),
        max_concurrency=parse_bounded_int(
            body["max_concurrency"], "max_concurrency", 1, MAX_CONCURRENCY
        ),
        now=now,
        actor=actor,
    )


def parse_server_id(raw: object) -> str:
    """A server id is one lowercase DNS label: it travels in routing keys and step names."""
    if not isinstance(raw, str) or not _SERVER_ID.fullmatch(raw):
        raise InvalidInput(
            "server_id must be 1-63 characters of a-z, 0-9 and '-', "
            "not starting or ending with '-' (like web1)"
        )
    return raw


@dataclass(frozen=True, kw_only=True)
class RekeyServer:
    """Point a registered node at a new host, port or host key (None: keep the current one)."""

    server_id: str
    host: str | None
    port: int | None
    host_key: str | None
    now: datetime
    actor: str


def parse_rekey(server_id: str, body: object, *, now: datetime, actor: str) -> RekeyServer:
    """Validates a ``POST /v1/servers/{id}/rekey`` body (``host``, ``port``, ``host_key``, at
    least one) into RekeyServer, or raises InvalidInput."""
    if not isinstance(body, dict):
        raise InvalidInput("the request body must be a JSON object")
    unknown = sorted(map(str, set(body) - set(CONNECTION_FIELDS)))
    if unknown:
        raise InvalidInput(
            f"unknown field(s): {', '.join(unknown)}; a re-key takes host, port, host_key"
        )
    if not body:
        raise InvalidInput("a re-key needs at least one of host, port, host_key")
    return RekeyServer(
        server_id=parse_server_id(server_id),
        host=None if "host" not in body else _parse_host(body["host"]),
        port=None if "port" not in body else parse_bounded_int(body["port"], "port", 1, 65535),
        host_key=None if "host_key" not in body else parse_host_key(body["host_key"]),
        now=now,
        actor=actor,
    )


class Server(Aggregate):
    class Registered(Aggregate.Created):
        server_id: str
        roles: list[str]
        host: str
        port: int
        username: str
        host_key: str
        ip: str
        max_concurrency: int
        actor: str

    def __init__(
        self,
        server_id: str,
        roles: list[str],
        host: str,
        port: int,
        username: str,
        host_key: str,
        ip: str,
        max_concurrency: int,
        actor: str,
    ) -> None:
        self.server_id = server_id
        self.roles = list(roles)
        self.host = host
        self.port = port
        self.username = username
        self.host_key = host_key
        self.ip = ip
        self.max_concurrency = max_concurrency

    class Updated(Aggregate.Event):
        """The node was registered again with different fields; carries the whole new state
        (so a reader needs no history) and the names of the fields that changed."""

        server_id: str
        roles: list[str]
        host: str
        port: int
        username: str
        host_key: str
        ip: str
        max_concurrency: int
        changed: list[str]
        actor: str

        def apply(self, aggregate: Any) -> None:
            aggregate.roles = list(self.roles)
            aggregate.host = self.host
            aggregate.port = self.port
            aggregate.username = self.username
            aggregate.host_key = self.host_key
            aggregate.ip = self.ip
            aggregate.max_concurrency = self.max_concurrency

    class Rekeyed(Aggregate.Event):
        """Staff pointed the node at a new host, port or host key: the new values, what they
        were, and both host keys' fingerprints (``SHA256:…``, as ``ssh-keygen -l`` prints)."""

        server_id: str
        host: str
        port: int
        host_key: str
        fingerprint: str
        previous_host: str
        previous_port: int
        previous_fingerprint: str
        changed: list[str]
        actor: str

        def apply(self, aggregate: Any) -> None:
            aggregate.host = self.host
            aggregate.port = self.port
            aggregate.host_key = self.host_key

    @classmethod
    def register(cls, command: RegisterServer) -> Server:
        """Creates the aggregate from a validated registration."""
        return cls._create(
            cls.Registered,
            id=server_uuid(command.server_id),
            timestamp=command.now,
            actor=command.actor,
            **command.fields(),
        )

    def handle(self, command: RegisterServer) -> bool:
        """Records Updated when the registration changes something; False when it does not."""
        if command.server_id != self.server_id:
            raise Conflict(f"registration for {command.server_id} sent to server {self.server_id}")
        new, old = command.fields(), self.fields()
        changed = [name for name, value in new.items() if old[name] != value]
        moved = [name for name in changed if name in CONNECTION_FIELDS]
        if moved:
            raise Conflict(
                f"server {self.server_id} is registered with another {', '.join(moved)}; "
                f"change it with POST /v1/servers/{self.server_id}/rekey (staff)"
            )
        if not changed:
            return False
        self.trigger_event(
            Server.Updated, timestamp=command.now, actor=command.actor, changed=changed, **new
        )
        return True

    def rekey(self, command: RekeyServer) -> bool:
        """Records Rekeyed when the command changes host, port or host key; False when not."""
        if command.server_id != self.server_id:
            raise Conflict(f"re-key for {command.server_id} sent to server {self.server_id}")
        host = self.host if command.host is None else command.host
        port = self.port if command.port is None else command.port
        host_key = self.host_key if command.host_key is None else command.host_key
        new = {"host": host, "port": port, "host_key": host_key}
        changed = [name for name in CONNECTION_FIELDS if getattr(self, name) != new[name]]
        if not changed:
            return False
        self.trigger_event(
            Server.Rekeyed,
            timestamp=command.now,
            server_id=self.server_id,
            fingerprint=host_key_fingerprint(host_key),
            previous_host=self.host,
            previous_port=self.port,
            previous_fingerprint=host_key_fingerprint(self.host_key),
            changed=changed,
            actor=command.actor,
            **new,
        )
        return True

    def fields(self) -> dict[str, Any]:
        """The node's current description, in the shape ``RegisterServer.fields`` has."""
        return node_description(self)

    def facts(self) -> ServerFacts:
        return ServerFacts(
            server_id=self.server_id,
            roles=tuple(self.roles),
            ip=self.ip,
            max_concurrency=self.max_concurrency,
        )


def _parse_roles(raw: object) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw:
        raise InvalidInput(f"roles must be a non-empty list of {', '.join(ROLES)}")
    for role in raw:
        if role not in ROLES:
            raise InvalidInput(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
    if len(set(raw)) != len(raw):
        raise InvalidInput("roles lists a role twice")
    return tuple(role for role in ROLES if role in raw)


def _parse_host(raw: object) -> str:
    """A hostname (lowercase labels, dots between) or an IP address; nothing a shell reads."""
    if not isinstance(raw, str) or not raw:
        raise InvalidInput("host must be a hostname or an IP address")
    if "%" in raw:
        return _scoped_address(raw, "host").compressed
    try:
        return ipaddress.ip_address(raw).compressed
    except ValueError:
        pass
    labels = raw.split(".")
    if len(raw) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        raise InvalidInput(
            f"host {raw!r} is not a hostname (lowercase a-z, 0-9, '-', dots between labels) "
            "or an IP address"
        )
    if labels[-1].isdigit():
        raise InvalidInput(f"host {raw!r} looks like a malformed IP address")
    return raw


def parse_unix_user(raw: object, what: str = "username") -> str:
    """A login name on a node (may be a system account like admin, unlike a service user)."""
    if not isinstance(raw, str) or not _UNIX_USER.fullmatch(raw):
        raise InvalidInput(
            f"{what} must be 1-32 characters of a-z, 0-9, '_' or '-', starting with a letter or '_'"
        )
    return raw


def _parse_ip(raw: object) -> str:
    if not isinstance(raw, str):
        raise InvalidInput("ip must be an IPv4 or IPv6 address as a string")
    if "%" in raw:
        address = _scoped_address(raw, "ip")
    else:
        try:
            address = ipaddress.ip_address(raw)
        except ValueError as exc:
            raise InvalidInput(f"ip {raw!r} is not an IPv4 or IPv6 address") from exc
    if address.is_unspecified or address.is_multicast:
        raise InvalidInput(f"ip {raw!r} cannot be a node's address")
    return address.compressed


def _scoped_address(raw: str, name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An IPv6 address with a scope id (``fe80::1%eth0``): the scope must be an interface
    name or a zone index, nothing a shell reads."""
    address_part, _, scope = raw.partition("%")
    if not _SCOPE_ID.fullmatch(scope):
        raise InvalidInput(
            f"{name} {raw[:80]!r} has a bad IPv6 scope id: after '%' an interface name or "
            "zone index of 1-15 characters a-z, A-Z, 0-9, '_', '.', '-' (like fe80::1%eth0)"
        )
    try:
        return ipaddress.IPv6Address(f"{address_part}%{scope}")
    except ValueError as exc:
        raise InvalidInput(f"{name} {raw[:80]!r} is not an IPv6 address with a scope id") from exc


def parse_bounded_int(raw: object, name: str, lower: int, upper: int) -> int:
    """A whole number from ``lower`` to ``upper`` (a bool is not one), or InvalidInput."""
    if isinstance(raw, bool) or not isinstance(raw, int) or not lower <= raw <= upper:
        raise InvalidInput(f"{name} must be a whole number from {lower} to {upper}")
    return raw
