"""A running pipeline and ``rotate-key``: a step awaiting its retry when the password is
re-sealed is dispatched again with the re-sealed text, whether the relayed
``Task.PasswordResealed`` reaches the pipeline first or its own save finds the task changed;
a role handler holding only the new key sets that password on a simulated node over SSH."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from domain.commands import parse_order
from domain.deploy_plan import StepSpec
from domain.retry_policy import RetryPolicy
from domain.service import Service, service_uuid
from domain.task import Task
from handlers.hestia_driver import NodeAccess
from handlers.messages import ResultMessage, TaskMessage
from handlers.pipeline import Pipeline, PipelineSettings
from handlers.role_handler import RoleHandler
from handlers.step_params import resolve_params
from ops.adapters.password_rotation import rotate_sealed_passwords
from ops.adapters.pipeline_store import StorePipelineAdapter
from ops.adapters.sealing import PasswordSealer
from ops.devtools.simnode.state import read_state_json
from ops.store.event_store import EventStore
from tests.fakes.clock import Clock
from tests.fakes.publisher import RecordingPublisher
from tests.support.simnode_driver import node_and_driver

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
OLD_KEY = "an-old-secret-key-of-32-characters!"
NEW_KEY = "a-new-secret-key-of-32-characters!!"
PASSWORD = "Cl3ar-Pa55word!"
POLICY = RetryPolicy(max_attempts=3, initial_backoff_s=10, max_backoff_s=60, jitter=0.2)


class UserStepPlanner:
    """One step, ``web.user``, with the service's sealed password, as the real plans make it."""

    def place(self, service: Service) -> dict[str, object]:
        return {"web_server": "web1", "mail_server": "web1", "dns_servers": ["web1"]}

    def steps(self, service: Service, placement: dict[str, object], kind: str) -> list[StepSpec]:
        params = {
            "user": "u1",
            "email": "u1@example.com",
            "password_sealed": service.password_sealed,
            "owner": service.service_id,
        }
        return [StepSpec("web.user", "web", "ensure_user", "web1", params, ())]


class Nodes:
    def __init__(self, nodes: dict[str, NodeAccess]) -> None:
        self.nodes = nodes

    async def node_access(self, server_id: str) -> NodeAccess | None:
        return self.nodes.get(server_id)


@dataclass(frozen=True)
class Delivered:
    body: bytes


class Limits:
    def max_concurrency(self, server_id: str) -> int:
        return 4


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    event_store = EventStore(f"sqlite:///{tmp_path / 'store.sqlite'}")
    yield event_store
    event_store.close()


async def a_step_awaiting_its_retry(
    store: EventStore,
) -> tuple[Clock, RecordingPublisher, Pipeline, TaskMessage]:
    clock, published = Clock(T0), RecordingPublisher()
    pipeline = Pipeline(
        StorePipelineAdapter(store),
        UserStepPlanner(),
        Limits(),
        published,
        settings=PipelineSettings(policy=POLICY, lease_s=30, batch_size=100),
        clock=clock,
        unit_random=lambda: 0.5,
    )
    body = {
        "service_id": "7",
        "client_id": 1,
        "mode": "split",
        "domain": "s7.example.com",
        "plan": {"package": "default"},
    }
    command = parse_order(body, now=T0, actor="whmcs")
    store.order_service(command, PasswordSealer(OLD_KEY).seal(PASSWORD))
    await pipeline.on_event("Service.Ordered", service_uuid("7"), version=1)
    (first,) = published.take()
    await pipeline.on_result(
        ResultMessage(
            task_id=first.task_id,
            attempt=first.attempt,
            role=first.role,
            outcome="failed_retryable",
            error="exit 15: connect",
            log=[],
        )
    )
    assert published.take() == []  # the retry waits its back-off
    return clock, published, pipeline, first


def _password(message: TaskMessage, sealer: PasswordSealer) -> str:
    password: str = resolve_params(message.params, message.inputs, sealer.unseal)["password"]
    return password


async def test_a_retry_after_rotation_carries_the_resealed_password(store: EventStore) -> None:
    clock, published, pipeline, first = await a_step_awaiting_its_retry(store)
    report = rotate_sealed_passwords(store, PasswordSealer(NEW_KEY, [OLD_KEY]), clock.now)
    assert report.services == ["7"] and report.tasks == [first.task_id]
    task = store.repository(Task, "task").get(uuid.UUID(first.task_id))
    await pipeline.on_event("Task.PasswordResealed", task.id, version=task.version)

    clock.advance(POLICY.max_backoff_s)
    await pipeline.tick()

    (retry,) = published.take()
    assert retry.attempt == 2
    assert _password(retry, PasswordSealer(NEW_KEY)) == PASSWORD


async def test_the_role_handler_with_only_the_new_key_sets_the_password_on_the_node(
    store: EventStore, tmp_path: Path
) -> None:
    clock, published, pipeline, _ = await a_step_awaiting_its_retry(store)
    rotate_sealed_passwords(store, PasswordSealer(NEW_KEY, [OLD_KEY]), clock.now)
    clock.advance(POLICY.max_backoff_s)
    await pipeline.tick()
    await pipeline.tick()
    (retry,) = published.take()

    node, probe = await node_and_driver(tmp_path)
    await probe.close()
    results = RecordingPublisher()
    handler = RoleHandler(
        "web",
        directory=Nodes({"web1": probe.access}),
        publisher=results,
        heartbeat_interval=5,
        unseal=PasswordSealer(NEW_KEY).unseal,
    )
    try:
        await handler.handle(Delivered(retry.to_json()))
        state = json.loads(read_state_json(node.data_dir))
    finally:
        await handler.close()
        await node.stop()
    [result] = results.results()
    assert result.outcome == "succeeded", result.error
    _, _, salt, digest = state["users"]["u1"]["conf"]["MD5"].split("$")
    assert hashlib.sha256((salt + PASSWORD).encode()).hexdigest() == digest


async def test_a_pipeline_that_missed_the_event_takes_the_resealed_task_on_its_next_save(
    store: EventStore,
) -> None:
    clock, published, pipeline, _ = await a_step_awaiting_its_retry(store)
    rotate_sealed_passwords(store, PasswordSealer(NEW_KEY, [OLD_KEY]), clock.now)

    clock.advance(POLICY.max_backoff_s)
    await pipeline.tick()  # its dispatch conflicts with the re-seal: it reads the task again
    await pipeline.tick()

    (retry,) = published.take()
    assert _password(retry, PasswordSealer(NEW_KEY)) == PASSWORD


def test_the_old_password_text_is_gone_from_what_the_pipeline_would_plan_next(
    store: EventStore,
) -> None:
    body = {
        "service_id": "8",
        "client_id": 1,
        "mode": "split",
        "domain": "s8.example.com",
        "plan": {"package": "default"},
    }
    store.order_service(
        parse_order(body, now=T0, actor="whmcs"), PasswordSealer(OLD_KEY).seal(PASSWORD)
    )
    rotate_sealed_passwords(store, PasswordSealer(NEW_KEY, [OLD_KEY]), T0 + timedelta(hours=1))
    service = store.get_service("8")
    (step,) = UserStepPlanner().steps(service, {}, "deploy")
    assert resolve_params(step.params, {}, PasswordSealer(NEW_KEY).unseal)["password"] == PASSWORD
