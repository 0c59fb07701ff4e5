"""The composition root wires the live log end to end: a line a role handler built by
``System`` sends reaches a follower of the gateway's ``task_logs`` in another System on the
same broker (RabbitMQ: separate processes in production) and in the same one (in-process:
``hostwright up``)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from handlers.live_lines import BufferedLiveLines
from ops.bootstrap import System
from ops.settings import Settings
from tests.support.budget import budget
from tests.support.transports import QueueNames, clean_broker, queue_names  # noqa: F401


def settings_for(tmp_path: Path, amqp_url: str | None, exchange: str) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'store.sqlite'}",
        amqp_url=amqp_url,
        exchange=exchange,
        secret_key="a secret key for the live log wiring test",
    )


@pytest.mark.parametrize("broker", ["amqp", "inprocess"])
async def test_a_role_handlers_lines_reach_the_gateways_task_log(
    tmp_path: Path, broker: str, amqp_url: str, exchange_name: str, queue_names: QueueNames
) -> None:
    url = amqp_url if broker == "amqp" else None
    handler_side = System(settings_for(tmp_path, url, exchange_name))
    # RabbitMQ: the gateway is another process with a System of its own
    gateway_side = System(settings_for(tmp_path, url, exchange_name)) if url else handler_side
    handler = None
    try:
        await handler_side.connect_transport()
        handler = handler_side.role_handler("web")
        live = handler._live
        assert isinstance(live, BufferedLiveLines)
        follow = gateway_side.task_logs().follow("t-1")
        first = asyncio.ensure_future(anext(follow))
        deadline = time.monotonic() + budget(10.0)
        while not first.done():  # until the follower's binding is in place
            assert time.monotonic() < deadline, "the follower never heard a line"
            live.send("t-1", "$ v-add-user alice '*****'")
            await asyncio.sleep(0.02)
        assert first.result() == "$ v-add-user alice '*****'"
        await follow.aclose()  # type: ignore[attr-defined]
    finally:
        if handler is not None:
            await handler.close()
        await handler_side.close()
        if gateway_side is not handler_side:
            await gateway_side.close()
        if url:
            await clean_broker(amqp_url, exchange_name, queue_names)
