"""RoleHandler: task message in, heartbeats while it runs, exactly one result out."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from handlers.hestia_driver import HestiaDriver, NodeAccess
from handlers.messages import TaskMessage
from handlers.role_handler import Publisher, RoleHandler, ServerDirectory
from ops.devtools.simnode import Faults, SimNode, read_command_log
from ops.runtime.log_setup import CommandIdFilter
from tests.fakes.publisher import RecordingPublisher
from tests.support.simnode_driver import node_and_driver


class FakeDirectory:
    def __init__(self, nodes: dict[str, NodeAccess]) -> None:
        self.nodes = nodes

    async def node_access(self, server_id: str) -> NodeAccess | None:
        return self.nodes.get(server_id)


@dataclass(frozen=True)
class Delivered:
    body: bytes


def task(
    action: str,
    params: dict[str, Any],
    *,
    attempt: int = 1,
    server: str = "web1",
    command_id: str | None = None,
) -> Delivered:
    message = TaskMessage(
        task_id="t-1",
        attempt=attempt,
        service_id="svc-1",
        step=action,
        role="web",
        action=action,
        server_id=server,
        params=params,
        command_id=command_id,
    )
    return Delivered(message.to_json())


USER = {"user": "alice", "password": "pw-Secret9", "email": "alice@example.com", "owner": "7"}


@pytest.fixture
async def env(tmp_path: Path):
    node, probe_driver = await node_and_driver(tmp_path)
    await probe_driver.close()
    publisher = RecordingPublisher()
    directory = FakeDirectory({"web1": probe_driver.access})
    handler = RoleHandler("web", directory=directory, publisher=publisher, heartbeat_interval=0.1)
    yield node, handler, publisher
    await handler.close()
    await node.stop()


def test_fakes_satisfy_the_ports() -> None:
    publisher: Publisher = RecordingPublisher()
    directory: ServerDirectory = FakeDirectory({})
    assert publisher and directory


async def test_a_task_gives_one_succeeded_result_with_its_log(
    env: tuple[SimNode, RoleHandler, RecordingPublisher],
) -> None:
    node, handler, publisher = env
    await handler.handle(task("ensure_user", USER))
    [result] = publisher.results()
    assert (result.task_id, result.attempt, result.role) == ("t-1", 1, "web")
    assert result.outcome == "succeeded" and result.changed and result.error == ""
    assert any("v-add-user alice '*****'" in line for line in result.log)
    assert "pw-Secret9" not in json.dumps([m[1].decode() for m in publisher.sent])
    assert publisher.sent[-1][0] == "result.web"
    assert publisher.sent[-1][2] == "result:t-1:1"
    # A redelivery of the same step changes nothing; the driver's pool is kept.
    await handler.handle(task("ensure_user", USER, attempt=2))
    second = publisher.results()[-1]
    assert second.outcome == "succeeded" and not second.changed
    adds = [e for e in read_command_log(node.data_dir) if e["argv"][0] == "v-add-user"]
    assert len(adds) == 1
    assert len(handler._drivers) == 1
    driver = handler._drivers["web1"][1]
    assert isinstance(driver, HestiaDriver) and driver.connections_opened == 1


async def test_transient_failure_is_retryable(
    env: tuple[SimNode, RoleHandler, RecordingPublisher],
) -> None:
    node, handler, publisher = env
    node.set_faults(Faults(fail_next=1, fail_code=15))
    await handler.handle(task("ensure_user", USER))
    [result] = publisher.results()
    assert result.outcome == "failed_retryable"
    assert "exited 15 (connect)" in result.error and result.log


async def test_permanent_failures(env: tuple[SimNode, RoleHandler, RecordingPublisher]) -> None:
    node, handler, publisher = env
    node.set_faults(Faults(fail_commands={"v-add-user": 2}))
    await handler.handle(task("ensure_user", USER))
    node.set_faults(Faults())
    await handler.handle(
        task("ensure_web_domain", {"user": "nobody", "domain": "a.test", "owner": "7"})
    )
    await handler.handle(task("ensure_user", {"user": "alice"}))
    await handler.handle(task("frobnicate", {}))
    await handler.handle(task("ensure_user", USER, server="web9"))
    results = publisher.results()
    assert [r.outcome for r in results] == ["failed_permanent"] * 5
    assert "exited 2 (invalid)" in results[0].error
    assert "exited 3 (not exist)" in results[1].error
    assert results[2].error.startswith("bad params for ensure_user: param 'email' is required")
    assert results[3].error == "unknown action 'frobnicate'"
    assert results[4].error == "unknown server 'web9'"


async def test_heartbeats_while_a_slow_step_runs(
    env: tuple[SimNode, RoleHandler, RecordingPublisher],
) -> None:
    node, handler, publisher = env
    node.set_faults(Faults(latency_ms=150))
    await handler.handle(task("ensure_user", USER))
    beats = publisher.heartbeats()
    assert len(beats) >= 3
    assert [b.sequence for b in beats] == list(range(1, len(beats) + 1))
    assert {(b.task_id, b.attempt, b.role) for b in beats} == {("t-1", 1, "web")}
    assert publisher.sent[-1][0] == "result.web" and len(publisher.results()) == 1
    count = len(publisher.sent)
    await handler.handle(task("frobnicate", {}))
    assert len(publisher.sent) == count + 1  # the heartbeat stopped with its step


async def test_malformed_messages_raise_value_error(
    env: tuple[SimNode, RoleHandler, RecordingPublisher],
) -> None:
    _, handler, publisher = env
    good = json.loads(task("ensure_user", USER).body)
    bodies = [
        b"not json",
        b"[]",
        json.dumps({k: v for k, v in good.items() if k != "action"}).encode(),
        json.dumps({**good, "params": "x"}).encode(),
        json.dumps({**good, "attempt": "1"}).encode(),
    ]
    for body in bodies:
        with pytest.raises(ValueError):
            await handler.handle(Delivered(body))
    assert publisher.sent == []
    # a field a later release added is left out, not refused: the step runs
    await handler.handle(Delivered(json.dumps({**good, "from_a_later_release": 1}).encode()))
    assert [r.outcome for r in publisher.results()] == ["succeeded"]


async def test_a_task_planned_before_owner_marks_takes_its_service_id_as_owner(
    env: tuple[SimNode, RoleHandler, RecordingPublisher],
) -> None:
    """A task planned before the upgrade (in flight, or an errored one staff try again) has no
    ``owner``: the handler takes the task's service id, and a given ``owner`` always wins."""
    _, handler, publisher = env
    unmarked = {k: v for k, v in USER.items() if k != "owner"}
    await handler.handle(task("ensure_user", unmarked))
    await handler.handle(task("ensure_user", {**unmarked, "user": "bob", "owner": "7"}))
    assert [r.outcome for r in publisher.results()] == ["succeeded", "succeeded"]
    driver = handler._drivers["web1"][1]
    users = await driver.list_json(["v-list-users"])
    assert (users["alice"]["NAME"], users["bob"]["NAME"]) == (
        "hostwright service svc-1",
        "hostwright service 7",
    )


def field(line: logging.LogRecord, name: str) -> Any:
    """A field the line was given (``extra``, or the command id filter's); None if none."""
    return vars(line).get(name)


@pytest.fixture
def caplog(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """pytest's capture, with the filter every process's handler has (the command id)."""
    command_ids = CommandIdFilter()
    caplog.handler.addFilter(command_ids)
    yield caplog
    caplog.handler.removeFilter(command_ids)


def step_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "handlers.role_handler"]


async def test_each_step_is_one_line_with_its_task_and_the_command_id_and_no_password(
    env: tuple[SimNode, RoleHandler, RecordingPublisher], caplog: pytest.LogCaptureFixture
) -> None:
    _, handler, _ = env
    with caplog.at_level(logging.INFO):
        await handler.handle(task("ensure_user", USER, command_id="order-7"))

    (line,) = step_lines(caplog)
    assert line.levelno == logging.INFO
    assert {
        name: getattr(line, name, None)
        for name in ("service", "task", "step", "server", "attempt", "outcome", "command_id")
    } == {
        "service": "svc-1",
        "task": "t-1",
        "step": "ensure_user",
        "server": "web1",
        "attempt": 1,
        "outcome": "succeeded",
        "command_id": "order-7",
    }
    assert "pw-Secret9" not in caplog.text


async def test_a_failed_step_is_a_warning_with_its_reason(
    env: tuple[SimNode, RoleHandler, RecordingPublisher], caplog: pytest.LogCaptureFixture
) -> None:
    node, handler, _ = env
    node.set_faults(Faults(fail_next=1, fail_code=15))
    with caplog.at_level(logging.INFO):
        await handler.handle(task("ensure_user", USER, command_id="order-7"))

    (line,) = step_lines(caplog)
    assert line.levelno == logging.WARNING
    assert field(line, "outcome") == "failed_retryable"
    assert "exited 15 (connect)" in field(line, "reason")
    assert (field(line, "server"), field(line, "command_id")) == ("web1", "order-7")
    assert "pw-Secret9" not in caplog.text


async def test_a_command_id_that_is_not_text_is_a_malformed_message(
    env: tuple[SimNode, RoleHandler, RecordingPublisher],
) -> None:
    _, handler, publisher = env
    body = json.loads(task("ensure_user", USER).body) | {"command_id": 7}
    with pytest.raises(ValueError, match="command_id"):
        await handler.handle(Delivered(json.dumps(body).encode()))
    assert publisher.sent == []
