"""Server registration: what parse_server accepts and refuses; what the aggregate records."""

from __future__ import annotations

import base64
import struct
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from domain.errors import Conflict, InvalidInput
from domain.host_key import host_key_fingerprint, parse_host_key
from domain.server import Server, parse_rekey, parse_server, server_uuid
from handlers.hestia_driver import HestiaDriver
from ops.adapters.node_directory import RegistryDirectory
from ops.adapters.server_registry import ServerRegistry
from ops.devtools.simnode import SimNode
from ops.devtools.simnode.journal import read_command_log
from ops.store.event_store import EventStore
from tests.support.simnode_driver import client_key_file, start_node

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKvkcWkh33XP+nVwAr39SKD2LH3ynKCVGsuxXwfRfERU"
ECDSA = (
    "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBNgAkoISPOA6NI5L4WFJ"
    "este0ln44TWgoNLWa8Pglax5WiUAsIuugU36f32vXAklDfHg3CWo5z/KNY8CcUbG4QI="
)


def wire_key(key_type: str, *fields: bytes) -> str:
    """An OpenSSH key line whose blob holds ``key_type`` and ``fields`` in SSH wire format."""
    blob = b"".join(struct.pack(">I", len(f)) + f for f in (key_type.encode(), *fields))
    return f"{key_type} {base64.b64encode(blob).decode()}"


def rsa_key(bits: int) -> str:
    modulus = (1 << (bits - 1)) | 1
    return wire_key("ssh-rsa", b"\x01\x00\x01", b"\x00" + modulus.to_bytes(bits // 8, "big"))


def body(**changes: Any) -> dict[str, Any]:
    good: dict[str, Any] = {
        "server_id": "web1",
        "roles": ["web", "mail"],
        "host": "web1.nodes.example.net",
        "port": 22,
        "username": "admin",
        "host_key": ED25519 + " root@web1",
        "ip": "192.0.2.10",
        "max_concurrency": 4,
    }
    good.update(changes)
    return {k: v for k, v in good.items() if v is not DROP}


DROP = object()


def test_a_valid_body_becomes_a_normalised_command() -> None:
    command = parse_server(body(roles=["dns", "web"], ip="2001:DB8:0:0::1"), now=NOW, actor="admin")
    assert command.roles == ("web", "dns")
    assert command.ip == "2001:db8::1"
    assert command.host_key == ED25519  # the comment plays no part in pinning
    assert (command.now, command.actor) == (NOW, "admin")


@pytest.mark.parametrize(
    "host_key", [ED25519, ED25519 + " a comment with spaces\n", ECDSA, rsa_key(2048)]
)
def test_each_supported_key_type_is_accepted(host_key: str) -> None:
    assert parse_host_key(host_key).split(" ")[0] in host_key


@pytest.mark.parametrize("host", ["localhost", "10.0.0.5", "::1", "node-7.example.net"])
def test_hostnames_and_addresses_are_hosts(host: str) -> None:
    assert parse_server(body(host=host), now=NOW, actor="a").host == host


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"server_id": "a;b"}, "server_id"),
        ({"server_id": "$(x)"}, "server_id"),
        ({"server_id": "Web1"}, "server_id"),
        ({"server_id": "web.1"}, "server_id"),
        ({"server_id": "-web"}, "server_id"),
        ({"server_id": 7}, "server_id"),
        ({"server_id": "w" * 64}, "server_id"),
        ({"roles": []}, "roles"),
        ({"roles": "web"}, "roles"),
        ({"roles": ["web", "web"]}, "twice"),
        ({"roles": ["ftp"]}, "unknown role"),
        ({"roles": [["web"]]}, "unknown role"),
        ({"host": "a;b"}, "host"),
        ({"host": "$(x)"}, "host"),
        ({"host": "web1 .example.net"}, "host"),
        ({"host": "web1.example.net;reboot"}, "host"),
        ({"host": "-oProxyCommand=x"}, "host"),
        ({"host": "10.0.0.256"}, "IP"),
        ({"host": ""}, "host"),
        ({"host": "UPPER.example"}, "host"),
        ({"port": 0}, "port"),
        ({"port": 65536}, "port"),
        ({"port": "22"}, "port"),
        ({"port": True}, "port"),
        ({"port": 22.0}, "port"),
        ({"username": "a;b"}, "username"),
        ({"username": "$(x)"}, "username"),
        ({"username": "root admin"}, "username"),
        ({"username": "-oProxy"}, "username"),
        ({"username": "a" * 33}, "username"),
        ({"username": ""}, "username"),
        ({"host_key": "ssh-dss AAAAB3NzaC1kc3M="}, "type"),
        ({"host_key": "ssh-ed25519"}, "<type> <base64>"),
        ({"host_key": "ssh-ed25519 not*base64"}, "base64"),
        ({"host_key": "ssh-ed25519  " + ED25519.split()[1]}, "<type> <base64>"),
        ({"host_key": " " + ED25519}, "<type> <base64>"),
        ({"host_key": ED25519 + " bad\x00comment"}, "comment"),
        ({"host_key": ED25519 + " $(x)\n\n"}, "comment"),
        ({"host_key": ED25519[:-4]}, "base64"),
        ({"host_key": "ssh-rsa " + ED25519.split()[1]}, "does not encode"),
        ({"host_key": rsa_key(1024)}, "at least 2048"),
        ({"host_key": wire_key("ssh-ed25519", b"\x00" * 31)}, "32-byte"),
        ({"host_key": wire_key("ssh-ed25519", b"\x00" * 32, b"x")}, "32-byte"),
        ({"host_key": wire_key("ecdsa-sha2-nistp256", b"nistp384", b"\x04" * 65)}, "curve"),
        ({"host_key": 42}, "host_key"),
        ({"ip": "a;b"}, "ip"),
        ({"ip": "$(x)"}, "ip"),
        ({"ip": "300.1.1.1"}, "ip"),
        ({"ip": "10.0.0.1/24"}, "ip"),
        ({"ip": "0.0.0.0"}, "cannot be"),  # noqa: S104
        ({"ip": "224.0.0.1"}, "cannot be"),
        ({"ip": 167772161}, "ip"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"max_concurrency": 65}, "max_concurrency"),
        ({"max_concurrency": None}, "max_concurrency"),
        ({"private_key": "-----BEGIN"}, "unknown field"),
        ({"ip": DROP}, "missing field(s): ip"),
    ],
)
def test_bad_fields_are_refused_with_a_readable_message(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_server(body(**changes), now=NOW, actor="a")


def test_a_body_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(InvalidInput, match="JSON object"):
        parse_server(["web1"], now=NOW, actor="a")


def registered() -> Server:
    server = Server.register(parse_server(body(), now=NOW, actor="admin"))
    server.collect_events()
    return server


def test_registering_records_a_stamped_event_under_a_stable_id() -> None:
    server = Server.register(parse_server(body(), now=NOW, actor="admin"))
    [event] = server.collect_events()
    assert isinstance(event, Server.Registered)
    assert event.timestamp == NOW
    assert server.id == server_uuid("web1") != server_uuid("web2")
    assert server.facts().roles == ("web", "mail")


def test_registering_the_same_fields_again_records_nothing() -> None:
    server = registered()
    again = parse_server(body(host_key=ED25519 + " other-comment"), now=NOW, actor="b")
    assert server.handle(again) is False
    assert server.collect_events() == []


def test_changed_fields_record_an_update_naming_them() -> None:
    server = registered()
    later = NOW + timedelta(hours=1)
    changed = parse_server(body(ip="192.0.2.11", max_concurrency=8), now=later, actor="b")
    assert server.handle(changed) is True
    [event] = server.collect_events()
    assert isinstance(event, Server.Updated)
    assert (event.changed, event.timestamp, event.actor) == (["ip", "max_concurrency"], later, "b")
    assert (server.ip, server.max_concurrency, server.host) == (
        "192.0.2.11",
        8,
        "web1.nodes.example.net",
    )
    assert server.handle(changed) is False


@pytest.mark.parametrize(
    "changes",
    [
        {"host": "203.0.113.66"},
        {"port": 2222},
        {"host_key": ECDSA},
        {"host": "x.example", "ip": "192.0.2.9"},
    ],
)
def test_a_registration_that_moves_the_node_is_a_conflict_naming_the_rekey(
    changes: dict[str, Any],
) -> None:
    server = registered()
    with pytest.raises(Conflict, match="/v1/servers/web1/rekey"):
        server.handle(parse_server(body(**changes), now=NOW, actor="whmcs"))
    assert server.collect_events() == []
    assert (server.host, server.port, server.host_key) == ("web1.nodes.example.net", 22, ED25519)


def test_a_rekey_records_both_fingerprints_and_only_what_changed() -> None:
    server = registered()
    later = NOW + timedelta(hours=1)
    assert server.rekey(parse_rekey("web1", {"host_key": ECDSA, "port": 22}, now=later, actor="s"))
    [event] = server.collect_events()
    assert isinstance(event, Server.Rekeyed)
    assert (event.changed, event.actor, event.timestamp) == (["host_key"], "s", later)
    assert event.previous_fingerprint == asyncssh.import_public_key(ED25519).get_fingerprint()
    assert event.fingerprint == asyncssh.import_public_key(ECDSA).get_fingerprint()
    assert server.host_key == ECDSA and server.fields()["host"] == "web1.nodes.example.net"
    assert not server.rekey(parse_rekey("web1", {"host_key": ECDSA}, now=later, actor="s"))
    assert server.collect_events() == []


@pytest.mark.parametrize("key", [ED25519, ECDSA, rsa_key(2048)])
def test_host_key_fingerprints_are_as_openssh_prints_them(key: str, tmp_path: Path) -> None:
    (tmp_path / "key.pub").write_text(key + "\n")
    printed = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(tmp_path / "key.pub")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[1]
    assert host_key_fingerprint(key) == printed


def test_a_registration_for_another_server_is_a_conflict() -> None:
    with pytest.raises(Conflict):
        registered().handle(parse_server(body(server_id="web2"), now=NOW, actor="a"))


async def test_handlers_see_a_new_host_key_once_the_registry_has_it(sqlite_url: str) -> None:
    store = EventStore(sqlite_url)
    try:
        registry = ServerRegistry(store, ttl=60.0)
        directory = RegistryDirectory(registry, "/keys/id_ed25519")
        registry.register(parse_server(body(), now=NOW, actor="staff"))
        first = await directory.node_access("web1")
        assert first is not None and first.host_key == ED25519
        assert await directory.node_access("web1") is first  # made once, from the cache
        other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
        registry.rekey(parse_rekey("web1", {"host_key": other}, now=NOW, actor="staff"))
        again = await directory.node_access("web1")
        assert again is not None and again.host_key == other.strip()
        assert await directory.node_access("db9") is None
    finally:
        store.close()


async def test_after_a_rekey_the_handlers_reach_the_new_node_and_never_the_refused_one(
    sqlite_url: str, tmp_path: Path
) -> None:
    first, second, intruder = [await start_node(tmp_path, n) for n in ("first", "second", "evil")]
    key_path, public = client_key_file(tmp_path / "keys")
    for node in (first, second, intruder):
        node.authorize(public)
    store = EventStore(sqlite_url)
    registry = ServerRegistry(store, ttl=60.0)
    directory = RegistryDirectory(registry, key_path)

    def where(node: SimNode) -> dict[str, Any]:
        return {"host": node.host, "port": node.port, "host_key": node.host_public_key}

    async def list_users() -> None:
        access = await directory.node_access("web1")
        assert access is not None
        driver = HestiaDriver(access, command_timeout=10.0)
        try:
            await driver.list_json(["v-list-users", "json"])
        finally:
            await driver.close()

    try:
        registry.register(
            parse_server(body(username="hostwright", **where(first)), now=NOW, actor="s")
        )
        with pytest.raises(Conflict):  # a registration cannot move the node to another machine
            registry.register(
                parse_server(body(username="hostwright", **where(intruder)), now=NOW, actor="w")
            )
        await list_users()
        registry.rekey(parse_rekey("web1", where(second), now=NOW, actor="staff"))
        await list_users()
        ran = {
            n.data_dir.name: len(read_command_log(n.data_dir)) for n in (first, second, intruder)
        }
        assert ran == {"first": 1, "second": 1, "evil": 0}
    finally:
        store.close()
        for node in (first, second, intruder):
            await node.stop()
