"""What the pipeline tells an operator, on a real event store (SQLite): a run's task messages
carry the command id of the event that started it — also after a restart, from the store — and
every step failure is a log line with service, task, server, reason and command id saying
what follows (a retry, or the end), as is the end of each run."""

from __future__ import annotations

import dataclasses
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from domain.commands import parse_order
from domain.deploy_plan import StepSpec
from domain.retry_policy import RetryPolicy
from domain.service import Service
from domain.task import Task
from handlers.messages import ResultMessage, TaskMessage
from handlers.pipeline import Pipeline, PipelineSettings, RelayedEvent
from ops.adapters.command_ledger import StoreLedger
from ops.adapters.pipeline_store import StorePipelineAdapter
from ops.adapters.sealing import PasswordSealer
from ops.messaging.transport import Message
from ops.services.pipeline import decode
from ops.store.event_store import EventStore, event_as_json
from tests.fakes.clock import Clock
from tests.fakes.publisher import RecordingPublisher

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
COMMAND = "order-7-from-whmcs"
STEPS = [
    StepSpec("web.user", "web", "ensure_user", "web1", {"user": "u1"}, ()),
    StepSpec("web.domain", "web", "ensure_web_domain", "web1", {"user": "u1"}, ("web.user",)),
]
POLICY = RetryPolicy(max_attempts=2, initial_backoff_s=10, max_backoff_s=60, jitter=0.2)


class TwoSteps:
    def place(self, service: Service) -> dict[str, object]:
        return {"web_server": "web1"}

    def steps(self, service: Service, placement: dict[str, object], kind: str) -> list[StepSpec]:
        return list(STEPS)


class Limits:
    def max_concurrency(self, server_id: str) -> int:
        return 4


@pytest.fixture
def store(tmp_path: Path) -> EventStore:
    return EventStore(f"sqlite:///{tmp_path / 'store.sqlite'}")


class Unsettled:
    """The services the sweep looks at: service 7, whose run may not have started."""

    def unsettled_services(self) -> list[str]:
        return ["7"]


def build(store: EventStore, clock: Clock, published: RecordingPublisher) -> Pipeline:
    return Pipeline(
        StorePipelineAdapter(store),
        TwoSteps(),
        Limits(),
        published,
        settings=PipelineSettings(policy=POLICY, lease_s=30, batch_size=100),
        clock=clock,
        unit_random=lambda: 0.5,
        unsettled=Unsettled(),
    )


async def ordered(store: EventStore) -> tuple[Clock, RecordingPublisher, Pipeline]:
    """Service 7 ordered under COMMAND; the pipeline took the relayed event as decoded."""
    body = {
        "service_id": "7",
        "client_id": 1,
        "mode": "split",
        "domain": "s7.example.com",
        "plan": {"package": "default"},
    }
    command = parse_order({**body, "command_id": COMMAND}, now=T0, actor="whmcs")
    store.order_service(command, None)
    notifications = store.app.recorder.select_notifications(1, 10)
    (notification,) = [n for n in notifications if n.topic.endswith("Service.Ordered")]
    relayed = decode(Message("event.Service.Ordered", store.envelope(notification), "1"))
    assert isinstance(relayed, RelayedEvent) and relayed.command_id == COMMAND

    clock, published = Clock(T0), RecordingPublisher()
    pipeline = build(store, clock, published)
    await pipeline.on_batch([relayed])
    return clock, published, pipeline


def result(message: TaskMessage, outcome: str = "succeeded") -> ResultMessage:
    error = "" if outcome == "succeeded" else "exit 15: connect refused"
    return ResultMessage(message.task_id, message.attempt, message.role, outcome, error=error)


def field(line: logging.LogRecord, name: str) -> Any:
    """A field the line was given (``extra``, or the command id filter's); None if none."""
    return vars(line).get(name)


def lines(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "handlers.pipeline" and r.levelno == level]


async def test_task_messages_carry_the_command_id_also_after_a_restart(
    store: EventStore,
) -> None:
    clock, published, _ = await ordered(store)
    (first,) = published.take()
    assert first.command_id == COMMAND
    assert json.loads(first.to_json())["command_id"] == COMMAND  # it travels

    restarted = build(store, clock, published)  # the run as the store has it
    await restarted.rebuild()
    (again,) = published.take()  # the attempt under lease, sent again in case it never went
    assert (again.message_id, again.command_id) == (first.message_id, COMMAND)
    await restarted.on_result(result(first))
    (second,) = published.take()
    assert (second.step, second.command_id) == ("web.domain", COMMAND)


async def test_a_run_the_sweep_starts_carries_the_command_id_of_its_request(
    store: EventStore,
) -> None:
    body = {
        "service_id": "7",
        "client_id": 1,
        "mode": "split",
        "domain": "s7.example.com",
        "plan": {"package": "default"},
    }
    store.order_service(parse_order({**body, "command_id": COMMAND}, now=T0, actor="whmcs"), None)
    published = RecordingPublisher()
    pipeline = build(store, Clock(T0), published)  # the relayed event never came

    await pipeline.sweep()
    assert [(m.step, m.command_id) for m in published.take()] == [("web.user", COMMAND)]


async def test_a_failure_then_its_retry_then_the_end_are_each_logged_with_the_task(
    store: EventStore, caplog: pytest.LogCaptureFixture
) -> None:
    clock, published, pipeline = await ordered(store)
    (first,) = published.take()
    with caplog.at_level(logging.INFO, logger="handlers.pipeline"):
        await pipeline.on_result(result(first, "failed_retryable"))
        clock.advance(seconds=60)
        await pipeline.tick()
        (again,) = published.take()
        await pipeline.on_result(result(again, "failed_retryable"))

    retry, terminal = lines(caplog, logging.WARNING), lines(caplog, logging.ERROR)
    assert len(retry) == 1 and len(terminal) == 1, caplog.text
    for line, attempt in ((retry[0], 1), (terminal[0], 2)):
        assert vars(line) | {
            "service": "7",
            "task": first.task_id,
            "step": "web.user",
            "server": "web1",
            "attempt": attempt,
            "reason": "exit 15: connect refused",
            "command_id": COMMAND,
        } == vars(line)
    assert field(retry[0], "next") == "retry"
    assert field(terminal[0], "next") == "error"
    ended = [r for r in lines(caplog, logging.INFO) if "ended" in r.getMessage()]
    assert [field(r, "outcome") for r in ended] == ["failed"]
    assert field(ended[0], "command_id") == COMMAND


async def test_a_failure_that_is_not_recorded_is_not_logged(
    store: EventStore, caplog: pytest.LogCaptureFixture
) -> None:
    _, published, pipeline = await ordered(store)
    (first,) = published.take()
    # staff cancel the task while its handler still runs: the late failure changes nothing
    ledger = StoreLedger(store, PasswordSealer("a-secret-key-only-for-tests"))
    assert ledger.cancel_task(first.task_id, T0, "staff")
    with caplog.at_level(logging.INFO, logger="handlers.pipeline"):
        await pipeline.on_result(result(first, "failed_retryable"))
    assert lines(caplog, logging.WARNING) == lines(caplog, logging.ERROR) == []


async def test_a_lease_running_out_is_a_logged_failure_too(
    store: EventStore, caplog: pytest.LogCaptureFixture
) -> None:
    clock, published, pipeline = await ordered(store)
    (first,) = published.take()
    with caplog.at_level(logging.INFO, logger="handlers.pipeline"):
        clock.advance(seconds=31)
        await pipeline.tick()

    (line,) = lines(caplog, logging.WARNING)
    assert (field(line, "task"), field(line, "server")) == (first.task_id, "web1")
    assert "lease" in field(line, "reason")
    assert field(line, "command_id") == COMMAND


async def test_a_run_is_one_line_when_planned_and_one_when_it_ends(
    store: EventStore, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="handlers.pipeline"):
        _, published, pipeline = await ordered(store)
        while published.messages:
            for message in published.take():
                await pipeline.on_result(result(message))

    planned = [r for r in lines(caplog, logging.INFO) if "planned" in r.getMessage()]
    ended = [r for r in lines(caplog, logging.INFO) if "ended" in r.getMessage()]
    assert [field(r, "steps") for r in planned] == [2]
    assert [field(r, "outcome") for r in ended] == ["succeeded"]
    for line in (*planned, *ended):
        assert (field(line, "service"), field(line, "command_id")) == ("7", COMMAND)


def test_a_task_planned_before_runs_knew_their_command_reads_with_none(store: EventStore) -> None:
    task = Task.plan(
        service_id="7",
        run=1,
        step="web.user",
        role="web",
        action="ensure_user",
        server_id="web1",
        params={},
        depends_on=[],
        now=T0,
        command_id=COMMAND,
    )
    (planned,) = task.collect_events()
    mapper = store.app.mapper
    stored = mapper.to_stored_event(planned)
    state = mapper.transcoder.decode(stored.state)
    assert state.pop("class_version") == 2
    del state["command_id"]  # as version 1 stored it
    old = dataclasses.replace(stored, state=mapper.transcoder.encode(state))
    read: Any = mapper.to_domain_event(old)
    assert event_as_json(read)["data"]["command_id"] is None  # the events API, the relay
    rebuilt = read.mutate(None)
    assert (rebuilt.step, rebuilt.command_id) == ("web.user", None)
