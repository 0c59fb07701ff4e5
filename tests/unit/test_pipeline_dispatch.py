"""Which ready steps of the open runs a dispatch round starts: dependencies met, room on the
server, the batch size, and no start while a superseded run still has attempts on a node."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

from domain.task import Task
from handlers.pipeline_dispatch import dispatch_ready
from handlers.pipeline_runs import OpenRuns

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


class NoStore:
    """Dispatch reads nothing from the store."""

    def task(self, task_id: uuid.UUID) -> Task:
        raise AssertionError("dispatch must not read the store")

    def open_work(self) -> Iterable[Task]:
        raise AssertionError("dispatch must not read the store")

    def position(self) -> int:
        raise AssertionError("dispatch must not read the store")

    def checkpoint(
        self, position: int, task_ids: Sequence[uuid.UUID], finished: Mapping[str, int]
    ) -> None:
        raise AssertionError("dispatch must not write the store")

    def finished_run(self, service_id: str) -> int:
        raise AssertionError("dispatch must not read the store")


def planned(service_id: str, step: str, server_id: str, depends_on: list[str]) -> Task:
    return Task.plan(
        service_id=service_id,
        run=1,
        step=step,
        role="web",
        action="ensure_" + step,
        server_id=server_id,
        params={"user": "u" + service_id},
        depends_on=depends_on,
        now=T0,
    )


def open_runs(*tasks: Task) -> OpenRuns:
    runs = OpenRuns(NoStore())
    for task in tasks:
        runs.remember(task)
    return runs


def started(runs: OpenRuns, limit: int = 10, batch_size: int = 200) -> list[tuple[str, str]]:
    pairs = dispatch_ready(runs, lambda _: limit, now=T0, lease_s=30, batch_size=batch_size)
    return [(task.service_id, message.step) for task, message in pairs]


def test_a_step_waits_for_the_steps_it_depends_on_and_gets_their_outputs() -> None:
    user, domain = planned("1", "user", "web1", []), planned("1", "domain", "web1", ["user"])
    runs = open_runs(user, domain)
    assert started(runs) == [("1", "user")]
    user.succeed(1, T0, changed=True, log=[], outputs={"uid": 7})
    pairs = dispatch_ready(runs, lambda _: 10, now=T0, lease_s=30, batch_size=200)
    [(task, message)] = pairs
    assert task is domain and task.lease_expires_at == T0 + timedelta(seconds=30)
    assert (message.attempt, message.inputs, message.routing_key) == (
        1,
        {"user": {"uid": 7}},
        "task.web.web1",
    )


def test_a_server_takes_no_more_attempts_than_its_limit() -> None:
    tasks = [planned(str(n), "user", "web1" if n < 3 else "web2", []) for n in range(5)]
    runs = open_runs(*tasks)
    assert started(runs, limit=2) == [("0", "user"), ("1", "user"), ("3", "user"), ("4", "user")]
    assert started(runs, limit=2) == []  # web1 is full until one of its attempts ends


def test_a_round_starts_no_more_steps_than_the_batch_size() -> None:
    runs = open_runs(*(planned(str(n), "user", "web1", []) for n in range(3)))
    assert started(runs, batch_size=2) == [("0", "user"), ("1", "user")]
    assert started(runs, batch_size=2) == [("2", "user")]


def test_nothing_starts_for_a_service_whose_superseded_attempt_is_still_on_a_node() -> None:
    runs = open_runs(planned("1", "user", "web1", []), planned("2", "user", "web1", []))
    runs.draining["1"] = {uuid.uuid4(): ("web1", T0 + timedelta(seconds=30))}
    assert started(runs, limit=2) == [("2", "user")]
