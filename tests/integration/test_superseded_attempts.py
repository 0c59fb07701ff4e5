"""A role handler drops an attempt the store says was superseded, on SQLite and PostgreSQL.

A task message can outlive its attempt: it waited in a queue through an outage, or at the step
fence while its lease lapsed, or its run ended and the next one (a removal) ran meanwhile.
Once it holds the fence the handler reads the task from the event store and runs the step only
for the task's current dispatched attempt: a superseded one touches nothing on the node and
sends a "superseded; not run" result (the pipeline records nothing of it, but a newer run of
the service waiting for that attempt to leave the node dispatches at once).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from domain.retry_policy import RetryPolicy
from domain.task import Task
from handlers.hestia_driver import NodeAccess
from handlers.messages import TaskMessage
from handlers.role_handler import RoleHandler
from ops.adapters.step_gate import step_gate
from ops.devtools.simnode import SimNode, read_command_log
from ops.store.event_store import EventStore
from tests.fakes.publisher import RecordingPublisher
from tests.support.simnode_driver import access_for, client_key_file, start_node

START = datetime(2026, 1, 1, tzinfo=UTC)
USER = {"user": "alice", "password": "pw-Secret9", "email": "alice@example.com", "owner": "7"}


@dataclass(frozen=True)
class Delivered:
    body: bytes


class Directory:
    def __init__(self, node: SimNode, key_path: str) -> None:
        self.access = access_for(node, key_path)

    async def node_access(self, server_id: str) -> NodeAccess | None:
        return self.access if server_id == "web1" else None


@dataclass
class Setup:
    node: SimNode
    store: EventStore
    handler: RoleHandler
    publisher: RecordingPublisher
    task: Task

    async def deliver(self, attempt: int) -> None:
        message = TaskMessage(
            task_id=str(self.task.id),
            attempt=attempt,
            service_id="7",
            step="web.user",
            role="web",
            action="ensure_user",
            server_id="web1",
            params=USER,
        )
        await self.handler.handle(Delivered(message.to_json()))

    def commands(self) -> int:
        return len(read_command_log(self.node.data_dir))


@pytest.fixture
async def setup(tmp_path: Path, database_url: str) -> AsyncIterator[Setup]:
    node = await start_node(tmp_path)
    key_path, public = client_key_file(tmp_path / "keys")
    node.authorize(public)
    store = EventStore(database_url)
    publisher = RecordingPublisher()
    handler = RoleHandler(
        "web",
        directory=Directory(node, key_path),
        publisher=publisher,
        gate=step_gate(database_url, store),  # as the handler processes have it
    )
    task = Task.plan(
        service_id="7",
        run=1,
        step="web.user",
        role="web",
        action="ensure_user",
        server_id="web1",
        params=USER,
        depends_on=[],
        now=START,
    )
    try:
        yield Setup(node, store, handler, publisher, task)
    finally:
        await handler.close()
        store.close()
        await node.stop()


async def test_only_the_current_dispatched_attempt_runs(setup: Setup) -> None:
    task, store = setup.task, setup.store
    task.dispatch(START, 30)
    store.save(task)
    # attempt 1's lease lapses: its message, delivered late, is superseded
    task.expire_lease(START + timedelta(seconds=31), RetryPolicy(), 0.5)
    store.save(task)
    await setup.deliver(1)
    assert setup.commands() == 0
    [dropped] = setup.publisher.results()
    assert (dropped.attempt, dropped.outcome) == (1, "failed_permanent")
    assert dropped.error == "superseded; not run"

    task.dispatch(START + timedelta(seconds=60), 30)
    store.save(task)
    await setup.deliver(2)
    [_, result] = setup.publisher.results()
    assert (result.attempt, result.outcome, result.changed) == (2, "succeeded", True)
    ran = setup.commands()
    assert ran > 0

    # the task ended: a redelivery of its last attempt, or a stale one, touches nothing
    task.succeed(2, START + timedelta(seconds=61), changed=True, log=[])
    store.save(task)
    await setup.deliver(2)
    await setup.deliver(1)
    assert setup.commands() == ran
    assert [r.error for r in setup.publisher.results()[2:]] == ["superseded; not run"] * 2


async def test_a_task_the_store_does_not_know_runs(setup: Setup) -> None:
    """No such task recorded (it cannot tell): the handler runs the step as before."""
    await setup.deliver(1)
    [result] = setup.publisher.results()
    assert result.outcome == "succeeded" and setup.commands() > 0
