"""A lifecycle call right after an order, as a new user tries it: real hostwright processes on
RabbitMQ and PostgreSQL, simulated Hestia nodes over SSH. The call queues behind the build and
runs after it: order + suspend ends built and suspended (its user exists on the web node,
suspended), order + terminate ends terminated, order + change plan ends active on the new
plan; none is left ``provisioning``."""

from __future__ import annotations

from pathlib import Path

from handlers.hestia_driver import HestiaDriver
from tests.support.deployment import Deployment
from tests.support.resilience import SPLIT_NODES, deployment, order_split


async def act(system: Deployment, service_id: int, action: str, **body: object) -> None:
    reply = await system.client.post(f"/v1/services/{service_id}/{action}", json=body)
    assert reply.status_code == 202, reply.text


async def web_user_suspended(system: Deployment, user: str) -> str | None:
    driver = HestiaDriver(system.access("web1"))
    try:
        found = await driver.probe_json(["v-list-user", user])
    finally:
        await driver.close()
    return None if found is None else str(found[user]["SUSPENDED"])


async def test_a_call_right_after_the_order_runs_after_the_build(
    tmp_path: Path, amqp_url: str, exchange_name: str, fresh_postgres_url: str
) -> None:
    async with deployment(
        tmp_path, amqp_url, exchange_name, fresh_postgres_url, SPLIT_NODES
    ) as system:
        await order_split(system, 51)
        await act(system, 51, "suspend")
        await order_split(system, 52)
        await act(system, 52, "terminate")
        await order_split(system, 53)
        await act(system, 53, "change-plan", plan={"package": "pkg53", "disk_mb": 2000})

        await system.wait_status([51], "suspended", 90)
        await system.wait_status([52], "terminated", 90)
        await system.wait_status([53], "active", 90)
        assert await web_user_suspended(system, "user51") == "yes"
        for service_id in (51, 52, 53):
            topics = await topics_of(system, service_id)
            assert "Service.OperationFailed" not in topics, topics
        assert "Service.PlanApplied" in await topics_of(system, 53)


async def topics_of(system: Deployment, service_id: int) -> list[str]:
    reply = await system.client.get(f"/v1/services/{service_id}/events")
    assert reply.status_code == 200, reply.text
    return [e["topic"] for e in reply.json()["events"]]
