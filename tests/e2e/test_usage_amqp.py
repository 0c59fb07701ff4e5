"""The usage desk on RabbitMQ and PostgreSQL, as its own process (``serve handler usage``)
beside the gateway, relay, projections and scheduler: a refresh reaches it through the broker,
each node is listed once and its listing reaches the view; and a second desk process on the
same queue never lists a node twice (the sync is taken once)."""

from __future__ import annotations

from pathlib import Path

from ops.devtools.simnode import read_command_log
from ops.devtools.simnode.usage_file import write_usage
from tests.support.deployment import Deployment, wait_until
from tests.support.worker_groups import POSTGRES_DEPLOYMENTS

pytestmark = POSTGRES_DEPLOYMENTS

NODES = (("u1", "192.0.2.61"), ("u2", "192.0.2.62"))
DESK_PARTS = ("gateway", "relay", "projections", "scheduler", "handler usage")


async def test_a_refresh_through_rabbitmq_lists_each_node_once(
    tmp_path: Path, amqp_url: str, exchange_name: str, fresh_postgres_url: str
) -> None:
    system = Deployment(tmp_path, amqp_url, exchange_name, fresh_postgres_url)
    system.settings["HOSTWRIGHT_USAGE_PERIOD_S"] = "86400"
    system.settings["HOSTWRIGHT_USAGE_FRESH_S"] = "0"
    # the tick every second, not every 30 s aligned to the clock: the wait below is its
    system.settings["HOSTWRIGHT_CRON_USAGE_S"] = "1"
    try:
        for server_id, ip in NODES:
            node = await system.add_node(server_id, ("web",), ip)
            await system.on_node(
                server_id, "v-add-user", f"{server_id}user", "Pass-word-1", "a@b.example"
            )
            write_usage(node.data_dir, {"users": {f"{server_id}user": {"U_DISK": 321}}})
        for part in DESK_PARTS:
            system.start(part)
        system.start("handler usage")  # a second desk on the same queue
        await system.wait_for_gateway()
        await system.register_nodes()

        async def listed_once_each() -> bool:
            nodes = (await system.staff.get("/v1/usage")).json()["nodes"]
            return len([n for n in nodes if n["state"] == "listed"]) == len(NODES)

        # the tick lists each node once it is registered (never listed: due)
        await wait_until(listed_once_each, 30, "the tick's listing of each node", system.logs)
        reply = await system.staff.post("/v1/usage/refresh", json={"server_id": "u1"})
        assert reply.status_code == 202 and reply.json()["servers"] == {"u1": "queued"}

        async def refreshed() -> bool:
            return counted("u1") == 3  # the staff's v-add-user, the tick's, the refresh's

        def counted(server_id: str) -> int:
            log = read_command_log(system.nodes[server_id].data_dir)
            return sum(1 for e in log if e["argv"][0].endswith(("v-list-users", "v-add-user")))

        await wait_until(refreshed, 30, "the refresh's listing", system.logs)
        assert counted("u2") == 2
    finally:
        await system.close()
