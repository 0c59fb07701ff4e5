"""Dispatch: which ready steps of the open runs start now, and the task message for each.

Consumes: the open runs (handlers/pipeline_runs.py), each server's concurrency limit, the
batch size and the lease length. Emits: the tasks it dispatched — their Dispatched events
pending, for the pipeline to record — each with its task message for ``task.<role>.<server_id>``,
published once that is recorded.

A step is ready when it is due and every step it depends on has succeeded; it starts when its
server has fewer than ``max_concurrency`` attempts in flight, at most ``batch_size`` per round.
A service whose superseded run still has attempts out on a node starts nothing meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from domain.task import Task
from handlers.messages import TaskMessage
from handlers.pipeline_runs import OpenRuns, Run


def dispatch_ready(
    open_runs: OpenRuns,
    max_concurrency: Callable[[str], int],
    *,
    now: datetime,
    lease_s: float,
    batch_size: int,
) -> list[tuple[Task, TaskMessage]]:
    """Dispatches (in memory) every ready step a server has room for, oldest run first."""
    budget = batch_size
    in_flight = open_runs.in_flight_by_server()
    # Free slots per server; the scan of the open runs (oldest first) stops as soon as no
    # server has one left, which in a backlog is after the first few ready steps.
    room = {s: max(0, max_concurrency(s) - in_flight[s]) for s in open_runs.servers}
    free = sum(room.values())
    started: list[tuple[Task, TaskMessage]] = []
    for run in open_runs.runs.values():
        if budget <= 0 or free <= 0:
            break
        if open_runs.draining.get(run.service_id):
            continue  # the superseded run still has attempts out on a node
        for task in run.tasks.values():
            if budget <= 0 or room[task.server_id] <= 0:
                continue
            if not task.is_due(now) or not _dependencies_met(run, task):
                continue
            attempt = task.dispatch(now, lease_s)
            room[task.server_id] -= 1
            free -= 1
            budget -= 1
            started.append((task, task_message(run, task, attempt)))
    return started


def task_message(run: Run, task: Task, attempt: int) -> TaskMessage:
    """What the task's role on its server is asked to do in this attempt, with the outputs
    of the steps it depends on."""
    inputs = {dep: run.tasks[dep].outputs for dep in task.depends_on}
    return TaskMessage(
        task_id=str(task.id),
        attempt=attempt,
        service_id=task.service_id,
        step=task.step,
        role=task.role,
        action=task.action,
        server_id=task.server_id,
        params=task.params,
        inputs=inputs,
        command_id=task.command_id,
    )


def dispatched_attempts(open_runs: OpenRuns) -> list[TaskMessage]:
    """The messages of every attempt recorded dispatched, to send again after a rebuild —
    whatever its stored lease says: the rebuild gives each a fresh one, so one whose message
    never went out must go out now (a handler asks its inbox about the marked copy)."""
    return [
        task_message(run, task, task.attempt)
        for run in open_runs.runs.values()
        for task in run.tasks.values()
        if task.state == "dispatched"
    ]


def _dependencies_met(run: Run, task: Task) -> bool:
    return all(
        run.tasks.get(dep) is not None and run.tasks[dep].state == "succeeded"
        for dep in task.depends_on
    )
