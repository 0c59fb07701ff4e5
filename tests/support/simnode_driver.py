"""A real in-process SimNode and a HestiaDriver logged in to it over SSH, host key pinned, as
the driver, step and role-handler tests use them.

Consumes a test's tmp_path; emits a started node, a client key authorised on it and a driver
(``env`` is the fixture the step tests share: both, closed after the test).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import asyncssh
import pytest

from handlers.hestia_driver import HestiaDriver, NodeAccess
from ops.devtools.simnode import SimNode


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


async def nodes_and_drivers(
    tmp_path: Path, server_ids: list[str]
) -> dict[str, tuple[SimNode, HestiaDriver]]:
    """One started node and its driver per server id, all with every role."""
    key_path, public = client_key_file(tmp_path / "keys")
    found: dict[str, tuple[SimNode, HestiaDriver]] = {}
    for server_id in server_ids:
        node = await start_node(tmp_path, server_id)
        node.authorize(public)
        access = access_for(node, key_path, server_id=server_id)
        found[server_id] = (node, HestiaDriver(access, command_timeout=10.0))
    return found


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[tuple[SimNode, HestiaDriver]]:
    node, driver = await node_and_driver(tmp_path, command_timeout=10.0)
    yield node, driver
    await driver.close()
    await node.stop()
