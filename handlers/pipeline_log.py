"""The pipeline's lines for an operator: a run planned, a step's attempt failed and what
follows (a retry, or the end of the step), a run ended.

Each line carries its facts as fields of their own — ``service``, ``command_id`` (the run's
correlation id, domain/correlation.py) and, for a step, ``task``, ``step``, ``server``,
``attempt``, ``reason`` and ``next`` (``retry`` or ``error``) — so a log shipper can filter on
them; the text says the same for a person. A failure's reason is the handler's error (a node's
answer, never a password: step errors are built from the commands' outputs, which never echo
one) or the lease that ran out.
"""

from __future__ import annotations

import logging
from typing import Any

from domain.run_outcome import StepOutcome
from domain.task import Task

log = logging.getLogger("handlers.pipeline")  # one logger for all of the pipeline's parts


def run_planned(tasks: list[Task], service_id: str, run_no: int, kind: str) -> None:
    command_id = tasks[0].command_id if tasks else None
    log.info(
        "pipeline: %s run %d of service %s planned: %d steps",
        kind,
        run_no,
        service_id,
        len(tasks),
        extra=_fields(
            service=service_id, run=run_no, kind=kind, steps=len(tasks), command_id=command_id
        ),
    )


def attempt_failed(task: Task, attempt: int, reason: str) -> None:
    """After ``task.fail`` recorded the attempt's failure: a warning when a retry follows, an
    error when the step has ended in error."""
    fields = _fields(
        service=task.service_id,
        task=str(task.id),
        step=task.step,
        server=task.server_id,
        attempt=attempt,
        reason=reason,
        command_id=task.command_id,
    )
    if task.state == "retry_scheduled" and task.due_at is not None:
        log.warning(
            "pipeline: step %s of service %s failed on %s (attempt %d): %s; retry at %s",
            task.step,
            task.service_id,
            task.server_id,
            attempt,
            reason,
            task.due_at.isoformat(timespec="seconds"),
            extra=fields | {"next": "retry", "retry_at": task.due_at.isoformat()},
        )
        return
    log.error(
        "pipeline: step %s of service %s failed on %s (attempt %d) for good: %s",
        task.step,
        task.service_id,
        task.server_id,
        attempt,
        task.error or reason,
        extra=fields | {"next": "error"},
    )


def run_ended(
    service_id: str, run_no: int, kind: str, outcomes: list[StepOutcome], command_id: str | None
) -> None:
    failed = [o for o in outcomes if o.state == "error"]  # not those blocked behind them
    ended_well = all(o.state in ("succeeded", "cancelled") for o in outcomes)
    outcome = "succeeded" if ended_well else "failed"
    log.info(  # info even when it failed: the step's failure was the error line
        "pipeline: %s run %d of service %s ended: %s%s",
        kind,
        run_no,
        service_id,
        outcome,
        f" ({', '.join(o.step for o in failed)} in error)" if failed else "",
        extra=_fields(
            service=service_id,
            run=run_no,
            kind=kind,
            outcome=outcome,
            failed_steps=[o.step for o in failed] or None,
            command_id=command_id,
        ),
    )


def _fields(**fields: Any) -> dict[str, Any]:
    """``extra`` for a line; a command id of None is left for the logging filter to fill."""
    return {key: value for key, value in fields.items() if value is not None}
