"""One mapping of a task's state to the state a timeline shows, for the client area and
the console alike (a step due to run again is ``running`` on both)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain.task import FINAL_STATES, OPEN_STATES
from gateway.screens import rendering
from gateway.screens.client_state import client_state
from gateway.screens.step_states import SHOWN_STATES, step_state

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("task_state", "shown"),
    [
        ("succeeded", "done"),
        ("dispatched", "running"),
        ("retry_scheduled", "running"),
        ("planned", "waiting"),
        ("error", "failed"),
        ("cancelled", "failed"),
        ("something new", "waiting"),
    ],
)
def test_each_task_state_has_one_shown_state(task_state: str, shown: str) -> None:
    assert step_state(task_state) == shown


def test_every_task_state_is_shown_as_one_of_the_hooks_states() -> None:
    assert {step_state(state) for state in OPEN_STATES + FINAL_STATES} == set(SHOWN_STATES)


def test_the_client_area_and_the_templates_use_the_same_mapping() -> None:
    row = {"service_id": "1", "status": "provisioning", "domain": "example.com"}
    steps = [{"step": "web.domain", "state": state} for state in OPEN_STATES + FINAL_STATES]
    shown = [s["state"] for s in client_state(row, steps, [], None, [], NOW)["steps"]]
    template = rendering._ENVIRONMENT.from_string(
        "{% for s in steps %}{{ step_state(s.state) }} {% endfor %}"
    )
    assert template.render(steps=steps).split() == shown
