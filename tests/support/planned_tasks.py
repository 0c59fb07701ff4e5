"""Tasks planned at a fixed time on made-up nodes, for the tests that feed Task events to the
views: times are given in seconds after ``NOW``.

Consumes a step name (its role is the part before the first dash); emits a planned Task.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain.retry_policy import RetryPolicy
from domain.task import Task

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
POLICY = RetryPolicy(max_attempts=3, initial_backoff_s=10, max_backoff_s=60, jitter=0)


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def plan(step: str, *, run: int = 1, service_id: str = "42", seconds: float = 0) -> Task:
    return Task.plan(
        service_id=service_id,
        run=run,
        step=step,
        role=step.split("-")[0],
        action=f"do {step}",
        server_id=f"{step.split('-')[0]}-1",
        params={},
        depends_on=[],
        now=at(seconds),
    )
