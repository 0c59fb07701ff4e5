"""A deploy step's state as every timeline shows it, the client area's and the console's.

``step_state`` consumes a task's state (``domain.task``) and emits one of ``done``,
``running`` (dispatched, or failed once and due to run again: ``retry_scheduled``),
``waiting`` and ``failed`` — the ``data-state`` the pages and their browser tests read.
Templates call it as ``step_state(…)`` (a global of ``rendering``'s environment).
"""

from __future__ import annotations

SHOWN_STATES = ("done", "running", "waiting", "failed")
_STEP_STATES = {
    "succeeded": "done",
    "dispatched": "running",
    "retry_scheduled": "running",
    "planned": "waiting",
    "error": "failed",
    "cancelled": "failed",
}


def step_state(task_state: object) -> str:
    """The shown state of a step whose task is in ``task_state`` (``waiting`` if unknown)."""
    return _STEP_STATES.get(str(task_state), "waiting")
