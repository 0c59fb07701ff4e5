"""A running step's log, followed live on RabbitMQ and in-process: the follower sees each line
the step notes, in order, while the step still runs (the node holds a command until the test
lets it go); a follower gone leaves no queue and no binding behind; the result's log, what is
recorded for the task, is the same with or without the live channel, and a live channel that
hangs neither slows nor fails a step; a follower hears again after its broker connection
dropped and came back."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import aio_pika.exceptions
import aiormq.exceptions
import pytest

from handlers.hestia_driver import NodeAccess
from handlers.live_lines import BufferedLiveLines
from handlers.messages import TaskMessage
from handlers.role_handler import RoleHandler
from ops.devtools.simnode import Faults, SimNode, read_command_log
from ops.messaging.amqp_transport import AmqpTransport
from ops.messaging.inprocess_transport import InProcessTransport
from ops.messaging.live_log import LineBroadcast, TransportTaskLog, task_log_key
from tests.fakes.line_outlets import HangingOutlet, RecordingOutlet
from tests.fakes.publisher import RecordingPublisher
from tests.support.budget import budget
from tests.support.simnode_driver import node_and_driver
from tests.support.tcp_proxy import TcpProxy
from tests.support.transports import (  # noqa: F401 - shared fixtures
    AnyTransport,
    QueueNames,
    clean_broker,
    queue_names,
    transport,
    wait_until,
)

TASK_ID = "t-1"
PROBE = "probe: is anyone listening?"
USER = {"user": "alice", "password": "pw-Secret9", "email": "alice@example.com", "owner": "7"}


class FakeDirectory:
    def __init__(self, nodes: dict[str, NodeAccess]) -> None:
        self.nodes = nodes

    async def node_access(self, server_id: str) -> NodeAccess | None:
        return self.nodes.get(server_id)


@dataclass(frozen=True)
class Delivered:
    body: bytes


def ensure_user(params: dict[str, Any]) -> Delivered:
    message = TaskMessage(
        task_id=TASK_ID,
        attempt=1,
        service_id="7",
        step="user",
        role="web",
        action="ensure_user",
        server_id="web1",
        params=params,
    )
    return Delivered(message.to_json())


class Follower:
    """A page following the task's log: every line it was given, in a task of its own."""

    def __init__(self, transport: AnyTransport, task_id: str = TASK_ID) -> None:
        self.heard: list[str] = []
        self._follow = TransportTaskLog(transport, transport.connect).follow(task_id)
        self._closing = False
        self.running = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for line in self._follow:
            self.heard.append(line)
            if self._closing:
                break  # leaves the iterator open: ``close`` closes it, as ``aclosing`` does

    async def close(self, lines: BufferedLiveLines) -> None:
        """Stops at the next line, then closes the iterator, as a page's stream does."""
        self._closing = True
        lines.send(TASK_ID, PROBE)
        await asyncio.wait_for(self.running, budget(10.0))
        await self._follow.aclose()  # type: ignore[attr-defined]

    def lines(self) -> list[str]:
        return [line for line in self.heard if line != PROBE]

    async def listening(self, lines: BufferedLiveLines, task_id: str = TASK_ID) -> None:
        """Probes until one arrives: the follower's binding is in place from then on."""
        deadline = time.monotonic() + budget(10.0)
        while PROBE not in self.heard:
            assert time.monotonic() < deadline, "the follower never heard a probe"
            lines.send(task_id, PROBE)
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        self.running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.running


@pytest.fixture
async def node_access(tmp_path: Path) -> AsyncIterator[tuple[SimNode, NodeAccess]]:
    node, driver = await node_and_driver(tmp_path)
    await driver.close()
    yield node, driver.access
    await node.stop()


def held_at(node: SimNode, command: str) -> bool:
    """The step waits in ``command`` (held): the only command running, after the user's
    probe finished."""
    done = [entry["argv"][0] for entry in read_command_log(node.data_dir)]
    return node.executor.journal.running == 1 and done == ["v-list-user"]


def live_handler(access: NodeAccess, publisher: RecordingPublisher, lines: Any) -> RoleHandler:
    return RoleHandler(
        "web",
        directory=FakeDirectory({"web1": access}),
        publisher=publisher,
        heartbeat_interval=5.0,
        live=lines,
    )


async def test_a_follower_sees_the_running_steps_lines_in_order_before_it_ends(
    transport: AnyTransport, node_access: tuple[SimNode, NodeAccess]
) -> None:
    node, access = node_access
    publisher = RecordingPublisher()
    lines = BufferedLiveLines(LineBroadcast(transport))
    handler = live_handler(access, publisher, lines)
    follower = Follower(transport)
    other = Follower(transport, task_id="t-2")  # another task's page hears none of t-1
    handling: asyncio.Future[None] | None = None
    try:
        await follower.listening(lines)
        await other.listening(lines, task_id="t-2")
        node.set_faults(Faults(held_commands=["v-add-user"]))
        handling = asyncio.ensure_future(handler.handle(ensure_user(USER)))
        await wait_until(lambda: held_at(node, "v-add-user"), "v-add-user held", timeout=10)
        # the line comes within the sink's linger, while the step is still held
        await wait_until(lambda: follower.lines() != [], "the step's first line", timeout=10)
        assert follower.lines() == ["ensure_user on web1 (attempt 1)"]
        assert not handling.done()
        # v-add-user goes on; the user's probe after it is held: the step is still running
        node.set_faults(Faults(held_commands=["v-list-user"]))
        await wait_until(lambda: len(follower.lines()) == 2, "the command's line", timeout=10)
        assert re.fullmatch(
            r"\$ v-add-user alice '\*\*\*\*\*' alice@example\.com default "
            r"'hostwright service 7' -> exit 0 \(\d+ ms\)",
            follower.lines()[1],
        )
        assert not handling.done()
        node.set_faults(Faults())
        await handling
        [result] = publisher.results()
        assert result.outcome == "succeeded"
        # what was heard is the recorded log's start, in its order, and nothing else: the
        # lines the step noted after the last batch went are left to its result
        assert len(follower.lines()) >= 2
        assert result.log[: len(follower.lines())] == follower.lines()
        assert result.log[-1].endswith("ms in the web handler")
        assert "pw-Secret9" not in "\n".join(follower.heard)
        assert other.lines() == [] and lines.dropped == lines.failed == 0
    finally:
        if handling is not None and not handling.done():
            node.set_faults(Faults())
            await handling
        await follower.stop()
        await other.stop()
        await handler.close()


async def bound_on_broker(transport: AmqpTransport, key: str) -> bool:
    """Whether a broadcast under ``key`` reaches any queue: a mandatory publish to the live
    exchange comes back when none is bound."""
    connection = await aio_pika.connect(transport.url)
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange = await channel.get_exchange(transport.live_exchange)
        try:
            await exchange.publish(aio_pika.Message(b"?"), key, mandatory=True)
        except aio_pika.exceptions.DeliveryError:
            return False
        return True
    finally:
        await connection.close()


async def queue_exists(transport: AmqpTransport, name: str) -> bool:
    connection = await aio_pika.connect(transport.url)
    try:
        channel = await connection.channel()
        try:
            await channel.declare_queue(name, passive=True)
        except aio_pika.exceptions.ChannelNotFoundEntity:
            return False
        except aiormq.exceptions.ChannelLockedResource:
            return True  # exclusive to the connection that declared it: it exists
        return True
    finally:
        await connection.close()


@pytest.mark.parametrize("how", ["cancelled", "closed"])
async def test_a_follower_gone_leaves_no_queue_behind(transport: AnyTransport, how: str) -> None:
    lines = BufferedLiveLines(LineBroadcast(transport))
    follower = Follower(transport)
    key = task_log_key(TASK_ID)
    assert key is not None
    try:
        await follower.listening(lines)
        if isinstance(transport, AmqpTransport):
            [queue] = transport.live_queues
            assert await queue_exists(transport, queue) and await bound_on_broker(transport, key)
        else:
            assert transport.listening() == 1
        if how == "cancelled":  # the page's connection dropped: its request task is cancelled
            await follower.stop()
        else:  # the page's stream ended: it stops reading and closes the iterator
            await follower.close(lines)
        if isinstance(transport, AmqpTransport):
            assert transport.live_queues == set()
            assert not await queue_exists(transport, queue)
            assert not await bound_on_broker(transport, key)
        else:
            assert isinstance(transport, InProcessTransport) and transport.listening() == 0
    finally:
        await follower.stop()
        await lines.close()


def timeless(log: list[str]) -> list[str]:
    return [re.sub(r"\d+ ms", "N ms", line) for line in log]


async def test_the_recorded_log_is_the_same_and_a_stuck_live_channel_slows_no_step(
    tmp_path: Path,
) -> None:
    """The same step on two fresh nodes, once with no live sink and once with one whose
    broker never answers (a buffer of one line): the same outcome, the same recorded log."""
    logs = []
    for name, lines in (("plain", None), ("stuck", BufferedLiveLines(HangingOutlet(), capacity=1))):
        node, driver = await node_and_driver(tmp_path / name)
        await driver.close()
        publisher = RecordingPublisher()
        handler = live_handler(driver.access, publisher, lines)
        try:
            await handler.handle(ensure_user(USER))
        finally:
            await handler.close()
            await node.stop()
        [result] = publisher.results()
        assert result.outcome == "succeeded"
        logs.append(timeless(result.log))
        if lines is not None:
            # the first line buffered (then taken by the drainer, if the step outlasted its
            # wait, and another buffered), the others dropped, the "took" line never sent
            assert lines.dropped >= len(result.log) - 3
    assert logs[0] == logs[1] and len(logs[0]) == 4


async def test_a_step_that_ends_before_the_sink_sends_leaves_its_lines_to_its_result(
    tmp_path: Path,
) -> None:
    """The sink waits longer than the step takes: once the handler has published the result,
    nothing of the step is left to send (closing the sink drops, and counts, what is left)."""
    node, driver = await node_and_driver(tmp_path)
    await driver.close()
    publisher = RecordingPublisher()
    outlet = RecordingOutlet()
    lines = BufferedLiveLines(outlet, linger_s=3600)
    handler = live_handler(driver.access, publisher, lines)
    try:
        await handler.handle(ensure_user(USER))
        [result] = publisher.results()
        assert result.outcome == "succeeded" and len(result.log) >= 3
    finally:
        await handler.close()  # closes the sink
        await node.stop()
    assert outlet.batches == [] and (lines.dropped, lines.failed) == (0, 0)


async def test_a_follower_hears_again_once_the_broker_connection_is_back(
    amqp_url: str, exchange_name: str, queue_names: QueueNames
) -> None:
    """RabbitMQ only: the connection drops (the exclusive queue goes with it) and comes back;
    the follower's queue, its binding and its consumer are restored, and it hears again."""
    broker = urlsplit(amqp_url)
    proxy = TcpProxy(broker.hostname or "127.0.0.1", broker.port or 5672)
    await proxy.start()
    url = amqp_url.replace(f"{broker.hostname}:{broker.port}", f"127.0.0.1:{proxy.port}")
    gateway_side = AmqpTransport(url, exchange_name, timeout=5.0)
    handler_side = AmqpTransport(amqp_url, exchange_name, timeout=5.0)
    lines = BufferedLiveLines(LineBroadcast(handler_side))
    connected: list[bool] = []
    follower: Follower | None = None
    try:
        await handler_side.connect()
        await gateway_side.connect()
        gateway_side.on_connection_change(connected.append)
        follower = Follower(gateway_side)
        await follower.listening(lines)
        await proxy.stop()
        await wait_until(lambda: connected == [False], "the lost connection reported")
        await proxy.start()
        await wait_until(lambda: connected == [False, True], "the connection back", 60)
        follower.heard.clear()
        await follower.listening(lines)  # fails unless the queue was declared and bound again
        assert len(gateway_side.live_queues) == 1
    finally:
        if follower is not None:
            await follower.stop()
        await lines.close()
        await gateway_side.close()
        await handler_side.close()
        await proxy.stop()
        await clean_broker(amqp_url, exchange_name, queue_names)
