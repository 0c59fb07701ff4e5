"""``hostwright up`` (every part in one process, in-process transport, SQLite) SIGKILLed in the
middle of a deploy and started again: whatever was in flight is redone from the store — the
task messages that died with the process are sent again at once, the orders whose events died
are started by the pipeline's sweep — and every service ends ``active``.

The lease is far longer than the test may take, so an attempt lost with the process is not
found again by its lease running out: only a pipeline that redoes its work from the store
passes.
"""

from __future__ import annotations

from pathlib import Path

from ops.devtools.simnode import Faults
from tests.support.deployment import Deployment, wait_until
from tests.support.processes import HostwrightProcess
from tests.support.resilience import SPLIT_NODES, TaskRecord, order_split, task_history

IN_FLIGHT = ("Dispatched", "LeaseRenewed")


def in_flight(record: TaskRecord) -> bool:
    return record.kinds[-1] in IN_FLIGHT


async def test_up_killed_mid_deploy_and_restarted_ends_every_service_active(
    tmp_path: Path, amqp_url: str, exchange_name: str
) -> None:
    system = Deployment(tmp_path, amqp_url, exchange_name, f"sqlite:///{tmp_path / 'hw.sqlite'}")
    env = {k: v for k, v in system.settings.items() if k != "HOSTWRIGHT_AMQP_URL"}
    env["HOSTWRIGHT_LEASE_S"] = "900"
    try:
        for server_id, roles, ip in SPLIT_NODES:
            await system.add_node(server_id, roles, ip)
        system.nodes["web1"].set_faults(Faults(latency_ms=300))
        system.processes["up"] = HostwrightProcess(["up"], env, tmp_path, "up-first").start()
        await system.wait_for_gateway()
        await system.register_nodes()
        services = [41, 42, 43]
        for service_id in services:
            await order_split(system, service_id)

        async def mid_deploy() -> bool:
            history = await task_history(system)
            return any(in_flight(r) for r in history.values())

        await wait_until(mid_deploy, 60, "an attempt in flight", system.logs)
        system.processes["up"].kill()
        history = await task_history(system)
        lost = [r.step for r in history.values() if in_flight(r)]
        assert lost, "nothing was in flight at the kill: the test proved nothing"

        system.processes["up"] = HostwrightProcess(["up"], env, tmp_path, "up-second").start()
        await system.wait_for_gateway()
        await system.wait_status(services, "active", 120)
    finally:
        await system.close()
