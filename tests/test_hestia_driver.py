"""HestiaDriver against a real in-process SimNode over SSH, host key pinned."""

from __future__ import annotations

import asyncio
import os
import shlex
from pathlib import Path

import asyncssh
import pytest

from handlers.hestia_command import (
    CommandResult,
    PermanentNodeError,
    TransientNodeError,
    command_line,
    error_for,
    masked,
)
from handlers.hestia_driver import HestiaDriver, NodeAccess
from ops.simnode import Faults, SimNode, read_command_log, read_stats


def client_key_file(directory: Path) -> tuple[str, str]:
    """A fresh client key written as OpenSSH does it (mode 600); (path, public line)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = asyncssh.generate_private_key("ssh-ed25519")
    path = directory / "id_ed25519"
    key.write_private_key(str(path))
    os.chmod(path, 0o600)
    return str(path), key.export_public_key().decode()


async def start_node(tmp_path: Path, name: str = "node", **kwargs: object) -> SimNode:
    node = SimNode(tmp_path / name, **kwargs)  # type: ignore[arg-type]
    await node.start()
    return node


def access_for(node: SimNode, key_path: str, *, server_id: str = "web1") -> NodeAccess:
    return NodeAccess(
        server_id=server_id,
        host=node.host,
        port=node.port,
        username="hostwright",
        host_key=node.host_public_key,
        client_keys=(key_path,),
    )


async def node_and_driver(tmp_path: Path, **driver_kwargs: float) -> tuple[SimNode, HestiaDriver]:
    node = await start_node(tmp_path)
    key_path, public = client_key_file(tmp_path / "keys")
    node.authorize(public)
    return node, HestiaDriver(access_for(node, key_path), **driver_kwargs)  # type: ignore[arg-type]


@pytest.fixture
async def env(tmp_path: Path):
    node, driver = await node_and_driver(tmp_path, command_timeout=5.0)
    yield node, driver
    await driver.close()
    await node.stop()


async def test_run_list_json_and_probe(env: tuple[SimNode, HestiaDriver]) -> None:
    node, driver = env
    result = await driver.run(["v-add-user", "alice", "pw-secret", "alice@example.com"])
    assert result.exit_status == 0 and result.duration_ms > 0
    users = await driver.list_json(["v-list-users"])
    assert users["alice"]["CONTACT"] == "alice@example.com"
    assert await driver.probe_json(["v-list-user", "bob"]) is None
    missing = await driver.run(["v-list-user", "bob", "json"])
    assert missing.exit_status == 3 and "doesn't exist" in missing.stdout
    assert await driver.list_json(["v-list-web-domains", "alice"]) == {}
    log = read_command_log(node.data_dir)
    assert log[0]["argv"] == ["v-add-user", "alice", "*****", "alice@example.com"]
    assert log[1]["argv"] == ["v-list-users", "json"]


async def test_command_line_is_quoted_and_checked() -> None:
    argv = ["v-add-dns-record", "u", "z.test", "@", "TXT", "a b; $(x) 'q' \"d\""]
    line = command_line(argv)
    assert line.startswith("sudo /usr/local/hestia/bin/v-add-dns-record u z.test @ TXT ")
    assert shlex.split(line) == ["sudo", "/usr/local/hestia/bin/v-add-dns-record", *argv[1:]]
    for bad in (["rm", "-rf", "/"], ["v-list-users;", "x"], ["/usr/local/hestia/bin/v-x"], []):
        with pytest.raises(ValueError):
            command_line(bad)
    with pytest.raises(ValueError):
        command_line(["v-list-user", 5])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        command_line(["v-list-user", "a\x00b"])


async def test_pinned_host_key_mismatch_is_refused(tmp_path: Path) -> None:
    node = await start_node(tmp_path)
    key_path, public = client_key_file(tmp_path / "keys")
    node.authorize(public)
    impostor = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    access = access_for(node, key_path)
    wrong = NodeAccess(
        access.server_id, access.host, access.port, access.username, impostor, access.client_keys
    )
    driver = HestiaDriver(wrong)
    try:
        with pytest.raises(PermanentNodeError, match="host key does not match"):
            await driver.run(["v-list-users", "json"])
        assert read_command_log(node.data_dir) == []
    finally:
        await driver.close()
        await node.stop()
    with pytest.raises(ValueError):
        NodeAccess("web1", "127.0.0.1", 22, "hw", "", ())
    with pytest.raises(ValueError):
        NodeAccess("web1", "127.0.0.1", 22, "hw", "not a key", ())


async def test_unknown_client_key_is_permanent(tmp_path: Path) -> None:
    node = await start_node(tmp_path)
    key_path, _ = client_key_file(tmp_path / "keys")  # never authorized
    driver = HestiaDriver(access_for(node, key_path))
    try:
        with pytest.raises(PermanentNodeError, match="refused our SSH key"):
            await driver.run(["v-list-users", "json"])
    finally:
        await driver.close()
        await node.stop()


async def test_exit_classification(env: tuple[SimNode, HestiaDriver]) -> None:
    node, driver = env
    for code, kind in (
        (15, TransientNodeError),
        (14, TransientNodeError),
        (20, TransientNodeError),
    ):
        node.set_faults(Faults(fail_next=1, fail_code=code))
        with pytest.raises(kind) as caught:
            await driver.list_json(["v-list-users"])
        assert caught.value.exit_status == code
    for code in (1, 2, 8, 9, 10, 11, 12):
        node.set_faults(Faults(fail_next=1, fail_code=code))
        with pytest.raises(PermanentNodeError) as failed:
            await driver.list_json(["v-list-users"])
        assert failed.value.exit_status == code
    assert "web1: v-list-users json exited 12 (parsing)" in str(failed.value)
    node.set_faults(Faults())
    assert await driver.list_json(["v-list-users"]) == {}


async def test_refused_and_hanging_node_are_transient(tmp_path: Path) -> None:
    node, driver = await node_and_driver(tmp_path, command_timeout=0.3, connect_timeout=2.0)
    try:
        node.set_faults(Faults(refuse=True))
        await node.apply_faults()
        with pytest.raises(TransientNodeError, match="cannot connect"):
            await driver.run(["v-list-users", "json"])
        node.set_faults(Faults())
        await node.apply_faults()
        assert (await driver.run(["v-list-users", "json"])).exit_status == 0
        node.set_faults(Faults(hang=True))
        with pytest.raises(TransientNodeError, match=r"no answer within 0\.3s"):
            await driver.run(["v-list-users", "json"])
        node.set_faults(Faults())
        assert (await driver.run(["v-list-users", "json"])).exit_status == 0
    finally:
        await driver.close()
        await node.stop()


async def test_pool_reuses_connections(env: tuple[SimNode, HestiaDriver]) -> None:
    node, driver = env
    for _ in range(20):
        assert (await driver.run(["v-list-users", "json"])).exit_status == 0
    assert driver.connections_opened == 1
    node.set_faults(Faults(latency_ms=200))
    results = await asyncio.gather(*(driver.run(["v-list-users", "json"]) for _ in range(12)))
    assert all(r.exit_status == 0 for r in results)
    assert driver.connections_opened <= 4
    assert read_stats(node.data_dir)["peak_running"] == 12


async def test_reconnects_after_the_node_restarts(tmp_path: Path) -> None:
    node, driver = await node_and_driver(tmp_path)
    try:
        assert (await driver.run(["v-list-users", "json"])).exit_status == 0
        port = node.port
        await node.stop()
        node = await start_node(tmp_path, port=port)
        assert (await driver.run(["v-list-users", "json"])).exit_status == 0
        assert driver.connections_opened == 2
    finally:
        await driver.close()
        await node.stop()


async def test_files_over_sftp(env: tuple[SimNode, HestiaDriver]) -> None:
    node, driver = env
    await driver.put_file("/tmp/hw-test.txt", b"hello\n")
    stored = node.data_dir / "fs/tmp/hw-test.txt"
    assert stored.read_bytes() == b"hello\n"
    assert stored.stat().st_mode & 0o777 == 0o600
    await driver.remove_file("/tmp/hw-test.txt")
    await driver.remove_file("/tmp/hw-test.txt")
    assert not stored.exists()


def test_errors_never_carry_passwords() -> None:
    argv = ["v-add-mail-account", "u", "d.test", "info", "Sup3r$ecret"]
    said = CommandResult(2, "Error: invalid password format :: Sup3r$ecret\n", "", 1.0)
    error = error_for("mail1", argv, said)
    assert isinstance(error, PermanentNodeError)
    assert "Sup3r$ecret" not in str(error)
    assert "v-add-mail-account u d.test info '*****'" in str(error)
    assert masked(["v-add-user", "a", "pw", "e@x.test"]) == ["v-add-user", "a", "*****", "e@x.test"]
