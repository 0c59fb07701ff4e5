"""The step fence's key and its waiting (handlers/step_fence.py), without a database, and
that no run plan has two steps that would wait for each other at it."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from dataclasses import replace

import pytest

from domain.deploy_plan import ProviderSettings, ServiceFacts, StepSpec
from domain.placement import Placement
from handlers import step_fence
from handlers.messages import TaskMessage
from handlers.step_fence import LocalFences, fence_key, fenced
from ops.adapters.deploy_planner import PLANS
from tests.fakes.step_fences import ScriptedFences
from tests.support.plans import IPS, PLAN, PROVIDER, SPLIT, UNIFIED, facts, vanity

TASK = TaskMessage(
    task_id="t-1",
    attempt=1,
    service_id="svc-1",
    step="web.domain",
    role="web",
    action="ensure_web_domain",
    server_id="web1",
    params={},
)


def test_the_key_is_a_stable_bigint_of_service_role_and_node() -> None:
    key = fence_key(TASK)
    assert key == fence_key(TASK) and -(2**63) <= key < 2**63
    assert key == -1551031571001738049  # the same in every process and release
    # every attempt, every step, every run of the service's role on that node: one fence
    same = [
        dataclasses.replace(TASK, attempt=2, task_id="t-2", step="remove.web.domain"),
        dataclasses.replace(TASK, action="remove_web_domain", params={"x": 1}),
    ]
    assert {fence_key(t) for t in same} == {key}
    others = [
        dataclasses.replace(TASK, service_id="svc-2"),
        dataclasses.replace(TASK, role="mail"),
        dataclasses.replace(TASK, server_id="web2"),
    ]
    assert len({fence_key(t) for t in others} | {key}) == 4


async def test_a_held_fence_is_waited_for_then_taken_and_released() -> None:
    fences = ScriptedFences(False, False, True)
    heard: list[str] = []
    async with fenced(fences, 7, poll_s=0, on_wait=heard.append):
        assert fences.calls == [("take", 7)] * 3
    assert fences.calls[-1] == ("release", 7)
    assert len(heard) == 1 and "another attempt is running" in heard[0]


async def test_a_held_fence_is_asked_again_soon_then_every_poll(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A fence let go a moment ago may reach the database just after (the step gate sends
    unlocks with the next statement): the first wait is short, then they double to the poll."""
    waits: list[float] = []

    async def no_sleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(step_fence.asyncio, "sleep", no_sleep)
    fences = ScriptedFences(*([False] * 6), True)
    async with fenced(fences, 7, poll_s=0.5):
        pass
    assert waits == [0.05, 0.1, 0.2, 0.4, 0.5, 0.5]


async def test_an_unreachable_fence_is_waited_for_and_said_so() -> None:
    fences = ScriptedFences(OSError("database away"), OSError("still away"), True)
    heard: list[str] = []
    async with fenced(fences, 7, poll_s=0, on_wait=heard.append):
        pass
    assert len(heard) == 1 and "cannot reach the step fence (OSError)" in heard[0]
    assert fences.calls == [("take", 7)] * 3 + [("release", 7)]


async def test_the_fence_is_released_when_the_step_raises() -> None:
    fences = ScriptedFences()
    with pytest.raises(RuntimeError):
        async with fenced(fences, 7, poll_s=0):
            raise RuntimeError("step failed")
    assert fences.calls == [("take", 7), ("release", 7)]


async def test_local_fences_guard_one_process() -> None:
    fences = LocalFences()
    assert await fences.try_take(1) and not await fences.try_take(1)
    assert await fences.try_take(2)
    await fences.release(1)
    assert await fences.try_take(1)
    assert fences.held == {1, 2}


def ordered(steps: list[StepSpec]) -> Callable[[str, str], bool]:
    """Whether step a comes before step b through the dependencies."""
    before = {s.step: set(s.depends_on) for s in steps}
    for spec in steps:  # listed in a valid order: the dependencies' closures are known already
        for dependency in list(before[spec.step]):
            before[spec.step] |= before[dependency]
    return lambda a, b: a in before[b] or b in before[a]


SEALED = "v2:k1:sealed"  # a change_password run is planned only for a service with one
CASES = [
    ("split", facts(plan=PLAN, password_sealed=SEALED), SPLIT, None),
    ("unified", facts("unified", plan=PLAN, password_sealed=SEALED), UNIFIED, None),
    ("vanity", replace(vanity(), password_sealed=SEALED), SPLIT, PROVIDER),
]


@pytest.mark.parametrize("kind", sorted(PLANS))
@pytest.mark.parametrize(
    ("service", "placement", "provider"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_no_run_has_two_steps_that_would_wait_for_each_other_at_the_fence(
    kind: str, service: ServiceFacts, placement: Placement, provider: ProviderSettings | None
) -> None:
    """Steps of one run sharing a fence (the same role on the same node) already run one after
    the other, so the fence never slows a healthy run down."""
    steps = PLANS[kind](service, placement, provider, IPS)
    comes_before = ordered(steps)
    for a, b in itertools.combinations(steps, 2):
        if (a.role, a.server_id) == (b.role, b.server_id):
            assert comes_before(a.step, b.step), (kind, a.step, b.step)
