"""A running hostwright for the screens' browser tests: one unified simulated node (web, mail
and DNS: every deploy step lands on it, so a fault or a held command there reaches any step),
on SQLite with one ``hostwright up`` process, or on RabbitMQ and PostgreSQL with every part a
process (tests/support/deployment.py).

``running_system`` emits it with the node registered; ``client_link`` mints a service's link
as WHMCS would; ``hold``/``fail``/``heal`` set the node's faults (a held command is a gate the
test opens: ops/devtools/simnode/faults.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from ops.devtools.simnode.faults import Faults
from tests.support.deployment import UNI_IP, Deployment
from tests.support.processes import HostwrightProcess

NODE = "uni1"
HELD_COMMAND_TIMEOUT_S = 300
PERMANENT_EXIT = 8  # E_LIMIT: not a transient exit (handlers/hestia_command.py): no retry


class EmbeddedDeployment(Deployment):
    """A Deployment without a broker: one ``hostwright up`` runs every part on SQLite."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp, "", "", f"sqlite:///{tmp / 'hw.sqlite'}")
        self.settings.pop("HOSTWRIGHT_AMQP_URL")
        self.settings.pop("HOSTWRIGHT_EXCHANGE")

    async def start_all(self) -> None:
        self.processes["up"] = HostwrightProcess(["up"], self.settings, self.tmp, "up").start()
        await self.wait_for_gateway()

    async def _delete_broker_names(self) -> None:
        return None  # no broker


@contextlib.asynccontextmanager
async def running_system(system: Deployment) -> AsyncIterator[Deployment]:
    """``system`` started with its unified node registered; closed afterwards, also on a
    failure."""
    # a held command answers when the test opens its gate, which may take a browser's while:
    # not a node that stopped answering (8 s in the other end-to-end tests)
    system.settings["HOSTWRIGHT_COMMAND_TIMEOUT_S"] = str(HELD_COMMAND_TIMEOUT_S)
    try:
        await system.add_node(NODE, ("web", "mail", "dns"), UNI_IP)
        await system.start_all()
        await system.register_nodes()
        yield system
    finally:
        await system.close()


async def order_unified(system: Deployment, service_id: int) -> None:
    await system.order(
        service_id, "unified", f"site{service_id}.example.org", username=f"u{service_id}"
    )


async def client_link(system: Deployment, service_id: int) -> str:
    """The service's client link, minted with WHMCS's credential."""
    reply = await system.client.post(f"/v1/services/{service_id}/client-link", json={})
    assert reply.status_code == 200, reply.text
    url: str = reply.json()["url"]
    assert url.startswith(f"{system.client.base_url}/client/{service_id}?token="), url
    return url


def hold(system: Deployment, *commands: str) -> None:
    """The node holds ``commands`` (started, never answered) until the next ``heal``/``hold``."""
    system.nodes[NODE].set_faults(Faults(held_commands=list(commands)))


def fail(system: Deployment, command: str) -> None:
    """``command`` fails on the node with an exit no retry helps, until ``heal``."""
    system.nodes[NODE].set_faults(Faults(fail_commands={command: PERMANENT_EXIT}))


def heal(system: Deployment) -> None:
    system.nodes[NODE].set_faults(Faults())
