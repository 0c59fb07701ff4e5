"""The handlers' ServerDirectory over the server registry, and the drivers they log in with.

Consumes registered servers (``ServerRegistry``) and this process's private key; emits the
``NodeAccess`` a role handler needs to reach a node, and ``HestiaDriver`` factories.
"""

from __future__ import annotations

import asyncio
from functools import partial

from domain.errors import NotFound
from handlers.hestia_driver import HestiaDriver, NodeAccess
from ops.adapters.server_registry import ServerRegistry
from ops.store.outage import Outage, riding_out


class RegistryDirectory:
    """The handlers' ServerDirectory: registered nodes, logged in to with our private key.

    While the registry's cache is fresh a lookup needs no thread, and the ``NodeAccess`` of a
    server is made once per registration (it parses the pinned host key)."""

    def __init__(self, registry: ServerRegistry, ssh_key: str | None) -> None:
        self._registry = registry
        self._client_keys = (ssh_key,) if ssh_key else ()
        self._access: dict[str, tuple[tuple[str, int, str, str], NodeAccess]] = {}
        self._outage = Outage("handler (reading the servers)")

    async def node_access(self, server_id: str) -> NodeAccess | None:
        server = self._registry.cached(server_id)
        if server is None:
            try:
                # the database down and nothing read yet: wait for it rather than fail the step
                server = await riding_out(
                    lambda: asyncio.to_thread(self._registry.get, server_id), self._outage
                )
            except NotFound:
                return None
        # Compared by value: a re-registration may change the cached Server in place.
        where = (server.host, server.port, server.username, server.host_key)
        known = self._access.get(server_id)
        if known is not None and known[0] == where:
            return known[1]
        access = NodeAccess(server_id, *where, client_keys=self._client_keys)
        self._access[server_id] = (where, access)
        return access


def driver_factory(command_timeout: float) -> partial[HestiaDriver]:
    return partial(HestiaDriver, command_timeout=command_timeout)
