"""One SSH login to a simulated node as hostwright's driver makes it (pinned host key, argv
quoted), for the simulator's own tests, which must not lean on the driver they check.

Consumes a started SimNode and a client key it authorises; emits command results and listings.
"""

from __future__ import annotations

import json
import shlex

import asyncssh

from ops.devtools.simnode import SimNode


class Client:
    """One SSH login to a node, as hostwright's driver makes it (pinned host key, argv quoted)."""

    def __init__(self, node: SimNode, key: asyncssh.SSHKey, user: str = "hostwright") -> None:
        self.node, self.key, self.user = node, key, user
        self.conn: asyncssh.SSHClientConnection | None = None

    async def connect(self) -> asyncssh.SSHClientConnection:
        known = asyncssh.import_known_hosts(
            f"[{self.node.host}]:{self.node.port} {self.node.host_public_key}\n"
        )
        return await asyncssh.connect(
            self.node.host,
            self.node.port,
            username=self.user,
            client_keys=[self.key],
            known_hosts=known,
            agent_path=None,
            config=None,
        )

    async def run(self, *argv: str, raw: str | None = None) -> asyncssh.SSHCompletedProcess:
        if self.conn is None:
            self.conn = await self.connect()
        line = raw if raw is not None else "sudo /usr/local/hestia/bin/" + shlex.join(argv)
        return await self.conn.run(line, check=False)

    async def json(self, *argv: str) -> dict[str, dict[str, str]]:
        result = await self.run(*argv)
        assert result.exit_status == 0, result.stdout
        data: dict[str, dict[str, str]] = json.loads(str(result.stdout))
        return data

    async def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            await self.conn.wait_closed()
            self.conn = None
