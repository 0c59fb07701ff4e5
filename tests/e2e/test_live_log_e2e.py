"""A step's SSH log followed live across processes, every part a real ``hostwright serve``
process on RabbitMQ and PostgreSQL: a follower in another process (the gateway's
``TransportTaskLog``, as the console uses it) hears the user step's lines while the web node
holds the step's ``v-add-user`` (and the command's own line while the node holds the next), so
before the step can end; once the service is active, the lines it heard are, in order, the
start of the attempt's stretch of the task's recorded log (what the step noted after the last
batch went is left to the recorded log), and the order's password is in none of them."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from domain.task import task_uuid
from handlers.live_lines import BufferedLiveLines
from ops.devtools.simnode import Faults
from ops.messaging.amqp_transport import AmqpTransport
from ops.messaging.live_log import LineBroadcast, TransportTaskLog
from tests.support.budget import budget
from tests.support.deployment import DNS1_IP, DNS2_IP, MAIL_IP, WEB_IP, Deployment, wait_until

PASSWORD = "0rder-Live-Pa55word!"
PROBE = "probe: is anyone listening?"
USER_TASK = str(task_uuid("1", 1, "web.user"))  # service 1's first run's user step


@pytest.fixture
async def deployment(
    tmp_path: Path, amqp_url: str, exchange_name: str, fresh_postgres_url: str
) -> AsyncIterator[Deployment]:
    system = Deployment(tmp_path, amqp_url, exchange_name, fresh_postgres_url)
    # the held command must not time out while the test looks (the harness's 8 s would do)
    system.settings["HOSTWRIGHT_COMMAND_TIMEOUT_S"] = "120"
    try:
        await system.add_node("web1", ("web",), WEB_IP)
        await system.add_node("mail1", ("mail",), MAIL_IP)
        await system.add_node("dns1", ("dns",), DNS1_IP)
        await system.add_node("dns2", ("dns",), DNS2_IP)
        await system.start_all()
        await system.register_nodes()
        yield system
    finally:
        await system.close()


async def test_a_follower_hears_a_held_steps_lines_across_processes(
    deployment: Deployment, amqp_url: str, exchange_name: str
) -> None:
    system = deployment
    web = system.nodes["web1"]
    gateway_side = AmqpTransport(amqp_url, exchange_name)
    prober = BufferedLiveLines(LineBroadcast(gateway_side))
    heard: list[str] = []

    async def follow() -> None:
        log = TransportTaskLog(gateway_side, gateway_side.connect)
        async for line in log.follow(USER_TASK):
            heard.append(line)

    def lines() -> list[str]:
        return [line for line in heard if line != PROBE]

    async def have(prefix: str) -> bool:
        return any(line.startswith(prefix) for line in lines())

    following = asyncio.ensure_future(follow())
    try:
        deadline = time.monotonic() + budget(15)
        while PROBE not in heard:  # until the follower's binding is in place
            assert time.monotonic() < deadline, "the follower never heard a probe"
            prober.send(USER_TASK, PROBE)
            await asyncio.sleep(0.05)
        web.set_faults(Faults(held_commands=["v-add-user"]))
        await system.order(1, "split", "live.example.com", username="userlive", password=PASSWORD)
        await wait_until(
            lambda: have("ensure_user on web1 (attempt 1)"),
            60,
            "the step's first line",
            system.logs,
        )
        # v-add-user is held on the node: the step cannot have ended, yet its lines are here
        task = (await system.staff.get(f"/v1/tasks/{USER_TASK}")).json()
        assert task["state"] == "dispatched"
        assert not await have("$ v-add-user userlive")
        # v-add-user goes on; the user's probe after it is held: the step is still running
        web.set_faults(Faults(held_commands=["v-list-user"]))
        await wait_until(
            lambda: have("$ v-add-user userlive '*****' "), 60, "the command's line", system.logs
        )
        web.set_faults(Faults())
        await system.wait_status([1], "active", 90)
        log = (await system.staff.get(f"/v1/tasks/{USER_TASK}")).json()["log"]
        # what was heard is the attempt's stretch of the recorded log from its start, in order
        start = log.index("ensure_user on web1 (attempt 1)")
        assert log[start : start + len(lines())] == lines()
        assert PASSWORD not in "\n".join(heard) and PASSWORD not in "\n".join(log)
    finally:
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following
        await prober.close()
        await gateway_side.close()
