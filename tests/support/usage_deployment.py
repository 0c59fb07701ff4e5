"""A whole hostwright in one ``hostwright up`` process (SQLite, in-process transport) with
three simulated nodes (two serve web, mail and DNS, one web and mail), and 30 services of every mode
deployed on them: what the usage tests share (one per module, it takes a while to deploy).

``UsageDeployment.hold`` writes what a node "holds" of its users (``usage.json``, read by its
``v-list-users``); ``listings`` counts the usage listings a node was asked for, from its
command journal.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ops.devtools.simnode import read_command_log
from ops.devtools.simnode.usage_file import write_usage
from tests.support.deployment import PROVIDER_DOMAIN, PROVIDER_MAIL_USER, Deployment
from tests.support.processes import HostwrightProcess

# (server, roles, address in TEST-NET-1): n2 holds the provider's shared mail user (the vanity
# mailboxes) and so serves no DNS (Hestia refuses one domain to two users of a node)
NODES = (
    ("n1", ("web", "mail", "dns"), "192.0.2.51"),
    ("n2", ("web", "mail"), "192.0.2.52"),
    ("n3", ("web", "mail", "dns"), "192.0.2.53"),
)
MAIL_NODE = "n2"
# 10 services of each mode; vanity ones are labelled by id
SERVICES = [(5000 + i, ("split", "unified", "vanity")[i % 3]) for i in range(30)]


class UsageDeployment(Deployment):
    """A Deployment without a broker: one ``up`` process runs every part."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp, "", "", f"sqlite:///{tmp / 'hw.sqlite'}")
        self.settings.pop("HOSTWRIGHT_AMQP_URL")
        self.settings.pop("HOSTWRIGHT_EXCHANGE")
        self.settings.update(
            {
                "HOSTWRIGHT_VANITY_MAIL_SERVER": MAIL_NODE,
                # syncs happen only when asked, unless a test asks the tick for them
                "HOSTWRIGHT_USAGE_PERIOD_S": "86400",
                "HOSTWRIGHT_CRON_USAGE_S": "1",
                "HOSTWRIGHT_USAGE_FRESH_S": "0",  # every refresh lists (unless one is pending)
                "HOSTWRIGHT_USAGE_RETRY_S": "1",
            }
        )

    def start_up(self) -> None:
        self.processes["up"] = HostwrightProcess(["up"], self.settings, self.tmp, "up").start()

    async def _delete_broker_names(self) -> None:
        return None  # no broker

    def hold(
        self,
        server_id: str,
        users: dict[str, dict[str, int]],
        mailboxes: dict[str, dict[str, int]] | None = None,
    ) -> None:
        """What the node reports: users' U_* figures, and the shared mail user's mailboxes."""
        usage: dict[str, Any] = {"users": users}
        if mailboxes is not None:
            usage["mailboxes"] = {PROVIDER_MAIL_USER: {PROVIDER_DOMAIN: mailboxes}}
        write_usage(self.nodes[server_id].data_dir, usage)

    def listings(self, server_id: str, command: str = "v-list-users") -> int:
        """How many times the node was asked ``command``."""
        log = read_command_log(self.nodes[server_id].data_dir)
        return sum(1 for entry in log if entry["argv"] and entry["argv"][0].endswith(command))

    async def users_on(self, server_id: str) -> dict[str, Any]:
        found: dict[str, Any] = await self.on_node(server_id, "v-list-users")
        return found


@contextlib.asynccontextmanager
async def deployed_services(tmp: Path) -> AsyncIterator[UsageDeployment]:
    """The three nodes, the provider's shared users, 30 services deployed and active."""
    system = UsageDeployment(tmp)
    try:
        for server_id, roles, ip in NODES:
            await system.add_node(server_id, roles, ip)
        await system.provision_provider(MAIL_NODE, [s for s, r, _ in NODES if "dns" in r])
        system.start_up()
        await system.wait_for_gateway()
        await system.register_nodes(max_concurrency=8)
        for service_id, mode in SERVICES:
            # a package of its own: no two services' package steps race on one
            extra: dict[str, Any] = {"plan": {"package": f"p{service_id}", "disk_mb": 1000}}
            if mode == "vanity":
                extra["label"] = f"v{service_id}"
            domain = (
                f"v{service_id}.{PROVIDER_DOMAIN}" if mode == "vanity" else f"s{service_id}.example"
            )
            await system.order(service_id, mode, domain, **extra)
        await system.wait_status([s for s, _ in SERVICES], "active", 240)
        yield system
    finally:
        await system.close()


def dumps(value: Any) -> str:
    return json.dumps(value, indent=1, sort_keys=True)
