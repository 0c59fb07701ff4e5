"""Running one step action on a node as a role handler would, and checking that a second run
is a no-op: what the step tests share.

Consumes a NodeDriver and a SimNode's command log; emits the step's outcome and log lines
(``run_plan``: a planned run's steps, in order, and which changed).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from domain.step_chain import StepSpec
from handlers.hestia_command import NodeError
from handlers.hestia_driver import HestiaDriver
from handlers.step import StepLog, StepOutcome
from handlers.step_params import resolve_params
from handlers.step_registry import STEP_ACTIONS
from ops.devtools.simnode import SimNode, read_command_log

PASSWORD = "Pa55-w0rd!$(touch x)"
OWNER = "7"  # the service id the step tests' things are marked with
ALICE = {"user": "alice", "password": PASSWORD, "email": "alice@example.com", "owner": OWNER}


async def step(
    driver: HestiaDriver, action: str, params: dict[str, Any], inputs: dict[str, Any] | None = None
) -> tuple[StepOutcome, list[str]]:
    log = StepLog()
    outcome = await STEP_ACTIONS[action](driver, params, inputs or {}, log)
    return outcome, log.lines


def changes(node: SimNode) -> list[list[str]]:
    """The argv of every command that changed the node, in order."""
    return [entry["argv"] for entry in read_command_log(node.data_dir) if entry["changed"]]


async def twice(
    node: SimNode, driver: HestiaDriver, action: str, params: dict[str, Any], **kw: Any
) -> StepOutcome:
    """Runs the action twice; the second run must change nothing and apply nothing."""
    first, _ = await step(driver, action, params, **kw)
    assert first.changed
    before = changes(node)
    second, lines = await step(driver, action, params, **kw)
    assert not second.changed, lines
    assert changes(node) == before
    assert second.outputs == first.outputs
    return second


async def run_plan(driver: HestiaDriver, steps: list[StepSpec]) -> dict[str, bool]:
    """Runs planned steps in order as a role handler would (params resolved, the password
    "sealed" as itself); step key → changed."""
    changed: dict[str, bool] = {}
    outputs: dict[str, dict[str, Any]] = {}
    for spec in steps:
        inputs = {dep: outputs[dep] for dep in spec.depends_on}
        params = resolve_params(spec.params, inputs, unseal=lambda sealed: sealed)
        outcome = await STEP_ACTIONS[spec.action](driver, params, inputs, StepLog())
        changed[spec.step], outputs[spec.step] = outcome.changed, outcome.outputs
    return changed


async def run_steps(
    drivers: Mapping[str, HestiaDriver], steps: list[StepSpec]
) -> dict[str, StepOutcome | NodeError]:
    """Runs planned steps in order, each on its server's driver, as role handlers would: a step
    whose action raised, or that depends on one that did, is not stopped at — its error is its
    outcome (a dependent one's is the error it was blocked by)."""
    outcomes: dict[str, StepOutcome | NodeError] = {}
    for spec in steps:
        before = {d: outcomes[d] for d in spec.depends_on}
        failed = [o for o in before.values() if isinstance(o, NodeError)]
        if failed:
            outcomes[spec.step] = failed[0]
            continue
        inputs = {d: o.outputs for d, o in before.items() if isinstance(o, StepOutcome)}
        params = resolve_params(spec.params, inputs, unseal=lambda sealed: sealed)
        action = STEP_ACTIONS[spec.action]
        try:
            outcomes[spec.step] = await action(drivers[spec.server_id], params, inputs, StepLog())
        except NodeError as exc:  # what a role handler reports; bad params are a test's bug
            outcomes[spec.step] = exc
    return outcomes
